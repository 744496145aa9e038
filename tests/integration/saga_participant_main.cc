// saga_participant: the participant program of the saga crash test (saga_crash_test.cc). One
// process serves every step of every saga routed to it, counts each step's effect and each
// compensation in its own SQLite database, and injects transient faults at random.
//
//   saga_participant --listen 127.0.0.1:7001 --sqlite ./p0.db [--seed N] [--fault-percent 20]
//                    [--slow-ms 1300] [--drop-percent 5]
//
// A step's action URL is http://HOST:PORT/step/action, its compensate URL
// http://HOST:PORT/step/compensate; the step is told apart by the callback's gtid and step id
// (branch_id). Both run through SqliteSagaStep (the barrier), so a repeated delivery is a no-op,
// a compensation of an action that never ran is a null compensation and a late action after it
// is refused. The step's payload is {"amount": N, "refuse": true|false}:
//
//   action      appends ('action', amount) to `effects` and adds amount to balance.total; with
//               "refuse": true it then refuses (409), which rolls both back: a deterministic
//               business failure that the test knows about from the payload
//   compensate  appends ('compensate', amount) and subtracts amount
//
// `effects` has no unique key on purpose: an effect applied twice shows as two rows, it is not
// hidden by a constraint. The test reads the file after stopping the process.
//
// Faults, each callback independently with probability --fault-percent, one of (equally often):
//   unavailable   503 at once, nothing done
//   failed        500 at once, nothing done
//   reply lost    the step runs and commits, and the answer is replaced by 503
//   slow reply    the step runs and commits, the answer comes --slow-ms later (set it above the
//                 coordinator's callback timeout: the coordinator gives up and retries, as after
//                 a dropped connection)
//   late arrival  the callback waits --slow-ms before it runs (it may then land after the
//                 coordinator's retry, or after the saga turned to compensation)
// on actions and compensations alike. And dropped connections: the callback server listens on
// an internal port behind a small TCP relay on the --listen port, which resets the coordinator's
// connection instead of passing on a chunk, with probability --drop-percent / 2 for each chunk
// either way: a request that never arrives, or a reply lost after the step ran (a callback and
// its reply are one chunk each, mostly). The test SIGKILLing this process mid-call does the
// same once more.
//
// Prints "saga_participant listening on HOST:PORT" once serving; exits 0 on SIGTERM, 1 when the
// store or the port is unusable, 2 for a bad flag.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <iostream>
#include <list>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "txcoord/participant/barrier.h"
#include "txcoord/participant/endpoint.h"
#include "txcoord/participant/saga.h"

