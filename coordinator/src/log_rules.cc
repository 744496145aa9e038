// The rules every append must pass, whatever the backend. Pure functions: no I/O.
#include <google/protobuf/util/time_util.h>

#include <set>

#include "log_internal.h"
#include "txcoord/schemas/ids.h"

namespace txcoord::coordinator::internal {
namespace {

// tx_state names are short lowercase words with dashes ("preparing", "pre-committed").
constexpr std::string_view kPreCommittingState = "pre-committing";

bool IsValidStateName(std::string_view s) {
  if (s.empty() || s.size() > 32) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || c == '-')) return false;
  }
  return true;
}

Status CheckBranchIds(const google::protobuf::RepeatedPtrField<v1::Branch>& branches) {
  std::set<std::string_view> seen;
  for (const auto& b : branches) {
    TXCOORD_RETURN_IF_ERROR(ValidateId("branch_id", b.branch_id()));
    if (!seen.insert(b.branch_id()).second) {
      return Status::InvalidArgument("branch_id \"" + b.branch_id() + "\" appears twice");
    }
  }
  return Status::Ok();
}

Status CheckStepIds(const google::protobuf::RepeatedPtrField<v1::Step>& steps) {
  std::set<std::string_view> seen;
  for (const auto& s : steps) {
    TXCOORD_RETURN_IF_ERROR(ValidateId("step_id", s.step_id()));
    if (!seen.insert(s.step_id()).second) {
      return Status::InvalidArgument("step_id \"" + s.step_id() + "\" appears twice");
    }
  }
  return Status::Ok();
}

const char* OutcomeName(v1::Outcome o) {
  switch (o) {
    case v1::OUTCOME_COMMIT:
      return "commit";
    case v1::OUTCOME_ABORT:
      return "abort";
    default:
      return "none";
  }
}

// After 1970 and before 10000, nanos in range: what RFC 3339 and the JSON mapping can express,
// and what converts to milliseconds without overflow.
bool IsStorableTime(const google::protobuf::Timestamp& t) {
  return t.seconds() > 0 && t.seconds() < google::protobuf::util::TimeUtil::kTimestampMaxSeconds &&
         t.nanos() >= 0 && t.nanos() < 1'000'000'000;
}

}  // namespace

std::string_view RecordKind(const v1::LogRecord& record) {
  switch (record.body_case()) {
    case v1::LogRecord::kBegin:
      return "begin";
    case v1::LogRecord::kBranchRegistered:
      return "branch_registered";
    case v1::LogRecord::kDecision:
      return "decision";
    case v1::LogRecord::kBranchOutcome:
      return "branch_outcome";
    case v1::LogRecord::kStepOutcome:
      return "step_outcome";
    case v1::LogRecord::kEnd:
      return "end";
    case v1::LogRecord::kResolved:
      return "resolved";
    case v1::LogRecord::kPreCommit:
      return "pre_commit";
    case v1::LogRecord::BODY_NOT_SET:
      break;
  }
  return "none";
}

