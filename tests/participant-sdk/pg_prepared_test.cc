// PgPreparedAdapter against a real PostgreSQL (rig): real PREPARE TRANSACTION, COMMIT PREPARED
// and ROLLBACK PREPARED, checked from a second connection. In-doubt resolution asks a fake
// coordinator (fake_coordinator.h). Every test ends with no prepared transaction left in its
// database.
#include "txcoord/participant/pg_prepared.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <latch>
#include <map>
#include <pqxx/pqxx>
#include <set>

#include "fake_coordinator.h"
#include "sdk_test_util.h"
#include "txcoord/testing/poll.h"
#include "txcoord/testing/postgres_server.h"

namespace txcoord::participant {
namespace {

using testing::Ctx;
using testing::FakeCoordinator;
using Kind = PhaseResult::Kind;

constexpr std::chrono::milliseconds kPollTimeout{20000};
constexpr std::chrono::milliseconds kPollInterval{5};

CallbackContext Debit(const std::string& gtid, const std::string& branch_id, Phase phase,
                      int amount, bool one_phase = false, const std::string& account = "A") {
  CallbackContext ctx = Ctx(gtid, branch_id, phase, one_phase);
  auto& fields = *ctx.payload.mutable_struct_value()->mutable_fields();
  fields["account"].set_string_value(account);
  fields["amount"].set_number_value(amount);
  return ctx;
}

class PgPreparedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& pg = txcoord::testing::SharedPostgres();
    db_ = pg.CreateDatabase("prepared").value();
    conninfo_ = pg.ConnInfo(db_);
    observer_ = std::make_unique<pqxx::connection>(conninfo_);
    pqxx::work tx(*observer_);
    tx.exec("CREATE TABLE accounts (id TEXT PRIMARY KEY, balance BIGINT NOT NULL)");
    tx.exec("INSERT INTO accounts VALUES ('A', 100), ('B', 100)");
    tx.commit();
    adapter_ = Open(db_);
  }

  void TearDown() override {
    const std::set<std::string> left = PreparedXacts();
    EXPECT_EQ(left, std::set<std::string>()) << "a test left prepared transactions";
    // Whatever a failed test left behind must not hold locks in the shared cluster.
    pqxx::nontransaction tx(*observer_);
    for (const std::string& gid : left) tx.exec("ROLLBACK PREPARED " + tx.quote(gid));
  }

  std::unique_ptr<PgPreparedAdapter> Open(const std::string& prefix,
                                          std::chrono::milliseconds lock_timeout = {}) {
    PgPreparedOptions options;
    options.conninfo = conninfo_;
    options.xid_prefix = prefix;
    if (lock_timeout.count() > 0) options.lock_timeout = lock_timeout;
    Result<std::unique_ptr<PgPreparedAdapter>> adapter = PgPreparedAdapter::Open(options);
    EXPECT_TRUE(adapter.ok()) << adapter.status().ToString();
    return adapter.ok() ? std::move(*adapter) : nullptr;
  }

  // The business of a debit branch: takes `amount` from the account, refuses an overdraft.
  PgBusiness Work(const CallbackContext& ctx) {
    return [this, &ctx](pqxx::transaction_base& tx) -> Status {
      ++work_calls_;
      const auto& fields = ctx.payload.struct_value().fields();
      const std::string account = fields.at("account").string_value();
      const auto amount = static_cast<int64_t>(fields.at("amount").number_value());
      pqxx::result r =
          tx.exec_params("SELECT balance FROM accounts WHERE id = $1 FOR UPDATE", account);
      if (r.empty()) return Status::Conflict("no account " + account);
      if (r[0][0].as<int64_t>() < amount) {
        return Status::Conflict("insufficient funds in " + account);
      }
      tx.exec_params("UPDATE accounts SET balance = balance - $1 WHERE id = $2", amount, account);
      return Status::Ok();
    };
  }

  PhaseResult Prepare(const CallbackContext& ctx) { return adapter_->Prepare(ctx, Work(ctx)); }
  PhaseResult OnePhase(const CallbackContext& ctx) {
    return adapter_->CommitOnePhase(ctx, Work(ctx));
  }

  int64_t Balance(const std::string& account = "A") {
    pqxx::nontransaction tx(*observer_);
    return tx.exec_params("SELECT balance FROM accounts WHERE id = $1", account)[0][0]
        .as<int64_t>();
  }

