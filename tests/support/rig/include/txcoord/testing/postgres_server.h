// A real PostgreSQL 15 server for tests: a fresh cluster in a temp dir, on a free loopback port,
// run by the test process as a direct child and removed when the object goes away.
//
//   auto server = PostgresServer::Start();           // initdb + postgres, ~1 s
//   ASSERT_TRUE(server.ok()) << server.status().ToString();
//   Result<std::string> db = (*server)->CreateDatabase("orders");
//   pqxx::connection conn((*server)->ConnInfo(*db));
//
// Most tests share one server per test process and isolate themselves with a database each:
//
//   std::string db = SharedPostgres().CreateDatabase("log_test").value();
//
// The server is durable the way production is: fsync=on, synchronous_commit=on,
// full_page_writes=on. It allows prepared transactions (max_prepared_transactions=200) and 200
// connections. Authentication is `trust` for the superuser user() over TCP on 127.0.0.1 and over
// a Unix socket in the temp dir.
//
// Process rules (shared with NatsServer):
//   - postgres runs as a direct child (not daemonized by pg_ctl) with PR_SET_PDEATHSIG(SIGKILL),
//     so it dies with the test process even on SIGKILL of the test. The kernel ties that signal
//     to the forking *thread*; the rig forks from its own thread that lives until exit, so
//     servers may be started from any thread.
//   - When the test runs as root, initdb and postgres run as the OS user `postgres` (PostgreSQL
//     refuses root); the temp dir is chowned to it, and $TMPDIR must be searchable by it.
//   - SIGINT or SIGTERM of the test process, or exit() with servers still alive, stops them and
//     removes their temp dirs. After SIGKILL of the test process the servers die but their temp
//     dirs ($TMPDIR/txcoord-pg-*) stay behind.
//
// Thread safety: the accessors, ConnInfo, Uri and CreateDatabase may be called from any thread
// concurrently. Stop, StartAgain and destruction must not run concurrently with each other.
#pragma once

#include <sys/types.h>

#include <atomic>
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

struct PostgresOptions {
  // Directory with initdb and postgres. Empty: $TXCOORD_PG_BIN_DIR if set, else
  // /usr/lib/postgresql/15/bin.
  std::string bin_dir;
  // The OS account that runs initdb and postgres when the test process is root.
  std::string os_user_when_root = "postgres";
  // The database superuser initdb creates; ConnInfo and Uri connect as this role.
  std::string superuser = "postgres";
  int max_connections = 200;
  int max_prepared_transactions = 200;
  // More server settings as "name=value", passed with -c after the rig's own (so they win).
  std::vector<std::string> settings;
  // Until the server accepts connections, per start (Start and StartAgain).
  std::chrono::milliseconds start_timeout{30000};
  // For an orderly stop, after which the server is SIGKILLed.
  std::chrono::milliseconds stop_timeout{10000};
};

class PostgresServer {
 public:
  // Makes a temp dir, runs initdb in it, starts postgres on a free port and waits (up to
  // options.start_timeout) until it accepts connections. Errors include the end of the log.
  static Result<std::unique_ptr<PostgresServer>> Start(PostgresOptions options = {});

  // Stops the server (immediate shutdown: the data is deleted anyway, so a shutdown checkpoint
  // would be wasted; SIGKILL after stop_timeout), reaps it and removes the temp dir. In a
  // process forked from the one that started the server, does nothing.
  ~PostgresServer();

  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  int port() const { return port_; }
  std::string host() const { return "127.0.0.1"; }
  std::string user() const { return options_.superuser; }

  // libpq key=value form: "host=127.0.0.1 port=54321 user=postgres dbname=orders_1_3fa9c2".
  std::string ConnInfo(std::string_view dbname) const;
  // URI form: "postgresql://postgres@127.0.0.1:54321/orders_1_3fa9c2".
  std::string Uri(std::string_view dbname) const;

  // Creates an empty database with a new name: `prefix` made into a lowercase identifier, then
  // a per-server counter and a random suffix, e.g. "orders_7_3fa9c2". Returns the name.
  Result<std::string> CreateDatabase(std::string_view prefix);

  // Stops the server and waits until it is reaped. immediate: SIGQUIT, PostgreSQL's immediate
  // shutdown: backends are killed, nothing is flushed or checkpointed, and the next start runs
  // crash recovery from the WAL; this is the "database went away mid-write" case. Otherwise
  // SIGINT, the fast shutdown: clients are disconnected and a shutdown checkpoint is written.
  // Either way, SIGKILL after stop_timeout. Does nothing if the server is not running.
  Status Stop(bool immediate);

  // Starts the server again on the same data dir and port, and waits until it accepts
  // connections. Fails (kUnavailable) if another process has taken the port meanwhile.
  Status StartAgain();

  // True from a successful start until Stop, or until the server exits on its own.
  bool running() const;
  // The postmaster's pid while it runs, else 0.
  pid_t pid() const;

  // The temp dir that holds everything: data dir, Unix socket, logs.
  const std::string& dir() const;
  std::string data_dir() const { return dir() + "/data"; }
  // The server's stdout and stderr; appended to across restarts.
  std::string log_path() const { return dir() + "/postgres.log"; }

 private:
  PostgresServer(PostgresOptions options, std::string bin_dir,
                 std::unique_ptr<internal::ServerProcess> process);

  Status InitDataDir();
  // Launches postgres on `port_` (or on a free port if it is 0) and waits until it is ready.
  Status Launch();

  const PostgresOptions options_;
  const std::string bin_dir_;
  const std::unique_ptr<internal::ServerProcess> process_;
  int port_ = 0;  // Fixed once the first start succeeds.
  std::atomic<int> databases_created_{0};
};

// One server per test process, started on first use (thread-safe) and stopped at exit. If it
// cannot start, every call throws std::runtime_error with the reason, which GoogleTest reports
// as a failure of the calling test. Isolate tests with CreateDatabase, not by restarting it:
// never Stop() the shared server; start your own PostgresServer for that.
PostgresServer& SharedPostgres();

}  // namespace txcoord::testing
