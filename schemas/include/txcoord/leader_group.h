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
// A member may also be enqueued without waiting (Enqueue): it rides in the next group a leader
// runs, and the done function is called for it afterwards on that leader's thread. Nothing runs
// such a member until some caller joins, so its owner must join one itself (with a member that
// does nothing) when none came in time: see the coordinator's GroupCommitter.
//
// Thread-safety: Join and Enqueue may be called from any number of threads; the run function is
// only ever run by one thread at a time, so what it writes through needs no lock of its own.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
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
  // Called once for every enqueued member after the group that held it ran, on the leader's
  // thread, outside the queue's lock. It must not join this group (the leader is in Join).
  using DoneFn = std::function<void(Member*)>;

  // With a done function a group holds at least 2, so that an enqueued member always fits
  // beside its leader.
  LeaderGroup(int max_group, RunFn run, DoneFn done = nullptr)
      : max_group_(std::max(max_group, done ? 2 : 1)),
        run_(std::move(run)),
        done_(std::move(done)) {}
  LeaderGroup(const LeaderGroup&) = delete;
  LeaderGroup& operator=(const LeaderGroup&) = delete;

  // Returns once a group holding `member` ran, led by this thread or another one.
  void Join(Member& member) {
    // Per thread and reused: a fresh vector per call showed in the log's profiles. A thread is
    // in one Join at a time (the run function never joins the same group). The waiter is shared
    // with the leader that wakes it, so that the wake-up never touches a waiter whose thread
    // already returned (or exited). Reserved before queueing, so that nothing between becoming
    // leader and leaving the queue can throw.
    thread_local const std::shared_ptr<Waiter> self = std::make_shared<Waiter>();
    thread_local std::vector<std::shared_ptr<Waiter>> group;
    thread_local std::vector<Member*> members;
    thread_local std::vector<Member*> enqueued;
    group.clear();
    members.clear();
    enqueued.clear();
    group.reserve(static_cast<size_t>(max_group_));
    members.reserve(static_cast<size_t>(max_group_));
    enqueued.reserve(static_cast<size_t>(max_group_));

    self->member = &member;
    self->state.store(kWaiting, std::memory_order_relaxed);
    bool lead;
    {
      std::lock_guard lock(mu_);
      queue_.push_back(self);
      lead = queue_.size() == 1;
    }
    if (!lead) {
      // Woken without the queue's lock: a leader that notified under it made every follower
      // it woke block again on the lock it still held (two switches per follower, not one).
      uint32_t state;
      while ((state = self->state.load(std::memory_order_acquire)) == kWaiting) {
        FutexWait(self->state, kWaiting);
      }
      if (state == kDone) return;
    }

    std::shared_ptr<Waiter> next;
    {
      std::lock_guard lock(mu_);
      // Enqueued members first: they came before this leader took the lead or while the group
      // before ran. The leader itself always fits.
      while (!enqueued_.empty() && static_cast<int>(enqueued.size()) + 1 < max_group_) {
        enqueued.push_back(enqueued_.front());
        members.push_back(enqueued_.front());
        enqueued_.pop_front();
      }
      for (const auto& w : queue_) {
        if (static_cast<int>(members.size()) == max_group_) break;
        group.push_back(w);
        members.push_back(w->member);
      }
    }
    // The group stays at the front of the queue while it runs: later arrivals queue behind it
    // and none of them can become leader, so only this thread runs run_.
    RunNoThrow(members);
    {
      std::lock_guard lock(mu_);
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(group.size()));
      stats_.groups++;
      stats_.members += static_cast<int64_t>(members.size());
      stats_.largest_group = std::max<int64_t>(stats_.largest_group, members.size());
      if (!queue_.empty()) next = queue_.front();
    }
    for (const auto& w : group) {
      if (w != self) Wake(*w, kDone);
    }
    // The next leader last, so that its group takes in what the ones just woken append next.
    if (next) Wake(*next, kLead);
    group.clear();  // drops the references; a waiter outlives its thread only until here
    // Last: whatever done does, the members woken above are already on their way. Moved out of
    // the thread_local (no allocation after the group left the queue), which done may reach
    // again through a Join of another group on this thread.
    if (!enqueued.empty()) {
      std::vector<Member*> finished;
      finished.swap(enqueued);
      for (Member* m : finished) done_(m);
    }
  }

  // Queues `member` for the next group without waiting for it (see the class comment). Requires
  // a done function.
  void Enqueue(Member& member) {
    std::lock_guard lock(mu_);
    enqueued_.push_back(&member);
  }

  // Members enqueued and not yet taken into a group.
  size_t enqueued() const {
    std::lock_guard lock(mu_);
    return enqueued_.size();
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
  // A waiter's state moves from kWaiting to kDone (its group ran) or to kLead (it leads the
  // next group), set by the leader that ran the group before, outside the queue's lock.
  static constexpr uint32_t kWaiting = 0, kDone = 1, kLead = 2;
  struct Waiter {
    Member* member = nullptr;               // set by its own thread before it queues
    std::atomic<uint32_t> state{kWaiting};  // also the futex word
    static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
  };

  static void Wake(Waiter& w, uint32_t state) {
    w.state.store(state, std::memory_order_release);
    syscall(SYS_futex, &w.state, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  }

  // The kernel's futex rather than std::atomic::wait: libstdc++'s wait first spins through
  // sched_yield, which on two busy CPUs is a context switch of its own each time (measured:
  // 24 switches per saga against 15).
  static void FutexWait(std::atomic<uint32_t>& word, uint32_t expected) {
    syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
  }

  void RunNoThrow(const std::vector<Member*>& members) noexcept { run_(members); }

  const int max_group_;
  const RunFn run_;
  const DoneFn done_;
  mutable std::mutex mu_;
  std::deque<std::shared_ptr<Waiter>> queue_;  // GUARDED_BY(mu_); the front is the leader
  std::deque<Member*> enqueued_;               // GUARDED_BY(mu_): Enqueue'd, not yet taken
  GroupStats stats_;                           // GUARDED_BY(mu_)
};

}  // namespace txcoord
