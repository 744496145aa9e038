// The participant's 3pc timeouts (three_phase.h): ThreePhaseKeeper driven by a fake clock and a
// fake termination query, over a recording handler and, where the barrier's answer matters, over
// the real SQLite barrier. CoordinatorTerminationQuery against a fake coordinator over HTTP.
#include "txcoord/participant/three_phase.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <map>
#include <mutex>

#include "fake_coordinator.h"
#include "sdk_test_util.h"
#include "txcoord/testing/poll.h"

namespace txcoord::participant {
namespace {

using std::chrono::milliseconds;
using testing::Ctx;
using Action = TimeoutEvent::Action;
using Stage = TimeoutEvent::Stage;

constexpr milliseconds kCanCommitTimeout{5'000};
constexpr milliseconds kPreCommitTimeout{3'000};
constexpr milliseconds kRecheck{1'000};

class FakeClock {
 public:
  std::chrono::steady_clock::time_point Now() const { return now_; }
  void Advance(milliseconds d) { now_ += d; }
  ThreePhaseClock Fn() {
    return [this] { return now_; };
  }

 private:
  std::chrono::steady_clock::time_point now_{std::chrono::hours(1000)};
};

// Answers per gtid as the test sets them; unset gtids cannot be asked (unreachable).
class FakeQuery final : public TerminationQuery {
 public:
  Result<TerminationAnswer> Ask(const std::string& gtid) override {
    std::lock_guard lock(mu_);
    ++asks_;
    auto it = answers_.find(gtid);
    if (it == answers_.end()) return Status::Unavailable("connection refused");
    return it->second;
  }
  void Set(const std::string& gtid, TerminationAnswer answer) {
    std::lock_guard lock(mu_);
    answers_[gtid] = answer;
  }
  void Unreachable(const std::string& gtid) {
    std::lock_guard lock(mu_);
    answers_.erase(gtid);
  }
  int asks() const {
    std::lock_guard lock(mu_);
    return asks_;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, TerminationAnswer> answers_;
  int asks_ = 0;
};

// Records every call; answers each phase as set (default Done).
class RecordingHandler final : public BranchHandler {
 public:
  struct Call {
    Phase phase;
    std::string gtid;
    std::string branch_id;
    std::string payload_json;
  };
  PhaseResult CanCommit(const CallbackContext& ctx) override { return Record(ctx); }
  PhaseResult PreCommit(const CallbackContext& ctx) override { return Record(ctx); }
  PhaseResult Commit(const CallbackContext& ctx) override { return Record(ctx); }
  PhaseResult Abort(const CallbackContext& ctx) override { return Record(ctx); }

  void Answer(Phase phase, PhaseResult result) {
    std::lock_guard lock(mu_);
    answers_.insert_or_assign(phase, std::move(result));
  }
  std::vector<Call> calls() const {
    std::lock_guard lock(mu_);
    return calls_;
  }
  int Count(Phase phase) const {
    std::lock_guard lock(mu_);
    int n = 0;
    for (const Call& c : calls_) n += c.phase == phase;
    return n;
  }

 private:
  PhaseResult Record(const CallbackContext& ctx) {
    std::lock_guard lock(mu_);
    calls_.push_back({ctx.phase, ctx.gtid, ctx.branch_id, ctx.payload_json});
    auto it = answers_.find(ctx.phase);
    return it == answers_.end() ? PhaseResult::Done() : it->second;
  }
  mutable std::mutex mu_;
  std::vector<Call> calls_;
  std::map<Phase, PhaseResult> answers_;
};

ThreePhaseOptions Options(bool required = false) {
  ThreePhaseOptions o;
  o.can_commit_timeout = kCanCommitTimeout;
  o.pre_commit_timeout = kPreCommitTimeout;
  o.recheck_interval = kRecheck;
  o.termination_query_required = required;
  return o;
}

CallbackContext Vote(const std::string& gtid, Phase phase = Phase::kCanCommit) {
  CallbackContext ctx = Ctx(gtid, "debit", phase);
  ctx.payload_json = R"({"account":"A","delta":-30})";
  (*ctx.payload.mutable_struct_value()->mutable_fields())["account"].set_string_value("A");
  return ctx;
}

class ThreePhaseKeeperTest : public ::testing::Test {
 protected:
  ThreePhaseKeeper& Keeper(bool required = false, bool with_query = true) {
    keeper_ = std::make_unique<ThreePhaseKeeper>(inner_, with_query ? &query_ : nullptr,
                                                 Options(required), clock_.Fn());
    handler_ = std::make_unique<ThreePhaseHandler>(inner_, *keeper_);
    return *keeper_;
  }
  ThreePhaseHandler& handler() { return *handler_; }

  FakeClock clock_;
  FakeQuery query_;
  RecordingHandler inner_;
  std::unique_ptr<ThreePhaseKeeper> keeper_;
  std::unique_ptr<ThreePhaseHandler> handler_;
};

TEST_F(ThreePhaseKeeperTest, VotedYesAndCutOffAbortsByTheTimeoutRule) {
  ThreePhaseKeeper& keeper = Keeper();
  ASSERT_TRUE(handler().CanCommit(Vote("g1")).done());
  EXPECT_TRUE(keeper.Pending("g1", "debit"));
  EXPECT_EQ(keeper.NextDue(), clock_.Now() + kCanCommitTimeout);
  clock_.Advance(kCanCommitTimeout - milliseconds(1));
  EXPECT_TRUE(keeper.RunDue().empty()) << "not yet";
  EXPECT_EQ(inner_.Count(Phase::kAbort), 0);
  clock_.Advance(milliseconds(1));
  const auto events = keeper.RunDue();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].action, Action::kAborted);
  EXPECT_EQ(events[0].stage, Stage::kVotedYes);
  EXPECT_FALSE(events[0].asked);
  EXPECT_NE(events[0].why.find("abort by the timeout rule"), std::string::npos) << events[0].why;
  EXPECT_EQ(query_.asks(), 1) << "it asked before acting";
  ASSERT_EQ(inner_.Count(Phase::kAbort), 1);
  EXPECT_EQ(inner_.calls().back().payload_json, R"({"account":"A","delta":-30})")
      << "the local abort gets the can-commit's payload";
  EXPECT_EQ(keeper.pending(), 0u);
  clock_.Advance(milliseconds(100'000));
  EXPECT_TRUE(keeper.RunDue().empty()) << "acted once";
}

TEST_F(ThreePhaseKeeperTest, PreCommittedAndCutOffCommitsByTheTimeoutRule) {
  ThreePhaseKeeper& keeper = Keeper();
  ASSERT_TRUE(handler().CanCommit(Vote("g1")).done());
  clock_.Advance(milliseconds(2'000));
  ASSERT_TRUE(handler().PreCommit(Vote("g1", Phase::kPreCommit)).done());
  EXPECT_EQ(keeper.NextDue(), clock_.Now() + kPreCommitTimeout) << "the pre-commit timer now";
  clock_.Advance(kPreCommitTimeout);
  const auto events = keeper.RunDue();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].action, Action::kCommitted);
  EXPECT_EQ(events[0].stage, Stage::kPreCommitted);
  EXPECT_EQ(inner_.Count(Phase::kCommit), 1);
  EXPECT_EQ(inner_.Count(Phase::kAbort), 0);
}

TEST_F(ThreePhaseKeeperTest, TheCoordinatorsAnswerWinsOverTheRule) {
  ThreePhaseKeeper& keeper = Keeper();
  ASSERT_TRUE(handler().CanCommit(Vote("yes-but-committing")).done());
  query_.Set("yes-but-committing", TerminationAnswer::kCommit);  // e.g. pre-committing
  ASSERT_TRUE(handler().CanCommit(Vote("pre-but-aborted")).done());
  ASSERT_TRUE(handler().PreCommit(Vote("pre-but-aborted", Phase::kPreCommit)).done());
  query_.Set("pre-but-aborted", TerminationAnswer::kAbort);
  clock_.Advance(kCanCommitTimeout);
  const auto events = keeper.RunDue();
  ASSERT_EQ(events.size(), 2u);
  std::map<std::string, TimeoutEvent> by_gtid;
  for (const auto& e : events) by_gtid[e.gtid] = e;
  EXPECT_EQ(by_gtid["yes-but-committing"].action, Action::kCommitted);
  EXPECT_TRUE(by_gtid["yes-but-committing"].asked);
  EXPECT_EQ(by_gtid["pre-but-aborted"].action, Action::kAborted);
  EXPECT_NE(by_gtid["pre-but-aborted"].why.find("the coordinator says abort"), std::string::npos);
}

TEST_F(ThreePhaseKeeperTest, AnUndecidedCoordinatorIsAskedAgainUntilItDecides) {
  ThreePhaseKeeper& keeper = Keeper();
  ASSERT_TRUE(handler().CanCommit(Vote("g1")).done());
  query_.Set("g1", TerminationAnswer::kUndecided);  // can-committing: another branch votes
  clock_.Advance(kCanCommitTimeout);
  auto events = keeper.RunDue();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].action, Action::kWaiting);
  EXPECT_TRUE(events[0].asked);
  EXPECT_EQ(keeper.NextDue(), clock_.Now() + kRecheck);
  EXPECT_EQ(inner_.calls().size(), 1u) << "only the can-commit: no local action";
  clock_.Advance(kRecheck);
  ASSERT_EQ(keeper.RunDue().size(), 1u);
  query_.Set("g1", TerminationAnswer::kCommit);
  clock_.Advance(kRecheck);
  events = keeper.RunDue();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].action, Action::kCommitted);
  EXPECT_EQ(query_.asks(), 3);
}

TEST_F(ThreePhaseKeeperTest, WithTheQueryRequiredItBlocksWhileTheCoordinatorIsUnreachable) {
  ThreePhaseKeeper& keeper = Keeper(/*required=*/true);
  ASSERT_TRUE(handler().CanCommit(Vote("g1")).done());
  ASSERT_TRUE(handler().CanCommit(Vote("g2")).done());
  ASSERT_TRUE(handler().PreCommit(Vote("g2", Phase::kPreCommit)).done());
  for (int i = 0; i < 20; ++i) {
    clock_.Advance(kCanCommitTimeout);
    for (const TimeoutEvent& e : keeper.RunDue()) {
      EXPECT_EQ(e.action, Action::kWaiting);
      EXPECT_NE(e.why.find("termination query is required"), std::string::npos);
    }
  }
  EXPECT_EQ(inner_.Count(Phase::kAbort) + inner_.Count(Phase::kCommit), 0)
      << "no unilateral decision";
  EXPECT_EQ(keeper.pending(), 2u);
  query_.Set("g1", TerminationAnswer::kCommit);  // the partition heals
  query_.Set("g2", TerminationAnswer::kCommit);
  clock_.Advance(kRecheck);
  const auto events = keeper.RunDue();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(inner_.Count(Phase::kCommit), 2);
  EXPECT_EQ(keeper.pending(), 0u);
}

TEST_F(ThreePhaseKeeperTest, WithoutAQueryTheRuleAloneActsOrWithTheQueryRequiredItWaits) {
  ThreePhaseKeeper& keeper = Keeper(/*required=*/false, /*with_query=*/false);
  ASSERT_TRUE(handler().CanCommit(Vote("g1")).done());
  clock_.Advance(kCanCommitTimeout);
  ASSERT_EQ(keeper.RunDue().size(), 1u);
  EXPECT_EQ(inner_.Count(Phase::kAbort), 1);

  ThreePhaseKeeper& blocked = Keeper(/*required=*/true, /*with_query=*/false);
  ASSERT_TRUE(handler().CanCommit(Vote("g2")).done());
  clock_.Advance(kCanCommitTimeout);
  const auto events = blocked.RunDue();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].action, Action::kWaiting);
  EXPECT_EQ(inner_.Count(Phase::kAbort), 1);
}

