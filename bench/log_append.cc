// log_append: how fast the durable transaction log (coordinator/log.h) appends, beside the two
// floors that bound it, all measured in the same run:
//
//   - fdatasync: one thread rewriting 4 KiB of a file in the SQLite store's directory and calling
//     fdatasync, as fast as the disk allows. A log that synced once per append could not go
//     faster; group commit is what must take the SQLite log past it (target: 5x at 64 writers).
//   - pg_single_commit: one libpqxx client doing INSERT + COMMIT in a loop on the same server
//     the PostgreSQL log writes to: what a commit-per-append log would reach there (target for
//     the PostgreSQL log: 3x at 64 writers).
//
// Each log run opens a fresh store, runs N writer threads in a closed loop (each appends a
// `begin` for a new gtid as soon as its previous append returned), discards a short warm-up,
// and reports appends/s, p50/p99 latency and the group-commit counters of the measured window.
//
// A program, not a test: it prints figures and asserts nothing about them. Exit status: 0 when
// every run completed with no failed append, whether or not a target was met; 1 when the
// benchmark itself failed; 2 on a bad command line. See README.md for how to read the output.
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "flags.h"
#include "floors.h"
#include "json_line.h"
#include "log_test_util.h"
#include "machine.h"
#include "txcoord/coordinator/log.h"
#include "txcoord/testing/postgres_server.h"

namespace txcoord::bench {
namespace {

namespace fs = std::filesystem;

// The issue's targets, at kTargetWriters concurrent writers.
constexpr int kTargetWriters = 64;
constexpr double kSqliteTargetRatio = 5.0;    // x the fdatasync rate
constexpr double kPostgresTargetRatio = 3.0;  // x PostgreSQL's single-client commit rate

// ---- Command line ------------------------------------------------------------------------------

constexpr char kUsage[] = R"(usage: log_append [options]

Measures the durable transaction log: appends/s and p50/p99 latency at several numbers of
concurrent writers for each backend, beside the disk's raw fdatasync rate and PostgreSQL's
single-client commit rate, both measured in the same run.

