#include "log_internal.h"

namespace txcoord::coordinator::internal {

GroupCommitter::GroupCommitter(int max_batch, CommitFn commit_fn)
    : max_batch_(max_batch < 1 ? 1 : max_batch), commit_fn_(std::move(commit_fn)) {}

Status GroupCommitter::Submit(std::vector<v1::LogRecord> records) {
  if (records.empty()) return Status::InvalidArgument("an append needs at least one record");
  // Records that are malformed on their own are refused here, in the caller's thread: they never
  // reach a backend (whose statements could choke on them, e.g. a gtid that is not UTF-8) and
  // never cost the leader time.
  for (const auto& r : records) {
    if (Status s = CheckRecord(r); !s.ok()) return s.WithContext("append rejected");
  }
  PendingAppend self;
  self.records = std::move(records);
  // Reserved before queueing, so that nothing between becoming leader and leaving the queue can
  // throw: an exception there would strand the queue. Per thread and reused: a fresh vector of
  // max_batch pointers for every append showed in profiles. A thread runs one Submit at a time.
  thread_local std::vector<PendingAppend*> group;
  group.clear();
  group.reserve(static_cast<size_t>(max_batch_));

  std::unique_lock lock(mu_);
  queue_.push_back(&self);
  // Wait until a leader committed us, or we are at the front and so lead the next group.
  self.cv.wait(lock, [&] { return self.done || queue_.front() == &self; });
  if (self.done) return self.status;

  for (PendingAppend* p : queue_) {
    if (static_cast<int>(group.size()) == max_batch_) break;
    group.push_back(p);
  }
  lock.unlock();
  // The group stays at the front of the queue while it commits: later arrivals queue behind
  // it and none of them can become leader, so only this thread runs commit_fn_.
  try {
    commit_fn_(group);
  } catch (const std::exception& e) {
    // The backend cleaned up what it could; what happened to the group is unknown.
    for (PendingAppend* p : group) p->status = Status::Internal(std::string("append: ") + e.what());
  } catch (...) {
    for (PendingAppend* p : group) p->status = Status::Internal("append: unknown exception");
  }
  lock.lock();

  for (PendingAppend* p : group) {
    queue_.pop_front();
    p->done = true;
    if (p != &self) p->cv.notify_one();
  }
  stats_.commits++;
  stats_.appends += static_cast<int64_t>(group.size());
  stats_.largest_group = std::max<int64_t>(stats_.largest_group, group.size());
  if (!queue_.empty()) queue_.front()->cv.notify_one();  // the next leader
  return self.status;
}

LogStats GroupCommitter::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

size_t GroupCommitter::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

}  // namespace txcoord::coordinator::internal
