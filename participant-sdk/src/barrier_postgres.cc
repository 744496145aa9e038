// The barrier on PostgreSQL: the caller's pqxx transaction.
#include <pqxx/pqxx>
#include <string>

#include "barrier_store.h"
#include "pg_errors.h"
#include "pg_schema.h"

namespace txcoord::participant {
namespace {

using internal::BarrierRow;
using internal::Op;
using internal::OpName;
using internal::PgStatus;

class PgBarrierStore final : public internal::BarrierStore {
 public:
  PgBarrierStore(pqxx::dbtransaction& tx, const CallbackContext& ctx, const PgBusiness& business)
      : tx_(tx), ctx_(ctx), business_(business) {}

  Status CheckTransaction() override { return Status::Ok(); }  // a dbtransaction always is one

  Status Savepoint(std::string_view name) override {
    return Exec("SAVEPOINT " + std::string(name));
  }

  Status RollbackTo(std::string_view name) override {
    TXCOORD_RETURN_IF_ERROR(Exec("ROLLBACK TO SAVEPOINT " + std::string(name)));
    return Exec("RELEASE SAVEPOINT " + std::string(name));
  }

  Status Release(std::string_view name) override {
    return Exec("RELEASE SAVEPOINT " + std::string(name));
  }

  Result<bool> InsertIfAbsent(Op op, std::string_view origin, std::string_view outcome) override {
    try {
      pqxx::result r = tx_.exec_params(
          "INSERT INTO txcoord_barrier (gtid, branch_id, op, origin, outcome) "
          "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (gtid, branch_id, op) DO NOTHING",
          ctx_.gtid, ctx_.branch_id, std::string(OpName(op)), std::string(origin),
          std::string(outcome));
      table_missing_ = false;
      return r.affected_rows() == 1;
    } catch (const std::exception& e) {
      table_missing_ = internal::SqlState(e) == "42P01";  // undefined_table
      return PgStatus("insert barrier row", e);
    }
  }

  Result<std::optional<BarrierRow>> Read(Op op) override {
    try {
      pqxx::result r = tx_.exec_params(
          "SELECT origin, outcome, reason FROM txcoord_barrier "
          "WHERE gtid = $1 AND branch_id = $2 AND op = $3",
          ctx_.gtid, ctx_.branch_id, std::string(OpName(op)));
      if (r.empty()) return std::optional<BarrierRow>();
      return std::optional<BarrierRow>(BarrierRow{
          r[0][0].as<std::string>(), r[0][1].as<std::string>(), r[0][2].as<std::string>()});
    } catch (const std::exception& e) {
      return PgStatus("read barrier row", e);
    }
  }

  Status SetOutcome(Op op, std::string_view outcome, std::string_view reason) override {
    try {
      tx_.exec_params(
          "UPDATE txcoord_barrier SET outcome = $4, reason = $5 "
          "WHERE gtid = $1 AND branch_id = $2 AND op = $3",
          ctx_.gtid, ctx_.branch_id, std::string(OpName(op)), std::string(outcome),
          std::string(reason));
      return Status::Ok();
    } catch (const std::exception& e) {
      return PgStatus("update barrier row", e);
    }
  }

