// txcoord: the transaction coordinator service.
//
// Reads the flags and the config file (settings.h), opens the durable log, serves HTTP
// (http_server.h) and stops cleanly on SIGTERM or SIGINT (shutdown.h). The protocol engines
// and the transaction API are not wired in yet.
//
// Exit codes: 0 after a clean stop or --help; 1 when the store or the address is unusable, or a
// stop did not finish in time; 2 for a bad flag, value or config file; 128 + N when signal N
// arrives before serving began. Every failure prints exactly one line on stderr.
#include <Poco/Exception.h>
#include <Poco/Util/Application.h>
#include <Poco/Util/MapConfiguration.h>
#include <Poco/Util/OptionException.h>
#include <Poco/Util/OptionSet.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <iostream>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "http_server.h"
#include "logging.h"
#include "settings.h"
#include "shutdown.h"
#include "txcoord/coordinator/log.h"

namespace txcoord::service {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
// How long requests in progress may take to finish after a stop signal.
constexpr std::chrono::seconds kStopGrace{10};

// Flags sit above the config file: a lower number is a higher priority in Poco's
// LayeredConfiguration, and both are above Poco's own application and system layers.
constexpr int kFlagLayerPriority = Poco::Util::Application::PRIO_APPLICATION - 20;
constexpr int kFileLayerPriority = Poco::Util::Application::PRIO_APPLICATION - 10;

// Error texts from libraries (libpq's, say) may span lines; the contract promises one.
std::string OneLine(std::string_view text) {
  std::string line;
  for (const char c : text) {
    const bool space = c == '\n' || c == '\r' || c == '\t' || c == ' ';
    if (space && (line.empty() || line.back() == ' ')) continue;
    line.push_back(space ? ' ' : c);
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line;
}

// For mistakes found before logging is set up: a person reads these at a terminal.
void PrintUsageError(std::string_view message) {
  std::cerr << "txcoord: " << OneLine(message) << std::endl;
}

// Poco's messages name the flag without its dashes ("bogus", "listen requires HOST:PORT");
// these put them back and say what to do.
std::string DescribeOptionError(const Poco::Util::OptionException& e) {
  using namespace Poco::Util;
  const std::string see = "; see txcoord --help";
  const std::string& text = e.message();
  const std::string flag = (text.starts_with("-") ? "" : "--") + text.substr(0, text.find(' '));
  if (dynamic_cast<const UnknownOptionException*>(&e)) return "unknown flag " + flag + see;
  if (dynamic_cast<const MissingArgumentException*>(&e)) {
    const size_t requires_at = text.find(" requires ");
    const std::string value =
        requires_at == std::string::npos ? "VALUE" : text.substr(requires_at + 10);
    return flag + " needs a value: " + flag + " " + value;
  }
  if (dynamic_cast<const DuplicateOptionException*>(&e)) {
    return flag + " is given twice; only --allow-url may repeat";
  }
  if (dynamic_cast<const AmbiguousOptionException*>(&e)) {
    return flag + " is ambiguous; spell the flag out" + see;
  }
  if (dynamic_cast<const UnexpectedArgumentException*>(&e)) {
    return flag.substr(0, flag.find('=')) + " takes no value" + see;
  }
  return text;  // ours, from RecordFlag: already says what to do
}

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

int Serve(const ServiceSettings& settings, ShutdownSignals& signals) {
  auto log = coordinator::OpenLog(settings.store);
  if (!log.ok()) {
    spdlog::error("cannot start: {}", OneLine(Redacted(log.status().message(), settings)));
    return kExitFailure;
  }
  auto socket = ListenOn(settings.listen);
  if (!socket.ok()) {
    spdlog::error("cannot start: {}", OneLine(socket.status().message()));
    return kExitFailure;
  }
  HttpService http(**log, {.max_threads = settings.max_threads,
                           .max_queued = settings.max_queued,
                           .software_version = "txcoord/" TXCOORD_VERSION});
  http.Start(*socket);
  signals.Serving();
  const std::string bound = socket->address().toString();
  spdlog::info("txcoord {} serving on {} (store {}; {} threads, {} queued connections)",
               TXCOORD_VERSION, bound, DescribeStore(settings), settings.max_threads,
               settings.max_queued);
  // The line scripts and tests wait for; with port 0 it is the only place the port shows.
  std::cout << "txcoord listening on " << bound << std::endl;

  const int stop_signal = signals.WaitForStop();
  spdlog::info("{} received: finishing requests in progress, then stopping",
               SignalName(stop_signal));
  http.Stop();
  log->reset();  // closes the store
  spdlog::info("stopped");
  return kExitOk;
}

class TxcoordApp final : public Poco::Util::Application {
 public:
  TxcoordApp() { config().add(flags_, kFlagLayerPriority, /*writeable=*/false); }

 protected:
  void defineOptions(Poco::Util::OptionSet& options) override {
    Application::defineOptions(options);
    DefineFlags(options);
  }

  void handleOption(const std::string& name, const std::string& value) override {
    Application::handleOption(name, value);
    if (name == "help" || name == "version") {
      (name == "help" ? help_ : version_) = true;
      stopOptionsProcessing();
      return;
    }
    if (Status s = RecordFlag(name, value, *flags_, allow_urls_); !s.ok()) {
      throw Poco::Util::InvalidArgumentException(s.message());
    }
  }

  int main(const ArgVec& args) override {
    if (help_) {
      std::cout << HelpText() << std::flush;
      return kExitOk;
    }
    if (version_) {
      std::cout << "txcoord " TXCOORD_VERSION << std::endl;
      return kExitOk;
    }
    if (!args.empty()) {
      PrintUsageError("unexpected argument \"" + args.front() +
                      "\"; flags start with --, see txcoord --help");
      return kExitUsage;
    }
    if (flags_->hasProperty("config")) {
      auto file = LoadConfigFile(flags_->getRawString("config"));
      if (!file.ok()) {
        PrintUsageError(file.status().message());
        return kExitUsage;
      }
      config().add(*file, kFileLayerPriority, /*writeable=*/false);
    }
    auto settings = ResolveSettings(config(), allow_urls_);
    if (!settings.ok()) {
      PrintUsageError(settings.status().message());
      return kExitUsage;
    }
    InitLogging(settings->log_format);
    try {
      ShutdownSignals signals(kStopGrace);
      return Serve(*settings, signals);
    } catch (const std::exception& e) {
      // Poco's Application would log this through its own logger, which writes nowhere.
      spdlog::critical("txcoord failed: {}", OneLine(e.what()));
      return kExitFailure;
    }
  }

 private:
  Poco::AutoPtr<Poco::Util::MapConfiguration> flags_ = new Poco::Util::MapConfiguration;
  std::vector<std::string> allow_urls_;  // --allow-url repeats, so it is not a config key
  bool help_ = false;
  bool version_ = false;
};

}  // namespace
}  // namespace txcoord::service

int main(int argc, char** argv) {
  using txcoord::service::kExitUsage;
  txcoord::service::ShutdownSignals::BlockInThisThread();
  // A client that hangs up mid-reply must cost an exception in its thread, not the process.
  signal(SIGPIPE, SIG_IGN);

  txcoord::service::TxcoordApp app;
  try {
    app.init(argc, argv);
  } catch (const Poco::Util::OptionException& e) {
    txcoord::service::PrintUsageError(txcoord::service::DescribeOptionError(e));
    return kExitUsage;
  } catch (const Poco::Exception& e) {
    txcoord::service::PrintUsageError(e.displayText());
    return kExitUsage;
  }
  return app.run();
}
