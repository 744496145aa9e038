// bank: one bank participant process of the example (bank.h).
//
//   bank --name a --listen 127.0.0.1:7001 --sqlite ./a.db --accounts alice=100,bob=100
//   bank --name c --listen 127.0.0.1:7003 --postgres postgresql://... --coordinator URL
//        [--3pc-timeout-ms 10000] [--3pc-termination-query required|optional]
//
// Serves, on one port: the callbacks of 2pc branches under /2pc, of 3pc branches under /3pc and
// of tcc branches under /tcc (so a branch url is http://HOST:PORT/2pc), the tcc Try at
// POST /app/try, and the state at GET /app/balances (add ?ledger=1 for every applied movement).
//
// 3pc timeouts (participant/three_phase.h): a branch that voted yes, or acknowledged pre-commit,
// and then hears nothing for --3pc-timeout-ms asks the coordinator (--coordinator) and does what
// it says. When it cannot be asked, "required" (the default) waits and asks again, which keeps
// every outcome consistent; "optional" follows the contract's rule (voted yes: abort; pre-
// committed: commit), which a partition can turn into a split outcome (docs/3pc.md). Prints "bank
// listening on HOST:PORT" once serving; exits 0 on SIGTERM, 1 when the store or the port is
// unusable, 2 for a bad flag.
#include <signal.h>

#include <atomic>
#include <charconv>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "bank.h"
#include "txcoord/participant/client.h"
#include "txcoord/participant/endpoint.h"
#include "txcoord/participant/three_phase.h"
#include "txcoord/schemas/json.h"

namespace txcoord::examples::bank {
namespace {

struct Flags {
  std::string name = "bank";
  std::string listen = "127.0.0.1:0";
  std::string sqlite;
  std::string postgres;
  std::string coordinator;
  std::string secret_file;
  std::map<std::string, int64_t> accounts;
  int three_phase_timeout_ms = 10'000;
  bool termination_query_required = true;
};

int Usage(const std::string& message) {
  std::cerr << "bank: " << message << "; see the top of examples/bank/bank_main.cc" << std::endl;
  return 2;
}

// "alice=100,bob=50"
bool ParseAccounts(const std::string& text, std::map<std::string, int64_t>& out) {
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) return false;
    int64_t balance = 0;
    const char* end = item.data() + item.size();
    auto [p, ec] = std::from_chars(item.data() + eq + 1, end, balance);
    if (ec != std::errc() || p != end || balance < 0) return false;
    out[item.substr(0, eq)] = balance;
  }
  return true;
}

std::string SnapshotJson(const std::string& name, const Snapshot& s) {
  std::ostringstream out;
  int64_t total = 0;
  out << "{\"bank\":\"" << name << "\",\"accounts\":{";
  bool first = true;
  for (const auto& [account, balance] : s.balances) {
    out << (first ? "" : ",") << "\"" << account << "\":" << balance;
    total += balance;
    first = false;
  }
  out << "},\"total\":" << total << ",\"held\":" << s.held << ",\"ledger\":[";
  first = true;
  for (const LedgerEntry& e : s.ledger) {
    out << (first ? "" : ",") << "{\"gtid\":\"" << e.gtid << "\",\"branch_id\":\"" << e.branch_id
        << "\",\"account\":\"" << e.account << "\",\"delta\":" << e.delta << "}";
    first = false;
  }
  out << "]}";
  return out.str();
}

