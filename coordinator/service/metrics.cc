#include "metrics.h"

#include <string_view>

namespace txcoord::service {
namespace {

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
