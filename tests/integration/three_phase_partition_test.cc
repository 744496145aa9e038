// What 3PC guarantees and what it does not (docs/3pc.md), shown with the real pieces in one
// process: the coordinator's 3pc engine (over a memory log) and two participants, each the real
// SQLite barrier behind the SDK's ThreePhaseHandler and ThreePhaseKeeper. A World plays the
// network and the clock: it delivers callbacks and replies, cuts a participant off from the
// coordinator (a partition: callbacks get no reply, the termination query cannot be asked),
// crashes and restarts the coordinator, and fires everyone's timers on one fake clock. No
// threads, no sleeps.
//
// Outcomes are read from each participant's barrier: a 'finish' row means it committed, an 'undo'
// row that it aborted.
//
//   partition, default keeper            split: one branch aborts, the other commits
//   partition, termination query required consistent: the cut-off branch waits, then commits
//   coordinator down before pre-commit    consistent abort, decided without the coordinator
//   coordinator down after all pre-commits consistent commit, decided without the coordinator
//   coordinator down between the pre_commit record and the pre-commits: split by default (the
//                                        participants cannot tell it from a partition),
//                                        consistent with the query required
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "barrier_outcome.h"
#include "txcoord/coordinator/engine.h"
#include "txcoord/coordinator/memory_log.h"
#include "txcoord/participant/barrier.h"
#include "txcoord/participant/three_phase.h"

