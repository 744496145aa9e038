// The PostgreSQL bank: 2pc and 3pc through prepared transactions, tcc through the barrier and
// holds.
#include <mutex>
#include <pqxx/pqxx>

#include "bank.h"
#include "txcoord/participant/barrier.h"
#include "txcoord/participant/pg_prepared.h"

namespace txcoord::examples::bank {
namespace {

using participant::Barrier;
using participant::CallbackContext;
using participant::PhaseResult;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS accounts (
  id      TEXT PRIMARY KEY,
  balance BIGINT NOT NULL CHECK (balance >= 0));
CREATE TABLE IF NOT EXISTS holds (
  gtid TEXT NOT NULL, branch_id TEXT NOT NULL, account TEXT NOT NULL, delta BIGINT NOT NULL,
  PRIMARY KEY (gtid, branch_id));
CREATE INDEX IF NOT EXISTS holds_by_account ON holds (account);
CREATE TABLE IF NOT EXISTS ledger (
  gtid TEXT NOT NULL, branch_id TEXT NOT NULL, account TEXT NOT NULL, delta BIGINT NOT NULL,
  at TIMESTAMPTZ NOT NULL DEFAULT now());
)sql";

// Checks and locks the account: FOR UPDATE keeps a concurrent debit from reading the same
// balance until this transaction ends (for a prepared one: until COMMIT/ROLLBACK PREPARED).
Status CheckFunds(pqxx::transaction_base& tx, const Movement& m, bool count_holds) {
  const pqxx::result row =
      tx.exec_params("SELECT balance FROM accounts WHERE id = $1 FOR UPDATE", m.account);
  if (row.empty()) return Status::Conflict("no account \"" + m.account + "\"");
  if (m.delta >= 0) return Status::Ok();
  int64_t available = row[0][0].as<int64_t>();
  if (count_holds) {
    available +=
        tx.exec_params("SELECT COALESCE(SUM(delta), 0) FROM holds WHERE account = $1 AND delta < 0",
                       m.account)[0][0]
            .as<int64_t>();
  }
  if (available + m.delta < 0) {
    return Status::Conflict("insufficient funds in " + m.account + ": " +
                            std::to_string(available) + " available, " + std::to_string(-m.delta) +
                            " asked");
  }
  return Status::Ok();
}

Status Apply(pqxx::transaction_base& tx, const std::string& gtid, const std::string& branch_id,
             const Movement& m) {
  tx.exec_params("UPDATE accounts SET balance = balance + $1 WHERE id = $2", m.delta, m.account);
  tx.exec_params("INSERT INTO ledger (gtid, branch_id, account, delta) VALUES ($1, $2, $3, $4)",
                 gtid, branch_id, m.account, m.delta);
  return Status::Ok();
}

Status Hold(pqxx::transaction_base& tx, const std::string& gtid, const std::string& branch_id,
            const Movement& m) {
  TXCOORD_RETURN_IF_ERROR(CheckFunds(tx, m, /*count_holds=*/true));
  tx.exec_params("INSERT INTO holds (gtid, branch_id, account, delta) VALUES ($1, $2, $3, $4)",
                 gtid, branch_id, m.account, m.delta);
  return Status::Ok();
}

// Turns what libpqxx throws inside business code into a Status the barrier understands.
template <typename Fn>
Status Guard(Fn&& fn) {
  try {
    return fn();
  } catch (const pqxx::broken_connection& e) {
    return Status::Unavailable(std::string("postgresql: ") + e.what());
  } catch (const pqxx::sql_error& e) {
    // Lock timeouts, serialization failures and deadlocks pass with a retry.
    return Status::Unavailable(std::string("postgresql: ") + e.what());
  }
}

// tcc on PostgreSQL: barrier + holds, one connection at a time.
class PgTccHandler final : public participant::BranchHandler {
 public:
  explicit PgTccHandler(std::string conninfo) : conninfo_(std::move(conninfo)) {}