  --backend B      sqlite, postgresql or all (default: all)
  --writers LIST   comma-separated writer counts (default: 1,16,64)
  --seconds S      measured time of each run (default: 3)
  --warmup S       time before each run that is not measured (default: 0.3)
  --dir DIR        where the SQLite stores and the fdatasync file go; a fresh subdirectory is
                   made in DIR and removed at the end (default: $TMPDIR, else /tmp)
  --pg CONNINFO    use this PostgreSQL server (libpq key=value string or URI; the role needs
                   CREATEDB: a database is created per run and dropped after it) instead of
                   starting a throwaway PostgreSQL 15 with the test rig
  --json           one JSON object per line on stdout; progress goes to stderr
  --help           this text

Exit status: 0 when every run completed without a failed append (met targets or not),
1 when the benchmark failed, 2 on a bad command line.
)";

struct Options {
  bool sqlite = true;
  bool postgres = true;
  std::vector<int> writers = {1, 16, kTargetWriters};
  double seconds = 3.0;
  double warmup_seconds = 0.3;
  std::string dir;          // empty: $TMPDIR, else /tmp
  std::string pg_conninfo;  // empty: start a server with the test rig
  bool json = false;
  bool help = false;
};

Result<Options> ParseFlags(int argc, char** argv) {
  Options o;
  bool pg_given = false;
  FlagReader flags(argc, argv, {"--backend", "--writers", "--seconds", "--warmup", "--dir", "--pg"},
                   /*json=*/true);
  while (flags.Next()) {
    const std::string_view name = flags.name();
    const std::string_view value = flags.value();
    if (name == "--json") {
      o.json = true;
    } else if (name == "--backend") {
      if (value == "sqlite") {
        o.postgres = false;
      } else if (value == "postgresql") {
        o.sqlite = false;
      } else if (value != "all") {
        return Status::InvalidArgument("--backend wants sqlite, postgresql or all, got \"" +
                                       std::string(value) + "\"");
      }
    } else if (name == "--writers") {
      // 1024 threads is far past anything the log is sized for; more is surely a typo.
      auto w = ParseCounts(name, value, 1024);
      if (!w.ok()) return w.status();
      o.writers = std::move(w).value();
    } else if (name == "--seconds") {
      auto s = ParseSeconds(name, value, 0.1);
      if (!s.ok()) return s.status();
      o.seconds = *s;
    } else if (name == "--warmup") {
      auto s = ParseSeconds(name, value, 0.0);
      if (!s.ok()) return s.status();
      o.warmup_seconds = *s;
    } else if (name == "--dir") {
      if (value.empty()) return Status::InvalidArgument("--dir needs a directory");
      o.dir = std::string(value);
    } else if (name == "--pg") {
      if (value.empty()) return Status::InvalidArgument("--pg needs a connection string");
      o.pg_conninfo = std::string(value);
      pg_given = true;
    }
  }
  if (!flags.status().ok()) return flags.status();
  if (pg_given && !o.postgres) {
    return Status::InvalidArgument("--pg is only used with --backend postgresql or all");
  }
  o.help = flags.help();
  o.json = flags.json();
  return o;
}

// ---- PostgreSQL server -------------------------------------------------------------------------

// `conninfo` with its database replaced by `dbname`, for a libpq key=value string (libpq takes
// the last of repeated keywords) or a postgresql:// URI (the path is the database).
std::string WithDatabase(const std::string& conninfo, const std::string& dbname) {
  const size_t scheme = conninfo.find("://");
  if (!conninfo.starts_with("postgres") || scheme == std::string::npos) {
    return conninfo + " dbname=" + dbname;
  }
  const size_t path = conninfo.find_first_of("/?", scheme + 3);
  if (path == std::string::npos) return conninfo + "/" + dbname;
  if (conninfo[path] == '?') return conninfo.substr(0, path) + "/" + dbname + conninfo.substr(path);
  const size_t query = conninfo.find('?', path);
  return conninfo.substr(0, path) + "/" + dbname +
         (query == std::string::npos ? "" : conninfo.substr(query));
}

// The server the PostgreSQL figures come from: a throwaway one started by the test rig (durable:
// fsync=on, synchronous_commit=on, its data in $TMPDIR), or an existing one given with --pg.
// Every run gets a database of its own, dropped after it, so each store starts empty.
class PgServer {
 public:
  static Result<std::unique_ptr<PgServer>> Open(const Options& o) {
    auto pg = std::unique_ptr<PgServer>(new PgServer());
    if (o.pg_conninfo.empty()) {
      auto server = testing::PostgresServer::Start();
      if (!server.ok()) return server.status().WithContext("start PostgreSQL with the test rig");
      pg->server_ = std::move(server).value();
      pg->admin_conninfo_ = pg->server_->ConnInfo("postgres");
    } else {
      pg->admin_conninfo_ = o.pg_conninfo;
    }
    try {
      pqxx::connection c(pg->admin_conninfo_);
      pqxx::nontransaction n(c);
      const auto show = [&](const char* name) {
        return n.exec1(std::string("SHOW ") + name)[0].as<std::string>();
      };
      pg->version_ = show("server_version");
      pg->fsync_ = show("fsync");
      pg->synchronous_commit_ = show("synchronous_commit");
    } catch (const std::exception& e) {
      return Status::Unavailable(std::string("connect to PostgreSQL: ") + e.what());
    }
    return pg;
  }

  // A new empty database; returns its name.
  Result<std::string> CreateDatabase(const std::string& prefix) {
    if (server_) return server_->CreateDatabase(prefix);
    const std::string name =
        prefix + "_" + std::to_string(getpid()) + "_" + std::to_string(++databases_created_);
    try {
      pqxx::connection c(admin_conninfo_);
      pqxx::nontransaction n(c);
      n.exec0("CREATE DATABASE " + c.quote_name(name));
      return name;
    } catch (const std::exception& e) {
      return Status::Unavailable("create database " + name +
                                 " on the --pg server (the role needs CREATEDB): " + e.what());
    }
  }

  // Best effort: a database left behind only costs disk on a server about to go away, or
  // shows up by its name (txcoord_bench_*) on a --pg server.
  void DropDatabase(const std::string& name) {
    try {
      pqxx::connection c(admin_conninfo_);
      pqxx::nontransaction n(c);
      n.exec0("DROP DATABASE IF EXISTS " + c.quote_name(name));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "log_append: warning: could not drop database %s: %s\n", name.c_str(),
                   e.what());
    }
  }

