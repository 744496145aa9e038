// saga_bench: end-to-end throughput and latency of sagas through a real coordinator (txcoord): a
// 3-step sequential saga and a 4-step saga with a parallel pair (and, on request, a 3-step saga
// whose last step is refused and compensated), with storage-free and with durable SQLite
// participants, at several numbers of closed-loop clients; beside floors measured in the same run
// (fdatasync of the coordinator's store directory, the HTTP round trip, with PostgreSQL its
// single commit) and the issue's target.
//
// A program, not a test: it prints figures and asserts nothing about them. Exit status: 0 when
// every run completed with every saga in its expected state and the durable participants' effects
// matching (target met or not); 1 when the benchmark failed (a process or a floor could not run,
// a saga failed, txcoord did not stop cleanly: the reasons are on stderr); 2 on a bad command
// line. See bench/README.md.
//
// This file parses the flags and wires the parts: runs.h starts the processes and measures,
// report.h prints.
#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "coordinator_report.h"
#include "flags.h"
#include "machine.h"
#include "report.h"
#include "runs.h"

namespace txcoord::bench {
namespace {

constexpr char kBench[] = "saga";

constexpr char kUsage[] = R"(usage: saga_bench [options]

Runs sagas through a real txcoord (one fresh coordinator and store per run) with N clients in a
closed loop, each begun with "wait": true, and prints sagas/s, p50/p99 latency, each process's
CPU and txcoord's log and memory, beside floors measured in the same run; then each workload's
p50 at concurrency 1 beside its floor, and the issue's target (met / NOT met).

  --workload LIST    comma-separated, from seq3 (s1 -> s2 -> s3), par4 (s1 -> {s2, s3} -> s4)
                     and abort3 (seq3 whose s3 is refused: compensated in reverse order)
                     (default seq3,par4)
  --setup S          null (storage-free participants: one null_participant process), sqlite
                     (durable: one saga_participant process per step, SQLite WAL with
                     synchronous=FULL behind the SDK's barrier) or both (default both)
  --store S          sqlite, postgres or both (default sqlite); postgres starts a throwaway
                     PostgreSQL 15 with the test rig
  --concurrency LIST comma-separated client counts (default 1,16,64)
  --seconds S        measured time of each run and floor (default 3)
  --warmup S         time before each run that is not measured (default 0.5)
  --dir DIR          where the SQLite stores, the participants' databases, the processes' stderr
                     and the fdatasync file go; a fresh subdirectory of DIR, removed at the end
                     (default: $TMPDIR, else /tmp)
  --json             one JSON object per line on stdout; progress goes to stderr
  --help             this text

Exit status: 0 when every saga ended as expected and every process stopped cleanly (met target
or not), 1 when the benchmark failed, 2 on a bad command line.
)";

struct Options {
  std::vector<Workload> workloads = {Workload::kSeq3, Workload::kPar4};
  std::vector<Setup> setups = {Setup::kNull, Setup::kSqlite};
  std::vector<Store> stores = {Store::kSqlite};
  LoadFlags load;  // --concurrency, --seconds, --warmup, --dir
  bool json = false;
  bool help = false;
};

Result<std::vector<Workload>> ParseWorkloads(std::string_view flag, std::string_view value) {
  std::vector<Workload> list;
  size_t at = 0;
  while (at <= value.size()) {
    const size_t comma = std::min(value.find(',', at), value.size());
    const std::string_view name = value.substr(at, comma - at);
    std::optional<Workload> w;
    for (const Workload candidate : {Workload::kSeq3, Workload::kPar4, Workload::kAbort3}) {
      if (name == WorkloadName(candidate)) w = candidate;
    }
    if (!w) {
      return Status::InvalidArgument(std::string(flag) +
                                     " wants a comma-separated list of seq3, par4, abort3; got \"" +
                                     std::string(value) + "\"");
    }
    if (std::find(list.begin(), list.end(), *w) == list.end()) list.push_back(*w);
    at = comma + 1;
  }
  return list;
}

Result<Options> ParseFlags(int argc, char** argv) {
  Options o;
  FlagReader flags(argc, argv, WithLoadFlags({"--workload", "--setup", "--store"}),
                   /*json=*/true);
  while (flags.Next()) {
    const std::string_view name = flags.name();
    const std::string_view value = flags.value();
    auto load = ParseLoadFlag(name, value, o.load);
    if (!load.ok()) return load.status();
    if (*load) continue;
    if (name == "--workload") {
      auto v = ParseWorkloads(name, value);
      if (!v.ok()) return v.status();
      o.workloads = *v;
    } else if (name == "--setup") {
      auto v = ParseChoice(name, value, "null", Setup::kNull, "sqlite", Setup::kSqlite);
      if (!v.ok()) return v.status();
      o.setups = *v;
    } else if (name == "--store") {
      auto v = ParseChoice(name, value, "sqlite", Store::kSqlite, "postgres", Store::kPostgres);
      if (!v.ok()) return v.status();
      o.stores = *v;
    }
  }
  if (!flags.status().ok()) return flags.status();
  o.help = flags.help();
  o.json = flags.json();
  return o;
}

int Run(const Options& o) {
  RunnerOptions ro;
  ro.rig.bench = kBench;
  ro.rig.txcoord_bin = TXCOORD_BIN;
  ro.rig.null_participant_bin = NULL_PARTICIPANT_BIN;
  ro.saga_participant_bin = SAGA_PARTICIPANT_BIN;
  ro.rig.dir = o.load.dir;
  ro.rig.postgres = std::find(o.stores.begin(), o.stores.end(), Store::kPostgres) != o.stores.end();
  ro.rig.warmup_s = o.load.warmup_s;
  ro.rig.seconds = o.load.seconds;
  auto runner = Runner::Start(ro);
  if (!runner.ok()) return Fail(kBench, runner.status());

  std::optional<ParticipantSettings> participant;
  if (std::find(o.setups.begin(), o.setups.end(), Setup::kSqlite) != o.setups.end()) {
    auto probed = (*runner)->ProbeParticipant();
    if (!probed.ok()) return Fail(kBench, probed.status());
    participant = *probed;
  }
  Report report({.json = o.json, .warmup_s = o.load.warmup_s, .seconds = o.load.seconds});
  report.Header(DescribeHost(), DescribeStorage((*runner)->rig().work_dir()), **runner,
                participant);
  Progress(o.json, kBench, "floors");
  auto floors = (*runner)->MeasureFloors();
  if (!floors.ok()) return Fail(kBench, floors.status());
  report.AddFloors(std::move(floors).value());

  report.RunsHeader();
  for (const Workload workload : o.workloads) {
    for (const Setup setup : o.setups) {
      for (const Store store : o.stores) {
        for (const int concurrency : o.load.concurrency) {
          const Point point{workload, setup, store, concurrency};
          Progress(o.json, kBench, RunLabel(point));
          auto run = (*runner)->Run(point);
          if (!run.ok()) return Fail(kBench, run.status());
          report.AddRun(*run);
        }
      }
    }
  }
  report.Summary();
  if (report.any_errors()) {
    std::fprintf(stderr, "saga: some sagas failed (see above); the figures are not valid\n");
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace txcoord::bench

int main(int argc, char** argv) {
  using namespace txcoord::bench;
  return BenchMain("saga_bench", kUsage, ParseFlags(argc, argv), Run);
}
