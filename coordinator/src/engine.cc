// The 2pc and tcc engines (engine.h): one class, since both drive a set of branches through a
// decision and phase 2, and differ only in who drives the first phase.
#include "txcoord/coordinator/engine.h"

#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <cassert>
#include <string_view>

#include "engine_3pc.h"
#include "saga_engine.h"
#include "txcoord/saga/engine.h"

namespace txcoord::coordinator {
namespace {

using std::chrono::milliseconds;

constexpr std::string_view kPreparing = "preparing";
constexpr std::string_view kActive = "active";
constexpr std::string_view kCommitting = "committing";
constexpr std::string_view kAborting = "aborting";
constexpr std::string_view kCommitted = "committed";
constexpr std::string_view kAborted = "aborted";

constexpr std::string_view kPrepare = "prepare";
constexpr std::string_view kCommit = "commit";
constexpr std::string_view kAbort = "abort";

bool IsPowerOfTwo(int n) { return n > 0 && (n & (n - 1)) == 0; }

std::string Describe(const CallbackReply& reply) {
  return reply.detail.empty()
             ? (reply.http_status != 0 ? "HTTP " + std::to_string(reply.http_status)
                                       : std::string("no reply"))
             : reply.detail;
}

// A branch as the engine drives it.
struct BranchRuntime {
  v1::Branch def;  // branch_id, url, payload as given
  std::string state = "registered";
  std::string phase;  // the phase being driven: prepare / commit / abort; empty: none yet
  int attempts = 0;   // attempts of `phase`
  int failures = 0;   // transient failures in a row in `phase`: the backoff exponent
  std::string last_error;
  bool in_flight = false;
  bool done = false;  // `phase` finished: prepared, or phase 2 acknowledged
  std::optional<Timestamp> retry_at;
  uint64_t registered_seq = 0;  // the record that registered it (0: begin or recovered)
};

class BranchEngine final : public Engine {
 public:
  BranchEngine(const EngineOptions& options, uint64_t seed) : options_(options), rng_(seed) {}

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

    v1::LogRecord r;
    r.set_tx_state(state_);
    v1::BeginRecord* begin = r.mutable_begin();
    begin->set_protocol(protocol_);
    begin->set_timeout_ms(args.timeout_ms);
    *begin->mutable_deadline() = ToProto(deadline_);
    for (const v1::Branch& b : req.branches()) {
      v1::Branch* stored = begin->add_branches();
      stored->set_branch_id(b.branch_id());
      stored->set_url(b.url());
      if (b.has_payload()) *stored->mutable_payload() = b.payload();
    }
    begin->set_traceparent(traceparent_);
    begin->set_request_digest(digest_);
    begin->set_one_phase(one_phase_);
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
          deadline_ = FromProto(b.deadline());
          traceparent_ = b.traceparent();
          digest_ = b.request_digest();
          one_phase_ = b.one_phase();
          for (const v1::Branch& br : b.branches()) AddBranch(br, 0);
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
        case v1::LogRecord::kBranchOutcome: {
          BranchRuntime* b = FindRuntime(r.branch_outcome().branch_id());
          if (b == nullptr) return Status::Corruption(gtid_ + ": outcome of an unknown branch");
          b->state = r.branch_outcome().state();
          b->attempts = r.branch_outcome().attempts();
          b->last_error = r.branch_outcome().last_error();
          break;
        }
        case v1::LogRecord::kResolved: {
          // An operator's resolve: the branch acknowledged its phase, by hand.
          BranchRuntime* b = FindRuntime(r.resolved().branch_id());
          if (b == nullptr) return Status::Corruption(gtid_ + ": resolve of an unknown branch");
          if (r.resolved().state() != kCommitted && r.resolved().state() != kAborted) {
            return Status::Corruption(gtid_ + ": branch resolved to state \"" +
                                      r.resolved().state() + "\"");
          }
          b->state = r.resolved().state();
          b->attempts = r.resolved().attempts();
          b->last_error = r.resolved().last_error();
          break;
        }
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
      const std::string_view acked = commit ? kCommitted : kAborted;
      for (BranchRuntime& b : branches_) {
        if (b.state == acked) {  // acknowledged (or resolved by hand): keeps its attempts
          b.phase = std::string(commit ? kCommit : kAbort);
          b.done = true;
          continue;
        }
        StartPhase(b, commit ? kCommit : kAbort);
      }
      phase2_started_ = true;
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
    v1::Branch* stored = r.mutable_branch_registered()->mutable_branch();
    stored->set_branch_id(branch.branch_id());
    stored->set_url(branch.url());
    if (branch.has_payload()) *stored->mutable_payload() = branch.payload();
    const uint64_t seq = Emit(now, std::move(r), out);
    AddBranch(branch, seq);
    return seq;
  }

