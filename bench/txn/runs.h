// What bench/txn measures, one run at a time, with the processes each run needs:
//
//   - Floors (Runner::MeasureFloors), each alone on the machine before any run: see
//     coordinator_rig.h.
//   - A run (Runner::Run): a fresh txcoord and store, N client threads in a closed loop of
//     transfers (workload.h), warm-up then a measured window sampled as coordinator_rig.h says.
//     Storage-free runs share the rig's null participant; bank runs start two fresh
//     `bank --sqlite` processes.
//   - An in-flight run (Runner::InFlight): a fresh txcoord on SQLite holding N transactions
//     begun and left unfinished, and its memory then.
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

enum class Setup { kNull, kBank };
std::string_view SetupName(Setup s);  // "null", "bank"

struct RunnerOptions {
  RigOptions rig;
  std::string bank_bin;
  int accounts = 1000;  // per bank
};

struct Point {
  Setup setup = Setup::kNull;
  Store store = Store::kSqlite;
  Protocol protocol = Protocol::k2pc;
  int concurrency = 1;
};

// loop: transfers; committed ones count, anything else is an error.
struct PointResult : RunFigures {
  Point point;

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

  Result<std::vector<Floor>> MeasureFloors() { return rig_->MeasureFloors(); }
  Result<PointResult> Run(const Point& point);
  // `protocol` tcc: active transactions with 2 registered branches; 2pc: preparing, against a
  // null participant that answers 425 to every prepare. 64 client threads load them.
  Result<InFlightResult> InFlight(Protocol protocol, int transactions);

  const CoordinatorRig& rig() const { return *rig_; }

 private:
  Runner(const RunnerOptions& options, std::unique_ptr<CoordinatorRig> rig);

  const RunnerOptions options_;
  const std::unique_ptr<CoordinatorRig> rig_;
};

}  // namespace txcoord::bench
