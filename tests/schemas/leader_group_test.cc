// LeaderGroup on its own: every member is run exactly once and its thread returns only after
// that, one run at a time, with groups forming under contention and threads that come and go.
#include "txcoord/leader_group.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace txcoord {
namespace {

struct Member {
  int runs = 0;  // written by the run function, read by the member's thread after Join
  int id = 0;
};

TEST(LeaderGroupTest, EveryMemberRunsOnceBeforeItsJoinReturnsAndRunsNeverOverlap) {
  std::atomic<int> running{0};
  std::atomic<bool> overlapped{false};
  std::atomic<int64_t> run_members{0};
  LeaderGroup<Member> group(8, [&](std::span<Member* const> members) {
    if (running.fetch_add(1) != 0) overlapped = true;
    for (Member* m : members) m->runs++;
    run_members += static_cast<int64_t>(members.size());
    std::this_thread::yield();  // lets others queue, so groups of more than one form
    running.fetch_sub(1);
  });

  constexpr int kThreads = 12, kJoins = 3000;
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kJoins; ++i) {
        Member m{.runs = 0, .id = t * kJoins + i};
        group.Join(m);
        if (m.runs != 1) wrong++;
      }
    });
  }
  for (auto& th : threads) th.join();

  EXPECT_EQ(wrong.load(), 0);
  EXPECT_FALSE(overlapped.load());
  const GroupStats stats = group.stats();
  EXPECT_EQ(stats.members, int64_t{kThreads} * kJoins);
  EXPECT_EQ(run_members.load(), stats.members);
  EXPECT_LE(stats.largest_group, 8);
  EXPECT_GT(stats.largest_group, 1) << "no group ever formed";
  EXPECT_LT(stats.groups, stats.members);
  EXPECT_EQ(group.queued(), 0u);
}

// An enqueued member waits for the next Join, runs in that leader's group (ahead of it) and is
// handed to the done function once, on the leader's thread, after the group ran.
TEST(LeaderGroupTest, AnEnqueuedMemberRidesInTheNextGroupAndIsDoneOnTheLeadersThread) {
  std::vector<std::vector<int>> runs;
  std::vector<std::pair<int, std::thread::id>> done;
  LeaderGroup<Member> group(
      8,
      [&](std::span<Member* const> members) {
        std::vector<int> ids;
        for (Member* m : members) {
          m->runs++;
          ids.push_back(m->id);
        }
        runs.push_back(ids);
      },
      [&](Member* m) { done.emplace_back(m->id, std::this_thread::get_id()); });
  Member a{.runs = 0, .id = 1}, b{.runs = 0, .id = 2};
  group.Enqueue(a);
  group.Enqueue(b);
  EXPECT_EQ(group.enqueued(), 2u);
  EXPECT_TRUE(runs.empty()) << "an enqueued member alone never starts a group";
  Member leader{.runs = 0, .id = 3};
  std::thread::id leader_thread;
  std::thread t([&] {
    leader_thread = std::this_thread::get_id();
    group.Join(leader);
  });
  t.join();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0], (std::vector<int>{1, 2, 3}));
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].first, 1);
  EXPECT_EQ(done[1].first, 2);
  EXPECT_EQ(done[0].second, leader_thread);
  EXPECT_EQ(a.runs + b.runs + leader.runs, 3);
  EXPECT_EQ(group.enqueued(), 0u);
  EXPECT_EQ(group.stats().members, 3);
}

// A group that records the size of every run and counts the done calls.
struct Counted {
  explicit Counted(int max_group)
      : group(
            max_group, [this](std::span<Member* const> m) { sizes.push_back(m.size()); },
            [this](Member*) { ++done; }) {}
  std::vector<size_t> sizes;
  int done = 0;
  LeaderGroup<Member> group;
};

// The group's limit counts enqueued members too, and the leader always fits.
TEST(LeaderGroupTest, EnqueuedMembersBeyondTheLimitWaitForTheGroupAfter) {
  Counted counted(3);
  auto& [sizes, done, group] = counted;
  std::vector<Member> queued(5);
  for (Member& m : queued) group.Enqueue(m);
  Member first, second, third;
  group.Join(first);
  EXPECT_EQ(sizes, (std::vector<size_t>{3}));  // two enqueued and the leader
  EXPECT_EQ(group.enqueued(), 3u);
  group.Join(second);
  group.Join(third);
  EXPECT_EQ(sizes, (std::vector<size_t>{3, 3, 2}));
  EXPECT_EQ(done, 5);
  EXPECT_EQ(group.enqueued(), 0u);
}

// With a done function a group holds at least two, or an enqueued member would never fit beside
// a leader and never run.
TEST(LeaderGroupTest, AnEnqueuedMemberRunsEvenWhenGroupsAreOfOne) {
  Counted counted(1);
  auto& [sizes, done, group] = counted;
  Member held, leader;
  group.Enqueue(held);
  group.Join(leader);
  EXPECT_EQ(sizes, (std::vector<size_t>{2}));
  EXPECT_EQ(done, 1);
}

// Threads that join once and exit at once: a leader still waking a follower must not touch
// storage that went away with the follower's thread (ASan/valgrind would see it; here, a crash
// or a hang would).
TEST(LeaderGroupTest, FollowersWhoseThreadsExitRightAwayAreSafe) {
  std::atomic<int64_t> runs{0};
  LeaderGroup<Member> group(64, [&](std::span<Member* const> members) {
    for (Member* m : members) m->runs++;
    runs += static_cast<int64_t>(members.size());
  });
  constexpr int kRounds = 200, kThreads = 16;
  for (int r = 0; r < kRounds; ++r) {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        Member m;
        group.Join(m);
        EXPECT_EQ(m.runs, 1);
      });
    }
    for (auto& th : threads) th.join();
  }
  EXPECT_EQ(runs.load(), int64_t{kRounds} * kThreads);
  EXPECT_EQ(group.stats().members, int64_t{kRounds} * kThreads);
}

}  // namespace
}  // namespace txcoord