int Run(const Flags& flags) {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto bank = flags.sqlite.empty() ? OpenPgBank(flags.postgres, flags.name, flags.accounts)
                                   : OpenSqliteBank(flags.sqlite, flags.accounts);
  if (!bank.ok()) {
    std::cerr << "bank: cannot open the store: " << bank.status().message() << std::endl;
    return 1;
  }
  participant::CallbackServerOptions options;
  options.max_threads = 64;
  if (!flags.secret_file.empty()) {
    std::ifstream in(flags.secret_file);
    std::string secret;
    std::getline(in, secret);
    if (secret.empty()) return Usage("--callback-secret-file " + flags.secret_file + " is empty");
    options.callback_secrets.push_back(secret);
  }
  participant::CallbackServer server(options);
  Bank& b = **bank;

  // The 3pc keeper: its termination query needs the coordinator; without --coordinator it can
  // never ask (and with the query required, it then leaves every outcome to the coordinator).
  std::unique_ptr<participant::CoordinatorClient> query_client;
  std::unique_ptr<participant::CoordinatorTerminationQuery> query;
  if (!flags.coordinator.empty()) {
    participant::CoordinatorClientOptions copts;
    copts.url = flags.coordinator;
    copts.connect_timeout = std::chrono::milliseconds(1000);
    copts.timeout = std::chrono::milliseconds(2000);
    auto client = participant::CoordinatorClient::Create(copts);
    if (!client.ok()) return Usage("--coordinator: " + client.status().message());
    query_client = std::move(*client);
    query = std::make_unique<participant::CoordinatorTerminationQuery>(*query_client);
  }
  participant::ThreePhaseOptions three_phase;
  three_phase.can_commit_timeout = std::chrono::milliseconds(flags.three_phase_timeout_ms);
  three_phase.pre_commit_timeout = std::chrono::milliseconds(flags.three_phase_timeout_ms);
  three_phase.termination_query_required = flags.termination_query_required;
  participant::ThreePhaseKeeper keeper(b.ThreePhase(), query.get(), three_phase);
  keeper.SetObserver([&flags](const participant::TimeoutEvent& e) {
    std::cerr << "bank " << flags.name << ": 3pc timeout of " << e.gtid << "/" << e.branch_id
              << ": " << participant::TimeoutActionName(e.action) << " (" << e.why << ")"
              << std::endl;
  });
  auto in_doubt = b.ThreePhaseInDoubt();
  if (!in_doubt.ok()) {
    std::cerr << "bank: cannot list 3pc branches in doubt: " << in_doubt.status().message()
              << std::endl;
    return 1;
  }
  for (const participant::ThreePhaseInDoubt& branch : *in_doubt) keeper.Resume(branch);
  keeper.Start();
  participant::ThreePhaseHandler three_phase_handler(b.ThreePhase(), keeper);

  (void)server.AddHandler("/2pc", &b.TwoPhase());
  (void)server.AddHandler("/3pc", &three_phase_handler);
  (void)server.AddHandler("/tcc", &b.Tcc());
  (void)server.AddRoute(
      "POST", "/app/try",
      [&b](const participant::HttpRequest& request, participant::HttpResponse& response) {
        v1::Callback body;
        if (Status s = JsonToMessage(request.body, &body); !s.ok()) {
          response.SetError(400, "INVALID_ARGUMENT", s.message());
          return;
        }
        const participant::PhaseResult r = b.Try(body.gtid(), body.branch_id(), body.payload());
        if (r.done()) {
          response.status = 200;
          response.body = "{\"result\":\"done\"}";
        } else {
          response.SetError(r.http_status(), r.http_status() == 409 ? "CONFLICT" : "UNAVAILABLE",
                            r.message());
        }
      });
  (void)server.AddRoute(
      "GET", "/app/balances",
      [&b, &flags](const participant::HttpRequest& request, participant::HttpResponse& response) {
        auto snap = b.Read(request.QueryParam("ledger") == "1");
        if (!snap.ok()) {
          response.SetError(503, "UNAVAILABLE", snap.status().message());
          return;
        }
        response.body = SnapshotJson(flags.name, *snap);
      });
  auto port = server.Start(flags.listen);
  if (!port.ok()) {
    std::cerr << "bank: cannot listen on " << flags.listen << ": " << port.status().message()
              << std::endl;
    return 1;
  }
  const std::string host = flags.listen.substr(0, flags.listen.rfind(':'));
  std::cout << "bank listening on " << host << ":" << *port << std::endl;

  // Prepared branches left by a crash: ask the coordinator until none is in doubt.
  std::atomic<bool> stopping{false};
  std::thread resolver;
  if (!flags.coordinator.empty()) {
    resolver = std::thread([&] {
      participant::CoordinatorClientOptions copts;
      copts.url = flags.coordinator;
      auto client = participant::CoordinatorClient::Create(copts);
      if (!client.ok()) {
        std::cerr << "bank: --coordinator: " << client.status().message() << std::endl;
        return;
      }
      while (!stopping) {
        const Status s = b.ResolveInDoubt(**client);
        if (s.ok()) break;
        for (int i = 0; i < 10 && !stopping; ++i) {
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
      }
    });
  }
  // Barrier rows are needed only while a callback for their branch may still arrive; a week is
  // far beyond any deadline plus retries. Purged hourly.
  std::thread purger([&] {
    for (;;) {
      auto purged = b.PurgeBarrier(std::chrono::hours(24 * 7));
      if (!purged.ok()) std::cerr << "bank: barrier purge: " << purged.status().message() << "\n";
      for (int i = 0; i < 36000 && !stopping; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      if (stopping) return;
    }
  });
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  stopping = true;
  server.Stop();
  keeper.Stop();
  if (resolver.joinable()) resolver.join();
  purger.join();
  return 0;
}

}  // namespace
}  // namespace txcoord::examples::bank

int main(int argc, char** argv) {
  using namespace txcoord::examples::bank;
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help") {
      std::cout << "bank --name N --listen HOST:PORT (--sqlite PATH | --postgres CONNINFO)\n"
                   "     [--accounts a=100,b=50] [--coordinator URL] [--callback-secret-file F]\n"
                   "     [--3pc-timeout-ms MS] [--3pc-termination-query required|optional]\n";
      return 0;
    }
    if (i + 1 >= argc) return Usage(flag + " needs a value");
    const std::string value = argv[++i];
    if (flag == "--name") {
      flags.name = value;
    } else if (flag == "--listen") {
      flags.listen = value;
    } else if (flag == "--sqlite") {
      flags.sqlite = value;
    } else if (flag == "--postgres") {
      flags.postgres = value;
    } else if (flag == "--coordinator") {
      flags.coordinator = value;
    } else if (flag == "--callback-secret-file") {
      flags.secret_file = value;
    } else if (flag == "--3pc-timeout-ms") {
      int ms = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), ms);
      if (ec != std::errc() || p != value.data() + value.size() || ms < 1) {
        return Usage("--3pc-timeout-ms wants a positive number of milliseconds");
      }
      flags.three_phase_timeout_ms = ms;
    } else if (flag == "--3pc-termination-query") {
      if (value != "required" && value != "optional") {
        return Usage("--3pc-termination-query is required or optional");
      }
      flags.termination_query_required = value == "required";
    } else if (flag == "--accounts") {
      if (!ParseAccounts(value, flags.accounts)) return Usage("--accounts wants a=100,b=50");
    } else {
      return Usage("unknown flag " + flag);
    }
  }
  if (flags.sqlite.empty() == flags.postgres.empty()) {
    return Usage("give exactly one of --sqlite PATH and --postgres CONNINFO");
  }
  return Run(flags);
}