TEST_F(ThreePhaseKeeperTest, AnOutcomeFromTheCoordinatorDisarmsTheTimer) {
  ThreePhaseKeeper& keeper = Keeper();
  ASSERT_TRUE(handler().CanCommit(Vote("g1")).done());
  ASSERT_TRUE(handler().CanCommit(Vote("g2")).done());
  ASSERT_TRUE(handler().PreCommit(Vote("g2", Phase::kPreCommit)).done());
  ASSERT_TRUE(handler().Abort(Vote("g1", Phase::kAbort)).done());
  ASSERT_TRUE(handler().Commit(Vote("g2", Phase::kCommit)).done());
  EXPECT_EQ(keeper.pending(), 0u);
  clock_.Advance(kCanCommitTimeout * 10);
  EXPECT_TRUE(keeper.RunDue().empty());
  EXPECT_EQ(query_.asks(), 0);
}

TEST_F(ThreePhaseKeeperTest, APhaseRepeatedAfterTheOutcomeArmsNoTimer) {
  ThreePhaseKeeper& keeper = Keeper();
  ASSERT_TRUE(handler().CanCommit(Vote("g1")).done());
  ASSERT_TRUE(handler().PreCommit(Vote("g1", Phase::kPreCommit)).done());
  ASSERT_TRUE(handler().Commit(Vote("g1", Phase::kCommit)).done());
  // Duplicates delivered late: the barrier answers them 200 (a repeat), but the branch is done.
  ASSERT_TRUE(handler().CanCommit(Vote("g1")).done());
  ASSERT_TRUE(handler().PreCommit(Vote("g1", Phase::kPreCommit)).done());
  EXPECT_FALSE(keeper.Pending("g1", "debit"));
  keeper.Resume({"g1", "debit", /*pre_committed=*/false});
  EXPECT_FALSE(keeper.Pending("g1", "debit"));

  // A branch the keeper itself resolved is remembered too.
  ASSERT_TRUE(handler().CanCommit(Vote("g2")).done());
  clock_.Advance(kCanCommitTimeout);
  ASSERT_EQ(keeper.RunDue().size(), 1u);
  ASSERT_TRUE(handler().CanCommit(Vote("g2")).done());
  EXPECT_FALSE(keeper.Pending("g2", "debit"));
  clock_.Advance(kCanCommitTimeout * 10);
  EXPECT_TRUE(keeper.RunDue().empty());
  EXPECT_EQ(inner_.Count(Phase::kAbort), 1);
  EXPECT_EQ(query_.asks(), 1) << "only g2's own timeout asked";
}

