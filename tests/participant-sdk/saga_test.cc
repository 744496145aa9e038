// The SDK's saga side: SqliteSagaStep's barrier semantics on a real SQLite file, AddSagaStep's
// routing over real HTTP, and the Saga builder's request as a fake coordinator receives it.
#include "txcoord/participant/saga.h"

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/StreamCopier.h>
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "fake_coordinator.h"
#include "sdk_test_util.h"
#include "txcoord/participant/endpoint.h"
#include "txcoord/schemas/json.h"

namespace txcoord::participant {
namespace {

using testing::Ctx;
using testing::TempDir;

// A ledger of effects: each action adds a row (kind 'action'), each compensation one ('undo').
class Ledger {
 public:
  explicit Ledger(const TempDir& dir) {
    const std::string path = (dir.path() / "ledger.db").string();
    EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK);
    sqlite3_busy_timeout(db_, 5000);
    Exec("CREATE TABLE effects (gtid TEXT, step TEXT, kind TEXT)");
  }
  ~Ledger() { sqlite3_close(db_); }

  static Status Record(sqlite3* db, const CallbackContext& ctx, const char* kind) {
    const std::string sql = "INSERT INTO effects VALUES ('" + ctx.gtid + "','" + ctx.branch_id +
                            "','" + kind + "')";  // ids are [A-Za-z0-9._:-]: no quoting needed
    return sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK
               ? Status::Ok()
               : Status::Unavailable(sqlite3_errmsg(db));
  }

  int Count(const std::string& kind) {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db_, "SELECT count(*) FROM effects WHERE kind = ?", -1, &st, nullptr);
    sqlite3_bind_text(st, 1, kind.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_step(st);
    const int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
  }
  sqlite3* db() { return db_; }