  std::string ConnInfo(const std::string& dbname) const {
    return server_ ? server_->ConnInfo(dbname) : WithDatabase(admin_conninfo_, dbname);
  }

  bool started_by_rig() const { return server_ != nullptr; }
  // The rig's data directory; empty for --pg (where the data lives is the server's business).
  std::string data_dir() const { return server_ ? server_->data_dir() : ""; }
  const std::string& version() const { return version_; }
  const std::string& fsync() const { return fsync_; }
  const std::string& synchronous_commit() const { return synchronous_commit_; }

 private:
  PgServer() = default;

  std::unique_ptr<testing::PostgresServer> server_;  // null with --pg
  std::string admin_conninfo_;                       // for CREATE/DROP DATABASE
  int databases_created_ = 0;
  std::string version_;
  std::string fsync_;
  std::string synchronous_commit_;
};

// ---- Log runs --------------------------------------------------------------------------------

enum class Backend { kSqlite, kPostgres };

std::string_view BackendName(Backend b) { return b == Backend::kSqlite ? "sqlite" : "postgresql"; }

struct LogRun {
  Backend backend = Backend::kSqlite;
  int writers = 0;
  LoopResult loop;
  int64_t window_commits = 0;  // group commits during the measured window
  int64_t window_appends = 0;  // appends they carried
  int64_t largest_group = 0;   // over the whole run: the log keeps only a running maximum

  double commits_per_s() const {
    return loop.window_s > 0 ? static_cast<double>(window_commits) / loop.window_s : 0;
  }
  double avg_group() const {
    return window_commits > 0
               ? static_cast<double>(window_appends) / static_cast<double>(window_commits)
               : 0;
  }
};

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// N writers appending, each in a closed loop, one `begin` (two branches, a small JSON payload:
// the record a coordinator writes when a transaction starts) for a new gtid per append.
Result<LogRun> MeasureLog(const coordinator::LogConfig& config, Backend backend, int writers,
                          const Options& o) {
  auto opened = coordinator::OpenLog(config);
  if (!opened.ok()) return opened.status();
  coordinator::TransactionLog& log = **opened;

  LogRun run;
  run.backend = backend;
  run.writers = writers;
  coordinator::LogStats at_start;
  coordinator::LogStats at_end;
  run.loop = RunClosedLoop(
      writers, o.warmup_seconds, o.seconds,
      [&](int thread, int64_t seq) {
        // Building the record (a few microseconds) is inside the timed op, as it is for a
        // coordinator; it is far below one fsync.
        std::vector<v1::LogRecord> records;
        records.push_back(coordinator::testutil::Begin(
            "bench-" + std::to_string(thread) + "-" + std::to_string(seq), NowMs()));
        return log.Append(std::move(records));
      },
      [&] { at_start = log.Stats(); }, [&] { at_end = log.Stats(); });
  run.window_commits = at_end.commits - at_start.commits;
  run.window_appends = at_end.appends - at_start.appends;
  run.largest_group = log.Stats().largest_group;
  return run;
}

Result<LogRun> MeasureSqliteLog(const fs::path& work_dir, int writers, const Options& o) {
  const fs::path path = work_dir / ("log-w" + std::to_string(writers) + ".db");
  coordinator::SqliteLogConfig config;
  config.path = path.string();
  auto run = MeasureLog(config, Backend::kSqlite, writers, o);
  // The log object is gone here (MeasureLog owns it), so its files are closed.
  for (const char* suffix : {"", "-wal", "-shm", ".lock"}) {
    std::error_code ec;
    fs::remove(path.string() + suffix, ec);
  }
  return run;
}

Result<LogRun> MeasurePostgresLog(PgServer& pg, int writers, const Options& o) {
  auto db = pg.CreateDatabase("txcoord_bench_log_w" + std::to_string(writers));
  if (!db.ok()) return db.status();
  coordinator::PostgresLogConfig config;
  config.conninfo = pg.ConnInfo(*db);
  auto run = MeasureLog(config, Backend::kPostgres, writers, o);
  pg.DropDatabase(*db);
  return run;
}

// ---- Machine facts ---------------------------------------------------------------------------

struct Machine {
  Host host;
  Storage work_dir;
  std::optional<Storage> pg_data_dir;  // only for a server started by the rig
};

