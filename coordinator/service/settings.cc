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
#include <fstream>
#include <variant>

namespace txcoord::service {
namespace {

// The one table of flags: the option parser, --help and the config-file key check all read it,
// so a flag cannot be added to one and forgotten in another.
struct FlagSpec {
  const char* name = nullptr;
  const char* argument = nullptr;  // nullptr: the flag takes no value
  const char* help = nullptr;
  bool repeatable = false;
  bool config_key = true;  // may also be set in a config file
};

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
     "participant URLs must start with PREFIX; repeatable, comma-separated in a config file "
     "(default: loopback only; enforced once the /v1/ API is served)",
     true},
    {"token-file", "FILE",
     "API tokens required on /v1/ requests (checked readable now; used once the /v1/ API is "
     "served)"},
    {"callback-secret-file", "FILE",
     "secret that signs callbacks to participants (checked readable now; used once the /v1/ "
     "API is served)"},
    {"log-format", "text|json", "stderr log lines as text or as JSON objects (default text)"},
    {"max-threads", "N",
     "HTTP connections served at once, 1..1024; a kept-alive connection holds one (default 32)"},
    {"max-queued", "N",
     "accepted connections waiting for a thread, 1..65536; further ones are closed unanswered "
     "(default 128)"},
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

// Loopback only, as the contract requires by default.
const std::vector<std::string>& DefaultAllowUrlPrefixes() {
  static const std::vector<std::string> prefixes = {
      "http://127.0.0.1:",  "http://localhost:",  "http://[::1]:",
      "https://127.0.0.1:", "https://localhost:", "https://[::1]:"};
  return prefixes;
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

// The files themselves are read by the transaction API; checking now means a typo in a path
// stops the service at start rather than on the first request that needs the file.
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

std::vector<std::string> SplitCommaList(const std::string& text) {
  Poco::StringTokenizer tokens(
      text, ",", Poco::StringTokenizer::TOK_TRIM | Poco::StringTokenizer::TOK_IGNORE_EMPTY);
  return {tokens.begin(), tokens.end()};
}

}  // namespace

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
      "usage: txcoord [--listen HOST:PORT] [--store URI] [--config FILE] [flags]\n"
      "Runs the txcoord transaction coordinator. Serves GET /healthz; the /v1/ transaction API\n"
      "comes in a later version. Stops cleanly on SIGTERM or SIGINT.\n"
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
                  Poco::Util::AbstractConfiguration& flags, std::vector<std::string>& allow_urls) {
  const FlagSpec* flag = FindFlag(name);
  if (flag == nullptr || flag->argument == nullptr) return Status::Ok();
  // Poco takes the next argument as the value whatever it is, so `--store --listen x` would
  // store "--listen". No valid value starts with "--": the value was forgotten.
  if (value.starts_with("--")) {
    return Status::InvalidArgument("--" + name + " needs a value (--" + name + " " +
                                   flag->argument + "), got the flag " + value);
  }
  if (name == "allow-url") {
    allow_urls.push_back(value);
  } else {
    flags.setString(name, value);
  }
  return Status::Ok();
}

Result<Poco::Util::AbstractConfiguration::Ptr> LoadConfigFile(const std::string& path) {
  Poco::Util::AbstractConfiguration::Ptr file;
  const bool ini = Poco::toLower(std::filesystem::path(path).extension().string()) == ".ini";
  // Poco reports a missing file as an exception, and reads a directory as an empty file.
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
    Poco::Util::AbstractConfiguration::Keys subkeys;  // "listen.port" is not "listen"
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

Result<ServiceSettings> ResolveSettings(const Poco::Util::AbstractConfiguration& config,
                                        const std::vector<std::string>& allow_urls_from_flags) {
  // Raw strings: values are taken as written, without Poco's ${...} expansion.
  auto get = [&config](const std::string& key, std::string_view fallback) {
    return config.getRawString(key, std::string(fallback));
  };
  ServiceSettings settings;

  auto listen = ParseListenAddress(get("listen", kDefaultListen));
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
  if (settings.allow_url_prefixes.empty()) settings.allow_url_prefixes = DefaultAllowUrlPrefixes();
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

  const std::string log_format = get("log-format", "text");
  if (log_format == "text") {
    settings.log_format = LogFormat::kText;
  } else if (log_format == "json") {
    settings.log_format = LogFormat::kJson;
  } else {
    return Status::InvalidArgument("--log-format \"" + log_format + "\" is neither text nor json");
  }

  auto max_threads = ParseIntInRange("max-threads", get("max-threads", "32"), 1, 1024);
  if (!max_threads.ok()) return max_threads.status();
  settings.max_threads = *max_threads;
  auto max_queued = ParseIntInRange("max-queued", get("max-queued", "128"), 1, 65536);
  if (!max_queued.ok()) return max_queued.status();
  settings.max_queued = *max_queued;
  return settings;
}

Result<Poco::Net::SocketAddress> ParseListenAddress(std::string_view text) {
  auto bad = [text](std::string_view why) {
    return Status::InvalidArgument("--listen \"" + std::string(text) + "\" " + std::string(why) +
                                   "; use HOST:PORT, e.g. 127.0.0.1:8470 or [::1]:8470");
  };
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return bad("has no port");
  std::string_view host = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  if (host.starts_with('[')) {
    if (!host.ends_with(']')) return bad("has an unclosed [");
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return bad("needs brackets around an IPv6 address");
  }
  if (host.empty()) return bad("has no host");
  int port = 0;
  const char* end = port_text.data() + port_text.size();
  auto [ptr, ec] = std::from_chars(port_text.data(), end, port);
  if (port_text.empty() || ec != std::errc() || ptr != end || port < 0 || port > 65535) {
    return bad("has no port number from 0 to 65535");
  }
  try {
    return Poco::Net::SocketAddress(std::string(host), static_cast<Poco::UInt16>(port));
  } catch (const Poco::Exception& e) {
    return bad("names no usable host (" + e.displayText() + ")");
  }
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