namespace txcoord::integration {
namespace {

using coordinator::CallbackReply;
using coordinator::Effects;
using coordinator::Engine;
using coordinator::ReplyClass;
using coordinator::Send;
using coordinator::Timestamp;
using participant::BranchHandler;
using participant::CallbackContext;
using participant::Phase;
using participant::PhaseResult;
using std::chrono::milliseconds;

constexpr int kTimeoutMs = 2'000;  // the transaction's: can-commit round, then pre-commit round
constexpr milliseconds kParticipantTimeout{3'000};  // both of the keeper's timeouts
constexpr milliseconds kStep{100};

// A branch on its own SQLite database, behind the barrier; the business does nothing else.
class SqliteBranch final : public BranchHandler {
 public:
  SqliteBranch() {
    if (sqlite3_open(":memory:", &db_) != SQLITE_OK) throw std::runtime_error("sqlite open");
  }
  ~SqliteBranch() override { sqlite3_close(db_); }
  PhaseResult CanCommit(const CallbackContext& ctx) override { return Run(ctx); }
  PhaseResult PreCommit(const CallbackContext& ctx) override { return Run(ctx); }
  PhaseResult Commit(const CallbackContext& ctx) override { return Run(ctx); }
  PhaseResult Abort(const CallbackContext& ctx) override { return Run(ctx); }

  // "committed", "aborted", or "in doubt".
  std::string Outcome(const std::string& gtid, const std::string& branch_id) {
    return BarrierOutcome(db_, gtid, branch_id);
  }

 private:
  PhaseResult Run(const CallbackContext& ctx) {
    return participant::Barrier::RunInTransaction(db_, ctx, [](sqlite3*) { return Status::Ok(); });
  }
  sqlite3* db_ = nullptr;
};

class World;

// The termination query of one participant: the coordinator's live record, unless it is down
// or this participant is cut off from it.
class WorldQuery final : public participant::TerminationQuery {
 public:
  WorldQuery(World& world, std::string name) : world_(world), name_(std::move(name)) {}
  Result<participant::TerminationAnswer> Ask(const std::string& gtid) override;

 private:
  World& world_;
  const std::string name_;
};

struct Participant {
  Participant(World& world, const std::string& name, bool required,
              participant::ThreePhaseClock clock)
      : query(world, name),
        keeper(branch, &query,
               {.can_commit_timeout = kParticipantTimeout,
                .pre_commit_timeout = kParticipantTimeout,
                .recheck_interval = milliseconds(500),
                .termination_query_required = required},
               std::move(clock)),
        handler(branch, keeper) {}

  SqliteBranch branch;
  WorldQuery query;
  participant::ThreePhaseKeeper keeper;
  participant::ThreePhaseHandler handler;
  bool cut_off = false;         // from the coordinator, both ways
  bool callbacks_lost = false;  // only the coordinator's callbacks to it are lost
  std::vector<participant::TimeoutEvent> events;
};

class World {
 public:
  explicit World(bool termination_query_required)
      : log_(coordinator::OpenMemoryLog(coordinator::NewMemoryLogStore())) {
    for (const char* name : {"a", "b"}) {
      participants_[name] = std::make_unique<Participant>(*this, name, termination_query_required,
                                                          [this] { return steady_; });
    }
  }

  // ---- the coordinator

  void Begin() {
    coordinator::BeginArgs args;
    args.request.set_gtid(kGtid);
    args.request.set_protocol("3pc");
    args.request.set_timeout_ms(kTimeoutMs);
    for (const auto& [name, p] : participants_) {
      v1::Branch* b = args.request.add_branches();
      b->set_branch_id(name);
      b->set_url("http://" + name + ".example:7000/3pc");
    }
    args.request_digest = "digest";
    args.timeout_ms = kTimeoutMs;
    Effects fx;
    engine_ = coordinator::BeginEngine(Now(), args, {}, 1, fx);
    Apply(fx);
  }
  // Records appended from now on stay not durable until Flush (a slow log).
  void HoldDurability() { hold_ = true; }
  void Flush() {
    hold_ = false;
    for (const v1::LogRecord& r : pending_) EXPECT_TRUE(log_->Append({r}).ok());
    pending_durable_ += pending_.size();
    pending_.clear();
    Effects fx;
    engine_->OnDurable(Now(), pending_durable_, fx);
    Apply(fx);
  }
  // The coordinator process dies: what was not durable is lost, and every callback in flight.
  void CrashCoordinator() {
    engine_.reset();
    pending_.clear();
    hold_ = false;
    in_flight_.clear();
  }
  void RestartCoordinator() {
    auto logged = log_->Read(kGtid);
    ASSERT_TRUE(logged.ok()) << logged.status().ToString();
    Effects fx;
    auto engine = coordinator::RecoverEngine(Now(), *logged, {}, 2, fx);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(*engine);
    pending_durable_ = 0;
    Apply(fx);
  }
  bool coordinator_up() const { return engine_ != nullptr; }
  Engine& engine() { return *engine_; }
  std::string CoordinatorState() { return engine_ ? engine_->state() : "down"; }

  // ---- the network and the clock

  void CutOff(const std::string& name, bool cut) { participants_.at(name)->cut_off = cut; }
  void LoseCallbacks(const std::string& name, bool lose) {
    participants_.at(name)->callbacks_lost = lose;
  }

  // Delivers every callback now in flight (replies may cause new ones, delivered next step).
  void Deliver() {
    std::vector<Send> sends;
    sends.swap(in_flight_);
    for (const Send& s : sends) {
      if (!engine_) return;
      Participant& p = *participants_.at(s.branch_id);
      CallbackReply reply{ReplyClass::kTransient, 0, "no reply within 5000 ms"};
      if (!p.cut_off && !p.callbacks_lost) {
        const PhaseResult r = Call(p, s);
        reply = Reply(r);
      }
      Effects fx;
      engine_->OnReply(Now(), s, reply, fx);
      Apply(fx);
    }
  }

  // One step of time: deliveries, the coordinator's timer, the participants' timers.
  void Step() {
    Deliver();
    steady_ += kStep;
    if (engine_) {
      if (const auto wake = engine_->WakeAt(); wake && *wake <= Now()) {
        Effects fx;
        engine_->OnTimer(Now(), fx);
        Apply(fx);
      }
    }
    for (auto& [name, p] : participants_) {
      for (auto& e : p->keeper.RunDue()) p->events.push_back(std::move(e));
    }
  }
  void Run(milliseconds d) {
    for (milliseconds t{0}; t < d; t += kStep) Step();
  }

  std::string Outcome(const std::string& name) {
    return participants_.at(name)->branch.Outcome(kGtid, name);
  }
  Participant& participant(const std::string& name) { return *participants_.at(name); }
  std::string BranchError(const std::string& name) {
    const v1::Transaction view = engine_->View();
    for (const v1::Branch& b : view.branches()) {
      if (b.branch_id() == name) return b.last_error();
    }
    return "";
  }
  // Runs until both participants have an outcome and the coordinator finished, or `limit`.
  void RunToQuiet(milliseconds limit) {
    for (milliseconds t{0}; t < limit; t += kStep) {
      if (engine_ && engine_->finished() && Outcome("a") != "in doubt" &&
          Outcome("b") != "in doubt") {
        return;
      }
      Step();
    }
  }

  Timestamp Now() const { return kT0 + std::chrono::duration_cast<milliseconds>(steady_ - kStart); }

  static constexpr const char* kGtid = "transfer-1";

 private:
  friend class WorldQuery;

  static PhaseResult Call(Participant& p, const Send& s) {
    CallbackContext ctx;
    ctx.gtid = kGtid;
    ctx.branch_id = s.branch_id;
    ctx.attempt = s.attempt;
    ctx.payload.set_null_value(google::protobuf::NULL_VALUE);
    ctx.payload_json = "null";
    if (s.phase == "can-commit") {
      ctx.phase = Phase::kCanCommit;
      return p.handler.CanCommit(ctx);
    }
    if (s.phase == "pre-commit") {
      ctx.phase = Phase::kPreCommit;
      return p.handler.PreCommit(ctx);
    }
    if (s.phase == "commit") {
      ctx.phase = Phase::kCommit;
      return p.handler.Commit(ctx);
    }
    ctx.phase = Phase::kAbort;
    return p.handler.Abort(ctx);
  }

  static CallbackReply Reply(const PhaseResult& r) {
    switch (r.kind()) {
      case PhaseResult::Kind::kDone:
        return {ReplyClass::kSuccess, 200, ""};
      case PhaseResult::Kind::kRefused:
        return {ReplyClass::kRefused, 409, "HTTP 409: " + r.message()};
      case PhaseResult::Kind::kInProgress:
        return {ReplyClass::kInProgress, 425, ""};
      default:
        return {ReplyClass::kTransient, r.http_status(), r.message()};
    }
  }

  void Apply(Effects& fx) {
    for (v1::LogRecord& r : fx.append) {
      if (hold_) {
        pending_.push_back(std::move(r));
      } else {
        EXPECT_TRUE(log_->Append({r}).ok());
        ++pending_durable_;
      }
    }
    const bool durable_now = !hold_ && !fx.append.empty();
    for (Send& s : fx.send) in_flight_.push_back(std::move(s));
    fx.Clear();
    if (durable_now) {
      Effects more;
      engine_->OnDurable(Now(), pending_durable_, more);
      Apply(more);
    }
  }

  static inline const Timestamp kT0{milliseconds(1'795'219'200'000)};
  static inline const std::chrono::steady_clock::time_point kStart{std::chrono::hours(1)};

  std::chrono::steady_clock::time_point steady_ = kStart;
  std::unique_ptr<coordinator::TransactionLog> log_;
  std::unique_ptr<Engine> engine_;
  std::vector<v1::LogRecord> pending_;  // appended while durability is held
  uint64_t pending_durable_ = 0;        // records of this engine incarnation that are durable
  bool hold_ = false;
  std::vector<Send> in_flight_;
  std::map<std::string, std::unique_ptr<Participant>> participants_;
};

Result<participant::TerminationAnswer> WorldQuery::Ask(const std::string&) {
  if (!world_.coordinator_up()) return Status::Unavailable("connection refused");
  if (world_.participant(name_).cut_off) return Status::Unavailable("no route to host");
  return participant::AnswerForState(world_.engine().View().state());
}

// Everyone votes yes; the pre_commit record is durable and the pre-commits are in flight.
void ToPreCommitsInFlight(World& w) {
  w.Begin();
  w.Deliver();  // can-commits: both vote yes
  ASSERT_EQ(w.CoordinatorState(), "pre-committing");
}

// ================================================================================ partition

TEST(ThreePcPartition, ByDefaultACutOffBranchAbortsWhileTheOthersCommit) {
  World w(/*termination_query_required=*/false);
  ToPreCommitsInFlight(w);
  w.CutOff("a", true);  // a's pre-commit (and everything after) is lost; a cannot ask either
  w.Run(milliseconds(kTimeoutMs + 500));
  // The coordinator: b acknowledged pre-commit, a never did; past the pre-commit deadline it
  // commits (a branch may be pre-committed, so abort is no longer possible).
  EXPECT_EQ(w.CoordinatorState(), "committing");
  EXPECT_EQ(w.Outcome("b"), "committed");
  EXPECT_EQ(w.Outcome("a"), "in doubt");
  // a voted yes and heard nothing; it cannot ask, so the timeout rule aborts it.
  w.Run(kParticipantTimeout);
  EXPECT_EQ(w.Outcome("a"), "aborted");
  ASSERT_FALSE(w.participant("a").events.empty());
  EXPECT_EQ(w.participant("a").events.back().action, participant::TimeoutEvent::Action::kAborted);
  EXPECT_FALSE(w.participant("a").events.back().asked);

  // The split outcome: the inconsistency 3PC is known for under partitions.
  EXPECT_NE(w.Outcome("a"), w.Outcome("b"));

  // When the partition heals the coordinator's commit reaches a, which refuses it; the
  // coordinator never gives phase 2 up, and the record shows the conflict for an operator.
  w.CutOff("a", false);
  w.Run(milliseconds(10'000));
  EXPECT_EQ(w.Outcome("a"), "aborted") << "the barrier never commits an aborted branch";
  EXPECT_FALSE(w.engine().finished());
  EXPECT_NE(w.BranchError("a").find("participant bug, retried: 409 to commit"), std::string::npos)
      << w.BranchError("a");
}

TEST(ThreePcPartition, WithTheTerminationQueryRequiredTheCutOffBranchWaitsAndCommits) {
  World w(/*termination_query_required=*/true);
  ToPreCommitsInFlight(w);
  w.CutOff("a", true);
  w.Run(milliseconds(kTimeoutMs + 500) + kParticipantTimeout * 3);
  EXPECT_EQ(w.CoordinatorState(), "committing");
  EXPECT_EQ(w.Outcome("b"), "committed");
  EXPECT_EQ(w.Outcome("a"), "in doubt") << "blocked: it does not decide alone";
  ASSERT_FALSE(w.participant("a").events.empty());
  for (const auto& e : w.participant("a").events) {
    EXPECT_EQ(e.action, participant::TimeoutEvent::Action::kWaiting) << e.why;
  }
  w.CutOff("a", false);
  w.RunToQuiet(milliseconds(20'000));
  EXPECT_EQ(w.Outcome("a"), "committed");
  EXPECT_EQ(w.Outcome("b"), "committed");
  EXPECT_TRUE(w.engine().finished());
  EXPECT_EQ(w.CoordinatorState(), "committed");
}

TEST(ThreePcPartition, ByDefaultAReachableCoordinatorIsAskedAndTheBranchFollowsIt) {
  // The same lost pre-commit (and commits), but a can still reach the coordinator: its
  // termination query says "committing" and a commits, although its own rule (voted yes, heard
  // nothing) would abort.
  World w(/*termination_query_required=*/false);
  ToPreCommitsInFlight(w);
  w.LoseCallbacks("a", true);
  w.Run(kParticipantTimeout + kStep);
  EXPECT_EQ(w.Outcome("a"), "committed");
  ASSERT_FALSE(w.participant("a").events.empty());
  EXPECT_TRUE(w.participant("a").events.back().asked);
  EXPECT_EQ(w.participant("a").events.back().action, participant::TimeoutEvent::Action::kCommitted);
  w.LoseCallbacks("a", false);
  w.RunToQuiet(milliseconds(20'000));
  EXPECT_EQ(w.CoordinatorState(), "committed");
  EXPECT_EQ(w.Outcome("b"), "committed");
}

// ================================================================================ crashes

TEST(ThreePcCoordinatorCrash, DownBeforeThePreCommitRecordTheBranchesAbortWithoutIt) {
  // Where 2pc blocks (prepared, coordinator gone), 3pc's voted-yes branches abort on their own,
  // and the restarted coordinator agrees (no pre_commit record: abort).
  World w(/*termination_query_required=*/false);
  w.Begin();
  w.HoldDurability();
  w.Deliver();  // both vote yes; the pre_commit record is emitted but not durable
  w.CrashCoordinator();
  w.Run(kParticipantTimeout + kStep);
  EXPECT_EQ(w.Outcome("a"), "aborted");
  EXPECT_EQ(w.Outcome("b"), "aborted");
  w.RestartCoordinator();
  EXPECT_EQ(w.CoordinatorState(), "aborting");
  w.RunToQuiet(milliseconds(10'000));
  EXPECT_EQ(w.CoordinatorState(), "aborted");
}

TEST(ThreePcCoordinatorCrash, DownAfterEveryPreCommitAckTheBranchesCommitWithoutIt) {
  World w(/*termination_query_required=*/false);
  ToPreCommitsInFlight(w);
  w.HoldDurability();
  w.Deliver();  // both acknowledge; the commit decision is emitted but not durable
  w.CrashCoordinator();
  w.Run(kParticipantTimeout + kStep);
  EXPECT_EQ(w.Outcome("a"), "committed");
  EXPECT_EQ(w.Outcome("b"), "committed");
  w.RestartCoordinator();
  EXPECT_EQ(w.CoordinatorState(), "committing") << "the pre_commit record is durable";
  w.RunToQuiet(milliseconds(10'000));
  EXPECT_EQ(w.CoordinatorState(), "committed");
}

TEST(ThreePcCoordinatorCrash, DownBetweenThePreCommitRecordAndThePreCommitsSplitsByDefault) {
  // To a participant a dead coordinator looks like a partition: both voted yes and heard
  // nothing, so both abort; the restarted coordinator finds the pre_commit record and commits.
  World w(/*termination_query_required=*/false);
  ToPreCommitsInFlight(w);
  w.CrashCoordinator();  // the pre-commits in flight are lost
  w.Run(kParticipantTimeout + kStep);
  EXPECT_EQ(w.Outcome("a"), "aborted");
  EXPECT_EQ(w.Outcome("b"), "aborted");
  w.RestartCoordinator();
  EXPECT_EQ(w.CoordinatorState(), "committing");
  w.Run(milliseconds(5'000));
  EXPECT_FALSE(w.engine().finished()) << "its commits are refused: aborted branches";
  EXPECT_NE(w.BranchError("a").find("409 to commit"), std::string::npos) << w.BranchError("a");
}

TEST(ThreePcCoordinatorCrash, DownBetweenThePreCommitRecordAndThePreCommitsWithTheQueryRequired) {
  World w(/*termination_query_required=*/true);
  ToPreCommitsInFlight(w);
  w.CrashCoordinator();
  w.Run(kParticipantTimeout * 3);
  EXPECT_EQ(w.Outcome("a"), "in doubt");
  EXPECT_EQ(w.Outcome("b"), "in doubt");
  w.RestartCoordinator();
  w.RunToQuiet(milliseconds(20'000));
  EXPECT_EQ(w.Outcome("a"), "committed");
  EXPECT_EQ(w.Outcome("b"), "committed");
  EXPECT_EQ(w.CoordinatorState(), "committed");
}

}  // namespace
}  // namespace txcoord::integration
