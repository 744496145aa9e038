// The 3pc engine (engine.h: diagram; docs/3pc.md: guarantees). A pure state machine like the
// 2pc one, with a second round between the votes and the decision:
//
//   can-commit   every branch is asked whether it can commit (its yes vote holds the work, like a
//                2pc prepare). A no (409), or the deadline before every yes, aborts.
//   pre-commit   once all voted yes, a `pre_commit` record is made durable and only then is
//                pre-commit sent: from that record on, some branch may be pre-committed, and a
//                pre-committed participant that hears nothing more commits on its own (contract
//                section 4), so the outcome can only be commit. The commit decision follows when
//                every branch acknowledged pre-commit, or when the pre-commit deadline passes.
//   phase 2      commit (or abort) to every branch until each acknowledges, as in 2pc (both
//                engines run it in BranchPhaseEngine, engine_common.h).
//
// Recovery is Skeen's termination rule for the coordinator: a durable pre_commit record means a
// branch may be pre-committed, so commit; without one no branch can be, so abort.
#include "engine_3pc.h"

#include <cassert>
#include <string>
#include <string_view>

#include "engine_common.h"

namespace txcoord::coordinator::internal {
namespace {

using std::chrono::milliseconds;

constexpr std::string_view kCanCommit = "can-commit";
constexpr std::string_view kPreCommit = "pre-commit";

// Branch states of the public record, besides "registered", "committed" and "aborted".
constexpr std::string_view kVotedYes = "voted-yes";
constexpr std::string_view kVotedNo = "failed";
constexpr std::string_view kPreCommitted = "pre-committed";
constexpr std::string_view kPreCommitRefused = "pre-commit-refused";

// Where the transaction is. Decided covers committing, aborting and the end.
enum class Stage { kCanCommit, kPreCommit, kDecided };

// The can-commit and pre-commit rounds, their deadlines and Skeen's recovery rule; phase 2 and
// the rest are BranchPhaseEngine's.
class ThreePhaseEngine final : public BranchPhaseEngine {
 public:
  ThreePhaseEngine(const EngineOptions& options, uint64_t seed) : BranchPhaseEngine(options, seed) {
    protocol_ = "3pc";
  }

  void Begin(Timestamp now, const BeginArgs& args, Effects& out) {
    const v1::BeginRequest& req = args.request;
    gtid_ = req.gtid();
    traceparent_ = args.traceparent;
    digest_ = args.request_digest;
    created_at_ = updated_at_ = now;
    timeout_ = milliseconds(args.timeout_ms);
    deadline_ = now + timeout_;
    for (const v1::Branch& b : req.branches()) AddBranch(b, 0);
    state_ = std::string(kCanCommitting);
    begin_seq_ = Emit(now, MakeBeginRecord(req, protocol_, args.timeout_ms), out);
  }

