#include "coordinator_rig.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <utility>

#include "txcoord/testing/postgres_server.h"

namespace txcoord::bench {
namespace {

namespace fs = std::filesystem;

// A counter or gauge from txcoord's /metrics (Prometheus text): the value on the line that
// starts with `name` followed by a space; -1 when absent.
int64_t MetricValue(std::string_view page, std::string_view name) {
  size_t at = 0;
  while ((at = page.find(name, at)) != std::string_view::npos) {
    const bool line_start = at == 0 || page[at - 1] == '\n';
    const size_t value_at = at + name.size();
    if (line_start && value_at < page.size() && page[value_at] == ' ') {
      double v = 0;
      const char* begin = page.data() + value_at + 1;
      const auto [end, ec] = std::from_chars(begin, page.data() + page.size(), v);
      if (ec == std::errc()) return static_cast<int64_t>(v);
    }
    at = value_at;
  }
  return -1;
}

}  // namespace

std::string_view StoreName(Store s) { return s == Store::kSqlite ? "sqlite" : "postgresql"; }

Metrics ReadMetrics(ConnectionPool& coordinator) {
  Metrics m;
  auto page = coordinator.Get("/metrics");
  if (!page.ok() || page->status != 200) return m;
  m.log_commits = MetricValue(page->body, "txcoord_log_commits_total");
  m.log_appends = MetricValue(page->body, "txcoord_log_appends_total");
  m.live = MetricValue(page->body, "txcoord_transactions_live");
  m.callbacks = MetricValue(page->body, "txcoord_callbacks_total");
  m.callback_failures = MetricValue(page->body, "txcoord_callback_failures_total");
  return m;
}

CoordinatorRig::CoordinatorRig(const RigOptions& options) : options_(options) {}
CoordinatorRig::~CoordinatorRig() = default;

Result<std::unique_ptr<CoordinatorRig>> CoordinatorRig::Start(const RigOptions& options) {
  auto rig = std::unique_ptr<CoordinatorRig>(new CoordinatorRig(options));
  auto dir = WorkDir::Make(options.dir);
  if (!dir.ok()) return dir.status();
  rig->work_dir_ = std::move(dir).value();
  if (options.postgres) {
    // initdb and the first start take seconds: say why nothing else is printed meanwhile.
    std::fprintf(stderr, "%s: starting PostgreSQL 15...\n", options.bench.c_str());
    auto pg = testing::PostgresServer::Start();
    if (!pg.ok()) return pg.status().WithContext("start PostgreSQL with the test rig");
    rig->pg_ = std::move(pg).value();
  }
  auto null = Server::Start(options.null_participant_bin, {"--listen", "127.0.0.1:0"},
                            (rig->work_dir() / "null_participant.log").string());
  if (!null.ok()) return null.status();
  rig->null_participant_ = std::move(null).value();
  return rig;
}

Result<std::vector<Floor>> CoordinatorRig::MeasureFloors() {
  std::vector<Floor> floors;
  auto sync = MeasureFdatasync(work_dir() / "fdatasync.dat", SyncPattern::kOverwrite,
                               options_.warmup_s, options_.seconds);
  if (!sync.ok()) return sync.status();
  floors.push_back({"fdatasync", std::move(sync).value()});
  if (pg_) {
    // The rig's directory holds the server's data directory: the same file system and device.
    auto pg_sync = MeasureFdatasync(fs::path(pg_->dir()) / "fdatasync.dat", SyncPattern::kOverwrite,
                                    options_.warmup_s, options_.seconds);
    if (!pg_sync.ok()) return pg_sync.status();
    floors.push_back({"fdatasync_pg_dir", std::move(pg_sync).value()});
    auto db = pg_->CreateDatabase(options_.bench + "_floor");
    if (!db.ok()) return db.status();
    auto commit = MeasurePgSingleCommit(pg_->ConnInfo(*db), options_.warmup_s, options_.seconds);
    if (!commit.ok()) return commit.status();
    floors.push_back({"pg_single_commit", std::move(commit).value()});
  }
  ConnectionPool participant("127.0.0.1", static_cast<uint16_t>(null_participant_->port()), 1,
                             kClientTimeout);
  LoopResult rtt =
      RunClosedLoop(1, options_.warmup_s, options_.seconds, [&](int, int64_t) -> Status {
        auto reply = participant.Post("/app/noop", "");
        if (!reply.ok()) return reply.status();
        if (reply->status != 200) {
          return Status::Unavailable("POST /app/noop answered " + std::to_string(reply->status));
        }
        return Status::Ok();
      });
  floors.push_back({"http_rtt", std::move(rtt)});
  return floors;
}

Result<std::string> CoordinatorRig::StoreUri(Store store, int run) {
  if (store == Store::kSqlite) {
    return "sqlite://" + (work_dir() / ("txcoord-" + std::to_string(run) + ".db")).string();
  }
  auto db = pg_->CreateDatabase(options_.bench + "_run" + std::to_string(run));
  if (!db.ok()) return db.status();
  return pg_->Uri(*db);
}

Result<std::unique_ptr<Server>> CoordinatorRig::StartCoordinator(
    const std::string& store_uri, int run, int concurrency,
    const std::vector<std::string>& extra_args) {
  // A kept-alive client connection holds a server thread: leave room above the clients.
  const int threads = std::clamp(2 * concurrency, 128, 1024);
  std::vector<std::string> args = {"--listen", "127.0.0.1:0",   "--store",
                                   store_uri,  "--max-threads", std::to_string(threads)};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  return Server::Start(options_.txcoord_bin, args,
                       (work_dir() / ("txcoord-" + std::to_string(run) + ".log")).string());
}

RunFigures CoordinatorRig::Measure(const Server& coordinator,
                                   const std::vector<pid_t>& participant_pids, Store store,
                                   int concurrency, const Op& op) {
  const pid_t coordinator_pid = coordinator.pid();
  ConnectionPool metrics("127.0.0.1", static_cast<uint16_t>(coordinator.port()), 1, kClientTimeout);
  struct Sample {
    Clock::time_point at;
    double coordinator_s = 0;
    double participants_s = 0;
    double postgres_s = 0;
    Metrics metrics;
  };
  const auto sample = [&] {
    Sample s;
    s.at = Clock::now();
    s.coordinator_s = CpuSeconds(coordinator_pid);
    for (const pid_t pid : participant_pids) s.participants_s += CpuSeconds(pid);
    if (store == Store::kPostgres) s.postgres_s = CpuSecondsOfTree(pg_->pid());
    s.metrics = ReadMetrics(metrics);
    return s;
  };
  Sample start;
  Sample end;
  Result<Memory> memory = Status::Unavailable("not read");
  RunFigures f;
  f.loop = RunClosedLoop(
      concurrency, options_.warmup_s, options_.seconds, op, [&] { start = sample(); },
      [&] {
        end = sample();
        memory = ReadMemory(coordinator_pid);
      });
  const double window_s = std::chrono::duration<double>(end.at - start.at).count();
  f.cpu_coordinator = (end.coordinator_s - start.coordinator_s) / window_s;
  f.cpu_participants = (end.participants_s - start.participants_s) / window_s;
  f.cpu_postgres = (end.postgres_s - start.postgres_s) / window_s;
  f.log_commits = end.metrics.log_commits - start.metrics.log_commits;
  f.log_appends = end.metrics.log_appends - start.metrics.log_appends;
  f.callbacks = end.metrics.callbacks - start.metrics.callbacks;
  f.callback_failures = end.metrics.callback_failures - start.metrics.callback_failures;
  if (memory.ok()) f.coordinator_memory = *memory;
  return f;
}

}  // namespace txcoord::bench