  Result<uint64_t> Commit(Timestamp now, Effects& out) override {
    if (decision_ == v1::OUTCOME_COMMIT) return decision_seq_;
    if (decision_ == v1::OUTCOME_ABORT) {
      return Status::Conflict("transaction " + gtid_ + " is " + state_ + " (" + reason_ +
                              "); it cannot commit");
    }
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
    if (decision_ == v1::OUTCOME_ABORT) return decision_seq_;
    if (decision_ == v1::OUTCOME_COMMIT) {
      return Status::Conflict("transaction " + gtid_ + " is " + state_ +
                              "; the commit decision is durable, it can no longer abort");
    }
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
    BranchRuntime* b = FindRuntime(request.branch_id());
    if (b == nullptr) {
      return Status::NotFound("transaction " + gtid_ + " has no branch \"" + request.branch_id() +
                              "\"");
    }
    const std::string& as = request.as();
    if (as != kCommitted && as != kAborted) {
      return Status::InvalidArgument("resolve as \"" + as + "\": use committed or aborted");
    }
    if (finished_ || end_seq_ != 0) {
      return Status::Conflict("transaction " + gtid_ + " is finished (" + state_ +
                              "); nothing is outstanding");
    }
    const bool commit_as = as == kCommitted;
    if (decision_ == v1::OUTCOME_UNSPECIFIED) {
      if (one_phase_ && first_phase_started_) return ResolveOnePhase(now, *b, request, out);
      return Status::Conflict("transaction " + gtid_ + " is " + state_ +
                              " and not decided, so no commit or abort is outstanding; abort it "
                              "first (txctl abort), then resolve a branch whose abort stays "
                              "stuck");
    }
    if (!phase2_started_) {
      return Status::Unavailable("the decision of transaction " + gtid_ +
                                 " is not durable yet; retry in a moment");
    }
    const bool commit = decision_ == v1::OUTCOME_COMMIT;
    if (commit_as != commit) {
      return Status::Conflict("the decision of transaction " + gtid_ + " is " +
                              (commit ? "commit" : "abort") + ": branch \"" + b->def.branch_id() +
                              "\" can only be resolved as " + (commit ? "committed" : "aborted") +
                              " (its " + (commit ? "commit" : "abort") + " done by hand)");
    }
    if (b->done) {
      return Status::Conflict("branch \"" + b->def.branch_id() + "\" acknowledged its " + b->phase +
                              " already (" + b->state + "); nothing is outstanding");
    }
    const uint64_t seq = EmitResolved(now, *b, request, out);
    MarkResolved(*b, as);
    MaybeFinish(now, out);
    return seq;
  }

  void RetryNow(Timestamp now, Effects& out) override {
    for (BranchRuntime& b : branches_) {
      if (!b.in_flight && !b.done && b.retry_at && *b.retry_at > now) {
        b.retry_at = now;
        b.failures = 0;
      }
    }
    OnTimer(now, out);
  }

  void OnDurable(Timestamp now, uint64_t seq, Effects& out) override {
    assert(seq <= emitted_);
    if (seq <= durable_) return;
    durable_ = seq;
    if (end_seq_ != 0 && durable_ >= end_seq_) {
      finished_ = true;
      state_ = std::string(decision_ == v1::OUTCOME_COMMIT ? kCommitted : kAborted);
      return;
    }
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
    BranchRuntime* b = FindRuntime(sent.branch_id);
    if (b == nullptr || !b->in_flight || b->phase != sent.phase || b->attempts != sent.attempt ||
        finished_ || end_seq_ != 0) {
      return;  // stale: an earlier attempt or phase, or a reply from before a restart
    }
    b->in_flight = false;
    updated_at_ = now;
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
    if (reply.reply_class == ReplyClass::kRefused) {
      b->last_error = "participant bug, retried: 409 to " + b->phase + ": " + b->last_error;
    }
    if (reply.reply_class == ReplyClass::kInProgress) {
      b->retry_at = now + options_.retry.initial;
    } else {
      ++b->failures;
      b->retry_at = now + BackoffDelay(options_.retry, b->failures, rng_);
    }
    if (options_.log_failed_attempts && IsPowerOfTwo(b->attempts)) {
      v1::LogRecord r;
      FillOutcome(*b, r.mutable_branch_outcome());
      Emit(now, std::move(r), out);
    }
  }

  void OnTimer(Timestamp now, Effects& out) override {
    if (finished_ || end_seq_ != 0) return;
    AbortIfPastDeadline(now, out);
    SendDue(now, out);
  }

