// Builders of log records for the log's tests and benchmarks.
#pragma once

#include <string>

#include "txcoord/coordinator/log.h"

namespace txcoord::coordinator::testutil {

inline Timestamp T(int64_t ms) { return Timestamp(std::chrono::milliseconds(ms)); }
// A fixed, realistic epoch for test times: 2026-11-21T00:00:00Z.
inline constexpr int64_t kEpochMs = 1'795'219'200'000;

inline v1::LogRecord Begin(const std::string& gtid, int64_t at_ms,
                           const std::string& protocol = "2pc", int branches = 2) {
  v1::LogRecord r;
  r.set_gtid(gtid);
  *r.mutable_at() = ToProto(T(at_ms));
  r.set_tx_state(protocol == "tcc" ? "active" : "preparing");
  auto* b = r.mutable_begin();
  b->set_protocol(protocol);
  b->set_timeout_ms(10'000);
  *b->mutable_deadline() = ToProto(T(at_ms + 10'000));
  for (int i = 0; i < branches; ++i) {
    auto* br = b->add_branches();
    br->set_branch_id("b" + std::to_string(i));
    br->set_url("http://127.0.0.1:700" + std::to_string(i) + "/bank");
    br->mutable_payload()
        ->mutable_struct_value()
        ->mutable_fields()
        ->
        operator[]("amount")
        .set_number_value(30 + i);
  }
  return r;
}

inline v1::LogRecord Decision(const std::string& gtid, int64_t at_ms, v1::Outcome outcome,
                              const std::string& reason = "") {
  v1::LogRecord r;
  r.set_gtid(gtid);
  *r.mutable_at() = ToProto(T(at_ms));
  r.set_tx_state(outcome == v1::OUTCOME_COMMIT ? "committing" : "aborting");
  r.mutable_decision()->set_outcome(outcome);
  r.mutable_decision()->set_reason(reason);
  return r;
}

inline v1::LogRecord BranchOutcome(const std::string& gtid, int64_t at_ms,
                                   const std::string& branch, const std::string& state,
                                   int attempts = 1, const std::string& last_error = "") {
  v1::LogRecord r;
  r.set_gtid(gtid);
  *r.mutable_at() = ToProto(T(at_ms));
  auto* o = r.mutable_branch_outcome();
  o->set_branch_id(branch);
  o->set_phase(state == "prepared" ? "prepare" : "commit");
  o->set_state(state);
  o->set_attempts(attempts);
  o->set_last_error(last_error);
  return r;
}

inline v1::LogRecord Resolved(const std::string& gtid, int64_t at_ms, const std::string& branch,
                              const std::string& as, const std::string& op = "alice",
                              const std::string& reason = "done by hand") {
  v1::LogRecord r;
  r.set_gtid(gtid);
  *r.mutable_at() = ToProto(T(at_ms));
  auto* o = r.mutable_resolved();
  o->set_branch_id(branch);
  o->set_as(as);
  o->set_operator_(op);
  o->set_reason(reason);
  o->set_phase(as == "committed" ? "commit" : "abort");
  o->set_state(as);
  o->set_attempts(8);
  o->set_last_error("HTTP 500: disk full");
  return r;
}

inline v1::LogRecord End(const std::string& gtid, int64_t at_ms, const std::string& final_state) {
  v1::LogRecord r;
  r.set_gtid(gtid);
  *r.mutable_at() = ToProto(T(at_ms));
  r.set_tx_state(final_state);
  r.mutable_end()->set_final_state(final_state);
  return r;
}

}  // namespace txcoord::coordinator::testutil
