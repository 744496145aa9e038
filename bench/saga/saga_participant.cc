// saga_participant: a durable saga participant for bench/saga, one service with its own SQLite
// database, its steps run by the participant SDK's SqliteSagaStep (participant/saga.h): each
// action and each compensation is one local transaction of the barrier's row and the business
// row, committed with the database's synchronous setting (FULL by default: the commit returns
// once fsync'd).
//
//   saga_participant --db FILE [--listen HOST:PORT] [--journal wal|delete]
//                    [--synchronous full|normal|off] [--max-threads N]
//
//   POST /step/action       the step's action: INSERT its effect row (gtid, step_id) into
//                           saga_effects, behind the barrier; 200
//   POST /step/compensate   its compensation: mark that row compensated; 200 (a null
//                           compensation when the action never ran)
//   POST /refuse/action     a step whose action is refused (409, a business failure); nothing is
//   POST /refuse/compensate kept but the barrier's refusal; its compensation answers 200
//   GET  /stats             {"journal_mode":"wal","synchronous":2,"applied":N,"compensated":M}:
//                           what the connection really runs with (read back from SQLite), and
//                           the effect rows, so that the benchmark can check the work was done
//
// The SDK sets no PRAGMA of its own: the application opens the connection. This program sets
// journal_mode and synchronous as the examples do (examples/credit-limit: WAL, FULL); with WAL
// and FULL every commit fdatasyncs the WAL. One connection, shared by both steps through one
// SqliteCommitGroup: steps that arrive while a transaction commits share the next one (and its
// fdatasync), each with its own answer.
//
// Prints "saga_participant listening on HOST:PORT" once serving; exits 0 on SIGTERM or SIGINT,
// 1 when the database cannot be opened or the address bound, 2 for a bad flag.
#include <signal.h>
#include <sqlite3.h>

#include <iostream>
#include <string>

#include "flags.h"
#include "txcoord/participant/commit_group.h"
#include "txcoord/participant/endpoint.h"
#include "txcoord/participant/handler.h"
#include "txcoord/participant/saga.h"
#include "txcoord/participant/wal_batch_vfs.h"

namespace txcoord::bench {
namespace {

using participant::CallbackContext;

constexpr char kUsage[] = R"(usage: saga_participant --db FILE [options]

A durable saga participant for bench/saga: one service with its own SQLite database, whose saga
steps run behind the participant SDK's barrier (SqliteSagaStep), each in one local transaction.

  --db FILE              the service's SQLite database (created when absent)
  --listen HOST:PORT     address to serve on (default 127.0.0.1:0: a free port)
  --journal MODE         wal (default) or delete: SQLite's journal_mode
  --synchronous MODE     full (default), normal or off: SQLite's synchronous; only full makes
                         every commit durable before its reply (with wal, normal syncs at
                         checkpoints only)
  --max-threads N        connections served at once (default 512)
  --help                 this text

Routes: POST /step/action and /step/compensate (a step that succeeds), POST /refuse/action and
/refuse/compensate (a step whose action is refused, 409), GET /stats.
Prints "saga_participant listening on HOST:PORT"; exits 0 on SIGTERM or SIGINT.
)";

struct Flags {
  std::string db;
  std::string listen = "127.0.0.1:0";
  std::string journal = "wal";
  std::string synchronous = "full";
  int max_threads = 512;
  bool help = false;
};

Result<Flags> ParseFlags(int argc, char** argv) {
  Flags f;
  FlagReader flags(argc, argv, {"--db", "--listen", "--journal", "--synchronous", "--max-threads"},
                   /*json=*/false);
  while (flags.Next()) {
    const std::string_view name = flags.name();
    const std::string_view value = flags.value();
    if (name == "--db") {
      f.db = std::string(value);
    } else if (name == "--listen") {
      f.listen = std::string(value);
    } else if (name == "--journal") {
      if (value != "wal" && value != "delete") {
        return Status::InvalidArgument("--journal wants wal or delete, got \"" +
                                       std::string(value) + "\"");
      }
      f.journal = std::string(value);
    } else if (name == "--synchronous") {
      if (value != "full" && value != "normal" && value != "off") {
        return Status::InvalidArgument("--synchronous wants full, normal or off, got \"" +
                                       std::string(value) + "\"");
      }
      f.synchronous = std::string(value);
    } else if (name == "--max-threads") {
      auto n = ParseCount(name, value, 1, 4096);
      if (!n.ok()) return n.status();
      f.max_threads = *n;
    }
  }
  if (!flags.status().ok()) return flags.status();
  f.help = flags.help();
  if (!f.help && f.db.empty()) return Status::InvalidArgument("--db FILE is required");
  return f;
}

Status SqliteError(sqlite3* db, std::string_view what) {
  return Status::Unavailable(std::string(what) + ": " + sqlite3_errmsg(db));
}

Status Exec(sqlite3* db, const char* sql) {
  char* error = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &error) != SQLITE_OK) {
    const std::string why = error != nullptr ? error : sqlite3_errmsg(db);
    sqlite3_free(error);
    return Status::Unavailable(std::string(sql) + ": " + why);
  }
  return Status::Ok();
}