  std::optional<Timestamp> WakeAt() const override {
    if (finished_ || end_seq_ != 0) return std::nullopt;
    std::optional<Timestamp> at;
    auto consider = [&at](Timestamp t) {
      if (!at || t < *at) at = t;
    };
    if (decision_ == v1::OUTCOME_UNSPECIFIED && !one_phase_) {
      consider(deadline_ + milliseconds(1));  // strictly past it
    }
    // Retries wait while a decision is on its way to the log: none is sent before it is
    // durable, so waking for them would only wake again at once.
    if (!MaySend()) return at;
    for (const BranchRuntime& b : branches_) {
      if (!b.in_flight && !b.done && b.retry_at) consider(*b.retry_at);
    }
    return at;
  }

  v1::Transaction View() const override {
    v1::Transaction tx;
    tx.set_gtid(gtid_);
    tx.set_protocol(protocol_);
    tx.set_state(state_);
    *tx.mutable_created_at() = ToProto(created_at_);
    *tx.mutable_updated_at() = ToProto(updated_at_);
    *tx.mutable_deadline() = ToProto(deadline_);
    tx.set_reason(reason_);
    for (const BranchRuntime& b : branches_) {
      v1::Branch* out = tx.add_branches();
      out->set_branch_id(b.def.branch_id());
      out->set_url(b.def.url());
      out->set_state(b.state);
      out->set_attempts(b.attempts);
      out->set_last_error(b.last_error);
    }
    return tx;
  }

  const std::string& gtid() const override { return gtid_; }
  const std::string& state() const override { return state_; }
  const std::string& request_digest() const override { return digest_; }
  const std::string& traceparent() const override { return traceparent_; }
  const v1::Branch* FindBranch(const std::string& branch_id) const override {
    for (const BranchRuntime& b : branches_) {
      if (b.def.branch_id() == branch_id) return &b.def;
    }
    return nullptr;
  }
  bool decided() const override { return decision_seq_ <= durable_ && decision_ != 0; }
  bool finished() const override { return finished_; }
  uint64_t emitted() const override { return emitted_; }
  uint64_t durable() const override { return durable_; }

 private:
  bool decided_or_deciding() const { return decision_ != v1::OUTCOME_UNSPECIFIED; }

  BranchRuntime* FindRuntime(const std::string& id) {
    for (BranchRuntime& b : branches_) {
      if (b.def.branch_id() == id) return &b;
    }
    return nullptr;
  }

  void AddBranch(const v1::Branch& from, uint64_t seq) {
    BranchRuntime b;
    b.def.set_branch_id(from.branch_id());
    b.def.set_url(from.url());
    if (from.has_payload()) *b.def.mutable_payload() = from.payload();
    b.registered_seq = seq;
    branches_.push_back(std::move(b));
  }

  bool AllDone() const {
    return std::all_of(branches_.begin(), branches_.end(),
                       [](const BranchRuntime& b) { return b.done; });
  }

  uint64_t Emit(Timestamp now, v1::LogRecord record, Effects& out) {
    record.set_gtid(gtid_);
    *record.mutable_at() = ToProto(now);
    updated_at_ = now;
    out.append.push_back(std::move(record));
    return ++emitted_;
  }

  void FillOutcome(const BranchRuntime& b, v1::BranchOutcomeRecord* o) const {
    o->set_branch_id(b.def.branch_id());
    o->set_phase(b.phase);
    o->set_state(b.state);
    o->set_attempts(b.attempts);
    o->set_last_error(b.last_error);
  }

  // Begins driving `phase` on `b`: due at once, counters reset.
  void StartPhase(BranchRuntime& b, std::string_view phase) {
    b.phase = std::string(phase);
    b.attempts = 0;
    b.failures = 0;
    b.in_flight = false;
    b.done = false;
    b.retry_at = Timestamp::min();
  }

  // Whether any callback may be sent now: phase 2 has started (its decision is durable), or the
  // first phase runs undecided.
  bool MaySend() const {
    return phase2_started_ || (first_phase_started_ && decision_ == v1::OUTCOME_UNSPECIFIED);
  }