  PhaseResult Commit(const CallbackContext& ctx) override {
    auto m = ParseMovement(ctx.payload);
    if (!m.ok()) return PhaseResult::Refused(m.status().message());
    return Run(ctx, [&](pqxx::transaction_base& tx) -> Status {
      return Guard([&]() -> Status {
        const pqxx::result released = tx.exec_params(
            "DELETE FROM holds WHERE gtid = $1 AND branch_id = $2", ctx.gtid, ctx.branch_id);
        if (released.affected_rows() != 1) {
          return Status::Internal("no hold for " + ctx.gtid + "/" + ctx.branch_id);
        }
        return Apply(tx, ctx.gtid, ctx.branch_id, *m);
      });
    });
  }

  PhaseResult Abort(const CallbackContext& ctx) override {
    return Run(ctx, [&](pqxx::transaction_base& tx) {
      return Guard([&] {
        tx.exec_params("DELETE FROM holds WHERE gtid = $1 AND branch_id = $2", ctx.gtid,
                       ctx.branch_id);
        return Status::Ok();
      });
    });
  }

  PhaseResult Try(const std::string& gtid, const std::string& branch_id, const Movement& m) {
    std::lock_guard lock(mu_);
    if (Status s = Connect(); !s.ok()) return PhaseResult::Transient(s.message());
    try {
      return Barrier::TryInTransaction(*conn_, gtid, branch_id, [&](pqxx::transaction_base& tx) {
        return Guard([&] { return Hold(tx, gtid, branch_id, m); });
      });
    } catch (const std::exception& e) {
      conn_.reset();
      return PhaseResult::Transient(std::string("postgresql: ") + e.what());
    }
  }

  Result<int64_t> Purge(std::chrono::seconds retention) {
    std::lock_guard lock(mu_);
    if (Status s = Connect(); !s.ok()) return s;
    try {
      pqxx::work tx(*conn_);
      auto purged = participant::PurgeBarrier(tx, retention);
      if (purged.ok()) tx.commit();
      return purged;
    } catch (const std::exception& e) {
      conn_.reset();
      return Status::Unavailable(std::string("postgresql: ") + e.what());
    }
  }

  Result<Snapshot> Read(bool with_ledger) {
    std::lock_guard lock(mu_);
    if (Status s = Connect(); !s.ok()) return s;
    try {
      pqxx::work tx(*conn_);
      Snapshot snap;
      for (const auto& row : tx.exec("SELECT id, balance FROM accounts ORDER BY id")) {
        snap.balances[row[0].as<std::string>()] = row[1].as<int64_t>();
      }
      snap.held = tx.exec("SELECT COUNT(*) FROM holds")[0][0].as<int64_t>();
      if (with_ledger) {
        for (const auto& row :
             tx.exec("SELECT gtid, branch_id, account, delta FROM ledger ORDER BY gtid")) {
          snap.ledger.push_back({row[0].as<std::string>(), row[1].as<std::string>(),
                                 row[2].as<std::string>(), row[3].as<int64_t>()});
        }
      }
      tx.commit();
      return snap;
    } catch (const std::exception& e) {
      conn_.reset();
      return Status::Unavailable(std::string("postgresql: ") + e.what());
    }
  }

 private:
  // REQUIRES: mu_ held.
  Status Connect() {
    if (conn_ && conn_->is_open()) return Status::Ok();
    try {
      conn_ = std::make_unique<pqxx::connection>(conninfo_);
      return Status::Ok();
    } catch (const std::exception& e) {
      conn_.reset();
      return Status::Unavailable(std::string("postgresql: ") + e.what());
    }
  }

  PhaseResult Run(const CallbackContext& ctx, const participant::PgBusiness& business) {
    std::lock_guard lock(mu_);
    if (Status s = Connect(); !s.ok()) return PhaseResult::Transient(s.message());
    try {
      return Barrier::RunInTransaction(*conn_, ctx, business);
    } catch (const std::exception& e) {
      conn_.reset();
      return PhaseResult::Transient(std::string("postgresql: ") + e.what());
    }
  }

