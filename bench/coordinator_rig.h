// What the benchmarks that drive a real txcoord (txn, saga_bench) share to measure it: the
// processes every run needs and how a run is sampled.
//
//   - CoordinatorRig owns what lives for the whole benchmark: the work directory, the throwaway
//     PostgreSQL (when a run uses it) and one null participant process; it measures the floors
//     the runs are compared with and starts a fresh txcoord (with a fresh store) per run.
//   - CoordinatorRig::Measure runs a closed loop (floors.h) against one coordinator and samples,
//     over exactly the measured window, the CPU of txcoord, of the participants and of
//     PostgreSQL (the postmaster and its backends), and txcoord's /metrics counters; at the
//     window's end txcoord's VmRSS and VmHWM.
//
// The coordinator and the participants are separate processes, so their CPU is measured apart
// from the load generator's (this process); all of them share the machine's CPUs.
//
// Not thread-safe: one thread drives a rig.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "floors.h"
#include "http_client.h"
#include "machine.h"
#include "processes.h"
#include "txcoord/status.h"

namespace txcoord::testing {
class PostgresServer;
}

namespace txcoord::bench {

enum class Store { kSqlite, kPostgres };
std::string_view StoreName(Store s);  // "sqlite", "postgresql"

// Client calls (to txcoord and the participants) that take longer than this count as failed.
constexpr std::chrono::milliseconds kClientTimeout{30'000};

// Counters and gauges from txcoord's /metrics; -1 for one it does not print (or no page).
struct Metrics {
  int64_t log_commits = -1;
  int64_t log_appends = -1;
  int64_t live = -1;
  int64_t callbacks = -1;
  int64_t callback_failures = -1;
};
Metrics ReadMetrics(ConnectionPool& coordinator);

// What a run measured over its window, whatever the workload.
struct RunFigures {
  LoopResult loop;
  // CPUs kept busy during the window, by process.
  double cpu_coordinator = 0;
  double cpu_participants = 0;
  double cpu_postgres = 0;  // the server and its backends; 0 for SQLite runs
  // txcoord's counters during the window (/metrics deltas).
  int64_t log_commits = 0;
  int64_t log_appends = 0;
  int64_t callbacks = 0;
  int64_t callback_failures = 0;
  Memory coordinator_memory;  // at the end of the window; hwm over the coordinator's life
  std::string stop_error;     // the coordinator did not stop cleanly after the run
};

struct RigOptions {
  std::string bench;  // the program's name in progress lines and database names ("txn", "saga")
  std::string txcoord_bin;
  std::string null_participant_bin;
  std::string dir;        // parent of the work directory; empty: $TMPDIR, else /tmp
  bool postgres = false;  // start a throwaway PostgreSQL with the test rig
  double warmup_s = 0.5;
  double seconds = 3;
};

class CoordinatorRig {
 public:
  static Result<std::unique_ptr<CoordinatorRig>> Start(const RigOptions& options);
  ~CoordinatorRig();

  CoordinatorRig(const CoordinatorRig&) = delete;
  CoordinatorRig& operator=(const CoordinatorRig&) = delete;

  // fdatasync (work dir), fdatasync_pg_dir and pg_single_commit (with PostgreSQL), http_rtt.
  Result<std::vector<Floor>> MeasureFloors();

  // Numbers a run: its store, its files and its gtids.
  int NextRun() { return ++runs_; }
  // A fresh store for run `run`: a new SQLite file in the work directory, or a new database on
  // the throwaway PostgreSQL.
  Result<std::string> StoreUri(Store store, int run);
  Result<std::unique_ptr<Server>> StartCoordinator(const std::string& store_uri, int run,
                                                   int concurrency,
                                                   const std::vector<std::string>& extra_args = {});

  // Runs `op` on `concurrency` threads in a closed loop against `coordinator` and samples the
  // figures over the window; `participant_pids` are the processes whose CPU counts as the
  // participants'. Does not stop the coordinator (stop_error is left empty).
  RunFigures Measure(const Server& coordinator, const std::vector<pid_t>& participant_pids,
                     Store store, int concurrency, const Op& op);

  const RigOptions& options() const { return options_; }
  const std::filesystem::path& work_dir() const { return work_dir_->path(); }
  const testing::PostgresServer* postgres() const { return pg_.get(); }
  const Server& null_participant() const { return *null_participant_; }

 private:
  explicit CoordinatorRig(const RigOptions& options);

  const RigOptions options_;
  // Destroyed in reverse: the null participant, then PostgreSQL, then the files.
  std::unique_ptr<WorkDir> work_dir_;
  std::unique_ptr<testing::PostgresServer> pg_;
  std::unique_ptr<Server> null_participant_;
  int runs_ = 0;
};

}  // namespace txcoord::bench
