// The txcoord executable's settings: the flag table, the config file, and their validation.
//
// Every flag may also come from a config file (--config FILE) under the same name, without the
// dashes: `listen = 127.0.0.1:8470`. Flags given on the command line override the file. Values
// are read through a Poco LayeredConfiguration with two layers, flags above the file, so the
// precedence is the configuration's, not code spread over the program.
#pragma once

#include <Poco/Net/SocketAddress.h>
#include <Poco/Util/AbstractConfiguration.h>

#include <string>
#include <string_view>
#include <vector>

#include "txcoord/coordinator/log.h"
#include "txcoord/participant/tls.h"
#include "txcoord/process_log.h"
#include "txcoord/program.h"
#include "txcoord/status.h"

namespace txcoord::service {

inline constexpr std::string_view kDefaultListen = "127.0.0.1:8470";
inline constexpr std::string_view kDefaultStore = "sqlite://./txcoord-data/txcoord.db";

using LogFormat = txcoord::LogFormat;  // --log-format

// Everything the service needs, parsed and checked.
struct ServiceSettings {
  Poco::Net::SocketAddress listen;  // port 0: the kernel picks one
  std::string store_uri;            // as given; may hold a password, so log RedactStoreUri()
  coordinator::LogConfig store;
  // Participant URLs must start with one of these (saga::UrlPolicy's loopback-only list when
  // none is given).
  std::vector<std::string> allow_url_prefixes;
  // Paths only, checked to be readable; main reads them (ApiTokens::Load, ReadCallbackSecret).
  std::string token_file;
  std::string callback_secret_file;
  LogFormat log_format = LogFormat::kText;
  // TLS for the API (empty cert_file: plain HTTP) and for https callbacks (participant/tls.h).
  participant::TlsServerFiles tls;
  participant::TlsClientFiles callback_tls;
  // HTTP (http_server.h).
  int max_threads = 128;    // connections served at once (a kept-alive connection holds one)
  int max_queued = 128;     // accepted connections waiting for a thread; more get 503
  int max_in_flight = 112;  // /v1/ requests handled at once; more get 503
  size_t max_body_bytes = 1024 * 1024;
  // The coordinator (coordinator.h).
  int max_live_transactions = 100'000;
  int default_timeout_ms = 10'000;
  int callback_timeout_ms = 5'000;
  int retry_initial_ms = 100;
  int retry_max_ms = 5'000;
  int recovery_interval_ms = 5'000;
  // Single-branch 2pc without prepare (Tx-One-Phase); off for participants that predate it.
  bool one_phase = true;
};

// The flags (txcoord/program.h: the same table serves the option parser, --help and the config
// file's keys, where allow-url is a comma-separated list).
const program::FlagTable& Flags();

// The --help text above the flags.
inline constexpr std::string_view kUsage =
    "usage: txcoord [--listen HOST:PORT] [--store URI] [--config FILE] [flags]\n"
    "Runs the txcoord transaction coordinator: the /v1/transactions API, GET /healthz\n"
    "and GET /metrics. Resumes unfinished transactions from the store at start.\n"
    "Stops cleanly on SIGTERM or SIGINT: stops accepting, lets requests in progress finish.\n";

// Builds the settings from `config` (flags layered over the file) and checks every value.
// `allow_urls_from_flags`, when not empty, replaces the file's allow-url list.
Result<ServiceSettings> ResolveSettings(const Poco::Util::AbstractConfiguration& config,
                                        const std::vector<std::string>& allow_urls_from_flags);

// The callback secret: the file's content without trailing newlines. Errors
// (kInvalidArgument): unreadable, or empty.
Result<std::string> ReadCallbackSecret(const std::string& path);

// The store URI with any password replaced by "***", fit for logs and error messages:
// postgresql://app:s3cret@db/x?password=y → postgresql://app:***@db/x?password=***.
std::string RedactStoreUri(std::string_view uri);

// "sqlite" or "postgresql".
std::string_view StoreKind(const coordinator::LogConfig& store);

}  // namespace txcoord::service