TEST_F(ThreePhaseKeeperTest, OnlySuccessfulPhasesArmOrDisarm) {
  ThreePhaseKeeper& keeper = Keeper();
  inner_.Answer(Phase::kCanCommit, PhaseResult::Refused("insufficient funds"));
  EXPECT_FALSE(handler().CanCommit(Vote("no")).done());
  EXPECT_FALSE(keeper.Pending("no", "debit")) << "a no vote has nothing to time out";
  inner_.Answer(Phase::kCanCommit, PhaseResult::Done());
  ASSERT_TRUE(handler().CanCommit(Vote("g1")).done());
  inner_.Answer(Phase::kCommit, PhaseResult::Transient("database down"));
  EXPECT_FALSE(handler().Commit(Vote("g1", Phase::kCommit)).done());
  EXPECT_TRUE(keeper.Pending("g1", "debit")) << "a failed commit leaves the branch in doubt";
}

TEST_F(ThreePhaseKeeperTest, ADuplicateCanCommitAfterThePreCommitKeepsThePreCommitTimer) {
  ThreePhaseKeeper& keeper = Keeper();
  ASSERT_TRUE(handler().CanCommit(Vote("g1")).done());
  ASSERT_TRUE(handler().PreCommit(Vote("g1", Phase::kPreCommit)).done());
  const auto due = keeper.NextDue();
  clock_.Advance(milliseconds(500));
  ASSERT_TRUE(handler().CanCommit(Vote("g1")).done());  // a late duplicate
  EXPECT_EQ(keeper.NextDue(), due);
  clock_.Advance(kPreCommitTimeout);
  const auto events = keeper.RunDue();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].stage, Stage::kPreCommitted);
  EXPECT_EQ(events[0].action, Action::kCommitted) << "pre-committed and cut off: commit";
}