// Runs `sql` with the step's gtid and step_id bound to ?1 and ?2. kUnavailable on a SQLite error,
// which the barrier rolls back and answers 503 (the coordinator retries).
Status RunForStep(sqlite3* db, const char* sql, const CallbackContext& ctx) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK) {
    return SqliteError(db, "prepare");
  }
  sqlite3_bind_text(stmt, 1, ctx.gtid.data(), static_cast<int>(ctx.gtid.size()), SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, ctx.branch_id.data(), static_cast<int>(ctx.branch_id.size()),
                    SQLITE_STATIC);
  const int rc = sqlite3_step(stmt);
  sqlite3_finalize(stmt);
  return rc == SQLITE_DONE ? Status::Ok() : SqliteError(db, "step");
}

// One integer from a query without parameters; -1 on an error.
int64_t QueryInt(sqlite3* db, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  int64_t value = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK &&
      sqlite3_step(stmt) == SQLITE_ROW) {
    value = sqlite3_column_int64(stmt, 0);
  }
  sqlite3_finalize(stmt);
  return value;
}

std::string QueryText(sqlite3* db, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  std::string value;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK &&
      sqlite3_step(stmt) == SQLITE_ROW) {
    const unsigned char* text = sqlite3_column_text(stmt, 0);
    if (text != nullptr) value = reinterpret_cast<const char*>(text);
  }
  sqlite3_finalize(stmt);
  return value;
}

// Opens the database with the requested journal and synchronous settings, the barrier's table
// and the effects table. Leaves *db set (to close) even on an error.
// Through the SDK's WAL-batching VFS, as the bank example does.
Status Open(const Flags& f, sqlite3** db) {
  auto vfs = participant::WalBatchingVfs();
  if (!vfs.ok()) return vfs.status();
  if (sqlite3_open_v2(f.db.c_str(), db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs->c_str()) !=
      SQLITE_OK) {
    return SqliteError(*db, "open " + f.db);
  }
  sqlite3_busy_timeout(*db, 10'000);
  const std::string pragmas =
      "PRAGMA journal_mode=" + f.journal + "; PRAGMA synchronous=" + f.synchronous + ";";
  TXCOORD_RETURN_IF_ERROR(Exec(*db, pragmas.c_str()));
  TXCOORD_RETURN_IF_ERROR(participant::Barrier::EnsureSchema(*db));
  return Exec(*db,
              "CREATE TABLE IF NOT EXISTS saga_effects ("
              " gtid TEXT NOT NULL, step_id TEXT NOT NULL,"
              " compensated INTEGER NOT NULL DEFAULT 0,"
              " PRIMARY KEY (gtid, step_id))");
}

int Run(const Flags& f) {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  sqlite3* db = nullptr;
  if (Status s = Open(f, &db); !s.ok()) {
    std::cerr << "saga_participant: " << s.message() << std::endl;
    sqlite3_close(db);
    return 1;
  }
  participant::SqliteCommitGroup group(db);  // every use of db goes through it

  participant::SqliteSagaStep step(
      group,
      [](sqlite3* conn, const CallbackContext& ctx) {
        return RunForStep(conn, "INSERT INTO saga_effects (gtid, step_id) VALUES (?1, ?2)", ctx);
      },
      [](sqlite3* conn, const CallbackContext& ctx) {
        return RunForStep(
            conn, "UPDATE saga_effects SET compensated = 1 WHERE gtid = ?1 AND step_id = ?2", ctx);
      });
  participant::SqliteSagaStep refused(
      group,
      [](sqlite3*, const CallbackContext&) { return Status::Conflict("refused by the benchmark"); },
      [](sqlite3*, const CallbackContext&) { return Status::Ok(); });

  participant::CallbackServerOptions options;
  options.max_threads = f.max_threads;
  options.max_queued = f.max_threads;
  participant::CallbackServer server(options);
  for (const Status& s : {
           server.AddSagaStep("/step/action", "/step/compensate", &step),
           server.AddSagaStep("/refuse/action", "/refuse/compensate", &refused),
           server.AddRoute(
               "GET", "/stats",
               [&](const participant::HttpRequest&, participant::HttpResponse& r) {
                 r.body = group.Exclusive([](sqlite3* conn) {
                   return R"({"journal_mode":")" + QueryText(conn, "PRAGMA journal_mode") +
                          R"(","synchronous":)" +
                          std::to_string(QueryInt(conn, "PRAGMA synchronous")) + R"(,"applied":)" +
                          std::to_string(QueryInt(conn, "SELECT COUNT(*) FROM saga_effects")) +
                          R"(,"compensated":)" +
                          std::to_string(QueryInt(
                              conn, "SELECT COUNT(*) FROM saga_effects WHERE compensated")) +
                          "}";
                 });
               }),
       }) {
    if (!s.ok()) {
      std::cerr << "saga_participant: cannot add a route: " << s.message() << std::endl;
      sqlite3_close_v2(db);
      return 1;
    }
  }
  auto port = server.Start(f.listen);
  if (!port.ok()) {
    std::cerr << "saga_participant: cannot listen on " << f.listen << ": "
              << port.status().message() << std::endl;
    sqlite3_close_v2(db);
    return 1;
  }
  std::cout << "saga_participant listening on " << f.listen.substr(0, f.listen.rfind(':')) << ":"
            << *port << std::endl;
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  server.Stop();
  sqlite3_close_v2(db);
  return 0;
}

}  // namespace
}  // namespace txcoord::bench

int main(int argc, char** argv) {
  using namespace txcoord::bench;
  return BenchMain("saga_participant", kUsage, ParseFlags(argc, argv), Run);
}
