// bench/txn's output: a readable table, or one JSON object per line (--json), each figure printed
// as soon as it is measured; then the derived floors and the targets (met / NOT met, never
// affecting the exit status). See bench/README.md for every column.
//
// Not thread-safe; one thread reports.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "coordinator_report.h"
#include "machine.h"
#include "runs.h"

namespace txcoord::bench {

// The targets.
constexpr int kTargetConcurrency = 64;
constexpr double kTargetNullTxPerS = 5000;  // 2pc, storage-free participants, SQLite store
constexpr double kTargetBankTxPerS = 2500;  // 2pc, SQLite bank participants, SQLite store
constexpr double kTargetP50ToFloor = 2.0;   // 2pc p50 at concurrency 1 / floor
constexpr int kTargetInFlight = 10'000;
constexpr double kTargetInFlightRssMb = 150;

// What a protocol's transfer waits for (coordinator_report.h). 2pc is the issue's "2 fsyncs + 4
// round trips"; tcc counts the same way: begin, the two registrations and the decision are
// durable before their replies, and its round trips are begin, 2 registrations, 2 Trys, commit
// and the Confirm callbacks. The participants' syncs, bank set-up only: prepare + commit (2pc),
// 2 Trys + Confirm (tcc).
FloorFormula FormulaOf(Protocol protocol, Setup setup);

// "null sqlite 2pc c=16": a run as progress and error lines name it.
std::string RunLabel(const Point& p);

class Report {
 public:
  explicit Report(const ReportOptions& options) : o_(options) {}

  void Header(const Host& host, const Storage& work_dir, const Runner& runner);
  void AddFloors(std::vector<Floor> floors);
  void RunsHeader();
  void AddRun(const PointResult& run);
  void AddInFlight(const InFlightResult& run);
  // The p50 at concurrency 1 beside its floor, then the targets.
  void Summary();

  // A transfer or an in-flight begin failed, or a coordinator did not stop cleanly: the figures
  // are not valid (the benchmark exits 1).
  bool any_errors() const { return errors_; }

 private:
  // The floor of a run's transfer, in microseconds; and its formula as text.
  double FloorUs(const Point& point) const;
  std::string FloorText(const Point& point) const;
  const PointResult* FindRun(Setup setup, Store store, Protocol protocol, int concurrency) const;
  void Target(const std::string& name, const std::string& figure, const std::string& goal,
              std::optional<bool> met, double value);

  const ReportOptions o_;
  FloorSet floors_;
  std::vector<PointResult> runs_;
  std::vector<InFlightResult> in_flight_;
  bool errors_ = false;
};

}  // namespace txcoord::bench
