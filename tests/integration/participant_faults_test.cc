// The real txcoord process against participants that misbehave: answer 409, 425, 500, hang past
// the callback timeout, or die mid-call (the connection closes with no reply). Each case runs
// on both stores: SQLite and the real PostgreSQL from the rig.
//
// The participant is a small HTTP/1.1 server in the test (keep-alive, one thread per
// connection) driven by a script: per "branch:phase", a queue of behaviours for successive
// calls; when the queue is empty it answers 200. It records every call it received.
#include <gtest/gtest.h>

#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

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
  enum Kind { kStatus, kHang, kDie } kind = kStatus;
  int status = 200;
  milliseconds hang{0};
};
Behaviour Answer(int status) { return {Behaviour::kStatus, status, milliseconds(0)}; }
Behaviour Hang(milliseconds ms) { return {Behaviour::kHang, 200, ms}; }
Behaviour Die() { return {Behaviour::kDie, 0, milliseconds(0)}; }

class ScriptedParticipant {
 public:
  ScriptedParticipant() : server_([this](const RawRequest& r) { return Reply(r); }) {}

  std::string Url(const std::string& branch) const { return server_.Url("/" + branch); }
  void Script(const std::string& key, std::vector<Behaviour> behaviours) {
    std::lock_guard lock(mu_);
    for (auto& b : behaviours) script_[key].push_back(b);
  }
  // "branch:phase" of every call received, in arrival order.
  std::vector<std::string> Calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }
  int Count(const std::string& key) {
    int n = 0;
    for (const auto& c : Calls()) n += c == key;
    return n;
  }

 private:
  std::optional<RawReply> Reply(const RawRequest& request) {
    Behaviour b = Answer(200);
    {
      std::lock_guard lock(mu_);
      calls_.push_back(request.key);
      auto& queue = script_[request.key];
      if (!queue.empty()) {
        b = queue.front();
        queue.pop_front();
      }
    }
    if (b.kind == Behaviour::kDie) return std::nullopt;
    if (b.kind == Behaviour::kHang) std::this_thread::sleep_for(b.hang);
    return RawReply{
        b.status, b.status == 200 ? "{}" : "{\"error\":{\"code\":\"X\",\"message\":\"scripted\"}}"};
  }

  std::mutex mu_;
  std::map<std::string, std::deque<Behaviour>> script_;  // GUARDED_BY(mu_)
  std::vector<std::string> calls_;                       // GUARDED_BY(mu_)
  RawHttpParticipant server_;                            // Last: its threads use the above.
};

class ParticipantFaultsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("txcoord-faults-" + std::to_string(getpid()) + "-" + GetParam() + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    std::string store = "sqlite://" + (dir_ / "txcoord.db").string();
    if (GetParam() == "postgres") {
      auto db = testing::SharedPostgres().CreateDatabase("faults");
      ASSERT_TRUE(db.ok()) << db.status().ToString();
      store = testing::SharedPostgres().Uri(*db);
    }
    coordinator_ = std::make_unique<TxcoordProcess>(
        TXCOORD_BIN,
        std::vector<std::string>{"--listen", "127.0.0.1:0", "--store", store,
                                 "--callback-timeout-ms", "300", "--retry-initial-ms", "20",
                                 "--retry-max-ms", "100"},
        (dir_ / "txcoord.log").string());
    const auto port = coordinator_->WaitForListening(seconds(30));
    ASSERT_TRUE(port.has_value()) << coordinator_->Stderr();
    participant::CoordinatorClientOptions options;
    options.url = "http://127.0.0.1:" + std::to_string(*port);
    auto client = participant::CoordinatorClient::Create(options);
    ASSERT_TRUE(client.ok());
    client_ = std::move(*client);
  }

  void TearDown() override {
    if (coordinator_) {
      coordinator_->Signal(SIGTERM);
      EXPECT_EQ(coordinator_->WaitForExit(seconds(20)), 0) << coordinator_->Stderr();
    }
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  v1::BeginRequest TwoBranches(const std::string& gtid, const std::string& protocol = "2pc") {
    v1::BeginRequest r;
    r.set_gtid(gtid);
    r.set_protocol(protocol);
    r.set_timeout_ms(3000);
    r.set_wait(protocol == "2pc");
    if (protocol == "2pc") {
      for (const char* b : {"x", "y"}) {
        v1::Branch* branch = r.add_branches();
        branch->set_branch_id(b);
        branch->set_url(participant_.Url(b));
      }
    }
    return r;
  }

  // The record once terminal (polling past `wait`'s grace).
  v1::Transaction Terminal(const std::string& gtid) { return WaitForTerminal(*client_, gtid); }

  const v1::Branch& BranchOf(const v1::Transaction& tx, const std::string& id) {
    for (const auto& b : tx.branches()) {
      if (b.branch_id() == id) return b;
    }
    ADD_FAILURE() << "no branch " << id;
    return tx.branches(0);
  }

  std::filesystem::path dir_;
  ScriptedParticipant participant_;
  std::unique_ptr<TxcoordProcess> coordinator_;
  std::unique_ptr<participant::CoordinatorClient> client_;
};

TEST_P(ParticipantFaultsTest, TwoPhaseCommitPath) {
  auto reply = client_->Begin(TwoBranches("commit-1"));
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->transaction.state(), "committed");
  EXPECT_EQ(participant_.Count("x:prepare"), 1);
  EXPECT_EQ(participant_.Count("y:prepare"), 1);
  EXPECT_EQ(participant_.Count("x:commit"), 1);
  EXPECT_EQ(participant_.Count("y:commit"), 1);
  EXPECT_EQ(participant_.Count("x:abort") + participant_.Count("y:abort"), 0);
}

