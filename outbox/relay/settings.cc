#include "settings.h"

#include <Poco/StringTokenizer.h>

#include <algorithm>
#include <charconv>
#include <filesystem>

namespace txcoord::relay {
namespace {

using std::chrono::milliseconds;

// The one table of flags (txcoord/program.h): the option parser, --help and the config-file key
// check read it.
using program::FlagSpec;

constexpr FlagSpec kFlags[] = {
    {"source", "URI",
     "an outbox to publish: sqlite:///PATH/x.db or postgresql://USER@HOST:PORT/DB; repeatable, "
     "comma-separated in a config file (at least one)",
     true},
    {"nats", "URL", "NATS server(s), comma-separated (default nats://127.0.0.1:4222)"},
    {"stream", "NAME", "JetStream stream, created when absent (default EVENTS)"},
    {"subject-prefix", "PREFIX",
     "subjects are PREFIX.{aggregate_type}.{event_type} (default events)"},
    {"listen", "HOST:PORT",
     "serve GET /healthz and /metrics here; port 0 picks a free one (default 127.0.0.1:8471)"},
    {"window", "N", "messages in flight per source, 1..65536 (default 4096)"},
    {"duplicate-window", "DURATION",
     "duplicate window of a stream the relay creates, at least 2m (default 2m)"},
    {"retention", "DURATION",
     "delete (or archive) published rows older than this; 0 keeps them (default 168h)"},
    {"retention-mode", "delete|archive",
     "archive moves old rows to txcoord_outbox_archive instead of deleting them (default delete)"},
    {"drain-timeout", "DURATION",
     "on SIGTERM, wait this long for the acks of messages in flight (default 10s)"},
    {"tls-cert", "FILE",
     "serve /healthz and /metrics over HTTPS with this PEM certificate; needs --tls-key "
     "(default: plain HTTP)"},
    {"tls-key", "FILE", "the PEM private key of --tls-cert"},
    {"tls-client-ca", "FILE",
     "with --tls-cert: require client certificates signed by a CA in this PEM file"},
    {"log-format", "text|json", "stderr log lines as text or JSON objects (default text)"},
    {"config", "FILE",
     "read settings from FILE, \"key = value\" lines named like these flags (.ini also works); "
     "flags override it",
     false, false},
    {"version", nullptr, "print the version and exit", false, false},
    {"help", nullptr, "print this help and exit", false, false},
};

const program::FlagTable kFlagTable(kFlags);

using program::ParseIntInRange;
using program::SplitCommaList;

// A NATS subject token or a stream name: letters, digits, '-' and '_'.
bool IsName(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

}  // namespace

Result<milliseconds> ParseDuration(std::string_view flag, std::string_view text) {
  const auto bad = [&] {
    return Status::InvalidArgument("--" + std::string(flag) + " \"" + std::string(text) +
                                   "\" is not a duration; use e.g. 250ms, 10s, 2m, 168h or 7d");
  };
  int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || value < 0) return bad();
  const std::string_view unit(ptr, static_cast<size_t>(end - ptr));
  int64_t factor_ms = 0;
  if (unit == "ms") {
    factor_ms = 1;
  } else if (unit == "s" || unit.empty()) {
    factor_ms = 1000;
  } else if (unit == "m") {
    factor_ms = 60'000;
  } else if (unit == "h") {
    factor_ms = 3'600'000;
  } else if (unit == "d") {
    factor_ms = 86'400'000;
  } else {
    return bad();
  }
  if (value > INT64_MAX / factor_ms / 1000) return bad();
  return milliseconds(value * factor_ms);
}

const program::FlagTable& Flags() { return kFlagTable; }

Result<RelaySettings> ResolveSettings(const Poco::Util::AbstractConfiguration& config,
                                      const std::vector<std::string>& sources_from_flags) {
  auto get = [&config](const std::string& key, std::string_view fallback) {
    return config.getRawString(key, std::string(fallback));
  };
  RelaySettings s;
  s.source_uris =
      sources_from_flags.empty() ? SplitCommaList(get("source", "")) : sources_from_flags;
  if (s.source_uris.empty()) {
    return Status::InvalidArgument(
        "no --source given; name at least one outbox, e.g. --source sqlite:///srv/app/app.db");
  }
  for (const std::string& uri : s.source_uris) {
    auto source = outbox::ParseSourceUri(uri);
    if (!source.ok()) return source.status();
    s.sources.push_back(std::move(source).value());
  }
  for (size_t i = 0; i < s.source_uris.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (s.source_uris[i] == s.source_uris[j]) {
        return Status::InvalidArgument("--source " + outbox::RedactUri(s.source_uris[i]) +
                                       " is given twice");
      }
    }
  }

