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
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <latch>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "log_test_util.h"
#include "txcoord/coordinator/log.h"
#include "txcoord/testing/postgres_server.h"

namespace txcoord::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

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

Result<double> ParseSeconds(std::string_view flag, std::string_view text, double min) {
  double v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !(v >= min) || v > 3600) {
    char range[64];
    std::snprintf(range, sizeof range, " wants seconds from %g to 3600, got \"", min);
    return Status::InvalidArgument(std::string(flag) + range + std::string(text) + "\"");
  }
  return v;
}

Result<std::vector<int>> ParseWriters(std::string_view text) {
  std::vector<int> out;
  while (!text.empty()) {
    const size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    int n = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), n);
    // 1024 threads is far past anything the log is sized for; more is surely a typo.
    if (ec != std::errc() || end != item.data() + item.size() || n < 1 || n > 1024) {
      return Status::InvalidArgument(
          "--writers wants comma-separated counts from 1 to 1024, "
          "got \"" +
          std::string(item) + "\"");
    }
    out.push_back(n);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
  }
  if (out.empty()) return Status::InvalidArgument("--writers needs at least one count");
  return out;
}

Result<Options> ParseFlags(int argc, char** argv) {
  Options o;
  bool pg_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      o.help = true;
      continue;
    }
    if (arg == "--json") {
      o.json = true;
      continue;
    }
    // Valued flags, as "--flag value" or "--flag=value".
    std::string_view name = arg;
    std::optional<std::string_view> value;
    if (const size_t eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    constexpr std::string_view kValued[] = {"--backend", "--writers", "--seconds",
                                            "--warmup",  "--dir",     "--pg"};
    if (std::find(std::begin(kValued), std::end(kValued), name) == std::end(kValued)) {
      return Status::InvalidArgument("unknown flag " + std::string(arg));
    }
    if (!value) {
      if (i + 1 >= argc) return Status::InvalidArgument(std::string(name) + " needs a value");
      value = argv[++i];
    }
    if (name == "--backend") {
      if (*value == "sqlite") {
        o.postgres = false;
      } else if (*value == "postgresql") {
        o.sqlite = false;
      } else if (*value != "all") {
        return Status::InvalidArgument("--backend wants sqlite, postgresql or all, got \"" +
                                       std::string(*value) + "\"");
      }
    } else if (name == "--writers") {
      auto w = ParseWriters(*value);
      if (!w.ok()) return w.status();
      o.writers = std::move(w).value();
    } else if (name == "--seconds") {
      auto s = ParseSeconds(name, *value, 0.1);
      if (!s.ok()) return s.status();
      o.seconds = *s;
    } else if (name == "--warmup") {
      auto s = ParseSeconds(name, *value, 0.0);
      if (!s.ok()) return s.status();
      o.warmup_seconds = *s;
    } else if (name == "--dir") {
      if (value->empty()) return Status::InvalidArgument("--dir needs a directory");
      o.dir = std::string(*value);
    } else if (name == "--pg") {
      if (value->empty()) return Status::InvalidArgument("--pg needs a connection string");
      o.pg_conninfo = std::string(*value);
      pg_given = true;
    }
  }
  if (pg_given && !o.postgres) {
    return Status::InvalidArgument("--pg is only used with --backend postgresql or all");
  }
  return o;
}

// ---- Closed-loop measurement -------------------------------------------------------------------

constexpr size_t kMaxErrorSamples = 5;

// CPU time used so far, to tell a CPU-bound run from one that waits on the disk: by this
// process (all threads), and by the whole machine (which includes a PostgreSQL server and
// anything else running here; the machine is shared).
struct CpuTimes {
  double self_s = 0;
  double machine_busy_s = 0;
};

CpuTimes SampleCpu() {
  CpuTimes t;
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) == 0) {
    const auto seconds = [](const timeval& tv) {
      return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
    };
    t.self_s = seconds(ru.ru_utime) + seconds(ru.ru_stime);
  }
  // "cpu  user nice system idle iowait irq softirq steal ...", in clock ticks. Busy is all but
  // idle, iowait and steal (time the hypervisor gave to another guest).
  std::ifstream in("/proc/stat");
  std::string cpu;
  long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0;
  if (in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq && cpu == "cpu") {
    t.machine_busy_s = static_cast<double>(user + nice + system + irq + softirq) /
                       static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  return t;
}

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
  double percentile_us(double p) const {
    if (latencies_ns.empty()) return 0;
    const auto n = latencies_ns.size();
    size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(n)));
    rank = std::clamp<size_t>(rank, 1, n);
    return static_cast<double>(latencies_ns[rank - 1]) / 1000.0;
  }
};

