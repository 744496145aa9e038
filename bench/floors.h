// What the benchmark programs share to measure: a closed-loop runner that reports throughput,
// latency percentiles and CPU use over a measured window, and the floors a figure is compared
// with, each measured by the program in the same run (so that a ratio is comparable across
// machines whose disks and CPUs differ by orders of magnitude):
//
//   - fdatasync: one thread rewriting 4 KiB of a file and calling fdatasync, as fast as the disk
//     allows: the cheapest durable write the disk offers.
//   - pg_single_commit: one libpqxx client doing INSERT + COMMIT in a loop: what a server offers
//     a writer that commits once per operation.
//
// Thread-safety: the functions may be called from any thread; RunClosedLoop starts and joins its
// own threads and returns when all have finished.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "txcoord/status.h"

namespace txcoord::bench {

using Clock = std::chrono::steady_clock;

// CPU time used so far, to tell a CPU-bound run from one that waits: by this process (all its
// threads), and by the whole machine (which includes servers and anything else running here; the
// machine may be shared).
struct CpuTimes {
  double self_s = 0;
  double machine_busy_s = 0;
};
CpuTimes SampleCpu();

// What one closed-loop run measured.
struct LoopResult {
  double window_s = 0;
  std::vector<int64_t> latencies_ns;  // successful ops that completed in the window, sorted
  int64_t errors = 0;                 // failed ops over the whole run, warm-up included
  std::vector<std::string> first_errors;
  double cpu_self_cores = 0;     // CPUs kept busy by this process during the window
  double cpu_machine_cores = 0;  // CPUs busy machine-wide during the window

  int64_t ops() const { return static_cast<int64_t>(latencies_ns.size()); }
  double ops_per_s() const { return window_s > 0 ? static_cast<double>(ops()) / window_s : 0; }
  // Nearest-rank percentile, in microseconds; 0 when nothing completed.
  double percentile_us(double p) const;
};

// One operation of a closed loop; `seq` counts the calls of thread `thread`, from 0.
using Op = std::function<Status(int thread, int64_t seq)>;

// Runs `op` on `threads` threads in a closed loop: each calls it again as soon as it returns, so
// the offered load is exactly `threads` operations in flight. The first `warmup_s` is not
// counted (connections, caches and the first group formations settle); then the window: every
// successful op that *completes* inside it counts, with its latency. Ops still in flight at the
// end finish but are not counted. Completion-in-window is the usual closed-loop rule: it counts
// each op once and makes ops/s = completions / window length exact.
//
// `at_window_start` and `at_window_end` run on the calling thread at those instants, so that a
// counter (a log's stats, another process's CPU time) can be read over exactly the window.
LoopResult RunClosedLoop(int threads, double warmup_s, double measure_s, const Op& op,
                         const std::function<void()>& at_window_start = nullptr,
                         const std::function<void()>& at_window_end = nullptr);

enum class SyncPattern {
  // Rewrite the same, already allocated 4 KiB: fdatasync flushes data only, no file-system
  // metadata. The cheapest durable write the disk offers, hence the strict floor.
  kOverwrite,
  // Write 4 KiB at a growing offset: each fdatasync must also make the new file size durable
  // (a journal commit on a journaling file system). What a log that grows its file pays;
  // informational.
  kAppend,
};

// One thread: pwrite 4 KiB to `file` (created, and removed at the end), fdatasync, repeat.
// Buffered I/O like SQLite's WAL and PostgreSQL's, not O_DIRECT, so the page cache and the file
// system are on the same path as theirs. kUnavailable when the file cannot be written.
Result<LoopResult> MeasureFdatasync(const std::filesystem::path& file, SyncPattern pattern,
                                    double warmup_s, double measure_s);

// A floor as measured, and how the programs print it: a row of the text table (under
// PrintFloorHeader) or one --json line {"bench":<bench>,"kind":"floor","name":...}.
struct Floor {
  std::string name;
  LoopResult loop;
};
void PrintFloorHeader();
void PrintFloor(const Floor& floor, bool json, std::string_view bench);

// One client on `conninfo` (the database must allow CREATE TABLE): BEGIN, INSERT one small row,
// COMMIT, repeat, with synchronous_commit on. Each COMMIT waits for its own WAL flush, so this is
// what the server offers a writer that commits once per operation.
Result<LoopResult> MeasurePgSingleCommit(const std::string& conninfo, double warmup_s,
                                         double measure_s);

}  // namespace txcoord::bench