namespace txcoord::integration {
namespace {

using participant::CallbackContext;
using participant::PhaseResult;

struct Flags {
  std::string listen = "127.0.0.1:0";
  std::string sqlite;
  uint64_t seed = 1;
  int fault_percent = 20;
  int slow_ms = 1300;
  int drop_percent = 5;
};

int Usage(const std::string& message) {
  std::cerr << "saga_participant: " << message
            << "; see the top of tests/integration/saga_participant_main.cc" << std::endl;
  return 2;
}

bool ParseInt(const std::string& text, int64_t min, int64_t max, int64_t& out) {
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && p == end && out >= min && out <= max;
}

constexpr const char* kSchema = R"sql(
PRAGMA journal_mode=WAL;
PRAGMA synchronous=FULL;
CREATE TABLE IF NOT EXISTS effects (
  id      INTEGER PRIMARY KEY AUTOINCREMENT,
  gtid    TEXT NOT NULL,
  step_id TEXT NOT NULL,
  kind    TEXT NOT NULL CHECK (kind IN ('action', 'compensate')),
  amount  INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')));
CREATE TABLE IF NOT EXISTS balance (
  id    INTEGER PRIMARY KEY CHECK (id = 1),
  total INTEGER NOT NULL);
INSERT OR IGNORE INTO balance (id, total) VALUES (1, 0);
)sql";

Status SqliteError(sqlite3* db, const std::string& what) {
  const int code = sqlite3_errcode(db) & 0xff;
  const std::string message = "sqlite: " + what + ": " + sqlite3_errmsg(db);
  return code == SQLITE_BUSY || code == SQLITE_LOCKED ? Status::Unavailable(message)
                                                      : Status::Internal(message);
}

// Appends one effect row and moves the balance by `delta`, in the barrier's open transaction.
Status RecordEffect(sqlite3* db, const CallbackContext& ctx, const char* kind, int64_t amount,
                    int64_t delta) {
  sqlite3_stmt* insert = nullptr;
  if (sqlite3_prepare_v2(db,
                         "INSERT INTO effects (gtid, step_id, kind, amount, attempt) "
                         "VALUES (?, ?, ?, ?, ?)",
                         -1, &insert, nullptr) != SQLITE_OK) {
    return SqliteError(db, "prepare the effect insert");
  }
  sqlite3_bind_text(insert, 1, ctx.gtid.data(), static_cast<int>(ctx.gtid.size()),
                    SQLITE_TRANSIENT);
  sqlite3_bind_text(insert, 2, ctx.branch_id.data(), static_cast<int>(ctx.branch_id.size()),
                    SQLITE_TRANSIENT);
  sqlite3_bind_text(insert, 3, kind, -1, SQLITE_STATIC);
  sqlite3_bind_int64(insert, 4, amount);
  sqlite3_bind_int64(insert, 5, ctx.attempt);
  const int inserted = sqlite3_step(insert);
  sqlite3_finalize(insert);
  if (inserted != SQLITE_DONE) return SqliteError(db, "insert the effect");

  sqlite3_stmt* update = nullptr;
  if (sqlite3_prepare_v2(db, "UPDATE balance SET total = total + ? WHERE id = 1", -1, &update,
                         nullptr) != SQLITE_OK) {
    return SqliteError(db, "prepare the balance update");
  }
  sqlite3_bind_int64(update, 1, delta);
  const int updated = sqlite3_step(update);
  sqlite3_finalize(update);
  if (updated != SQLITE_DONE) return SqliteError(db, "update the balance");
  return Status::Ok();
}

struct StepPayload {
  int64_t amount = 0;
  bool refuse = false;
};

Result<StepPayload> ParsePayload(const CallbackContext& ctx) {
  if (!ctx.payload.has_struct_value()) {
    return Status::InvalidArgument("step payload is not an object");
  }
  const auto& fields = ctx.payload.struct_value().fields();
  const auto amount = fields.find("amount");
  if (amount == fields.end() || !amount->second.has_number_value()) {
    return Status::InvalidArgument("step payload has no numeric \"amount\"");
  }
  StepPayload p;
  p.amount = static_cast<int64_t>(amount->second.number_value());
  if (const auto refuse = fields.find("refuse"); refuse != fields.end()) {
    p.refuse = refuse->second.bool_value();
  }
  return p;
}

Status Action(sqlite3* db, const CallbackContext& ctx) {
  Result<StepPayload> p = ParsePayload(ctx);
  // A malformed payload is the test's bug; kInternal is answered 500 and shows in last_error.
  if (!p.ok()) return Status::Internal(p.status().message());
  TXCOORD_RETURN_IF_ERROR(RecordEffect(db, ctx, "action", p->amount, p->amount));
  // Refused after writing: the barrier must roll the effect back with the refusal.
  if (p->refuse) return Status::Conflict("step " + ctx.branch_id + " refuses by its payload");
  return Status::Ok();
}

Status Compensate(sqlite3* db, const CallbackContext& ctx) {
  Result<StepPayload> p = ParsePayload(ctx);
  if (!p.ok()) return Status::Internal(p.status().message());
  return RecordEffect(db, ctx, "compensate", p->amount, -p->amount);
}

// SqliteSagaStep with faults around it (see the top of the file).
class FaultyStep final : public participant::SagaStepHandler {
 public:
  FaultyStep(participant::SqliteSagaStep& step, const Flags& flags)
      : step_(step), flags_(flags), rng_(flags.seed) {}

  PhaseResult Action(const CallbackContext& ctx) override {
    return WithFault(ctx, [&] { return step_.Action(ctx); });
  }
  PhaseResult Compensate(const CallbackContext& ctx) override {
    return WithFault(ctx, [&] { return step_.Compensate(ctx); });
  }

 private:
  enum class Fault { kNone, kUnavailable, kFailed, kReplyLost, kSlowReply, kLateArrival };

  Fault Draw() {
    std::lock_guard lock(mu_);
    if (static_cast<int>(rng_() % 100) >= flags_.fault_percent) return Fault::kNone;
    return static_cast<Fault>(1 + rng_() % 5);
  }

