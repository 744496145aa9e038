// 3pc over real processes: the real txcoord (SQLite store) and two participants in the test, each
// the SDK's CallbackServer serving the real SQLite barrier behind ThreePhaseHandler, with a
// ThreePhaseKeeper on the real clock that asks the coordinator over HTTP (CoordinatorTermination
// Query). A participant's phase can be held at a gate, to stop the protocol at a chosen point
// while the coordinator is SIGKILLed; the coordinator is then restarted on the same port and
// store.
//
// Outcomes are read from each participant's barrier ('finish' row: committed; 'undo': aborted).
// Nothing asserts on timing: the tests wait for outcomes and events with generous limits.
#include <Poco/Net/ServerSocket.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <set>

#include "barrier_outcome.h"
#include "restartable.h"
#include "txcoord/participant/barrier.h"
#include "txcoord/participant/client.h"
#include "txcoord/participant/endpoint.h"
#include "txcoord/participant/three_phase.h"
#include "txcoord/testing/poll.h"
#include "txcoord_process.h"

namespace txcoord::integration {
namespace {

using participant::CallbackContext;
using participant::Phase;
using participant::PhaseResult;
using participant::TimeoutEvent;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr milliseconds kWaitLimit{30'000};
constexpr milliseconds kPoll{20};

// The barrier on a SQLite file; each phase may be held at a gate, and a can-commit may be set to
// vote no.
class GatedBranch final : public participant::BranchHandler {
 public:
  explicit GatedBranch(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) throw std::runtime_error("open " + path);
    sqlite3_busy_timeout(db_, 10'000);
  }
  ~GatedBranch() override {
    OpenAll();
    sqlite3_close(db_);
  }

  PhaseResult CanCommit(const CallbackContext& ctx) override { return Run(ctx); }
  PhaseResult PreCommit(const CallbackContext& ctx) override { return Run(ctx); }
  PhaseResult Commit(const CallbackContext& ctx) override { return Run(ctx); }
  PhaseResult Abort(const CallbackContext& ctx) override { return Run(ctx); }

  void Close(Phase phase) {
    std::lock_guard lock(gate_mu_);
    closed_.insert(phase);
  }
  void OpenAll() {
    {
      std::lock_guard lock(gate_mu_);
      closed_.clear();
    }
    gate_cv_.notify_all();
  }
  // How many callbacks of `phase` are held at its gate right now.
  int Held(Phase phase) {
    std::lock_guard lock(gate_mu_);
    return held_[phase];
  }
  void VoteNo(const std::string& gtid) {
    std::lock_guard lock(db_mu_);
    no_votes_.insert(gtid);
  }

  std::string Outcome(const std::string& gtid, const std::string& branch_id) {
    std::lock_guard lock(db_mu_);
    return BarrierOutcome(db_, gtid, branch_id);
  }

 private:
  PhaseResult Run(const CallbackContext& ctx) {
    {
      std::unique_lock lock(gate_mu_);
      ++held_[ctx.phase];
      gate_cv_.wait(lock, [&] { return closed_.count(ctx.phase) == 0; });
      --held_[ctx.phase];
    }
    std::lock_guard lock(db_mu_);
    const bool no = ctx.phase == Phase::kCanCommit && no_votes_.count(ctx.gtid) != 0;
    return participant::Barrier::RunInTransaction(db_, ctx, [no](sqlite3*) {
      return no ? Status::Conflict("insufficient funds") : Status::Ok();
    });
  }

  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  std::set<Phase> closed_;     // GUARDED_BY(gate_mu_)
  std::map<Phase, int> held_;  // GUARDED_BY(gate_mu_)
  std::mutex db_mu_;
  sqlite3* db_ = nullptr;           // GUARDED_BY(db_mu_)
  std::set<std::string> no_votes_;  // GUARDED_BY(db_mu_)
};

// One participant process's worth of parts, in the test process.
class Participant {
 public:
  Participant(const std::string& name, const std::filesystem::path& dir, int coordinator_port,
              bool termination_query_required)
      : name_(name), branch_((dir / (name + ".db")).string()) {
    participant::CoordinatorClientOptions options;
    options.url = "http://127.0.0.1:" + std::to_string(coordinator_port);
    options.connect_timeout = milliseconds(500);
    options.timeout = milliseconds(1000);
    client_ = participant::CoordinatorClient::Create(options).value();
    query_ = std::make_unique<participant::CoordinatorTerminationQuery>(*client_);
    participant::ThreePhaseOptions three_phase;
    three_phase.can_commit_timeout = milliseconds(500);
    three_phase.pre_commit_timeout = milliseconds(500);
    three_phase.recheck_interval = milliseconds(200);
    three_phase.termination_query_required = termination_query_required;
    keeper_ = std::make_unique<participant::ThreePhaseKeeper>(branch_, query_.get(), three_phase);
    keeper_->SetObserver([this](const TimeoutEvent& e) {
      std::lock_guard lock(mu_);
      events_.push_back(e);
    });
    keeper_->Start(milliseconds(20));
    handler_ = std::make_unique<participant::ThreePhaseHandler>(branch_, *keeper_);
    server_ = std::make_unique<participant::CallbackServer>();
    EXPECT_TRUE(server_->AddHandler("/3pc", handler_.get()).ok());
    port_ = server_->Start("127.0.0.1:0").value();
  }
  ~Participant() {
    branch_.OpenAll();
    server_->Stop();
    keeper_->Stop();
  }

  std::string Url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/3pc"; }
  GatedBranch& branch() { return branch_; }
  std::string Outcome(const std::string& gtid) { return branch_.Outcome(gtid, name_); }
  std::vector<TimeoutEvent> Events() {
    std::lock_guard lock(mu_);
    return events_;
  }
  int CountEvents(TimeoutEvent::Action action, bool asked) {
    int n = 0;
    for (const TimeoutEvent& e : Events()) n += e.action == action && e.asked == asked;
    return n;
  }

 private:
  const std::string name_;
  GatedBranch branch_;
  std::unique_ptr<participant::CoordinatorClient> client_;
  std::unique_ptr<participant::CoordinatorTerminationQuery> query_;
  std::unique_ptr<participant::ThreePhaseKeeper> keeper_;
  std::unique_ptr<participant::ThreePhaseHandler> handler_;
  std::unique_ptr<participant::CallbackServer> server_;
  int port_ = 0;
  std::mutex mu_;
  std::vector<TimeoutEvent> events_;  // GUARDED_BY(mu_)
};

class ThreePhaseApiTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { Setup(GetParam()); }

  void Setup(bool termination_query_required) {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '-');
    dir_ = std::filesystem::temp_directory_path() /
           ("txcoord-3pc-api-" + std::to_string(getpid()) + "-" + name);
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    port_ = FreePortBelowEphemeralRange();
    StartCoordinator();
    participant::CoordinatorClientOptions options;
    options.url = "http://127.0.0.1:" + std::to_string(port_);
    client_ = participant::CoordinatorClient::Create(options).value();
    for (const char* name : {"a", "b"}) {
      participants_[name] =
          std::make_unique<Participant>(name, dir_, port_, termination_query_required);
    }
  }