using Op = std::function<Status(int thread, int64_t seq)>;

// Runs `op` on `threads` threads in a closed loop: each calls it again as soon as it returns, so
// the offered load is exactly `threads` operations in flight. The first `warmup_s` is not
// counted (connections, caches and the first group formations settle); then the window: every
// successful op that *completes* inside it counts, with its latency. Ops still in flight at the
// end finish but are not counted. Completion-in-window is the usual closed-loop rule: it counts
// each op once and makes ops/s = completions / window length exact.
//
// `at_window_start` and `at_window_end` run on the calling thread at those instants, so that a
// counter (the log's Stats) can be read over exactly the measured window.
LoopResult RunClosedLoop(int threads, double warmup_s, double measure_s, const Op& op,
                         const std::function<void()>& at_window_start = nullptr,
                         const std::function<void()>& at_window_end = nullptr) {
  struct PerThread {
    std::vector<int64_t> latencies_ns;
    int64_t errors = 0;
    std::vector<std::string> first_errors;
  };
  std::vector<PerThread> per_thread(threads);
  // Written before `go` is released, read by the workers after: the latch orders them.
  Clock::time_point window_start;
  Clock::time_point window_end;
  std::latch ready(threads);
  std::latch go(1);

  std::vector<std::jthread> workers;
  workers.reserve(threads);
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      PerThread& mine = per_thread[t];
      mine.latencies_ns.reserve(1 << 14);  // no reallocation inside a timed op for most runs
      ready.count_down();
      go.wait();
      for (int64_t seq = 0;; ++seq) {
        const Clock::time_point t0 = Clock::now();
        if (t0 >= window_end) break;
        const Status s = op(t, seq);
        const Clock::time_point t1 = Clock::now();
        if (!s.ok()) {
          ++mine.errors;
          if (mine.first_errors.size() < kMaxErrorSamples)
            mine.first_errors.push_back(s.ToString());
          continue;
        }
        if (t1 >= window_start && t1 < window_end) {
          mine.latencies_ns.push_back(
              std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
        }
      }
    });
  }
  ready.wait();  // every thread exists, so thread creation is not in the warm-up
  const auto to_clock = [](double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  };
  window_start = Clock::now() + to_clock(warmup_s);
  window_end = window_start + to_clock(measure_s);
  go.count_down();
  std::this_thread::sleep_until(window_start);
  const CpuTimes cpu_start = SampleCpu();
  const Clock::time_point cpu_start_at = Clock::now();
  if (at_window_start) at_window_start();
  std::this_thread::sleep_until(window_end);
  const CpuTimes cpu_end = SampleCpu();
  // The sampling thread may wake late on a busy machine: divide by the time actually sampled.
  const double cpu_s = std::chrono::duration<double>(Clock::now() - cpu_start_at).count();
  if (at_window_end) at_window_end();
  workers.clear();  // joins

  LoopResult r;
  r.window_s = measure_s;
  r.cpu_self_cores = (cpu_end.self_s - cpu_start.self_s) / cpu_s;
  r.cpu_machine_cores = (cpu_end.machine_busy_s - cpu_start.machine_busy_s) / cpu_s;
  for (PerThread& p : per_thread) {
    r.latencies_ns.insert(r.latencies_ns.end(), p.latencies_ns.begin(), p.latencies_ns.end());
    r.errors += p.errors;
    for (auto& e : p.first_errors) {
      if (r.first_errors.size() < kMaxErrorSamples) r.first_errors.push_back(std::move(e));
    }
  }
  std::sort(r.latencies_ns.begin(), r.latencies_ns.end());
  return r;
}

// ---- Floors ----------------------------------------------------------------------------------

constexpr size_t kSyncBlockBytes = 4096;

enum class SyncPattern {
  // Rewrite the same, already allocated 4 KiB: fdatasync flushes data only, no file-system
  // metadata. The cheapest durable write the disk offers, hence the strict floor.
  kOverwrite,
  // Write 4 KiB at a growing offset: each fdatasync must also make the new file size durable
  // (a journal commit on a journaling file system). What a log that grows its file pays;
  // informational.
  kAppend,
};

