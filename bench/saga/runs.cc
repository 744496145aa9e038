#include "runs.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <utility>

#include "txcoord/testing/postgres_server.h"

namespace txcoord::bench {
namespace {

namespace fs = std::filesystem;

constexpr std::chrono::milliseconds kClientTimeout{30'000};
// What saga_participant must read back from its connection: WAL, synchronous=FULL (2).
constexpr std::string_view kExpectedJournal = "wal";
constexpr int kExpectedSynchronous = 2;

// The number right after `key` in `text` (a flat JSON object's member `"name":`); -1 when absent.
int64_t NumberAfter(std::string_view text, std::string_view key) {
  const size_t at = text.find(key);
  if (at == std::string_view::npos) return -1;
  double v = 0;
  const char* begin = text.data() + at + key.size();
  const auto [end, ec] = std::from_chars(begin, text.data() + text.size(), v);
  return ec == std::errc() ? static_cast<int64_t>(v) : -1;
}

// A counter from txcoord's /metrics (Prometheus text): the value on the line that starts with
// `name` followed by a space; -1 when absent.
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

struct Metrics {
  int64_t log_commits = -1;
  int64_t log_appends = -1;
  int64_t callbacks = -1;
  int64_t callback_failures = -1;
};

Metrics ReadMetrics(ConnectionPool& coordinator) {
  Metrics m;
  auto page = coordinator.Get("/metrics");
  if (!page.ok() || page->status != 200) return m;
  m.log_commits = MetricValue(page->body, "txcoord_log_commits_total");
  m.log_appends = MetricValue(page->body, "txcoord_log_appends_total");
  m.callbacks = MetricValue(page->body, "txcoord_callbacks_total");
  m.callback_failures = MetricValue(page->body, "txcoord_callback_failures_total");
  return m;
}

// saga_participant's GET /stats.
struct ParticipantStats {
  ParticipantSettings settings;
  int64_t applied = -1;
  int64_t compensated = -1;
};

Result<ParticipantStats> ReadStats(const Server& participant) {
  ConnectionPool pool("127.0.0.1", static_cast<uint16_t>(participant.port()), 1, kClientTimeout);
  auto reply = pool.Get("/stats");
  if (!reply.ok()) return reply.status();
  if (reply->status != 200) {
    return Status::Unavailable("GET /stats answered " + std::to_string(reply->status));
  }
  ParticipantStats s;
  const std::string_view body = reply->body;
  constexpr std::string_view kJournal = R"("journal_mode":")";
  if (const size_t at = body.find(kJournal); at != std::string_view::npos) {
    const size_t start = at + kJournal.size();
    s.settings.journal_mode = std::string(body.substr(start, body.find('"', start) - start));
  }
  s.settings.synchronous = static_cast<int>(NumberAfter(body, R"("synchronous":)"));
  s.applied = NumberAfter(body, R"("applied":)");
  s.compensated = NumberAfter(body, R"("compensated":)");
  return s;
}

// After a run without errors, each durable participant's rows must be what `finished` sagas
// imply: a step that succeeds applied once per saga, compensated once per aborted saga; the
// refused step keeps no effect. Empty when they are; else what differs.
std::string CheckEffects(const Point& point, int64_t finished,
                         const std::vector<std::unique_ptr<Server>>& participants) {
  const std::vector<StepShape> steps = StepsOf(point.workload);
  const bool aborted = ExpectedState(point.workload) == "aborted";
  std::string problems;
  for (size_t i = 0; i < participants.size(); ++i) {
    auto stats = ReadStats(*participants[i]);
    if (!stats.ok()) {
      problems += " step " + steps[i].id + ": " + stats.status().message() + ";";
      continue;
    }
    if (stats->settings.journal_mode != kExpectedJournal ||
        stats->settings.synchronous != kExpectedSynchronous) {
      problems += " step " + steps[i].id + " runs journal_mode=" + stats->settings.journal_mode +
                  " synchronous=" + std::to_string(stats->settings.synchronous) +
                  ", not wal/2 (FULL);";
    }
    const int64_t want_applied = steps[i].refused ? 0 : finished;
    const int64_t want_compensated = aborted ? want_applied : 0;
    if (stats->applied != want_applied || stats->compensated != want_compensated) {
      problems += " step " + steps[i].id + ": " + std::to_string(stats->applied) + " applied, " +
                  std::to_string(stats->compensated) + " compensated, for " +
                  std::to_string(finished) + " " + std::string(ExpectedState(point.workload)) +
                  " sagas;";
    }
  }
  return problems.empty() ? "" : "participants' effects do not match:" + problems;
}

}  // namespace

std::string_view SetupName(Setup s) { return s == Setup::kNull ? "null" : "sqlite"; }
std::string_view StoreName(Store s) { return s == Store::kSqlite ? "sqlite" : "postgresql"; }

Runner::Runner(const RunnerOptions& options) : options_(options) {}
Runner::~Runner() = default;

Result<std::unique_ptr<Runner>> Runner::Start(const RunnerOptions& options) {
  auto runner = std::unique_ptr<Runner>(new Runner(options));
  auto dir = WorkDir::Make(options.dir);
  if (!dir.ok()) return dir.status();
  runner->work_dir_ = std::move(dir).value();
  if (options.postgres) {
    auto pg = testing::PostgresServer::Start();
    if (!pg.ok()) return pg.status().WithContext("start PostgreSQL with the test rig");
    runner->pg_ = std::move(pg).value();
  }
  auto null = Server::Start(options.null_participant_bin, {"--listen", "127.0.0.1:0"},
                            (runner->work_dir() / "null_participant.log").string());
  if (!null.ok()) return null.status();
  runner->null_participant_ = std::move(null).value();
  return runner;
}

Result<std::vector<Floor>> Runner::MeasureFloors() {
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
    auto db = pg_->CreateDatabase("saga_floor");
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

Result<ParticipantSettings> Runner::ProbeParticipant() {
  auto probe = StartSagaParticipant("probe");
  if (!probe.ok()) return probe.status();
  auto stats = ReadStats(**probe);
  (void)(*probe)->Stop();
  if (!stats.ok()) return stats.status().WithContext("saga_participant GET /stats");
  return stats->settings;
}

Result<std::string> Runner::StoreUri(Store store, int run) {
  if (store == Store::kSqlite) {
    return "sqlite://" + (work_dir() / ("txcoord-" + std::to_string(run) + ".db")).string();
  }
  auto db = pg_->CreateDatabase("saga_run" + std::to_string(run));
  if (!db.ok()) return db.status();
  return pg_->Uri(*db);
}

Result<std::unique_ptr<Server>> Runner::StartCoordinator(const std::string& store_uri, int run,
                                                         int concurrency) {
  // A kept-alive client connection holds a server thread: leave room above the clients.
  const int threads = std::clamp(2 * concurrency, 128, 1024);
  return Server::Start(
      options_.txcoord_bin,
      {"--listen", "127.0.0.1:0", "--store", store_uri, "--max-threads", std::to_string(threads)},
      (work_dir() / ("txcoord-" + std::to_string(run) + ".log")).string());
}

Result<std::unique_ptr<Server>> Runner::StartSagaParticipant(const std::string& name) {
  return Server::Start(options_.saga_participant_bin,
                       {"--db", (work_dir() / (name + ".db")).string(), "--listen", "127.0.0.1:0"},
                       (work_dir() / (name + ".log")).string());
}

Result<PointResult> Runner::Run(const Point& point) {
  const int run = ++runs_;
  auto store_uri = StoreUri(point.store, run);
  if (!store_uri.ok()) return store_uri.status();
  auto coordinator = StartCoordinator(*store_uri, run, point.concurrency);
  if (!coordinator.ok()) return coordinator.status();

  const std::vector<StepShape> steps = StepsOf(point.workload);
  std::vector<std::unique_ptr<Server>> services;  // sqlite set-up: one per step
  std::vector<StepUrls> urls;
  std::vector<pid_t> participant_pids;
  if (point.setup == Setup::kSqlite) {
    for (const StepShape& step : steps) {
      auto service = StartSagaParticipant("saga-" + std::to_string(run) + "-" + step.id);
      if (!service.ok()) return service.status();
      const std::string base = (*service)->url() + (step.refused ? "/refuse" : "/step");
      urls.push_back({base + "/action", base + "/compensate"});
      participant_pids.push_back((*service)->pid());
      services.push_back(std::move(service).value());
    }
  } else {
    const std::string base = null_participant_->url() + "/saga";
    for (const StepShape& step : steps) {
      const std::string path = base + (step.refused ? "/refuse" : "");
      urls.push_back({path + "/action", path + "/compensate"});
    }
    participant_pids.push_back(null_participant_->pid());
  }

  const uint16_t port = static_cast<uint16_t>((*coordinator)->port());
  const pid_t coordinator_pid = (*coordinator)->pid();
  ConnectionPool clients("127.0.0.1", port, point.concurrency, kClientTimeout);
  ConnectionPool metrics("127.0.0.1", port, 1, kClientTimeout);
  const Sagas sagas(clients, point.workload, std::move(urls), "r" + std::to_string(run));

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
    if (point.store == Store::kPostgres) s.postgres_s = CpuSecondsOfTree(pg_->pid());
    s.metrics = ReadMetrics(metrics);
    return s;
  };
  Sample start;
  Sample end;
  Result<Memory> memory = Status::Unavailable("not read");
  std::atomic<int64_t> finished{0};
  PointResult result;
  result.point = point;
  result.loop = RunClosedLoop(
      point.concurrency, options_.warmup_s, options_.seconds,
      [&](int thread, int64_t seq) {
        Status s = sagas.Run(thread, seq);
        if (s.ok()) finished.fetch_add(1, std::memory_order_relaxed);
        return s;
      },
      [&] { start = sample(); },
      [&] {
        end = sample();
        memory = ReadMemory(coordinator_pid);
      });
  result.finished = finished.load();
  const double window_s = std::chrono::duration<double>(end.at - start.at).count();
  result.cpu_coordinator = (end.coordinator_s - start.coordinator_s) / window_s;
  result.cpu_participants = (end.participants_s - start.participants_s) / window_s;
  result.cpu_postgres = (end.postgres_s - start.postgres_s) / window_s;
  result.log_commits = end.metrics.log_commits - start.metrics.log_commits;
  result.log_appends = end.metrics.log_appends - start.metrics.log_appends;
  result.callbacks = end.metrics.callbacks - start.metrics.callbacks;
  result.callback_failures = end.metrics.callback_failures - start.metrics.callback_failures;
  if (memory.ok()) result.coordinator_memory = *memory;

  // Every saga that returned was terminal, so its callbacks are done: the rows are final. With
  // errors some sagas may still be running; the figures are void then anyway.
  if (point.setup == Setup::kSqlite && result.loop.errors == 0) {
    result.check_error = CheckEffects(point, result.finished, services);
  }
  if (Status s = (*coordinator)->Stop(); !s.ok()) result.stop_error = s.message();
  for (auto& service : services) (void)service->Stop();
  return result;
}

}  // namespace txcoord::bench