  Status Recover(Timestamp now, const LoggedTransaction& logged, Effects& out) {
    const TransactionSummary& s = logged.summary;
    gtid_ = s.gtid;
    if (s.protocol != "3pc") {
      return Status::InvalidArgument("protocol \"" + s.protocol +
                                     "\" is not run by the 3pc engine");
    }
    created_at_ = s.created_at;
    updated_at_ = s.updated_at;
    bool began = false;
    bool pre_committed = false;
    bool ended = false;
    for (const v1::LogRecord& r : logged.records) {
      if (ended) return Status::Corruption(gtid_ + ": a record after the end");
      if (!began && !r.has_begin()) return Status::Corruption(gtid_ + ": a record before begin");
      switch (r.body_case()) {
        case v1::LogRecord::kBegin: {
          if (began) return Status::Corruption(gtid_ + ": two begin records");
          began = true;
          const v1::BeginRecord& b = r.begin();
          if (b.protocol() != "3pc") {
            return Status::Corruption(gtid_ + ": the begin record is of protocol \"" +
                                      b.protocol() + "\", the summary of 3pc");
          }
          if (b.one_phase() || b.steps_size() > 0) {
            return Status::Corruption(gtid_ + ": a 3pc begin with one_phase or saga steps");
          }
          timeout_ = milliseconds(b.timeout_ms());
          RestoreBegin(b);
          break;
        }
        case v1::LogRecord::kPreCommit:
          if (pre_committed || decision_ != v1::OUTCOME_UNSPECIFIED) {
            return Status::Corruption(gtid_ + ": a pre_commit record twice or after the decision");
          }
          pre_committed = true;
          pre_commit_deadline_ = FromProto(r.pre_commit().deadline());
          break;
        case v1::LogRecord::kDecision:
          if (decision_ != v1::OUTCOME_UNSPECIFIED && decision_ != r.decision().outcome()) {
            return Status::Corruption(gtid_ + ": the decision changed");
          }
          decision_ = r.decision().outcome();
          if (decision_ != v1::OUTCOME_COMMIT && decision_ != v1::OUTCOME_ABORT) {
            return Status::Corruption(gtid_ + ": a decision without an outcome");
          }
          if (pre_committed && decision_ != v1::OUTCOME_COMMIT) {
            return Status::Corruption(gtid_ + ": an abort decision after the pre_commit record");
          }
          reason_ = r.decision().reason();
          break;
        case v1::LogRecord::kBranchOutcome:
          TXCOORD_RETURN_IF_ERROR(RestoreOutcome(r.branch_outcome()));
          break;
        case v1::LogRecord::kResolved:
          // An operator's resolve: the branch acknowledged the decision's phase, by hand. Of a
          // resolve both early and of an unknown branch, RestoreResolved reports the latter.
          if (decision_ == v1::OUTCOME_UNSPECIFIED &&
              FindRuntime(r.resolved().branch_id()) != nullptr) {
            return Status::Corruption(gtid_ + ": a branch resolved before the decision");
          }
          TXCOORD_RETURN_IF_ERROR(RestoreResolved(r.resolved()));
          break;
        case v1::LogRecord::kEnd:
          ended = true;
          break;
        case v1::LogRecord::kBranchRegistered:
        case v1::LogRecord::kStepOutcome:
        case v1::LogRecord::BODY_NOT_SET:
          return Status::Corruption(gtid_ + ": a record of kind " + std::to_string(r.body_case()) +
                                    " in a 3pc transaction");
      }
    }
    if (!began) return Status::Corruption(gtid_ + ": no begin record");
    if (ended || s.finished()) {
      state_ = s.state;
      stage_ = Stage::kDecided;
      finished_ = true;
      return Status::Ok();
    }
    if (decision_ != v1::OUTCOME_UNSPECIFIED) {
      // The decision is durable: drive phase 2 to every branch not known to have acknowledged.
      const bool commit = decision_ == v1::OUTCOME_COMMIT;
      state_ = std::string(commit ? kCommitting : kAborting);
      stage_ = Stage::kDecided;
      StartPhase2(commit);
      SendDue(now, out);
      MaybeFinish(now, out);
      return Status::Ok();
    }
    if (pre_committed) {
      // Skeen's rule: some branch may be pre-committed, and it commits on its own if it hears
      // nothing more; every branch voted yes, so commit is what all may agree on.
      state_ = std::string(kPreCommitting);
      stage_ = Stage::kPreCommit;
      Decide(now, v1::OUTCOME_COMMIT, "", out);
      return Status::Ok();
    }
    // No pre_commit record: no pre-commit was ever sent, so no branch is pre-committed, and a
    // branch that voted yes aborts on its own when it hears nothing more.
    state_ = std::string(kCanCommitting);
    Decide(now, v1::OUTCOME_ABORT,
           "the coordinator restarted before every branch had voted yes and the pre-commit was "
           "durable; no branch can be pre-committed, so the transaction aborts",
           out);
    return Status::Ok();
  }

  Result<uint64_t> RegisterBranch(Timestamp, const v1::Branch&, Effects&) override {
    return Status::Conflict("branches are registered only in tcc transactions; " + gtid_ +
                            " is 3pc");
  }

  Result<uint64_t> Commit(Timestamp, Effects&) override {
    if (std::optional<Result<uint64_t>> answer = AnswerDecided(v1::OUTCOME_COMMIT)) return *answer;
    return Status::Conflict(
        "a 3pc transaction commits by itself once every branch voted yes and acknowledged "
        "pre-commit; " +
        gtid_ + " is " + state_);
  }

  Result<uint64_t> Abort(Timestamp now, std::string reason, Effects& out) override {
    if (std::optional<Result<uint64_t>> answer = AnswerDecided(v1::OUTCOME_ABORT)) return *answer;
    if (stage_ == Stage::kPreCommit) {
      return Status::Conflict("transaction " + gtid_ +
                              " is pre-committing: every branch voted yes and a branch may "
                              "already be pre-committed, so the outcome is commit");
    }
    Decide(now, v1::OUTCOME_ABORT, reason.empty() ? "aborted by the application" : reason, out);
    return decision_seq_;
  }

