// PgSagaStep against a real PostgreSQL (rig): the barrier's saga semantics on pooled connections
// (repeats, null compensation, anti-hanging, refusals rolled back), concurrent duplicates, lock
// timeouts answered 503, a broken pooled connection replaced, and Open's errors. Effects are rows
// of the step's own database, read from a second connection.
#include <gtest/gtest.h>

#include <latch>
#include <pqxx/pqxx>
#include <thread>
#include <vector>

#include "sdk_test_util.h"
#include "txcoord/participant/saga.h"
#include "txcoord/testing/postgres_server.h"

namespace txcoord::participant {
namespace {

using testing::Ctx;
using Kind = PhaseResult::Kind;

class PgSagaStepTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& pg = txcoord::testing::SharedPostgres();
    conninfo_ = pg.ConnInfo(pg.CreateDatabase("sagastep").value());
    observer_ = std::make_unique<pqxx::connection>(conninfo_);
    pqxx::work tx(*observer_);
    tx.exec("CREATE TABLE effects (gtid TEXT, step TEXT, kind TEXT)");
    tx.exec("CREATE TABLE credit (customer TEXT PRIMARY KEY, reserved BIGINT NOT NULL)");
    tx.exec("INSERT INTO credit VALUES ('c-1', 0)");
    tx.commit();
  }

  // Each action records an 'action' row and reserves 10 of c-1's credit; each compensation
  // records 'undo' and releases it. `refuse` makes the action change things, then refuse.
  std::unique_ptr<PgSagaStep> Open(bool refuse = false,
                                   std::chrono::milliseconds lock_timeout = {}) {
    PgSagaStepOptions options;
    options.conninfo = conninfo_;
    if (lock_timeout.count() > 0) options.lock_timeout = lock_timeout;
    auto step = PgSagaStep::Open(
        options,
        [this, refuse](pqxx::transaction_base& tx, const CallbackContext& ctx) {
          ++action_calls_;
          Record(tx, ctx, "action");
          tx.exec("UPDATE credit SET reserved = reserved + 10 WHERE customer = 'c-1'");
          if (refuse) return Status::Conflict("credit limit exceeded");
          return Status::Ok();
        },
        [](pqxx::transaction_base& tx, const CallbackContext& ctx) {
          Record(tx, ctx, "undo");
          tx.exec("UPDATE credit SET reserved = reserved - 10 WHERE customer = 'c-1'");
          return Status::Ok();
        });
    EXPECT_TRUE(step.ok()) << step.status().ToString();
    return step.ok() ? std::move(*step) : nullptr;
  }

  static void Record(pqxx::transaction_base& tx, const CallbackContext& ctx, const char* kind) {
    tx.exec_params("INSERT INTO effects VALUES ($1, $2, $3)", ctx.gtid, ctx.branch_id, kind);
  }

  int64_t Count(const std::string& gtid, const std::string& kind) {
    pqxx::nontransaction tx(*observer_);
    return tx
        .exec_params("SELECT count(*) FROM effects WHERE gtid = $1 AND kind = $2", gtid, kind)[0][0]
        .as<int64_t>();
  }
  int64_t Reserved() {
    pqxx::nontransaction tx(*observer_);
    return tx.exec("SELECT reserved FROM credit WHERE customer = 'c-1'")[0][0].as<int64_t>();
  }

  std::string conninfo_;
  std::unique_ptr<pqxx::connection> observer_;
  std::atomic<int> action_calls_{0};
};

TEST_F(PgSagaStepTest, RepeatsAreNoOpsAndACompensationUndoesOnce) {
  auto step = Open();
  const CallbackContext action = Ctx("s-1", "reserve", Phase::kAction);
  const CallbackContext compensate = Ctx("s-1", "reserve", Phase::kCompensate);
  EXPECT_EQ(step->Run(action).path, BarrierResult::Path::kRan);
  EXPECT_EQ(step->Run(action).path, BarrierResult::Path::kRepeated);
  EXPECT_EQ(step->Action(action), PhaseResult::Done());
  EXPECT_EQ(Count("s-1", "action"), 1);
  EXPECT_EQ(Reserved(), 10);
  EXPECT_EQ(step->Compensate(compensate), PhaseResult::Done());
  EXPECT_EQ(step->Compensate(compensate), PhaseResult::Done());
  EXPECT_EQ(Count("s-1", "undo"), 1);
  EXPECT_EQ(Reserved(), 0);
  // The action delivered once more after its compensation: refused, and nothing runs.
  EXPECT_EQ(step->Action(action).kind(), PhaseResult::Kind::kRefused);
  EXPECT_EQ(Count("s-1", "action"), 1);
  EXPECT_EQ(action_calls_, 1);
}

TEST_F(PgSagaStepTest, ACompensationBeforeItsActionIsNullAndBlocksTheLateAction) {
  auto step = Open();
  EXPECT_EQ(step->Run(Ctx("s-2", "reserve", Phase::kCompensate)).path,
            BarrierResult::Path::kNullCompensation);
  EXPECT_EQ(Count("s-2", "undo"), 0) << "nothing to undo";
  const BarrierResult late = step->Run(Ctx("s-2", "reserve", Phase::kAction));
  EXPECT_EQ(late.path, BarrierResult::Path::kBlocked);
  EXPECT_EQ(late.reply.kind(), Kind::kRefused) << "a late action is answered 409";
  EXPECT_EQ(Count("s-2", "action"), 0);
  EXPECT_EQ(action_calls_, 0);
  EXPECT_EQ(Reserved(), 0);
}

