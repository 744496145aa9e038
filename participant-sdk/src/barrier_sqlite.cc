// The barrier on SQLite: the caller's connection and transaction.
#include <memory>
#include <string>

#include "barrier_store.h"
#include "sqlite_util.h"

namespace txcoord::participant {
namespace {

using internal::BarrierRow;
using internal::Op;
using internal::OpName;
using internal::SqliteStatus;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS txcoord_barrier (
  gtid       TEXT NOT NULL,
  branch_id  TEXT NOT NULL,
  op         TEXT NOT NULL,
  origin     TEXT NOT NULL,
  outcome    TEXT NOT NULL,
  reason     TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  PRIMARY KEY (gtid, branch_id, op)
);
)sql";

constexpr const char* kThreePhaseInDoubt = R"sql(
SELECT f.gtid, f.branch_id,
       EXISTS (SELECT 1 FROM txcoord_barrier p WHERE p.gtid = f.gtid AND p.branch_id = f.branch_id
               AND p.op = 'pre' AND p.outcome = 'done')
FROM txcoord_barrier f
WHERE f.op = 'first' AND f.origin = 'can-commit' AND f.outcome = 'done'
  AND NOT EXISTS (SELECT 1 FROM txcoord_barrier o WHERE o.gtid = f.gtid
                  AND o.branch_id = f.branch_id AND o.op IN ('finish', 'undo'))
ORDER BY f.created_at, f.gtid, f.branch_id
)sql";

class SqliteBarrierStore final : public internal::BarrierStore {
 public:
  SqliteBarrierStore(sqlite3* db, const CallbackContext& ctx, const SqliteBusiness& business)
      : db_(db), ctx_(ctx), business_(business) {}

  Status CheckTransaction() override {
    if (db_ == nullptr) return Status::InvalidArgument("no SQLite connection (null sqlite3*)");
    if (sqlite3_get_autocommit(db_) != 0) {
      return Status::InvalidArgument(
          "Barrier::Run needs an open transaction (BEGIN IMMEDIATE); use RunInTransaction to "
          "have the barrier begin and commit one");
    }
    return Status::Ok();
  }

  Status Savepoint(std::string_view name) override {
    return Exec("SAVEPOINT " + std::string(name));
  }

  Status RollbackTo(std::string_view name) override {
    if (sqlite3_get_autocommit(db_) != 0) {
      return Status::Unavailable("the transaction was rolled back (by SQLite or the business)");
    }
    TXCOORD_RETURN_IF_ERROR(Exec("ROLLBACK TO " + std::string(name)));
    return Exec("RELEASE " + std::string(name));
  }

  Status Release(std::string_view name) override {
    if (sqlite3_get_autocommit(db_) != 0) {
      return Status::Unavailable(
          "the transaction ended inside the barrier (did the business function commit or roll "
          "back?); nothing of this phase is kept");
    }
    return Exec("RELEASE " + std::string(name));
  }

  Result<bool> InsertIfAbsent(Op op, std::string_view origin, std::string_view outcome) override {
    SqliteStatement stmt(db_);
    TXCOORD_RETURN_IF_ERROR(Prepare(stmt,
                                    "INSERT INTO txcoord_barrier (gtid, branch_id, op, origin, "
                                    "outcome) VALUES (?1, ?2, ?3, ?4, ?5) "
                                    "ON CONFLICT (gtid, branch_id, op) DO NOTHING"));
    stmt.Bind(1, ctx_.gtid);
    stmt.Bind(2, ctx_.branch_id);
    stmt.Bind(3, OpName(op));
    stmt.Bind(4, origin);
    stmt.Bind(5, outcome);
    const int rc = stmt.Step();
    if (rc != SQLITE_DONE) return SqliteStatus(db_, rc, "insert barrier row");
    return sqlite3_changes(db_) == 1;
  }

