// The barrier (barrier.h) on a real SQLite file and a real PostgreSQL database from the rig. The
// conformance suite runs against both, and against SQLite through a SqliteCommitGroup
// (commit_group.h); the concurrency tests are per backend, because what makes
// a second delivery wait differs (the SQLite database lock, a PostgreSQL row lock).
//
// Every business function records an "effect" row in the same transaction, so the tests check
// what was committed, not just what was called.
#include "txcoord/participant/barrier.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <future>
#include <latch>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <thread>

#include "sdk_test_util.h"
#include "txcoord/participant/commit_group.h"
#include "txcoord/testing/poll.h"
#include "txcoord/testing/postgres_server.h"

namespace txcoord::participant {
namespace {

using Path = BarrierResult::Path;
using testing::Ctx;
using testing::SqliteCount;
using testing::SqliteExec;
using testing::TempDir;

constexpr std::chrono::milliseconds kPollTimeout{20000};
constexpr std::chrono::milliseconds kPollInterval{5};

std::string EffectName(const CallbackContext& ctx) { return std::string(PhaseName(ctx.phase)); }

Status InsertSqliteEffect(sqlite3* db, const CallbackContext& ctx) {
  SqliteExec(db, "INSERT INTO effects (gtid, branch_id, phase) VALUES ('" + ctx.gtid + "', '" +
                     ctx.branch_id + "', '" + EffectName(ctx) + "')");
  return Status::Ok();
}

sqlite3* OpenSqlite(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    throw std::runtime_error("open " + path);
  }
  sqlite3_busy_timeout(db, 20000);
  SqliteExec(db, "PRAGMA journal_mode=WAL");
  return db;
}

// The barrier on SQLite, each callback in its own transaction (Barrier::RunInTransaction), or,
// with kGrouped, through a SqliteCommitGroup (commit_group.h), which must answer exactly the same.
template <bool kGrouped>
class SqliteBackendOf {
 public:
  SqliteBackendOf() : path_((dir_.path() / "participant.db").string()), db_(OpenSqlite(path_)) {
    SqliteExec(db_, "CREATE TABLE effects (gtid TEXT, branch_id TEXT, phase TEXT)");
    if (kGrouped) group_ = std::make_unique<SqliteCommitGroup>(db_);
  }
  ~SqliteBackendOf() {
    group_.reset();
    sqlite3_close(db_);
  }

  BarrierResult Run(const CallbackContext& ctx, Status answer = Status::Ok()) {
    return RunInTransaction(ctx, [&](sqlite3* db) {
      ++calls;
      TXCOORD_RETURN_IF_ERROR(InsertSqliteEffect(db, ctx));
      return answer;
    });
  }

  BarrierResult RunThrowing(const CallbackContext& ctx) {
    return RunInTransaction(ctx, [&](sqlite3* db) -> Status {
      ++calls;
      TXCOORD_RETURN_IF_ERROR(InsertSqliteEffect(db, ctx));
      throw std::runtime_error("disk on fire");
    });
  }

  BarrierResult Try(const std::string& gtid, const std::string& branch_id) {
    const SqliteBusiness business = [&](sqlite3* db) {
      ++calls;
      return InsertSqliteEffect(db, Ctx(gtid, branch_id, Phase::kTry));
    };
    if (group_) return group_->Try(gtid, branch_id, business);
    return Barrier::TryInTransaction(db_, gtid, branch_id, business);
  }

  // Run in the caller's transaction, which the caller then rolls back.
  BarrierResult RunAndRollBack(const CallbackContext& ctx) {
    return Use([&](sqlite3* conn) {
      SqliteExec(conn, "BEGIN IMMEDIATE");
      BarrierResult result = Barrier::Run(conn, ctx, [&](sqlite3* db) {
        ++calls;
        return InsertSqliteEffect(db, ctx);
      });
      SqliteExec(conn, "ROLLBACK");
      return result;
    });
  }

  int64_t Effects(const std::string& gtid, const std::string& branch_id, Phase phase) {
    return Use([&](sqlite3* db) {
      return SqliteCount(db, "SELECT count(*) FROM effects WHERE gtid = '" + gtid +
                                 "' AND branch_id = '" + branch_id + "' AND phase = '" +
                                 std::string(PhaseName(phase)) + "'");
    });
  }

  int64_t BarrierRows() {
    return Use([&](sqlite3* db) -> int64_t {
      if (SqliteCount(db, "SELECT count(*) FROM sqlite_master WHERE name = 'txcoord_barrier'") ==
          0) {
        return 0;
      }
      return SqliteCount(db, "SELECT count(*) FROM txcoord_barrier");
    });
  }

  void Age(const std::string& gtid, int hours) {
    Use([&](sqlite3* db) {
      SqliteExec(db,
                 "UPDATE txcoord_barrier SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', "
                 "'now', '-" +
                     std::to_string(hours) + " hours') WHERE gtid = '" + gtid + "'");
      return 0;
    });
  }

  Result<int64_t> Purge(std::chrono::seconds older_than) {
    return Use([&](sqlite3* db) { return PurgeBarrier(db, older_than); });
  }