TEST_F(PgSagaStepTest, ARefusedActionKeepsNoChangeAndItsRefusalIsRepeated) {
  auto step = Open(/*refuse=*/true);
  const CallbackContext action = Ctx("s-3", "reserve", Phase::kAction);
  const PhaseResult first = step->Action(action);
  EXPECT_EQ(first.kind(), Kind::kRefused);
  EXPECT_NE(first.message().find("credit limit exceeded"), std::string::npos) << first.message();
  EXPECT_EQ(Count("s-3", "action"), 0) << "the refused action's changes are rolled back";
  EXPECT_EQ(Reserved(), 0);
  EXPECT_EQ(step->Action(action), first) << "a repeat gets the same 409 without running";
  EXPECT_EQ(action_calls_, 1);
  EXPECT_EQ(step->Compensate(Ctx("s-3", "reserve", Phase::kCompensate)), PhaseResult::Done());
  EXPECT_EQ(Count("s-3", "undo"), 0) << "nothing to undo after a refusal";
  EXPECT_EQ(Reserved(), 0);
  // A phase given to the wrong method is a caller's bug: 500, nothing runs.
  EXPECT_EQ(step->Action(Ctx("s-4", "reserve", Phase::kCompensate)).kind(), Kind::kFailed);
  EXPECT_EQ(Count("s-4", "undo") + Count("s-4", "action"), 0);
}

TEST_F(PgSagaStepTest, ConcurrentDuplicatesRunTheActionOnce) {
  auto step = Open();
  constexpr int kThreads = 8;
  std::latch start(kThreads);
  std::vector<PhaseResult> results(kThreads, PhaseResult::Failed("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      results[static_cast<size_t>(i)] = step->Action(Ctx("s-5", "reserve", Phase::kAction));
    });
  }
  for (std::thread& t : threads) t.join();
  for (const PhaseResult& r : results) {
    // Each duplicate is answered 200 or, if it gave up waiting for the other's row, 503.
    EXPECT_TRUE(r.done() || r.kind() == Kind::kTransient) << r.message();
  }
  EXPECT_EQ(Count("s-5", "action"), 1);
  EXPECT_EQ(Reserved(), 10);
  EXPECT_EQ(step->Action(Ctx("s-5", "reserve", Phase::kAction)), PhaseResult::Done());
}

TEST_F(PgSagaStepTest, ALockWaitPastTheTimeoutIs503AndTheRetryRunsOnce) {
  auto step = Open(/*refuse=*/false, std::chrono::milliseconds(200));
  pqxx::connection holder(conninfo_);
  auto lock = std::make_unique<pqxx::work>(holder);
  lock->exec("SELECT * FROM credit WHERE customer = 'c-1' FOR UPDATE");
  const CallbackContext action = Ctx("s-6", "reserve", Phase::kAction);
  const PhaseResult blocked = step->Action(action);
  EXPECT_EQ(blocked.kind(), Kind::kTransient) << blocked.message();
  EXPECT_EQ(Count("s-6", "action"), 0) << "the timed-out attempt left nothing";
  lock->abort();
  lock.reset();
  EXPECT_EQ(step->Action(action), PhaseResult::Done());
  EXPECT_EQ(Count("s-6", "action"), 1);
  EXPECT_EQ(Reserved(), 10);
}

TEST_F(PgSagaStepTest, ABrokenPooledConnectionIsReplaced) {
  auto step = Open();
  ASSERT_EQ(step->Action(Ctx("s-7", "reserve", Phase::kAction)), PhaseResult::Done());
  {
    // Kill every other session of this database: the step's pooled connection dies idle.
    pqxx::nontransaction tx(*observer_);
    tx.exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()");
  }
  const CallbackContext action = Ctx("s-8", "reserve", Phase::kAction);
  PhaseResult first = step->Action(action);
  if (!first.done()) {
    EXPECT_EQ(first.kind(), Kind::kTransient) << "a dead connection is a retryable failure";
    first = step->Action(action);  // the coordinator's retry gets a fresh connection
  }
  EXPECT_EQ(first, PhaseResult::Done()) << first.message();
  EXPECT_EQ(Count("s-8", "action"), 1);
  EXPECT_EQ(Reserved(), 20);
}

TEST(PgSagaStepOpenTest, AnUnreachableDatabaseIsUnavailableWithoutItsPassword) {
  auto noop = [](pqxx::transaction_base&, const CallbackContext&) { return Status::Ok(); };
  PgSagaStepOptions options;
  options.conninfo = "host=127.0.0.1 port=1 dbname=none password=hunter2 connect_timeout=2";
  auto step = PgSagaStep::Open(options, noop, noop);
  ASSERT_EQ(step.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(step.status().message().find("hunter2"), std::string::npos) << step.status().ToString();
  EXPECT_EQ(PgSagaStep::Open(options, noop, nullptr).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace txcoord::participant