  std::set<std::string> PreparedXacts() {
    pqxx::nontransaction tx(*observer_);
    std::set<std::string> gids;
    for (const auto& row :
         tx.exec("SELECT gid FROM pg_prepared_xacts WHERE database = current_database()")) {
      gids.insert(row[0].as<std::string>());
    }
    return gids;
  }

  int64_t SessionsWaitingForAnAdvisoryLock() {
    pqxx::nontransaction tx(*observer_);
    return tx
        .exec(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE d.datname = current_database() AND l.locktype = 'advisory' "
            "AND NOT l.granted")[0][0]
        .as<int64_t>();
  }

  std::string db_;
  std::string conninfo_;
  std::unique_ptr<pqxx::connection> observer_;
  std::unique_ptr<PgPreparedAdapter> adapter_;
  std::atomic<int> work_calls_{0};
};

::testing::AssertionResult Is(const PhaseResult& result, Kind kind) {
  if (result.kind() == kind) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "got " << result.ToString();
}

TEST_F(PgPreparedTest, PrepareHoldsTheWorkUntilCommit) {
  const CallbackContext prepare = Debit("g1", "debit", Phase::kPrepare, 30);
  ASSERT_TRUE(Is(Prepare(prepare), Kind::kDone));
  const std::string xid = adapter_->Xid("g1", "debit");
  EXPECT_EQ(PreparedXacts(), std::set<std::string>{xid});
  EXPECT_EQ(Balance(), 100) << "prepared, not committed";

  EXPECT_TRUE(Is(adapter_->Commit(Ctx("g1", "debit", Phase::kCommit)), Kind::kDone));
  EXPECT_TRUE(PreparedXacts().empty());
  EXPECT_EQ(Balance(), 70);

  // Repeats: commit and prepare again change nothing.
  EXPECT_TRUE(Is(adapter_->Commit(Ctx("g1", "debit", Phase::kCommit)), Kind::kDone));
  EXPECT_TRUE(Is(Prepare(prepare), Kind::kDone));
  EXPECT_TRUE(PreparedXacts().empty());
  EXPECT_EQ(Balance(), 70);
  EXPECT_EQ(work_calls_.load(), 1);
}

TEST_F(PgPreparedTest, ARepeatedPrepareDoesNotRedoTheWorkAndAbortRollsBack) {
  const CallbackContext prepare = Debit("g1", "debit", Phase::kPrepare, 30);
  ASSERT_TRUE(Is(Prepare(prepare), Kind::kDone));
  ASSERT_TRUE(Is(Prepare(prepare), Kind::kDone));
  EXPECT_EQ(work_calls_.load(), 1);
  EXPECT_EQ(PreparedXacts().size(), 1u);

  EXPECT_TRUE(Is(adapter_->Abort(Ctx("g1", "debit", Phase::kAbort)), Kind::kDone));
  EXPECT_TRUE(PreparedXacts().empty());
  EXPECT_EQ(Balance(), 100);
  EXPECT_TRUE(Is(adapter_->Abort(Ctx("g1", "debit", Phase::kAbort)), Kind::kDone));
  // A prepare duplicated after the abort is refused, not prepared again.
  EXPECT_TRUE(Is(Prepare(prepare), Kind::kRefused));
  EXPECT_TRUE(PreparedXacts().empty());
  EXPECT_EQ(work_calls_.load(), 1);
}

TEST_F(PgPreparedTest, AnAbortBeforeThePrepareBlocksIt) {
  EXPECT_TRUE(Is(adapter_->Abort(Ctx("g1", "debit", Phase::kAbort)), Kind::kDone));
  const PhaseResult late = Prepare(Debit("g1", "debit", Phase::kPrepare, 30));
  EXPECT_TRUE(Is(late, Kind::kRefused));
  EXPECT_NE(late.message().find("already aborted"), std::string::npos) << late.message();
  EXPECT_TRUE(Is(OnePhase(Debit("g1", "debit", Phase::kCommit, 30, true)), Kind::kRefused));
  EXPECT_EQ(work_calls_.load(), 0);
  EXPECT_EQ(Balance(), 100);
}

TEST_F(PgPreparedTest, ARefusedPrepareStaysRefused) {
  const PhaseResult refused = Prepare(Debit("g1", "debit", Phase::kPrepare, 1000));
  EXPECT_TRUE(Is(refused, Kind::kRefused));
  EXPECT_EQ(refused.message(), "insufficient funds in A");
  EXPECT_TRUE(PreparedXacts().empty());
  // The same branch again, now affordable: still no.
  const PhaseResult again = Prepare(Debit("g1", "debit", Phase::kPrepare, 10));
  EXPECT_TRUE(Is(again, Kind::kRefused));
  EXPECT_EQ(again.message(), "insufficient funds in A");
  EXPECT_EQ(work_calls_.load(), 1);
  EXPECT_TRUE(Is(adapter_->Abort(Ctx("g1", "debit", Phase::kAbort)), Kind::kDone));
  EXPECT_EQ(Balance(), 100);
}

