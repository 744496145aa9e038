#include "engine_common.h"

#include <algorithm>
#include <cassert>

namespace txcoord::coordinator::internal {

std::string Describe(const CallbackReply& reply) {
  return reply.detail.empty()
             ? (reply.http_status != 0 ? "HTTP " + std::to_string(reply.http_status)
                                       : std::string("no reply"))
             : reply.detail;
}

void CopyBranchDefinition(const v1::Branch& from, v1::Branch* to) {
  to->set_branch_id(from.branch_id());
  to->set_url(from.url());
  if (from.has_payload()) *to->mutable_payload() = from.payload();
}

v1::Transaction BranchPhaseEngine::View() const {
  v1::Transaction tx;
  tx.set_gtid(gtid_);
  tx.set_protocol(protocol_);
  // Settled: the end record may still be on its way, but the state it names is the outcome.
  if (settled() && !finished_) {
    tx.set_state(std::string(decision_ == v1::OUTCOME_COMMIT ? kCommitted : kAborted));
  } else {
    tx.set_state(state_);
  }
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

const v1::Branch* BranchPhaseEngine::FindBranch(const std::string& branch_id) const {
  for (const BranchRuntime& b : branches_) {
    if (b.def.branch_id() == branch_id) return &b.def;
  }
  return nullptr;
}

BranchRuntime* BranchPhaseEngine::FindRuntime(const std::string& id) {
  for (BranchRuntime& b : branches_) {
    if (b.def.branch_id() == id) return &b;
  }
  return nullptr;
}

void BranchPhaseEngine::AddBranch(const v1::Branch& from, uint64_t registered_seq) {
  BranchRuntime b;
  CopyBranchDefinition(from, &b.def);
  b.registered_seq = registered_seq;
  branches_.push_back(std::move(b));
}

bool BranchPhaseEngine::AllDone() const {
  return std::all_of(branches_.begin(), branches_.end(),
                     [](const BranchRuntime& b) { return b.done; });
}

uint64_t BranchPhaseEngine::Emit(Timestamp now, v1::LogRecord record, Effects& out) {
  record.set_gtid(gtid_);
  *record.mutable_at() = ToProto(now);
  updated_at_ = now;
  out.append.push_back(std::move(record));
  return ++emitted_;
}

void BranchPhaseEngine::EmitOutcome(Timestamp now, const BranchRuntime& b, Effects& out) {
  v1::LogRecord r;
  v1::BranchOutcomeRecord* o = r.mutable_branch_outcome();
  o->set_branch_id(b.def.branch_id());
  o->set_phase(b.phase);
  o->set_state(b.state);
  o->set_attempts(b.attempts);
  o->set_last_error(b.last_error);
  Emit(now, std::move(r), out);
}

v1::LogRecord BranchPhaseEngine::MakeBeginRecord(const v1::BeginRequest& request,
                                                 std::string_view protocol, int timeout_ms) const {
  v1::LogRecord r;
  r.set_tx_state(state_);
  v1::BeginRecord* begin = r.mutable_begin();
  begin->set_protocol(std::string(protocol));
  begin->set_timeout_ms(timeout_ms);
  *begin->mutable_deadline() = ToProto(deadline_);
  for (const v1::Branch& b : request.branches()) CopyBranchDefinition(b, begin->add_branches());
  begin->set_traceparent(traceparent_);
  begin->set_request_digest(digest_);
  return r;
}

void BranchPhaseEngine::RestoreBegin(const v1::BeginRecord& begin) {
  deadline_ = FromProto(begin.deadline());
  traceparent_ = begin.traceparent();
  digest_ = begin.request_digest();
  for (const v1::Branch& b : begin.branches()) AddBranch(b, 0);
}

Status BranchPhaseEngine::RestoreOutcome(const v1::BranchOutcomeRecord& outcome) {
  BranchRuntime* b = FindRuntime(outcome.branch_id());
  if (b == nullptr) return Status::Corruption(gtid_ + ": outcome of an unknown branch");
  b->state = outcome.state();
  b->attempts = outcome.attempts();
  b->last_error = outcome.last_error();
  return Status::Ok();
}

Status BranchPhaseEngine::RestoreResolved(const v1::ResolvedRecord& resolved) {
  BranchRuntime* b = FindRuntime(resolved.branch_id());
  if (b == nullptr) return Status::Corruption(gtid_ + ": resolve of an unknown branch");
  if (resolved.state() != kCommitted && resolved.state() != kAborted) {
    return Status::Corruption(gtid_ + ": branch resolved to state \"" + resolved.state() + "\"");
  }
  b->state = resolved.state();
  b->attempts = resolved.attempts();
  b->last_error = resolved.last_error();
  return Status::Ok();
}

void BranchPhaseEngine::StartPhase(BranchRuntime& b, std::string_view phase) {
  b.phase = std::string(phase);
  b.attempts = 0;
  b.failures = 0;
  b.in_flight = false;
  b.done = false;
  b.retry_at = Timestamp::min();
}

void BranchPhaseEngine::StartPhase2(bool commit) {
  phase2_started_ = true;
  const std::string_view acked = commit ? kCommitted : kAborted;
  for (BranchRuntime& b : branches_) {
    if (b.state == acked) {
      b.phase = std::string(commit ? kCommit : kAbort);
      b.done = true;
      continue;
    }
    StartPhase(b, commit ? kCommit : kAbort);
  }
}

void BranchPhaseEngine::RetryNow(Timestamp now, Effects& out) {
  for (BranchRuntime& b : branches_) {
    if (!b.in_flight && !b.done && b.retry_at && *b.retry_at > now) {
      b.retry_at = now;
      b.failures = 0;
    }
  }
  OnTimer(now, out);
}

void BranchPhaseEngine::SendDue(Timestamp now, Effects& out) {
  if (finished_ || end_seq_ != 0 || !MaySend()) return;
  const bool one_phase = SendsOnePhase();
  for (BranchRuntime& b : branches_) {
    if (b.in_flight || b.done || !b.retry_at || *b.retry_at > now) continue;
    b.in_flight = true;
    b.retry_at.reset();
    ++b.attempts;
    out.send.push_back(Send{.branch_id = b.def.branch_id(),
                            .phase = b.phase,
                            .attempt = b.attempts,
                            .one_phase = one_phase});
  }
}

std::optional<Timestamp> BranchPhaseEngine::NextWake(std::optional<Timestamp> deadline) const {
  std::optional<Timestamp> at = deadline;
  if (!MaySend()) return at;
  for (const BranchRuntime& b : branches_) {
    if (!b.in_flight && !b.done && b.retry_at && (!at || *b.retry_at < *at)) at = *b.retry_at;
  }
  return at;
}

bool BranchPhaseEngine::NoteDurable(uint64_t seq) {
  assert(seq <= emitted_);
  if (seq <= durable_) return false;
  durable_ = seq;
  if (end_seq_ != 0 && durable_ >= end_seq_) {
    finished_ = true;
    state_ = std::string(decision_ == v1::OUTCOME_COMMIT ? kCommitted : kAborted);
    return false;
  }
  return true;
}

BranchRuntime* BranchPhaseEngine::TakeReply(Timestamp now, const Send& sent) {
  BranchRuntime* b = FindRuntime(sent.branch_id);
  if (b == nullptr || !b->in_flight || b->phase != sent.phase || b->attempts != sent.attempt ||
      finished_ || end_seq_ != 0) {
    return nullptr;
  }
  b->in_flight = false;
  updated_at_ = now;
  return b;
}

void BranchPhaseEngine::RetryLater(Timestamp now, BranchRuntime& b, const CallbackReply& reply,
                                   Effects& out) {
  if (reply.reply_class == ReplyClass::kRefused) {
    b.last_error = "participant bug, retried: 409 to " + b.phase + ": " + b.last_error;
  }
  if (reply.reply_class == ReplyClass::kInProgress) {
    b.retry_at = now + options_.retry.initial;  // 425: no backoff growth, and no draw
  } else {
    ++b.failures;
    b.retry_at = now + BackoffDelay(options_.retry, b.failures, rng_);
  }
  if (options_.log_failed_attempts && IsPowerOfTwo(b.attempts)) EmitOutcome(now, b, out);
}

void BranchPhaseEngine::EmitDecision(Timestamp now, v1::Outcome outcome, std::string reason,
                                     Effects& out) {
  assert(decision_ == v1::OUTCOME_UNSPECIFIED);
  decision_ = outcome;
  reason_ = std::move(reason);
  state_ = std::string(outcome == v1::OUTCOME_COMMIT ? kCommitting : kAborting);
  v1::LogRecord r;
  r.set_tx_state(state_);
  r.mutable_decision()->set_outcome(outcome);
  r.mutable_decision()->set_reason(reason_);
  decision_seq_ = Emit(now, std::move(r), out);
  for (const BranchRuntime& b : branches_) {
    if (b.attempts == 0 && b.state == kRegistered) continue;  // nothing to tell yet
    EmitOutcome(now, b, out);
  }
}

void BranchPhaseEngine::MaybeFinish(Timestamp now, Effects& out) {
  if (end_seq_ != 0 || !phase2_started_ || !AllDone()) return;
  for (const BranchRuntime& b : branches_) EmitOutcome(now, b, out);
  const std::string final_state(decision_ == v1::OUTCOME_COMMIT ? kCommitted : kAborted);
  v1::LogRecord r;
  r.set_tx_state(final_state);
  r.mutable_end()->set_final_state(final_state);
  end_seq_ = Emit(now, std::move(r), out);
}

std::string BranchPhaseEngine::DeadlineReason() const {
  std::string reason = "deadline passed while " + state_;
  for (const BranchRuntime& b : branches_) {
    // Done: voted or prepared. No phase: no first-phase call sent yet, or a tcc branch.
    if (b.done || b.phase.empty()) continue;
    reason += "; branch \"" + b.def.branch_id() + "\" had not answered " + b.phase;
    if (!b.last_error.empty()) reason += " (last error: " + b.last_error + ")";
    break;
  }
  return reason;
}

std::optional<Result<uint64_t>> BranchPhaseEngine::AnswerDecided(v1::Outcome command) const {
  assert(command == v1::OUTCOME_COMMIT || command == v1::OUTCOME_ABORT);
  if (decision_ == command) return decision_seq_;
  if (command == v1::OUTCOME_COMMIT && decision_ == v1::OUTCOME_ABORT) {
    return Status::Conflict("transaction " + gtid_ + " is " + state_ + " (" + reason_ +
                            "); it cannot commit");
  }
  if (command == v1::OUTCOME_ABORT && decision_ == v1::OUTCOME_COMMIT) {
    return Status::Conflict("transaction " + gtid_ + " is " + state_ +
                            "; the commit decision is durable, it can no longer abort");
  }
  return std::nullopt;
}

Result<BranchRuntime*> BranchPhaseEngine::FindResolvable(const v1::ResolvedRecord& request) {
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
  return b;
}

Result<uint64_t> BranchPhaseEngine::ResolveDecided(Timestamp now, BranchRuntime& b,
                                                   const v1::ResolvedRecord& request,
                                                   std::string_view mismatch_note, Effects& out) {
  assert(decision_ != v1::OUTCOME_UNSPECIFIED);
  if (!phase2_started_) {
    return Status::Unavailable("the decision of transaction " + gtid_ +
                               " is not durable yet; retry in a moment");
  }
  const bool commit = decision_ == v1::OUTCOME_COMMIT;
  if ((request.as() == kCommitted) != commit) {
    return Status::Conflict("the decision of transaction " + gtid_ + " is " +
                            (commit ? "commit" : "abort") + ": branch \"" + b.def.branch_id() +
                            "\" can only be resolved as " + (commit ? "committed" : "aborted") +
                            std::string(mismatch_note));
  }
  if (b.done) {
    return Status::Conflict("branch \"" + b.def.branch_id() + "\" acknowledged its " + b.phase +
                            " already (" + b.state + "); nothing is outstanding");
  }
  const uint64_t seq = EmitResolved(now, b, request, out);
  MarkResolved(b, request.as());
  MaybeFinish(now, out);
  return seq;
}

uint64_t BranchPhaseEngine::EmitResolved(Timestamp now, const BranchRuntime& b,
                                         const v1::ResolvedRecord& request, Effects& out) {
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

void BranchPhaseEngine::MarkResolved(BranchRuntime& b, const std::string& state) {
  b.state = state;
  b.done = true;
  b.in_flight = false;
  b.failures = 0;
  b.retry_at.reset();
}

}  // namespace txcoord::coordinator::internal
