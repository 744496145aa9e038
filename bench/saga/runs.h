// What bench/saga measures, one run at a time, with the processes each run needs:
//
//   - Floors (Runner::MeasureFloors), each alone on the machine before any run: see
//     coordinator_rig.h; the fdatasync floor's directory also holds the durable participants'
//     databases.
//   - A run (Runner::Run): a fresh txcoord and store, N client threads in a closed loop of sagas
//     (workload.h), warm-up then a measured window sampled as coordinator_rig.h says. Then, with
//     durable participants, their effect rows are checked against the sagas that finished.
//
// The participants, per set-up:
//   - null: one null_participant process for the whole benchmark (bench/null_participant.cc):
//     the SDK's CallbackServer answering every step at once, keeping nothing. Every step uses
//     its /saga/action and /saga/compensate (the refused step /saga/refuse/...).
//   - sqlite: one fresh saga_participant process per step and run (saga_participant.cc), each a
//     service with its own SQLite database (WAL, synchronous=FULL): the SDK's SqliteSagaStep,
//     the barrier's row and the effect row committed and fsync'd per action and compensation.
//
// Not thread-safe: one thread drives a Runner.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "coordinator_rig.h"
#include "txcoord/status.h"
#include "workload.h"

namespace txcoord::bench {

enum class Setup { kNull, kSqlite };
std::string_view SetupName(Setup s);  // "null", "sqlite"

struct RunnerOptions {
  RigOptions rig;
  std::string saga_participant_bin;
};

struct Point {
  Workload workload = Workload::kSeq3;
  Setup setup = Setup::kNull;
  Store store = Store::kSqlite;
  int concurrency = 1;
};

// loop: sagas; those with the expected final state count, the rest are errors. callback_failures:
// callbacks not answered 2xx, retried (abort3: its 409s too).
struct PointResult : RunFigures {
  Point point;
  int64_t finished = 0;  // sagas with the expected final state over the whole run
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

  Result<std::vector<Floor>> MeasureFloors() { return rig_->MeasureFloors(); }
  Result<PointResult> Run(const Point& point);
  // Starts a saga_participant on a scratch database and reads its settings back.
  Result<ParticipantSettings> ProbeParticipant();

  const CoordinatorRig& rig() const { return *rig_; }

 private:
  Runner(const RunnerOptions& options, std::unique_ptr<CoordinatorRig> rig);

  Result<std::unique_ptr<Server>> StartSagaParticipant(const std::string& name);

  const RunnerOptions options_;
  const std::unique_ptr<CoordinatorRig> rig_;
};

}  // namespace txcoord::bench