TEST_F(PgPreparedTest, AFailedWorkLeavesNothingAndTheRetryPrepares) {
  const CallbackContext ctx = Debit("g1", "debit", Phase::kPrepare, 30);
  const PhaseResult failed = adapter_->Prepare(ctx, [](pqxx::transaction_base& tx) -> Status {
    tx.exec("UPDATE accounts SET balance = 0");
    return Status::Unavailable("the fraud check service is down");
  });
  EXPECT_TRUE(Is(failed, Kind::kTransient));
  EXPECT_NE(failed.message().find("fraud check"), std::string::npos);
  const PhaseResult threw = adapter_->Prepare(ctx, [](pqxx::transaction_base& tx) -> Status {
    tx.exec("SELECT no_such_column FROM accounts");
    return Status::Ok();
  });
  EXPECT_FALSE(threw.done());
  EXPECT_NE(threw.http_status(), 409);
  EXPECT_TRUE(PreparedXacts().empty());
  EXPECT_EQ(Balance(), 100);
  EXPECT_TRUE(Is(Prepare(ctx), Kind::kDone));
  EXPECT_TRUE(Is(adapter_->Commit(Ctx("g1", "debit", Phase::kCommit)), Kind::kDone));
  EXPECT_EQ(Balance(), 70);
}

// A work that swallows an SQL error leaves its transaction aborted; PostgreSQL would turn the
// PREPARE TRANSACTION into a silent rollback, so the vote must not be yes.
TEST_F(PgPreparedTest, AWorkThatSwallowsAnSqlErrorDoesNotVoteYes) {
  const CallbackContext ctx = Debit("g1", "debit", Phase::kPrepare, 30);
  const PhaseResult swallowed = adapter_->Prepare(ctx, [](pqxx::transaction_base& tx) -> Status {
    tx.exec("UPDATE accounts SET balance = balance - 30");
    try {
      tx.exec("SELECT 1/0");
    } catch (const pqxx::sql_error&) {
    }
    return Status::Ok();
  });
  EXPECT_FALSE(swallowed.done()) << swallowed.ToString();
  EXPECT_NE(swallowed.http_status(), 409);
  EXPECT_TRUE(PreparedXacts().empty());
  EXPECT_EQ(Balance(), 100);
  // The retry with a sound work prepares and commits as usual.
  EXPECT_TRUE(Is(Prepare(ctx), Kind::kDone));
  EXPECT_TRUE(Is(adapter_->Commit(Ctx("g1", "debit", Phase::kCommit)), Kind::kDone));
  EXPECT_EQ(Balance(), 70);
}

TEST_F(PgPreparedTest, CoordinatorBugsAreRefused) {
  const PhaseResult commit = adapter_->Commit(Ctx("g1", "debit", Phase::kCommit));
  EXPECT_TRUE(Is(commit, Kind::kRefused));
  EXPECT_NE(commit.message().find("never prepared"), std::string::npos) << commit.message();

  ASSERT_TRUE(Is(Prepare(Debit("g2", "debit", Phase::kPrepare, 30)), Kind::kDone));
  ASSERT_TRUE(Is(adapter_->Commit(Ctx("g2", "debit", Phase::kCommit)), Kind::kDone));
  const PhaseResult abort = adapter_->Abort(Ctx("g2", "debit", Phase::kAbort));
  EXPECT_TRUE(Is(abort, Kind::kRefused));
  EXPECT_NE(abort.message().find("already committed"), std::string::npos) << abort.message();
  EXPECT_EQ(Balance(), 70);

  ASSERT_TRUE(Is(Prepare(Debit("g3", "debit", Phase::kPrepare, 30)), Kind::kDone));
  ASSERT_TRUE(Is(adapter_->Abort(Ctx("g3", "debit", Phase::kAbort)), Kind::kDone));
  EXPECT_TRUE(Is(adapter_->Commit(Ctx("g3", "debit", Phase::kCommit)), Kind::kRefused));
  EXPECT_EQ(Balance(), 70);
}