  Result<std::vector<ThreePhaseInDoubt>> InDoubt() {
    return Use([&](sqlite3* db) { return ListThreePhaseInDoubt(db); });
  }

  int calls = 0;

 private:
  BarrierResult RunInTransaction(const CallbackContext& ctx, const SqliteBusiness& business) {
    if (group_) return group_->Run(ctx, business);
    return Barrier::RunInTransaction(db_, ctx, business);
  }

  template <typename Fn>
  auto Use(Fn&& fn) {
    if (group_) return group_->Exclusive(fn);
    return fn(db_);
  }

  TempDir dir_;
  const std::string path_;
  sqlite3* const db_;
  std::unique_ptr<SqliteCommitGroup> group_;
};
using SqliteBackend = SqliteBackendOf<false>;
using SqliteGroupBackend = SqliteBackendOf<true>;

Status InsertPgEffect(pqxx::transaction_base& tx, const CallbackContext& ctx) {
  tx.exec_params("INSERT INTO effects (gtid, branch_id, phase) VALUES ($1, $2, $3)", ctx.gtid,
                 ctx.branch_id, EffectName(ctx));
  return Status::Ok();
}

class PostgresBackend {
 public:
  PostgresBackend()
      : conninfo_(txcoord::testing::SharedPostgres().ConnInfo(
            txcoord::testing::SharedPostgres().CreateDatabase("barrier").value())),
        conn_(conninfo_) {
    pqxx::work tx(conn_);
    tx.exec("CREATE TABLE effects (gtid TEXT, branch_id TEXT, phase TEXT)");
    tx.commit();
  }

  BarrierResult Run(const CallbackContext& ctx, Status answer = Status::Ok()) {
    return Barrier::RunInTransaction(conn_, ctx, [&](pqxx::transaction_base& tx) {
      ++calls;
      TXCOORD_RETURN_IF_ERROR(InsertPgEffect(tx, ctx));
      return answer;
    });
  }

  BarrierResult RunThrowing(const CallbackContext& ctx) {
    return Barrier::RunInTransaction(conn_, ctx, [&](pqxx::transaction_base& tx) -> Status {
      ++calls;
      TXCOORD_RETURN_IF_ERROR(InsertPgEffect(tx, ctx));
      tx.exec("SELECT no_such_column FROM effects");  // throws pqxx::undefined_column
      return Status::Ok();
    });
  }

  BarrierResult Try(const std::string& gtid, const std::string& branch_id) {
    return Barrier::TryInTransaction(conn_, gtid, branch_id, [&](pqxx::transaction_base& tx) {
      ++calls;
      return InsertPgEffect(tx, Ctx(gtid, branch_id, Phase::kTry));
    });
  }

  BarrierResult RunAndRollBack(const CallbackContext& ctx) {
    pqxx::work tx(conn_);
    BarrierResult result = Barrier::Run(tx, ctx, [&](pqxx::transaction_base& t) {
      ++calls;
      return InsertPgEffect(t, ctx);
    });
    tx.abort();
    return result;
  }

  int64_t Effects(const std::string& gtid, const std::string& branch_id, Phase phase) {
    pqxx::nontransaction tx(conn_);
    return tx
        .exec_params(
            "SELECT count(*) FROM effects WHERE gtid = $1 AND branch_id = $2 AND phase = $3", gtid,
            branch_id, std::string(PhaseName(phase)))[0][0]
        .as<int64_t>();
  }

  int64_t BarrierRows() {
    pqxx::nontransaction tx(conn_);
    if (tx.exec("SELECT to_regclass('txcoord_barrier') IS NULL")[0][0].as<bool>()) return 0;
    return tx.exec("SELECT count(*) FROM txcoord_barrier")[0][0].as<int64_t>();
  }

  void Age(const std::string& gtid, int hours) {
    pqxx::work tx(conn_);
    tx.exec_params(
        "UPDATE txcoord_barrier SET created_at = now() - make_interval(hours => $2) "
        "WHERE gtid = $1",
        gtid, hours);
    tx.commit();
  }

  Result<int64_t> Purge(std::chrono::seconds older_than) {
    pqxx::work tx(conn_);
    Result<int64_t> purged = PurgeBarrier(tx, older_than);
    tx.commit();
    return purged;
  }

  Result<std::vector<ThreePhaseInDoubt>> InDoubt() {
    pqxx::work tx(conn_);
    return ListThreePhaseInDoubt(tx);
  }

  const std::string& conninfo() const { return conninfo_; }

  int calls = 0;

 private:
  const std::string conninfo_;
  pqxx::connection conn_;
};

template <typename Backend>
class BarrierConformance : public ::testing::Test {
 protected:
  Backend db;
};

using Backends = ::testing::Types<SqliteBackend, SqliteGroupBackend, PostgresBackend>;
class BackendNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    if (std::is_same_v<T, SqliteBackend>) return "Sqlite";
    if (std::is_same_v<T, SqliteGroupBackend>) return "SqliteGroup";
    return "Postgres";
  }
};
TYPED_TEST_SUITE(BarrierConformance, Backends, BackendNames);

