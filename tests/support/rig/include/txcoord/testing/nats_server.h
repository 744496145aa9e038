// A real nats-server with JetStream for tests: a fresh store in a temp dir, on a free loopback
// port, run by the test process as a direct child and removed when the object goes away.
//
//   auto nats = NatsServer::Start();
//   ASSERT_TRUE(nats.ok()) << nats.status().ToString();
//   natsConnection_ConnectTo(&nc, (*nats)->Url().c_str());
//
// Most tests share one server per test process and isolate themselves with a stream each:
//
//   std::string stream = NatsServer::UniqueStreamName("outbox");
//   // Subjects must not overlap between streams either; use the name as their prefix:
//   //   subjects = { stream + ".>" }
//   natsConnection_ConnectTo(&nc, SharedNats().Url().c_str());
//
// The process rules are PostgresServer's (see postgres_server.h): a direct child with
// PR_SET_PDEATHSIG(SIGKILL), stopped and its temp dir removed on destruction, on SIGINT/SIGTERM
// of the test process and at exit. nats-server runs as the test's own OS user, even as root.
//
// Durability: JetStream's file store does not fsync each message; it leaves writes to the OS
// and forces a sync every 2 minutes by default (the NATS docs on `sync_interval`). So a stream
// survives a crash of the nats-server *process* (Stop(true) is SIGKILL), but not necessarily a
// crash of the machine. With nats-server 2.9.10 every message acknowledged before a SIGKILL was
// there after StartAgain (checked with 30 runs of 200 publishes).
//
// Thread safety: the accessors and Url may be called from any thread concurrently. Stop,
// StartAgain and destruction must not run concurrently with each other.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "txcoord/status.h"

namespace txcoord::testing {

namespace internal {
class ServerProcess;
}  // namespace internal

struct NatsOptions {
  // Path of nats-server. Empty: $TXCOORD_NATS_SERVER if set, else the first nats-server in
  // $PATH, /usr/sbin or /usr/local/bin.
  std::string server_path;
  // More command-line arguments, after the rig's own.
  std::vector<std::string> extra_args;
  // Until the server accepts connections and JetStream answers, per start.
  std::chrono::milliseconds start_timeout{30000};
  // For an orderly stop, after which the server is SIGKILLed.
  std::chrono::milliseconds stop_timeout{10000};
};

class NatsServer {
 public:
  // Makes a temp dir, starts `nats-server -js -sd <dir>/store -a 127.0.0.1 -p <free port>` and
  // waits (up to options.start_timeout) until a client can connect and JetStream answers an
  // account-info request. Errors include the end of the server's log.
  static Result<std::unique_ptr<NatsServer>> Start(NatsOptions options = {});

  // Stops the server (SIGINT; SIGKILL after stop_timeout), reaps it and removes the temp dir.
  // In a process forked from the one that started the server, does nothing.
  ~NatsServer();

  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  int port() const { return port_; }
  std::string host() const { return "127.0.0.1"; }
  // "nats://127.0.0.1:<port>"
  std::string Url() const;

  // Stops the server and waits until it is reaped. immediate: SIGKILL, a process crash (see
  // "Durability" above). Otherwise SIGINT, an orderly shutdown. Either way, SIGKILL after
  // stop_timeout. Does nothing if the server is not running.
  Status Stop(bool immediate);

  // Starts the server again on the same store dir and port, and waits until it is ready.
  // Fails (kUnavailable) if another process has taken the port meanwhile.
  Status StartAgain();

  // True from a successful start until Stop, or until the server exits on its own.
  bool running() const;
  // The server's pid while it runs, else 0.
  pid_t pid() const;

  // The temp dir that holds the JetStream store and the log.
  const std::string& dir() const;
  std::string store_dir() const { return dir() + "/store"; }
  // The server's stdout and stderr; appended to across restarts.
  std::string log_path() const { return dir() + "/nats-server.log"; }

  // A valid JetStream stream name that no other call in this process returns:
  // `prefix` (characters other than letters, digits, '-' and '_' become '_'), the pid, a
  // counter and a random suffix, e.g. "outbox_4242_7_3fa9c2".
  static std::string UniqueStreamName(std::string_view prefix);

 private:
  NatsServer(NatsOptions options, std::string server_path,
             std::unique_ptr<internal::ServerProcess> process);

  // Launches nats-server on `port_` (or on a free port if it is 0) and waits until it is ready.
  Status Launch();

  const NatsOptions options_;
  const std::string server_path_;
  const std::unique_ptr<internal::ServerProcess> process_;
  int port_ = 0;  // Fixed once the first start succeeds.
};

// One server per test process, started on first use (thread-safe) and stopped at exit. If it
// cannot start, every call throws std::runtime_error with the reason, which GoogleTest reports
// as a failure of the calling test. Isolate tests with UniqueStreamName; never Stop() the
// shared server: start your own NatsServer for that.
NatsServer& SharedNats();

}  // namespace txcoord::testing