  template <typename Run>
  PhaseResult WithFault(const CallbackContext& ctx, Run&& run) {
    const std::string what =
        std::string(participant::PhaseName(ctx.phase)) + " of " + ctx.gtid + "/" + ctx.branch_id;
    switch (Draw()) {
      case Fault::kNone:
        return run();
      case Fault::kUnavailable:
        return PhaseResult::Transient("injected: unavailable before the " + what);
      case Fault::kFailed:
        return PhaseResult::Failed("injected: failure before the " + what);
      case Fault::kReplyLost:
        (void)run();
        return PhaseResult::Transient("injected: the reply to the " + what + " was lost");
      case Fault::kSlowReply: {
        PhaseResult r = run();
        std::this_thread::sleep_for(std::chrono::milliseconds(flags_.slow_ms));
        return r;
      }
      case Fault::kLateArrival:
        std::this_thread::sleep_for(std::chrono::milliseconds(flags_.slow_ms));
        return run();
    }
    return PhaseResult::Failed("unknown fault");
  }

  participant::SqliteSagaStep& step_;
  const Flags& flags_;
  std::mutex mu_;
  std::mt19937_64 rng_;  // GUARDED_BY(mu_)
};

// The TCP relay in front of the callback server that drops connections (see the top). One thread
// accepts; one thread per connection relays both ways with poll(). POSIX sockets: nothing here
// throws.
class DroppingRelay {
 public:
  DroppingRelay(int drop_percent, uint64_t seed) : drop_percent_(drop_percent), rng_(seed) {}
  ~DroppingRelay() { Stop(); }

  // Listens on host:port (IPv4) and relays to 127.0.0.1:upstream_port. Returns the bound port.
  Result<int> Start(const std::string& host, int port, int upstream_port) {
    upstream_port_ = upstream_port;
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1) {
      return Status::InvalidArgument("not an IPv4 address: " + host);
    }
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        listen(listen_fd_, 256) != 0) {
      return Status::Unavailable(std::string("bind: ") + strerror(errno));
    }
    socklen_t length = sizeof address;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
    acceptor_ = std::thread([this] { Accept(); });
    return static_cast<int>(ntohs(address.sin_port));
  }

  void Stop() {
    if (stopping_.exchange(true)) return;
    if (acceptor_.joinable()) acceptor_.join();
    std::list<Connection> connections;
    {
      std::lock_guard lock(mu_);
      connections.swap(connections_);
    }
    for (Connection& c : connections) c.thread.join();
    if (listen_fd_ >= 0) close(listen_fd_);
  }

 private:
  void Accept() {
    while (!stopping_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      std::lock_guard lock(mu_);
      // Joins the relays that ended, so that their threads do not pile up.
      for (auto it = connections_.begin(); it != connections_.end();) {
        if (it->done) {
          it->thread.join();
          it = connections_.erase(it);
        } else {
          ++it;
        }
      }
      Connection& c = connections_.emplace_back();
      c.thread = std::thread([this, client, &c] {
        Relay(client);
        c.done = true;
      });
    }
  }

  bool Drop() {
    std::lock_guard lock(mu_);
    return static_cast<int>(rng_() % 200) < drop_percent_;
  }

