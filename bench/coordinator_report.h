// What the reports of txn and saga_bench share: the machine header, the floors a run's latency
// is compared with, and the lines on stderr. Each program keeps its own run table and targets.
//
// Not thread-safe; one thread reports.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "coordinator_rig.h"
#include "floors.h"
#include "json_line.h"
#include "machine.h"
#include "txcoord/status.h"

namespace txcoord::bench {

struct ReportOptions {
  bool json = false;
  double warmup_s = 0;
  double seconds = 0;
};

// kB (as /proc prints them) to MB.
double Mb(int64_t kb);

// What the header says beyond the machine, in the program's words. The labels are padded to
// `label_width` so that each program's header lines up with its own longest label.
struct HeaderText {
  std::string title;        // after "<bench>: "
  int label_width = 12;     // "machine", "dir", "sqlite", ... and `extra_label`
  std::string sqlite_use;   // after the SQLite version: who runs on it
  std::string extra_label;  // a line after the sqlite one, when not empty
  std::string extra_text;
};

// The header: one "machine" JSON line (`add_json` adds the program's own members after
// sqlite_version), or the text lines, then the floor table's header.
void PrintHeader(const ReportOptions& o, std::string_view bench, const HeaderText& text,
                 const Host& host, const Storage& work_dir, const CoordinatorRig& rig,
                 const std::function<void(JsonLine&)>& add_json = nullptr);

// What a run's operation waits for, one after another, when nothing else runs: durable writes of
// the coordinator's store, HTTP round trips, and durable writes of the participants'.
struct FloorFormula {
  int store_syncs = 0;
  int round_trips = 0;
  int participant_syncs = 0;
};

// The floors as measured, and a run's floor made of them.
class FloorSet {
 public:
  void Add(Floor floor) { floors_.push_back(std::move(floor)); }
  // Prints each floor (PrintFloor) and its failures ("<bench>: floor <name>: N failed
  // operations; first ones:", on stderr), then adds it. False when any floor had a failure: its
  // figure, and every ratio taken against it, is not valid.
  bool AddAndPrint(std::vector<Floor> floors, bool json, std::string_view bench);
  // NaN when the floor was not measured.
  double P50Us(std::string_view name) const;
  // The formula at the floors' p50s, in microseconds: the store's sync is fdatasync for SQLite,
  // pg_single_commit for PostgreSQL; a participant's is fdatasync (its database is in the work
  // directory).
  double Us(const FloorFormula& f, Store store) const;
  // "2 fdatasync + 4 http_rtt + 2 fdatasync (<participants>)".
  static std::string Text(const FloorFormula& f, Store store, std::string_view participants);

 private:
  std::vector<Floor> floors_;
};

// One member of a run's point (its set-up, store, ...) as the tables and JSON lines name it.
struct PointField {
  const char* title;  // the column's heading
  const char* key;    // the JSON member
  int width;          // the column's
  std::string value;
};
// "null sqlite 2pc c=16": the values, then the concurrency.
std::string PointLabel(const std::vector<PointField>& point, int concurrency);
// A table row's first columns, each followed by a space: the values, or with `titles` the
// headings.
void PrintPointColumns(const std::vector<PointField>& point, bool titles);
// The point's members of a JSON line, in the columns' order.
void AddPoint(JsonLine& j, const std::vector<PointField>& point);

// The table of each run's p50 at concurrency 1 beside its floor: the heading (`what` says how to
// read it) and column titles, in text only; then one row or JSON line ("latency_floor") a run.
void PrintLatencyFloorHeading(const ReportOptions& o, const char* what,
                              const std::vector<PointField>& point);
void PrintLatencyFloor(const ReportOptions& o, std::string_view bench,
                       const std::vector<PointField>& point, double p50_us, double floor_us,
                       const std::string& floor_text);

// "<bench>: <what>: N failed <noun>; first ones:" and the first errors, on stderr; nothing when
// `errors` is 0.
void PrintFailures(std::string_view bench, const std::string& what, std::string_view noun,
                   int64_t errors, const std::vector<std::string>& first);

// With --json stdout carries the figures alone, so progress goes to stderr, and only then: the
// table shows progress itself.
void Progress(bool json, std::string_view bench, const std::string& what);
// "<bench>: <status>" on stderr; returns the exit status of a failed benchmark, 1.
int Fail(std::string_view bench, const Status& s);

}  // namespace txcoord::bench