 private:
  void Exec(const char* sql) { ASSERT_EQ(sqlite3_exec(db_, sql, nullptr, nullptr, nullptr), 0); }
  sqlite3* db_ = nullptr;
};

SqliteSagaStep LedgerStep(Ledger& ledger, bool refuse_action = false) {
  return SqliteSagaStep(
      ledger.db(),
      [refuse_action](sqlite3* db, const CallbackContext& ctx) {
        if (refuse_action) return Status::Conflict("no credit left");
        return Ledger::Record(db, ctx, "action");
      },
      [](sqlite3* db, const CallbackContext& ctx) { return Ledger::Record(db, ctx, "undo"); });
}

TEST(SqliteSagaStepTest, RepeatsAreNoOpsAndACompensationUndoesOnce) {
  TempDir dir;
  Ledger ledger(dir);
  SqliteSagaStep step = LedgerStep(ledger);
  const CallbackContext action = Ctx("s-1", "reserve", Phase::kAction);
  const CallbackContext compensate = Ctx("s-1", "reserve", Phase::kCompensate);
  EXPECT_EQ(step.Action(action), PhaseResult::Done());
  EXPECT_EQ(step.Action(action), PhaseResult::Done());  // a repeat: nothing runs again
  EXPECT_EQ(ledger.Count("action"), 1);
  EXPECT_EQ(step.Compensate(compensate), PhaseResult::Done());
  EXPECT_EQ(step.Compensate(compensate), PhaseResult::Done());
  EXPECT_EQ(ledger.Count("undo"), 1);
  // A duplicate of the action, delivered after the compensation, is refused and does nothing:
  // the effect stays applied once and undone once.
  const PhaseResult late = step.Action(action);
  EXPECT_EQ(late.kind(), PhaseResult::Kind::kRefused);
  EXPECT_NE(late.message().find("already compensated"), std::string::npos) << late.message();
  EXPECT_EQ(ledger.Count("action"), 1);
  EXPECT_EQ(ledger.Count("undo"), 1);
}

// Two steps of one service on one connection through one commit group: concurrent actions all
// commit, each once, in fewer transactions than actions; repeats and compensations keep the
// barrier's answers.
TEST(SqliteSagaStepTest, StepsSharingACommitGroupRunEachActionOnceAndUndoOnce) {
  TempDir dir;
  Ledger ledger(dir);
  SqliteCommitGroup group(ledger.db());
  const auto action = [](sqlite3* db, const CallbackContext& ctx) {
    return Ledger::Record(db, ctx, "action");
  };
  const auto undo = [](sqlite3* db, const CallbackContext& ctx) {
    return Ledger::Record(db, ctx, "undo");
  };
  SqliteSagaStep reserve(group, action, undo);
  SqliteSagaStep ship(group, action, undo);
  constexpr int kSagas = 24;
  std::vector<std::thread> threads;
  std::atomic<int> done{0};
  for (int i = 0; i < kSagas; ++i) {
    threads.emplace_back([&, i] {
      const std::string gtid = "g-" + std::to_string(i);
      for (int repeat = 0; repeat < 2; ++repeat) {  // the second delivery is a no-op
        if (reserve.Action(Ctx(gtid, "reserve", Phase::kAction)).done()) ++done;
        if (ship.Action(Ctx(gtid, "ship", Phase::kAction)).done()) ++done;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(done.load(), 4 * kSagas);
  EXPECT_EQ(group.Exclusive([&](sqlite3*) { return ledger.Count("action"); }), 2 * kSagas);
  EXPECT_EQ(group.stats().members, 4 * kSagas);

  EXPECT_EQ(reserve.Compensate(Ctx("g-0", "reserve", Phase::kCompensate)), PhaseResult::Done());
  EXPECT_EQ(reserve.Compensate(Ctx("g-0", "reserve", Phase::kCompensate)), PhaseResult::Done());
  EXPECT_EQ(ship.Run(Ctx("late", "ship", Phase::kCompensate)).path,
            BarrierResult::Path::kNullCompensation);
  EXPECT_EQ(ship.Run(Ctx("late", "ship", Phase::kAction)).path, BarrierResult::Path::kBlocked);
  EXPECT_EQ(group.Exclusive([&](sqlite3*) { return ledger.Count("undo"); }), 1);
  EXPECT_EQ(group.Exclusive([&](sqlite3*) { return ledger.Count("action"); }), 2 * kSagas);
}

TEST(SqliteSagaStepTest, ACompensationBeforeItsActionIsNullAndBlocksTheLateAction) {
  TempDir dir;
  Ledger ledger(dir);
  SqliteSagaStep step = LedgerStep(ledger);
  EXPECT_EQ(step.Run(Ctx("s-2", "reserve", Phase::kCompensate)).path,
            BarrierResult::Path::kNullCompensation);
  EXPECT_EQ(ledger.Count("undo"), 0);  // nothing to undo
  EXPECT_EQ(step.Run(Ctx("s-2", "reserve", Phase::kAction)).path, BarrierResult::Path::kBlocked);
  EXPECT_EQ(ledger.Count("action"), 0);
}

TEST(SqliteSagaStepTest, ARefusedActionIsRecordedRepeatedAndNeverCompensated) {
  TempDir dir;
  Ledger ledger(dir);
  SqliteSagaStep step = LedgerStep(ledger, /*refuse_action=*/true);
  const PhaseResult first = step.Action(Ctx("s-3", "reserve", Phase::kAction));
  EXPECT_EQ(first.kind(), PhaseResult::Kind::kRefused);
  EXPECT_EQ(step.Action(Ctx("s-3", "reserve", Phase::kAction)), first);  // same 409
  EXPECT_EQ(step.Compensate(Ctx("s-3", "reserve", Phase::kCompensate)), PhaseResult::Done());
  EXPECT_EQ(ledger.Count("undo"), 0);  // the refused action changed nothing to undo
  // A phase given to the wrong method is a caller's bug: 500, nothing runs.
  EXPECT_EQ(step.Action(Ctx("s-4", "reserve", Phase::kCompensate)).kind(),
            PhaseResult::Kind::kFailed);
  EXPECT_EQ(ledger.Count("action") + ledger.Count("undo"), 0);
}

// POSTs a saga callback body to the server; returns the status.
int PostCallback(int port, const std::string& path, const std::string& phase) {
  const std::string body =
      R"({"gtid":"s-5","branch_id":"reserve","phase":")" + phase + R"(","payload":{"a":1}})";
  Poco::Net::HTTPClientSession session("127.0.0.1", static_cast<Poco::UInt16>(port));
  Poco::Net::HTTPRequest request("POST", path, Poco::Net::HTTPMessage::HTTP_1_1);
  request.setContentType("application/json");
  request.setContentLength(static_cast<std::streamsize>(body.size()));
  request.set("Tx-Gtid", "s-5");
  request.set("Tx-Branch-Id", "reserve");
  request.set("Tx-Phase", phase);
  request.set("Tx-Attempt", "1");
  session.sendRequest(request) << body;
  Poco::Net::HTTPResponse response;
  std::string ignored;
  Poco::StreamCopier::copyToString(session.receiveResponse(response), ignored);
  return static_cast<int>(response.getStatus());
}

TEST(AddSagaStepTest, ActionAndCompensateUrlsReachTheirMethods) {
  TempDir dir;
  Ledger ledger(dir);
  SqliteSagaStep step = LedgerStep(ledger);
  CallbackServer server;
  ASSERT_TRUE(server.AddSagaStep("/credit/reserve", "/credit/release", &step).ok());
  EXPECT_FALSE(server.AddSagaStep("/credit/reserve", "/other", &step).ok());  // taken
  auto port = server.Start("127.0.0.1:0");
  ASSERT_TRUE(port.ok()) << port.status().ToString();

  EXPECT_EQ(PostCallback(*port, "/credit/release", "action"), 400);  // phase and url disagree
  EXPECT_EQ(ledger.Count("action"), 0);
  EXPECT_EQ(PostCallback(*port, "/credit/reserve", "action"), 200);
  EXPECT_EQ(ledger.Count("action"), 1);
  EXPECT_EQ(PostCallback(*port, "/credit/release", "compensate"), 200);
  EXPECT_EQ(ledger.Count("undo"), 1);
  EXPECT_EQ(PostCallback(*port, "/credit/nothing", "action"), 404);
}

TEST(SagaBuilderTest, SubmitsTheContractsBeginRequestWithStepOptions) {
  testing::FakeCoordinator coordinator([](const auto&, auto& reply) {
    reply.status = 200;
    reply.body = R"({"gtid":"order-42","protocol":"saga","state":"committed"})";
  });
  auto client = CoordinatorClient::Create({.url = coordinator.url()});
  ASSERT_TRUE(client.ok());
  auto reply =
      Saga(**client, "order-42")
          .Step("reserve", "http://127.0.0.1:1/r", "http://127.0.0.1:1/u",
                R"({"customer":"c-17","amount":30})")
          .Step("order", "http://127.0.0.1:2/o", "http://127.0.0.1:2/c", "null", {"reserve"})
          .StepTimeout("order", std::chrono::milliseconds(700))
          .StepRetry("reserve", std::chrono::milliseconds(20), std::chrono::milliseconds(400), 3)
          .Timeout(std::chrono::seconds(9))
          .Submit(/*wait=*/true);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->transaction.state(), "committed");

  const auto requests = coordinator.requests();
  ASSERT_EQ(requests.size(), 1u);
  const auto& sent = requests[0];
  EXPECT_EQ(sent.method, "POST");
  EXPECT_EQ(sent.uri, "/v1/transactions");
  v1::BeginRequest begin;
  ASSERT_TRUE(JsonToMessage(sent.body, &begin).ok()) << sent.body;
  EXPECT_EQ(begin.gtid(), "order-42");
  EXPECT_EQ(begin.protocol(), "saga");
  EXPECT_TRUE(begin.wait());
  EXPECT_EQ(begin.timeout_ms(), 9000);
  ASSERT_EQ(begin.steps_size(), 2);
  EXPECT_EQ(begin.steps(0).payload().struct_value().fields().at("amount").number_value(), 30);
  EXPECT_EQ(begin.steps(0).retry().initial_ms(), 20);
  EXPECT_EQ(begin.steps(0).retry().max_ms(), 400);
  EXPECT_EQ(begin.steps(0).retry().max_attempts(), 3);
  EXPECT_EQ(begin.steps(1).depends_on_size(), 1);
  EXPECT_EQ(begin.steps(1).depends_on(0), "reserve");
  EXPECT_EQ(begin.steps(1).timeout_ms(), 700);
}

TEST(SagaBuilderTest, MistakesAreReturnedWithoutCallingTheCoordinator) {
  testing::FakeCoordinator coordinator([](const auto&, auto& reply) { reply.status = 500; });
  auto client = CoordinatorClient::Create({.url = coordinator.url()});
  ASSERT_TRUE(client.ok());
  const auto build = [&](auto&& configure) {
    Saga saga(**client, "order-43");
    saga.Step("a", "http://127.0.0.1:1/a", "http://127.0.0.1:1/u", "null");
    configure(saga);
    return saga.Submit(false).status();
  };
  const Status unknown_dep = build([](Saga& s) {
    s.Step("b", "http://127.0.0.1:1/b", "http://127.0.0.1:1/v", "null", {"nope"});
  });
  EXPECT_EQ(unknown_dep.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(unknown_dep.message().find("nope"), std::string::npos) << unknown_dep.message();
  EXPECT_EQ(
      build([](Saga& s) { s.Step("a", "http://127.0.0.1:1/a", "http://x:1/u", "null"); }).code(),
      StatusCode::kInvalidArgument);  // added twice
  EXPECT_EQ(build([](Saga& s) { s.Step("c", "http://127.0.0.1:1/c", "", "null"); }).code(),
            StatusCode::kInvalidArgument);  // no compensate url
  EXPECT_EQ(build([](Saga& s) {
              s.Step("c", "http://127.0.0.1:1/c", "http://127.0.0.1:1/d", "{not json");
            }).code(),
            StatusCode::kInvalidArgument);
  const Status unknown_step =
      build([](Saga& s) { s.StepTimeout("zzz", std::chrono::milliseconds(5)); });
  EXPECT_NE(unknown_step.message().find("zzz"), std::string::npos) << unknown_step.message();
  EXPECT_EQ(build([](Saga& s) {
              s.StepRetry("a", std::chrono::milliseconds(-1), std::chrono::milliseconds(1), 0);
            }).code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(coordinator.requests().empty());
}

}  // namespace
}  // namespace txcoord::participant
