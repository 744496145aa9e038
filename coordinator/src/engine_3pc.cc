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
//   phase 2      commit (or abort) to every branch until each acknowledges, as in 2pc.
//
// Recovery is Skeen's termination rule for the coordinator: a durable pre_commit record means a
// branch may be pre-committed, so commit; without one no branch can be, so abort.
#include "engine_3pc.h"

#include <algorithm>
#include <cassert>
#include <string>
#include <string_view>
#include <vector>

namespace txcoord::coordinator::internal {
namespace {

using std::chrono::milliseconds;

constexpr std::string_view kCommitting = "committing";
constexpr std::string_view kAborting = "aborting";
constexpr std::string_view kCommitted = "committed";
constexpr std::string_view kAborted = "aborted";

constexpr std::string_view kCanCommit = "can-commit";
constexpr std::string_view kPreCommit = "pre-commit";
constexpr std::string_view kCommit = "commit";
constexpr std::string_view kAbort = "abort";

// Branch states of the public record, besides "registered", "committed" and "aborted".
constexpr std::string_view kVotedYes = "voted-yes";
constexpr std::string_view kVotedNo = "failed";
constexpr std::string_view kPreCommitted = "pre-committed";
constexpr std::string_view kPreCommitRefused = "pre-commit-refused";

bool IsPowerOfTwo(int n) { return n > 0 && (n & (n - 1)) == 0; }

std::string Describe(const CallbackReply& reply) {
  return reply.detail.empty()
             ? (reply.http_status != 0 ? "HTTP " + std::to_string(reply.http_status)
                                       : std::string("no reply"))
             : reply.detail;
}

// Where the transaction is. Decided covers committing, aborting and the end.
enum class Stage { kCanCommit, kPreCommit, kDecided };

struct BranchRuntime {
  v1::Branch def;  // branch_id, url, payload as given
  std::string state = "registered";
  std::string phase;  // the phase being driven; empty: none yet
  int attempts = 0;   // attempts of `phase`
  int failures = 0;   // transient failures in a row in `phase`: the backoff exponent
  std::string last_error;
  bool in_flight = false;
  bool done = false;  // `phase` answered for good: a vote, a pre-commit reply, an acknowledgement
  std::optional<Timestamp> retry_at;
};

class ThreePhaseEngine final : public Engine {
 public:
  ThreePhaseEngine(const EngineOptions& options, uint64_t seed) : options_(options), rng_(seed) {}

  void Begin(Timestamp now, const BeginArgs& args, Effects& out) {
    const v1::BeginRequest& req = args.request;
    gtid_ = req.gtid();
    traceparent_ = args.traceparent;
    digest_ = args.request_digest;
    created_at_ = updated_at_ = now;
    timeout_ = milliseconds(args.timeout_ms);
    deadline_ = now + timeout_;
    for (const v1::Branch& b : req.branches()) AddBranch(b);
    state_ = std::string(kCanCommitting);

    v1::LogRecord r;
    r.set_tx_state(state_);
    v1::BeginRecord* begin = r.mutable_begin();
    begin->set_protocol("3pc");
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
    begin_seq_ = Emit(now, std::move(r), out);
  }

