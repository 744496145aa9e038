// Sagas through the real txcoord process (docs/saga.md): commit and compensation paths, a
// parallel pair that really overlaps, transient failures, validation errors, and a coordinator
// SIGKILLed mid-saga (forward and backward) and restarted on the same store. The commit and
// compensation paths also run once on the real PostgreSQL from the rig.
//
// The participant is a small HTTP/1.1 server in the test. Step `a` has the action URL /a/do and
// the compensate URL /a/undo; calls are recorded as "a:do", "a:undo" in arrival order. A script
// per key gives the behaviours of successive calls (status, hang, or hold until N calls are in
// progress at once); when the queue is empty it answers 200.
#include <gtest/gtest.h>
#include <signal.h>

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "api_client.h"
#include "raw_http_participant.h"
#include "txcoord/participant/client.h"
#include "txcoord/testing/poll.h"
#include "txcoord/testing/postgres_server.h"
#include "txcoord_process.h"
#include "wait_for_terminal.h"

namespace txcoord::integration {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

struct Behaviour {
  enum Kind { kStatus, kHang, kHold } kind = kStatus;
  int status = 200;
  milliseconds hang{0};
  // kHold: answer 200 once this many calls have been in progress at once (the peak, so that the
  // first to be released does not strand the others), 500 after 10 s.
  int hold_for = 0;
};
Behaviour Answer(int status) { return {Behaviour::kStatus, status, milliseconds(0), 0}; }
Behaviour Hang(milliseconds ms) { return {Behaviour::kHang, 200, ms, 0}; }
Behaviour HoldUntilInProgress(int n) { return {Behaviour::kHold, 200, milliseconds(0), n}; }

class StepParticipant {
 public:
  StepParticipant() : server_([this](const RawRequest& r) { return Reply(r); }) {}
  ~StepParticipant() {
    // Releases held calls, so that the server can join their threads.
    std::lock_guard lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }

  std::string Url(const std::string& path) const { return server_.Url(path); }
  void Script(const std::string& key, std::vector<Behaviour> behaviours) {
    std::lock_guard lock(mu_);
    for (auto& b : behaviours) script_[key].push_back(b);
  }
  std::vector<std::string> Calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }
  int Count(const std::string& key) {
    int n = 0;
    for (const auto& c : Calls()) n += c == key;
    return n;
  }
  // The body and request head of the latest call to `key`.
  std::string Body(const std::string& key) {
    std::lock_guard lock(mu_);
    return bodies_[key];
  }
  std::string Head(const std::string& key) {
    std::lock_guard lock(mu_);
    return heads_[key];
  }
  int max_in_progress() {
    std::lock_guard lock(mu_);
    return max_in_progress_;
  }

