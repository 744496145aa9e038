#include "report.h"

#include <cmath>
#include <cstdio>
#include <utility>

#include "json_line.h"

namespace txcoord::bench {
namespace {

constexpr char kBench[] = "txn";

void PrintErrors(const std::string& what, int64_t errors, const std::vector<std::string>& first) {
  PrintFailures(kBench, what, "transactions", errors, first);
}

// The run table's and the latency table's first columns.
std::vector<PointField> Fields(const Point& p) {
  return {{"setup", "setup", 5, std::string(SetupName(p.setup))},
          {"store", "store", 10, std::string(StoreName(p.store))},
          {"prot", "protocol", 4, std::string(ProtocolName(p.protocol))}};
}

}  // namespace

std::string RunLabel(const Point& p) { return PointLabel(Fields(p), p.concurrency); }

FloorFormula FormulaOf(Protocol protocol, Setup setup) {
  const bool bank = setup == Setup::kBank;
  if (protocol == Protocol::k2pc) return {2, 4, bank ? 2 : 0};
  return {4, 7, bank ? 3 : 0};
}

void Report::Header(const Host& host, const Storage& work_dir, const Runner& runner) {
  HeaderText text;
  text.title = "2-branch transactions through txcoord";
  text.label_width = 12;
  text.sqlite_use = "txcoord's store and the banks' (WAL, synchronous=FULL)";
  PrintHeader(o_, kBench, text, host, work_dir, runner.rig());
}

void Report::AddFloors(std::vector<Floor> floors) {
  if (!floors_.AddAndPrint(std::move(floors), o_.json, kBench)) errors_ = true;
}

double Report::FloorUs(const Point& point) const {
  return floors_.Us(FormulaOf(point.protocol, point.setup), point.store);
}

std::string Report::FloorText(const Point& point) const {
  return FloorSet::Text(FormulaOf(point.protocol, point.setup), point.store, "banks");
}

void Report::RunsHeader() {
  if (o_.json) return;
  std::printf(
      "\nruns: N clients in a closed loop, one transfer each at a time; cpu_* in CPUs busy; "
      "rss/hwm of txcoord in MB\n");
  PrintPointColumns(Fields(Point{}), /*titles=*/true);
  std::printf("%4s %7s %8s %8s %6s %6s %6s %6s %6s %7s %9s %6s %6s %6s %6s\n", "conc", "tx/s",
              "p50_us", "p99_us", "errors", "cpu_tc", "cpu_pt", "cpu_pg", "cpu_ld", "cpu_all",
              "commits/s", "app/tx", "group", "rss", "hwm");
  std::fflush(stdout);
}

void Report::AddRun(const PointResult& run) {
  const Point& p = run.point;
  const double window = run.loop.window_s;
  const double commits_per_s = window > 0 ? static_cast<double>(run.log_commits) / window : 0;
  const double tx = static_cast<double>(run.loop.ops());
  const double appends_per_tx = tx > 0 ? static_cast<double>(run.log_appends) / tx : NAN;
  const double group = run.log_commits > 0 ? static_cast<double>(run.log_appends) /
                                                 static_cast<double>(run.log_commits)
                                           : NAN;
  const double floor = FloorUs(p);
  if (o_.json) {
    JsonLine j(kBench);
    j.Str("kind", "run");
    AddPoint(j, Fields(p));
    j.Int("concurrency", p.concurrency)
        .Num("tx_per_s", run.tx_per_s())
        .Num("p50_us", run.loop.percentile_us(0.50))
        .Num("p99_us", run.loop.percentile_us(0.99))
        .Int("transactions", run.loop.ops())
        .Int("errors", run.loop.errors)
        .Num("cpu_coordinator", run.cpu_coordinator, 2)
        .Num("cpu_participants", run.cpu_participants, 2)
        .Num("cpu_postgres", run.cpu_postgres, 2)
        .Num("cpu_load_generator", run.loop.cpu_self_cores, 2)
        .Num("cpu_machine", run.loop.cpu_machine_cores, 2)
        .Int("log_commits", run.log_commits)
        .Int("log_appends", run.log_appends)
        .Num("log_appends_per_tx", appends_per_tx, 2)
        .Num("log_avg_group", group, 2)
        .Num("rss_mb", Mb(run.coordinator_memory.rss_kb))
        .Num("hwm_mb", Mb(run.coordinator_memory.hwm_kb))
        .Num("floor_us", floor)
        .Str("floor", FloorText(p))
        .Num("p50_to_floor", run.loop.percentile_us(0.50) / floor, 2)
        .Print();
  } else {
    PrintPointColumns(Fields(p), /*titles=*/false);
    std::printf(
        "%4d %7.0f %8.0f %8.0f %6lld %6.2f %6.2f %6.2f %6.2f %7.2f %9.0f %6.1f "
        "%6.1f %6.1f %6.1f\n",
        p.concurrency, run.tx_per_s(), run.loop.percentile_us(0.50), run.loop.percentile_us(0.99),
        static_cast<long long>(run.loop.errors), run.cpu_coordinator, run.cpu_participants,
        run.cpu_postgres, run.loop.cpu_self_cores, run.loop.cpu_machine_cores, commits_per_s,
        appends_per_tx, group, Mb(run.coordinator_memory.rss_kb),
        Mb(run.coordinator_memory.hwm_kb));
    std::fflush(stdout);
  }
  PrintErrors(RunLabel(p), run.loop.errors, run.loop.first_errors);
  if (!run.stop_error.empty()) {
    std::fprintf(stderr, "txn: %s: %s\n", RunLabel(p).c_str(), run.stop_error.c_str());
  }
  if (run.loop.errors > 0 || !run.stop_error.empty()) errors_ = true;
  runs_.push_back(run);
}

void Report::AddInFlight(const InFlightResult& run) {
  const std::string what = run.protocol == Protocol::kTcc ? "tcc active, 2 branches registered"
                                                          : "2pc preparing, prepares answered 425";
  const int64_t held = run.live > 0 ? run.live : 0;
  const double kb_per_tx =
      held > 0 ? static_cast<double>(run.held.rss_kb - run.idle.rss_kb) / static_cast<double>(held)
               : NAN;
  if (o_.json) {
    JsonLine(kBench)
        .Str("kind", "in_flight")
        .Str("protocol", ProtocolName(run.protocol))
        .Str("what", what)
        .Int("requested", run.requested)
        .Int("live", run.live)
        .Int("errors", run.errors)
        .Num("load_s", run.load_s, 2)
        .Num("rss_idle_mb", Mb(run.idle.rss_kb))
        .Num("rss_mb", Mb(run.held.rss_kb))
        .Num("hwm_mb", Mb(run.held.hwm_kb))
        .Num("kb_per_tx", kb_per_tx, 2)
        .Print();
  } else {
    if (in_flight_.empty()) {
      std::printf(
          "\nin flight: a fresh txcoord on SQLite holding N unfinished transactions (64 "
          "clients load them)\n");
      std::printf("%-38s %9s %7s %6s %7s %8s %7s %7s %7s\n", "transactions", "requested", "live",
                  "errors", "load_s", "rss_idle", "rss", "hwm", "kB/tx");
    }
    std::printf("%-38s %9d %7lld %6lld %7.1f %8.1f %7.1f %7.1f %7.2f\n", what.c_str(),
                run.requested, static_cast<long long>(run.live), static_cast<long long>(run.errors),
                run.load_s, Mb(run.idle.rss_kb), Mb(run.held.rss_kb), Mb(run.held.hwm_kb),
                kb_per_tx);
    std::fflush(stdout);
  }
  PrintErrors("in flight " + std::string(ProtocolName(run.protocol)), run.errors, run.first_errors);
  if (!run.stop_error.empty()) {
    std::fprintf(stderr, "txn: in flight %s: %s\n", std::string(ProtocolName(run.protocol)).c_str(),
                 run.stop_error.c_str());
  }
  if (run.errors > 0 || !run.stop_error.empty()) errors_ = true;
  in_flight_.push_back(run);
}

const PointResult* Report::FindRun(Setup setup, Store store, Protocol protocol,
                                   int concurrency) const {
  for (const PointResult& r : runs_) {
    const Point& p = r.point;
    if (p.setup == setup && p.store == store && p.protocol == protocol &&
        p.concurrency == concurrency) {
      return &r;
    }
  }
  return nullptr;
}

void Report::Target(const std::string& name, const std::string& figure, const std::string& goal,
                    std::optional<bool> met, double value) {
  if (o_.json) {
    JsonLine j(kBench);
    j.Str("kind", "target").Str("name", name).Str("goal", goal);
    if (met) {
      j.Num("value", value, 2).Bool("target_met", *met);
    } else {
      j.Str("result", "not measured");
    }
    j.Print();
    return;
  }
  std::printf("%-56s %-32s %-34s %s\n", name.c_str(), figure.c_str(), goal.c_str(),
              !met ? "not measured" : (*met ? "met" : "NOT met"));
}

void Report::Summary() {
  PrintLatencyFloorHeading(o_, "the p50s above, done one after another", Fields(Point{}));
  for (const PointResult& r : runs_) {
    if (r.point.concurrency != 1) continue;
    PrintLatencyFloor(o_, kBench, Fields(r.point), r.loop.percentile_us(0.50), FloorUs(r.point),
                      FloorText(r.point));
  }

  if (!o_.json) std::printf("\ntargets (informational: they never change the exit status)\n");
  char figure[96];
  for (const Setup setup : {Setup::kNull, Setup::kBank}) {
    const double goal = setup == Setup::kNull ? kTargetNullTxPerS : kTargetBankTxPerS;
    const std::string name = "2pc tx/s at 64, " +
                             std::string(setup == Setup::kNull ? "storage-free" : "SQLite bank") +
                             " participants, SQLite store";
    const PointResult* r = FindRun(setup, Store::kSqlite, Protocol::k2pc, kTargetConcurrency);
    if (r) {
      std::snprintf(figure, sizeof figure, "%.0f tx/s", r->tx_per_s());
    } else {
      std::snprintf(figure, sizeof figure, "-");
    }
    Target(name, figure, ">= " + std::to_string(static_cast<int>(goal)),
           r ? std::optional<bool>(r->tx_per_s() >= goal) : std::nullopt, r ? r->tx_per_s() : 0);
  }
  {
    const Point p{Setup::kNull, Store::kSqlite, Protocol::k2pc, 1};
    const PointResult* r = FindRun(p.setup, p.store, p.protocol, 1);
    const double ratio = r ? r->loop.percentile_us(0.50) / FloorUs(p) : NAN;
    if (r) {
      std::snprintf(figure, sizeof figure, "p50 %.0f us = %.2fx %.0f us",
                    r->loop.percentile_us(0.5), ratio, FloorUs(p));
    } else {
      std::snprintf(figure, sizeof figure, "-");
    }
    Target("2pc p50 at 1, storage-free, SQLite / floor", figure, "<= 2x " + FloorText(p),
           r ? std::optional<bool>(ratio <= kTargetP50ToFloor) : std::nullopt, ratio);
  }
  for (const Protocol protocol : {Protocol::kTcc, Protocol::k2pc}) {
    const InFlightResult* r = nullptr;
    for (const InFlightResult& f : in_flight_) {
      if (f.protocol == protocol && f.requested == kTargetInFlight && f.live >= kTargetInFlight) {
        r = &f;
      }
    }
    if (r) {
      std::snprintf(figure, sizeof figure, "%.1f MB (peak %.1f)", Mb(r->held.rss_kb),
                    Mb(r->held.hwm_kb));
    } else {
      std::snprintf(figure, sizeof figure, "-");
    }
    Target("txcoord RSS, 10,000 " + std::string(ProtocolName(protocol)) + " in flight", figure,
           "<= 150 MB",
           r ? std::optional<bool>(Mb(r->held.rss_kb) <= kTargetInFlightRssMb) : std::nullopt,
           r ? Mb(r->held.rss_kb) : 0);
  }
  std::fflush(stdout);
}

}  // namespace txcoord::bench