  void TearDown() override {
    participants_.clear();
    if (coordinator_) {
      coordinator_->Signal(SIGTERM);
      EXPECT_EQ(coordinator_->WaitForExit(seconds(20)), 0) << coordinator_->Stderr();
    }
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  void StartCoordinator() {
    coordinator_ = std::make_unique<TxcoordProcess>(
        TXCOORD_BIN,
        std::vector<std::string>{"--listen", "127.0.0.1:" + std::to_string(port_), "--store",
                                 "sqlite://" + (dir_ / "txcoord.db").string(),
                                 "--callback-timeout-ms", "2000", "--retry-initial-ms", "20",
                                 "--retry-max-ms", "200"},
        (dir_ / ("txcoord-" + std::to_string(++starts_) + ".log")).string());
    ASSERT_TRUE(coordinator_->WaitForListening(seconds(30)).has_value()) << coordinator_->Stderr();
  }
  void KillCoordinator() {
    coordinator_->Signal(SIGKILL);
    EXPECT_TRUE(coordinator_->WaitForExit(seconds(10)).has_value());
    coordinator_.reset();
  }

  // Begins a 3pc transfer over both participants (not waiting for its end).
  void Begin(const std::string& gtid, int timeout_ms = 10'000, bool wait = false) {
    v1::BeginRequest r;
    r.set_gtid(gtid);
    r.set_protocol("3pc");
    r.set_timeout_ms(timeout_ms);
    r.set_wait(wait);
    for (const auto& [name, p] : participants_) {
      v1::Branch* b = r.add_branches();
      b->set_branch_id(name);
      b->set_url(p->Url());
    }
    auto begun = client_->Begin(r);
    ASSERT_TRUE(begun.ok()) << begun.status().ToString();
  }

  std::string State(const std::string& gtid) {
    auto tx = client_->Get(gtid);
    return tx.ok() ? tx->state() : tx.status().ToString();
  }
  bool WaitState(const std::string& gtid, const std::string& state) {
    return testing::PollUntil(kWaitLimit, kPoll, [&] { return State(gtid) == state; });
  }
  bool WaitOutcome(const std::string& name, const std::string& gtid, const std::string& outcome) {
    return testing::PollUntil(kWaitLimit, kPoll,
                              [&] { return participants_[name]->Outcome(gtid) == outcome; });
  }
  Participant& p(const std::string& name) { return *participants_.at(name); }

  std::filesystem::path dir_;
  int port_ = 0;
  int starts_ = 0;
  std::unique_ptr<TxcoordProcess> coordinator_;
  std::unique_ptr<participant::CoordinatorClient> client_;
  std::map<std::string, std::unique_ptr<Participant>> participants_;
};

TEST_P(ThreePhaseApiTest, CommitsWhenAllVoteYesAndAbortsOnANo) {
  Begin("yes", 10'000, /*wait=*/true);
  ASSERT_TRUE(WaitState("yes", "committed"));
  EXPECT_EQ(p("a").Outcome("yes"), "committed");
  EXPECT_EQ(p("b").Outcome("yes"), "committed");
  auto tx = client_->Get("yes");
  ASSERT_TRUE(tx.ok());
  EXPECT_EQ(tx->protocol(), "3pc");
  for (const v1::Branch& b : tx->branches()) EXPECT_EQ(b.state(), "committed") << b.branch_id();

  p("b").branch().VoteNo("no");
  Begin("no", 10'000, /*wait=*/true);
  ASSERT_TRUE(WaitState("no", "aborted"));
  tx = client_->Get("no");
  ASSERT_TRUE(tx.ok());
  EXPECT_NE(tx->reason().find("refused can-commit"), std::string::npos) << tx->reason();
  EXPECT_TRUE(WaitOutcome("a", "no", "aborted"));
  EXPECT_TRUE(WaitOutcome("b", "no", "aborted"));
  EXPECT_TRUE(p("a").Events().empty()) << "no timer fired: the coordinator answered in time";
}

TEST_P(ThreePhaseApiTest, ABeginWithoutBranchesOrWithStepsIsRefused) {
  v1::BeginRequest r;
  r.set_gtid("empty");
  r.set_protocol("3pc");
  auto begun = client_->Begin(r);
  ASSERT_FALSE(begun.ok());
  EXPECT_EQ(begun.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(begun.status().message().find("a 3pc transaction needs at least one branch"),
            std::string::npos)
      << begun.status().message();
  v1::Step* step = r.add_steps();
  step->set_step_id("s");
  step->set_action(p("a").Url() + "/do");
  begun = client_->Begin(r);
  ASSERT_FALSE(begun.ok());
  EXPECT_EQ(begun.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(State("empty").find("NOT_FOUND") != std::string::npos ||
                State("empty").find("does not exist") != std::string::npos,
            true)
      << "nothing half-stored: " << State("empty");
}

TEST_P(ThreePhaseApiTest, AVoterAsksWhileTheCoordinatorIsStillCollectingVotesAndWaits) {
  p("b").branch().Close(Phase::kCanCommit);  // b thinks for a long while
  Begin("slow");
  // a voted yes; its timer fires, it asks, and the coordinator says it is still voting.
  ASSERT_TRUE(testing::PollUntil(kWaitLimit, kPoll, [&] {
    return p("a").CountEvents(TimeoutEvent::Action::kWaiting, /*asked=*/true) >= 2;
  }));
  EXPECT_EQ(State("slow"), "can-committing");
  EXPECT_EQ(p("a").Outcome("slow"), "in doubt") << "it did not abort on its own rule";
  p("b").branch().OpenAll();
  ASSERT_TRUE(WaitState("slow", "committed"));
  EXPECT_TRUE(WaitOutcome("a", "slow", "committed"));
  EXPECT_TRUE(WaitOutcome("b", "slow", "committed"));
  EXPECT_EQ(p("a").CountEvents(TimeoutEvent::Action::kAborted, true) +
                p("a").CountEvents(TimeoutEvent::Action::kAborted, false),
            0);
}

TEST_P(ThreePhaseApiTest, CoordinatorKilledWhileVoting) {
  const bool required = GetParam();
  p("b").branch().Close(Phase::kCanCommit);
  Begin("killed-voting");
  ASSERT_TRUE(testing::PollUntil(kWaitLimit, kPoll,
                                 [&] { return p("b").branch().Held(Phase::kCanCommit) == 1; }));
  ASSERT_TRUE(WaitState("killed-voting", "can-committing"));
  KillCoordinator();
  p("b").branch().OpenAll();  // b votes yes too; the reply goes nowhere
  if (!required) {
    // 3pc's promise: voted yes, coordinator gone, no pre-commit seen: both abort on their own.
    EXPECT_TRUE(WaitOutcome("a", "killed-voting", "aborted"));
    EXPECT_TRUE(WaitOutcome("b", "killed-voting", "aborted"));
  } else {
    // Required query: they wait while it cannot be asked.
    ASSERT_TRUE(testing::PollUntil(kWaitLimit, kPoll, [&] {
      return p("a").CountEvents(TimeoutEvent::Action::kWaiting, false) >= 3 &&
             p("b").CountEvents(TimeoutEvent::Action::kWaiting, false) >= 3;
    }));
    EXPECT_EQ(p("a").Outcome("killed-voting"), "in doubt");
    EXPECT_EQ(p("b").Outcome("killed-voting"), "in doubt");
  }
  StartCoordinator();  // no pre_commit record: recovery aborts, and everyone agrees
  ASSERT_TRUE(WaitState("killed-voting", "aborted"));
  EXPECT_TRUE(WaitOutcome("a", "killed-voting", "aborted"));
  EXPECT_TRUE(WaitOutcome("b", "killed-voting", "aborted"));
}

TEST_P(ThreePhaseApiTest, CoordinatorKilledWhilePreCommitting) {
  const bool required = GetParam();
  p("b").branch().Close(Phase::kPreCommit);
  Begin("killed-pre");
  ASSERT_TRUE(testing::PollUntil(kWaitLimit, kPoll,
                                 [&] { return p("b").branch().Held(Phase::kPreCommit) == 1; }));
  ASSERT_TRUE(WaitState("killed-pre", "pre-committing"));
  KillCoordinator();
  p("b").branch().OpenAll();  // b records its pre-commit; the reply goes nowhere
  if (!required) {
    // Pre-committed, coordinator gone: both commit on their own.
    EXPECT_TRUE(WaitOutcome("a", "killed-pre", "committed"));
    EXPECT_TRUE(WaitOutcome("b", "killed-pre", "committed"));
  } else {
    ASSERT_TRUE(testing::PollUntil(kWaitLimit, kPoll, [&] {
      return p("a").CountEvents(TimeoutEvent::Action::kWaiting, false) >= 3 &&
             p("b").CountEvents(TimeoutEvent::Action::kWaiting, false) >= 3;
    }));
    EXPECT_EQ(p("a").Outcome("killed-pre"), "in doubt");
  }
  StartCoordinator();  // the pre_commit record is durable: recovery commits
  ASSERT_TRUE(WaitState("killed-pre", "committed"));
  EXPECT_TRUE(WaitOutcome("a", "killed-pre", "committed"));
  EXPECT_TRUE(WaitOutcome("b", "killed-pre", "committed"));
}

INSTANTIATE_TEST_SUITE_P(Keeper, ThreePhaseApiTest, ::testing::Values(false, true),
                         [](const auto& info) {
                           return info.param ? std::string("QueryRequired")
                                             : std::string("Default");
                         });

}  // namespace
}  // namespace txcoord::integration
