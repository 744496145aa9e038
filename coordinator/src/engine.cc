// The 2pc and tcc engines (engine.h): one class, since both drive a set of branches through a
// decision and phase 2, and differ only in who drives the first phase. What they share with the
// 3pc engine (phase 2, retries, the records) is BranchPhaseEngine (engine_common.h).
#include "txcoord/coordinator/engine.h"

#include <google/protobuf/util/message_differencer.h>

#include <string_view>

#include "engine_3pc.h"
#include "engine_common.h"
#include "saga_engine.h"
#include "txcoord/saga/engine.h"

namespace txcoord::coordinator {
namespace {

using internal::BranchRuntime;
using internal::CopyBranchDefinition;
using internal::Describe;
using internal::kAbort;
using internal::kAborted;
using internal::kAborting;
using internal::kCommit;
using internal::kCommitted;
using internal::kCommitting;
using std::chrono::milliseconds;

constexpr std::string_view kPreparing = "preparing";
constexpr std::string_view kActive = "active";

constexpr std::string_view kPrepare = "prepare";

// 2pc and tcc: the branches' first phase (prepare, or the application's Try calls) and the
// one-phase commit; phase 2 and the rest are BranchPhaseEngine's.
class BranchEngine final : public internal::BranchPhaseEngine {
 public:
  BranchEngine(const EngineOptions& options, uint64_t seed) : BranchPhaseEngine(options, seed) {}

  // Builds a new transaction from a checked begin request and emits its begin record.
  void Begin(Timestamp now, const BeginArgs& args, Effects& out) {
    const v1::BeginRequest& req = args.request;
    gtid_ = req.gtid();
    protocol_ = req.protocol();
    tcc_ = protocol_ == "tcc";
    traceparent_ = args.traceparent;
    digest_ = args.request_digest;
    created_at_ = updated_at_ = now;
    deadline_ = now + milliseconds(args.timeout_ms);
    // Registered by the begin record, which is this engine's record 1 (emitted below).
    for (const v1::Branch& b : req.branches()) AddBranch(b, 1);
    one_phase_ = !tcc_ && options_.one_phase && branches_.size() == 1;
    state_ = tcc_ ? kActive : kPreparing;

    v1::LogRecord r = MakeBeginRecord(req, protocol_, args.timeout_ms);
    r.mutable_begin()->set_one_phase(one_phase_);
    begin_seq_ = Emit(now, std::move(r), out);
  }

  // Rebuilds the transaction from its records and resumes it.
  Status Recover(Timestamp now, const LoggedTransaction& logged, Effects& out) {
    const TransactionSummary& s = logged.summary;
    gtid_ = s.gtid;
    protocol_ = s.protocol;
    if (protocol_ != "2pc" && protocol_ != "tcc") {
      return Status::InvalidArgument("protocol \"" + protocol_ + "\" is not run by this engine");
    }
    tcc_ = protocol_ == "tcc";
    created_at_ = s.created_at;
    updated_at_ = s.updated_at;
    bool began = false;
    bool ended = false;
    for (const v1::LogRecord& r : logged.records) {
      switch (r.body_case()) {
        case v1::LogRecord::kBegin: {
          const v1::BeginRecord& b = r.begin();
          if (began) return Status::Corruption(gtid_ + ": two begin records");
          began = true;
          RestoreBegin(b);
          one_phase_ = b.one_phase();
          break;
        }
        case v1::LogRecord::kBranchRegistered:
          if (FindRuntime(r.branch_registered().branch().branch_id()) == nullptr) {
            AddBranch(r.branch_registered().branch(), 0);
          }
          break;
        case v1::LogRecord::kDecision:
          decision_ = r.decision().outcome();
          reason_ = r.decision().reason();
          break;
        case v1::LogRecord::kBranchOutcome:
          TXCOORD_RETURN_IF_ERROR(RestoreOutcome(r.branch_outcome()));
          break;
        case v1::LogRecord::kResolved:
          // An operator's resolve: the branch acknowledged its phase, by hand.
          TXCOORD_RETURN_IF_ERROR(RestoreResolved(r.resolved()));
          break;
        case v1::LogRecord::kEnd:
          ended = true;
          break;
        case v1::LogRecord::kStepOutcome:
        case v1::LogRecord::kPreCommit:
        case v1::LogRecord::BODY_NOT_SET:
          return Status::Corruption(gtid_ + ": a record of kind " + std::to_string(r.body_case()) +
                                    " in a " + protocol_ + " transaction");
      }
    }
    if (!began) return Status::Corruption(gtid_ + ": no begin record");
    if (one_phase_ && (tcc_ || branches_.size() != 1)) {
      return Status::Corruption(gtid_ + ": one-phase " + protocol_ + " transaction with " +
                                std::to_string(branches_.size()) + " branches");
    }
    if (ended || s.finished()) {
      state_ = s.state;
      finished_ = true;
      return Status::Ok();
    }
    if (decision_ == v1::OUTCOME_COMMIT || decision_ == v1::OUTCOME_ABORT) {
      // The decision is durable: drive phase 2 to every branch not known to have acknowledged.
      const bool commit = decision_ == v1::OUTCOME_COMMIT;
      state_ = commit ? kCommitting : kAborting;
      StartPhase2(commit);
      SendDue(now, out);
      MaybeFinish(now, out);
      return Status::Ok();
    }
    if (tcc_) {
      state_ = kActive;  // stays active until its deadline; OnTimer aborts after that
      OnTimer(now, out);
      return Status::Ok();
    }
    state_ = kPreparing;
    if (one_phase_) {
      // The participant may have committed: only it knows. Ask again; the barrier answers the
      // same as the first time.
      first_phase_started_ = true;
      StartPhase(branches_.front(), kCommit);
      SendDue(now, out);
      return Status::Ok();
    }
    Decide(now, v1::OUTCOME_ABORT, "the coordinator restarted before deciding; presumed abort",
           out);
    return Status::Ok();
  }

