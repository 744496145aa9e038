// The public record of a transaction, folded from its log records.
#include "log_internal.h"

namespace txcoord::coordinator {
namespace {

v1::Branch* FindBranch(v1::Transaction* tx, const std::string& id) {
  for (auto& b : *tx->mutable_branches()) {
    if (b.branch_id() == id) return &b;
  }
  return nullptr;
}

v1::Step* FindStep(v1::Transaction* tx, const std::string& id) {
  for (auto& s : *tx->mutable_steps()) {
    if (s.step_id() == id) return &s;
  }
  return nullptr;
}

// Payloads stay out of the public record: they may be large or hold business data, and the
// participant already has them.
void AddBranch(v1::Transaction* tx, const v1::Branch& from) {
  if (FindBranch(tx, from.branch_id()) != nullptr) return;  // registering twice is allowed
  v1::Branch* b = tx->add_branches();
  b->set_branch_id(from.branch_id());
  b->set_url(from.url());
  b->set_state("registered");
  b->set_attempts(0);
  b->set_last_error("");
}

}  // namespace

v1::Transaction FoldRecord(const LoggedTransaction& logged) {
  const TransactionSummary& s = logged.summary;
  v1::Transaction tx;
  tx.set_gtid(s.gtid);
  tx.set_protocol(s.protocol);
  tx.set_state(s.state);
  *tx.mutable_created_at() = ToProto(s.created_at);
  *tx.mutable_updated_at() = ToProto(s.updated_at);
  if (s.deadline) *tx.mutable_deadline() = ToProto(*s.deadline);

  for (const v1::LogRecord& r : logged.records) {
    switch (r.body_case()) {
      case v1::LogRecord::kBegin:
        for (const auto& b : r.begin().branches()) AddBranch(&tx, b);
        for (const auto& from : r.begin().steps()) {
          v1::Step* st = tx.add_steps();
          st->set_step_id(from.step_id());
          st->set_action(from.action());
          st->set_compensate(from.compensate());
          *st->mutable_depends_on() = from.depends_on();
          st->set_state("pending");
          st->set_attempts(0);
          st->set_last_error("");
        }
        break;
      case v1::LogRecord::kBranchRegistered:
        AddBranch(&tx, r.branch_registered().branch());
        break;
      case v1::LogRecord::kDecision:
        if (!r.decision().reason().empty()) tx.set_reason(r.decision().reason());
        break;
      case v1::LogRecord::kBranchOutcome: {
        const auto& o = r.branch_outcome();
        v1::Branch* b = FindBranch(&tx, o.branch_id());
        if (b == nullptr) {
          b = tx.add_branches();
          b->set_branch_id(o.branch_id());
        }
        b->set_state(o.state());
        b->set_attempts(o.attempts());
        b->set_last_error(o.last_error());
        break;
      }
      case v1::LogRecord::kStepOutcome: {
        const auto& o = r.step_outcome();
        v1::Step* st = FindStep(&tx, o.step_id());
        if (st == nullptr) {
          st = tx.add_steps();
          st->set_step_id(o.step_id());
        }
        st->set_state(o.state());
        st->set_attempts(o.attempts());
        st->set_last_error(o.last_error());
        break;
      }
      case v1::LogRecord::kResolved: {
        // The branch or step takes the state the operator gave it; attempts and last_error
        // stay as they were, so the record still shows what had been failing.
        const auto& o = r.resolved();
        if (v1::Branch* b = FindBranch(&tx, o.branch_id())) {
          b->set_state(o.state());
          b->set_attempts(o.attempts());
          b->set_last_error(o.last_error());
        } else if (v1::Step* st = FindStep(&tx, o.branch_id())) {
          st->set_state(o.state());
          st->set_attempts(o.attempts());
          st->set_last_error(o.last_error());
        }
        break;
      }
      case v1::LogRecord::kEnd:
      case v1::LogRecord::kPreCommit:  // the state is the summary's; the deadline stays internal
      case v1::LogRecord::BODY_NOT_SET:
        break;
    }
  }
  return tx;
}

}  // namespace txcoord::coordinator