Status CheckRecord(const v1::LogRecord& r) {
  TXCOORD_RETURN_IF_ERROR(ValidateId("gtid", r.gtid()));
  if (!IsStorableTime(r.at())) {
    return Status::InvalidArgument("record has no valid `at` time (after 1970, before 10000)");
  }
  if (!r.tx_state().empty() && !IsValidStateName(r.tx_state())) {
    return Status::InvalidArgument("tx_state \"" + r.tx_state().substr(0, 40) +
                                   "\" is not a lowercase state name");
  }
  // Terminal states are reached only through `end`, so "finished" has one meaning.
  if (IsTerminalState(r.tx_state()) && r.body_case() != v1::LogRecord::kEnd) {
    return Status::InvalidArgument("tx_state \"" + r.tx_state() +
                                   "\" is terminal and may only be set by an end record");
  }
  // So that a summary in state pre-committing always means "the pre_commit record is in".
  if (r.tx_state() == kPreCommittingState && r.body_case() != v1::LogRecord::kPreCommit) {
    return Status::InvalidArgument("tx_state \"pre-committing\" is set only by a pre_commit record");
  }
  switch (r.body_case()) {
    case v1::LogRecord::kBegin: {
      const auto& b = r.begin();
      if (!IsKnownProtocol(b.protocol())) {
        return Status::InvalidArgument("begin has unknown protocol \"" +
                                       b.protocol().substr(0, 40) + "\"");
      }
      if (r.tx_state().empty()) return Status::InvalidArgument("begin needs a tx_state");
      if (b.timeout_ms() < 0) return Status::InvalidArgument("begin has a negative timeout_ms");
      if (b.has_deadline() && !IsStorableTime(b.deadline())) {
        return Status::InvalidArgument("begin's deadline is not a time between 1970 and 9999");
      }
      TXCOORD_RETURN_IF_ERROR(CheckBranchIds(b.branches()));
      return CheckStepIds(b.steps());
    }
    case v1::LogRecord::kBranchRegistered:
      return ValidateId("branch_id", r.branch_registered().branch().branch_id());
    case v1::LogRecord::kDecision:
      if (r.decision().outcome() != v1::OUTCOME_COMMIT &&
          r.decision().outcome() != v1::OUTCOME_ABORT) {
        return Status::InvalidArgument("decision has no outcome");
      }
      return Status::Ok();
    case v1::LogRecord::kBranchOutcome:
      TXCOORD_RETURN_IF_ERROR(ValidateId("branch_id", r.branch_outcome().branch_id()));
      if (!IsValidStateName(r.branch_outcome().state())) {
        return Status::InvalidArgument("branch_outcome needs a state");
      }
      return Status::Ok();
    case v1::LogRecord::kStepOutcome:
      TXCOORD_RETURN_IF_ERROR(ValidateId("step_id", r.step_outcome().step_id()));
      if (!IsValidStateName(r.step_outcome().state())) {
        return Status::InvalidArgument("step_outcome needs a state");
      }
      return Status::Ok();
    case v1::LogRecord::kEnd:
      if (!IsTerminalState(r.end().final_state())) {
        return Status::InvalidArgument("end needs final_state committed or aborted");
      }
      if (r.tx_state() != r.end().final_state()) {
        return Status::InvalidArgument("end's tx_state must equal its final_state");
      }
      return Status::Ok();
    case v1::LogRecord::kResolved: {
      const v1::ResolvedRecord& o = r.resolved();
      TXCOORD_RETURN_IF_ERROR(ValidateId("branch_id", o.branch_id()));
      if (o.as() != "committed" && o.as() != "aborted") {
        return Status::InvalidArgument("resolved needs `as` committed or aborted");
      }
      if (o.operator_().empty()) return Status::InvalidArgument("resolved needs an operator");
      if (!IsValidStateName(o.state())) return Status::InvalidArgument("resolved needs a state");
      return Status::Ok();
    }
    case v1::LogRecord::kPreCommit:
      if (r.tx_state() != kPreCommittingState) {
        return Status::InvalidArgument("pre_commit needs tx_state \"" +
                                       std::string(kPreCommittingState) + "\"");
      }
      if (!IsStorableTime(r.pre_commit().deadline())) {
        return Status::InvalidArgument("pre_commit's deadline is not a time between 1970 and 9999");
      }
      return Status::Ok();
    case v1::LogRecord::BODY_NOT_SET:
      break;
  }
  return Status::InvalidArgument("record has no body");
}