std::string_view KindName(PhaseResult::Kind kind) {
  switch (kind) {
    case PhaseResult::Kind::kDone:
      return "done";
    case PhaseResult::Kind::kRefused:
      return "refused";
    case PhaseResult::Kind::kInProgress:
      return "in progress";
    case PhaseResult::Kind::kTransient:
      return "transient";
    case PhaseResult::Kind::kFailed:
      return "failed";
  }
  return "?";
}

::testing::AssertionResult Is(const BarrierResult& result, Path path, PhaseResult::Kind kind) {
  if (result.path == path && result.reply.kind() == kind) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "got path " << BarrierPathName(result.path) << ", reply " << result.reply.ToString()
         << "; want path " << BarrierPathName(path) << ", reply " << KindName(kind);
}

using Kind = PhaseResult::Kind;

TYPED_TEST(BarrierConformance, APhaseRunsOnceAndRepeatsAnswerTheSame) {
  auto& db = this->db;
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kPrepare)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kPrepare)), Path::kRepeated, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kCommit)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kCommit)), Path::kRepeated, Kind::kDone));
  // A prepare duplicated after the commit is still a repeat, not new work.
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kPrepare)), Path::kRepeated, Kind::kDone));
  EXPECT_EQ(db.calls, 2);
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kPrepare), 1);
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kCommit), 1);
}

TYPED_TEST(BarrierConformance, BranchesAndTransactionsAreIndependent) {
  auto& db = this->db;
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kPrepare)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b2", Phase::kPrepare)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g2", "b1", Phase::kPrepare)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b2", Phase::kAbort)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kCommit)), Path::kRan, Kind::kDone));
  EXPECT_EQ(db.Effects("g1", "b2", Phase::kAbort), 1);
  EXPECT_EQ(db.Effects("g2", "b1", Phase::kAbort), 0);
}

TYPED_TEST(BarrierConformance, AbortAfterPrepareUndoesOnce) {
  auto& db = this->db;
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kPrepare)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kAbort)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kAbort)), Path::kRepeated, Kind::kDone));
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kAbort), 1);
  // A prepare duplicated after the abort must not be a yes vote any more: the branch's work is
  // undone (contract section 4: a prepare after its abort gets 409).
  const BarrierResult late = db.Run(Ctx("g1", "b1", Phase::kPrepare));
  EXPECT_TRUE(Is(late, Path::kBlocked, Kind::kRefused));
  EXPECT_NE(late.reply.message().find("already aborted"), std::string::npos)
      << late.reply.message();
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kPrepare), 1);
}

TYPED_TEST(BarrierConformance, AbortBeforePrepareIsANullCompensationThatBlocksTheLatePrepare) {
  auto& db = this->db;
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kAbort)), Path::kNullCompensation, Kind::kDone));
  EXPECT_EQ(db.calls, 0) << "nothing to undo: the undo business must not run";
  const BarrierResult late = db.Run(Ctx("g1", "b1", Phase::kPrepare));
  EXPECT_TRUE(Is(late, Path::kBlocked, Kind::kRefused));
  EXPECT_EQ(late.reply.http_status(), 409);
  EXPECT_NE(late.reply.message().find("already aborted"), std::string::npos)
      << late.reply.message();
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kPrepare)), Path::kBlocked, Kind::kRefused));
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kAbort)), Path::kRepeated, Kind::kDone));
  EXPECT_EQ(db.calls, 0);
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kPrepare), 0);
}

TYPED_TEST(BarrierConformance, ARefusedPrepareStaysRefusedAndItsAbortIsANoOp) {
  auto& db = this->db;
  const BarrierResult refused =
      db.Run(Ctx("g1", "b1", Phase::kPrepare), Status::Conflict("insufficient funds in A"));
  EXPECT_TRUE(Is(refused, Path::kRefused, Kind::kRefused));
  EXPECT_EQ(refused.reply.message(), "insufficient funds in A");
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kPrepare), 0) << "the refused change is rolled back";

  // The funds are there now, but the vote was no: a repeat must not turn it into a yes.
  const BarrierResult again = db.Run(Ctx("g1", "b1", Phase::kPrepare));
  EXPECT_TRUE(Is(again, Path::kRepeated, Kind::kRefused));
  EXPECT_EQ(again.reply.message(), "insufficient funds in A");
  EXPECT_EQ(db.calls, 1);

  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kAbort)), Path::kNullCompensation, Kind::kDone));
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kAbort), 0) << "nothing was prepared, nothing to undo";
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kPrepare)), Path::kRepeated, Kind::kRefused));
}

TYPED_TEST(BarrierConformance, ATransientFailureLeavesNothingAndTheRetryRuns) {
  auto& db = this->db;
  const BarrierResult failed =
      db.Run(Ctx("g1", "b1", Phase::kPrepare), Status::Unavailable("ledger service down"));
  EXPECT_TRUE(Is(failed, Path::kFailed, Kind::kTransient));
  EXPECT_EQ(failed.reply.http_status(), 503);
  EXPECT_NE(failed.reply.message().find("ledger service down"), std::string::npos);
  EXPECT_EQ(db.BarrierRows(), 0);
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kPrepare), 0);
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kPrepare)), Path::kRan, Kind::kDone));
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kPrepare), 1);
}

