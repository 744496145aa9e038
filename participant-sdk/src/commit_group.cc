#include "txcoord/participant/commit_group.h"

#include <string>

#include "barrier_store.h"
#include "sqlite_util.h"

namespace txcoord::participant {
namespace {

using internal::KeepsTransaction;
using internal::SqliteStatus;

bool InTransaction(sqlite3* db) { return sqlite3_get_autocommit(db) == 0; }

Status Exec(sqlite3* db, const char* sql) {
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return SqliteStatus(db, rc, sql);
  return Status::Ok();
}

BarrierResult Failed(const Status& status) {
  return {BarrierResult::Path::kFailed, PhaseResult::FromStatus(status)};
}

}  // namespace

SqliteCommitGroup::SqliteCommitGroup(sqlite3* db, SqliteCommitGroupOptions options)
    : db_(db),
      statements_(std::make_unique<internal::StatementCache>(db)),
      group_(options.max_group, [this](std::span<Member* const> members) { RunGroup(members); }) {}

SqliteCommitGroup::~SqliteCommitGroup() = default;

BarrierResult SqliteCommitGroup::Run(const CallbackContext& ctx, const SqliteBusiness& business) {
  if (db_ == nullptr) return Failed(Status::InvalidArgument("no SQLite connection"));
  Member self{&ctx, &business, BarrierResult{}};
  group_.Join(self);
  return self.result;
}

BarrierResult SqliteCommitGroup::Try(std::string_view gtid, std::string_view branch_id,
                                     const SqliteBusiness& business) {
  return Run(internal::TryContext(gtid, branch_id), business);
}

// Runs on the leader's thread only (LeaderGroup), and must not throw: Barrier::Run catches what
// the business throws, and everything else here is SQLite's C API. A std::bad_alloc from the
// vector below would end the process, as it would almost anywhere else.
void SqliteCommitGroup::RunGroup(std::span<Member* const> members) {
  std::lock_guard lock(connection_mu_);
  const internal::StatementCache::Scope statements(statements_.get());
  std::vector<Member*> kept;  // members whose change is in the open transaction
  size_t next = 0;
  while (next < members.size()) {
    if (InTransaction(db_)) {
      // Only a misuse of Exclusive leaves one open; the barrier names it for each member.
      for (; next < members.size(); ++next) {
        members[next]->result =
            Barrier::RunInTransaction(db_, *members[next]->ctx, *members[next]->business);
      }
      return;
    }
    if (Status begun = Exec(db_, "BEGIN IMMEDIATE"); !begun.ok()) {
      for (; next < members.size(); ++next) members[next]->result = Failed(begun);
      return;
    }
    kept.clear();
    bool lost = false;
    while (next < members.size()) {
      Member& m = *members[next++];
      m.result = Barrier::Run(db_, *m.ctx, *m.business);
      if (KeepsTransaction(m.result)) kept.push_back(&m);
      if (!InTransaction(db_)) {
        // The transaction ended under m: what it held is committed or gone, nobody knows which.
        // Every member kept so far (m too, if it claims success) runs again alone, and the
        // barrier answers for whatever did commit; the rest start a new transaction.
        lost = true;
        break;
      }
    }
    if (lost) {
      RunAlone(kept);
      continue;
    }
    if (Status committed = Exec(db_, "COMMIT"); !committed.ok()) {
      if (InTransaction(db_)) (void)Exec(db_, "ROLLBACK");
      RunAlone(kept);
    }
  }
}

void SqliteCommitGroup::RunAlone(const std::vector<Member*>& members) {
  for (Member* m : members) m->result = Barrier::RunInTransaction(db_, *m->ctx, *m->business);
}

}  // namespace txcoord::participant