TEST_F(ThreePhaseKeeperTest, AFailedLocalActionIsRetriedAndARefusedOneForgotten) {
  ThreePhaseKeeper& keeper = Keeper();
  ASSERT_TRUE(handler().CanCommit(Vote("g1")).done());
  inner_.Answer(Phase::kAbort, PhaseResult::Transient("database is locked"));
  clock_.Advance(kCanCommitTimeout);
  auto events = keeper.RunDue();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].action, Action::kRetrying);
  EXPECT_TRUE(keeper.Pending("g1", "debit"));
  EXPECT_EQ(keeper.NextDue(), clock_.Now() + kRecheck);
  inner_.Answer(Phase::kAbort, PhaseResult::Refused("already committed"));
  clock_.Advance(kRecheck);
  events = keeper.RunDue();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].action, Action::kDropped);
  EXPECT_NE(events[0].why.find("already committed"), std::string::npos);
  EXPECT_FALSE(keeper.Pending("g1", "debit"));
  EXPECT_EQ(inner_.Count(Phase::kAbort), 2);
}

TEST_F(ThreePhaseKeeperTest, ResumeAfterARestartStartsTheTimersAgainWithoutAPayload) {
  ThreePhaseKeeper& keeper = Keeper();
  keeper.Resume({"voted", "debit", /*pre_committed=*/false});
  keeper.Resume({"pre", "debit", /*pre_committed=*/true});
  EXPECT_EQ(keeper.pending(), 2u);
  clock_.Advance(kPreCommitTimeout);
  auto events = keeper.RunDue();
  ASSERT_EQ(events.size(), 1u) << "the pre-commit timer is the shorter";
  EXPECT_EQ(events[0].gtid, "pre");
  EXPECT_EQ(events[0].action, Action::kCommitted);
  EXPECT_EQ(inner_.calls().back().payload_json, "null");
  clock_.Advance(kCanCommitTimeout);
  events = keeper.RunDue();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].gtid, "voted");
  EXPECT_EQ(events[0].action, Action::kAborted);
  // A callback that came before Resume is not overridden by it.
  ASSERT_TRUE(handler().CanCommit(Vote("g3")).done());
  ASSERT_TRUE(handler().PreCommit(Vote("g3", Phase::kPreCommit)).done());
  keeper.Resume({"g3", "debit", /*pre_committed=*/false});
  clock_.Advance(kPreCommitTimeout);
  events = keeper.RunDue();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].stage, Stage::kPreCommitted);
}