  Status LockBranch() override {
    try {
      tx_.exec_params("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                      "txcoord-barrier/" + ctx_.gtid + "/" + ctx_.branch_id);
      return Status::Ok();
    } catch (const std::exception& e) {
      return PgStatus("lock the branch's barrier rows", e);
    }
  }

  Status EnsureSchema() override { return Barrier::EnsureSchema(tx_); }

  bool TableMissing() const override { return table_missing_; }

  Status CallBusiness() override {
    if (!business_) return Status::InvalidArgument("no business function given");
    try {
      return business_(tx_);
    } catch (const std::exception& e) {
      return PgStatus("business function threw", e);
    } catch (...) {
      return Status::Internal("business function threw a non-standard exception");
    }
  }

 private:
  Status Exec(const std::string& sql) {
    try {
      tx_.exec(sql);
      return Status::Ok();
    } catch (const std::exception& e) {
      return PgStatus(sql, e);
    }
  }

  pqxx::dbtransaction& tx_;
  const CallbackContext& ctx_;
  const PgBusiness& business_;
  bool table_missing_ = false;
};

}  // namespace

Status Barrier::EnsureSchema(pqxx::dbtransaction& tx) {
  try {
    internal::EnsureBarrierTable(tx);
    return Status::Ok();
  } catch (const std::exception& e) {
    return PgStatus("create txcoord_barrier", e);
  }
}

BarrierResult Barrier::Run(pqxx::dbtransaction& tx, const CallbackContext& ctx,
                           const PgBusiness& business) {
  PgBarrierStore store(tx, ctx, business);
  return internal::RunBarrier(store, ctx);
}

BarrierResult Barrier::RunInTransaction(pqxx::connection_base& conn, const CallbackContext& ctx,
                                        const PgBusiness& business) {
  try {
    pqxx::work tx(conn);
    BarrierResult result = Run(tx, ctx, business);
    const PhaseResult::Kind kind = result.reply.kind();
    if (kind != PhaseResult::Kind::kDone && kind != PhaseResult::Kind::kRefused) {
      tx.abort();
      return result;
    }
    tx.commit();
    return result;
  } catch (const std::exception& e) {
    // Also a commit whose outcome is unknown: the coordinator's retry finds the barrier row if
    // it did commit, and does the phase if it did not.
    return {BarrierResult::Path::kFailed,
            PhaseResult::FromStatus(PgStatus("barrier transaction", e))};
  }
}

BarrierResult Barrier::Try(pqxx::dbtransaction& tx, std::string_view gtid,
                           std::string_view branch_id, const PgBusiness& business) {
  return Run(tx, internal::TryContext(gtid, branch_id), business);
}

BarrierResult Barrier::TryInTransaction(pqxx::connection_base& conn, std::string_view gtid,
                                        std::string_view branch_id, const PgBusiness& business) {
  return RunInTransaction(conn, internal::TryContext(gtid, branch_id), business);
}

Result<std::vector<ThreePhaseInDoubt>> ListThreePhaseInDoubt(pqxx::dbtransaction& tx) {
  try {
    pqxx::result exists = tx.exec("SELECT to_regclass('txcoord_barrier') IS NOT NULL");
    if (!exists[0][0].as<bool>()) return std::vector<ThreePhaseInDoubt>();
    pqxx::result r = tx.exec(R"sql(
SELECT f.gtid, f.branch_id,
       EXISTS (SELECT 1 FROM txcoord_barrier p WHERE p.gtid = f.gtid AND p.branch_id = f.branch_id
               AND p.op = 'pre' AND p.outcome = 'done')
FROM txcoord_barrier f
WHERE f.op = 'first' AND f.origin = 'can-commit' AND f.outcome = 'done'
  AND NOT EXISTS (SELECT 1 FROM txcoord_barrier o WHERE o.gtid = f.gtid
                  AND o.branch_id = f.branch_id AND o.op IN ('finish', 'undo'))
ORDER BY f.created_at, f.gtid, f.branch_id
)sql");
    std::vector<ThreePhaseInDoubt> out;
    for (const auto& row : r) {
      out.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<bool>()});
    }
    return out;
  } catch (const std::exception& e) {
    return PgStatus("list 3pc branches in doubt", e);
  }
}

Result<int64_t> PurgeBarrier(pqxx::dbtransaction& tx, std::chrono::seconds older_than) {
  if (older_than.count() <= 0) {
    return Status::InvalidArgument("PurgeBarrier: older_than must be positive");
  }
  try {
    pqxx::result exists = tx.exec("SELECT to_regclass('txcoord_barrier') IS NOT NULL");
    if (!exists[0][0].as<bool>()) return int64_t{0};
    pqxx::result r = tx.exec_params(R"sql(
DELETE FROM txcoord_barrier WHERE (gtid, branch_id) IN (
  SELECT gtid, branch_id FROM txcoord_barrier GROUP BY gtid, branch_id
  HAVING max(created_at) < now() - make_interval(secs => $1)
     AND NOT (bool_or((op = 'first' AND outcome = 'done'
                       AND origin IN ('prepare', 'try', 'can-commit')) OR op = 'pre')
              AND NOT bool_or(op IN ('finish', 'undo'))))
)sql",
                                    static_cast<int64_t>(older_than.count()));
    return static_cast<int64_t>(r.affected_rows());
  } catch (const std::exception& e) {
    return PgStatus("purge barrier", e);
  }
}

}  // namespace txcoord::participant