TYPED_TEST(BarrierConformance, AThrowingBusinessIsAnsweredAndLeavesNothing) {
  auto& db = this->db;
  const BarrierResult failed = db.RunThrowing(Ctx("g1", "b1", Phase::kPrepare));
  EXPECT_EQ(failed.path, Path::kFailed);
  EXPECT_FALSE(failed.reply.done());
  EXPECT_NE(failed.reply.http_status(), 409) << "a crash is not a no vote";
  EXPECT_EQ(db.BarrierRows(), 0);
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kPrepare), 0);
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kPrepare)), Path::kRan, Kind::kDone));
}

TYPED_TEST(BarrierConformance, RolledBackWithTheCallersTransaction) {
  auto& db = this->db;
  // The barrier row is in the caller's transaction: rolled back with it, the phase did not run.
  EXPECT_TRUE(Is(db.RunAndRollBack(Ctx("g1", "b1", Phase::kPrepare)), Path::kRan, Kind::kDone));
  EXPECT_EQ(db.BarrierRows(), 0);
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kPrepare), 0);
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kPrepare)), Path::kRan, Kind::kDone));
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kPrepare), 1);
}

TYPED_TEST(BarrierConformance, CoordinatorBugsAreRefusedAndNotRecorded) {
  auto& db = this->db;
  // Commit without prepare.
  const BarrierResult commit = db.Run(Ctx("g1", "b1", Phase::kCommit));
  EXPECT_TRUE(Is(commit, Path::kProtocolViolation, Kind::kRefused));
  EXPECT_NE(commit.reply.message().find("never prepared"), std::string::npos);
  EXPECT_EQ(db.BarrierRows(), 0);
  // Not recorded: a real prepare and commit afterwards still work.
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kPrepare)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kCommit)), Path::kRan, Kind::kDone));
  // Abort after commit.
  const BarrierResult abort = db.Run(Ctx("g1", "b1", Phase::kAbort));
  EXPECT_TRUE(Is(abort, Path::kProtocolViolation, Kind::kRefused));
  EXPECT_NE(abort.reply.message().find("already committed"), std::string::npos);
  // Commit after abort.
  EXPECT_TRUE(Is(db.Run(Ctx("g2", "b1", Phase::kPrepare)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g2", "b1", Phase::kAbort)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(
      Is(db.Run(Ctx("g2", "b1", Phase::kCommit)), Path::kProtocolViolation, Kind::kRefused));
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kAbort), 0);
  EXPECT_EQ(db.Effects("g2", "b1", Phase::kCommit), 0);
}

TYPED_TEST(BarrierConformance, OnePhaseCommitIsFirstPhaseAndFinishInOne) {
  auto& db = this->db;
  const CallbackContext one_phase = Ctx("g1", "b1", Phase::kCommit, /*one_phase=*/true);
  EXPECT_TRUE(Is(db.Run(one_phase), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(one_phase), Path::kRepeated, Kind::kDone));
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kCommit), 1);
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kAbort)), Path::kProtocolViolation, Kind::kRefused));
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kAbort), 0);
}

TYPED_TEST(BarrierConformance, ARefusedOnePhaseCommitThenAbortBlocksALateDuplicate) {
  auto& db = this->db;
  const CallbackContext one_phase = Ctx("g1", "b1", Phase::kCommit, /*one_phase=*/true);
  EXPECT_TRUE(Is(db.Run(one_phase, Status::Conflict("account A is closed")), Path::kRefused,
                 Kind::kRefused));
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kCommit), 0);
  // The coordinator sends abort after the 409: a no-op.
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kAbort)), Path::kNullCompensation, Kind::kDone));
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kAbort), 0);
  // A duplicate of the one-phase commit arriving late must not commit now.
  const BarrierResult late = db.Run(one_phase);
  EXPECT_EQ(late.reply.http_status(), 409);
  EXPECT_EQ(late.reply.message(), "account A is closed");
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kCommit), 0);
  EXPECT_EQ(db.calls, 1);
}

TYPED_TEST(BarrierConformance, AnAbortBeforeTheOnePhaseCommitBlocksIt) {
  auto& db = this->db;
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kAbort)), Path::kNullCompensation, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kCommit, /*one_phase=*/true)), Path::kBlocked,
                 Kind::kRefused));
  EXPECT_EQ(db.calls, 0);
}

TYPED_TEST(BarrierConformance, TccTryIsBehindTheSameBarrier) {
  auto& db = this->db;
  EXPECT_TRUE(Is(db.Try("g1", "b1"), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Try("g1", "b1"), Path::kRepeated, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kCommit)), Path::kRan, Kind::kDone));  // Confirm
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kTry), 1);
  // A Cancel that overtakes its Try: null, and the Try that arrives afterwards is refused.
  EXPECT_TRUE(Is(db.Run(Ctx("g2", "b1", Phase::kAbort)), Path::kNullCompensation, Kind::kDone));
  EXPECT_TRUE(Is(db.Try("g2", "b1"), Path::kBlocked, Kind::kRefused));
  EXPECT_EQ(db.Effects("g2", "b1", Phase::kTry), 0);
}

