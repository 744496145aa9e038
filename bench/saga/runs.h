// What bench/saga measures, one run at a time, with the processes each run needs:
//
//   - Floors (Runner::MeasureFloors), each alone on the machine before any run: fdatasync in the
//     directory of the coordinator's SQLite stores (and of the durable participants' databases),
//     with PostgreSQL fdatasync in its directory and its single-client commit, and the HTTP round
//     trip from this client stack to an empty handler of the null participant.
//   - A run (Runner::Run): a fresh txcoord (a new SQLite file, or a new PostgreSQL database),
//     N client threads in a closed loop of sagas (workload.h), warm-up then a measured window;
//     over the window the CPU of each process and txcoord's log commits, appends and callbacks
//     (from /metrics); at its end txcoord's VmRSS and VmHWM. Then, with durable participants,
//     their effect rows are checked against the sagas that finished.
//
// The participants, per set-up:
//   - null: one null_participant process for the whole benchmark (bench/null_participant.cc):
//     the SDK's CallbackServer answering every step at once, keeping nothing. Every step uses
//     its /saga/action and /saga/compensate (the refused step /saga/refuse/...).
//   - sqlite: one fresh saga_participant process per step and run (saga_participant.cc), each a
//     service with its own SQLite database (WAL, synchronous=FULL): the SDK's SqliteSagaStep,
//     the barrier's row and the effect row committed and fsync'd per action and compensation.
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

enum class Setup { kNull, kSqlite };
enum class Store { kSqlite, kPostgres };
std::string_view SetupName(Setup s);  // "null", "sqlite"
std::string_view StoreName(Store s);  // "sqlite", "postgresql"

struct RunnerOptions {
  std::string txcoord_bin;
  std::string null_participant_bin;
  std::string saga_participant_bin;
  std::string dir;        // parent of the work directory; empty: $TMPDIR, else /tmp
  bool postgres = false;  // start a throwaway PostgreSQL with the test rig
  double warmup_s = 0.5;
  double seconds = 3;
};

struct Point {
  Workload workload = Workload::kSeq3;
  Setup setup = Setup::kNull;
  Store store = Store::kSqlite;
  int concurrency = 1;
};

struct PointResult {
  Point point;
  LoopResult loop;       // sagas: those with the expected final state count, the rest are errors
  int64_t finished = 0;  // sagas with the expected final state over the whole run
  // CPUs kept busy during the window, by process.
  double cpu_coordinator = 0;
  double cpu_participants = 0;
  double cpu_postgres = 0;  // the server and its backends; 0 for SQLite runs
  // txcoord's counters during the window (/metrics deltas).
  int64_t log_commits = 0;
  int64_t log_appends = 0;
  int64_t callbacks = 0;
  int64_t callback_failures = 0;  // callbacks not answered 2xx: retried (abort3: its 409s too)
  Memory coordinator_memory;      // at the end of the window; hwm over the coordinator's life
  std::string stop_error;         // the coordinator did not stop cleanly after the run
  // Durable participants: their effect rows or settings were not what the finished sagas imply.
  std::string check_error;

  double sagas_per_s() const { return loop.ops_per_s(); }
};

// What a durable participant's SQLite connection really runs with, read back from it.
struct ParticipantSettings {
  std::string journal_mode;  // "wal"
  int synchronous = -1;      // 2 = FULL
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
  // Starts a saga_participant on a scratch database and reads its settings back.
  Result<ParticipantSettings> ProbeParticipant();

  const std::filesystem::path& work_dir() const { return work_dir_->path(); }
  const testing::PostgresServer* postgres() const { return pg_.get(); }

 private:
  explicit Runner(const RunnerOptions& options);

  Result<std::unique_ptr<Server>> StartCoordinator(const std::string& store_uri, int run,
                                                   int concurrency);
  Result<std::unique_ptr<Server>> StartSagaParticipant(const std::string& name);
  Result<std::string> StoreUri(Store store, int run);

  const RunnerOptions options_;
  // Destroyed in reverse: the null participant, then PostgreSQL, then the files.
  std::unique_ptr<WorkDir> work_dir_;
  std::unique_ptr<testing::PostgresServer> pg_;
  std::unique_ptr<Server> null_participant_;
  int runs_ = 0;  // numbers each run's files and gtids
};

}  // namespace txcoord::bench
