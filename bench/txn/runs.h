// What bench/txn measures, one run at a time, with the processes each run needs:
//
//   - Floors (Runner::MeasureFloors), each alone on the machine before any run: fdatasync in the
//     SQLite stores' directory and in the PostgreSQL server's directory, PostgreSQL's
//     single-client commit, and the HTTP round trip from this client stack to an empty handler
//     of the null participant.
//   - A run (Runner::Run): a fresh txcoord (a new SQLite file, or a new PostgreSQL database),
//     N client threads in a closed loop of transfers (workload.h), warm-up then a measured
//     window; over the window, the CPU of each process and the log's commits (from /metrics);
//     at its end the coordinator's VmRSS and VmHWM. Storage-free runs share one null
//     participant process; bank runs start two fresh `bank --sqlite` processes.
//   - An in-flight run (Runner::InFlight): a fresh txcoord on SQLite holding N transactions
//     begun and left unfinished, and its memory then.
//
// The coordinator and the participants are separate processes, so their CPU is measured apart
// from the load generator's (this process); all of them share the machine's CPUs.
//
// Not thread-safe: one thread drives a Runner.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "floors.h"
#include "machine.h"
#include "processes.h"
#include "txcoord/status.h"
#include "workload.h"

namespace txcoord::testing {
class PostgresServer;
}

namespace txcoord::bench {

enum class Setup { kNull, kBank };
enum class Store { kSqlite, kPostgres };
std::string_view SetupName(Setup s);  // "null", "bank"
std::string_view StoreName(Store s);  // "sqlite", "postgresql"

struct RunnerOptions {
  std::string txcoord_bin;
  std::string bank_bin;
  std::string null_participant_bin;
  std::string dir;        // parent of the work directory; empty: $TMPDIR, else /tmp
  bool postgres = false;  // start a throwaway PostgreSQL with the test rig
  double warmup_s = 0.5;
  double seconds = 3;
  int accounts = 1000;  // per bank
};

struct Point {
  Setup setup = Setup::kNull;
  Store store = Store::kSqlite;
  Protocol protocol = Protocol::k2pc;
  int concurrency = 1;
};

struct PointResult {
  Point point;
  LoopResult loop;  // transfers: committed ones count, anything else is an error
  // CPUs kept busy during the window, by process.
  double cpu_coordinator = 0;
  double cpu_participants = 0;
  double cpu_postgres = 0;  // the server and its backends; 0 for SQLite runs
  // The log's group commits and appends during the window (txcoord's /metrics).
  int64_t log_commits = 0;
  int64_t log_appends = 0;
  Memory coordinator_memory;  // at the end of the window; hwm over the coordinator's life
  std::string stop_error;     // the coordinator did not stop cleanly after the run

  double tx_per_s() const { return loop.ops_per_s(); }
};

struct InFlightResult {
  Protocol protocol = Protocol::kTcc;
  int requested = 0;
  int64_t live = 0;    // txcoord_transactions_live once loaded
  int64_t errors = 0;  // begins or registrations that failed
  std::vector<std::string> first_errors;
  double load_s = 0;
  Memory idle;  // right after start
  Memory held;  // with the transactions in flight
  std::string stop_error;
};

class Runner {
 public:
  static Result<std::unique_ptr<Runner>> Start(const RunnerOptions& options);
  ~Runner();

  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  // fdatasync (work dir), fdatasync_pg_dir and pg_single_commit (with PostgreSQL), http_rtt.
  Result<std::vector<Floor>> MeasureFloors();
  Result<PointResult> Run(const Point& point);
  // `protocol` tcc: active transactions with 2 registered branches; 2pc: preparing, against a
  // null participant that answers 425 to every prepare. 64 client threads load them.
  Result<InFlightResult> InFlight(Protocol protocol, int transactions);

  const std::filesystem::path& work_dir() const { return work_dir_->path(); }
  const testing::PostgresServer* postgres() const { return pg_.get(); }

 private:
  explicit Runner(const RunnerOptions& options);

  Result<std::unique_ptr<Server>> StartCoordinator(const std::string& store_uri, int run,
                                                   int concurrency,
                                                   const std::vector<std::string>& extra_args);
  Result<std::string> StoreUri(Store store, int run);

  const RunnerOptions options_;
  // Destroyed in reverse: the null participant, then PostgreSQL, then the files.
  std::unique_ptr<WorkDir> work_dir_;
  std::unique_ptr<testing::PostgresServer> pg_;
  std::unique_ptr<Server> null_participant_;
  int runs_ = 0;  // numbers each run's files and gtids
};

}  // namespace txcoord::bench
