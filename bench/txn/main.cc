// txn: end-to-end throughput, latency and memory of the coordinator (txcoord) running 2-branch
// 2pc and tcc transfers, on the SQLite and the PostgreSQL store, with storage-free and with
// durable SQLite bank participants, at several numbers of closed-loop clients; beside floors
// measured in the same run (fdatasync, PostgreSQL's single commit, the HTTP round trip) and the
// issue's targets. Then the coordinator's memory with 10,000 transactions in flight.
//
// A program, not a test: it prints figures and asserts nothing about them. Exit status: 0 when
// every run completed with every transaction committed (targets met or not); 1 when the
// benchmark failed (a process or a floor could not run, a transaction did not commit, txcoord
// did not stop cleanly: the reasons are on stderr); 2 on a bad command line. See README.md.
//
// This file parses the flags and wires the parts: runs.h starts the processes and measures,
// report.h prints.
#include <cstdio>
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

constexpr char kBench[] = "txn";

constexpr char kUsage[] = R"(usage: txn [options]

Runs 2-branch 2pc and tcc transfers through a real txcoord (one fresh coordinator and store per
run) with N clients in a closed loop, and prints tx/s, p50/p99 latency, each process's CPU and
txcoord's memory, beside floors measured in the same run; then txcoord's memory with 10,000
transactions in flight, and the issue's targets (met / NOT met).

  --store S          sqlite, postgres or both (default both); postgres starts a throwaway
                     PostgreSQL 15 with the test rig
  --setup S          null (storage-free participants: one null_participant process), bank (two
                     `bank --sqlite` processes of examples/bank) or both (default both)
  --protocol P       2pc, tcc or both (default both)
  --concurrency LIST comma-separated client counts (default 1,16,64)
  --seconds S        measured time of each run and floor (default 3)
  --warmup S         time before each run that is not measured (default 0.5)
  --in-flight N      transactions held in flight for the memory run, 0 to skip (default 10000)
  --accounts N       accounts per bank (default 1000)
  --dir DIR          where the SQLite stores, the banks' databases, the processes' stderr and
                     the fdatasync file go; a fresh subdirectory of DIR, removed at the end
                     (default: $TMPDIR, else /tmp)
  --json             one JSON object per line on stdout; progress goes to stderr
  --help             this text

Exit status: 0 when every transaction committed and every process stopped cleanly (met targets
or not), 1 when the benchmark failed, 2 on a bad command line.
)";

struct Options {
  std::vector<Store> stores = {Store::kSqlite, Store::kPostgres};
  std::vector<Setup> setups = {Setup::kNull, Setup::kBank};
  std::vector<Protocol> protocols = {Protocol::k2pc, Protocol::kTcc};
  LoadFlags load;  // --concurrency, --seconds, --warmup, --dir
  int in_flight = kTargetInFlight;
  int accounts = 1000;
  bool json = false;
  bool help = false;
};

Result<Options> ParseFlags(int argc, char** argv) {
  Options o;
  FlagReader flags(argc, argv,
                   WithLoadFlags({"--store", "--setup", "--protocol", "--in-flight", "--accounts"}),
                   /*json=*/true);
  while (flags.Next()) {
    const std::string_view name = flags.name();
    const std::string_view value = flags.value();
    auto load = ParseLoadFlag(name, value, o.load);
    if (!load.ok()) return load.status();
    if (*load) continue;
    if (name == "--store") {
      auto v = ParseChoice(name, value, "sqlite", Store::kSqlite, "postgres", Store::kPostgres);
      if (!v.ok()) return v.status();
      o.stores = *v;
    } else if (name == "--setup") {
      auto v = ParseChoice(name, value, "null", Setup::kNull, "bank", Setup::kBank);
      if (!v.ok()) return v.status();
      o.setups = *v;
    } else if (name == "--protocol") {
      auto v = ParseChoice(name, value, "2pc", Protocol::k2pc, "tcc", Protocol::kTcc);
      if (!v.ok()) return v.status();
      o.protocols = *v;
    } else if (name == "--in-flight") {
      auto n = ParseCount(name, value, 0, 1'000'000);
      if (!n.ok()) return n.status();
      o.in_flight = *n;
    } else if (name == "--accounts") {
      // The bank takes its accounts in one argument, which Linux bounds at 128 KiB.
      auto n = ParseCount(name, value, 1, 5000);
      if (!n.ok()) return n.status();
      o.accounts = *n;
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
  ro.bank_bin = BANK_BIN;
  ro.rig.null_participant_bin = NULL_PARTICIPANT_BIN;
  ro.rig.dir = o.load.dir;
  ro.rig.postgres = std::find(o.stores.begin(), o.stores.end(), Store::kPostgres) != o.stores.end();
  ro.rig.warmup_s = o.load.warmup_s;
  ro.rig.seconds = o.load.seconds;
  ro.accounts = o.accounts;
  auto runner = Runner::Start(ro);
  if (!runner.ok()) return Fail(kBench, runner.status());

  Report report({.json = o.json, .warmup_s = o.load.warmup_s, .seconds = o.load.seconds});
  report.Header(DescribeHost(), DescribeStorage((*runner)->rig().work_dir()), **runner);
  Progress(o.json, kBench, "floors");
  auto floors = (*runner)->MeasureFloors();
  if (!floors.ok()) return Fail(kBench, floors.status());
  report.AddFloors(std::move(floors).value());

  report.RunsHeader();
  for (const Setup setup : o.setups) {
    for (const Store store : o.stores) {
      for (const Protocol protocol : o.protocols) {
        for (const int concurrency : o.load.concurrency) {
          const Point point{setup, store, protocol, concurrency};
          Progress(o.json, kBench, RunLabel(point));
          auto run = (*runner)->Run(point);
          if (!run.ok()) return Fail(kBench, run.status());
          report.AddRun(*run);
        }
      }
    }
  }
  if (o.in_flight > 0) {
    for (const Protocol protocol : {Protocol::kTcc, Protocol::k2pc}) {
      Progress(o.json, kBench, "in flight " + std::string(ProtocolName(protocol)));
      auto run = (*runner)->InFlight(protocol, o.in_flight);
      if (!run.ok()) return Fail(kBench, run.status());
      report.AddInFlight(*run);
    }
  }
  report.Summary();
  if (report.any_errors()) {
    std::fprintf(stderr, "txn: some transactions failed (see above); the figures are not valid\n");
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace txcoord::bench

int main(int argc, char** argv) {
  using namespace txcoord::bench;
  return BenchMain("txn", kUsage, ParseFlags(argc, argv), Run);
}
