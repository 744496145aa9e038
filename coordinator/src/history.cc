// A transaction's history: its log records flattened into entries for operators (log.h).
#include <algorithm>
#include <string>
#include <vector>

#include "log_internal.h"

namespace txcoord::coordinator {
namespace {

std::string Attempts(int n) { return std::to_string(n) + (n == 1 ? " attempt" : " attempts"); }

std::string OutcomeWord(v1::Outcome outcome) {
  switch (outcome) {
    case v1::OUTCOME_COMMIT:
      return "commit";
    case v1::OUTCOME_ABORT:
      return "abort";
    default:
      return "none";
  }
}

std::string Joined(const std::vector<std::string>& ids) {
  std::string text;
  for (const std::string& id : ids) text += (text.empty() ? "" : ", ") + id;
  return text;
}

// "branch debit commit: committed after 1 attempt" / "...: committing, 4 attempts; last error: x"
std::string OutcomeDetail(std::string_view what, const std::string& id, const std::string& phase,
                          const std::string& state, int attempts, const std::string& last_error) {
  std::string text = std::string(what) + " " + id;
  if (!phase.empty()) text += " " + phase;
  text += ": " + state;
  if (attempts > 0) text += ", " + Attempts(attempts);
  if (!last_error.empty()) text += "; last error: " + last_error;
  return text;
}

}  // namespace

v1::TransactionHistory HistoryOf(const LoggedTransaction& logged) {
  v1::TransactionHistory history;
  history.set_gtid(logged.summary.gtid);
  history.set_protocol(logged.summary.protocol);
  history.set_state(logged.summary.state);
  // Step ids, to tell a resolved step from a resolved branch.
  std::vector<std::string> steps;
  int seq = 0;
  for (const v1::LogRecord& r : logged.records) {
    v1::HistoryEntry* e = history.add_entries();
    e->set_seq(++seq);
    *e->mutable_at() = r.at();
    e->set_kind(std::string(internal::RecordKind(r)));
    e->set_tx_state(r.tx_state());
    switch (r.body_case()) {
      case v1::LogRecord::kBegin: {
        const v1::BeginRecord& b = r.begin();
        std::vector<std::string> ids;
        for (const auto& branch : b.branches()) ids.push_back(branch.branch_id());
        for (const auto& step : b.steps()) {
          ids.push_back(step.step_id());
          steps.push_back(step.step_id());
        }
        std::string text = "begun: " + b.protocol() + ", ";
        if (b.steps_size() > 0) {
          text += std::to_string(b.steps_size()) + (b.steps_size() == 1 ? " step" : " steps");
        } else {
          text += std::to_string(b.branches_size()) +
                  (b.branches_size() == 1 ? " branch" : " branches");
        }
        if (!ids.empty()) text += " (" + Joined(ids) + ")";
        text += ", timeout " + std::to_string(b.timeout_ms()) + " ms";
        if (b.one_phase()) text += ", one-phase commit";
        e->set_detail(text);
        break;
      }
      case v1::LogRecord::kBranchRegistered: {
        const v1::Branch& b = r.branch_registered().branch();
        e->set_branch_id(b.branch_id());
        e->set_detail("branch " + b.branch_id() + " registered at " + b.url());
        break;
      }
      case v1::LogRecord::kDecision: {
        const v1::DecisionRecord& d = r.decision();
        e->set_outcome(OutcomeWord(d.outcome()));
        e->set_reason(d.reason());
        e->set_detail("decided " + OutcomeWord(d.outcome()) +
                      (d.reason().empty() ? "" : ": " + d.reason()));
        break;
      }
      case v1::LogRecord::kBranchOutcome: {
        const v1::BranchOutcomeRecord& o = r.branch_outcome();
        e->set_branch_id(o.branch_id());
        e->set_phase(o.phase());
        e->set_state(o.state());
        e->set_attempts(o.attempts());
        e->set_last_error(o.last_error());
        e->set_detail(OutcomeDetail("branch", o.branch_id(), o.phase(), o.state(), o.attempts(),
                                    o.last_error()));
        break;
      }
      case v1::LogRecord::kStepOutcome: {
        const v1::StepOutcomeRecord& o = r.step_outcome();
        e->set_branch_id(o.step_id());
        e->set_phase(o.phase());
        e->set_state(o.state());
        e->set_attempts(o.attempts());
        e->set_last_error(o.last_error());
        e->set_detail(
            OutcomeDetail("step", o.step_id(), o.phase(), o.state(), o.attempts(), o.last_error()));
        break;
      }
      case v1::LogRecord::kResolved: {
        const v1::ResolvedRecord& o = r.resolved();
        e->set_branch_id(o.branch_id());
        e->set_phase(o.phase());
        e->set_state(o.state());
        e->set_attempts(o.attempts());
        e->set_last_error(o.last_error());
        e->set_reason(o.reason());
        e->set_operator_(o.operator_());
        e->set_resolved_as(o.as());
        const bool step = std::find(steps.begin(), steps.end(), o.branch_id()) != steps.end();
        std::string text = std::string(step ? "step " : "branch ") + o.branch_id() +
                           " resolved by hand as " + o.as() + " by " + o.operator_();
        if (!o.reason().empty()) text += ": " + o.reason();
        text += " (" + o.phase() + " outstanding after " + Attempts(o.attempts());
        if (!o.last_error().empty()) text += "; last error: " + o.last_error();
        text += ")";
        e->set_detail(text);
        break;
      }
      case v1::LogRecord::kPreCommit:
        e->set_detail("every branch voted yes; pre-commit may be sent, so recovery commits");
        break;
      case v1::LogRecord::kEnd:
        e->set_state(r.end().final_state());
        e->set_detail("ended " + r.end().final_state());
        break;
      case v1::LogRecord::BODY_NOT_SET:
        e->set_detail("a record without a body");
        break;
    }
  }
  return history;
}

}  // namespace txcoord::coordinator