  // Only a decided 3pc transaction's commit or abort can be done by hand: before the decision the
  // outstanding calls are votes and pre-commits, which the coordinator itself must see answered.
  Result<uint64_t> Resolve(Timestamp now, const v1::ResolvedRecord& request,
                           Effects& out) override {
    Result<BranchRuntime*> found = FindResolvable(request);
    if (!found.ok()) return found.status();
    if (decision_ == v1::OUTCOME_UNSPECIFIED) {
      return Status::Conflict("transaction " + gtid_ + " is " + state_ +
                              " and not decided, so no commit or abort is outstanding");
    }
    return ResolveDecided(now, **found, request, "", out);
  }

  void OnDurable(Timestamp now, uint64_t seq, Effects& out) override {
    if (!NoteDurable(seq)) return;
    CheckDeadlines(now, out);  // no can-commit goes out past the deadline
    if (stage_ == Stage::kCanCommit && !can_commit_started_ && durable_ >= begin_seq_) {
      can_commit_started_ = true;
      for (BranchRuntime& b : branches_) StartPhase(b, kCanCommit);
    }
    if (stage_ == Stage::kPreCommit && !pre_commit_started_ && durable_ >= pre_commit_seq_) {
      pre_commit_started_ = true;
      state_ = std::string(kPreCommitting);
      for (BranchRuntime& b : branches_) StartPhase(b, kPreCommit);
      CheckDeadlines(now, out);  // durable only past the pre-commit deadline: commit at once
    }
    if (decision_seq_ != 0 && durable_ >= decision_seq_ && !phase2_started_) {
      StartPhase2(decision_ == v1::OUTCOME_COMMIT);
    }
    Progress(now, out);
    SendDue(now, out);
    MaybeFinish(now, out);
  }

  void OnReply(Timestamp now, const Send& sent, const CallbackReply& reply, Effects& out) override {
    BranchRuntime* b = TakeReply(now, sent);
    if (b == nullptr) return;  // stale
    // A reply after a deadline comes too late to count (the timer may be late).
    CheckDeadlines(now, out);
    const bool can_commit = b->phase == kCanCommit;
    const bool pre_commit = b->phase == kPreCommit;

    if (reply.reply_class == ReplyClass::kSuccess) {
      b->done = true;
      b->failures = 0;
      if (can_commit) {
        b->state = std::string(kVotedYes);
      } else if (pre_commit) {
        b->state = std::string(kPreCommitted);
      } else {
        b->state = std::string(b->phase == kCommit ? kCommitted : kAborted);
      }
      Progress(now, out);
      SendDue(now, out);
      MaybeFinish(now, out);
      return;
    }

    b->last_error = Describe(reply);
    if (reply.reply_class == ReplyClass::kRefused && can_commit) {
      b->state = std::string(kVotedNo);
      b->done = true;
      if (decision_ == v1::OUTCOME_UNSPECIFIED) {
        Decide(now, v1::OUTCOME_ABORT,
               "branch \"" + b->def.branch_id() + "\" refused can-commit: " + b->last_error, out);
      }
      return;
    }
    if (reply.reply_class == ReplyClass::kRefused && pre_commit) {
      // The participant cannot be pre-committed: most likely it already aborted on its own
      // timeout. Asking again would not change that, and the outcome is commit regardless, so
      // the branch counts as answered; its commit will show the conflict in last_error.
      b->state = std::string(kPreCommitRefused);
      b->last_error = "refused pre-commit (did it abort on its own timeout?): " + b->last_error;
      b->done = true;
      Progress(now, out);
      SendDue(now, out);
      return;
    }
    RetryLater(now, *b, reply, out);
  }

  void OnTimer(Timestamp now, Effects& out) override {
    if (finished_ || end_seq_ != 0) return;
    CheckDeadlines(now, out);
    SendDue(now, out);
  }

  std::optional<Timestamp> WakeAt() const override {
    if (finished_ || end_seq_ != 0) return std::nullopt;
    std::optional<Timestamp> deadline;  // strictly past it
    if (stage_ == Stage::kCanCommit) deadline = deadline_ + milliseconds(1);
    if (stage_ == Stage::kPreCommit && pre_commit_started_) {
      deadline = pre_commit_deadline_ + milliseconds(1);
    }
    return NextWake(deadline);
  }