TYPED_TEST(BarrierConformance, SagaActionAndCompensateMapToFirstAndUndo) {
  auto& db = this->db;
  EXPECT_TRUE(Is(db.Run(Ctx("s1", "reserve", Phase::kAction)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("s1", "reserve", Phase::kCompensate)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("s1", "reserve", Phase::kCompensate)), Path::kRepeated, Kind::kDone));
  EXPECT_TRUE(
      Is(db.Run(Ctx("s2", "reserve", Phase::kCompensate)), Path::kNullCompensation, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("s2", "reserve", Phase::kAction)), Path::kBlocked, Kind::kRefused));
  EXPECT_EQ(db.Effects("s1", "reserve", Phase::kCompensate), 1);
  EXPECT_EQ(db.Effects("s2", "reserve", Phase::kAction), 0);
}

// ---- 3pc (barrier.h's table): can-commit is a first phase, pre-commit needs its yes vote.

std::string InDoubtText(const Result<std::vector<ThreePhaseInDoubt>>& list) {
  if (!list.ok()) return "error: " + list.status().ToString();
  std::string text;
  for (const ThreePhaseInDoubt& b : *list) {
    text += b.gtid + "/" + b.branch_id + (b.pre_committed ? " pre-committed;" : " voted-yes;");
  }
  return text;
}

TYPED_TEST(BarrierConformance, ThreePcVotePreCommitAndCommitEachRunOnce) {
  auto& db = this->db;
  EXPECT_EQ(InDoubtText(db.InDoubt()), "") << "no table yet: nothing in doubt";
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kCanCommit)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kCanCommit)), Path::kRepeated, Kind::kDone));
  EXPECT_EQ(InDoubtText(db.InDoubt()), "g1/b1 voted-yes;");
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kPreCommit)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kPreCommit)), Path::kRepeated, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kCanCommit)), Path::kRepeated, Kind::kDone));
  EXPECT_EQ(InDoubtText(db.InDoubt()), "g1/b1 pre-committed;");
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kCommit)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kPreCommit)), Path::kRepeated, Kind::kDone))
      << "a pre-commit duplicated after the commit";
  EXPECT_EQ(InDoubtText(db.InDoubt()), "");
  EXPECT_EQ(db.calls, 3);
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kCanCommit), 1);
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kPreCommit), 1);
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kCommit), 1);
}

TYPED_TEST(BarrierConformance, ThreePcCommitNeedsOnlyTheYesVote) {
  // Past its pre-commit deadline the coordinator commits a branch whose pre-commit never came.
  auto& db = this->db;
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kCanCommit)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kCommit)), Path::kRan, Kind::kDone));
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kCommit), 1);
}

TYPED_TEST(BarrierConformance, ThreePcAbortAfterTheVoteBlocksALatePreCommit) {
  auto& db = this->db;
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kCanCommit)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kAbort)), Path::kRan, Kind::kDone));
  const BarrierResult late = db.Run(Ctx("g1", "b1", Phase::kPreCommit));
  EXPECT_TRUE(Is(late, Path::kProtocolViolation, Kind::kRefused));
  EXPECT_NE(late.reply.message().find("already aborted"), std::string::npos);
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kPreCommit), 0);
  EXPECT_EQ(InDoubtText(db.InDoubt()), "");
  // The coordinator retrying a can-commit whose yes reply it lost, after this branch aborted on
  // its own timeout: a repeated yes would let it decide commit for an aborted branch.
  const BarrierResult revote = db.Run(Ctx("g1", "b1", Phase::kCanCommit));
  EXPECT_TRUE(Is(revote, Path::kBlocked, Kind::kRefused));
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kCanCommit), 1);
  // An abort before any can-commit: a null compensation that refuses the late vote.
  EXPECT_TRUE(Is(db.Run(Ctx("g2", "b1", Phase::kAbort)), Path::kNullCompensation, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g2", "b1", Phase::kCanCommit)), Path::kBlocked, Kind::kRefused));
}

TYPED_TEST(BarrierConformance, ThreePcAbortAfterAnAcknowledgedPreCommitIsRefused) {
  auto& db = this->db;
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kCanCommit)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kPreCommit)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kAbort)), Path::kProtocolViolation, Kind::kRefused));
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kAbort), 0);
  EXPECT_EQ(InDoubtText(db.InDoubt()), "g1/b1 pre-committed;") << "nothing recorded by the abort";
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kCommit)), Path::kRan, Kind::kDone));
}

TYPED_TEST(BarrierConformance, ThreePcPreCommitWithoutAYesVoteIsRefused) {
  auto& db = this->db;
  EXPECT_TRUE(
      Is(db.Run(Ctx("g1", "b1", Phase::kPreCommit)), Path::kProtocolViolation, Kind::kRefused))
      << "never asked";
  EXPECT_TRUE(Is(db.Run(Ctx("g2", "b1", Phase::kCanCommit), Status::Conflict("no money")),
                 Path::kRefused, Kind::kRefused));
  EXPECT_TRUE(
      Is(db.Run(Ctx("g2", "b1", Phase::kPreCommit)), Path::kProtocolViolation, Kind::kRefused))
      << "voted no";
  EXPECT_TRUE(Is(db.Run(Ctx("g3", "b1", Phase::kPrepare)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(
      Is(db.Run(Ctx("g3", "b1", Phase::kPreCommit)), Path::kProtocolViolation, Kind::kRefused))
      << "a 2pc prepare is not a 3pc vote";
  EXPECT_EQ(db.Effects("g1", "b1", Phase::kPreCommit) + db.Effects("g2", "b1", Phase::kPreCommit) +
                db.Effects("g3", "b1", Phase::kPreCommit),
            0);
  // Nothing of the refusals was recorded: the in-doubt list and a later vote are unaffected.
  EXPECT_EQ(InDoubtText(db.InDoubt()), "");
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kCanCommit)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("g1", "b1", Phase::kPreCommit)), Path::kRan, Kind::kDone));
}