TEST_F(PgPreparedTest, OnePhaseCommitDoesTheWorkAndCommitsOnce) {
  const CallbackContext one_phase = Debit("g1", "debit", Phase::kCommit, 30, true);
  EXPECT_TRUE(Is(OnePhase(one_phase), Kind::kDone));
  EXPECT_TRUE(PreparedXacts().empty());
  EXPECT_EQ(Balance(), 70);
  EXPECT_TRUE(Is(OnePhase(one_phase), Kind::kDone));
  EXPECT_EQ(Balance(), 70);
  EXPECT_EQ(work_calls_.load(), 1);
  EXPECT_TRUE(Is(adapter_->Abort(Ctx("g1", "debit", Phase::kAbort)), Kind::kRefused));
  EXPECT_EQ(Balance(), 70);
}

TEST_F(PgPreparedTest, ARefusedOnePhaseCommitThenAbortBlocksALateDuplicate) {
  const PhaseResult refused = OnePhase(Debit("g1", "debit", Phase::kCommit, 1000, true));
  EXPECT_TRUE(Is(refused, Kind::kRefused));
  EXPECT_TRUE(Is(adapter_->Abort(Ctx("g1", "debit", Phase::kAbort)), Kind::kDone));
  EXPECT_TRUE(Is(OnePhase(Debit("g1", "debit", Phase::kCommit, 10, true)), Kind::kRefused));
  EXPECT_EQ(work_calls_.load(), 1);
  EXPECT_EQ(Balance(), 100);
}

TEST_F(PgPreparedTest, TheHandlerDispatchesEveryPhase) {
  PgPreparedHandler handler(
      *adapter_,
      [this](pqxx::transaction_base& tx, const CallbackContext& ctx) { return Work(ctx)(tx); });
  EXPECT_TRUE(Is(handler.Prepare(Debit("g1", "debit", Phase::kPrepare, 30)), Kind::kDone));
  EXPECT_EQ(PreparedXacts().size(), 1u);
  EXPECT_TRUE(Is(handler.Commit(Debit("g1", "debit", Phase::kCommit, 30)), Kind::kDone));
  EXPECT_EQ(Balance(), 70);
  EXPECT_TRUE(Is(handler.Commit(Debit("g2", "debit", Phase::kCommit, 20, true)), Kind::kDone));
  EXPECT_EQ(Balance(), 50);
  EXPECT_TRUE(Is(handler.Prepare(Debit("g3", "debit", Phase::kPrepare, 5)), Kind::kDone));
  EXPECT_TRUE(Is(handler.Abort(Debit("g3", "debit", Phase::kAbort, 5)), Kind::kDone));
  EXPECT_EQ(Balance(), 50);
  EXPECT_TRUE(Is(handler.CanCommit(Debit("g4", "debit", Phase::kCanCommit, 5)), Kind::kDone));
  EXPECT_TRUE(Is(handler.PreCommit(Debit("g4", "debit", Phase::kPreCommit, 5)), Kind::kDone));
  EXPECT_TRUE(Is(handler.Commit(Debit("g4", "debit", Phase::kCommit, 5)), Kind::kDone));
  EXPECT_EQ(Balance(), 45);
}

std::string InDoubtText(const Result<std::vector<ThreePhaseInDoubt>>& list) {
  if (!list.ok()) return "error: " + list.status().ToString();
  std::string text;
  for (const ThreePhaseInDoubt& b : *list) {
    text += b.gtid + "/" + b.branch_id + (b.pre_committed ? " pre-committed;" : " voted-yes;");
  }
  return text;
}

