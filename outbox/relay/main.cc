// txrelay: publishes transactional outboxes to NATS JetStream (contract sections 5 and 6).
//
// Reads the flags and the config file (settings.h), checks that every source can be opened,
// runs the relay (txcoord/outbox/relay.h), serves /healthz and /metrics (http.h), and on SIGTERM
// or SIGINT drains what is in flight and exits.
//
// Exit codes (as txcoord's): 0 after a clean stop or --help; 1 when a source cannot be opened at
// start, the --listen address is unusable, or the drain did not finish; 2 for a bad flag, value
// or config file. Every failure prints exactly one line on stderr. NATS being down at start is
// not a failure: the relay retries with backoff and /healthz answers 503 meanwhile.
#include <Poco/Util/AbstractConfiguration.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <iostream>
#include <thread>

#include "http.h"
#include "settings.h"
#include "txcoord/outbox/relay.h"
#include "txcoord/process_log.h"
#include "txcoord/program.h"

namespace txcoord::relay {
namespace {

using program::kExitFailure;
using program::kExitOk;
using program::kExitUsage;
using program::OneLine;

sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

// Fails fast on a source that cannot be opened at all (a typo, a database that does not exist,
// a server that refuses us), rather than retrying it forever in the background.
Status CheckSources(const RelaySettings& settings) {
  for (size_t i = 0; i < settings.sources.size(); ++i) {
    auto source =
        outbox::MakeSource(settings.sources[i], outbox::RedactUri(settings.source_uris[i]));
    if (Status s = source->Connect(); !s.ok()) return s;
  }
  return Status::Ok();
}

int Serve(const RelaySettings& settings) {
  if (Status s = CheckSources(settings); !s.ok()) {
    spdlog::error("cannot start: {}", OneLine(s.message()));
    return kExitFailure;
  }
  Poco::Net::Context::Ptr tls;
  if (!settings.tls.cert_file.empty()) {
    auto context = participant::NewServerContext(settings.tls);
    if (!context.ok()) {
      spdlog::error("cannot start: {}", OneLine(context.status().message()));
      return kExitFailure;
    }
    tls = *context;
  }
  auto socket = ListenOn(settings.listen, tls);
  if (!socket.ok()) {
    spdlog::error("cannot start: {}", OneLine(socket.status().message()));
    return kExitFailure;
  }
  std::vector<std::string> names;
  for (const std::string& uri : settings.source_uris) names.push_back(outbox::RedactUri(uri));
  outbox::Relay relay(settings.sources.size(),
                      outbox::Relay::DefaultParts(settings.sources, names, settings.bus),
                      settings.bus.subject_prefix, settings.relay);
  relay.Start();
  StatusServer http(relay);
  http.Start(*socket);
  const std::string bound = socket->address().toString();
  spdlog::info("txrelay {} serving /healthz and /metrics on {}; {} source(s), NATS {}, stream {}",
               TXCOORD_VERSION, bound, names.size(), settings.bus.url, settings.bus.stream);
  // The line scripts and tests wait for; with port 0 it is the only place the port shows.
  std::cout << "txrelay listening on " << bound << std::endl;

  const sigset_t stop = StopSignals();
  int signal = 0;
  while (sigwait(&stop, &signal) != 0) {
  }
  spdlog::info("{} received: draining what is in flight, then stopping",
               signal == SIGTERM ? "SIGTERM" : "SIGINT");
  // A second signal, or a drain that hangs past its bound, ends the process at once.
  const auto limit = settings.relay.drain_timeout + std::chrono::seconds(5);
  std::thread([stop, limit] {
    int again = 0;
    timespec timeout{static_cast<time_t>(std::chrono::ceil<std::chrono::seconds>(limit).count()),
                     0};
    again = sigtimedwait(&stop, nullptr, &timeout);
    spdlog::warn(again > 0 ? "signal received again while stopping: exiting now"
                           : "still stopping after the drain timeout: exiting now");
    _exit(kExitFailure);
  }).detach();
  http.Stop();
  const bool drained = relay.Stop();
  if (!drained) {
    spdlog::error("stopped with messages still in flight; the next relay publishes them again");
    return kExitFailure;
  }
  spdlog::info("stopped");
  return kExitOk;
}

class TxrelayApp final : public program::FlagApp {
 public:
  TxrelayApp() : FlagApp("txrelay", TXCOORD_VERSION, Flags(), std::string(kUsage)) {}

 protected:
  // `sources` holds the --source flags, which repeat.
  int Run(const Poco::Util::AbstractConfiguration& config,
          const std::vector<std::string>& sources) override {
    auto settings = ResolveSettings(config, sources);
    if (!settings.ok()) {
      PrintUsageError(settings.status().message());
      return kExitUsage;
    }
    InitProcessLog("txrelay", settings->log_format);
    try {
      return Serve(*settings);
    } catch (const std::exception& e) {
      spdlog::critical("txrelay failed: {}", OneLine(e.what()));
      return kExitFailure;
    }
  }
};

}  // namespace
}  // namespace txcoord::relay

int main(int argc, char** argv) {
  // Before any thread exists, so every thread inherits the mask: the signals are taken by
  // sigwait only, never by a handler in the middle of a database or NATS call.
  const sigset_t stop = txcoord::relay::StopSignals();
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  signal(SIGPIPE, SIG_IGN);

  txcoord::relay::TxrelayApp app;
  return txcoord::program::RunApp(app, argc, argv);
}