TYPED_TEST(BarrierConformance, ThreePcBranchesInDoubtAreNeverPurged) {
  auto& db = this->db;
  EXPECT_TRUE(Is(db.Run(Ctx("voted", "b1", Phase::kCanCommit)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("pre", "b1", Phase::kCanCommit)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("pre", "b1", Phase::kPreCommit)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("done", "b1", Phase::kCanCommit)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("done", "b1", Phase::kCommit)), Path::kRan, Kind::kDone));
  db.Age("voted", 50);  // oldest first in the list
  db.Age("pre", 49);
  db.Age("done", 48);
  Result<int64_t> purged = db.Purge(std::chrono::hours(24));
  ASSERT_TRUE(purged.ok()) << purged.status().ToString();
  EXPECT_EQ(*purged, 2) << "only the finished branch's two rows";
  EXPECT_EQ(InDoubtText(db.InDoubt()), "voted/b1 voted-yes;pre/b1 pre-committed;");
}

TYPED_TEST(BarrierConformance, BadIdsAreNotRun) {
  auto& db = this->db;
  EXPECT_EQ(db.Run(Ctx("g 1", "b1", Phase::kPrepare)).reply.http_status(), 500);
  EXPECT_EQ(db.Run(Ctx("g1", "", Phase::kPrepare)).reply.http_status(), 500);
  EXPECT_EQ(db.Run(Ctx("g1", "b1", Phase::kAbort, /*one_phase=*/true)).reply.http_status(), 500);
  EXPECT_EQ(db.calls, 0);
  EXPECT_EQ(db.BarrierRows(), 0);
}

TYPED_TEST(BarrierConformance, PurgeRemovesOnlyOldFinishedBranches) {
  auto& db = this->db;
  // Old and finished: committed, aborted, null-compensated, refused-then-aborted.
  ASSERT_TRUE(db.Run(Ctx("old-commit", "b", Phase::kPrepare)).reply.done());
  ASSERT_TRUE(db.Run(Ctx("old-commit", "b", Phase::kCommit)).reply.done());
  ASSERT_TRUE(db.Run(Ctx("old-abort", "b", Phase::kPrepare)).reply.done());
  ASSERT_TRUE(db.Run(Ctx("old-abort", "b", Phase::kAbort)).reply.done());
  ASSERT_TRUE(db.Run(Ctx("old-null", "b", Phase::kAbort)).reply.done());
  // Old but still awaiting its outcome: must stay, however old.
  ASSERT_TRUE(db.Run(Ctx("old-prepared", "b", Phase::kPrepare)).reply.done());
  ASSERT_TRUE(db.Try("old-tried", "b").reply.done());
  // Recent and finished: stays.
  ASSERT_TRUE(db.Run(Ctx("new-commit", "b", Phase::kPrepare)).reply.done());
  ASSERT_TRUE(db.Run(Ctx("new-commit", "b", Phase::kCommit)).reply.done());
  for (const char* gtid : {"old-commit", "old-abort", "old-null", "old-prepared", "old-tried"}) {
    db.Age(gtid, 48);
  }
  // A branch with one recent row stays as a whole.
  ASSERT_TRUE(db.Run(Ctx("mixed", "b", Phase::kPrepare)).reply.done());
  db.Age("mixed", 48);
  ASSERT_TRUE(db.Run(Ctx("mixed", "b", Phase::kCommit)).reply.done());

  const int64_t before = db.BarrierRows();
  Result<int64_t> purged = db.Purge(std::chrono::hours(24));
  ASSERT_TRUE(purged.ok()) << purged.status().ToString();
  EXPECT_EQ(*purged, 6) << "old-commit 2, old-abort 2, old-null 2";
  EXPECT_EQ(db.BarrierRows(), before - 6);

  // What stayed still works as before.
  EXPECT_TRUE(Is(db.Run(Ctx("old-prepared", "b", Phase::kCommit)), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("mixed", "b", Phase::kCommit)), Path::kRepeated, Kind::kDone));
  EXPECT_TRUE(Is(db.Run(Ctx("new-commit", "b", Phase::kPrepare)), Path::kRepeated, Kind::kDone));

  EXPECT_EQ(db.Purge(std::chrono::seconds(0)).status().code(), StatusCode::kInvalidArgument);
}