TEST_F(PgPreparedTest, ThreePcCanCommitPreparesAndPreCommitIsRecorded) {
  const CallbackContext can = Debit("g1", "debit", Phase::kCanCommit, 30);
  ASSERT_TRUE(Is(adapter_->CanCommit(can, Work(can)), Kind::kDone));
  EXPECT_EQ(PreparedXacts(), std::set<std::string>{adapter_->Xid("g1", "debit")});
  EXPECT_EQ(Balance(), 100) << "voted yes: prepared, not committed";
  EXPECT_EQ(InDoubtText(adapter_->ListThreePhaseInDoubt()), "g1/debit voted-yes;");
  ASSERT_TRUE(Is(adapter_->CanCommit(can, Work(can)), Kind::kDone));
  EXPECT_EQ(work_calls_.load(), 1) << "a repeated can-commit does not redo the work";

  const CallbackContext pre = Debit("g1", "debit", Phase::kPreCommit, 30);
  ASSERT_TRUE(Is(adapter_->PreCommit(pre), Kind::kDone));
  ASSERT_TRUE(Is(adapter_->PreCommit(pre), Kind::kDone));
  ASSERT_TRUE(Is(adapter_->CanCommit(can, Work(can)), Kind::kDone)) << "late duplicate vote";
  EXPECT_EQ(InDoubtText(adapter_->ListThreePhaseInDoubt()), "g1/debit pre-committed;")
      << "a late vote does not undo the pre-commit";
  EXPECT_TRUE(Is(adapter_->Abort(Debit("g1", "debit", Phase::kAbort, 30)), Kind::kRefused))
      << "a pre-committed branch can only commit";
  EXPECT_EQ(PreparedXacts().size(), 1u) << "the refused abort rolled nothing back";
  ASSERT_TRUE(Is(adapter_->Commit(Debit("g1", "debit", Phase::kCommit, 30)), Kind::kDone));
  EXPECT_EQ(Balance(), 70);
  EXPECT_EQ(InDoubtText(adapter_->ListThreePhaseInDoubt()), "");
  EXPECT_TRUE(Is(adapter_->PreCommit(pre), Kind::kDone)) << "a pre-commit after the commit";
}

TEST_F(PgPreparedTest, ThreePcAbortAfterTheVoteRollsBackAndRefusesTheLatePreCommit) {
  const CallbackContext can = Debit("g1", "debit", Phase::kCanCommit, 30);
  ASSERT_TRUE(Is(adapter_->CanCommit(can, Work(can)), Kind::kDone));
  // The participant's own can-commit timeout (three_phase.h) aborts it.
  ASSERT_TRUE(Is(adapter_->Abort(Debit("g1", "debit", Phase::kAbort, 30)), Kind::kDone));
  EXPECT_TRUE(PreparedXacts().empty());
  EXPECT_EQ(Balance(), 100);
  EXPECT_EQ(InDoubtText(adapter_->ListThreePhaseInDoubt()), "");
  EXPECT_TRUE(Is(adapter_->PreCommit(Debit("g1", "debit", Phase::kPreCommit, 30)), Kind::kRefused));
  EXPECT_TRUE(Is(adapter_->CanCommit(can, Work(can)), Kind::kRefused)) << "no hanging vote";
  EXPECT_TRUE(Is(adapter_->PreCommit(Debit("g2", "debit", Phase::kPreCommit, 30)), Kind::kRefused))
      << "never voted yes here";
  // A refused vote: 409, nothing prepared, nothing in doubt.
  const CallbackContext big = Debit("g3", "debit", Phase::kCanCommit, 500);
  EXPECT_TRUE(Is(adapter_->CanCommit(big, Work(big)), Kind::kRefused));
  EXPECT_TRUE(PreparedXacts().empty());
  EXPECT_EQ(InDoubtText(adapter_->ListThreePhaseInDoubt()), "");
}

