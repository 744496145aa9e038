// /metrics and /healthz content for the relay.
#include <cstdio>
#include <functional>

#include "txcoord/outbox/relay.h"

namespace txcoord::outbox {
namespace {

// A Prometheus label value: backslash, double quote and line feed escaped.
std::string LabelValue(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string JsonString(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", u);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string Number(double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.6g", value);
  return buffer;
}

}  // namespace

std::string PrometheusText(const std::vector<SourceStatus>& statuses) {
  struct Metric {
    const char* name;
    const char* type;
    const char* help;
    std::function<std::string(const SourceStatus&)> value;
  };
  const Metric metrics[] = {
      {"txrelay_leader", "gauge", "1 when this relay publishes the source, 0 as standby or down",
       [](const SourceStatus& s) {
         return std::string(s.role == SourceStatus::Role::kLeader ? "1" : "0");
       }},
      {"txrelay_source_up", "gauge", "1 when the source's database is connected",
       [](const SourceStatus& s) {
         return std::string(
             s.role == SourceStatus::Role::kLeader || s.role == SourceStatus::Role::kStandby ? "1"
                                                                                             : "0");
       }},
      {"txrelay_bus_up", "gauge", "1 when the leader's NATS connection is up",
       [](const SourceStatus& s) { return std::string(s.bus_connected ? "1" : "0"); }},
      {"txrelay_rows_pending", "gauge",
       "rows with published_at NULL (in flight included), read once per second",
       [](const SourceStatus& s) { return std::to_string(s.pending_rows); }},
      {"txrelay_oldest_unpublished_age_seconds", "gauge",
       "age of the oldest unpublished row: the relay's lag; 0 when none",
       [](const SourceStatus& s) { return Number(s.oldest_unpublished_age_s); }},
      {"txrelay_publish_rate_per_second", "gauge", "acknowledged publishes per second, last ~10 s",
       [](const SourceStatus& s) { return Number(s.publish_rate_per_s); }},
      {"txrelay_published_total", "counter", "rows acknowledged by the broker, duplicates included",
       [](const SourceStatus& s) { return std::to_string(s.published_total); }},
      {"txrelay_duplicates_total", "counter",
       "rows the broker acknowledged as duplicates (published before, e.g. by a crashed relay)",
       [](const SourceStatus& s) { return std::to_string(s.duplicates_total); }},
      {"txrelay_publish_errors_total", "counter", "publishes the broker refused (then retried)",
       [](const SourceStatus& s) { return std::to_string(s.publish_errors_total); }},
      {"txrelay_marked_total", "counter", "rows whose published_at this relay set",
       [](const SourceStatus& s) { return std::to_string(s.marked_total); }},
      {"txrelay_marks_put_off_total", "counter",
       "marks deferred because the service's writers held the database lock (SQLite)",
       [](const SourceStatus& s) { return std::to_string(s.marks_put_off_total); }},
      {"txrelay_bad_rows", "gauge",
       "rows held unpublished because they cannot become a message (see the log)",
       [](const SourceStatus& s) { return std::to_string(s.bad_rows); }},
      {"txrelay_in_flight", "gauge", "messages published and not yet acknowledged",
       [](const SourceStatus& s) { return std::to_string(s.in_flight); }},
      {"txrelay_buffered_rows", "gauge", "rows read and not yet acknowledged",
       [](const SourceStatus& s) { return std::to_string(s.buffered); }},
      {"txrelay_buffered_bytes", "gauge", "payload bytes of the rows read and not yet acknowledged",
       [](const SourceStatus& s) { return std::to_string(s.buffered_bytes); }},
      {"txrelay_bus_reconnects_total", "counter", "NATS connections made after the first",
       [](const SourceStatus& s) { return std::to_string(s.bus_reconnects_total); }},
      {"txrelay_source_reconnects_total", "counter", "database connections made after a failure",
       [](const SourceStatus& s) { return std::to_string(s.source_reconnects_total); }},
      {"txrelay_retention_removed_total", "counter",
       "published rows deleted or archived by retention",
       [](const SourceStatus& s) { return std::to_string(s.retention_removed_total); }},
  };
  std::string out;
  for (const Metric& m : metrics) {
    out += std::string("# HELP ") + m.name + " " + m.help + "\n";
    out += std::string("# TYPE ") + m.name + " " + m.type + "\n";
    for (const SourceStatus& s : statuses) {
      out += std::string(m.name) + "{source=\"" + LabelValue(s.name) + "\"} " + m.value(s) + "\n";
    }
  }
  return out;
}

bool Healthy(const std::vector<SourceStatus>& statuses, std::string* detail) {
  bool healthy = true;
  std::string json = "{\"sources\":[";
  for (size_t i = 0; i < statuses.size(); ++i) {
    const SourceStatus& s = statuses[i];
    const bool ok = s.role == SourceStatus::Role::kStandby ||
                    (s.role == SourceStatus::Role::kLeader && s.bus_connected);
    healthy = healthy && ok;
    if (i > 0) json += ",";
    json += "{\"source\":" + JsonString(s.name) + ",\"role\":" + JsonString(RoleName(s.role)) +
            ",\"bus_connected\":" + (s.bus_connected ? "true" : "false") +
            ",\"ok\":" + (ok ? "true" : "false") +
            ",\"pending_rows\":" + std::to_string(s.pending_rows) +
            ",\"bad_rows\":" + std::to_string(s.bad_rows);
    if (!s.last_error.empty()) json += ",\"last_error\":" + JsonString(s.last_error);
    json += "}";
  }
  json += std::string("],\"status\":") + (healthy ? "\"ok\"" : "\"unavailable\"") + "}";
  if (detail != nullptr) *detail = json;
  return healthy;
}

}  // namespace txcoord::outbox