  Result<std::optional<BarrierRow>> Read(Op op) override {
    SqliteStatement stmt(db_);
    TXCOORD_RETURN_IF_ERROR(Prepare(stmt,
                                    "SELECT origin, outcome, reason FROM txcoord_barrier "
                                    "WHERE gtid = ?1 AND branch_id = ?2 AND op = ?3"));
    stmt.Bind(1, ctx_.gtid);
    stmt.Bind(2, ctx_.branch_id);
    stmt.Bind(3, OpName(op));
    const int rc = stmt.Step();
    if (rc == SQLITE_DONE) return std::optional<BarrierRow>();
    if (rc != SQLITE_ROW) return SqliteStatus(db_, rc, "read barrier row");
    return std::optional<BarrierRow>(BarrierRow{stmt.Text(0), stmt.Text(1), stmt.Text(2)});
  }

  Status SetOutcome(Op op, std::string_view outcome, std::string_view reason) override {
    SqliteStatement stmt(db_);
    TXCOORD_RETURN_IF_ERROR(Prepare(stmt,
                                    "UPDATE txcoord_barrier SET outcome = ?4, reason = ?5 "
                                    "WHERE gtid = ?1 AND branch_id = ?2 AND op = ?3"));
    stmt.Bind(1, ctx_.gtid);
    stmt.Bind(2, ctx_.branch_id);
    stmt.Bind(3, OpName(op));
    stmt.Bind(4, outcome);
    stmt.Bind(5, reason);
    const int rc = stmt.Step();
    if (rc != SQLITE_DONE) return SqliteStatus(db_, rc, "update barrier row");
    return Status::Ok();
  }

  Status LockBranch() override { return Status::Ok(); }  // BEGIN IMMEDIATE serializes writers

  Status EnsureSchema() override { return Barrier::EnsureSchema(db_); }

  bool TableMissing() const override { return table_missing_; }

  Status CallBusiness() override {
    if (!business_) return Status::InvalidArgument("no business function given");
    try {
      Status status = business_(db_);
      if (sqlite3_get_autocommit(db_) != 0) {
        return Status::Internal(
            "the business function ended the transaction (it must not commit or roll back)");
      }
      return status;
    } catch (const std::exception& e) {
      return Status::Internal(std::string("business function threw: ") + e.what());
    } catch (...) {
      return Status::Internal("business function threw a non-standard exception");
    }
  }

 private:
  Status Exec(const std::string& sql) {
    char* err = nullptr;
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    sqlite3_free(err);
    if (rc != SQLITE_OK) return SqliteStatus(db_, rc, sql);
    return Status::Ok();
  }

  Status Prepare(SqliteStatement& stmt, const char* sql) {
    const int rc = stmt.Prepare(sql);
    table_missing_ =
        rc != SQLITE_OK && std::string_view(sqlite3_errmsg(db_)).starts_with("no such table");
    if (rc != SQLITE_OK) return SqliteStatus(db_, rc, "prepare barrier statement");
    return Status::Ok();
  }

  sqlite3* const db_;
  const CallbackContext& ctx_;
  const SqliteBusiness& business_;
  bool table_missing_ = false;
};

}  // namespace

Status Barrier::EnsureSchema(sqlite3* db) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db, kSchema, nullptr, nullptr, &err);
  sqlite3_free(err);
  if (rc != SQLITE_OK) return SqliteStatus(db, rc, "create txcoord_barrier");
  return Status::Ok();
}

BarrierResult Barrier::Run(sqlite3* db, const CallbackContext& ctx,
                           const SqliteBusiness& business) {
  SqliteBarrierStore store(db, ctx, business);
  return internal::RunBarrier(store, ctx);
}

