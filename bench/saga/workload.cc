#include "workload.h"

#include <utility>

namespace txcoord::bench {
namespace {

// The saga's forward deadline: far above any latency of a healthy run, so that a saga that
// misses it is an error, not a figure.
constexpr int kSagaTimeoutMs = 10'000;
constexpr size_t kMaxEchoedBody = 200;

std::string Quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

}  // namespace

std::string_view WorkloadName(Workload w) {
  switch (w) {
    case Workload::kSeq3:
      return "seq3";
    case Workload::kPar4:
      return "par4";
    case Workload::kAbort3:
      return "abort3";
  }
  return "?";
}

std::vector<StepShape> StepsOf(Workload w) {
  switch (w) {
    case Workload::kSeq3:
      return {{"s1", {}}, {"s2", {"s1"}}, {"s3", {"s2"}}};
    case Workload::kPar4:
      return {{"s1", {}}, {"s2", {"s1"}}, {"s3", {"s1"}}, {"s4", {"s2", "s3"}}};
    case Workload::kAbort3:
      return {{"s1", {}}, {"s2", {"s1"}}, {"s3", {"s2"}, /*refused=*/true}};
  }
  return {};
}

std::string_view ExpectedState(Workload w) {
  return w == Workload::kAbort3 ? "aborted" : "committed";
}

Sagas::Sagas(ConnectionPool& coordinator, Workload workload, std::vector<StepUrls> urls,
             std::string gtid_prefix)
    : coordinator_(coordinator), workload_(workload), gtid_prefix_(std::move(gtid_prefix)) {
  const std::vector<StepShape> steps = StepsOf(workload);
  steps_json_ = "[";
  for (size_t i = 0; i < steps.size(); ++i) {
    std::string deps;
    for (const std::string& d : steps[i].depends_on) deps += (deps.empty() ? "" : ",") + Quoted(d);
    steps_json_ += (i == 0 ? "" : ",");
    steps_json_ += R"({"step_id":)" + Quoted(steps[i].id) + R"(,"action":)" +
                   Quoted(urls[i].action) + R"(,"compensate":)" + Quoted(urls[i].compensate) +
                   R"(,"payload":{"amount":1},"depends_on":[)" + deps + "]}";
  }
  steps_json_ += "]";
}

std::string Sagas::BeginJson(std::string_view gtid) const {
  return R"({"gtid":)" + Quoted(gtid) + R"(,"protocol":"saga","timeout_ms":)" +
         std::to_string(kSagaTimeoutMs) + R"(,"steps":)" + steps_json_ + R"(,"wait":true})";
}

Status Sagas::Run(int thread, int64_t seq) const {
  const std::string gtid = gtid_prefix_ + "-t" + std::to_string(thread) + "-" + std::to_string(seq);
  Result<HttpReply> reply = coordinator_.Post("/v1/transactions", BeginJson(gtid), gtid);
  const std::string what = std::string(WorkloadName(workload_)) + " " + gtid;
  if (!reply.ok()) return reply.status().WithContext(what);
  if (reply->status == 200 && TopLevelState(reply->body) == ExpectedState(workload_)) {
    return Status::Ok();
  }
  return Status::Unavailable(what + ": expected 200 " + std::string(ExpectedState(workload_)) +
                             ", got HTTP " + std::to_string(reply->status) + ": " +
                             reply->body.substr(0, kMaxEchoedBody));
}

}  // namespace txcoord::bench
