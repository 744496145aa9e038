// bench/saga's output: a readable table, or one JSON object per line (--json), each figure
// printed as soon as it is measured; then each workload's p50 at concurrency 1 beside its floor,
// and the target (met / NOT met, never affecting the exit status). See bench/README.md
// for every column.
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

// The target: three-step sagas at 64 clients, storage-free participants (the SQLite
// store, as bench/txn's targets).
constexpr int kTargetConcurrency = 64;
constexpr double kTargetSagasPerS = 3000;

// What a saga waits for on its critical path (coordinator_report.h): the coordinator's durable
// appends, HTTP round trips, and the participants' durable commits (durable set-up only).
//   seq3:   4 appends (begin + running s1; s1 done + running s2; s2 done + running s3; s3 done +
//           decision + end), 4 round trips (the begin, 3 actions), 3 participant commits.
//   par4:   the same 4 + 4 + 3 on the path s1 -> the later of s2, s3 -> s4 (the earlier one's
//           append and commit overlap it).
//   abort3: 7 appends (3 forward, the abort decision, 3 compensated), 7 round trips (the begin,
//           3 actions, 3 compensations), 6 participant commits (the refusal and the null
//           compensation of s3 are recorded too).
FloorFormula FormulaOf(Workload workload, Setup setup);

// "seq3 null sqlite c=16": a run as progress and error lines name it.
std::string RunLabel(const Point& p);

class Report {
 public:
  explicit Report(const ReportOptions& options) : o_(options) {}

  // `participant`: what a durable participant's connection runs with (read back), or nullopt
  // when no durable set-up runs.
  void Header(const Host& host, const Storage& work_dir, const Runner& runner,
              const std::optional<ParticipantSettings>& participant);
  void AddFloors(std::vector<Floor> floors);
  void RunsHeader();
  void AddRun(const PointResult& run);
  // The p50 at concurrency 1 beside its floor, then the target.
  void Summary();

  // A saga failed, a participant's effects did not match, or a coordinator did not stop
  // cleanly: the figures are not valid (the benchmark exits 1).
  bool any_errors() const { return errors_; }

 private:
  // The floor of a run's saga, in microseconds; and its formula as text.
  double FloorUs(const Point& point) const;
  std::string FloorText(const Point& point) const;
  const PointResult* FindRun(Workload workload, Setup setup, Store store, int concurrency) const;

  const ReportOptions o_;
  FloorSet floors_;
  std::vector<PointResult> runs_;
  bool errors_ = false;
};

}  // namespace txcoord::bench