 private:
  std::optional<RawReply> Reply(const RawRequest& request) {
    Behaviour b = Answer(200);
    {
      std::unique_lock lock(mu_);
      calls_.push_back(request.key);
      bodies_[request.key] = request.body;
      heads_[request.key] = request.head + "\r\n";  // every header line ends with CRLF
      auto& queue = script_[request.key];
      if (!queue.empty()) {
        b = queue.front();
        queue.pop_front();
      }
      ++in_progress_;
      max_in_progress_ = std::max(max_in_progress_, in_progress_);
      cv_.notify_all();
      if (b.kind == Behaviour::kHold) {
        const bool reached = cv_.wait_for(
            lock, seconds(10), [&] { return stopping_ || max_in_progress_ >= b.hold_for; });
        b.status = reached ? 200 : 500;
      }
    }
    if (b.kind == Behaviour::kHang) std::this_thread::sleep_for(b.hang);
    {
      std::lock_guard lock(mu_);
      --in_progress_;
    }
    return RawReply{b.status, b.status == 200
                                  ? "{}"
                                  : R"({"error":{"code":"X","message":"scripted refusal"}})"};
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;                                // GUARDED_BY(mu_)
  std::map<std::string, std::deque<Behaviour>> script_;  // GUARDED_BY(mu_)
  std::vector<std::string> calls_;                       // GUARDED_BY(mu_)
  std::map<std::string, std::string> bodies_;            // GUARDED_BY(mu_): the latest
  std::map<std::string, std::string> heads_;             // GUARDED_BY(mu_): the latest
  int in_progress_ = 0;                                  // GUARDED_BY(mu_)
  int max_in_progress_ = 0;                              // GUARDED_BY(mu_)
  RawHttpParticipant server_;                            // Last: its threads use the above.
};

struct StepSpec {
  std::string id;
  std::vector<std::string> deps;
};

class SagaApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("txcoord-saga-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    store_ = "sqlite://" + (dir_ / "txcoord.db").string();
  }
  void TearDown() override {
    if (coordinator_) {
      coordinator_->Signal(SIGTERM);
      EXPECT_EQ(coordinator_->WaitForExit(seconds(20)), 0) << coordinator_->Stderr();
    }
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  void UsePostgres() {
    auto db = testing::SharedPostgres().CreateDatabase("saga");
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    store_ = testing::SharedPostgres().Uri(*db);
  }

  void Start() {
    coordinator_ = std::make_unique<TxcoordProcess>(
        TXCOORD_BIN,
        std::vector<std::string>{"--listen", "127.0.0.1:0", "--store", store_,
                                 "--callback-timeout-ms", "3000", "--retry-initial-ms", "20",
                                 "--retry-max-ms", "100"},
        (dir_ / ("txcoord-" + std::to_string(++started_) + ".log")).string());
    const auto port = coordinator_->WaitForListening(seconds(30));
    ASSERT_TRUE(port.has_value()) << coordinator_->Stderr();
    port_ = *port;
    participant::CoordinatorClientOptions options;
    options.url = "http://127.0.0.1:" + std::to_string(port_);
    auto client = participant::CoordinatorClient::Create(options);
    ASSERT_TRUE(client.ok());
    client_ = std::move(*client);
  }

  void Kill() {
    coordinator_->Signal(SIGKILL);
    EXPECT_TRUE(coordinator_->WaitForExit(seconds(10)).has_value());
    coordinator_.reset();
  }

  v1::BeginRequest Saga(const std::string& gtid, const std::vector<StepSpec>& steps,
                        bool wait = true, int timeout_ms = 20'000) {
    v1::BeginRequest r;
    r.set_gtid(gtid);
    r.set_protocol("saga");
    r.set_timeout_ms(timeout_ms);
    r.set_wait(wait);
    for (const StepSpec& spec : steps) {
      v1::Step* s = r.add_steps();
      s->set_step_id(spec.id);
      s->set_action(participant_.Url("/" + spec.id + "/do"));
      s->set_compensate(participant_.Url("/" + spec.id + "/undo"));
      (*s->mutable_payload()->mutable_struct_value()->mutable_fields())["step"].set_string_value(
          spec.id);
      for (const std::string& d : spec.deps) s->add_depends_on(d);
    }
    return r;
  }

  v1::Transaction Terminal(const std::string& gtid) { return WaitForTerminal(*client_, gtid); }

  // The raw reply to a begin with this JSON body.
  ApiReply PostBegin(const std::string& json) {
    return Send(port_, {.method = "POST", .path = "/v1/transactions", .body = json});
  }

  std::string StepsJson(const std::string& steps) {
    return R"({"protocol":"saga","steps":[)" + steps + "]}";
  }
  std::string StepJson(const std::string& id, const std::string& deps = "",
                       const std::string& extra = "") {
    return R"({"step_id":")" + id + R"(","action":")" + participant_.Url("/" + id + "/do") +
           R"(","compensate":")" + participant_.Url("/" + id + "/undo") + R"(","depends_on":[)" +
           deps + "]" + extra + "}";
  }

