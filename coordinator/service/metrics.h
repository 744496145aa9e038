// The service's own counters and the /metrics page (Prometheus text exposition format 0.0.4).
//
// Thread-safety: every method may be called from any thread concurrently; counters are relaxed
// atomics, so a page may show two counters from slightly different moments.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "txcoord/coordinator/coordinator.h"
#include "txcoord/coordinator/log.h"

namespace txcoord::service {

class HttpMetrics {
 public:
  // A request was answered with `status`; one outside 100..599, which is never sent, counts
  // as 599.
  void CountReply(int status);
  // A connection or request was refused for overload: by the connection filter (beyond the
  // threads and queue) or by the limit on requests in progress.
  void CountRejected() { rejected_.fetch_add(1, std::memory_order_relaxed); }

  int64_t replies(int status) const;
  int64_t rejected() const { return rejected_.load(std::memory_order_relaxed); }

 private:
  static constexpr int kMinStatus = 100;
  static constexpr int kMaxStatus = 599;
  std::array<std::atomic<int64_t>, kMaxStatus - kMinStatus + 1> replies_{};
  std::atomic<int64_t> rejected_{0};
};

// What /metrics shows besides the HTTP counters.
struct MetricsSnapshot {
  coordinator::Coordinator::Counters coordinator;
  coordinator::LogStats log;
  int requests_in_progress = 0;
};

// The page: HELP and TYPE lines, then `name{labels} value` lines.
std::string RenderMetrics(const MetricsSnapshot& snapshot, const HttpMetrics& http);

}  // namespace txcoord::service