  s.bus.url = get("nats", "nats://127.0.0.1:4222");
  if (!s.bus.url.starts_with("nats://") && !s.bus.url.starts_with("tls://")) {
    return Status::InvalidArgument("--nats \"" + s.bus.url +
                                   "\" is not a NATS URL; use nats://HOST:PORT");
  }
  s.bus.stream = get("stream", "EVENTS");
  if (!IsName(s.bus.stream)) {
    return Status::InvalidArgument("--stream \"" + s.bus.stream +
                                   "\" is not 1 to 64 characters of [A-Za-z0-9_-]");
  }
  s.bus.subject_prefix = get("subject-prefix", "events");
  {
    // One or more tokens separated by dots, no wildcards.
    bool ok = !s.bus.subject_prefix.empty();
    for (const auto& token : Poco::StringTokenizer(s.bus.subject_prefix, ".")) {
      ok = ok && IsName(token);
    }
    if (!ok || s.bus.subject_prefix.back() == '.') {
      return Status::InvalidArgument("--subject-prefix \"" + s.bus.subject_prefix +
                                     "\" is not dot-separated tokens of [A-Za-z0-9_-]");
    }
  }
  auto dup = ParseDuration("duplicate-window", get("duplicate-window", "2m"));
  if (!dup.ok()) return dup.status();
  if (*dup < std::chrono::minutes(2)) {
    return Status::InvalidArgument(
        "--duplicate-window must be at least 2m: a relay that crashed publishes its last "
        "rows again after restarting, and the window is what drops those repeats");
  }
  s.bus.duplicate_window = *dup;

  auto listen = program::ParseListenAddress(get("listen", "127.0.0.1:8471"), "127.0.0.1:8471");
  if (!listen.ok()) return listen.status();
  s.listen = *listen;

  auto window = ParseIntInRange("window", get("window", "4096"), 1, 65536);
  if (!window.ok()) return window.status();
  s.relay.window = *window;
  s.relay.max_buffered_rows = std::max(16384, *window * 4);

  auto retention = ParseDuration("retention", get("retention", "168h"));
  if (!retention.ok()) return retention.status();
  s.relay.retention = std::chrono::duration_cast<std::chrono::seconds>(*retention);
  const std::string mode = get("retention-mode", "delete");
  if (mode == "delete") {
    s.relay.retention_mode = outbox::RetentionMode::kDelete;
  } else if (mode == "archive") {
    s.relay.retention_mode = outbox::RetentionMode::kArchive;
  } else {
    return Status::InvalidArgument("--retention-mode \"" + mode +
                                   "\" is neither delete nor archive");
  }
  auto drain = ParseDuration("drain-timeout", get("drain-timeout", "10s"));
  if (!drain.ok()) return drain.status();
  s.relay.drain_timeout = *drain;

  s.tls.cert_file = get("tls-cert", "");
  s.tls.key_file = get("tls-key", "");
  s.tls.client_ca_file = get("tls-client-ca", "");
  TXCOORD_RETURN_IF_ERROR(
      program::CheckServerTlsFlags(s.tls.cert_file, s.tls.key_file, s.tls.client_ca_file));

  auto log_format = program::ParseLogFormat(get("log-format", "text"));
  if (!log_format.ok()) return log_format.status();
  s.log_format = *log_format;
  return s;
}

}  // namespace txcoord::relay