  void CommitPath(const std::string& gtid) {
    auto reply = client_->Begin(Saga(gtid, {{"a", {}}, {"b", {"a"}}, {"c", {"b"}}}));
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    EXPECT_EQ(reply->http_status, 200);
    EXPECT_EQ(reply->transaction.state(), "committed");
    EXPECT_EQ(participant_.Calls(), (std::vector<std::string>{"a:do", "b:do", "c:do"}));
    // The step's own URL, with branch_id = step_id, phase "action" and the step's payload.
    const std::string body = participant_.Body("b:do");
    EXPECT_NE(body.find(R"("branch_id":"b")"), std::string::npos) << body;
    EXPECT_NE(body.find(R"("phase":"action")"), std::string::npos) << body;
    EXPECT_NE(body.find(R"("step":"b")"), std::string::npos) << body;
    EXPECT_NE(participant_.Head("b:do").find("Tx-Branch-Id: b\r\n"), std::string::npos)
        << participant_.Head("b:do");
    EXPECT_NE(participant_.Head("b:do").find("Tx-Phase: action\r\n"), std::string::npos);
    ASSERT_EQ(reply->transaction.steps_size(), 3);
    for (const auto& s : reply->transaction.steps()) {
      EXPECT_EQ(s.state(), "succeeded") << s.step_id();
      EXPECT_EQ(s.attempts(), 1) << s.step_id();
    }
  }

  void RefusalPath(const std::string& gtid) {
    participant_.Script("c:do", {Answer(409)});
    auto reply = client_->Begin(Saga(gtid, {{"a", {}}, {"b", {"a"}}, {"c", {"b"}}}));
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    EXPECT_EQ(reply->transaction.state(), "aborted");
    EXPECT_EQ(participant_.Calls(),
              (std::vector<std::string>{"a:do", "b:do", "c:do", "c:undo", "b:undo", "a:undo"}));
    EXPECT_NE(reply->transaction.reason().find("step \"c\" refused action"), std::string::npos)
        << reply->transaction.reason();
    EXPECT_NE(reply->transaction.reason().find("409"), std::string::npos);
    for (const auto& s : reply->transaction.steps()) {
      EXPECT_EQ(s.state(), "compensated") << s.step_id();
    }
    EXPECT_NE(participant_.Body("b:undo").find(R"("phase":"compensate")"), std::string::npos);
  }

  std::filesystem::path dir_;
  std::string store_;
  int started_ = 0;
  int port_ = 0;
  StepParticipant participant_;
  std::unique_ptr<TxcoordProcess> coordinator_;
  std::unique_ptr<participant::CoordinatorClient> client_;
};

TEST_F(SagaApiTest, ThreeStepsCommitInOrder) {
  Start();
  CommitPath("order-1");
  // GET shows the same record.
  auto got = client_->Get("order-1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->protocol(), "saga");
  EXPECT_EQ(got->state(), "committed");
  EXPECT_EQ(got->steps(1).depends_on(0), "a");
}

TEST_F(SagaApiTest, ARefusalOnTheLastStepCompensatesInReverseOrder) {
  Start();
  RefusalPath("order-2");
  // After a restart the record comes from the log: states, attempts, the reason.
  coordinator_->Signal(SIGTERM);
  ASSERT_EQ(coordinator_->WaitForExit(seconds(20)), 0);
  Start();
  auto got = client_->Get("order-2");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->state(), "aborted");
  EXPECT_NE(got->reason().find("step \"c\""), std::string::npos) << got->reason();
  ASSERT_EQ(got->steps_size(), 3);
  for (const auto& s : got->steps()) {
    EXPECT_EQ(s.state(), "compensated") << s.step_id();
    EXPECT_EQ(s.attempts(), 1) << s.step_id();
  }
  // The client cannot commit it now, and aborting it again is not an error.
  EXPECT_EQ(client_->Commit("order-2", false).status().code(), StatusCode::kConflict);
}