  Result<uint64_t> RegisterBranch(Timestamp now, const v1::Branch& branch, Effects& out) override {
    if (!tcc_) {
      return Status::Conflict("branches are registered only in tcc transactions; " + gtid_ +
                              " is " + protocol_);
    }
    if (state_ != kActive) {
      return Status::Conflict("transaction " + gtid_ + " is " + state_ +
                              ", no longer active: register branches before commit or abort");
    }
    if (now > deadline_) {
      Decide(now, v1::OUTCOME_ABORT, DeadlineReason(), out);
      return Status::Conflict("transaction " + gtid_ + " passed its deadline and is aborting");
    }
    if (const BranchRuntime* existing = FindRuntime(branch.branch_id())) {
      const bool same =
          existing->def.url() == branch.url() && google::protobuf::util::MessageDifferencer::Equals(
                                                     existing->def.payload(), branch.payload());
      if (!same) {
        return Status::Conflict("branch \"" + branch.branch_id() +
                                "\" is already registered with another url or payload");
      }
      return existing->registered_seq;  // registering the same branch twice is not an error
    }
    if (static_cast<int>(branches_.size()) >= options_.max_branches) {
      return Status::InvalidArgument("transaction " + gtid_ + " already has " +
                                     std::to_string(branches_.size()) +
                                     " branches, the most allowed");
    }
    v1::LogRecord r;
    CopyBranchDefinition(branch, r.mutable_branch_registered()->mutable_branch());
    const uint64_t seq = Emit(now, std::move(r), out);
    AddBranch(branch, seq);
    return seq;
  }

  Result<uint64_t> Commit(Timestamp now, Effects& out) override {
    if (std::optional<Result<uint64_t>> answer = AnswerDecided(v1::OUTCOME_COMMIT)) return *answer;
    if (!tcc_) {
      return Status::Conflict(
          "a 2pc transaction commits by itself once every branch is "
          "prepared; " +
          gtid_ + " is " + state_);
    }
    if (now > deadline_) {
      Decide(now, v1::OUTCOME_ABORT, DeadlineReason(), out);
      return Status::Conflict("transaction " + gtid_ + " passed its deadline and is aborting");
    }
    Decide(now, v1::OUTCOME_COMMIT, "", out);
    return decision_seq_;
  }

  Result<uint64_t> Abort(Timestamp now, std::string reason, Effects& out) override {
    if (std::optional<Result<uint64_t>> answer = AnswerDecided(v1::OUTCOME_ABORT)) return *answer;
    if (one_phase_ && first_phase_started_) {
      return Status::Conflict("transaction " + gtid_ +
                              " is a one-phase commit in progress; its outcome is the "
                              "participant's and cannot be aborted");
    }
    Decide(now, v1::OUTCOME_ABORT, reason.empty() ? "aborted by the application" : reason, out);
    return decision_seq_;
  }