Machine DescribeMachine(const fs::path& work_dir, const PgServer* pg) {
  Machine m;
  m.host = DescribeHost();
  m.work_dir = DescribeStorage(work_dir);
  if (pg != nullptr && pg->started_by_rig()) m.pg_data_dir = DescribeStorage(pg->data_dir());
  return m;
}

// ---- Output ----------------------------------------------------------------------------------

// Which floor a backend's log is compared with, and the issue's target for it.
struct Target {
  std::string_view floor;
  double ratio;
};
Target TargetOf(Backend b) {
  return b == Backend::kSqlite ? Target{"fdatasync", kSqliteTargetRatio}
                               : Target{"pg_single_commit", kPostgresTargetRatio};
}

// Prints each figure as soon as it is measured: a readable table, or JSON lines. Text mode
// also streams, so a long run shows progress without a separate progress channel.
class Report {
 public:
  explicit Report(const Options& o) : o_(o) {}

  void Header(const Machine& m, const PgServer* pg) {
    if (o_.json) {
      JsonLine j("log_append");
      j.Str("kind", "machine")
          .Int("nproc", m.host.nproc)
          .Str("cpu", m.host.cpu)
          .Str("kernel", m.host.kernel)
          .Str("dir", m.work_dir.path)
          .Str("fs", m.work_dir.fs_type)
          .Str("device", m.work_dir.device)
          .Str("mount_options", m.work_dir.mount_options)
          .Str("write_cache", m.work_dir.write_cache)
          .Str("sqlite_version", sqlite3_libversion());
      if (pg != nullptr) {
        j.Str("postgresql_version", pg->version())
            .Str("postgresql_server", pg->started_by_rig() ? "test rig" : "--pg")
            .Str("postgresql_fsync", pg->fsync())
            .Str("postgresql_synchronous_commit", pg->synchronous_commit());
        if (m.pg_data_dir)
          j.Str("postgresql_data_dir", m.pg_data_dir->path)
              .Str("postgresql_fs", m.pg_data_dir->fs_type);
      }
      j.Num("seconds", o_.seconds, 2).Num("warmup_seconds", o_.warmup_seconds, 2).Print();
      return;
    }
    std::printf(
        "log_append: durable appends to the transaction log; %.1f s measured per run "
        "after a %.1f s warm-up\n",
        o_.seconds, o_.warmup_seconds);
    std::printf("machine     %ld CPUs (%s), %s\n", m.host.nproc, m.host.cpu.c_str(),
                m.host.kernel.c_str());
    std::printf("dir         %s: %s on %s (%s), write cache: %s\n", m.work_dir.path.c_str(),
                m.work_dir.fs_type.c_str(), m.work_dir.device.c_str(),
                m.work_dir.mount_options.c_str(), m.work_dir.write_cache.c_str());
    std::printf("sqlite      %s (WAL, synchronous=FULL)\n", sqlite3_libversion());
    if (pg != nullptr) {
      std::printf("postgresql  %s, %s, fsync=%s, synchronous_commit=%s\n", pg->version().c_str(),
                  pg->started_by_rig() ? "throwaway server started by the test rig"
                                       : "server given with --pg",
                  pg->fsync().c_str(), pg->synchronous_commit().c_str());
      if (m.pg_data_dir) {
        std::printf("pg data     %s: %s on %s\n", m.pg_data_dir->path.c_str(),
                    m.pg_data_dir->fs_type.c_str(), m.pg_data_dir->device.c_str());
      }
    } else {
      std::printf("postgresql  not used (--backend sqlite)\n");
    }
    std::printf("\nfloors: one client, no concurrency\n");
    PrintFloorHeader();
  }

  void AddFloor(Floor f) {
    PrintFloor(f, o_.json, "log_append");
    PrintErrors(f.name, f.loop);
    floors_.push_back(std::move(f));
  }

  void LogSectionHeader() {
    if (o_.json) return;
    std::printf(
        "\nlog: N writers in a closed loop, one `begin` per append; ratio = appends/s "
        "/ floor\n");
    std::printf("%-10s %7s %10s %8s %8s %8s %9s %9s %9s %6s %8s %11s %7s  %s\n", "backend",
                "writers", "appends/s", "p50_us", "p99_us", "commits", "commits/s", "avg_group",
                "max_group", "errors", "cpu_self", "cpu_machine", "ratio", "floor");
    std::fflush(stdout);
  }