TEST_F(SagaApiTest, AParallelPairOverlaps) {
  Start();
  // Each of b and c answers only once both are in progress: the saga commits only if the
  // coordinator really sends them together.
  participant_.Script("b:do", {HoldUntilInProgress(2)});
  participant_.Script("c:do", {HoldUntilInProgress(2)});
  auto reply =
      client_->Begin(Saga("pair-1", {{"a", {}}, {"b", {"a"}}, {"c", {"a"}}, {"d", {"b", "c"}}}));
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->transaction.state(), "committed");
  EXPECT_EQ(participant_.max_in_progress(), 2);
  EXPECT_EQ(participant_.Count("b:do"), 1);
  EXPECT_EQ(participant_.Count("c:do"), 1);
  const auto calls = participant_.Calls();
  ASSERT_EQ(calls.size(), 4u);
  EXPECT_EQ(calls.front(), "a:do");
  EXPECT_EQ(calls.back(), "d:do");
}

TEST_F(SagaApiTest, TransientFailuresAreRetriedUntilTheStepSucceeds) {
  Start();
  participant_.Script("b:do", {Answer(500), Answer(503), Answer(425)});
  auto reply = client_->Begin(Saga("flaky-1", {{"a", {}}, {"b", {"a"}}}));
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->transaction.state(), "committed");
  EXPECT_EQ(participant_.Count("b:do"), 4);
  EXPECT_EQ(reply->transaction.steps(1).attempts(), 4);
  EXPECT_EQ(participant_.Count("b:undo") + participant_.Count("a:undo"), 0);
}

TEST_F(SagaApiTest, InvalidSagasAreRefusedNamingTheStep) {
  Start();
  struct Case {
    std::string name, body;
    int status;
    std::string code, mentions;
  };
  const std::string a = StepJson("a");
  const std::vector<Case> cases = {
      {"duplicate id", StepsJson(a + "," + a), 400, "INVALID_ARGUMENT", "\"a\""},
      {"unknown dependency", StepsJson(a + "," + StepJson("b", R"("zz")")), 400, "INVALID_ARGUMENT",
       "step \"b\""},
      {"cycle", StepsJson(StepJson("a", R"("b")") + "," + StepJson("b", R"("a")")), 400,
       "INVALID_ARGUMENT", "a -> b -> a"},
      {"missing compensate",
       StepsJson(R"({"step_id":"m","action":")" + participant_.Url("/m/do") + R"("})"), 400,
       "INVALID_ARGUMENT", "step \"m\""},
      {"no steps", StepsJson(""), 400, "INVALID_ARGUMENT", "step"},
      {"negative step timeout", StepsJson(StepJson("t", "", R"(,"timeout_ms":-1)")), 400,
       "INVALID_ARGUMENT", "step \"t\""},
      {"retry max below initial",
       StepsJson(StepJson("r", "", R"(,"retry":{"initial_ms":500,"max_ms":100})")), 400,
       "INVALID_ARGUMENT", "step \"r\""},
      {"state in a request", StepsJson(StepJson("s", "", R"(,"state":"succeeded")")), 400,
       "INVALID_ARGUMENT", "step \"s\""},
      {"branches in a saga",
       R"({"protocol":"saga","branches":[{"branch_id":"x","url":"http://127.0.0.1:1/x"}],"steps":[)" +
           a + "]}",
       400, "INVALID_ARGUMENT", "steps"},
      {"url outside the allow-list",
       StepsJson(R"({"step_id":"f","action":"http://10.1.2.3:7001/f","compensate":")" +
                 participant_.Url("/f/undo") + R"("})"),
       403, "FORBIDDEN", "step \"f\""},
  };
  for (const Case& c : cases) {
    const ApiReply reply = PostBegin(c.body);
    const std::string message = ExpectError(reply, c.status, c.code, c.name);
    EXPECT_NE(message.find(c.mentions), std::string::npos) << c.name << ": " << message;
  }
  EXPECT_TRUE(participant_.Calls().empty());
}