TEST_F(PgPreparedTest, XidsAreDeterministicBoundedAndUnambiguous) {
  EXPECT_EQ(*PgPreparedAdapter::MakeXid("bank-b", "order-42", "debit"),
            "txc/bank-b/order-42/debit");
  EXPECT_EQ(adapter_->Xid("order-42", "debit"), "txc/" + db_ + "/order-42/debit");

  const std::string gtid(128, 'g');
  const std::string branch_a = std::string(120, 'b') + "-alpha";
  const std::string branch_b = std::string(120, 'b') + "-bravo";
  const std::string prefix(32, 'p');
  const std::string xid_a = *PgPreparedAdapter::MakeXid(prefix, gtid, branch_a);
  const std::string xid_b = *PgPreparedAdapter::MakeXid(prefix, gtid, branch_b);
  EXPECT_EQ(xid_a.size(), 199u);
  EXPECT_NE(xid_a, xid_b) << "branches that share a long head must not share an xid";
  EXPECT_TRUE(xid_a.starts_with("txc/" + prefix + "/" + gtid + "/")) << xid_a;
  EXPECT_NE(xid_a.find('#'), std::string::npos);
  EXPECT_EQ(xid_a, *PgPreparedAdapter::MakeXid(prefix, gtid, branch_a)) << "deterministic";
  // A shorter gtid leaves room for a readable head of the branch id.
  const std::string readable = *PgPreparedAdapter::MakeXid("bank", "order-42", branch_a);
  EXPECT_LE(readable.size(), 199u);
  EXPECT_TRUE(readable.starts_with("txc/bank/order-42/" + std::string(100, 'b'))) << readable;

  for (const char* bad : {"", "a/b", "has space", "p#1"}) {
    EXPECT_EQ(PgPreparedAdapter::MakeXid(bad, "g", "b").status().code(),
              StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_FALSE(PgPreparedAdapter::MakeXid(std::string(33, 'p'), "g", "b").ok());
  EXPECT_FALSE(PgPreparedAdapter::MakeXid("p", "g/1", "b").ok());
  EXPECT_FALSE(PgPreparedAdapter::MakeXid("p", "g", "").ok());
}

TEST_F(PgPreparedTest, TheLongestIdsPrepareAndCommit) {
  const std::string gtid(128, 'g');
  const std::string branch(128, 'b');
  // The adapter's prefix is the database name; use a 32-character one too.
  auto adapter = Open(std::string(32 - std::min<size_t>(32, db_.size()), 'x') + db_.substr(0, 32));
  ASSERT_NE(adapter, nullptr);
  const CallbackContext ctx = Debit(gtid, branch, Phase::kPrepare, 30);
  ASSERT_TRUE(Is(adapter->Prepare(ctx, Work(ctx)), Kind::kDone));
  EXPECT_EQ(PreparedXacts(), std::set<std::string>{adapter->Xid(gtid, branch)});
  EXPECT_TRUE(Is(adapter->Commit(Ctx(gtid, branch, Phase::kCommit)), Kind::kDone));
  EXPECT_EQ(Balance(), 70);
}

TEST_F(PgPreparedTest, ConcurrentDuplicatePreparesRunTheWorkOnce) {
  const CallbackContext ctx = Debit("g1", "debit", Phase::kPrepare, 30);
  std::latch first_inside{1};
  std::latch second_waits{1};
  auto first = std::async(std::launch::async, [&] {
    return adapter_->Prepare(ctx, [&](pqxx::transaction_base& tx) {
      first_inside.count_down();
      second_waits.wait();
      return Work(ctx)(tx);
    });
  });
  first_inside.wait();
  auto second = std::async(std::launch::async, [&] { return Prepare(ctx); });
  const bool waited = txcoord::testing::PollUntil(
      kPollTimeout, kPollInterval, [&] { return SessionsWaitingForAnAdvisoryLock() >= 1; });
  second_waits.count_down();
  ASSERT_TRUE(waited) << "the duplicate never waited for the branch's lock";
  EXPECT_TRUE(Is(first.get(), Kind::kDone));
  EXPECT_TRUE(Is(second.get(), Kind::kDone));
  EXPECT_EQ(work_calls_.load(), 1);
  EXPECT_EQ(PreparedXacts().size(), 1u);
  EXPECT_TRUE(Is(adapter_->Commit(Ctx("g1", "debit", Phase::kCommit)), Kind::kDone));
  EXPECT_EQ(Balance(), 70);
}

// An abort that arrives while its prepare is still running waits for it and rolls it back; it
// must not find "nothing prepared", mark null, and leave the prepare to complete and hang.
TEST_F(PgPreparedTest, AnAbortRacingAPrepareWaitsAndRollsItBack) {
  const CallbackContext ctx = Debit("g1", "debit", Phase::kPrepare, 30);
  std::latch prepare_inside{1};
  std::latch abort_waits{1};
  auto prepare = std::async(std::launch::async, [&] {
    return adapter_->Prepare(ctx, [&](pqxx::transaction_base& tx) {
      prepare_inside.count_down();
      abort_waits.wait();
      return Work(ctx)(tx);
    });
  });
  prepare_inside.wait();
  auto abort = std::async(std::launch::async,
                          [&] { return adapter_->Abort(Ctx("g1", "debit", Phase::kAbort)); });
  const bool waited = txcoord::testing::PollUntil(
      kPollTimeout, kPollInterval, [&] { return SessionsWaitingForAnAdvisoryLock() >= 1; });
  abort_waits.count_down();
  ASSERT_TRUE(waited) << "the abort never waited for the prepare";
  EXPECT_TRUE(Is(prepare.get(), Kind::kDone));
  EXPECT_TRUE(Is(abort.get(), Kind::kDone));
  EXPECT_TRUE(PreparedXacts().empty());
  EXPECT_EQ(Balance(), 100);
  EXPECT_TRUE(Is(Prepare(ctx), Kind::kRefused)) << "a late duplicate must not prepare again";
}

// A prepared branch holds its rows' locks until its outcome; another branch that needs the same
// row waits at most lock_timeout and is then answered 503, to be retried.
TEST_F(PgPreparedTest, ARowHeldByAPreparedBranchIsATransientFailure) {
  auto adapter = Open(db_ + "_lt", std::chrono::milliseconds(100));
  ASSERT_NE(adapter, nullptr);
  const CallbackContext first = Debit("g1", "debit", Phase::kPrepare, 30);
  const CallbackContext second = Debit("g2", "debit", Phase::kPrepare, 30);
  ASSERT_TRUE(Is(adapter->Prepare(first, Work(first)), Kind::kDone));
  const PhaseResult blocked = adapter->Prepare(second, Work(second));
  EXPECT_TRUE(Is(blocked, Kind::kTransient));
  EXPECT_NE(blocked.message().find("lock"), std::string::npos) << blocked.message();
  ASSERT_TRUE(Is(adapter->Commit(Ctx("g1", "debit", Phase::kCommit)), Kind::kDone));
  ASSERT_TRUE(Is(adapter->Prepare(second, Work(second)), Kind::kDone));
  ASSERT_TRUE(Is(adapter->Commit(Ctx("g2", "debit", Phase::kCommit)), Kind::kDone));
  EXPECT_EQ(Balance(), 40);
}

TEST_F(PgPreparedTest, ResolveInDoubtAsksTheCoordinatorAboutItsOwnBranchesOnly) {
  const std::string long_branch = std::string(150, 'c').substr(0, 128);
  // What the coordinator knows, by gtid.
  std::map<std::string, std::string> states = {{"g-committed", "committed"},
                                               {"g-committing", "committing"},
                                               {"g-aborted", "aborted"},
                                               {"g-pending", "preparing"}};
  std::mutex mu;
  FakeCoordinator fake([&](const FakeCoordinator::Request& request, FakeCoordinator::Reply& reply) {
    const std::string gtid = request.uri.substr(request.uri.rfind('/') + 1);
    std::lock_guard lock(mu);
    auto it = states.find(gtid);
    if (it == states.end()) {
      reply.status = 404;
      reply.body = testing::ErrorJson("NOT_FOUND", "no transaction " + gtid);
      return;
    }
    reply.body = R"({"gtid":")" + gtid + R"(","protocol":"2pc","state":")" + it->second +
                 R"(","branches":[{"branch_id":"other"},{"branch_id":")" + long_branch + R"("}]})";
  });
  // A branch id so long that the xid hashes it: found through the coordinator's record.
  auto adapter = Open("r");
  ASSERT_NE(adapter, nullptr);
  // Each branch debits an account of its own: a prepared branch keeps its row locked.
  {
    pqxx::work tx(*observer_);
    for (int i = 1; i <= 6; ++i) {
      tx.exec("INSERT INTO accounts VALUES ('r" + std::to_string(i) + "', 100)");
    }
    tx.commit();
  }
  int next_account = 0;
  auto prepare = [&](PgPreparedAdapter& a, const std::string& gtid, const std::string& branch,
                     int amount) {
    const std::string account = "r" + std::to_string(++next_account);
    const CallbackContext ctx = Debit(gtid, branch, Phase::kPrepare, amount, false, account);
    ASSERT_TRUE(Is(a.Prepare(ctx, Work(ctx)), Kind::kDone)) << gtid;
  };
  const std::string hashed_gtid(128 - 12, 'h');
  states[hashed_gtid] = "committed";
  prepare(*adapter, "g-committed", "debit", 1);
  prepare(*adapter, "g-committing", "debit", 2);
  prepare(*adapter, "g-aborted", "debit", 4);
  prepare(*adapter, "g-forgotten", "debit", 8);  // 404: presumed abort
  prepare(*adapter, "g-pending", "debit", 16);
  prepare(*adapter, hashed_gtid, long_branch, 32);
  ASSERT_NE(adapter->Xid(hashed_gtid, long_branch).find('#'), std::string::npos);
  // Another participant's prepared branch in the same database: not ours to resolve.
  auto other = Open("other");
  ASSERT_NE(other, nullptr);
  {
    const CallbackContext ctx = Ctx("g-aborted", "credit", Phase::kPrepare);
    ASSERT_TRUE(
        Is(other->Prepare(ctx,
                          [](pqxx::transaction_base& tx) {
                            tx.exec("UPDATE accounts SET balance = balance + 64 WHERE id = 'B'");
                            return Status::Ok();
                          }),
           Kind::kDone));
  }

  CoordinatorClientOptions client_options;
  client_options.url = fake.url();
  auto client = CoordinatorClient::Create(client_options).value();
  Result<InDoubtReport> report = adapter->ResolveInDoubt(*client);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->committed, 3);
  EXPECT_EQ(report->rolled_back, 2);
  EXPECT_EQ(report->left, 1);
  EXPECT_TRUE(report->errors.empty()) << report->errors.front();
  // r1 committed, r2 committing, r3 aborted, r4 forgotten, r5 pending, r6 hashed and committed.
  EXPECT_EQ(Balance("r1"), 99);
  EXPECT_EQ(Balance("r2"), 98);
  EXPECT_EQ(Balance("r3"), 100);
  EXPECT_EQ(Balance("r4"), 100);
  EXPECT_EQ(Balance("r5"), 100);
  EXPECT_EQ(Balance("r6"), 68);
  EXPECT_EQ(PreparedXacts(), (std::set<std::string>{adapter->Xid("g-pending", "debit"),
                                                    other->Xid("g-aborted", "credit")}));
  // The rollbacks left their markers: a late prepare of those branches is refused.
  const CallbackContext late = Debit("g-aborted", "debit", Phase::kPrepare, 4, false, "r3");
  EXPECT_TRUE(Is(adapter->Prepare(late, Work(late)), Kind::kRefused));
  // And the committed ones answer their (late) commit callbacks as repeats.
  EXPECT_TRUE(Is(adapter->Commit(Ctx("g-committed", "debit", Phase::kCommit)), Kind::kDone));
  EXPECT_TRUE(Is(adapter->Commit(Ctx(hashed_gtid, long_branch, Phase::kCommit)), Kind::kDone));

  // The undecided one, once decided.
  {
    std::lock_guard lock(mu);
    states["g-pending"] = "aborting";
  }
  report = adapter->ResolveInDoubt(*client);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->rolled_back, 1);
  EXPECT_EQ(report->left, 0);
  EXPECT_EQ(PreparedXacts(), std::set<std::string>{other->Xid("g-aborted", "credit")});
  EXPECT_TRUE(Is(other->Abort(Ctx("g-aborted", "credit", Phase::kAbort)), Kind::kDone));
  EXPECT_EQ(Balance("B"), 100);
}