 private:
  // Whether a callback may be sent now: the records its phase depends on are durable and the
  // phase is still the current one.
  bool MaySend() const override {
    switch (stage_) {
      case Stage::kCanCommit:
        return can_commit_started_;
      case Stage::kPreCommit:
        return pre_commit_started_;
      case Stage::kDecided:
        return phase2_started_;
    }
    return false;
  }

  // Moves on once every branch answered the current round.
  void Progress(Timestamp now, Effects& out) {
    if (!AllDone()) return;
    if (stage_ == Stage::kCanCommit && can_commit_started_) {
      EnterPreCommit(now, out);  // every vote was yes: a no decides abort at once
    } else if (stage_ == Stage::kPreCommit && pre_commit_started_) {
      Decide(now, v1::OUTCOME_COMMIT, "", out);
    }
  }

  // Every branch voted yes: record the votes and the pre_commit record; pre-commits go out once
  // it is durable (OnDurable).
  void EnterPreCommit(Timestamp now, Effects& out) {
    assert(stage_ == Stage::kCanCommit && decision_ == v1::OUTCOME_UNSPECIFIED);
    stage_ = Stage::kPreCommit;
    // state_ (and so GET) says pre-committing only once the record is durable (OnDurable): a
    // participant asking before then must not take "pre-committing" for a commit that a crash
    // could still turn into an abort.
    pre_commit_deadline_ = now + timeout_;
    for (const BranchRuntime& b : branches_) EmitOutcome(now, b, out);
    v1::LogRecord r;
    r.set_tx_state(std::string(kPreCommitting));
    *r.mutable_pre_commit()->mutable_deadline() = ToProto(pre_commit_deadline_);
    pre_commit_seq_ = Emit(now, std::move(r), out);
#ifdef TXCOORD_MUTATION_EARLY_PRE_COMMIT
    // A deliberate bug, compiled only into tests/simulation's mutation test (never the
    // product): pre-commit goes out before the pre_commit record is durable, so a crash can
    // abort a transaction some branch already pre-committed.
    pre_commit_started_ = true;
    state_ = std::string(kPreCommitting);
    for (BranchRuntime& b : branches_) StartPhase(b, kPreCommit);
#endif
  }

  // Makes the outcome durable; phase 2 starts in OnDurable once it is.
  void Decide(Timestamp now, v1::Outcome outcome, std::string reason, Effects& out) {
    // Never abort once a branch may be pre-committed (the log refuses it too).
    assert(outcome == v1::OUTCOME_COMMIT || stage_ == Stage::kCanCommit);
    stage_ = Stage::kDecided;
    EmitDecision(now, outcome, std::move(reason), out);
  }

  // Past the can-commit deadline an undecided transaction aborts; past the pre-commit deadline
  // (counted once pre-commits may go out) it commits. Whichever event notices it first.
  void CheckDeadlines(Timestamp now, Effects& out) {
    if (stage_ == Stage::kCanCommit && now > deadline_) {
      Decide(now, v1::OUTCOME_ABORT, DeadlineReason(), out);
    } else if (stage_ == Stage::kPreCommit && pre_commit_started_ && now > pre_commit_deadline_) {
      Decide(now, v1::OUTCOME_COMMIT, "", out);
    }
  }

  milliseconds timeout_{0};
  // Of pre-commit, set with the pre_commit record; deadline_ is can-commit's.
  Timestamp pre_commit_deadline_{};
  Stage stage_ = Stage::kCanCommit;
  uint64_t pre_commit_seq_ = 0;  // 0: not emitted by this engine
  bool can_commit_started_ = false;
  bool pre_commit_started_ = false;
};

}  // namespace

std::unique_ptr<Engine> BeginThreePhaseEngine(Timestamp now, const BeginArgs& args,
                                              const EngineOptions& options, uint64_t seed,
                                              Effects& out) {
  auto engine = std::make_unique<ThreePhaseEngine>(options, seed);
  engine->Begin(now, args, out);
  return engine;
}

Result<std::unique_ptr<Engine>> RecoverThreePhaseEngine(Timestamp now,
                                                        const LoggedTransaction& logged,
                                                        const EngineOptions& options, uint64_t seed,
                                                        Effects& out) {
  auto engine = std::make_unique<ThreePhaseEngine>(options, seed);
  TXCOORD_RETURN_IF_ERROR(engine->Recover(now, logged, out));
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace txcoord::coordinator::internal
