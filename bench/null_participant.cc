// null_participant: a participant that keeps no storage, for bench/txn and bench/saga. It answers
// every callback at once, so a run against it measures the coordinator (and the HTTP stack), not a
// participant's database: the set-up DTM calls "0SQL".
//
//   null_participant [--listen HOST:PORT] [--prepare-reply 200|425] [--max-threads N]
//
// It is the participant SDK's CallbackServer (participant/endpoint.h), so each callback is parsed
// and checked as a real participant's would be, with a handler that does nothing:
//   POST /2pc/{phase}, /tcc/{phase}   200 {"result":"done"}; with --prepare-reply 425 a prepare
//                                     is answered 425 (in progress) instead, which keeps 2pc
//                                     transactions in flight (bench/txn's in-flight run)
//   POST /saga/action, /saga/compensate
//                                     a saga step (AddSagaStep): 200 to both; every step of a
//                                     benchmark saga may use this one pair of urls
//   POST /saga/refuse/action, /saga/refuse/compensate
//                                     a saga step whose action is refused (409, a business
//                                     failure that turns the saga to compensation); its
//                                     compensation answers 200
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

A storage-free participant for bench/txn and bench/saga: answers every 2pc and tcc callback
(base paths /2pc and /tcc) at once, saga steps at POST /saga/action and /saga/compensate (200),
a refused saga step at POST /saga/refuse/action (409; its /saga/refuse/compensate 200), the tcc
Try at POST /app/try, and POST /app/noop with an empty 200.

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

// A saga step that keeps nothing: its action succeeds, or with `refuse` is refused (409); its
// compensation succeeds.
class NullStep final : public participant::SagaStepHandler {
 public:
  explicit NullStep(bool refuse) : refuse_(refuse) {}
  PhaseResult Action(const CallbackContext&) override {
    return refuse_ ? PhaseResult::Refused("refused by the benchmark") : PhaseResult::Done();
  }
  PhaseResult Compensate(const CallbackContext&) override { return PhaseResult::Done(); }

 private:
  const bool refuse_;
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
  NullStep step(/*refuse=*/false);
  NullStep refused_step(/*refuse=*/true);
  // The routes are fixed and valid; a refusal here is a bug in this file, said before serving.
  for (const Status& s : {
           server.AddHandler("/2pc", &handler),
           server.AddHandler("/tcc", &handler),
           server.AddSagaStep("/saga/action", "/saga/compensate", &step),
           server.AddSagaStep("/saga/refuse/action", "/saga/refuse/compensate", &refused_step),
           server.AddRoute(
               "POST", "/app/try",
               [](const participant::HttpRequest&, participant::HttpResponse& response) {
                 response.body = R"({"result":"done"})";
               }),
           server.AddRoute("POST", "/app/noop",
                           [](const participant::HttpRequest&, participant::HttpResponse&) {}),
       }) {
    if (!s.ok()) {
      std::cerr << "null_participant: cannot add a route: " << s.message() << std::endl;
      return 1;
    }
  }
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
