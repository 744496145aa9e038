// txcoord: the transaction coordinator service.
//
// Reads the flags and the config file (settings.h), and wires the parts together: the durable
// log, the HTTP transport to participants, the Coordinator (which recovers unfinished
// transactions before the service listens), and the HTTP service with the transaction API
// (http_server.h). Stops cleanly on SIGTERM or SIGINT (shutdown.h), in this order: stop
// accepting connections and requests; stop driving transactions (Coordinator::Stop: waiting
// requests answer with their durable state, what is unfinished resumes at the next start); let
// the requests in progress finish and be answered; stop the transport; close the log.
//
// Exit codes: 0 after a clean stop or --help; 1 when the store or the address is unusable, or a
// stop did not finish in time; 2 for a bad flag, value or config file; 128 + N when signal N
// arrives before serving began. Every failure prints exactly one line on stderr.
#include <Poco/Util/AbstractConfiguration.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "api_tokens.h"
#include "http_server.h"
#include "settings.h"
#include "shutdown.h"
#include "txcoord/coordinator/coordinator.h"
#include "txcoord/coordinator/log.h"
#include "txcoord/coordinator/transport.h"
#include "txcoord/process_log.h"
#include "txcoord/program.h"

namespace txcoord::service {
namespace {

using program::kExitFailure;
using program::kExitOk;
using program::kExitUsage;
using program::OneLine;

// How long the stop may take after a stop signal. Waiting requests are woken by the stop, so
// only a hung store, or callbacks in progress (each bounded by --callback-timeout-ms), use it.
constexpr std::chrono::seconds kStopGrace{10};

// Store errors may quote the --store URI; its password must not reach the log.
std::string Redacted(std::string message, const ServiceSettings& settings) {
  const std::string redacted = RedactStoreUri(settings.store_uri);
  if (redacted == settings.store_uri) return message;
  for (size_t at = message.find(settings.store_uri); at != std::string::npos;
       at = message.find(settings.store_uri, at + redacted.size())) {
    message.replace(at, settings.store_uri.size(), redacted);
  }
  return message;
}

std::string DescribeStore(const ServiceSettings& settings) {
  if (const auto* sqlite = std::get_if<coordinator::SqliteLogConfig>(&settings.store)) {
    return "sqlite " + sqlite->path;
  }
  return "postgresql " + RedactStoreUri(settings.store_uri);
}

coordinator::CoordinatorOptions CoordinatorOptionsFrom(const ServiceSettings& settings) {
  coordinator::CoordinatorOptions options;
  options.engine.retry.initial = std::chrono::milliseconds(settings.retry_initial_ms);
  options.engine.retry.max = std::chrono::milliseconds(settings.retry_max_ms);
  options.engine.retry.callback = std::chrono::milliseconds(settings.callback_timeout_ms);
  options.url_policy.allowed_prefixes = settings.allow_url_prefixes;
  options.default_timeout_ms = settings.default_timeout_ms;
  options.recovery_interval = std::chrono::milliseconds(settings.recovery_interval_ms);
  options.engine.one_phase = settings.one_phase;
  options.max_live_transactions = settings.max_live_transactions;
  return options;
}

// The secrets, read once at start; `tokens` is empty without --token-file.
struct Secrets {
  ApiTokens tokens;
  std::string callback_secret;
};

int Serve(const ServiceSettings& settings, Secrets secrets, ShutdownSignals& signals) {
  auto log = coordinator::OpenLog(settings.store);
  if (!log.ok()) {
    spdlog::error("cannot start: {}", OneLine(Redacted(log.status().message(), settings)));
    return kExitFailure;
  }
  Poco::Net::Context::Ptr server_tls;
  if (!settings.tls.cert_file.empty()) {
    auto context = participant::NewServerContext(settings.tls);
    if (!context.ok()) {
      spdlog::error("cannot start: {}", OneLine(context.status().message()));
      return kExitFailure;
    }
    server_tls = *context;
  }
  auto callback_tls = participant::NewClientContext(settings.callback_tls);
  if (!callback_tls.ok()) {
    spdlog::error("cannot start: {}", OneLine(callback_tls.status().message()));
    return kExitFailure;
  }
  auto socket = ListenOn(settings.listen, server_tls);
  if (!socket.ok()) {
    spdlog::error("cannot start: {}", OneLine(socket.status().message()));
    return kExitFailure;
  }
  const std::unique_ptr<coordinator::CallbackTransport> transport = coordinator::NewHttpTransport(
      {.callback_secret = std::move(secrets.callback_secret), .tls_context = *callback_tls});
  coordinator::Coordinator coordinator(**log, *transport, coordinator::SystemClock(),
                                       CoordinatorOptionsFrom(settings));
  // Recovery runs before the listening line: a client that sees it may rely on every
  // transaction acknowledged before a crash being driven again.
  if (const Status started = coordinator.Start(); !started.ok()) {
    spdlog::error("cannot start: recovery failed: {}",
                  OneLine(Redacted(started.message(), settings)));
    transport->Shutdown();
    return kExitFailure;
  }
  const coordinator::Coordinator::Counters recovered = coordinator.counters();
  HttpService http(coordinator, **log, std::move(secrets.tokens),
                   {.max_threads = settings.max_threads,
                    .max_queued = settings.max_queued,
                    .max_in_flight = settings.max_in_flight,
                    .max_body_bytes = settings.max_body_bytes,
                    .software_version = "txcoord/" TXCOORD_VERSION});
  http.Start(*socket);
  signals.Serving();
  const std::string bound = socket->address().toString();
  spdlog::info(
      "txcoord {} serving on {} over {} (store {}; resumed {} unfinished transactions; {} threads, "
      "{} "
      "queued connections, {} API requests at once; API tokens {})",
      TXCOORD_VERSION, bound,
      server_tls.isNull()                   ? "HTTP"
      : settings.tls.client_ca_file.empty() ? "HTTPS"
                                            : "HTTPS with client certificates",
      DescribeStore(settings), recovered.recovered, settings.max_threads, settings.max_queued,
      std::min(settings.max_in_flight, settings.max_threads),
      settings.token_file.empty() ? "not required" : "required");
  // The line scripts and tests wait for; with port 0 it is the only place the port shows.
  std::cout << "txcoord listening on " << bound << std::endl;

  const int stop_signal = signals.WaitForStop();
  spdlog::info("{} received: finishing requests in progress, then stopping",
               SignalName(stop_signal));
  // The coordinator stops once no new request is admitted, so that requests waiting for an
  // outcome answer at once (see HttpService::Stop); it no longer calls participants after.
  http.Stop([&coordinator] { coordinator.Stop(); });
  transport->Shutdown();
  log->reset();  // closes the store
  spdlog::info("stopped");
  return kExitOk;
}

class TxcoordApp final : public program::FlagApp {
 public:
  TxcoordApp() : FlagApp("txcoord", TXCOORD_VERSION, Flags(), std::string(kUsage)) {}