  // Sends every branch whose next attempt is due, if its phase may be sent now.
  void SendDue(Timestamp now, Effects& out) {
    if (finished_ || end_seq_ != 0 || !MaySend()) return;
    const bool first = first_phase_started_ && decision_ == v1::OUTCOME_UNSPECIFIED;
    for (BranchRuntime& b : branches_) {
      if (b.in_flight || b.done || !b.retry_at || *b.retry_at > now) continue;
      b.in_flight = true;
      b.retry_at.reset();
      ++b.attempts;
      out.send.push_back(Send{.branch_id = b.def.branch_id(),
                              .phase = b.phase,
                              .attempt = b.attempts,
                              .one_phase = first && one_phase_});
    }
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

  uint64_t EmitResolved(Timestamp now, const BranchRuntime& b, const v1::ResolvedRecord& request,
                        Effects& out) {
    v1::LogRecord r;
    v1::ResolvedRecord* o = r.mutable_resolved();
    o->set_branch_id(b.def.branch_id());
    o->set_as(request.as());
    o->set_operator_(request.operator_());
    o->set_reason(request.reason());
    o->set_phase(b.phase);
    o->set_state(request.as());
    o->set_attempts(b.attempts);
    o->set_last_error(b.last_error);
    return Emit(now, std::move(r), out);
  }

  // The branch acknowledged its phase: replies to an attempt still in flight are stale now.
  static void MarkResolved(BranchRuntime& b, const std::string& state) {
    b.state = state;
    b.done = true;
    b.in_flight = false;
    b.failures = 0;
    b.retry_at.reset();
  }

  // Makes the outcome durable; phase 2 starts in OnDurable once it is.
  void Decide(Timestamp now, v1::Outcome outcome, std::string reason, Effects& out) {
    assert(decision_ == v1::OUTCOME_UNSPECIFIED);
    decision_ = outcome;
    reason_ = std::move(reason);
    const bool commit = outcome == v1::OUTCOME_COMMIT;
    state_ = commit ? kCommitting : kAborting;
    v1::LogRecord r;
    r.set_tx_state(state_);
    r.mutable_decision()->set_outcome(outcome);
    r.mutable_decision()->set_reason(reason_);
    decision_seq_ = Emit(now, std::move(r), out);
    for (const BranchRuntime& b : branches_) {
      if (b.attempts == 0 && b.state == "registered") continue;  // nothing to tell yet
      v1::LogRecord o;
      FillOutcome(b, o.mutable_branch_outcome());
      Emit(now, std::move(o), out);
    }
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

  // Once every branch acknowledged the decision, emits the outcomes and the `end` record.
  void MaybeFinish(Timestamp now, Effects& out) {
    if (end_seq_ != 0 || !phase2_started_ || !AllDone()) return;
    const bool commit = decision_ == v1::OUTCOME_COMMIT;
    for (const BranchRuntime& b : branches_) {
      v1::LogRecord o;
      FillOutcome(b, o.mutable_branch_outcome());
      Emit(now, std::move(o), out);
    }
    const std::string final_state(commit ? kCommitted : kAborted);
    v1::LogRecord r;
    r.set_tx_state(final_state);
    r.mutable_end()->set_final_state(final_state);
    end_seq_ = Emit(now, std::move(r), out);
    // View() shows the final state only once the end is durable (OnDurable).
  }

  // Past the deadline an undecided transaction aborts, whichever event notices it first.
  // A one-phase commit has no deadline: only its participant knows the outcome.
  void AbortIfPastDeadline(Timestamp now, Effects& out) {
    if (decision_ == v1::OUTCOME_UNSPECIFIED && !one_phase_ && now > deadline_) {
      Decide(now, v1::OUTCOME_ABORT, DeadlineReason(), out);
    }
  }

  std::string DeadlineReason() const {
    std::string reason = "deadline passed while " + state_;
    for (const BranchRuntime& b : branches_) {
      if (b.done || b.phase.empty()) continue;  // tcc branches and unsent prepares: no reply due
      reason += "; branch \"" + b.def.branch_id() + "\" had not answered " + b.phase;
      if (!b.last_error.empty()) reason += " (last error: " + b.last_error + ")";
      break;
    }
    if (tcc_) reason += "; the application did not commit in time";
    return reason;
  }

  const EngineOptions options_;
  std::mt19937_64 rng_;

  std::string gtid_;
  std::string protocol_;
  bool tcc_ = false;
  bool one_phase_ = false;
  std::string state_;
  std::string reason_;
  std::string traceparent_;
  std::string digest_;
  Timestamp created_at_{};
  Timestamp updated_at_{};
  Timestamp deadline_{};
  std::vector<BranchRuntime> branches_;

  v1::Outcome decision_ = v1::OUTCOME_UNSPECIFIED;
  uint64_t emitted_ = 0;
  uint64_t durable_ = 0;
  uint64_t begin_seq_ = 0;     // 0 after recovery: durable already
  uint64_t decision_seq_ = 0;  // 0: no decision emitted by this engine (or durable before it)
  uint64_t end_seq_ = 0;
  bool first_phase_started_ = false;
  bool phase2_started_ = false;
  bool finished_ = false;
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