  // Phase 2 of a decided transaction: `as` must be the decision's ("committed" for commit,
  // "aborted" for abort) and the branch must not have acknowledged it yet. A one-phase commit
  // still outstanding is the other case: its outcome is the participant's, so the operator's
  // word decides it (commit, or abort with the operator's reason) in the same append.
  Result<uint64_t> Resolve(Timestamp now, const v1::ResolvedRecord& request,
                           Effects& out) override {
    Result<BranchRuntime*> found = FindResolvable(request);
    if (!found.ok()) return found.status();
    BranchRuntime* b = *found;
    if (decision_ == v1::OUTCOME_UNSPECIFIED) {
      if (one_phase_ && first_phase_started_) return ResolveOnePhase(now, *b, request, out);
      return Status::Conflict("transaction " + gtid_ + " is " + state_ +
                              " and not decided, so no commit or abort is outstanding; abort it "
                              "first (txctl abort), then resolve a branch whose abort stays "
                              "stuck");
    }
    return ResolveDecided(now, *b, request,
                          decision_ == v1::OUTCOME_COMMIT ? " (its commit done by hand)"
                                                          : " (its abort done by hand)",
                          out);
  }

  void OnDurable(Timestamp now, uint64_t seq, Effects& out) override {
    if (!NoteDurable(seq)) return;
    AbortIfPastDeadline(now, out);  // no prepare goes out past the deadline
    if (!tcc_ && !first_phase_started_ && decision_ == v1::OUTCOME_UNSPECIFIED &&
        durable_ >= begin_seq_) {
      first_phase_started_ = true;
      if (one_phase_) {
        StartPhase(branches_.front(), kCommit);
      } else {
        for (BranchRuntime& b : branches_) StartPhase(b, kPrepare);
      }
    }
    if (decision_seq_ != 0 && durable_ >= decision_seq_ && !phase2_started_) {
      phase2_started_ = true;
      const bool commit = decision_ == v1::OUTCOME_COMMIT;
      for (BranchRuntime& b : branches_) {
        if (b.done && b.phase == (commit ? kCommit : kAbort)) continue;  // one-phase, acked
        StartPhase(b, commit ? kCommit : kAbort);
      }
    }
    SendDue(now, out);
    MaybeFinish(now, out);
  }

  void OnReply(Timestamp now, const Send& sent, const CallbackReply& reply, Effects& out) override {
    BranchRuntime* b = TakeReply(now, sent);
    if (b == nullptr) return;  // stale
    // A first-phase reply after the deadline comes too late to count (the timer may be late).
    AbortIfPastDeadline(now, out);
    const bool first_phase = b->phase == kPrepare || (one_phase_ && !decided_or_deciding());
    if (reply.reply_class == ReplyClass::kSuccess) {
      b->done = true;
      b->failures = 0;
      if (b->phase == kPrepare) {
        b->state = "prepared";
        if (state_ == kPreparing && AllDone()) Decide(now, v1::OUTCOME_COMMIT, "", out);
      } else if (first_phase) {  // one-phase commit: the participant committed
        b->state = std::string(kCommitted);
        Decide(now, v1::OUTCOME_COMMIT, "", out);
      } else {
        b->state = std::string(b->phase == kCommit ? kCommitted : kAborted);
      }
      SendDue(now, out);
      MaybeFinish(now, out);
      return;
    }

    b->last_error = Describe(reply);
    if (reply.reply_class == ReplyClass::kRefused && first_phase) {
      b->state = "failed";
      b->done = true;
      // A refusal while an abort is already decided (another refusal, the deadline, abort())
      // changes nothing: the decision and its reason stand.
      if (decision_ == v1::OUTCOME_UNSPECIFIED) {
        Decide(now, v1::OUTCOME_ABORT,
               "branch \"" + b->def.branch_id() + "\" refused " + b->phase + ": " + b->last_error,
               out);
      }
      SendDue(now, out);
      return;
    }
    RetryLater(now, *b, reply, out);
  }

  void OnTimer(Timestamp now, Effects& out) override {
    if (finished_ || end_seq_ != 0) return;
    AbortIfPastDeadline(now, out);
    SendDue(now, out);
  }

  std::optional<Timestamp> WakeAt() const override {
    if (finished_ || end_seq_ != 0) return std::nullopt;
    std::optional<Timestamp> deadline;
    if (decision_ == v1::OUTCOME_UNSPECIFIED && !one_phase_) {
      deadline = deadline_ + milliseconds(1);  // strictly past it
    }
    return NextWake(deadline);
  }

 private:
  bool decided_or_deciding() const { return decision_ != v1::OUTCOME_UNSPECIFIED; }