TEST_F(ThreePhaseKeeperTest, TheBackgroundThreadActsOnTheRealClock) {
  ThreePhaseOptions options = Options();
  options.can_commit_timeout = milliseconds(20);
  ThreePhaseKeeper keeper(inner_, &query_, options);
  std::atomic<int> observed{0};
  keeper.SetObserver([&](const TimeoutEvent& e) {
    if (e.action == Action::kAborted) ++observed;
  });
  keeper.Start(milliseconds(10));
  ThreePhaseHandler handler(inner_, keeper);
  ASSERT_TRUE(handler.CanCommit(Vote("g1")).done());
  EXPECT_TRUE(txcoord::testing::PollUntil(milliseconds(20'000), milliseconds(5),
                                          [&] { return observed.load() == 1; }));
  keeper.Stop();
  EXPECT_EQ(inner_.Count(Phase::kAbort), 1);
}

// ---- over the real SQLite barrier: a pre-commit recorded while the keeper still thinks the
// branch only voted yes (its hook had not run yet) makes the keeper's abort refused, never done.

class SqliteBranch final : public BranchHandler {
 public:
  explicit SqliteBranch(sqlite3* db) : db_(db) {}
  PhaseResult CanCommit(const CallbackContext& ctx) override { return Run(ctx); }
  PhaseResult PreCommit(const CallbackContext& ctx) override { return Run(ctx); }
  PhaseResult Commit(const CallbackContext& ctx) override { return Run(ctx); }
  PhaseResult Abort(const CallbackContext& ctx) override { return Run(ctx); }

 private:
  PhaseResult Run(const CallbackContext& ctx) {
    std::lock_guard lock(mu_);
    return Barrier::RunInTransaction(db_, ctx, [](sqlite3*) { return Status::Ok(); });
  }
  std::mutex mu_;
  sqlite3* db_;
};

TEST(ThreePhaseKeeperSqliteTest, APreCommittedBranchIsNeverAbortedByTheTimer) {
  testing::TempDir dir;
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir.path() / "p.db").c_str(), &db), SQLITE_OK);
  SqliteBranch branch(db);
  FakeClock clock;
  FakeQuery query;  // unreachable
  ThreePhaseKeeper keeper(branch, &query, Options(), clock.Fn());
  ThreePhaseHandler handler(branch, keeper);
  ASSERT_TRUE(handler.CanCommit(Vote("g1")).done());
  ASSERT_TRUE(branch.PreCommit(Vote("g1", Phase::kPreCommit)).done());  // the keeper missed it
  clock.Advance(kCanCommitTimeout);
  auto events = keeper.RunDue();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].action, Action::kDropped) << events[0].why;
  EXPECT_NE(events[0].why.find("pre-committed 3pc branch can only commit"), std::string::npos);
  // The hook then comes after all: the pre-commit timer commits.
  keeper.PreCommitted(Vote("g1", Phase::kPreCommit));
  clock.Advance(kPreCommitTimeout);
  events = keeper.RunDue();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].action, Action::kCommitted);
  auto in_doubt = ListThreePhaseInDoubt(db);
  ASSERT_TRUE(in_doubt.ok());
  EXPECT_TRUE(in_doubt->empty());
  sqlite3_close(db);
}

