#include <exception>
#include <string>

#include "log_internal.h"

namespace txcoord::coordinator::internal {

GroupCommitter::GroupCommitter(int max_batch, CommitFn commit_fn)
    : group_(max_batch, [commit = std::move(commit_fn)](std::span<PendingAppend* const> batch) {
        try {
          commit(batch);
        } catch (const std::exception& e) {
          // The backend cleaned up what it could; what happened to the group is unknown.
          for (PendingAppend* p : batch) {
            p->status = Status::Internal(std::string("append: ") + e.what());
          }
        } catch (...) {
          for (PendingAppend* p : batch) p->status = Status::Internal("append: unknown exception");
        }
      }) {}

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

LogStats GroupCommitter::stats() const {
  const GroupStats s = group_.stats();
  return LogStats{.commits = s.groups, .appends = s.members, .largest_group = s.largest_group};
}

size_t GroupCommitter::queued() const { return group_.queued(); }

}  // namespace txcoord::coordinator::internal