  // Whether any callback may be sent now: phase 2 has started (its decision is durable), or the
  // first phase runs undecided.
  bool MaySend() const override {
    return phase2_started_ || (first_phase_started_ && decision_ == v1::OUTCOME_UNSPECIFIED);
  }
  // The one-phase commit is the first phase of a one-phase transaction; its phase 2, an abort
  // after a refusal, is an ordinary abort.
  bool SendsOnePhase() const override {
    return one_phase_ && first_phase_started_ && decision_ == v1::OUTCOME_UNSPECIFIED;
  }

  // The decision first, then the resolve, so that the log sees the resolve agree with it.
  Result<uint64_t> ResolveOnePhase(Timestamp now, BranchRuntime& b,
                                   const v1::ResolvedRecord& request, Effects& out) {
    const bool commit = request.as() == kCommitted;
    std::string reason;
    if (!commit) {
      reason = "the one-phase commit of branch \"" + b.def.branch_id() +
               "\" was resolved as aborted by " + request.operator_();
      if (!request.reason().empty()) reason += ": " + request.reason();
    }
    Decide(now, commit ? v1::OUTCOME_COMMIT : v1::OUTCOME_ABORT, std::move(reason), out);
    const uint64_t seq = EmitResolved(now, b, request, out);
    MarkResolved(b, request.as());
    if (commit) {
      phase2_started_ = true;  // nothing to send: the one branch committed
      MaybeFinish(now, out);
    } else {
      b.phase = std::string(kAbort);  // acknowledged: phase 2 sends it no abort
    }
    return seq;
  }

  // Makes the outcome durable; phase 2 starts in OnDurable once it is.
  void Decide(Timestamp now, v1::Outcome outcome, std::string reason, Effects& out) {
    EmitDecision(now, outcome, std::move(reason), out);
    const bool commit = outcome == v1::OUTCOME_COMMIT;
    // A one-phase commit that succeeded needs no phase 2: its branch is done already.
    if (commit && one_phase_ && !branches_.empty() && branches_.front().done) {
      phase2_started_ = true;
      MaybeFinish(now, out);
    }
#ifdef TXCOORD_MUTATION_EARLY_COMMIT
    // A deliberate bug, compiled only into tests/simulation's mutation test (never the
    // product): phase 2 of a commit starts before its decision is durable.
    if (commit && !phase2_started_) {
      phase2_started_ = true;
      for (BranchRuntime& b : branches_) StartPhase(b, kCommit);
    }
#endif
  }

  // Past the deadline an undecided transaction aborts, whichever event notices it first.
  // A one-phase commit has no deadline: only its participant knows the outcome.
  void AbortIfPastDeadline(Timestamp now, Effects& out) {
    if (decision_ == v1::OUTCOME_UNSPECIFIED && !one_phase_ && now > deadline_) {
      Decide(now, v1::OUTCOME_ABORT, DeadlineReason(), out);
    }
  }

  std::string DeadlineReason() const {
    std::string reason = BranchPhaseEngine::DeadlineReason();
    if (tcc_) reason += "; the application did not commit in time";
    return reason;
  }

  bool tcc_ = false;
  bool one_phase_ = false;
  bool first_phase_started_ = false;
};

}  // namespace

milliseconds BackoffDelay(const RetryPolicy& policy, int failures, std::mt19937_64& rng) {
  return saga::FullJitterBackoff(policy.initial, policy.max, failures, rng);
}

std::unique_ptr<Engine> BeginEngine(Timestamp now, const BeginArgs& args,
                                    const EngineOptions& options, uint64_t seed, Effects& out) {
  if (args.request.protocol() == "saga") {
    return internal::BeginSagaEngine(now, args, options, seed, out);
  }
  if (args.request.protocol() == "3pc") {
    return internal::BeginThreePhaseEngine(now, args, options, seed, out);
  }
  auto engine = std::make_unique<BranchEngine>(options, seed);
  engine->Begin(now, args, out);
  return engine;
}

Result<std::unique_ptr<Engine>> RecoverEngine(Timestamp now, const LoggedTransaction& logged,
                                              const EngineOptions& options, uint64_t seed,
                                              Effects& out) {
  if (logged.summary.protocol == "saga") {
    return internal::RecoverSagaEngine(now, logged, options, seed, out);
  }
  if (logged.summary.protocol == "3pc") {
    return internal::RecoverThreePhaseEngine(now, logged, options, seed, out);
  }
  auto engine = std::make_unique<BranchEngine>(options, seed);
  TXCOORD_RETURN_IF_ERROR(engine->Recover(now, logged, out));
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace txcoord::coordinator