// ---- CoordinatorTerminationQuery over HTTP.

TEST(CoordinatorTerminationQueryTest, StatesAndNotFoundAreAnswersOtherFailuresAreNot) {
  EXPECT_EQ(AnswerForState("committed"), TerminationAnswer::kCommit);
  EXPECT_EQ(AnswerForState("committing"), TerminationAnswer::kCommit);
  EXPECT_EQ(AnswerForState("pre-committing"), TerminationAnswer::kCommit);
  EXPECT_EQ(AnswerForState("aborted"), TerminationAnswer::kAbort);
  EXPECT_EQ(AnswerForState("aborting"), TerminationAnswer::kAbort);
  EXPECT_EQ(AnswerForState("can-committing"), TerminationAnswer::kUndecided);
  EXPECT_EQ(AnswerForState("something-new"), TerminationAnswer::kUndecided);

  testing::FakeCoordinator coordinator(
      [](const testing::FakeCoordinator::Request& request, testing::FakeCoordinator::Reply& reply) {
        if (request.uri == "/v1/transactions/pre") {
          reply.body = R"({"gtid":"pre","protocol":"3pc","state":"pre-committing"})";
        } else if (request.uri == "/v1/transactions/voting") {
          reply.body = R"({"gtid":"voting","protocol":"3pc","state":"can-committing"})";
        } else if (request.uri == "/v1/transactions/gone") {
          reply.status = 404;
          reply.body = R"({"error":{"code":"NOT_FOUND","message":"no such transaction"}})";
        } else {
          reply.status = 503;
          reply.body = R"({"error":{"code":"UNAVAILABLE","message":"store down"}})";
        }
      });
  auto client = CoordinatorClient::Create({.url = coordinator.url()});
  ASSERT_TRUE(client.ok());
  CoordinatorTerminationQuery query(**client);
  EXPECT_EQ(*query.Ask("pre"), TerminationAnswer::kCommit);
  EXPECT_EQ(*query.Ask("voting"), TerminationAnswer::kUndecided);
  EXPECT_EQ(*query.Ask("gone"), TerminationAnswer::kAbort) << "404: presumed abort";
  EXPECT_FALSE(query.Ask("store-down").ok()) << "a 503 is no answer";

  auto nowhere = CoordinatorClient::Create({.url = "http://127.0.0.1:1"});
  ASSERT_TRUE(nowhere.ok());
  CoordinatorTerminationQuery unreachable(**nowhere);
  EXPECT_FALSE(unreachable.Ask("pre").ok());
}

}  // namespace
}  // namespace txcoord::participant