// One thread: pwrite 4 KiB, fdatasync, repeat. Buffered I/O like SQLite's WAL and PostgreSQL's,
// not O_DIRECT, so the page cache and the file system are on the same path as the logs'.
Result<LoopResult> MeasureFdatasync(const fs::path& file, SyncPattern pattern, const Options& o) {
  const int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Status::Unavailable("cannot create " + file.string() + ": " + std::strerror(errno));
  }
  std::vector<char> block(kSyncBlockBytes, 'x');
  const auto write_and_sync = [&](off_t offset, int64_t seq) -> Status {
    // A different block every time, so that no layer can skip the write as unchanged.
    std::memcpy(block.data(), &seq, sizeof seq);
    const ssize_t n = pwrite(fd, block.data(), block.size(), offset);
    if (n != static_cast<ssize_t>(block.size())) {
      return Status::Unavailable("pwrite " + file.string() + ": " +
                                 (n < 0 ? std::strerror(errno) : "short write"));
    }
    if (fdatasync(fd) != 0) {
      return Status::Unavailable("fdatasync " + file.string() + ": " + std::strerror(errno));
    }
    return Status::Ok();
  };
  if (pattern == SyncPattern::kOverwrite) {
    // Allocate the block and fix the file size before the loop, so that the loop changes data
    // only.
    if (Status s = write_and_sync(0, -1); !s.ok()) {
      close(fd);
      return s;
    }
  }
  LoopResult r = RunClosedLoop(1, o.warmup_seconds, o.seconds, [&](int, int64_t seq) {
    const off_t offset =
        pattern == SyncPattern::kOverwrite ? 0 : static_cast<off_t>(seq * kSyncBlockBytes);
    return write_and_sync(offset, seq);
  });
  close(fd);
  std::error_code ec;
  fs::remove(file, ec);
  return r;
}

// The log's own rule for its sessions (postgres_log.cc): commits wait for the WAL flush.
void RequireSynchronousCommit(pqxx::connection& c) {
  pqxx::nontransaction n(c);
  if (n.exec1("SHOW synchronous_commit")[0].as<std::string>() == "off") {
    n.exec0("SET synchronous_commit TO on");
  }
}

