#include <spdlog/spdlog.h>

#include <exception>
#include <memory>
#include <string>

#include "log_internal.h"

namespace txcoord::coordinator::internal {

GroupCommitter::GroupCommitter(int max_batch, CommitFn commit_fn)
    : group_(
          max_batch,
          [this, commit = std::move(commit_fn)](std::span<PendingAppend* const> members) {
            // The flusher's member carries nothing; a group of nothing else commits nothing.
            thread_local std::vector<PendingAppend*> batch;
            batch.clear();
            for (PendingAppend* p : members) {
              if (p->records.empty()) {
                p->status = Status::Ok();
              } else {
                batch.push_back(p);
              }
            }
            if (batch.empty()) return;
            try {
              commit(batch);
            } catch (const std::exception& e) {
              // The backend cleaned up what it could; what happened to the group is unknown.
              for (PendingAppend* p : batch) {
                p->status = Status::Internal(std::string("append: ") + e.what());
              }
            } catch (...) {
              for (PendingAppend* p : batch) {
                p->status = Status::Internal("append: unknown exception");
              }
            }
            commits_.fetch_add(1, std::memory_order_relaxed);
            appends_.fetch_add(static_cast<int64_t>(batch.size()), std::memory_order_relaxed);
            int64_t largest = largest_.load(std::memory_order_relaxed);
            const auto size = static_cast<int64_t>(batch.size());
            while (size > largest && !largest_.compare_exchange_weak(largest, size)) {
            }
          },
          [this](PendingAppend* p) {
            std::unique_ptr<PendingAppend> owned(p);
            try {
              owned->done(owned->status);
            } catch (const std::exception& e) {
              // Nothing to hand it to: the leader running this is another append's thread.
              spdlog::error("log: a completion after a held append failed: {}", e.what());
            }
            // After done: once the count is 0, Close knows no completion is still running (it
            // polls; a notification here would wake the flusher for nothing at every end).
            std::lock_guard lock(soon_mu_);
            --soon_pending_;
          }) {
  flusher_ = std::thread([this] { FlushLoop(); });
}

void GroupCommitter::Close() {
  {
    std::lock_guard lock(soon_mu_);
    stopping_ = true;
  }
  soon_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
}

GroupCommitter::~GroupCommitter() { Close(); }

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
  group_.Join(self);
  return self.status;
}

void GroupCommitter::SubmitSoon(std::vector<v1::LogRecord> records,
                                std::function<void(Status)> done) {
  if (records.empty()) return done(Status::InvalidArgument("an append needs at least one record"));
  for (const auto& r : records) {
    if (Status s = CheckRecord(r); !s.ok()) return done(s.WithContext("append rejected"));
  }
  auto pending = std::make_unique<PendingAppend>();
  pending->records = std::move(records);
  pending->done = std::move(done);
  bool wake;
  {
    std::lock_guard lock(soon_mu_);
    if (soon_pending_++ == 0) soon_since_ = std::chrono::steady_clock::now();
    wake = flusher_idle_;
    flusher_idle_ = false;  // one notification is enough
  }
  group_.Enqueue(*pending.release());  // owned by the group until its done runs
  if (wake) soon_cv_.notify_one();
}

// Commits what SubmitSoon holds once it has waited kSoonDelay without another append coming to
// take it along, and everything at once when stopping.
void GroupCommitter::FlushLoop() {
  std::unique_lock lock(soon_mu_);
  while (true) {
    if (soon_pending_ == 0) {
      if (stopping_) return;
      flusher_idle_ = true;
      soon_cv_.wait(lock, [&] { return stopping_ || soon_pending_ > 0; });
      flusher_idle_ = false;
      continue;
    }
    const auto due = soon_since_ + kSoonDelay;
    if (!stopping_ && std::chrono::steady_clock::now() < due) {
      soon_cv_.wait_until(lock, due);
      continue;
    }
    lock.unlock();
    if (group_.enqueued() > 0) {
      PendingAppend nothing;  // leads a group that takes the enqueued records along
      group_.Join(nothing);
    } else {
      std::this_thread::yield();  // another leader is committing them right now
    }
    lock.lock();
    // What is still pending came after that group formed (or is being committed by another
    // leader right now): it gets its own delay.
    soon_since_ = std::chrono::steady_clock::now();
  }
}

LogStats GroupCommitter::stats() const {
  return LogStats{.commits = commits_.load(std::memory_order_relaxed),
                  .appends = appends_.load(std::memory_order_relaxed),
                  .largest_group = largest_.load(std::memory_order_relaxed)};
}

size_t GroupCommitter::queued() const { return group_.queued(); }

}  // namespace txcoord::coordinator::internal
