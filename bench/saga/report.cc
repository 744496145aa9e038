#include "report.h"

#include <cmath>
#include <cstdio>
#include <utility>

#include "json_line.h"

namespace txcoord::bench {
namespace {

constexpr char kBench[] = "saga";

// The run table's and the latency table's first columns.
std::vector<PointField> Fields(const Point& p) {
  return {{"work", "workload", 6, std::string(WorkloadName(p.workload))},
          {"setup", "setup", 6, std::string(SetupName(p.setup))},
          {"store", "store", 10, std::string(StoreName(p.store))}};
}

void PrintErrors(const std::string& what, int64_t errors, const std::vector<std::string>& first) {
  PrintFailures(kBench, what, "sagas", errors, first);
}

// Microseconds of CPU per saga, from CPUs busy and sagas per second.
double UsPerSaga(double cpus, double sagas_per_s) {
  return sagas_per_s > 0 ? cpus / sagas_per_s * 1e6 : NAN;
}

double Ratio(int64_t a, int64_t b) {
  return b > 0 ? static_cast<double>(a) / static_cast<double>(b) : NAN;
}

}  // namespace

std::string RunLabel(const Point& p) { return PointLabel(Fields(p), p.concurrency); }

FloorFormula FormulaOf(Workload workload, Setup setup) {
  const bool durable = setup == Setup::kSqlite;
  if (workload == Workload::kAbort3) return {7, 7, durable ? 6 : 0};
  return {4, 4, durable ? 3 : 0};
}

void Report::Header(const Host& host, const Storage& work_dir, const Runner& runner,
                    const std::optional<ParticipantSettings>& participant) {
  HeaderText text;
  text.title = "sagas through txcoord";
  text.label_width = 13;
  text.sqlite_use = "txcoord's store (WAL, synchronous=FULL)";
  if (participant) {
    text.extra_label = "participants";
    text.extra_text =
        "sqlite set-up: one saga_participant per step, SqliteSagaStep; read back: "
        "journal_mode=" +
        participant->journal_mode + " synchronous=" + std::to_string(participant->synchronous) +
        (participant->synchronous == 2 ? " (FULL)" : "");
  }
  PrintHeader(o_, kBench, text, host, work_dir, runner.rig(), [&](JsonLine& j) {
    if (participant) {
      j.Str("participant_journal_mode", participant->journal_mode)
          .Int("participant_synchronous", participant->synchronous);
    }
  });
}

void Report::AddFloors(std::vector<Floor> floors) {
  if (!floors_.AddAndPrint(std::move(floors), o_.json, kBench)) errors_ = true;
}

double Report::FloorUs(const Point& point) const {
  return floors_.Us(FormulaOf(point.workload, point.setup), point.store);
}

std::string Report::FloorText(const Point& point) const {
  return FloorSet::Text(FormulaOf(point.workload, point.setup), point.store, "participants");
}

void Report::RunsHeader() {
  if (o_.json) return;
  std::printf(
      "\nruns: N clients in a closed loop, one saga each at a time (wait: true); cpu_* in CPUs "
      "busy, *_us CPU per saga; rss/hwm of txcoord in MB\n");
  PrintPointColumns(Fields(Point{}), /*titles=*/true);
  std::printf(
      "%4s %7s %8s %8s %6s %6s %6s %6s %6s %7s %7s %7s %9s %6s %6s %6s %7s "
      "%6s %6s\n",
      "conc", "sagas/s", "p50_us", "p99_us", "errors", "cpu_tc", "cpu_pt", "cpu_pg", "cpu_ld",
      "cpu_all", "tc_us", "all_us", "commits/s", "app/sg", "group", "cb/sg", "cb_fail", "rss",
      "hwm");
  std::fflush(stdout);
}

void Report::AddRun(const PointResult& run) {
  const Point& p = run.point;
  const double window = run.loop.window_s;
  const double rate = run.sagas_per_s();
  const double commits_per_s = window > 0 ? static_cast<double>(run.log_commits) / window : 0;
  const double appends_per_saga = Ratio(run.log_appends, run.loop.ops());
  const double group = Ratio(run.log_appends, run.log_commits);
  const double callbacks_per_saga = Ratio(run.callbacks, run.loop.ops());
  const double tc_us = UsPerSaga(run.cpu_coordinator, rate);
  const double all_us = UsPerSaga(run.loop.cpu_machine_cores, rate);
  const double floor = FloorUs(p);
  if (o_.json) {
    JsonLine j(kBench);
    j.Str("kind", "run");
    AddPoint(j, Fields(p));
    j.Int("concurrency", p.concurrency)
        .Num("sagas_per_s", rate)
        .Num("p50_us", run.loop.percentile_us(0.50))
        .Num("p99_us", run.loop.percentile_us(0.99))
        .Int("sagas", run.loop.ops())
        .Int("finished_whole_run", run.finished)
        .Int("errors", run.loop.errors)
        .Num("cpu_coordinator", run.cpu_coordinator, 2)
        .Num("cpu_participants", run.cpu_participants, 2)
        .Num("cpu_postgres", run.cpu_postgres, 2)
        .Num("cpu_load_generator", run.loop.cpu_self_cores, 2)
        .Num("cpu_machine", run.loop.cpu_machine_cores, 2)
        .Num("coordinator_cpu_us_per_saga", tc_us)
        .Num("machine_cpu_us_per_saga", all_us)
        .Int("log_commits", run.log_commits)
        .Int("log_appends", run.log_appends)
        .Num("log_appends_per_saga", appends_per_saga, 2)
        .Num("log_avg_group", group, 2)
        .Int("callbacks", run.callbacks)
        .Num("callbacks_per_saga", callbacks_per_saga, 2)
        .Int("callback_failures", run.callback_failures)
        .Num("rss_mb", Mb(run.coordinator_memory.rss_kb))
        .Num("hwm_mb", Mb(run.coordinator_memory.hwm_kb))
        .Num("floor_us", floor)
        .Str("floor", FloorText(p))
        .Num("p50_to_floor", run.loop.percentile_us(0.50) / floor, 2)
        .Bool("effects_checked", p.setup == Setup::kSqlite && run.loop.errors == 0)
        .Print();
  } else {
    PrintPointColumns(Fields(p), /*titles=*/false);
    std::printf(
        "%4d %7.0f %8.0f %8.0f %6lld %6.2f %6.2f %6.2f %6.2f %7.2f %7.0f %7.0f "
        "%9.0f %6.1f %6.1f %6.1f %7lld %6.1f %6.1f\n",
        p.concurrency, rate, run.loop.percentile_us(0.50), run.loop.percentile_us(0.99),
        static_cast<long long>(run.loop.errors), run.cpu_coordinator, run.cpu_participants,
        run.cpu_postgres, run.loop.cpu_self_cores, run.loop.cpu_machine_cores, tc_us, all_us,
        commits_per_s, appends_per_saga, group, callbacks_per_saga,
        static_cast<long long>(run.callback_failures), Mb(run.coordinator_memory.rss_kb),
        Mb(run.coordinator_memory.hwm_kb));
    std::fflush(stdout);
  }
  PrintErrors(RunLabel(p), run.loop.errors, run.loop.first_errors);
  if (!run.check_error.empty()) {
    std::fprintf(stderr, "saga: %s: %s\n", RunLabel(p).c_str(), run.check_error.c_str());
  }
  if (!run.stop_error.empty()) {
    std::fprintf(stderr, "saga: %s: %s\n", RunLabel(p).c_str(), run.stop_error.c_str());
  }
  if (run.loop.errors > 0 || !run.check_error.empty() || !run.stop_error.empty()) errors_ = true;
  runs_.push_back(run);
}

const PointResult* Report::FindRun(Workload workload, Setup setup, Store store,
                                   int concurrency) const {
  for (const PointResult& r : runs_) {
    const Point& p = r.point;
    if (p.workload == workload && p.setup == setup && p.store == store &&
        p.concurrency == concurrency) {
      return &r;
    }
  }
  return nullptr;
}

void Report::Summary() {
  PrintLatencyFloorHeading(o_,
                           "the p50s above; the floor is the critical path's syncs and round trips "
                           "done one after another",
                           Fields(Point{}));
  for (const PointResult& r : runs_) {
    if (r.point.concurrency != 1) continue;
    PrintLatencyFloor(o_, kBench, Fields(r.point), r.loop.percentile_us(0.50), FloorUs(r.point),
                      FloorText(r.point));
  }

  const std::string name = "three-step sagas/s at 64, storage-free";
  const PointResult* r = FindRun(Workload::kSeq3, Setup::kNull, Store::kSqlite, kTargetConcurrency);
  if (o_.json) {
    JsonLine j(kBench);
    j.Str("kind", "target")
        .Str("name", name + " participants, SQLite store")
        .Str("goal", ">= 3000");
    if (r) {
      j.Num("value", r->sagas_per_s()).Bool("target_met", r->sagas_per_s() >= kTargetSagasPerS);
    } else {
      j.Str("result", "not measured");
    }
    j.Print();
  } else {
    std::printf("\n(informational: the target never changes the exit status)\n");
    if (r) {
      std::printf("target ≥ 3,000 %s: %s (%.0f sagas/s; seq3, null participants, SQLite store)\n",
                  name.c_str(), r->sagas_per_s() >= kTargetSagasPerS ? "met" : "NOT met",
                  r->sagas_per_s());
    } else {
      std::printf(
          "target ≥ 3,000 %s: not measured (needs seq3, --setup null, --store sqlite, "
          "concurrency 64)\n",
          name.c_str());
    }
  }
  std::fflush(stdout);
}

}  // namespace txcoord::bench