Status ApplyRecord(const v1::LogRecord& r, std::optional<TransactionSummary>* summary) {
  TXCOORD_RETURN_IF_ERROR(CheckRecord(r));
  const Timestamp at = FromProto(r.at());
  if (r.has_begin()) {
    if (summary->has_value()) {
      return Status::AlreadyExists("transaction " + r.gtid() + " already exists");
    }
    TransactionSummary s;
    s.gtid = r.gtid();
    s.protocol = r.begin().protocol();
    s.state = r.tx_state();
    s.created_at = at;
    s.updated_at = at;
    if (r.begin().has_deadline()) s.deadline = FromProto(r.begin().deadline());
    s.record_count = 1;
    *summary = std::move(s);
    return Status::Ok();
  }
  if (!summary->has_value()) {
    return Status::NotFound("transaction " + r.gtid() + " has no begin record");
  }
  TransactionSummary next = **summary;
  if (next.finished()) {
    return Status::Conflict("transaction " + r.gtid() + " already ended as " + next.state +
                            "; no " + std::string(RecordKind(r)) + " record may follow");
  }
  // 3pc: the pre-commit record comes at most once, before the decision, and after it the
  // outcome can only be commit (some branch may be pre-committed and commit on its own timeout).
  const bool pre_committing = next.state == kPreCommittingState;
  if (r.has_pre_commit()) {
    if (next.protocol != "3pc") {
      return Status::InvalidArgument("transaction " + r.gtid() + " is " + next.protocol +
                                     "; only a 3pc transaction has a pre_commit record");
    }
    if (next.decision != v1::OUTCOME_UNSPECIFIED || pre_committing) {
      return Status::Conflict("transaction " + r.gtid() + " is already " +
                              (pre_committing ? std::string("pre-committing")
                                              : "decided " + std::string(OutcomeName(next.decision))) +
                              "; a pre_commit record comes once, before the decision");
    }
  }
  if (r.has_decision()) {
    const v1::Outcome outcome = r.decision().outcome();
    if (next.decision != v1::OUTCOME_UNSPECIFIED && next.decision != outcome) {
      return Status::Conflict("transaction " + r.gtid() + " is already decided " +
                              OutcomeName(next.decision) + "; a decision never changes");
    }
    if (pre_committing && outcome != v1::OUTCOME_COMMIT) {
      return Status::Conflict("transaction " + r.gtid() +
                              " is pre-committing; after its pre_commit record only a commit "
                              "decision may follow");
    }
    next.decision = outcome;
  }
  if (r.has_resolved()) {
    // A branch resolved by hand must agree with the durable decision: "aborted" only once the
    // abort is decided, "committed" never after it.
    const bool aborted = r.resolved().as() == "aborted";
    if (aborted != (next.decision == v1::OUTCOME_ABORT)) {
      return Status::Conflict("transaction " + r.gtid() + " cannot have branch \"" +
                              r.resolved().branch_id() + "\" resolved as " + r.resolved().as() +
                              " when its decision is " + OutcomeName(next.decision));
    }
  }
  if (r.has_end()) {
    // The outcome a transaction ends with must be the durable decision, if there is one;
    // presumed abort lets an undecided transaction end aborted.
    const bool committed = r.end().final_state() == "committed";
    if (committed != (next.decision == v1::OUTCOME_COMMIT)) {
      return Status::Conflict("transaction " + r.gtid() + " cannot end " + r.end().final_state() +
                              " when its decision is " + OutcomeName(next.decision));
    }
    next.finished_at = at;
  }
  if (!r.tx_state().empty()) next.state = r.tx_state();
  next.updated_at = std::max(next.updated_at, at);
  next.record_count++;
  *summary = std::move(next);
  return Status::Ok();
}

std::vector<std::string> BatchGtids(std::span<PendingAppend* const> batch) {
  std::set<std::string> gtids;
  for (const PendingAppend* p : batch) {
    for (const auto& r : p->records) gtids.insert(r.gtid());
  }
  return {gtids.begin(), gtids.end()};
}

std::vector<std::string> ApplyBatch(std::span<PendingAppend* const> batch, SummaryMap* summaries,
                                    std::vector<EncodedRecord>* out) {
  std::set<std::string> changed;
  for (PendingAppend* p : batch) {
    if (p->records.empty()) {
      p->status = Status::InvalidArgument("an append needs at least one record");
      continue;
    }
    // Work on a copy of the touched summaries so a failing record undoes the whole append.
    SummaryMap scratch;
    Status status;
    std::vector<int64_t> seqs;
    for (const auto& r : p->records) {
      auto it = scratch.find(r.gtid());
      if (it == scratch.end()) {
        auto stored = summaries->find(r.gtid());
        it = scratch.emplace(r.gtid(), stored == summaries->end() ? std::nullopt : stored->second)
                 .first;
      }
      status = ApplyRecord(r, &it->second);
      if (!status.ok()) {
        status = status.WithContext("append rejected");
        break;
      }
      seqs.push_back(it->second->record_count);
    }
    p->status = status;
    if (!status.ok()) continue;
    for (auto& [gtid, s] : scratch) {
      (*summaries)[gtid] = std::move(s);
      changed.insert(gtid);
    }
    for (size_t i = 0; i < p->records.size(); ++i) {
      const v1::LogRecord& r = p->records[i];
      EncodedRecord e;
      e.gtid = r.gtid();
      e.seq = seqs[i];
      e.kind = std::string(RecordKind(r));
      r.SerializeToString(&e.body);
      e.crc = Checksum(e.body);
      out->push_back(std::move(e));
    }
  }
  return {changed.begin(), changed.end()};
}

Status CheckLimit(int limit) {
  if (limit < 1 || limit > 1000) {
    return Status::InvalidArgument("limit must be between 1 and 1000, got " +
                                   std::to_string(limit));
  }
  return Status::Ok();
}

}  // namespace txcoord::coordinator::internal