  void AddLog(LogRun run) {
    const Target target = TargetOf(run.backend);
    const double floor = FloorOpsPerS(target.floor);
    const double ratio = floor > 0 ? run.loop.ops_per_s() / floor : NAN;
    const std::string label =
        std::string(BackendName(run.backend)) + " writers=" + std::to_string(run.writers);
    if (o_.json) {
      JsonLine j("log_append");
      j.Str("kind", "log")
          .Str("backend", BackendName(run.backend))
          .Int("writers", run.writers)
          .Num("appends_per_s", run.loop.ops_per_s())
          .Num("p50_us", run.loop.percentile_us(0.50))
          .Num("p99_us", run.loop.percentile_us(0.99))
          .Int("appends", run.loop.ops())
          .Int("commits", run.window_commits)
          .Num("commits_per_s", run.commits_per_s())
          .Num("avg_group", run.avg_group(), 2)
          .Int("largest_group", run.largest_group)
          .Int("errors", run.loop.errors)
          .Num("cpu_self", run.loop.cpu_self_cores, 2)
          .Num("cpu_machine", run.loop.cpu_machine_cores, 2)
          .Str("floor", target.floor)
          .Num("floor_ops_per_s", floor)
          .Num("ratio_to_floor", ratio, 2);
      if (run.writers == kTargetWriters) {
        j.Num("target_ratio", target.ratio, 0).Bool("target_met", ratio >= target.ratio);
      }
      j.Print();
    } else {
      std::printf(
          "%-10s %7d %10.0f %8.0f %8.0f %8lld %9.0f %9.1f %9lld %6lld %8.2f %11.2f %6.2fx  %s\n",
          std::string(BackendName(run.backend)).c_str(), run.writers, run.loop.ops_per_s(),
          run.loop.percentile_us(0.50), run.loop.percentile_us(0.99),
          static_cast<long long>(run.window_commits), run.commits_per_s(), run.avg_group(),
          static_cast<long long>(run.largest_group), static_cast<long long>(run.loop.errors),
          run.loop.cpu_self_cores, run.loop.cpu_machine_cores, ratio,
          std::string(target.floor).c_str());
      std::fflush(stdout);
    }
    PrintErrors(label, run.loop);
    logs_.push_back(std::move(run));
  }

  // The issue's targets, informational: they never change the exit status.
  void Targets() {
    if (!o_.json) std::printf("\ntargets at %d writers (informational)\n", kTargetWriters);
    for (const Backend b : {Backend::kSqlite, Backend::kPostgres}) {
      if ((b == Backend::kSqlite && !o_.sqlite) || (b == Backend::kPostgres && !o_.postgres)) {
        continue;
      }
      const Target target = TargetOf(b);
      const LogRun* run = nullptr;
      for (const LogRun& r : logs_) {
        if (r.backend == b && r.writers == kTargetWriters) run = &r;
      }
      if (run == nullptr) {
        if (o_.json) {
          JsonLine("log_append")
              .Str("kind", "target")
              .Str("backend", BackendName(b))
              .Int("writers", kTargetWriters)
              .Str("floor", target.floor)
              .Num("target_ratio", target.ratio, 0)
              .Str("result", "not measured")
              .Print();
        } else {
          std::printf("%-10s not measured (no run with %d writers; see --writers)\n",
                      std::string(BackendName(b)).c_str(), kTargetWriters);
        }
        continue;
      }
      const double floor = FloorOpsPerS(target.floor);
      const double ratio = floor > 0 ? run->loop.ops_per_s() / floor : NAN;
      const bool met = ratio >= target.ratio;
      if (o_.json) {
        JsonLine("log_append")
            .Str("kind", "target")
            .Str("backend", BackendName(b))
            .Int("writers", kTargetWriters)
            .Num("appends_per_s", run->loop.ops_per_s())
            .Str("floor", target.floor)
            .Num("floor_ops_per_s", floor)
            .Num("ratio_to_floor", ratio, 2)
            .Num("target_ratio", target.ratio, 0)
            .Bool("target_met", met)
            .Print();
      } else {
        std::printf("%-10s %8.0f appends/s = %6.2fx %-16s (%6.0f/s)  target >= %.0fx  %s\n",
                    std::string(BackendName(b)).c_str(), run->loop.ops_per_s(), ratio,
                    std::string(target.floor).c_str(), floor, target.ratio,
                    met ? "met" : "NOT met");
      }
    }
    std::fflush(stdout);
  }