  Status Recover(Timestamp now, const LoggedTransaction& logged, Effects& out) {
    const TransactionSummary& s = logged.summary;
    gtid_ = s.gtid;
    if (s.protocol != "3pc") {
      return Status::InvalidArgument("protocol \"" + s.protocol + "\" is not run by the 3pc engine");
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
          deadline_ = FromProto(b.deadline());
          traceparent_ = b.traceparent();
          digest_ = b.request_digest();
          for (const v1::Branch& br : b.branches()) AddBranch(br);
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
        case v1::LogRecord::kBranchOutcome: {
          BranchRuntime* b = FindRuntime(r.branch_outcome().branch_id());
          if (b == nullptr) return Status::Corruption(gtid_ + ": outcome of an unknown branch");
          b->state = r.branch_outcome().state();
          b->attempts = r.branch_outcome().attempts();
          b->last_error = r.branch_outcome().last_error();
          break;
        }
        case v1::LogRecord::kResolved: {
          // An operator's resolve: the branch acknowledged the decision's phase, by hand.
          BranchRuntime* b = FindRuntime(r.resolved().branch_id());
          if (b == nullptr) return Status::Corruption(gtid_ + ": resolve of an unknown branch");
          if (decision_ == v1::OUTCOME_UNSPECIFIED) {
            return Status::Corruption(gtid_ + ": a branch resolved before the decision");
          }
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
    if (decision_ == v1::OUTCOME_COMMIT) return decision_seq_;
    if (decision_ == v1::OUTCOME_ABORT) {
      return Status::Conflict("transaction " + gtid_ + " is " + state_ + " (" + reason_ +
                              "); it cannot commit");
    }
    return Status::Conflict(
        "a 3pc transaction commits by itself once every branch voted yes and acknowledged "
        "pre-commit; " +
        gtid_ + " is " + state_);
  }

  Result<uint64_t> Abort(Timestamp now, std::string reason, Effects& out) override {
    if (decision_ == v1::OUTCOME_ABORT) return decision_seq_;
    if (decision_ == v1::OUTCOME_COMMIT) {
      return Status::Conflict("transaction " + gtid_ + " is " + state_ +
                              "; the commit decision is durable, it can no longer abort");
    }
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
    BranchRuntime* b = FindRuntime(request.branch_id());
    if (b == nullptr) {
      return Status::NotFound("transaction " + gtid_ + " has no branch \"" +
                              request.branch_id() + "\"");
    }
    const std::string& as = request.as();
    if (as != kCommitted && as != kAborted) {
      return Status::InvalidArgument("resolve as \"" + as + "\": use committed or aborted");
    }
    if (finished_ || end_seq_ != 0) {
      return Status::Conflict("transaction " + gtid_ + " is finished (" + state_ +
                              "); nothing is outstanding");
    }
    if (decision_ == v1::OUTCOME_UNSPECIFIED) {
      return Status::Conflict("transaction " + gtid_ + " is " + state_ +
                              " and not decided, so no commit or abort is outstanding");
    }
    if (!phase2_started_) {
      return Status::Unavailable("the decision of transaction " + gtid_ +
                                 " is not durable yet; retry in a moment");
    }
    const bool commit = decision_ == v1::OUTCOME_COMMIT;
    if ((as == kCommitted) != commit) {
      return Status::Conflict("the decision of transaction " + gtid_ + " is " +
                              (commit ? "commit" : "abort") + ": branch \"" + b->def.branch_id() +
                              "\" can only be resolved as " + (commit ? "committed" : "aborted"));
    }
    if (b->done) {
      return Status::Conflict("branch \"" + b->def.branch_id() + "\" acknowledged its " +
                              b->phase + " already (" + b->state + "); nothing is outstanding");
    }
    v1::LogRecord r;
    v1::ResolvedRecord* o = r.mutable_resolved();
    o->set_branch_id(b->def.branch_id());
    o->set_as(as);
    o->set_operator_(request.operator_());
    o->set_reason(request.reason());
    o->set_phase(b->phase);
    o->set_state(as);
    o->set_attempts(b->attempts);
    o->set_last_error(b->last_error);
    const uint64_t seq = Emit(now, std::move(r), out);
    b->state = as;
    b->done = true;
    b->in_flight = false;  // a reply to an attempt still in flight is stale now
    b->failures = 0;
    b->retry_at.reset();
    MaybeFinish(now, out);
    return seq;
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
    BranchRuntime* b = FindRuntime(sent.branch_id);
    if (b == nullptr || !b->in_flight || b->phase != sent.phase || b->attempts != sent.attempt ||
        finished_ || end_seq_ != 0) {
      return;  // stale: an earlier attempt or phase, or a reply from before a restart
    }
    b->in_flight = false;
    updated_at_ = now;
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
    CheckDeadlines(now, out);
    SendDue(now, out);
  }

  std::optional<Timestamp> WakeAt() const override {
    if (finished_ || end_seq_ != 0) return std::nullopt;
    std::optional<Timestamp> at;
    auto consider = [&at](Timestamp t) {
      if (!at || t < *at) at = t;
    };
    if (stage_ == Stage::kCanCommit) consider(deadline_ + milliseconds(1));  // strictly past it
    if (stage_ == Stage::kPreCommit && pre_commit_started_) {
      consider(pre_commit_deadline_ + milliseconds(1));
    }
    // Retries wait while a record they depend on is on its way to the log.
    if (!MaySend()) return at;
    for (const BranchRuntime& b : branches_) {
      if (!b.in_flight && !b.done && b.retry_at) consider(*b.retry_at);
    }
    return at;
  }

  v1::Transaction View() const override {
    v1::Transaction tx;
    tx.set_gtid(gtid_);
    tx.set_protocol("3pc");
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
  bool decided() const override {
    return decision_ != v1::OUTCOME_UNSPECIFIED && decision_seq_ <= durable_;
  }
  bool finished() const override { return finished_; }
  uint64_t emitted() const override { return emitted_; }
  uint64_t durable() const override { return durable_; }

 private:
  BranchRuntime* FindRuntime(const std::string& id) {
    for (BranchRuntime& b : branches_) {
      if (b.def.branch_id() == id) return &b;
    }
    return nullptr;
  }

  void AddBranch(const v1::Branch& from) {
    BranchRuntime b;
    b.def.set_branch_id(from.branch_id());
    b.def.set_url(from.url());
    if (from.has_payload()) *b.def.mutable_payload() = from.payload();
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

  void StartPhase(BranchRuntime& b, std::string_view phase) {
    b.phase = std::string(phase);
    b.attempts = 0;
    b.failures = 0;
    b.in_flight = false;
    b.done = false;
    b.retry_at = Timestamp::min();
  }

  // Phase 2 to every branch that has not acknowledged the outcome (after a restart some have).
  void StartPhase2(bool commit) {
    phase2_started_ = true;
    const std::string_view acked = commit ? kCommitted : kAborted;
    for (BranchRuntime& b : branches_) {
      const bool done = b.state == acked;
      StartPhase(b, commit ? kCommit : kAbort);
      b.done = done;
    }
  }

  // Whether a callback may be sent now: the records its phase depends on are durable and the
  // phase is still the current one.
  bool MaySend() const {
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

  void SendDue(Timestamp now, Effects& out) {
    if (finished_ || end_seq_ != 0 || !MaySend()) return;
    for (BranchRuntime& b : branches_) {
      if (b.in_flight || b.done || !b.retry_at || *b.retry_at > now) continue;
      b.in_flight = true;
      b.retry_at.reset();
      ++b.attempts;
      out.send.push_back(Send{.branch_id = b.def.branch_id(), .phase = b.phase, .attempt = b.attempts});
    }
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
    for (const BranchRuntime& b : branches_) {
      v1::LogRecord o;
      FillOutcome(b, o.mutable_branch_outcome());
      Emit(now, std::move(o), out);
    }
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
    assert(decision_ == v1::OUTCOME_UNSPECIFIED);
    // Never abort once a branch may be pre-committed (the log refuses it too).
    assert(outcome == v1::OUTCOME_COMMIT || stage_ == Stage::kCanCommit);
    decision_ = outcome;
    stage_ = Stage::kDecided;
    reason_ = std::move(reason);
    state_ = std::string(outcome == v1::OUTCOME_COMMIT ? kCommitting : kAborting);
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
  }

  // Once every branch acknowledged the decision, emits the outcomes and the `end` record.
  void MaybeFinish(Timestamp now, Effects& out) {
    if (end_seq_ != 0 || !phase2_started_ || !AllDone()) return;
    for (const BranchRuntime& b : branches_) {
      v1::LogRecord o;
      FillOutcome(b, o.mutable_branch_outcome());
      Emit(now, std::move(o), out);
    }
    const std::string final_state(decision_ == v1::OUTCOME_COMMIT ? kCommitted : kAborted);
    v1::LogRecord r;
    r.set_tx_state(final_state);
    r.mutable_end()->set_final_state(final_state);
    end_seq_ = Emit(now, std::move(r), out);
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

  std::string DeadlineReason() const {
    std::string reason = "deadline passed while " + state_;
    for (const BranchRuntime& b : branches_) {
      if (b.done || b.phase.empty()) continue;  // voted, or no can-commit sent yet
      reason += "; branch \"" + b.def.branch_id() + "\" had not answered " + b.phase;
      if (!b.last_error.empty()) reason += " (last error: " + b.last_error + ")";
      break;
    }
    return reason;
  }

  const EngineOptions options_;
  std::mt19937_64 rng_;

  std::string gtid_;
  std::string state_;
  std::string reason_;
  std::string traceparent_;
  std::string digest_;
  Timestamp created_at_{};
  Timestamp updated_at_{};
  milliseconds timeout_{0};
  Timestamp deadline_{};             // of can-commit
  Timestamp pre_commit_deadline_{};  // of pre-commit; set with the pre_commit record
  std::vector<BranchRuntime> branches_;

  Stage stage_ = Stage::kCanCommit;
  v1::Outcome decision_ = v1::OUTCOME_UNSPECIFIED;
  uint64_t emitted_ = 0;
  uint64_t durable_ = 0;
  uint64_t begin_seq_ = 0;       // 0 after recovery: durable already
  uint64_t pre_commit_seq_ = 0;  // 0: not emitted by this engine
  uint64_t decision_seq_ = 0;    // 0: not emitted by this engine (or durable before it)
  uint64_t end_seq_ = 0;
  bool can_commit_started_ = false;
  bool pre_commit_started_ = false;
  bool phase2_started_ = false;
  bool finished_ = false;
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
                                                        const EngineOptions& options,
                                                        uint64_t seed, Effects& out) {
  auto engine = std::make_unique<ThreePhaseEngine>(options, seed);
  TXCOORD_RETURN_IF_ERROR(engine->Recover(now, logged, out));
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace txcoord::coordinator::internal
