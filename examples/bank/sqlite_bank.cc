// The SQLite bank: barrier + holds, for 2pc and tcc alike.
#include <sqlite3.h>

#include <filesystem>
#include <optional>

#include "bank.h"
#include "txcoord/participant/barrier.h"
#include "txcoord/participant/commit_group.h"
#include "txcoord/participant/sqlite_statement.h"
#include "txcoord/participant/wal_batch_vfs.h"

namespace txcoord::examples::bank {
namespace {

using participant::Barrier;
using participant::CallbackContext;
using participant::Phase;
using participant::PhaseResult;

// A prepared statement for the few queries here. Inside the commit group's business functions
// the SDK keeps it prepared per connection (participant/sqlite_statement.h).
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db), stmt_(db) {
    prepared_ = stmt_.Prepare(sql) == SQLITE_OK;
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& Bind(int i, const std::string& v) {
    if (prepared_) stmt_.Bind(i, v);
    return *this;
  }
  Stmt& Bind(int i, int64_t v) {
    if (prepared_) stmt_.Bind(i, v);
    return *this;
  }
  // SQLITE_ROW, SQLITE_DONE, or an error code.
  int Step() { return prepared_ ? stmt_.Step() : SQLITE_ERROR; }
  Status Run() {
    const int rc = Step();
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? Status::Ok() : Error();
  }
  int64_t Int(int col) { return stmt_.Int(col); }
  std::string Text(int col) { return stmt_.Text(col); }
  Status Error() const {
    // Busy and locked are worth a retry; the coordinator retries a 503.
    const int code = sqlite3_errcode(db_) & 0xff;
    std::string m = std::string("sqlite: ") + sqlite3_errmsg(db_);
    return code == SQLITE_BUSY || code == SQLITE_LOCKED ? Status::Unavailable(m)
                                                        : Status::Internal(m);
  }

 private:
  sqlite3* db_;
  participant::SqliteStatement stmt_;
  bool prepared_ = false;
};

Status Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string m = err ? err : "unknown error";
    sqlite3_free(err);
    return Status::Internal("sqlite: " + m);
  }
  return Status::Ok();
}

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS accounts (
  id      TEXT PRIMARY KEY,
  balance INTEGER NOT NULL CHECK (balance >= 0));
CREATE TABLE IF NOT EXISTS holds (
  gtid TEXT NOT NULL, branch_id TEXT NOT NULL, account TEXT NOT NULL, delta INTEGER NOT NULL,
  PRIMARY KEY (gtid, branch_id));
CREATE INDEX IF NOT EXISTS holds_by_account ON holds (account);
CREATE TABLE IF NOT EXISTS ledger (
  gtid TEXT NOT NULL, branch_id TEXT NOT NULL, account TEXT NOT NULL, delta INTEGER NOT NULL,
  at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')));
)sql";

// Checks that `m` may happen now: the account exists, and a debit leaves enough after what other
// unfinished debits hold. kConflict (a no vote) otherwise.
Status CheckFunds(sqlite3* db, const Movement& m) {
  Stmt balance(db, "SELECT balance FROM accounts WHERE id = ?");
  balance.Bind(1, m.account);
  const int rc = balance.Step();
  if (rc == SQLITE_DONE) return Status::Conflict("no account \"" + m.account + "\"");
  if (rc != SQLITE_ROW) return balance.Error();
  if (m.delta >= 0) return Status::Ok();
  Stmt held(db, "SELECT COALESCE(SUM(delta), 0) FROM holds WHERE account = ? AND delta < 0");
  held.Bind(1, m.account);
  if (held.Step() != SQLITE_ROW) return held.Error();
  const int64_t available = balance.Int(0) + held.Int(0);
  if (available + m.delta < 0) {
    return Status::Conflict("insufficient funds in " + m.account + ": " +
                            std::to_string(available) + " available, " + std::to_string(-m.delta) +
                            " asked");
  }
  return Status::Ok();
}

