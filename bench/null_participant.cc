// null_participant: a participant that keeps no storage, for bench/txn. It answers every
// callback at once, so a run against it measures the coordinator (and the HTTP stack), not a
// participant's database: the set-up DTM calls "0SQL".
//
//   null_participant [--listen HOST:PORT] [--prepare-reply 200|425] [--max-threads N]
//
// It is the participant SDK's CallbackServer (participant/endpoint.h), so each callback is parsed
// and checked as a real participant's would be, with a handler that does nothing:
//   POST /2pc/{phase}, /tcc/{phase}   200 {"result":"done"}; with --prepare-reply 425 a prepare
//                                     is answered 425 (in progress) instead, which keeps 2pc
//                                     transactions in flight (bench/txn's in-flight run)
//   POST /app/try                     200 {"result":"done"}: the tcc Try, as the bank example's
//   POST /app/noop                    200 with an empty body: the empty handler of the HTTP
//                                     round-trip floor
// Prints "null_participant listening on HOST:PORT" once serving; exits 0 on SIGTERM or SIGINT,
// 1 when the address cannot be bound, 2 for a bad flag.
#include <signal.h>

#include <charconv>
#include <cstdio>
#include <iostream>
#include <string>

#include "flags.h"
#include "txcoord/participant/endpoint.h"
#include "txcoord/participant/handler.h"

namespace txcoord::bench {
namespace {

using participant::CallbackContext;
using participant::PhaseResult;

constexpr char kUsage[] = R"(usage: null_participant [options]

A storage-free participant for bench/txn: answers every 2pc and tcc callback (base paths /2pc
and /tcc) at once, the tcc Try at POST /app/try, and POST /app/noop with an empty 200.

  --listen HOST:PORT     address to serve on (default 127.0.0.1:0: a free port)
  --prepare-reply CODE   200 (default) or 425: answer every prepare "in progress"
  --max-threads N        connections served at once (default 512); each kept-alive
                         connection holds one, so allow one per client connection
  --help                 this text

Prints "null_participant listening on HOST:PORT"; exits 0 on SIGTERM or SIGINT.
)";

class NullHandler final : public participant::BranchHandler {
 public:
  explicit NullHandler(bool prepare_in_progress) : prepare_in_progress_(prepare_in_progress) {}
  PhaseResult Prepare(const CallbackContext&) override {
    return prepare_in_progress_ ? PhaseResult::InProgress() : PhaseResult::Done();
  }
  PhaseResult Commit(const CallbackContext&) override { return PhaseResult::Done(); }
  PhaseResult Abort(const CallbackContext&) override { return PhaseResult::Done(); }

 private:
  const bool prepare_in_progress_;
};

struct Flags {
  std::string listen = "127.0.0.1:0";
  bool prepare_in_progress = false;
  int max_threads = 512;
  bool help = false;
};

Result<Flags> ParseFlags(int argc, char** argv) {
  Flags f;
  FlagReader flags(argc, argv, {"--listen", "--prepare-reply", "--max-threads"}, /*json=*/false);
  while (flags.Next()) {
    const std::string_view name = flags.name();
    const std::string_view value = flags.value();
    if (name == "--listen") {
      f.listen = std::string(value);
    } else if (name == "--prepare-reply") {
      if (value != "200" && value != "425") {
        return Status::InvalidArgument("--prepare-reply wants 200 or 425, got \"" +
                                       std::string(value) + "\"");
      }
      f.prepare_in_progress = value == "425";
    } else if (name == "--max-threads") {
      auto n = ParseCount(name, value, 1, 4096);
      if (!n.ok()) return n.status();
      f.max_threads = *n;
    }
  }
  if (!flags.status().ok()) return flags.status();
  f.help = flags.help();
  return f;
}

int Run(const Flags& f) {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  participant::CallbackServerOptions options;
  options.max_threads = f.max_threads;
  options.max_queued = f.max_threads;
  participant::CallbackServer server(options);
  NullHandler handler(f.prepare_in_progress);
  (void)server.AddHandler("/2pc", &handler);
  (void)server.AddHandler("/tcc", &handler);
  (void)server.AddRoute("POST", "/app/try",
                        [](const participant::HttpRequest&, participant::HttpResponse& response) {
                          response.body = R"({"result":"done"})";
                        });
  (void)server.AddRoute("POST", "/app/noop",
                        [](const participant::HttpRequest&, participant::HttpResponse&) {});
  auto port = server.Start(f.listen);
  if (!port.ok()) {
    std::cerr << "null_participant: cannot listen on " << f.listen << ": "
              << port.status().message() << std::endl;
    return 1;
  }
  std::cout << "null_participant listening on " << f.listen.substr(0, f.listen.rfind(':')) << ":"
            << *port << std::endl;
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  server.Stop();
  return 0;
}

}  // namespace
}  // namespace txcoord::bench

int main(int argc, char** argv) {
  using namespace txcoord::bench;
  return BenchMain("null_participant", kUsage, ParseFlags(argc, argv), Run);
}