BarrierResult Barrier::RunInTransaction(sqlite3* db, const CallbackContext& ctx,
                                        const SqliteBusiness& business) {
  if (db == nullptr) {
    return {BarrierResult::Path::kFailed, PhaseResult::Failed("no SQLite connection")};
  }
  if (sqlite3_get_autocommit(db) == 0) {
    return {BarrierResult::Path::kFailed,
            PhaseResult::Failed(
                "RunInTransaction called while the connection is in a transaction: call Run "
                "inside it, and do not share one connection between threads without a lock")};
  }
  char* err = nullptr;
  int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, &err);
  sqlite3_free(err);
  if (rc != SQLITE_OK) {
    return {BarrierResult::Path::kFailed,
            PhaseResult::FromStatus(SqliteStatus(db, rc, "begin barrier transaction"))};
  }
  BarrierResult result = Run(db, ctx, business);
  if (!internal::KeepsTransaction(result)) {
    if (sqlite3_get_autocommit(db) == 0) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return result;
  }
  rc = sqlite3_exec(db, "COMMIT", nullptr, nullptr, &err);
  sqlite3_free(err);
  if (rc != SQLITE_OK) {
    Status st = SqliteStatus(db, rc, "commit barrier transaction");
    if (sqlite3_get_autocommit(db) == 0) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return {BarrierResult::Path::kFailed, PhaseResult::FromStatus(st)};
  }
  return result;
}

BarrierResult Barrier::Try(sqlite3* db, std::string_view gtid, std::string_view branch_id,
                           const SqliteBusiness& business) {
  return Run(db, internal::TryContext(gtid, branch_id), business);
}

BarrierResult Barrier::TryInTransaction(sqlite3* db, std::string_view gtid,
                                        std::string_view branch_id,
                                        const SqliteBusiness& business) {
  return RunInTransaction(db, internal::TryContext(gtid, branch_id), business);
}

Result<std::vector<ThreePhaseInDoubt>> ListThreePhaseInDoubt(sqlite3* db) {
  SqliteStatement stmt(db);
  int rc = stmt.Prepare(kThreePhaseInDoubt);
  if (rc != SQLITE_OK) {
    if (std::string_view(sqlite3_errmsg(db)).starts_with("no such table")) {
      return std::vector<ThreePhaseInDoubt>();
    }
    return SqliteStatus(db, rc, "list 3pc branches in doubt");
  }
  std::vector<ThreePhaseInDoubt> out;
  while ((rc = stmt.Step()) == SQLITE_ROW) {
    out.push_back({stmt.Text(0), stmt.Text(1), stmt.Int(2) != 0});
  }
  if (rc != SQLITE_DONE) return SqliteStatus(db, rc, "list 3pc branches in doubt");
  return out;
}

Result<int64_t> PurgeBarrier(sqlite3* db, std::chrono::seconds older_than) {
  if (older_than.count() <= 0) {
    return Status::InvalidArgument("PurgeBarrier: older_than must be positive");
  }
  // A branch goes as a whole, once its newest row is old, unless it still awaits its outcome.
  const char* sql = R"sql(
DELETE FROM txcoord_barrier WHERE (gtid, branch_id) IN (
  SELECT gtid, branch_id FROM txcoord_barrier GROUP BY gtid, branch_id
  HAVING max(created_at) < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1)
     AND NOT (sum(op = 'first' AND outcome = 'done'
                  AND origin IN ('prepare', 'try', 'can-commit')) > 0
              AND sum(op IN ('finish', 'undo')) = 0))
)sql";
  SqliteStatement stmt(db);
  int rc = stmt.Prepare(sql);
  if (rc != SQLITE_OK) {
    if (std::string_view(sqlite3_errmsg(db)).starts_with("no such table")) return int64_t{0};
    return SqliteStatus(db, rc, "purge barrier");
  }
  stmt.Bind(1, "-" + std::to_string(older_than.count()) + " seconds");
  rc = stmt.Step();
  if (rc != SQLITE_DONE) return SqliteStatus(db, rc, "purge barrier");
  return static_cast<int64_t>(sqlite3_changes(db));
}

}  // namespace txcoord::participant
