#include "settings.h"

#include <Poco/String.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <variant>

#include "txcoord/saga/definition.h"

namespace txcoord::service {
namespace {

// The one table of flags (txcoord/program.h): the option parser, --help and the config-file key
// check all read it.
using program::FlagSpec;

constexpr FlagSpec kFlags[] = {
    {"listen", "HOST:PORT",
     "address to serve HTTP on; port 0 picks a free one (default 127.0.0.1:8470)"},
    {"store", "URI",
     "the durable log: sqlite://PATH or postgresql://USER@HOST:PORT/DB "
     "(default sqlite://./txcoord-data/txcoord.db)"},
    {"config", "FILE",
     "read settings from FILE, \"key = value\" lines named like these flags (.ini also "
     "works); flags override it",
     false, false},
    {"allow-url", "PREFIX",
     "participant URLs must start with PREFIX, else the request gets 403; repeatable, "
     "comma-separated in a config file (default: loopback only, http(s)://127.0.0.1:, "
     "localhost: and [::1]:)",
     true},
    {"token-file", "FILE",
     "API tokens, one per line (blank lines and # comments ignored); when set, every /v1/ "
     "request needs \"Authorization: Bearer TOKEN\" (default: no token needed)"},
    {"callback-secret-file", "FILE",
     "secret that signs callbacks to participants (Tx-Signature): the file's content without "
     "its trailing newline (default: callbacks are not signed)"},
    {"tls-cert", "FILE",
     "serve HTTPS with this PEM certificate (chain); needs --tls-key (default: plain HTTP)"},
    {"tls-key", "FILE", "the PEM private key of --tls-cert"},
    {"tls-client-ca", "FILE",
     "with --tls-cert: require every client to present a certificate signed by a CA in this "
     "PEM file (mutual TLS; default: no client certificate asked)"},
    {"callback-ca", "FILE",
     "CAs (PEM) that https participants' certificates must chain to (default: the system's "
     "CAs); the host name is always verified"},
    {"callback-cert", "FILE",
     "client certificate (PEM) presented to https participants that require one; needs "
     "--callback-key"},
    {"callback-key", "FILE", "the PEM private key of --callback-cert"},
    {"log-format", "text|json", "stderr log lines as text or as JSON objects (default text)"},
    {"max-threads", "N",
     "HTTP connections served at once, 1..1024; a kept-alive connection holds one until it "
     "idles out after 15 s, so allow one per client connection (default 128)"},
    {"max-queued", "N",
     "accepted connections waiting for a thread, 1..65536; further ones get 503 (default 128)"},
    {"max-in-flight", "N",
     "/v1/ requests handled at once, 1..1024; further ones get 503 at once (default: "
     "max-threads minus an eighth, which keeps threads for /healthz and /metrics)"},
    {"max-body-bytes", "N",
     "largest request body, 1024..67108864; larger ones get 413 (default 1048576)"},
    {"max-live-transactions", "N",
     "unfinished transactions held at once, 1..10000000; further begins get 503 "
     "(default 100000)"},
    {"default-timeout-ms", "MS",
     "first-phase timeout of a transaction whose begin gives no timeout_ms, 1..86400000 "
     "(default 10000)"},
    {"callback-timeout-ms", "MS",
     "budget of one callback to a participant: connect, send, reply, 1..600000 (default 5000)"},
    {"retry-initial-ms", "MS",
     "first retry delay ceiling of a failed callback, and the interval after a 425, "
     "1..600000 (default 100)"},
    {"retry-max-ms", "MS",
     "cap of the exponential backoff between callback retries, retry-initial-ms..86400000 "
     "(default 5000)"},
    {"recovery-interval-ms", "MS",
     "how often the log is searched for unfinished transactions no thread drives, "
     "10..86400000 (default 5000)"},
    {"one-phase", "on|off",
     "skip prepare for a 2pc transaction with a single branch (commit with Tx-One-Phase: true, "
     "docs/contract-additions.md); off for participants that do not know that header "
     "(default on)"},
    {"version", nullptr, "print the version and exit", false, false},
    {"help", nullptr, "print this help and exit", false, false},
};

const program::FlagTable kFlagTable(kFlags);

using program::ParseIntInRange;
using program::SplitCommaList;

// Checked here so that a typo in a path is reported with the other settings; main reads the
// files (ApiTokens::Load, ReadCallbackSecret).
Status CheckReadableFile(std::string_view flag, const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return Status::InvalidArgument("--" + std::string(flag) + " " + path +
                                   " is not a readable file" +
                                   (ec ? ": " + ec.message() : std::string()));
  }
  std::ifstream in(path);
  if (!in) {
    return Status::InvalidArgument("cannot read --" + std::string(flag) + " " + path);
  }
  return Status::Ok();
}

}  // namespace

