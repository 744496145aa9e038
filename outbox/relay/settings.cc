#include "settings.h"

#include <Poco/Exception.h>
#include <Poco/String.h>
#include <Poco/StringTokenizer.h>
#include <Poco/Util/IniFileConfiguration.h>
#include <Poco/Util/Option.h>
#include <Poco/Util/PropertyFileConfiguration.h>

#include <algorithm>
#include <charconv>
#include <filesystem>

namespace txcoord::relay {
namespace {

using std::chrono::milliseconds;

// The one table of flags: the option parser, --help and the config-file key check read it.
struct FlagSpec {
  const char* name = nullptr;
  const char* argument = nullptr;  // nullptr: no value
  const char* help = nullptr;
  bool repeatable = false;
  bool config_key = true;
};

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

const FlagSpec* FindFlag(std::string_view name) {
  for (const FlagSpec& flag : kFlags) {
    if (name == flag.name) return &flag;
  }
  return nullptr;
}

std::string ConfigKeyList() {
  std::string keys;
  for (const FlagSpec& flag : kFlags) {
    if (!flag.config_key) continue;
    if (!keys.empty()) keys += ", ";
    keys += flag.name;
  }
  return keys;
}

Result<int> ParseIntInRange(std::string_view flag, std::string_view text, int min, int max) {
  int value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || value < min || value > max) {
    return Status::InvalidArgument("--" + std::string(flag) + " \"" + std::string(text) +
                                   "\" is not a whole number from " + std::to_string(min) + " to " +
                                   std::to_string(max));
  }
  return value;
}

// A NATS subject token or a stream name: letters, digits, '-' and '_'.
bool IsName(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

std::vector<std::string> SplitCommaList(const std::string& text) {
  Poco::StringTokenizer tokens(
      text, ",", Poco::StringTokenizer::TOK_TRIM | Poco::StringTokenizer::TOK_IGNORE_EMPTY);
  return {tokens.begin(), tokens.end()};
}

Result<Poco::Net::SocketAddress> ParseListenAddress(std::string_view text) {
  auto bad = [text](std::string_view why) {
    return Status::InvalidArgument("--listen \"" + std::string(text) + "\" " + std::string(why) +
                                   "; use HOST:PORT, e.g. 127.0.0.1:8471");
  };
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return bad("has no port");
  std::string_view host = text.substr(0, colon);
  if (host.starts_with('[') && host.ends_with(']')) host = host.substr(1, host.size() - 2);
  if (host.empty()) return bad("has no host");
  auto port = ParseIntInRange("listen", text.substr(colon + 1), 0, 65535);
  if (!port.ok()) return bad("has no port number from 0 to 65535");
  try {
    return Poco::Net::SocketAddress(std::string(host), static_cast<Poco::UInt16>(*port));
  } catch (const Poco::Exception& e) {
    return bad("names no usable host (" + e.displayText() + ")");
  }
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

void DefineFlags(Poco::Util::OptionSet& options) {
  for (const FlagSpec& flag : kFlags) {
    Poco::Util::Option option(flag.name, "", flag.help);
    option.required(false).repeatable(flag.repeatable);
    if (flag.argument != nullptr) option.argument(flag.argument);
    options.addOption(option);
  }
}

std::string HelpText() {
  std::string text =
      "usage: txrelay --source URI [--source URI ...] [--nats URL] [--stream NAME]\n"
      "               [--subject-prefix PREFIX] [--listen HOST:PORT] [--config FILE] [flags]\n"
      "Publishes the rows of transactional outboxes (table txcoord_outbox) to NATS JetStream,\n"
      "in id order per aggregate, and sets published_at once the broker acknowledged them.\n"
      "Several relays may run on one outbox: one publishes, the others stand by and take over.\n"
      "Serves GET /healthz and GET /metrics. Stops cleanly on SIGTERM or SIGINT.\n"
      "\n"
      "flags (also --flag=VALUE):\n";
  for (const FlagSpec& flag : kFlags) {
    std::string left = std::string("  --") + flag.name;
    if (flag.argument != nullptr) left += std::string(" ") + flag.argument;
    left.resize(std::max<size_t>(left.size() + 2, 34), ' ');
    text += left + flag.help + "\n";
  }
  return text;
}

Status RecordFlag(const std::string& name, const std::string& value,
                  Poco::Util::AbstractConfiguration& flags, std::vector<std::string>& sources) {
  const FlagSpec* flag = FindFlag(name);
  if (flag == nullptr || flag->argument == nullptr) return Status::Ok();
  if (value.starts_with("--")) {
    return Status::InvalidArgument("--" + name + " needs a value (--" + name + " " +
                                   flag->argument + "), got the flag " + value);
  }
  if (name == "source") {
    sources.push_back(value);
  } else {
    flags.setString(name, value);
  }
  return Status::Ok();
}

Result<Poco::Util::AbstractConfiguration::Ptr> LoadConfigFile(const std::string& path) {
  Poco::Util::AbstractConfiguration::Ptr file;
  const bool ini = Poco::toLower(std::filesystem::path(path).extension().string()) == ".ini";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return Status::InvalidArgument("cannot read --config " + path + ": not a readable file");
  }
  try {
    if (ini) {
      file = new Poco::Util::IniFileConfiguration(path);
    } else {
      file = new Poco::Util::PropertyFileConfiguration(path);
    }
  } catch (const Poco::Exception& e) {
    return Status::InvalidArgument("cannot read --config " + path + ": " + e.displayText());
  }
  Poco::Util::AbstractConfiguration::Keys keys;
  file->keys(keys);
  for (const std::string& key : keys) {
    const FlagSpec* flag = FindFlag(key);
    Poco::Util::AbstractConfiguration::Keys subkeys;
    file->keys(key, subkeys);
    if (flag == nullptr || !flag->config_key || !subkeys.empty()) {
      const std::string shown = subkeys.empty() ? key : key + "." + subkeys.front();
      return Status::InvalidArgument("--config " + path + ": unknown key \"" + shown +
                                     "\"; the keys are " + ConfigKeyList() +
                                     (ini ? ", outside any [section]" : ""));
    }
  }
  return file;
}

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

  auto listen = ParseListenAddress(get("listen", "127.0.0.1:8471"));
  if (!listen.ok()) return listen.status();
  s.listen = *listen;

  auto window = ParseIntInRange("window", get("window", "4096"), 1, 65536);
  if (!window.ok()) return window.status();
  s.relay.window = *window;
  s.relay.max_buffered_rows = std::max(16384, *window * 4);
  s.bus.max_pending = *window * 2 + 64;

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
  if (s.tls.cert_file.empty() != s.tls.key_file.empty()) {
    return Status::InvalidArgument("--tls-cert and --tls-key go together: give both or neither");
  }
  if (s.tls.cert_file.empty() && !s.tls.client_ca_file.empty()) {
    return Status::InvalidArgument("--tls-client-ca needs --tls-cert and --tls-key");
  }

  const std::string log_format = get("log-format", "text");
  if (log_format == "text") {
    s.log_format = LogFormat::kText;
  } else if (log_format == "json") {
    s.log_format = LogFormat::kJson;
  } else {
    return Status::InvalidArgument("--log-format \"" + log_format + "\" is neither text nor json");
  }
  return s;
}

}  // namespace txcoord::relay
