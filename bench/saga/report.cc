#include "report.h"

#include <sqlite3.h>

#include <cmath>
#include <cstdio>
#include <utility>

#include "json_line.h"
#include "txcoord/testing/postgres_server.h"

namespace txcoord::bench {
namespace {

constexpr char kBench[] = "saga";

double Mb(int64_t kb) { return static_cast<double>(kb) * 1024.0 / 1e6; }

std::string RunLabel(const Point& p) {
  return std::string(WorkloadName(p.workload)) + " " + std::string(SetupName(p.setup)) + " " +
         std::string(StoreName(p.store)) + " c=" + std::to_string(p.concurrency);
}

void PrintErrors(const std::string& what, int64_t errors, const std::vector<std::string>& first) {
  if (errors == 0) return;
  std::fprintf(stderr, "saga: %s: %lld failed sagas; first ones:\n", what.c_str(),
               static_cast<long long>(errors));
  for (const std::string& e : first) std::fprintf(stderr, "  %s\n", e.c_str());
}

// Microseconds of CPU per saga, from CPUs busy and sagas per second.
double UsPerSaga(double cpus, double sagas_per_s) {
  return sagas_per_s > 0 ? cpus / sagas_per_s * 1e6 : NAN;
}

double Ratio(int64_t a, int64_t b) {
  return b > 0 ? static_cast<double>(a) / static_cast<double>(b) : NAN;
}

}  // namespace

FloorFormula FormulaOf(Workload workload, Setup setup) {
  const bool durable = setup == Setup::kSqlite;
  if (workload == Workload::kAbort3) return {7, 7, durable ? 6 : 0};
  return {4, 4, durable ? 3 : 0};
}

void Report::Header(const Host& host, const Storage& work_dir, const Runner& runner,
                    const std::optional<ParticipantSettings>& participant) {
  const testing::PostgresServer* pg = runner.postgres();
  if (o_.json) {
    JsonLine j(kBench);
    j.Str("kind", "machine")
        .Int("nproc", host.nproc)
        .Str("cpu", host.cpu)
        .Str("kernel", host.kernel)
        .Str("dir", work_dir.path)
        .Str("fs", work_dir.fs_type)
        .Str("device", work_dir.device)
        .Str("write_cache", work_dir.write_cache)
        .Str("sqlite_version", sqlite3_libversion());
    if (participant) {
      j.Str("participant_journal_mode", participant->journal_mode)
          .Int("participant_synchronous", participant->synchronous);
    }
    if (pg != nullptr) j.Str("postgresql_dir", pg->dir());
    j.Num("seconds", o_.seconds, 2).Num("warmup_seconds", o_.warmup_s, 2).Print();
    return;
  }
  std::printf("saga: sagas through txcoord; %.1f s measured per run after a %.1f s warm-up\n",
              o_.seconds, o_.warmup_s);
  std::printf("machine      %ld CPUs (%s), %s; the load generator, txcoord, the participants\n",
              host.nproc, host.cpu.c_str(), host.kernel.c_str());
  std::printf("             and PostgreSQL all share them\n");
  std::printf("dir          %s: %s on %s, write cache: %s\n", work_dir.path.c_str(),
              work_dir.fs_type.c_str(), work_dir.device.c_str(), work_dir.write_cache.c_str());
  std::printf("sqlite       %s: txcoord's store (WAL, synchronous=FULL)\n", sqlite3_libversion());
  if (participant) {
    std::printf(
        "participants sqlite set-up: one saga_participant per step, SqliteSagaStep; read back: "
        "journal_mode=%s synchronous=%d%s\n",
        participant->journal_mode.c_str(), participant->synchronous,
        participant->synchronous == 2 ? " (FULL)" : "");
  }
  if (pg != nullptr) {
    std::printf("postgresql   throwaway server started by the test rig in %s\n", pg->dir().c_str());
  } else {
    std::printf("postgresql   not used (--store sqlite)\n");
  }
  std::printf("\nfloors: one client, no concurrency\n");
  PrintFloorHeader();
}

void Report::AddFloors(std::vector<Floor> floors) {
  for (Floor& f : floors) {
    PrintFloor(f, o_.json, kBench);
    if (f.loop.errors > 0) {
      std::fprintf(stderr, "saga: floor %s: %lld errors; first: %s\n", f.name.c_str(),
                   static_cast<long long>(f.loop.errors),
                   f.loop.first_errors.empty() ? "?" : f.loop.first_errors[0].c_str());
      errors_ = true;
    }
    floors_.push_back(std::move(f));
  }
  std::fflush(stdout);
}

double Report::FloorP50Us(const std::string& name) const {
  for (const Floor& f : floors_) {
    if (f.name == name) return f.loop.percentile_us(0.50);
  }
  return NAN;
}

double Report::FloorUs(const Point& point) const {
  const FloorFormula f = FormulaOf(point.workload, point.setup);
  const double store_sync =
      FloorP50Us(point.store == Store::kSqlite ? "fdatasync" : "pg_single_commit");
  return f.store_syncs * store_sync + f.round_trips * FloorP50Us("http_rtt") +
         f.participant_syncs * FloorP50Us("fdatasync");
}

std::string Report::FloorText(const Point& point) const {
  const FloorFormula f = FormulaOf(point.workload, point.setup);
  std::string text = std::to_string(f.store_syncs) + " " +
                     (point.store == Store::kSqlite ? "fdatasync" : "pg_single_commit") + " + " +
                     std::to_string(f.round_trips) + " http_rtt";
  if (f.participant_syncs > 0) {
    text += " + " + std::to_string(f.participant_syncs) + " fdatasync (participants)";
  }
  return text;
}

void Report::RunsHeader() {
  if (o_.json) return;
  std::printf(
      "\nruns: N clients in a closed loop, one saga each at a time (wait: true); cpu_* in CPUs "
      "busy, *_us CPU per saga; rss/hwm of txcoord in MB\n");
  std::printf(
      "%-6s %-6s %-10s %4s %7s %8s %8s %6s %6s %6s %6s %6s %7s %7s %7s %9s %6s %6s %6s %7s "
      "%6s %6s\n",
      "work", "setup", "store", "conc", "sagas/s", "p50_us", "p99_us", "errors", "cpu_tc", "cpu_pt",
      "cpu_pg", "cpu_ld", "cpu_all", "tc_us", "all_us", "commits/s", "app/sg", "group", "cb/sg",
      "cb_fail", "rss", "hwm");
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
    JsonLine(kBench)
        .Str("kind", "run")
        .Str("workload", WorkloadName(p.workload))
        .Str("setup", SetupName(p.setup))
        .Str("store", StoreName(p.store))
        .Int("concurrency", p.concurrency)
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
    std::printf(
        "%-6s %-6s %-10s %4d %7.0f %8.0f %8.0f %6lld %6.2f %6.2f %6.2f %6.2f %7.2f %7.0f %7.0f "
        "%9.0f %6.1f %6.1f %6.1f %7lld %6.1f %6.1f\n",
        std::string(WorkloadName(p.workload)).c_str(), std::string(SetupName(p.setup)).c_str(),
        std::string(StoreName(p.store)).c_str(), p.concurrency, rate, run.loop.percentile_us(0.50),
        run.loop.percentile_us(0.99), static_cast<long long>(run.loop.errors), run.cpu_coordinator,
        run.cpu_participants, run.cpu_postgres, run.loop.cpu_self_cores, run.loop.cpu_machine_cores,
        tc_us, all_us, commits_per_s, appends_per_saga, group, callbacks_per_saga,
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
  if (!o_.json) {
    std::printf(
        "\nlatency at concurrency 1 beside its floor (the p50s above; the floor is the critical "
        "path's syncs and round trips done one after another)\n");
    std::printf("%-6s %-6s %-10s %8s %9s %6s  %s\n", "work", "setup", "store", "p50_us", "floor_us",
                "ratio", "floor");
  }
  for (const PointResult& r : runs_) {
    if (r.point.concurrency != 1) continue;
    const double p50 = r.loop.percentile_us(0.50);
    const double floor = FloorUs(r.point);
    if (o_.json) {
      JsonLine(kBench)
          .Str("kind", "latency_floor")
          .Str("workload", WorkloadName(r.point.workload))
          .Str("setup", SetupName(r.point.setup))
          .Str("store", StoreName(r.point.store))
          .Num("p50_us", p50)
          .Num("floor_us", floor)
          .Num("ratio", p50 / floor, 2)
          .Str("floor", FloorText(r.point))
          .Print();
    } else {
      std::printf("%-6s %-6s %-10s %8.0f %9.0f %5.2fx  %s\n",
                  std::string(WorkloadName(r.point.workload)).c_str(),
                  std::string(SetupName(r.point.setup)).c_str(),
                  std::string(StoreName(r.point.store)).c_str(), p50, floor, p50 / floor,
                  FloorText(r.point).c_str());
    }
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
