// Leader/follower grouping of concurrent work, the way LevelDB groups its writers: callers queue
// up; the first in the queue becomes the leader, takes every member queued behind it (up to a
// maximum), runs the group once for all of them on its own thread without holding the queue
// lock, then wakes them and hands the lead to the next in the queue. Work that arrives while a
// group runs shares the next group, so a group commit costs one commit and one fsync for all its
// members, and a lone caller pays no thread hand-off.
//
// Used by the coordinator's transaction log (one write transaction per group of appends) and by
// the participant SDK's SqliteCommitGroup (one local transaction per group of callbacks).
//
// Thread-safety: Join may be called from any number of threads; the run function is only ever
// run by one thread at a time, so what it writes through needs no lock of its own.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

namespace txcoord {

struct GroupStats {
  int64_t groups = 0;         // runs of the group function
  int64_t members = 0;        // members that went through them
  int64_t largest_group = 0;  // most members in one run
};

template <typename Member>
class LeaderGroup {
 public:
  // Runs one group: every member in the span, in queue order. It must not throw (a throw
  // terminates the process: the queue could not be left consistent); catch inside and record
  // the failure in the members.
  using RunFn = std::function<void(std::span<Member* const>)>;

  LeaderGroup(int max_group, RunFn run)
      : max_group_(std::max(max_group, 1)), run_(std::move(run)) {}
  LeaderGroup(const LeaderGroup&) = delete;
  LeaderGroup& operator=(const LeaderGroup&) = delete;

  // Returns once a group holding `member` ran, led by this thread or another one.
  void Join(Member& member) {
    Waiter self(&member);
    // Reserved before queueing, so that nothing between becoming leader and leaving the queue
    // can throw. Per thread and reused: a fresh vector per call showed in the log's profiles. A
    // thread is in one Join at a time (the run function never joins the same group).
    thread_local std::vector<Waiter*> waiters;
    thread_local std::vector<Member*> members;
    waiters.clear();
    members.clear();
    waiters.reserve(static_cast<size_t>(max_group_));
    members.reserve(static_cast<size_t>(max_group_));

    std::unique_lock lock(mu_);
    queue_.push_back(&self);
    self.cv.wait(lock, [&] { return self.done || queue_.front() == &self; });
    if (self.done) return;

    for (Waiter* w : queue_) {
      if (static_cast<int>(waiters.size()) == max_group_) break;
      waiters.push_back(w);
      members.push_back(w->member);
    }
    lock.unlock();
    // The group stays at the front of the queue while it runs: later arrivals queue behind it
    // and none of them can become leader, so only this thread runs run_.
    RunNoThrow(members);
    lock.lock();

    for (Waiter* w : waiters) {
      queue_.pop_front();
      w->done = true;
      if (w != &self) w->cv.notify_one();
    }
    stats_.groups++;
    stats_.members += static_cast<int64_t>(waiters.size());
    stats_.largest_group = std::max<int64_t>(stats_.largest_group, waiters.size());
    if (!queue_.empty()) queue_.front()->cv.notify_one();  // the next leader
  }

  GroupStats stats() const {
    std::lock_guard lock(mu_);
    return stats_;
  }

  // Members waiting or running now; lets a test see that a group has formed.
  size_t queued() const {
    std::lock_guard lock(mu_);
    return queue_.size();
  }

 private:
  struct Waiter {
    explicit Waiter(Member* m) : member(m) {}
    Member* const member;
    bool done = false;  // GUARDED_BY(mu_)
    std::condition_variable cv;
  };

  void RunNoThrow(const std::vector<Member*>& members) noexcept { run_(members); }

  const int max_group_;
  const RunFn run_;
  mutable std::mutex mu_;
  std::deque<Waiter*> queue_;  // GUARDED_BY(mu_); the front is the leader
  GroupStats stats_;           // GUARDED_BY(mu_)
};

}  // namespace txcoord