  const std::string conninfo_;
  std::mutex mu_;
  std::unique_ptr<pqxx::connection> conn_;  // GUARDED_BY(mu_)
};

class PgBank final : public Bank {
 public:
  PgBank(std::unique_ptr<participant::PgPreparedAdapter> adapter, std::string conninfo)
      : adapter_(std::move(adapter)),
        two_phase_(*adapter_,
                   [](pqxx::transaction_base& tx, const CallbackContext& ctx) -> Status {
                     auto m = ParseMovement(ctx.payload);
                     if (!m.ok()) return Status::Conflict(m.status().message());
                     return Guard([&]() -> Status {
                       TXCOORD_RETURN_IF_ERROR(CheckFunds(tx, *m, /*count_holds=*/true));
                       return Apply(tx, ctx.gtid, ctx.branch_id, *m);
                     });
                   }),
        tcc_(std::move(conninfo)) {}

  participant::BranchHandler& TwoPhase() override { return two_phase_; }
  // can-commit prepares like prepare, pre-commit is recorded, commit/abort finish the prepared
  // transaction: nothing needs the payload after the vote.
  participant::BranchHandler& ThreePhase() override { return two_phase_; }
  Result<std::vector<participant::ThreePhaseInDoubt>> ThreePhaseInDoubt() override {
    return adapter_->ListThreePhaseInDoubt();
  }
  participant::BranchHandler& Tcc() override { return tcc_; }

  PhaseResult Try(const std::string& gtid, const std::string& branch_id,
                  const google::protobuf::Value& payload) override {
    auto m = ParseMovement(payload);
    if (!m.ok()) return PhaseResult::Refused(m.status().message());
    return tcc_.Try(gtid, branch_id, *m);
  }

  Result<Snapshot> Read(bool with_ledger) override { return tcc_.Read(with_ledger); }
  Result<int64_t> PurgeBarrier(std::chrono::seconds retention) override {
    return tcc_.Purge(retention);
  }

  Status ResolveInDoubt(participant::CoordinatorClient& coordinator) override {
    auto report = adapter_->ResolveInDoubt(coordinator);
    if (!report.ok()) return report.status();
    if (report->left > 0) {
      return Status::Unavailable(std::to_string(report->left) +
                                 " prepared branches still in doubt");
    }
    return Status::Ok();
  }

 private:
  std::unique_ptr<participant::PgPreparedAdapter> adapter_;
  participant::PgPreparedHandler two_phase_;
  PgTccHandler tcc_;
};

}  // namespace

Result<std::unique_ptr<Bank>> OpenPgBank(const std::string& conninfo, const std::string& name,
                                         const std::map<std::string, int64_t>& seed) {
  try {
    pqxx::connection conn(conninfo);
    pqxx::work tx(conn);
    // Nothing here may wait for a lock a prepared transaction holds: after a crash, those are
    // resolved only once this bank is up. So the DDL runs only when the tables are missing (even
    // CREATE INDEX IF NOT EXISTS locks its table first), and a seed account is inserted only when
    // no committed row has its id (an INSERT ... ON CONFLICT would wait for the prepared
    // transaction that updated that row).
    tx.exec("SELECT pg_advisory_xact_lock(4711)");  // two banks starting at once
    if (!tx.exec("SELECT to_regclass('ledger') IS NOT NULL")[0][0].as<bool>()) tx.exec(kSchema);
    TXCOORD_RETURN_IF_ERROR(Barrier::EnsureSchema(tx));
    for (const auto& [account, balance] : seed) {
      tx.exec_params(
          "INSERT INTO accounts (id, balance) SELECT $1, $2 "
          "WHERE NOT EXISTS (SELECT 1 FROM accounts WHERE id = $1)",
          account, balance);
    }
    tx.commit();
  } catch (const std::exception& e) {
    return Status::Unavailable(std::string("postgresql: ") + e.what());
  }
  participant::PgPreparedOptions options;
  options.conninfo = conninfo;
  options.xid_prefix = "bank-" + name;
  options.lock_timeout = std::chrono::milliseconds(1000);
  auto adapter = participant::PgPreparedAdapter::Open(options);
  if (!adapter.ok()) return adapter.status();
  return std::unique_ptr<Bank>(std::make_unique<PgBank>(std::move(*adapter), conninfo));
}

}  // namespace txcoord::examples::bank