// One client: BEGIN, INSERT one small row, COMMIT, repeat. Each COMMIT waits for its own WAL
// flush, so this is what the server offers a log that commits once per append.
Result<LoopResult> MeasurePgSingleCommit(const std::string& conninfo, const Options& o) {
  try {
    pqxx::connection c(conninfo);
    RequireSynchronousCommit(c);
    {
      pqxx::nontransaction n(c);
      n.exec0("CREATE TABLE floor_commit (id BIGINT PRIMARY KEY, payload TEXT NOT NULL)");
    }
    // A small row, in the order of an encoded `begin` record with two branches.
    const std::string payload(160, 'p');
    return RunClosedLoop(1, o.warmup_seconds, o.seconds, [&](int, int64_t seq) -> Status {
      try {
        pqxx::work w(c);
        w.exec_params("INSERT INTO floor_commit (id, payload) VALUES ($1, $2)", seq, payload);
        w.commit();
        return Status::Ok();
      } catch (const std::exception& e) {
        return Status::Unavailable(std::string("insert + commit: ") + e.what());
      }
    });
  } catch (const std::exception& e) {
    return Status::Unavailable(std::string("PostgreSQL commit floor: ") + e.what());
  }
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

struct Mount {
  std::string device;
  std::string mount_point;
  std::string fs_type;
  std::string options;
};

// /proc/mounts escapes space, tab, newline and backslash as \ooo.
std::string UnescapeMountField(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const std::string oct(s.substr(i + 1, 3));
      if (oct.find_first_not_of("01234567") == std::string::npos) {
        out += static_cast<char>(std::stoi(oct, nullptr, 8));
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

// The mount that holds `path`: the last listed mount point that is the longest prefix of it
// (later mounts shadow earlier ones on the same point).
std::optional<Mount> MountOf(const fs::path& path) {
  std::error_code ec;
  const fs::path canonical = fs::canonical(path, ec);
  if (ec) return std::nullopt;
  std::ifstream in("/proc/mounts");
  std::optional<Mount> best;
  std::string line;
  while (std::getline(in, line)) {
    char device[512], point[1024], type[64], options[1024];
    if (std::sscanf(line.c_str(), "%511s %1023s %63s %1023s", device, point, type, options) != 4) {
      continue;
    }
    const fs::path mount_point = UnescapeMountField(point);
    const auto [m, p] =
        std::mismatch(mount_point.begin(), mount_point.end(), canonical.begin(), canonical.end());
    if (m != mount_point.end()) continue;  // not a prefix, component by component
    if (!best || mount_point.string().size() >= best->mount_point.size()) {
      best = Mount{UnescapeMountField(device), mount_point.string(), type, options};
    }
  }
  return best;
}

// statfs's f_type, for when /proc/mounts is not readable.
std::string FsTypeFromStatfs(const fs::path& path) {
  struct statfs st {};
  if (statfs(path.c_str(), &st) != 0) return "unknown";
  switch (static_cast<unsigned long>(st.f_type)) {
    case 0xEF53:
      return "ext2/3/4";
    case 0x58465342:
      return "xfs";
    case 0x9123683E:
      return "btrfs";
    case 0x01021994:
      return "tmpfs";
    case 0x794C7630:
      return "overlayfs";
    case 0x2FC12FC1:
      return "zfs";
    case 0xF2F52010:
      return "f2fs";
    case 0x6969:
      return "nfs";
    case 0x65735546:
      return "fuse";
    default: {
      char hex[32];
      std::snprintf(hex, sizeof hex, "0x%lx", static_cast<unsigned long>(st.f_type));
      return hex;
    }
  }
}

std::string ReadFirstLine(const fs::path& file) {
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  return line;
}

// The block device's write cache mode ("write back": fdatasync must send a cache flush; "write
// through": the device says it has none), which explains much of the fdatasync rate.
std::string WriteCacheOf(const std::string& device) {
  if (!device.starts_with("/dev/")) return "unknown";
  std::error_code ec;
  const fs::path dev = fs::canonical(fs::path("/sys/class/block") / device.substr(5), ec);
  if (ec) return "unknown";
  for (const fs::path& dir : {dev, dev.parent_path()}) {  // a partition's queue is its disk's
    std::string mode = ReadFirstLine(dir / "queue" / "write_cache");
    if (!mode.empty()) return mode;
  }
  return "unknown";
}

struct Storage {
  std::string path;
  std::string fs_type;
  std::string device;
  std::string mount_options;
  std::string write_cache;
};

Storage DescribeStorage(const fs::path& path) {
  Storage s;
  s.path = path.string();
  if (auto m = MountOf(path)) {
    s.fs_type = m->fs_type;
    s.device = m->device;
    s.mount_options = m->options;
    s.write_cache = WriteCacheOf(m->device);
  } else {
    s.fs_type = FsTypeFromStatfs(path);
    s.device = "unknown";
    s.mount_options = "unknown";
    s.write_cache = "unknown";
  }
  return s;
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("model name")) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "unknown";
}

struct Machine {
  long nproc = 0;
  std::string cpu;
  std::string kernel;
  Storage work_dir;
  std::optional<Storage> pg_data_dir;  // only for a server started by the rig
};

Machine DescribeMachine(const fs::path& work_dir, const PgServer* pg) {
  Machine m;
  m.nproc = sysconf(_SC_NPROCESSORS_ONLN);
  m.cpu = CpuModel();
  struct utsname u {};
  m.kernel = uname(&u) == 0 ? std::string(u.sysname) + " " + u.release : "unknown";
  m.work_dir = DescribeStorage(work_dir);
  if (pg != nullptr && pg->started_by_rig()) m.pg_data_dir = DescribeStorage(pg->data_dir());
  return m;
}

// ---- Output ----------------------------------------------------------------------------------

// One JSON object on one line; keys in insertion order.
class JsonLine {
 public:
  JsonLine() { Str("bench", "log_append"); }
  JsonLine& Str(std::string_view key, std::string_view value) {
    Key(key);
    Quote(value);
    return *this;
  }
  JsonLine& Int(std::string_view key, int64_t value) {
    Key(key);
    out_ += std::to_string(value);
    return *this;
  }
  // NaN or infinity (a zero floor) is written as null: JSON has no number for it.
  JsonLine& Num(std::string_view key, double value, int decimals = 1) {
    Key(key);
    if (!std::isfinite(value)) {
      out_ += "null";
    } else {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
      out_ += buf;
    }
    return *this;
  }
  JsonLine& Bool(std::string_view key, bool value) {
    Key(key);
    out_ += value ? "true" : "false";
    return *this;
  }
  void Print() {
    out_ += "}\n";
    std::fputs(out_.c_str(), stdout);
    std::fflush(stdout);
  }

 private:
  void Key(std::string_view key) {
    out_ += out_.size() > 1 ? "," : "";
    Quote(key);
    out_ += ':';
  }
  void Quote(std::string_view s) {
    out_ += '"';
    for (const char c : s) {
      if (c == '"' || c == '\\') {
        out_ += '\\';
        out_ += c;
      } else if (static_cast<unsigned char>(c) < 0x20) {
        char esc[8];
        std::snprintf(esc, sizeof esc, "\\u%04x", c);
        out_ += esc;
      } else {
        out_ += c;
      }
    }
    out_ += '"';
  }
  std::string out_ = "{";
};

struct Floor {
  std::string name;
  LoopResult loop;
};

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
      JsonLine j;
      j.Str("kind", "machine")
          .Int("nproc", m.nproc)
          .Str("cpu", m.cpu)
          .Str("kernel", m.kernel)
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
    std::printf("machine     %ld CPUs (%s), %s\n", m.nproc, m.cpu.c_str(), m.kernel.c_str());
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
    std::printf("%-7s %-18s %10s %9s %9s %8s %11s\n", "kind", "name", "ops/s", "p50_us", "p99_us",
                "cpu_self", "cpu_machine");
    std::fflush(stdout);
  }

  void AddFloor(Floor f) {
    if (o_.json) {
      JsonLine()
          .Str("kind", "floor")
          .Str("name", f.name)
          .Num("ops_per_s", f.loop.ops_per_s())
          .Num("p50_us", f.loop.percentile_us(0.50))
          .Num("p99_us", f.loop.percentile_us(0.99))
          .Int("ops", f.loop.ops())
          .Int("errors", f.loop.errors)
          .Num("cpu_self", f.loop.cpu_self_cores, 2)
          .Num("cpu_machine", f.loop.cpu_machine_cores, 2)
          .Print();
    } else {
      std::printf("%-7s %-18s %10.0f %9.0f %9.0f %8.2f %11.2f\n", "floor", f.name.c_str(),
                  f.loop.ops_per_s(), f.loop.percentile_us(0.50), f.loop.percentile_us(0.99),
                  f.loop.cpu_self_cores, f.loop.cpu_machine_cores);
      std::fflush(stdout);
    }
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
      JsonLine j;
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
          JsonLine()
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
        JsonLine()
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

// A fresh directory for this run's files, removed when the benchmark ends.
class WorkDir {
 public:
  static Result<std::unique_ptr<WorkDir>> Make(const std::string& parent_flag) {
    std::string parent = parent_flag;
    if (parent.empty()) {
      const char* tmp = std::getenv("TMPDIR");
      parent = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
    }
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec) return Status::Unavailable("cannot create directory " + parent + ": " + ec.message());
    std::string templ = (fs::path(parent) / "txcoord-bench-XXXXXX").string();
    if (mkdtemp(templ.data()) == nullptr) {
      return Status::Unavailable("cannot make a directory in " + parent + ": " +
                                 std::strerror(errno) + "; pass a writable --dir");
    }
    return std::unique_ptr<WorkDir>(new WorkDir(templ));
  }
  ~WorkDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  explicit WorkDir(fs::path path) : path_(std::move(path)) {}
  fs::path path_;
};

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
  auto overwrite = MeasureFdatasync(sync_file, SyncPattern::kOverwrite, o);
  if (!overwrite.ok()) return Fail(overwrite.status());
  report.AddFloor({"fdatasync", std::move(overwrite).value()});
  Progress(o, "floor fdatasync_append");
  auto append = MeasureFdatasync(sync_file, SyncPattern::kAppend, o);
  if (!append.ok()) return Fail(append.status());
  report.AddFloor({"fdatasync_append", std::move(append).value()});
  if (pg) {
    Progress(o, "floor pg_single_commit");
    auto db = pg->CreateDatabase("txcoord_bench_floor");
    if (!db.ok()) return Fail(db.status());
    auto commit = MeasurePgSingleCommit(pg->ConnInfo(*db), o);
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
  auto options = txcoord::bench::ParseFlags(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "log_append: %s; see --help\n", options.status().message().c_str());
    return 2;
  }
  if (options->help) {
    std::fputs(txcoord::bench::kUsage, stdout);
    return 0;
  }
  return txcoord::bench::Run(*options);
}