TEST(BarrierSqliteTest, RunOutsideATransactionIsRefused) {
  TempDir dir;
  sqlite3* db = OpenSqlite((dir.path() / "p.db").string());
  int calls = 0;
  BarrierResult result = Barrier::Run(db, Ctx("g1", "b1", Phase::kPrepare), [&](sqlite3*) {
    ++calls;
    return Status::Ok();
  });
  EXPECT_EQ(result.path, Path::kFailed);
  EXPECT_EQ(result.reply.http_status(), 500);
  EXPECT_NE(result.reply.message().find("open transaction"), std::string::npos);
  EXPECT_EQ(calls, 0);
  sqlite3_close(db);
}

TEST(BarrierSqliteTest, PurgeOfADatabaseWithoutTheTableIsZero) {
  TempDir dir;
  sqlite3* db = OpenSqlite((dir.path() / "p.db").string());
  Result<int64_t> purged = PurgeBarrier(db, std::chrono::hours(1));
  ASSERT_TRUE(purged.ok()) << purged.status().ToString();
  EXPECT_EQ(*purged, 0);
  sqlite3_close(db);
}

// Two deliveries of the same prepare at once, on two connections: the second waits for the
// database lock while the first is inside its business, and then finds the first's row.
TEST(BarrierSqliteTest, ConcurrentDuplicatesRunTheBusinessOnce) {
  TempDir dir;
  const std::string path = (dir.path() / "p.db").string();
  sqlite3* first_db = OpenSqlite(path);
  sqlite3* second_db = OpenSqlite(path);
  SqliteExec(first_db, "CREATE TABLE effects (gtid TEXT, branch_id TEXT, phase TEXT)");
  ASSERT_TRUE(Barrier::EnsureSchema(first_db).ok());

  // The second connection's busy handler tells the first that it is waiting, then keeps waiting.
  struct Waiting {
    std::latch signalled{1};
    std::atomic<bool> once{false};
  } waiting;
  sqlite3_busy_handler(
      second_db,
      [](void* arg, int tries) -> int {
        auto* w = static_cast<Waiting*>(arg);
        if (!w->once.exchange(true)) w->signalled.count_down();
        sqlite3_sleep(1);
        return tries < 20000 ? 1 : 0;
      },
      &waiting);

  const CallbackContext ctx = Ctx("g1", "b1", Phase::kPrepare);
  std::atomic<int> calls{0};
  std::latch first_inside{1};
  auto first = std::async(std::launch::async, [&] {
    return Barrier::RunInTransaction(first_db, ctx, [&](sqlite3* db) {
      ++calls;
      first_inside.count_down();
      waiting.signalled.wait();  // the duplicate is blocked on our lock now
      return InsertSqliteEffect(db, ctx);
    });
  });
  first_inside.wait();
  auto second = std::async(std::launch::async, [&] {
    return Barrier::RunInTransaction(second_db, ctx, [&](sqlite3* db) {
      ++calls;
      return InsertSqliteEffect(db, ctx);
    });
  });
  const BarrierResult a = first.get();
  const BarrierResult b = second.get();
  EXPECT_TRUE(Is(a, Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(b, Path::kRepeated, Kind::kDone));
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(SqliteCount(first_db, "SELECT count(*) FROM effects"), 1);
  sqlite3_close(first_db);
  sqlite3_close(second_db);
}

// How many sessions of this database wait for a lock (a row lock, here).
int64_t SessionsWaitingForALock(pqxx::connection& observer) {
  pqxx::nontransaction tx(observer);
  return tx
      .exec(
          "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
          "AND wait_event_type = 'Lock'")[0][0]
      .as<int64_t>();
}

class BarrierPostgresTest : public ::testing::Test {
 protected:
  BarrierPostgresTest()
      : conninfo_(txcoord::testing::SharedPostgres().ConnInfo(
            txcoord::testing::SharedPostgres().CreateDatabase("barrier_race").value())),
        observer_(conninfo_),
        first_(conninfo_),
        second_(conninfo_) {
    pqxx::work tx(observer_);
    tx.exec("CREATE TABLE effects (gtid TEXT, branch_id TEXT, phase TEXT)");
    EXPECT_TRUE(Barrier::EnsureSchema(tx).ok());
    tx.commit();
  }

  int64_t Effects(Phase phase) {
    pqxx::nontransaction tx(observer_);
    return tx
        .exec_params("SELECT count(*) FROM effects WHERE phase = $1",
                     std::string(PhaseName(phase)))[0][0]
        .as<int64_t>();
  }

  bool WaitUntilOneSessionWaits() {
    return txcoord::testing::PollUntil(kPollTimeout, kPollInterval,
                                       [&] { return SessionsWaitingForALock(observer_) >= 1; });
  }

  const std::string conninfo_;
  pqxx::connection observer_;
  pqxx::connection first_;
  pqxx::connection second_;
};

TEST_F(BarrierPostgresTest, ConcurrentDuplicatesRunTheBusinessOnce) {
  const CallbackContext ctx = Ctx("g1", "b1", Phase::kPrepare);
  std::atomic<int> calls{0};
  std::latch first_inside{1};
  std::latch second_waits{1};
  auto first = std::async(std::launch::async, [&] {
    return Barrier::RunInTransaction(first_, ctx, [&](pqxx::transaction_base& tx) {
      ++calls;
      first_inside.count_down();
      second_waits.wait();  // the duplicate's insert waits for our uncommitted row now
      return InsertPgEffect(tx, ctx);
    });
  });
  first_inside.wait();
  auto second = std::async(std::launch::async, [&] {
    return Barrier::RunInTransaction(second_, ctx, [&](pqxx::transaction_base& tx) {
      ++calls;
      return InsertPgEffect(tx, ctx);
    });
  });
  const bool waited = WaitUntilOneSessionWaits();
  second_waits.count_down();
  ASSERT_TRUE(waited) << "the duplicate never waited for the first delivery's row";
  EXPECT_TRUE(Is(first.get(), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(second.get(), Path::kRepeated, Kind::kDone));
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(Effects(Phase::kPrepare), 1);
}

// A prepare in progress and its abort at once: the abort waits for the prepare's first row and
// then undoes it; it must not take the branch for never prepared (a hanging prepare).
TEST_F(BarrierPostgresTest, AnAbortRacingAPrepareWaitsAndUndoesIt) {
  std::latch prepare_inside{1};
  std::latch abort_waits{1};
  auto prepare = std::async(std::launch::async, [&] {
    const CallbackContext ctx = Ctx("g1", "b1", Phase::kPrepare);
    return Barrier::RunInTransaction(first_, ctx, [&](pqxx::transaction_base& tx) {
      prepare_inside.count_down();
      abort_waits.wait();
      return InsertPgEffect(tx, ctx);
    });
  });
  prepare_inside.wait();
  auto abort = std::async(std::launch::async, [&] {
    const CallbackContext ctx = Ctx("g1", "b1", Phase::kAbort);
    return Barrier::RunInTransaction(
        second_, ctx, [&](pqxx::transaction_base& tx) { return InsertPgEffect(tx, ctx); });
  });
  const bool waited = WaitUntilOneSessionWaits();
  abort_waits.count_down();
  ASSERT_TRUE(waited) << "the abort never waited for the prepare's row";
  EXPECT_TRUE(Is(prepare.get(), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(abort.get(), Path::kRan, Kind::kDone));
  EXPECT_EQ(Effects(Phase::kPrepare), 1);
  EXPECT_EQ(Effects(Phase::kAbort), 1);
}

// The other order: the abort's marker is uncommitted when the prepare arrives; the prepare waits
// for it and is then refused.
TEST_F(BarrierPostgresTest, APrepareRacingAnAbortWaitsAndIsRefused) {
  pqxx::work abort_tx(first_);
  const BarrierResult abort = Barrier::Run(abort_tx, Ctx("g1", "b1", Phase::kAbort),
                                           [](pqxx::transaction_base&) { return Status::Ok(); });
  ASSERT_TRUE(Is(abort, Path::kNullCompensation, Kind::kDone));
  auto prepare = std::async(std::launch::async, [&] {
    const CallbackContext ctx = Ctx("g1", "b1", Phase::kPrepare);
    return Barrier::RunInTransaction(
        second_, ctx, [&](pqxx::transaction_base& tx) { return InsertPgEffect(tx, ctx); });
  });
  const bool waited = WaitUntilOneSessionWaits();
  abort_tx.commit();
  ASSERT_TRUE(waited) << "the prepare never waited for the abort's marker";
  EXPECT_TRUE(Is(prepare.get(), Path::kBlocked, Kind::kRefused));
  EXPECT_EQ(Effects(Phase::kPrepare), 0);
}

// 3pc: a pre-commit in progress and the participant's own timeout abort at once. They write
// different keys, so only the branch lock orders them: the abort waits, then sees the pre-commit
// and is refused; a pre-committed branch is never aborted.
TEST_F(BarrierPostgresTest, AnAbortRacingAPreCommitWaitsAndIsRefused) {
  ASSERT_TRUE(Barrier::RunInTransaction(first_, Ctx("g1", "b1", Phase::kCanCommit),
                                        [](pqxx::transaction_base&) { return Status::Ok(); })
                  .reply.done());
  std::latch pre_commit_inside{1};
  std::latch abort_waits{1};
  auto pre_commit = std::async(std::launch::async, [&] {
    const CallbackContext ctx = Ctx("g1", "b1", Phase::kPreCommit);
    return Barrier::RunInTransaction(first_, ctx, [&](pqxx::transaction_base& tx) {
      pre_commit_inside.count_down();
      abort_waits.wait();
      return InsertPgEffect(tx, ctx);
    });
  });
  pre_commit_inside.wait();
  auto abort = std::async(std::launch::async, [&] {
    const CallbackContext ctx = Ctx("g1", "b1", Phase::kAbort);
    return Barrier::RunInTransaction(
        second_, ctx, [&](pqxx::transaction_base& tx) { return InsertPgEffect(tx, ctx); });
  });
  const bool waited = WaitUntilOneSessionWaits();
  abort_waits.count_down();
  ASSERT_TRUE(waited) << "the abort never waited for the pre-commit";
  EXPECT_TRUE(Is(pre_commit.get(), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(abort.get(), Path::kProtocolViolation, Kind::kRefused));
  EXPECT_EQ(Effects(Phase::kAbort), 0);
}

}  // namespace
}  // namespace txcoord::participant