TEST_F(SagaApiTest, KilledMidSagaTheRestartedCoordinatorFinishesForward) {
  Start();
  participant_.Script("b:do", {Hang(milliseconds(1500))});
  auto reply = client_->Begin(Saga("crash-fwd", {{"a", {}}, {"b", {"a"}}, {"c", {"b"}}}, false));
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  ASSERT_TRUE(testing::PollUntil(seconds(10), milliseconds(5),
                                 [&] { return participant_.Count("b:do") == 1; }));
  Kill();
  Start();
  const v1::Transaction tx = Terminal("crash-fwd");
  EXPECT_EQ(tx.state(), "committed");
  EXPECT_EQ(participant_.Count("a:do"), 1) << "a's success was durable: not run again";
  EXPECT_GE(participant_.Count("b:do"), 2) << "b was running: its action is sent again";
  EXPECT_EQ(participant_.Count("c:do"), 1);
  EXPECT_EQ(
      participant_.Count("a:undo") + participant_.Count("b:undo") + participant_.Count("c:undo"),
      0);
}

TEST_F(SagaApiTest, KilledWhileCompensatingTheRestartedCoordinatorFinishesBackward) {
  Start();
  participant_.Script("c:do", {Answer(409)});
  participant_.Script("b:undo", {Hang(milliseconds(1500))});
  auto reply = client_->Begin(Saga("crash-back", {{"a", {}}, {"b", {"a"}}, {"c", {"b"}}}, false));
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  ASSERT_TRUE(testing::PollUntil(seconds(10), milliseconds(5),
                                 [&] { return participant_.Count("b:undo") == 1; }));
  Kill();
  Start();
  const v1::Transaction tx = Terminal("crash-back");
  EXPECT_EQ(tx.state(), "aborted");
  EXPECT_NE(tx.reason().find("step \"c\""), std::string::npos) << tx.reason();
  EXPECT_EQ(participant_.Count("c:undo"), 1) << "c's compensation was durable";
  EXPECT_GE(participant_.Count("b:undo"), 2);
  EXPECT_EQ(participant_.Count("a:undo"), 1);
  EXPECT_EQ(participant_.Count("a:do"), 1);
  EXPECT_EQ(participant_.Count("b:do"), 1);
  EXPECT_EQ(participant_.Count("c:do"), 1) << "no action after the abort decision";
  // a is compensated only after b.
  const auto calls = participant_.Calls();
  EXPECT_EQ(calls.back(), "a:undo");
}

TEST_F(SagaApiTest, ClientAbortCompensatesARunningSaga) {
  Start();
  participant_.Script("b:do", {Hang(milliseconds(1000))});
  auto reply = client_->Begin(Saga("abort-1", {{"a", {}}, {"b", {"a"}}}, false));
  ASSERT_TRUE(reply.ok());
  ASSERT_TRUE(testing::PollUntil(seconds(10), milliseconds(5),
                                 [&] { return participant_.Count("b:do") == 1; }));
  auto aborted = client_->Abort("abort-1", true);
  ASSERT_TRUE(aborted.ok()) << aborted.status().ToString();
  EXPECT_EQ(aborted->transaction.state(), "aborted");
  EXPECT_EQ(participant_.Count("b:undo"), 1);
  EXPECT_EQ(participant_.Count("a:undo"), 1);
}

TEST_F(SagaApiTest, CommitAndCompensationOnPostgres) {
  UsePostgres();
  Start();
  CommitPath("pg-commit");
  // A fresh participant log for the second saga.
  const size_t before = participant_.Calls().size();
  participant_.Script("c:do", {Answer(409)});
  auto reply = client_->Begin(Saga("pg-abort", {{"a", {}}, {"b", {"a"}}, {"c", {"b"}}}));
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->transaction.state(), "aborted");
  const auto calls = participant_.Calls();
  EXPECT_EQ(
      std::vector<std::string>(calls.begin() + static_cast<std::ptrdiff_t>(before), calls.end()),
      (std::vector<std::string>{"a:do", "b:do", "c:do", "c:undo", "b:undo", "a:undo"}));
}

}  // namespace
}  // namespace txcoord::integration
