// The sagas bench/saga runs, each begun with one request and `"wait": true`, over the benchmark's
// own kept-alive client (bench/http_client.h):
//
//   seq3    s1 -> s2 -> s3                 every action succeeds           200 committed
//   par4    s1 -> {s2, s3} -> s4           s2 and s3 run in parallel       200 committed
//   abort3  s1 -> s2 -> s3                 s3's action is refused (409):   200 aborted
//                                          s3, s2, s1 compensated in that order
//
// Each step names its participant's action and compensate URLs (runs.h gives them per
// set-up) and carries a small payload ({"amount": 1}; the callback body names the saga anyway).
// Anything but the expected final state (another state, an HTTP error, a timeout) is an error, with
// the reply's start.
//
// Thread-safety: Run may be called from any thread concurrently.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "http_client.h"
#include "txcoord/status.h"

namespace txcoord::bench {

enum class Workload { kSeq3, kPar4, kAbort3 };
std::string_view WorkloadName(Workload w);  // "seq3", "par4", "abort3"

// One step of a workload's DAG.
struct StepShape {
  std::string id;
  std::vector<std::string> depends_on;
  bool refused = false;  // the participant refuses its action (409)
};
std::vector<StepShape> StepsOf(Workload w);
// "committed", or "aborted" for abort3.
std::string_view ExpectedState(Workload w);

// A step's two URLs, as the begin request gives them.
struct StepUrls {
  std::string action;
  std::string compensate;
};

class Sagas {
 public:
  // `urls[i]` serves StepsOf(workload)[i]. `gtid_prefix` makes the gtids of this run unique.
  Sagas(ConnectionPool& coordinator, Workload workload, std::vector<StepUrls> urls,
        std::string gtid_prefix);

  // One saga, begun with wait=true, to its end. OK only when the coordinator answered 200 with
  // the workload's expected state; otherwise kUnavailable naming the gtid, the HTTP status and
  // the start of the reply.
  Status Run(int thread, int64_t seq) const;

  // The begin request's body.
  std::string BeginJson(std::string_view gtid) const;

 private:
  ConnectionPool& coordinator_;
  const Workload workload_;
  const std::string gtid_prefix_;
  std::string steps_json_;  // the "steps" array, the same for every saga of the run
};

}  // namespace txcoord::bench
