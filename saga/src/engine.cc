// The saga engine (engine.h, docs/saga.md).
#include "txcoord/saga/engine.h"

#include <algorithm>
#include <cassert>
#include <limits>
#include <string_view>

namespace txcoord::saga {
namespace {

using std::chrono::milliseconds;

constexpr std::string_view kRunning = "running";
constexpr std::string_view kCompensating = "compensating";
constexpr std::string_view kCommitted = "committed";
constexpr std::string_view kAborted = "aborted";

// Step states.
constexpr std::string_view kPending = "pending";
constexpr std::string_view kStepRunning = "running";
constexpr std::string_view kSucceeded = "succeeded";
constexpr std::string_view kFailed = "failed";
constexpr std::string_view kStepCompensating = "compensating";
constexpr std::string_view kCompensated = "compensated";

bool IsStepState(std::string_view s) {
  return s == kPending || s == kStepRunning || s == kSucceeded || s == kFailed ||
         s == kStepCompensating || s == kCompensated;
}

bool IsPowerOfTwo(int n) { return n > 0 && (n & (n - 1)) == 0; }

Timestamp FromProtoTime(const google::protobuf::Timestamp& t) {
  constexpr int64_t kMaxSeconds = std::numeric_limits<int64_t>::max() / 1000 - 1;
  const int64_t seconds = std::clamp<int64_t>(t.seconds(), -kMaxSeconds, kMaxSeconds);
  return Timestamp(milliseconds(seconds * 1000 + t.nanos() / 1'000'000));
}

google::protobuf::Timestamp ToProtoTime(Timestamp t) {
  const int64_t ms = t.time_since_epoch().count();
  int64_t seconds = ms / 1000;
  int64_t rem = ms % 1000;
  if (rem < 0) {
    rem += 1000;
    seconds -= 1;
  }
  google::protobuf::Timestamp out;
  out.set_seconds(seconds);
  out.set_nanos(static_cast<int32_t>(rem * 1'000'000));
  return out;
}

// The steps' URLs were checked against the allow-list when the saga was begun; recovery must
// not refuse a logged saga because the operator changed --allow-url since.
const UrlPolicy& AnyHttpUrl() {
  static const UrlPolicy policy{{"http://", "https://"}};
  return policy;
}

std::string Quoted(const std::string& step_id) { return "step \"" + step_id + "\""; }

}  // namespace

Status SagaEngine::Init(const google::protobuf::RepeatedPtrField<v1::Step>& steps,
                        const std::optional<SagaPlan>& plan) {
  if (plan.has_value()) {
    plan_ = *plan;
  } else {
    SagaValidation validation = ValidateSaga(steps, AnyHttpUrl());
    if (!validation.ok()) return validation.status;
    plan_ = std::move(validation.plan);
  }
  steps_.clear();
  steps_.reserve(steps.size());
  for (const v1::Step& from : steps) {
    StepRuntime s;
    s.def = from;
    s.def.clear_state();
    s.def.clear_attempts();
    s.def.clear_last_error();
    steps_.push_back(std::move(s));
  }
  return Status::Ok();
}

Result<std::unique_ptr<SagaEngine>> SagaEngine::Begin(Timestamp now, const SagaBegin& begin,
                                                      const SagaOptions& options, uint64_t seed,
                                                      Effects& out) {
  std::unique_ptr<SagaEngine> e(new SagaEngine(options, seed));
  const v1::BeginRequest& req = begin.request;
  TXCOORD_RETURN_IF_ERROR(e->Init(req.steps(), begin.plan));
  e->gtid_ = req.gtid();
  e->traceparent_ = begin.traceparent;
  e->digest_ = begin.request_digest;
  e->created_at_ = e->updated_at_ = now;
  e->deadline_ = now + milliseconds(begin.timeout_ms);
  e->state_ = std::string(kRunning);

  v1::LogRecord r;
  r.set_tx_state(e->state_);
  v1::BeginRecord* b = r.mutable_begin();
  b->set_protocol("saga");
  b->set_timeout_ms(begin.timeout_ms);
  *b->mutable_deadline() = ToProtoTime(e->deadline_);
  for (const StepRuntime& s : e->steps_) *b->add_steps() = s.def;
  b->set_traceparent(e->traceparent_);
  b->set_request_digest(e->digest_);
  e->Emit(now, std::move(r), out);
  // The first ready steps' `running` outcomes go with the begin: one append.
  e->StartReadyActions(now, out);
  return e;
}

Result<std::unique_ptr<SagaEngine>> SagaEngine::Recover(Timestamp now,
                                                        const std::vector<v1::LogRecord>& records,
                                                        const SagaOptions& options, uint64_t seed,
                                                        Effects& out) {
  std::unique_ptr<SagaEngine> e(new SagaEngine(options, seed));
  bool began = false;
  std::string final_state;
  for (const v1::LogRecord& r : records) {
    const std::string where = (r.gtid().empty() ? std::string("saga") : r.gtid()) + ": ";
    if (!final_state.empty()) return Status::Corruption(where + "a record after the end");
    if (began && r.gtid() != e->gtid_) {
      return Status::Corruption(where + "a record of another transaction than " + e->gtid_);
    }
    if (began) e->updated_at_ = std::max(e->updated_at_, FromProtoTime(r.at()));
    switch (r.body_case()) {
      case v1::LogRecord::kBegin: {
        if (began) return Status::Corruption(where + "two begin records");
        began = true;
        const v1::BeginRecord& b = r.begin();
        if (b.protocol() != "saga") {
          return Status::InvalidArgument(where + "protocol \"" + b.protocol() + "\" is not a saga");
        }
        e->gtid_ = r.gtid();
        e->created_at_ = e->updated_at_ = FromProtoTime(r.at());
        e->deadline_ = FromProtoTime(b.deadline());
        e->traceparent_ = b.traceparent();
        e->digest_ = b.request_digest();
        if (b.branches_size() > 0) return Status::Corruption(where + "a saga with branches");
        if (Status s = e->Init(b.steps()); !s.ok()) {
          return Status::Corruption(where + "the logged steps are not a saga: " + s.message());
        }
        break;
      }
      case v1::LogRecord::kStepOutcome: {
        if (!began) return Status::Corruption(where + "a step outcome before the begin");
        const v1::StepOutcomeRecord& o = r.step_outcome();
        const int i = e->FindStep(o.step_id());
        if (i < 0) return Status::Corruption(where + "outcome of an unknown step " + o.step_id());
        if (!IsStepState(o.state())) {
          return Status::Corruption(where + Quoted(o.step_id()) + " has state \"" + o.state() +
                                    "\"");
        }
        StepRuntime& s = e->steps_[i];
        if (s.state == kCompensated && o.state() != kCompensated) {
          return Status::Corruption(where + Quoted(o.step_id()) + " left compensated");
        }
        s.state = o.state();
        s.phase = o.phase();
        s.attempts = std::max(0, o.attempts());
        s.last_error = o.last_error();
        break;
      }
      case v1::LogRecord::kDecision:
        if (!began) return Status::Corruption(where + "a decision before the begin");
        if (e->decision_ != v1::OUTCOME_UNSPECIFIED && e->decision_ != r.decision().outcome()) {
          return Status::Corruption(where + "the decision changed");
        }
        e->decision_ = r.decision().outcome();
        if (e->decision_ != v1::OUTCOME_COMMIT && e->decision_ != v1::OUTCOME_ABORT) {
          return Status::Corruption(where + "a decision without an outcome");
        }
        e->reason_ = r.decision().reason();
        break;
      case v1::LogRecord::kResolved: {
        // An operator's resolve: the step takes the state it gives, as a 2xx reply would.
        if (!began) return Status::Corruption(where + "a resolve before the begin");
        const v1::ResolvedRecord& o = r.resolved();
        const int i = e->FindStep(o.branch_id());
        if (i < 0) return Status::Corruption(where + "resolve of an unknown step " + o.branch_id());
        if (o.state() != kSucceeded && o.state() != kCompensated) {
          return Status::Corruption(where + Quoted(o.branch_id()) + " resolved to state \"" +
                                    o.state() + "\"");
        }
        StepRuntime& s = e->steps_[i];
        if (s.state == kCompensated && o.state() != kCompensated) {
          return Status::Corruption(where + Quoted(o.branch_id()) + " left compensated");
        }
        s.state = o.state();
        s.phase = o.phase();
        s.attempts = std::max(0, o.attempts());
        s.last_error = o.last_error();
        break;
      }
      case v1::LogRecord::kEnd:
        if (!began) return Status::Corruption(where + "an end before the begin");
        final_state = r.end().final_state();
        break;
      case v1::LogRecord::kBranchRegistered:
      case v1::LogRecord::kBranchOutcome:
      case v1::LogRecord::kPreCommit:
      case v1::LogRecord::BODY_NOT_SET:
        return Status::Corruption(where + "a record of kind " + std::to_string(r.body_case()) +
                                  " in a saga");
    }
  }
  if (!began) return Status::Corruption("saga: no begin record");

  if (!final_state.empty()) {
    e->state_ = final_state;
    e->finished_ = true;
    return e;
  }
  for (StepRuntime& s : e->steps_) {
    s.in_flight = false;
    s.started = false;
    s.retry_at.reset();
    s.ready_seq = 0;
  }

  if (e->decision_ == v1::OUTCOME_COMMIT) {
    for (const StepRuntime& s : e->steps_) {
      if (s.state != kSucceeded) {
        return Status::Corruption(e->gtid_ + ": decided commit with " + Quoted(s.def.step_id()) +
                                  " " + s.state);
      }
    }
    e->state_ = std::string(kRunning);
    e->MaybeFinish(now, out);  // the end, which must follow the decision
    return e;
  }

  if (e->decision_ == v1::OUTCOME_ABORT) {
    // Backward: compensated stays; a compensating step's compensate is sent again.
    e->state_ = std::string(kCompensating);
    for (StepRuntime& s : e->steps_) {
      if (s.state == kStepCompensating) {
        s.phase = kPhaseCompensate;
        s.started = true;
        s.retry_at = Timestamp::min();
      } else if (s.state == kCompensated) {
        s.phase = kPhaseCompensate;
      } else {
        s.phase.clear();  // compensation not started: its attempts count from 0
        s.attempts = 0;
      }
    }
    e->StartReadyCompensations(now, out);
    e->MaybeFinish(now, out);
    e->SendDue(now, out);
    return e;
  }

  // Forward.
  e->state_ = std::string(kRunning);
  int failed = -1;
  for (int i = 0; i < e->step_count(); ++i) {
    StepRuntime& s = e->steps_[i];
    if (s.state == kStepCompensating || s.state == kCompensated) {
      return Status::Corruption(e->gtid_ + ": " + Quoted(s.def.step_id()) + " is " + s.state +
                                " without an abort decision");
    }
    if (s.state == kStepRunning) {
      s.phase = kPhaseAction;
      s.started = true;
      s.retry_at = Timestamp::min();
    }
    if (s.state == kFailed && failed < 0) failed = i;
  }
  if (failed >= 0) {
    // Cannot happen with this engine (a failed step is logged with the decision), but a failed
    // step means the saga must turn.
    const StepRuntime& s = e->steps_[failed];
    e->Turn(now, Quoted(s.def.step_id()) + " failed action: " + s.last_error, -1, out);
    return e;
  }
  e->TurnIfPastDeadline(now, out);
  if (e->decision_ == v1::OUTCOME_UNSPECIFIED) {
    e->StartReadyActions(now, out);
    e->MaybeFinish(now, out);
    e->SendDue(now, out);
  }
  return e;
}

int SagaEngine::FindStep(const std::string& step_id) const {
  for (int i = 0; i < step_count(); ++i) {
    if (steps_[i].def.step_id() == step_id) return i;
  }
  return -1;
}

milliseconds SagaEngine::CallbackTimeout(int i) const {
  const int32_t ms = steps_[i].def.timeout_ms();
  return ms > 0 ? milliseconds(ms) : options_.callback_timeout;
}

Result<uint64_t> SagaEngine::Abort(Timestamp now, std::string reason, Effects& out) {
  if (decision_ == v1::OUTCOME_ABORT) return decision_seq_;
  if (decision_ == v1::OUTCOME_COMMIT) {
    return Status::Conflict("saga " + gtid_ +
                            " completed every step and is committed; it can no longer abort");
  }
  Turn(now, reason.empty() ? "aborted by the application" : std::move(reason), -1, out);
  return decision_seq_;
}

Result<uint64_t> SagaEngine::Commit(Timestamp /*now*/, Effects& /*out*/) {
  if (decision_ == v1::OUTCOME_COMMIT) return decision_seq_;
  if (decision_ == v1::OUTCOME_ABORT) {
    return Status::Conflict("saga " + gtid_ + " is " + state_ + " (" + reason_ +
                            "); it cannot commit");
  }
  return Status::Conflict("a saga commits by itself once every step has succeeded; " + gtid_ +
                          " is " + state_);
}

Result<uint64_t> SagaEngine::Resolve(Timestamp now, const std::string& step_id,
                                     const std::string& as, const std::string& operator_name,
                                     const std::string& reason, Effects& out) {
  const int i = FindStep(step_id);
  if (i < 0) return Status::NotFound("saga " + gtid_ + " has no step \"" + step_id + "\"");
  if (finished_ || ending_) {
    return Status::Conflict("saga " + gtid_ + " is finished (" + state_ +
                            "); nothing is outstanding");
  }
  StepRuntime& s = steps_[i];
  const bool committed = as == "committed";
  if (!committed && as != "aborted") {
    return Status::InvalidArgument("resolve as \"" + as + "\": use committed or aborted");
  }
  if (committed) {
    if (backward()) {
      return Status::Conflict("saga " + gtid_ + " is compensating (" + reason_ +
                              "): its actions are being undone, so " + Quoted(step_id) +
                              " can only be resolved as aborted, once its compensation was done "
                              "by hand");
    }
    if (s.state != kStepRunning) {
      return Status::Conflict(Quoted(step_id) + " is " + s.state +
                              ": only a step whose action is outstanding (running) can be "
                              "resolved as committed");
    }
  } else {
    if (!backward()) {
      return Status::Conflict("saga " + gtid_ + " is " + state_ +
                              " and not decided: abort it first (its compensations start), then "
                              "resolve a compensation that stays stuck");
    }
    if (s.state == kCompensated) {
      return Status::Conflict(Quoted(step_id) + " is compensated already");
    }
    if (s.state != kStepCompensating) {
      return Status::Conflict(Quoted(step_id) + " is " + s.state +
                              ": its compensation has not started, because the steps that depend "
                              "on it compensate first; resolve those");
    }
  }
  v1::LogRecord r;
  v1::ResolvedRecord* o = r.mutable_resolved();
  o->set_branch_id(step_id);
  o->set_as(as);
  o->set_operator_(operator_name);
  o->set_reason(reason);
  o->set_phase(committed ? kPhaseAction : kPhaseCompensate);
  o->set_state(std::string(committed ? kSucceeded : kCompensated));
  o->set_attempts(s.attempts);
  o->set_last_error(s.last_error);
  s.state = o->state();
  s.phase = o->phase();
  const uint64_t seq = Emit(now, std::move(r), out);
  s.started = false;
  s.in_flight = false;  // a reply to the attempt in flight is stale from here on
  s.failures = 0;
  s.retry_at.reset();
  if (committed) {
    StartReadyActions(now, out);
  } else {
    StartReadyCompensations(now, out);
  }
  MaybeFinish(now, out);
  SendDue(now, out);
  return seq;
}

void SagaEngine::RetryNow(Timestamp now, Effects& out) {
  for (StepRuntime& s : steps_) {
    if (s.started && !s.in_flight && s.retry_at && *s.retry_at > now) {
      s.retry_at = now;
      s.failures = 0;
    }
  }
  OnTimer(now, out);
}

void SagaEngine::OnDurable(Timestamp now, uint64_t seq, Effects& out) {
  assert(seq <= emitted_);
  if (seq <= durable_) return;
  durable_ = seq;
  if (ending_) {
    if (durable_ >= end_seq_) {
      finished_ = true;
      state_ = std::string(decision_ == v1::OUTCOME_COMMIT ? kCommitted : kAborted);
    }
    return;
  }
  TurnIfPastDeadline(now, out);  // no action goes out past the deadline
  SendDue(now, out);
}

void SagaEngine::OnReply(Timestamp now, const Send& sent, StepReply reply,
                         const std::string& detail, Effects& out) {
  if (finished_ || ending_ || sent.step < 0 || sent.step >= step_count()) return;
  StepRuntime& s = steps_[sent.step];
  if (!s.in_flight || s.phase != sent.phase || s.attempts != sent.attempt ||
      s.def.step_id() != sent.step_id) {
    return;  // stale: another attempt or phase, or sent before the saga turned
  }
  s.in_flight = false;
  updated_at_ = now;
  const bool action = s.phase == kPhaseAction;
  if (action) {
    assert(!backward() && s.state == kStepRunning);
    // An action's reply past the deadline is too late: the saga turns, and compensates it.
    TurnIfPastDeadline(now, out);
    if (backward()) return;
  } else {
    assert(backward() && s.state == kStepCompensating);
  }

  if (reply == StepReply::kDone) {
    s.started = false;
    s.failures = 0;
    s.retry_at.reset();
    s.state = std::string(action ? kSucceeded : kCompensated);
    EmitOutcome(now, s, out);
    if (action) {
      StartReadyActions(now, out);
    } else {
      StartReadyCompensations(now, out);
    }
    MaybeFinish(now, out);
    SendDue(now, out);
    return;
  }

  s.last_error = detail.empty() ? "no reply" : detail;
  if (action && reply == StepReply::kRefused) {
    s.state = std::string(kFailed);
    s.started = false;
    Turn(now, Quoted(s.def.step_id()) + " refused action: " + s.last_error, sent.step, out);
    return;
  }
  if (!action && reply == StepReply::kRefused) {
    s.last_error = "participant bug, retried: 409 to compensate: " + s.last_error;
  }
  const int max_attempts = s.def.retry().max_attempts();
  if (action && max_attempts > 0 && s.attempts >= max_attempts) {
    s.state = std::string(kFailed);
    s.started = false;
    Turn(now,
         Quoted(s.def.step_id()) + " failed action after " + std::to_string(s.attempts) +
             " attempts: " + s.last_error,
         sent.step, out);
    return;
  }
  if (reply == StepReply::kInProgress) {
    s.retry_at = now + Initial(s);
  } else {
    ++s.failures;
    s.retry_at = now + Backoff(s);
  }
  if (options_.log_failed_attempts && IsPowerOfTwo(s.attempts)) EmitOutcome(now, s, out);
}

void SagaEngine::OnTimer(Timestamp now, Effects& out) {
  if (finished_ || ending_) return;
  TurnIfPastDeadline(now, out);
  SendDue(now, out);
}

std::optional<Timestamp> SagaEngine::WakeAt() const {
  if (finished_ || ending_) return std::nullopt;
  std::optional<Timestamp> at;
  auto consider = [&at](Timestamp t) {
    if (!at || t < *at) at = t;
  };
  if (decision_ == v1::OUTCOME_UNSPECIFIED) consider(deadline_ + milliseconds(1));
  if (durable_ < emitted_) return at;  // sends resume from OnDurable
  for (const StepRuntime& s : steps_) {
    // A step waiting for its record to be durable is sent from OnDurable, not a timer.
    if (s.started && !s.in_flight && s.retry_at && durable_ >= s.ready_seq) consider(*s.retry_at);
  }
  return at;
}

v1::Transaction SagaEngine::View() const {
  v1::Transaction tx;
  tx.set_gtid(gtid_);
  tx.set_protocol("saga");
  tx.set_state(state_);
  *tx.mutable_created_at() = ToProtoTime(created_at_);
  *tx.mutable_updated_at() = ToProtoTime(updated_at_);
  *tx.mutable_deadline() = ToProtoTime(deadline_);
  tx.set_reason(reason_);
  for (const StepRuntime& s : steps_) {
    v1::Step* st = tx.add_steps();
    st->set_step_id(s.def.step_id());
    st->set_action(s.def.action());
    st->set_compensate(s.def.compensate());
    *st->mutable_depends_on() = s.def.depends_on();
    st->set_state(s.state);
    st->set_attempts(s.attempts);
    st->set_last_error(s.last_error);
  }
  return tx;
}

uint64_t SagaEngine::Emit(Timestamp now, v1::LogRecord record, Effects& out) {
  record.set_gtid(gtid_);
  *record.mutable_at() = ToProtoTime(now);
  updated_at_ = std::max(updated_at_, now);
  out.append.push_back(std::move(record));
  return ++emitted_;
}

uint64_t SagaEngine::EmitOutcome(Timestamp now, const StepRuntime& s, Effects& out) {
  v1::LogRecord r;
  v1::StepOutcomeRecord* o = r.mutable_step_outcome();
  o->set_step_id(s.def.step_id());
  o->set_phase(s.phase);
  o->set_state(s.state);
  o->set_attempts(s.attempts);
  o->set_last_error(s.last_error);
  return Emit(now, std::move(r), out);
}

int SagaEngine::Active() const {
  return static_cast<int>(
      std::count_if(steps_.begin(), steps_.end(), [](const StepRuntime& s) { return s.started; }));
}

void SagaEngine::StartReadyActions(Timestamp now, Effects& out) {
  if (decision_ != v1::OUTCOME_UNSPECIFIED || ending_) return;
  int active = Active();
  for (int i = 0; i < step_count() && active < options_.max_parallel_steps; ++i) {
    StepRuntime& s = steps_[i];
    if (s.state != kPending) continue;
    const auto& deps = plan_.dependencies[i];
    if (!std::all_of(deps.begin(), deps.end(),
                     [this](int d) { return steps_[d].state == kSucceeded; })) {
      continue;
    }
    s.state = std::string(kStepRunning);
    s.phase = kPhaseAction;
    s.attempts = 0;
    s.failures = 0;
    s.started = true;
    s.in_flight = false;
    s.retry_at = Timestamp::min();
    s.ready_seq = EmitOutcome(now, s, out);
    ++active;
  }
}

void SagaEngine::StartReadyCompensations(Timestamp now, Effects& out) {
  if (!backward() || ending_) return;
  int active = Active();
  // Reverse topological order: the deepest steps first among those that are ready.
  for (auto it = plan_.order.rbegin();
       it != plan_.order.rend() && active < options_.max_parallel_steps; ++it) {
    const int i = *it;
    StepRuntime& s = steps_[i];
    if (s.state == kCompensated || s.phase == kPhaseCompensate) continue;
    const auto& dependents = plan_.dependents[i];
    if (!std::all_of(dependents.begin(), dependents.end(),
                     [this](int d) { return steps_[d].state == kCompensated; })) {
      continue;
    }
    assert(!s.started && !s.in_flight);
#ifdef TXCOORD_MUTATION_SKIP_COMPENSATION
    // A deliberate bug, compiled only into tests/simulation's mutation test (never the
    // product): a step whose action never answered is taken for one that never ran, and its
    // compensation is forgotten.
    if (s.state == kStepRunning) {
      s.state = std::string(kCompensated);
      s.phase = kPhaseCompensate;
      EmitOutcome(now, s, out);
      MaybeFinish(now, out);
      continue;
    }
#endif
    s.state = std::string(kStepCompensating);
    s.phase = kPhaseCompensate;
    s.attempts = 0;
    s.failures = 0;
    s.started = true;
    s.retry_at = Timestamp::min();
    s.ready_seq = EmitOutcome(now, s, out);
    ++active;
  }
}

void SagaEngine::Turn(Timestamp now, std::string reason, int failed_step, Effects& out) {
  assert(decision_ == v1::OUTCOME_UNSPECIFIED && !ending_);
  decision_ = v1::OUTCOME_ABORT;
  reason_ = std::move(reason);
  state_ = std::string(kCompensating);
  v1::LogRecord r;
  r.set_tx_state(state_);
  r.mutable_decision()->set_outcome(v1::OUTCOME_ABORT);
  r.mutable_decision()->set_reason(reason_);
  decision_seq_ = Emit(now, std::move(r), out);
  if (failed_step >= 0) EmitOutcome(now, steps_[failed_step], out);
  // Actions in flight are not waited for: their replies are stale from here on.
  for (StepRuntime& s : steps_) {
    s.in_flight = false;
    s.started = false;
    s.retry_at.reset();
  }
  StartReadyCompensations(now, out);
}

void SagaEngine::TurnIfPastDeadline(Timestamp now, Effects& out) {
  if (decision_ == v1::OUTCOME_UNSPECIFIED && !ending_ && now > deadline_) {
    Turn(now, DeadlineReason(), -1, out);
  }
}

std::string SagaEngine::DeadlineReason() const {
  std::string reason = "deadline passed while running";
  for (const StepRuntime& s : steps_) {
    if (!s.started) continue;
    reason += "; " + Quoted(s.def.step_id()) + " had not succeeded";
    if (!s.last_error.empty()) reason += " (last error: " + s.last_error + ")";
    break;
  }
  return reason;
}

void SagaEngine::MaybeFinish(Timestamp now, Effects& out) {
  if (ending_) return;
  std::string final_state;
  if (decision_ == v1::OUTCOME_ABORT) {
    if (!std::all_of(steps_.begin(), steps_.end(),
                     [](const StepRuntime& s) { return s.state == kCompensated; })) {
      return;
    }
    final_state = std::string(kAborted);
  } else {
    if (!std::all_of(steps_.begin(), steps_.end(),
                     [](const StepRuntime& s) { return s.state == kSucceeded; })) {
      return;
    }
    if (decision_ == v1::OUTCOME_UNSPECIFIED) {
      decision_ = v1::OUTCOME_COMMIT;
      v1::LogRecord d;
      d.mutable_decision()->set_outcome(v1::OUTCOME_COMMIT);
      decision_seq_ = Emit(now, std::move(d), out);
    }
    final_state = std::string(kCommitted);
  }
  v1::LogRecord r;
  r.set_tx_state(final_state);
  r.mutable_end()->set_final_state(final_state);
  end_seq_ = Emit(now, std::move(r), out);
  ending_ = true;
  // state() shows the final state once the end is durable (OnDurable).
}

void SagaEngine::SendDue(Timestamp now, Effects& out) {
  // Nothing is sent while any record is on its way to the log: stricter than needed (only the
  // step's own transition must be durable), and simpler to check; it delays a retry by at most
  // one append.
  if (finished_ || ending_ || durable_ < emitted_) return;
  for (int i = 0; i < step_count(); ++i) {
    StepRuntime& s = steps_[i];
    if (!s.started || s.in_flight || !s.retry_at || *s.retry_at > now) continue;
    if (durable_ < s.ready_seq) continue;  // its running/compensating record is not durable
    // Never an action once the saga turned, never a compensate before it did.
    assert((s.phase == kPhaseAction) == (decision_ == v1::OUTCOME_UNSPECIFIED));
    if (s.phase == kPhaseCompensate && durable_ < decision_seq_) continue;
    s.in_flight = true;
    s.retry_at.reset();
    ++s.attempts;
    out.send.push_back(
        Send{.step = i, .step_id = s.def.step_id(), .phase = s.phase, .attempt = s.attempts});
  }
}

milliseconds SagaEngine::Initial(const StepRuntime& s) const {
  const int32_t ms = s.def.retry().initial_ms();
  return std::max(milliseconds(1), ms > 0 ? milliseconds(ms) : options_.retry_initial);
}

milliseconds SagaEngine::Backoff(const StepRuntime& s) {
  const int32_t max_ms = s.def.retry().max_ms();
  return FullJitterBackoff(Initial(s), max_ms > 0 ? milliseconds(max_ms) : options_.retry_max,
                           s.failures, rng_);
}

milliseconds FullJitterBackoff(milliseconds initial, milliseconds max, int failures,
                               std::mt19937_64& rng) {
  const int64_t first = std::max<int64_t>(1, initial.count());
  const int64_t cap = std::max<int64_t>(first, max.count());
  int64_t ceiling = first;
  for (int i = 1; i < failures && ceiling < cap; ++i) ceiling *= 2;
  ceiling = std::min(ceiling, cap);
  std::uniform_int_distribution<int64_t> pick(0, ceiling);
  return milliseconds(std::max<int64_t>(1, pick(rng)));
}

}  // namespace txcoord::saga