Status Apply(sqlite3* db, const std::string& gtid, const std::string& branch_id,
             const Movement& m) {
  Stmt update(db, "UPDATE accounts SET balance = balance + ? WHERE id = ?");
  TXCOORD_RETURN_IF_ERROR(update.Bind(1, m.delta).Bind(2, m.account).Run());
  Stmt ledger(db, "INSERT INTO ledger (gtid, branch_id, account, delta) VALUES (?, ?, ?, ?)");
  return ledger.Bind(1, gtid).Bind(2, branch_id).Bind(3, m.account).Bind(4, m.delta).Run();
}

// The hold of prepare and Try.
Status Hold(sqlite3* db, const std::string& gtid, const std::string& branch_id, const Movement& m) {
  TXCOORD_RETURN_IF_ERROR(CheckFunds(db, m));
  Stmt hold(db, "INSERT INTO holds (gtid, branch_id, account, delta) VALUES (?, ?, ?, ?)");
  return hold.Bind(1, gtid).Bind(2, branch_id).Bind(3, m.account).Bind(4, m.delta).Run();
}

class SqliteBank final : public Bank, public participant::BranchHandler {
 public:
  explicit SqliteBank(sqlite3* db) : db_(db), group_(db) {}
  // close_v2: the group, destroyed after this body, still holds prepared statements; the
  // connection closes once it finalizes them.
  ~SqliteBank() override { sqlite3_close_v2(db_); }