const program::FlagTable& Flags() { return kFlagTable; }

Result<ServiceSettings> ResolveSettings(const Poco::Util::AbstractConfiguration& config,
                                        const std::vector<std::string>& allow_urls_from_flags) {
  // Raw strings: values are taken as written, without Poco's ${...} expansion.
  auto get = [&config](const std::string& key, std::string_view fallback) {
    return config.getRawString(key, std::string(fallback));
  };
  ServiceSettings settings;

  auto listen =
      program::ParseListenAddress(get("listen", kDefaultListen), "127.0.0.1:8470 or [::1]:8470");
  if (!listen.ok()) return listen.status();
  settings.listen = *listen;

  settings.store_uri = get("store", kDefaultStore);
  auto store = coordinator::ParseStoreUri(settings.store_uri);
  if (!store.ok()) {
    // Not ParseStoreUri's message: it quotes the URI, password and all.
    return Status::InvalidArgument("--store \"" + RedactStoreUri(settings.store_uri) +
                                   "\" is not a store URI; use sqlite://PATH (sqlite:///abs/x.db) "
                                   "or postgresql://USER@HOST:PORT/DB");
  }
  settings.store = std::move(store).value();

  settings.allow_url_prefixes =
      allow_urls_from_flags.empty() ? SplitCommaList(get("allow-url", "")) : allow_urls_from_flags;
  if (settings.allow_url_prefixes.empty())
    settings.allow_url_prefixes = saga::UrlPolicy{}.allowed_prefixes;
  for (const std::string& prefix : settings.allow_url_prefixes) {
    if (!prefix.starts_with("http://") && !prefix.starts_with("https://")) {
      return Status::InvalidArgument("--allow-url \"" + prefix +
                                     "\" must start with http:// or https://");
    }
  }

  settings.token_file = get("token-file", "");
  if (!settings.token_file.empty()) {
    TXCOORD_RETURN_IF_ERROR(CheckReadableFile("token-file", settings.token_file));
  }
  settings.callback_secret_file = get("callback-secret-file", "");
  if (!settings.callback_secret_file.empty()) {
    TXCOORD_RETURN_IF_ERROR(
        CheckReadableFile("callback-secret-file", settings.callback_secret_file));
  }

  settings.tls.cert_file = get("tls-cert", "");
  settings.tls.key_file = get("tls-key", "");
  settings.tls.client_ca_file = get("tls-client-ca", "");
  TXCOORD_RETURN_IF_ERROR(program::CheckServerTlsFlags(
      settings.tls.cert_file, settings.tls.key_file, settings.tls.client_ca_file));
  settings.callback_tls.ca_file = get("callback-ca", "");
  settings.callback_tls.cert_file = get("callback-cert", "");
  settings.callback_tls.key_file = get("callback-key", "");
  if (settings.callback_tls.cert_file.empty() != settings.callback_tls.key_file.empty()) {
    return Status::InvalidArgument(
        "--callback-cert and --callback-key go together: give both or neither");
  }

  auto log_format = program::ParseLogFormat(get("log-format", "text"));
  if (!log_format.ok()) return log_format.status();
  settings.log_format = *log_format;

  const std::string one_phase = get("one-phase", "on");
  if (one_phase == "on" || one_phase == "off") {
    settings.one_phase = one_phase == "on";
  } else {
    return Status::InvalidArgument("--one-phase \"" + one_phase + "\" is neither on nor off");
  }

  // Each numeric flag: its name, default, range, and where it goes.
  struct IntFlag {
    const char* name;
    const char* fallback;
    int min;
    int max;
    int* value;
  };
  int max_body_bytes = 0;
  const IntFlag int_flags[] = {
      {"max-threads", "128", 1, 1024, &settings.max_threads},
      {"max-queued", "128", 1, 65536, &settings.max_queued},
      {"max-body-bytes", "1048576", 1024, 64 * 1024 * 1024, &max_body_bytes},
      {"max-live-transactions", "100000", 1, 10'000'000, &settings.max_live_transactions},
      {"default-timeout-ms", "10000", 1, 86'400'000, &settings.default_timeout_ms},
      {"callback-timeout-ms", "5000", 1, 600'000, &settings.callback_timeout_ms},
      {"retry-initial-ms", "100", 1, 600'000, &settings.retry_initial_ms},
      {"retry-max-ms", "5000", 1, 86'400'000, &settings.retry_max_ms},
      {"recovery-interval-ms", "5000", 10, 86'400'000, &settings.recovery_interval_ms},
  };
  for (const IntFlag& flag : int_flags) {
    auto value = ParseIntInRange(flag.name, get(flag.name, flag.fallback), flag.min, flag.max);
    if (!value.ok()) return value.status();
    *flag.value = *value;
  }
  settings.max_body_bytes = static_cast<size_t>(max_body_bytes);
  if (settings.retry_max_ms < settings.retry_initial_ms) {
    return Status::InvalidArgument("--retry-max-ms " + std::to_string(settings.retry_max_ms) +
                                   " is below --retry-initial-ms " +
                                   std::to_string(settings.retry_initial_ms) +
                                   "; the cap must be at least the first delay");
  }
  // An eighth of the threads stays free for /healthz and /metrics when the API is saturated.
  const std::string in_flight_default =
      std::to_string(std::max(1, settings.max_threads - settings.max_threads / 8));
  auto max_in_flight =
      ParseIntInRange("max-in-flight", get("max-in-flight", in_flight_default), 1, 1024);
  if (!max_in_flight.ok()) return max_in_flight.status();
  settings.max_in_flight = *max_in_flight;
  return settings;
}

Result<std::string> ReadCallbackSecret(const std::string& path) {
  std::error_code ec;
  std::ifstream in(path, std::ios::binary);
  if (!std::filesystem::is_regular_file(path, ec) || !in) {
    return Status::InvalidArgument("cannot read --callback-secret-file " + path);
  }
  std::string secret((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return Status::InvalidArgument("cannot read --callback-secret-file " + path);
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.empty()) {
    return Status::InvalidArgument("--callback-secret-file " + path +
                                   " is empty; put the secret shared with the participants in it");
  }
  return secret;
}

std::string RedactStoreUri(std::string_view uri) {
  std::string out(uri);
  // A SQLite path is shown as given, even with an '@' in it. Anything else, even a misspelled
  // URI or a libpq "key=value" string, may carry credentials.
  if (out.starts_with("sqlite://")) return out;
  const size_t scheme_end = out.find("://");
  if (scheme_end != std::string::npos) {
    const size_t rest = scheme_end + 3;
    const size_t query = std::min(out.find('?', rest), out.size());
    // Over-redact rather than leak: everything between the first ':' and the last '@' before
    // the query counts as the password, even if an unescaped '/' in it blurs the URI's shape.
    const size_t at = out.rfind('@', query - 1);
    if (at != std::string::npos && at >= rest) {
      const size_t colon = out.find(':', rest);
      if (colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  // password=... as a query parameter (?password=x&...) or a libpq keyword (password=x ...).
  const std::string lower = Poco::toLower(out);
  constexpr std::string_view kKey = "password=";
  std::string redacted;
  size_t copied = 0;
  for (size_t key = lower.find(kKey); key != std::string::npos;
       key = lower.find(kKey, key + kKey.size())) {
    const size_t value = key + kKey.size();
    const size_t value_end = std::min(out.find_first_of("& \t", value), out.size());
    redacted += out.substr(copied, value - copied) + "***";
    copied = value_end;
  }
  return redacted + out.substr(copied);
}

std::string_view StoreKind(const coordinator::LogConfig& store) {
  return std::holds_alternative<coordinator::SqliteLogConfig>(store) ? "sqlite" : "postgresql";
}

}  // namespace txcoord::service