  void Relay(int client) {
    const int upstream = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(upstream_port_));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool reset = false;
    if (connect(upstream, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
      char buffer[16384];
      pollfd fds[2] = {{client, POLLIN, 0}, {upstream, POLLIN, 0}};
      while (!stopping_ && !reset) {
        if (poll(fds, 2, 100) <= 0) continue;
        bool closed = false;
        for (int from = 0; from < 2 && !closed && !reset; ++from) {
          if (fds[from].revents == 0) continue;
          const ssize_t n = recv(fds[from].fd, buffer, sizeof buffer, 0);
          if (n <= 0) {
            closed = true;
          } else if (Drop()) {
            reset = true;
          } else {
            closed = !SendAll(fds[1 - from].fd, buffer, static_cast<size_t>(n));
          }
        }
        if (closed) break;
      }
    }
    if (reset) {
      // RST, not FIN: the coordinator sees the connection reset mid-call.
      const linger abort_on_close{1, 0};
      setsockopt(client, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
    }
    close(client);
    close(upstream);
  }

  static bool SendAll(int fd, const char* data, size_t size) {
    while (size > 0) {
      const ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
      if (n <= 0) return false;
      data += n;
      size -= static_cast<size_t>(n);
    }
    return true;
  }

  struct Connection {
    std::thread thread;
    std::atomic<bool> done{false};
  };

  const int drop_percent_;
  int listen_fd_ = -1;
  int upstream_port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::mt19937_64 rng_;                // GUARDED_BY(mu_)
  std::list<Connection> connections_;  // GUARDED_BY(mu_); joined by Accept once done, or Stop
};

int Run(const Flags& flags) {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  sqlite3* db = nullptr;
  if (sqlite3_open(flags.sqlite.c_str(), &db) != SQLITE_OK) {
    std::cerr << "saga_participant: cannot open " << flags.sqlite << ": " << sqlite3_errmsg(db)
              << std::endl;
    sqlite3_close(db);
    return 1;
  }
  sqlite3_busy_timeout(db, 5000);
  char* error = nullptr;
  if (sqlite3_exec(db, kSchema, nullptr, nullptr, &error) != SQLITE_OK) {
    std::cerr << "saga_participant: schema: " << (error ? error : "?") << std::endl;
    sqlite3_free(error);
    sqlite3_close(db);
    return 1;
  }
  if (Status s = participant::Barrier::EnsureSchema(db); !s.ok()) {
    std::cerr << "saga_participant: barrier schema: " << s.message() << std::endl;
    sqlite3_close(db);
    return 1;
  }

  participant::SqliteSagaStep step(db, Action, Compensate);
  FaultyStep faulty(step, flags);
  participant::CallbackServerOptions options;
  // Slow replies hold a thread each; the coordinator sends many steps at once.
  options.max_threads = 64;
  options.max_queued = 256;
  participant::CallbackServer server(options);
  if (Status s = server.AddSagaStep("/step/action", "/step/compensate", &faulty); !s.ok()) {
    std::cerr << "saga_participant: " << s.message() << std::endl;
    sqlite3_close(db);
    return 1;
  }
  auto internal_port = server.Start("127.0.0.1:0");
  if (!internal_port.ok()) {
    std::cerr << "saga_participant: cannot listen: " << internal_port.status().message()
              << std::endl;
    sqlite3_close(db);
    return 1;
  }
  const size_t colon = flags.listen.rfind(':');
  const std::string host = flags.listen.substr(0, colon);
  int64_t listen_port = -1;
  if (colon == std::string::npos ||
      !ParseInt(flags.listen.substr(colon + 1), 0, 65535, listen_port)) {
    std::cerr << "saga_participant: --listen wants HOST:PORT" << std::endl;
    sqlite3_close(db);
    return 2;
  }
  DroppingRelay relay(flags.drop_percent, flags.seed ^ 0x5deece66dULL);
  auto port = relay.Start(host, static_cast<int>(listen_port), *internal_port);
  if (!port.ok()) {
    std::cerr << "saga_participant: cannot listen on " << flags.listen << ": "
              << port.status().message() << std::endl;
    sqlite3_close(db);
    return 1;
  }
  std::cout << "saga_participant listening on " << host << ":" << *port << std::endl;

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  relay.Stop();
  server.Stop();
  sqlite3_close(db);
  return 0;
}

}  // namespace
}  // namespace txcoord::integration

int main(int argc, char** argv) {
  using namespace txcoord::integration;
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) return Usage(flag + " needs a value");
    const std::string value = argv[++i];
    int64_t n = 0;
    if (flag == "--listen") {
      flags.listen = value;
    } else if (flag == "--sqlite") {
      flags.sqlite = value;
    } else if (flag == "--seed") {
      if (!ParseInt(value, 0, INT64_MAX, n)) return Usage("--seed wants a number");
      flags.seed = static_cast<uint64_t>(n);
    } else if (flag == "--fault-percent") {
      if (!ParseInt(value, 0, 100, n)) return Usage("--fault-percent wants 0 to 100");
      flags.fault_percent = static_cast<int>(n);
    } else if (flag == "--slow-ms") {
      if (!ParseInt(value, 0, 60'000, n)) return Usage("--slow-ms wants 0 to 60000");
      flags.slow_ms = static_cast<int>(n);
    } else if (flag == "--drop-percent") {
      if (!ParseInt(value, 0, 100, n)) return Usage("--drop-percent wants 0 to 100");
      flags.drop_percent = static_cast<int>(n);
    } else {
      return Usage("unknown flag " + flag);
    }
  }
  if (flags.sqlite.empty()) return Usage("--sqlite PATH is required");
  return Run(flags);
}