TEST_F(PgPreparedTest, ResolveInDoubtLeavesBranchesWhenTheCoordinatorIsUnreachable) {
  ASSERT_TRUE(Is(Prepare(Debit("g1", "debit", Phase::kPrepare, 30)), Kind::kDone));
  CoordinatorClientOptions client_options;
  client_options.url = "http://127.0.0.1:1";  // nothing listens on port 1
  auto client = CoordinatorClient::Create(client_options).value();
  Result<InDoubtReport> report = adapter_->ResolveInDoubt(*client);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->left, 1);
  ASSERT_EQ(report->errors.size(), 1u);
  EXPECT_NE(report->errors[0].find("UNAVAILABLE"), std::string::npos) << report->errors[0];
  EXPECT_EQ(PreparedXacts().size(), 1u) << "unknown outcome: left prepared";
  EXPECT_TRUE(Is(adapter_->Abort(Ctx("g1", "debit", Phase::kAbort)), Kind::kDone));
}

TEST(PgPreparedOpenTest, AServerWithoutPreparedTransactionsIsRefused) {
  txcoord::testing::PostgresOptions options;
  options.max_prepared_transactions = 0;
  auto server = txcoord::testing::PostgresServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  PgPreparedOptions adapter_options;
  adapter_options.conninfo = (*server)->ConnInfo((*server)->CreateDatabase("noprep").value());
  adapter_options.xid_prefix = "p";
  Result<std::unique_ptr<PgPreparedAdapter>> adapter = PgPreparedAdapter::Open(adapter_options);
  EXPECT_EQ(adapter.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(adapter.status().message().find("max_prepared_transactions"), std::string::npos)
      << adapter.status().ToString();
}

TEST(PgPreparedOpenTest, AnUnreachableDatabaseIsUnavailableAndABadPrefixInvalid) {
  PgPreparedOptions options;
  options.conninfo = "host=127.0.0.1 port=1 dbname=none connect_timeout=2";
  options.xid_prefix = "p";
  EXPECT_EQ(PgPreparedAdapter::Open(options).status().code(), StatusCode::kUnavailable);
  options.xid_prefix = "bad/prefix";
  EXPECT_EQ(PgPreparedAdapter::Open(options).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace txcoord::participant