TEST_P(ParticipantFaultsTest, A409OnPrepareAbortsBothBranches) {
  participant_.Script("y:prepare", {Answer(409)});
  auto reply = client_->Begin(TwoBranches("abort-1"));
  ASSERT_TRUE(reply.ok());
  const v1::Transaction tx = Terminal("abort-1");
  EXPECT_EQ(tx.state(), "aborted");
  EXPECT_NE(tx.reason().find("\"y\""), std::string::npos) << tx.reason();
  EXPECT_NE(tx.reason().find("409"), std::string::npos) << tx.reason();
  EXPECT_EQ(participant_.Count("x:abort"), 1);
  EXPECT_EQ(participant_.Count("y:abort"), 1);
  EXPECT_EQ(participant_.Count("x:commit") + participant_.Count("y:commit"), 0);
  EXPECT_EQ(participant_.Count("y:prepare"), 1);  // a no vote is never retried
}

TEST_P(ParticipantFaultsTest, A425IsRetriedUntilTheParticipantIsDone) {
  participant_.Script("x:prepare", {Answer(425), Answer(425)});
  ASSERT_TRUE(client_->Begin(TwoBranches("busy-1")).ok());
  const v1::Transaction tx = Terminal("busy-1");
  EXPECT_EQ(tx.state(), "committed");
  EXPECT_EQ(participant_.Count("x:prepare"), 3);
}

TEST_P(ParticipantFaultsTest, A500InPhaseTwoIsRetriedAndShownInTheRecord) {
  participant_.Script("y:commit", {Answer(500), Answer(500), Answer(500)});
  ASSERT_TRUE(client_->Begin(TwoBranches("flaky-1")).ok());
  const v1::Transaction tx = Terminal("flaky-1");
  EXPECT_EQ(tx.state(), "committed");
  EXPECT_EQ(participant_.Count("y:commit"), 4);
  EXPECT_EQ(BranchOf(tx, "y").attempts(), 4);
  EXPECT_NE(BranchOf(tx, "y").last_error().find("500"), std::string::npos);
}

TEST_P(ParticipantFaultsTest, AHangPastTheCallbackTimeoutIsRetried) {
  participant_.Script("x:prepare", {Hang(milliseconds(1500))});
  ASSERT_TRUE(client_->Begin(TwoBranches("hang-1")).ok());
  const v1::Transaction tx = Terminal("hang-1");
  EXPECT_EQ(tx.state(), "committed");
  EXPECT_GE(participant_.Count("x:prepare"), 2);
}

TEST_P(ParticipantFaultsTest, AParticipantThatNeverAnswersAbortsAtTheDeadline) {
  std::vector<Behaviour> forever(200, Hang(milliseconds(400)));
  participant_.Script("y:prepare", forever);
  ASSERT_TRUE(client_->Begin(TwoBranches("deadline-1")).ok());
  const v1::Transaction tx = Terminal("deadline-1");
  EXPECT_EQ(tx.state(), "aborted");
  EXPECT_NE(tx.reason().find("deadline"), std::string::npos) << tx.reason();
  EXPECT_EQ(participant_.Count("x:commit") + participant_.Count("y:commit"), 0);
}

TEST_P(ParticipantFaultsTest, AParticipantDyingMidCallIsRetried) {
  participant_.Script("x:prepare", {Die()});
  participant_.Script("y:commit", {Die(), Die()});
  ASSERT_TRUE(client_->Begin(TwoBranches("die-1")).ok());
  const v1::Transaction tx = Terminal("die-1");
  EXPECT_EQ(tx.state(), "committed");
  EXPECT_EQ(participant_.Count("x:prepare"), 2);
  EXPECT_EQ(participant_.Count("y:commit"), 3);
}

TEST_P(ParticipantFaultsTest, TccCommitAndAbortPaths) {
  for (const std::string outcome : {"commit", "abort"}) {
    const std::string gtid = "tcc-" + outcome;
    auto begun = client_->Begin(TwoBranches(gtid, "tcc"));
    ASSERT_TRUE(begun.ok()) << begun.status().ToString();
    EXPECT_EQ(begun->transaction.state(), "active");
    for (const char* b : {"x", "y"}) {
      v1::Branch branch;
      branch.set_branch_id(b);
      branch.set_url(participant_.Url(std::string(b) + "-" + outcome));
      ASSERT_TRUE(client_->RegisterBranch(gtid, branch).ok());
    }
    auto done = outcome == "commit" ? client_->Commit(gtid, true) : client_->Abort(gtid, true);
    ASSERT_TRUE(done.ok()) << done.status().ToString();
    EXPECT_EQ(done->transaction.state(), outcome == "commit" ? "committed" : "aborted");
    for (const char* b : {"x", "y"}) {
      EXPECT_EQ(participant_.Count(std::string(b) + "-" + outcome + ":" + outcome), 1);
    }
    // The other outcome is refused now.
    auto other = outcome == "commit" ? client_->Abort(gtid, false) : client_->Commit(gtid, false);
    EXPECT_EQ(other.status().code(), StatusCode::kConflict);
  }
}

INSTANTIATE_TEST_SUITE_P(Stores, ParticipantFaultsTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace txcoord::integration