  bool any_errors() const {
    for (const Floor& f : floors_) {
      if (f.loop.errors > 0) return true;
    }
    for (const LogRun& r : logs_) {
      if (r.loop.errors > 0) return true;
    }
    return false;
  }

 private:
  double FloorOpsPerS(std::string_view name) const {
    for (const Floor& f : floors_) {
      if (f.name == name) return f.loop.ops_per_s();
    }
    return 0;
  }

  // Failed operations go to stderr in both modes: a run with errors is a failed benchmark.
  static void PrintErrors(const std::string& what, const LoopResult& loop) {
    if (loop.errors == 0) return;
    std::fprintf(stderr, "log_append: %s: %lld failed operations; first ones:\n", what.c_str(),
                 static_cast<long long>(loop.errors));
    for (const auto& e : loop.first_errors) std::fprintf(stderr, "  %s\n", e.c_str());
  }

  const Options& o_;
  std::vector<Floor> floors_;
  std::vector<LogRun> logs_;
};

// ---- Wiring ----------------------------------------------------------------------------------

void Progress(const Options& o, const std::string& what) {
  if (o.json) std::fprintf(stderr, "log_append: %s\n", what.c_str());
}

int Fail(const Status& s) {
  std::fprintf(stderr, "log_append: %s\n", s.ToString().c_str());
  return 1;
}

int Run(const Options& o) {
  auto work_dir = WorkDir::Make(o.dir);
  if (!work_dir.ok()) return Fail(work_dir.status());

  std::unique_ptr<PgServer> pg;
  if (o.postgres) {
    if (o.pg_conninfo.empty()) std::fprintf(stderr, "log_append: starting PostgreSQL 15...\n");
    auto opened = PgServer::Open(o);
    if (!opened.ok()) return Fail(opened.status());
    pg = std::move(opened).value();
  }

  Report report(o);
  report.Header(DescribeMachine((*work_dir)->path(), pg.get()), pg.get());

  // Floors first, each alone on the machine, then the logs.
  Progress(o, "floor fdatasync");
  const fs::path sync_file = (*work_dir)->path() / "fdatasync.dat";
  auto overwrite =
      MeasureFdatasync(sync_file, SyncPattern::kOverwrite, o.warmup_seconds, o.seconds);
  if (!overwrite.ok()) return Fail(overwrite.status());
  report.AddFloor({"fdatasync", std::move(overwrite).value()});
  Progress(o, "floor fdatasync_append");
  auto append = MeasureFdatasync(sync_file, SyncPattern::kAppend, o.warmup_seconds, o.seconds);
  if (!append.ok()) return Fail(append.status());
  report.AddFloor({"fdatasync_append", std::move(append).value()});
  if (pg) {
    Progress(o, "floor pg_single_commit");
    auto db = pg->CreateDatabase("txcoord_bench_floor");
    if (!db.ok()) return Fail(db.status());
    auto commit = MeasurePgSingleCommit(pg->ConnInfo(*db), o.warmup_seconds, o.seconds);
    pg->DropDatabase(*db);
    if (!commit.ok()) return Fail(commit.status());
    report.AddFloor({"pg_single_commit", std::move(commit).value()});
  }

  report.LogSectionHeader();
  for (const Backend b : {Backend::kSqlite, Backend::kPostgres}) {
    if ((b == Backend::kSqlite && !o.sqlite) || (b == Backend::kPostgres && !o.postgres)) continue;
    for (const int writers : o.writers) {
      Progress(o, std::string(BackendName(b)) + " writers=" + std::to_string(writers));
      auto run = b == Backend::kSqlite ? MeasureSqliteLog((*work_dir)->path(), writers, o)
                                       : MeasurePostgresLog(*pg, writers, o);
      if (!run.ok()) return Fail(run.status());
      report.AddLog(std::move(run).value());
    }
  }
  report.Targets();

  if (report.any_errors()) {
    std::fprintf(stderr,
                 "log_append: some operations failed (see above); the figures are not "
                 "valid\n");
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace txcoord::bench

int main(int argc, char** argv) {
  using namespace txcoord::bench;
  return BenchMain("log_append", kUsage, ParseFlags(argc, argv), Run);
}
