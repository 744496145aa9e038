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