  Status Init(const std::map<std::string, int64_t>& seed) {
    return group_.Exclusive([&](sqlite3* db) -> Status {
      TXCOORD_RETURN_IF_ERROR(Exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"));
      TXCOORD_RETURN_IF_ERROR(Exec(db, kSchema));
      TXCOORD_RETURN_IF_ERROR(Barrier::EnsureSchema(db));
      for (const auto& [account, balance] : seed) {
        Stmt insert(db, "INSERT OR IGNORE INTO accounts (id, balance) VALUES (?, ?)");
        TXCOORD_RETURN_IF_ERROR(insert.Bind(1, account).Bind(2, balance).Run());
      }
      return Status::Ok();
    });
  }

  participant::BranchHandler& TwoPhase() override { return *this; }
  participant::BranchHandler& ThreePhase() override { return *this; }
  participant::BranchHandler& Tcc() override { return *this; }

  // 2pc prepare and the 3pc can-commit: the vote holds the amount.
  PhaseResult Prepare(const CallbackContext& ctx) override { return HoldBehindBarrier(ctx); }
  PhaseResult CanCommit(const CallbackContext& ctx) override { return HoldBehindBarrier(ctx); }

  // Every branch voted yes: nothing to change, but the barrier records it (so that an abort,
  // which only a broken coordinator would send now, is refused).
  PhaseResult PreCommit(const CallbackContext& ctx) override {
    return group_.Run(ctx, [](sqlite3*) { return Status::Ok(); });
  }

  PhaseResult Commit(const CallbackContext& ctx) override {
    std::optional<Movement> one_phase;
    if (ctx.one_phase) {
      auto m = ParseMovement(ctx.payload);
      if (!m.ok()) return PhaseResult::Refused(m.status().message());
      one_phase = *m;
    }
    return group_.Run(ctx, [&](sqlite3* db) -> Status {
      if (one_phase) {  // never prepared: check and apply in this one transaction
        TXCOORD_RETURN_IF_ERROR(CheckFunds(db, *one_phase));
        return Apply(db, ctx.gtid, ctx.branch_id, *one_phase);
      }
      // What to apply is what the first phase held, not the callback's payload: a 3pc branch
      // committed on its own timeout after a restart has no payload.
      Stmt held(db, "SELECT account, delta FROM holds WHERE gtid = ? AND branch_id = ?");
      held.Bind(1, ctx.gtid).Bind(2, ctx.branch_id);
      const int rc = held.Step();
      if (rc != SQLITE_ROW && rc != SQLITE_DONE) return held.Error();
      if (rc == SQLITE_DONE) {
        // The barrier lets commit through only after a prepare or Try that held: a missing hold
        // is a bug, answered 500 and retried, never applied blindly.
        return Status::Internal("no hold for " + ctx.gtid + "/" + ctx.branch_id);
      }
      const Movement m{held.Text(0), held.Int(1)};
      Stmt release(db, "DELETE FROM holds WHERE gtid = ? AND branch_id = ?");
      TXCOORD_RETURN_IF_ERROR(release.Bind(1, ctx.gtid).Bind(2, ctx.branch_id).Run());
      return Apply(db, ctx.gtid, ctx.branch_id, m);
    });
  }

  PhaseResult Abort(const CallbackContext& ctx) override {
    return group_.Run(ctx, [&](sqlite3* db) {
      Stmt release(db, "DELETE FROM holds WHERE gtid = ? AND branch_id = ?");
      return release.Bind(1, ctx.gtid).Bind(2, ctx.branch_id).Run();
    });
  }

  PhaseResult Try(const std::string& gtid, const std::string& branch_id,
                  const google::protobuf::Value& payload) override {
    auto m = ParseMovement(payload);
    if (!m.ok()) return PhaseResult::Refused(m.status().message());
    return group_.Try(gtid, branch_id, [&](sqlite3* db) { return Hold(db, gtid, branch_id, *m); });
  }

  Result<Snapshot> Read(bool with_ledger) override {
    return group_.Exclusive([&](sqlite3* db) -> Result<Snapshot> {
      Snapshot snap;
      TXCOORD_RETURN_IF_ERROR(Exec(db, "BEGIN"));
      int rc;
      {
        Stmt accounts(db, "SELECT id, balance FROM accounts ORDER BY id");
        while ((rc = accounts.Step()) == SQLITE_ROW) {
          snap.balances[accounts.Text(0)] = accounts.Int(1);
        }
        if (rc != SQLITE_DONE) {
          Status error = accounts.Error();
          (void)Exec(db, "ROLLBACK");
          return error;
        }
      }
      Stmt held(db, "SELECT COUNT(*) FROM holds");
      if (held.Step() == SQLITE_ROW) snap.held = held.Int(0);
      if (with_ledger) {
        Stmt ledger(db, "SELECT gtid, branch_id, account, delta FROM ledger ORDER BY gtid");
        while (ledger.Step() == SQLITE_ROW) {
          snap.ledger.push_back({ledger.Text(0), ledger.Text(1), ledger.Text(2), ledger.Int(3)});
        }
      }
      (void)Exec(db, "COMMIT");
      return snap;
    });
  }

  Status ResolveInDoubt(participant::CoordinatorClient&) override { return Status::Ok(); }

  Result<std::vector<participant::ThreePhaseInDoubt>> ThreePhaseInDoubt() override {
    return group_.Exclusive([](sqlite3* db) { return participant::ListThreePhaseInDoubt(db); });
  }

  Result<int64_t> PurgeBarrier(std::chrono::seconds retention) override {
    return group_.Exclusive([&](sqlite3* db) { return participant::PurgeBarrier(db, retention); });
  }

 private:
  PhaseResult HoldBehindBarrier(const CallbackContext& ctx) {
    auto m = ParseMovement(ctx.payload);
    if (!m.ok()) return PhaseResult::Refused(m.status().message());
    return group_.Run(ctx, [&](sqlite3* db) { return Hold(db, ctx.gtid, ctx.branch_id, *m); });
  }

  // One connection, used only through the group: concurrent callbacks share one local
  // transaction and one fsync (commit_group.h), and reads wait for the group in progress.
  sqlite3* const db_;
  participant::SqliteCommitGroup group_;
};

}  // namespace

Result<std::unique_ptr<Bank>> OpenSqliteBank(const std::string& path,
                                             const std::map<std::string, int64_t>& seed) {
  std::error_code ec;
  const auto dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  // Through the SDK's WAL-batching VFS: a group commit's WAL frames reach the file in a few
  // writes instead of two per page.
  auto vfs = participant::WalBatchingVfs();
  if (!vfs.ok()) return vfs.status();
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                      vfs->c_str()) != SQLITE_OK) {
    std::string m = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return Status::Unavailable("cannot open " + path + ": " + m);
  }
  sqlite3_busy_timeout(db, 5000);
  auto bank = std::make_unique<SqliteBank>(db);
  TXCOORD_RETURN_IF_ERROR(bank->Init(seed).WithContext(path));
  return std::unique_ptr<Bank>(std::move(bank));
}

}  // namespace txcoord::examples::bank
