#include "metrics.h"

#include <cstdio>
#include <string>
#include <string_view>

namespace txcoord::service {
namespace {

// Milliseconds as seconds for an `le` label: 1 -> 0.001, 2500 -> 2.5, 10000 -> 10.
std::string FormatSeconds(int64_t ms) {
  std::string text = std::to_string(ms / 1000);
  if (ms % 1000 != 0) {
    char frac[8];
    std::snprintf(frac, sizeof frac, ".%03d", static_cast<int>(ms % 1000));
    std::string f(frac);
    while (f.back() == '0') f.pop_back();
    text += f;
  }
  return text;
}

std::string Label(std::string_view key, std::string_view value) {
  return std::string(key) + "=\"" + std::string(value) + "\"";
}

class Page {
 public:
  void Family(std::string_view name, std::string_view type, std::string_view help) {
    text_ += "# HELP ";
    text_ += name;
    text_ += ' ';
    text_ += help;
    text_ += "\n# TYPE ";
    text_ += name;
    text_ += ' ';
    text_ += type;
    text_ += '\n';
  }
  // `labels` is "" or `key="value",...` with values that need no escaping.
  void Sample(std::string_view name, std::string_view labels, int64_t value) {
    text_ += name;
    if (!labels.empty()) {
      text_ += '{';
      text_ += labels;
      text_ += '}';
    }
    text_ += ' ';
    text_ += std::to_string(value);
    text_ += '\n';
  }
  void Sample(std::string_view name, std::string_view labels, double value) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.6f", value);
    SampleText(name, labels, buf);
  }
  void SampleText(std::string_view name, std::string_view labels, std::string_view value) {
    text_ += name;
    if (!labels.empty()) {
      text_ += '{';
      text_ += labels;
      text_ += '}';
    }
    text_ += ' ';
    text_ += value;
    text_ += '\n';
  }
  // A histogram's _bucket (cumulative, with le), _sum and _count lines; `labels` as above.
  void Histogram(std::string_view name, const std::string& labels,
                 const coordinator::Coordinator::Histogram& h) {
    const std::string prefix = labels.empty() ? "" : labels + ",";
    int64_t cumulative = 0;
    for (size_t i = 0; i < h.buckets.size(); ++i) {
      cumulative += h.buckets[i];
      const std::string le =
          i < h.kBoundsMs.size() ? FormatSeconds(h.kBoundsMs[i]) : std::string("+Inf");
      Sample(std::string(name) + "_bucket", prefix + "le=\"" + le + "\"", cumulative);
    }
    Sample(std::string(name) + "_sum", labels, h.sum_seconds);
    Sample(std::string(name) + "_count", labels, h.count);
  }
  void One(std::string_view name, std::string_view type, std::string_view help, int64_t value) {
    Family(name, type, help);
    Sample(name, "", value);
  }
  std::string Take() { return std::move(text_); }

 private:
  std::string text_;
};

}  // namespace

void HttpMetrics::CountReply(int status) {
  if (status < kMinStatus || status > kMaxStatus) status = kMaxStatus;
  replies_[static_cast<size_t>(status - kMinStatus)].fetch_add(1, std::memory_order_relaxed);
}

int64_t HttpMetrics::replies(int status) const {
  if (status < kMinStatus || status > kMaxStatus) return 0;
  return replies_[static_cast<size_t>(status - kMinStatus)].load(std::memory_order_relaxed);
}

std::string RenderMetrics(const MetricsSnapshot& snapshot, const HttpMetrics& http) {
  const coordinator::Coordinator::Counters& c = snapshot.coordinator;
  Page page;
  page.One("txcoord_transactions_live", "gauge",
           "Transactions held in memory and driven by this process.", c.live);
  page.One("txcoord_transactions_begun_total", "counter", "Begins accepted since start.", c.begun);
  page.Family("txcoord_transactions_finished_total", "counter",
              "Transactions that reached a terminal state since start, by outcome.");
  page.Sample("txcoord_transactions_finished_total", "outcome=\"committed\"", c.committed);
  page.Sample("txcoord_transactions_finished_total", "outcome=\"aborted\"", c.aborted);
  using Counters = coordinator::Coordinator::Counters;
  page.Family("txcoord_transactions_total", "counter",
              "Transactions that reached a terminal state since start, by protocol and outcome.");
  for (size_t p = 0; p < Counters::kProtocols.size(); ++p) {
    const std::string protocol = Label("protocol", Counters::kProtocols[p]);
    page.Sample("txcoord_transactions_total", protocol + ",outcome=\"committed\"",
                c.finished[p][0]);
    page.Sample("txcoord_transactions_total", protocol + ",outcome=\"aborted\"", c.finished[p][1]);
  }
  page.Family("txcoord_transaction_duration_seconds", "histogram",
              "Begin to terminal state, by protocol, for transactions begun by this process.");
  for (size_t p = 0; p < Counters::kProtocols.size(); ++p)
    page.Histogram("txcoord_transaction_duration_seconds",
                   Label("protocol", Counters::kProtocols[p]), c.duration[p]);
  page.Family("txcoord_callback_duration_seconds", "histogram",
              "Callback round trips to participants (sent to reply, refusal or timeout), by "
              "phase.");
  for (size_t i = 0; i < Counters::kPhases.size(); ++i)
    page.Histogram("txcoord_callback_duration_seconds", Label("phase", Counters::kPhases[i]),
                   c.callback_latency[i]);
  page.Family("txcoord_callback_retries_total", "counter",
              "Callbacks sent again after a failed or unanswered attempt, by phase.");
  for (size_t i = 0; i < Counters::kPhases.size(); ++i)
    page.Sample("txcoord_callback_retries_total", Label("phase", Counters::kPhases[i]),
                c.retries[i]);
  page.Family("txcoord_transactions_by_state", "gauge",
              "Live transactions by their current non-terminal state.");
  for (const auto& [state, n] : c.by_state)
    page.Sample("txcoord_transactions_by_state", Label("state", state), n);
  page.One("txcoord_transactions_in_doubt", "gauge",
           "Live transactions whose participants may hold prepared work waiting for an outcome "
           "(preparing, can-committing, pre-committing, committing, aborting, compensating).",
           c.in_doubt);
  page.One("txcoord_transactions_recovered_total", "counter",
           "Unfinished transactions resumed from the log since start.", c.recovered);
  page.One("txcoord_transactions_parked_total", "counter",
           "Transactions dropped from memory after a failed append, left to recovery.", c.parked);
  page.One("txcoord_callbacks_total", "counter", "Callbacks sent to participants.", c.callbacks);
  page.One("txcoord_callback_failures_total", "counter",
           "Callbacks answered with anything but 2xx, or not answered.", c.callback_failures);
  page.One("txcoord_log_commits_total", "counter",
           "Write transactions committed by the log (one fsync or WAL flush each).",
           snapshot.log.commits);
  page.One("txcoord_log_appends_total", "counter", "Appends to the log.", snapshot.log.appends);

  page.Family("txcoord_http_requests_total", "counter", "HTTP requests answered, by status code.");
  for (int status = 100; status <= 599; ++status) {
    const int64_t n = http.replies(status);
    if (n != 0)
      page.Sample("txcoord_http_requests_total", "code=\"" + std::to_string(status) + "\"", n);
  }
  page.One("txcoord_http_rejected_total", "counter",
           "Connections and requests refused with 503 for overload.", http.rejected());
  page.One("txcoord_http_requests_in_progress", "gauge", "HTTP requests being handled now.",
           snapshot.requests_in_progress);
  return page.Take();
}

}  // namespace txcoord::service