 protected:
  // `allow_urls` holds the --allow-url flags, which repeat, so they are not a config key.
  int Run(const Poco::Util::AbstractConfiguration& config,
          const std::vector<std::string>& allow_urls) override {
    auto settings = ResolveSettings(config, allow_urls);
    if (!settings.ok()) {
      PrintUsageError(settings.status().message());
      return kExitUsage;
    }
    Secrets secrets;
    if (!settings->token_file.empty()) {
      auto tokens = ApiTokens::Load(settings->token_file);
      if (!tokens.ok()) {
        PrintUsageError(tokens.status().message());
        return kExitUsage;
      }
      secrets.tokens = std::move(tokens).value();
    }
    if (!settings->callback_secret_file.empty()) {
      auto secret = ReadCallbackSecret(settings->callback_secret_file);
      if (!secret.ok()) {
        PrintUsageError(secret.status().message());
        return kExitUsage;
      }
      secrets.callback_secret = std::move(secret).value();
    }
    InitProcessLog("txcoord", settings->log_format);
    try {
      ShutdownSignals signals(kStopGrace);
      return Serve(*settings, std::move(secrets), signals);
    } catch (const std::exception& e) {
      // Poco's Application would log this through its own logger, which writes nowhere.
      spdlog::critical("txcoord failed: {}", OneLine(e.what()));
      return kExitFailure;
    }
  }
};

}  // namespace
}  // namespace txcoord::service

int main(int argc, char** argv) {
  txcoord::service::ShutdownSignals::BlockInThisThread();
  // A client that hangs up mid-reply must cost an exception in its thread, not the process.
  signal(SIGPIPE, SIG_IGN);

  txcoord::service::TxcoordApp app;
  return txcoord::program::RunApp(app, argc, argv);
}
