#include "coordinator_report.h"

#include <sqlite3.h>

#include <cmath>
#include <cstdio>

#include "txcoord/testing/postgres_server.h"

namespace txcoord::bench {

double Mb(int64_t kb) { return static_cast<double>(kb) * 1024.0 / 1e6; }

void PrintHeader(const ReportOptions& o, std::string_view bench, const HeaderText& text,
                 const Host& host, const Storage& work_dir, const CoordinatorRig& rig,
                 const std::function<void(JsonLine&)>& add_json) {
  const testing::PostgresServer* pg = rig.postgres();
  if (o.json) {
    JsonLine j(bench);
    j.Str("kind", "machine")
        .Int("nproc", host.nproc)
        .Str("cpu", host.cpu)
        .Str("kernel", host.kernel)
        .Str("dir", work_dir.path)
        .Str("fs", work_dir.fs_type)
        .Str("device", work_dir.device)
        .Str("write_cache", work_dir.write_cache)
        .Str("sqlite_version", sqlite3_libversion());
    if (add_json) add_json(j);
    if (pg != nullptr) j.Str("postgresql_dir", pg->dir());
    j.Num("seconds", o.seconds, 2).Num("warmup_seconds", o.warmup_s, 2).Print();
    return;
  }
  const int w = text.label_width;
  std::printf("%.*s: %s; %.1f s measured per run after a %.1f s warm-up\n",
              static_cast<int>(bench.size()), bench.data(), text.title.c_str(), o.seconds,
              o.warmup_s);
  std::printf("%-*s%ld CPUs (%s), %s; the load generator, txcoord, the participants\n", w,
              "machine", host.nproc, host.cpu.c_str(), host.kernel.c_str());
  std::printf("%-*sand PostgreSQL all share them\n", w, "");
  std::printf("%-*s%s: %s on %s, write cache: %s\n", w, "dir", work_dir.path.c_str(),
              work_dir.fs_type.c_str(), work_dir.device.c_str(), work_dir.write_cache.c_str());
  std::printf("%-*s%s: %s\n", w, "sqlite", sqlite3_libversion(), text.sqlite_use.c_str());
  if (!text.extra_label.empty()) {
    std::printf("%-*s%s\n", w, text.extra_label.c_str(), text.extra_text.c_str());
  }
  if (pg != nullptr) {
    std::printf("%-*sthrowaway server started by the test rig in %s\n", w, "postgresql",
                pg->dir().c_str());
  } else {
    std::printf("%-*snot used (--store sqlite)\n", w, "postgresql");
  }
  std::printf("\nfloors: one client, no concurrency\n");
  PrintFloorHeader();
}

double FloorSet::P50Us(std::string_view name) const {
  for (const Floor& f : floors_) {
    if (f.name == name) return f.loop.percentile_us(0.50);
  }
  return NAN;
}

double FloorSet::Us(const FloorFormula& f, Store store) const {
  const double store_sync = P50Us(store == Store::kSqlite ? "fdatasync" : "pg_single_commit");
  return f.store_syncs * store_sync + f.round_trips * P50Us("http_rtt") +
         f.participant_syncs * P50Us("fdatasync");
}

std::string FloorSet::Text(const FloorFormula& f, Store store, std::string_view participants) {
  std::string text = std::to_string(f.store_syncs) + " " +
                     (store == Store::kSqlite ? "fdatasync" : "pg_single_commit") + " + " +
                     std::to_string(f.round_trips) + " http_rtt";
  if (f.participant_syncs > 0) {
    text += " + " + std::to_string(f.participant_syncs) + " fdatasync (" +
            std::string(participants) + ")";
  }
  return text;
}

std::string PointLabel(const std::vector<PointField>& point, int concurrency) {
  std::string label;
  for (const PointField& f : point) label += f.value + " ";
  return label + "c=" + std::to_string(concurrency);
}

void PrintPointColumns(const std::vector<PointField>& point, bool titles) {
  for (const PointField& f : point)
    std::printf("%-*s ", f.width, titles ? f.title : f.value.c_str());
}

void AddPoint(JsonLine& j, const std::vector<PointField>& point) {
  for (const PointField& f : point) j.Str(f.key, f.value);
}

void PrintLatencyFloorHeading(const ReportOptions& o, const char* what,
                              const std::vector<PointField>& point) {
  if (o.json) return;
  std::printf("\nlatency at concurrency 1 beside its floor (%s)\n", what);
  PrintPointColumns(point, /*titles=*/true);
  std::printf("%8s %9s %6s  %s\n", "p50_us", "floor_us", "ratio", "floor");
}

void PrintLatencyFloor(const ReportOptions& o, std::string_view bench,
                       const std::vector<PointField>& point, double p50_us, double floor_us,
                       const std::string& floor_text) {
  if (o.json) {
    JsonLine j(bench);
    j.Str("kind", "latency_floor");
    AddPoint(j, point);
    j.Num("p50_us", p50_us)
        .Num("floor_us", floor_us)
        .Num("ratio", p50_us / floor_us, 2)
        .Str("floor", floor_text)
        .Print();
    return;
  }
  PrintPointColumns(point, /*titles=*/false);
  std::printf("%8.0f %9.0f %5.2fx  %s\n", p50_us, floor_us, p50_us / floor_us, floor_text.c_str());
}

void PrintFailures(std::string_view bench, const std::string& what, std::string_view noun,
                   int64_t errors, const std::vector<std::string>& first) {
  if (errors == 0) return;
  std::fprintf(stderr, "%.*s: %s: %lld failed %.*s; first ones:\n", static_cast<int>(bench.size()),
               bench.data(), what.c_str(), static_cast<long long>(errors),
               static_cast<int>(noun.size()), noun.data());
  for (const std::string& e : first) std::fprintf(stderr, "  %s\n", e.c_str());
}

bool FloorSet::AddAndPrint(std::vector<Floor> floors, bool json, std::string_view bench) {
  bool ok = true;
  for (Floor& f : floors) {
    PrintFloor(f, json, bench);
    PrintFailures(bench, "floor " + f.name, "operations", f.loop.errors, f.loop.first_errors);
    if (f.loop.errors > 0) ok = false;
    Add(std::move(f));
  }
  std::fflush(stdout);
  return ok;
}

void Progress(bool json, std::string_view bench, const std::string& what) {
  if (json) {
    std::fprintf(stderr, "%.*s: %s\n", static_cast<int>(bench.size()), bench.data(), what.c_str());
  }
}

int Fail(std::string_view bench, const Status& s) {
  std::fprintf(stderr, "%.*s: %s\n", static_cast<int>(bench.size()), bench.data(),
               s.ToString().c_str());
  return 1;
}

}  // namespace txcoord::bench
