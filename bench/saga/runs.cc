#include "runs.h"

#include <atomic>
#include <charconv>
#include <utility>

namespace txcoord::bench {
namespace {

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

Runner::Runner(const RunnerOptions& options, std::unique_ptr<CoordinatorRig> rig)
    : options_(options), rig_(std::move(rig)) {}
Runner::~Runner() = default;

Result<std::unique_ptr<Runner>> Runner::Start(const RunnerOptions& options) {
  auto rig = CoordinatorRig::Start(options.rig);
  if (!rig.ok()) return rig.status();
  return std::unique_ptr<Runner>(new Runner(options, std::move(rig).value()));
}

Result<ParticipantSettings> Runner::ProbeParticipant() {
  auto probe = StartSagaParticipant("probe");
  if (!probe.ok()) return probe.status();
  auto stats = ReadStats(**probe);
  (void)(*probe)->Stop();
  if (!stats.ok()) return stats.status().WithContext("saga_participant GET /stats");
  return stats->settings;
}

Result<std::unique_ptr<Server>> Runner::StartSagaParticipant(const std::string& name) {
  const std::filesystem::path& dir = rig_->work_dir();
  return Server::Start(options_.saga_participant_bin,
                       {"--db", (dir / (name + ".db")).string(), "--listen", "127.0.0.1:0"},
                       (dir / (name + ".log")).string());
}

Result<PointResult> Runner::Run(const Point& point) {
  const int run = rig_->NextRun();
  auto store_uri = rig_->StoreUri(point.store, run);
  if (!store_uri.ok()) return store_uri.status();
  auto coordinator = rig_->StartCoordinator(*store_uri, run, point.concurrency);
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
    const std::string base = rig_->null_participant().url() + "/saga";
    for (const StepShape& step : steps) {
      const std::string path = base + (step.refused ? "/refuse" : "");
      urls.push_back({path + "/action", path + "/compensate"});
    }
    participant_pids.push_back(rig_->null_participant().pid());
  }

  ConnectionPool clients("127.0.0.1", static_cast<uint16_t>((*coordinator)->port()),
                         point.concurrency, kClientTimeout);
  const Sagas sagas(clients, point.workload, std::move(urls), "r" + std::to_string(run));
  std::atomic<int64_t> finished{0};
  RunFigures figures = rig_->Measure(**coordinator, participant_pids, point.store,
                                     point.concurrency, [&](int thread, int64_t seq) {
                                       Status s = sagas.Run(thread, seq);
                                       if (s.ok()) finished.fetch_add(1, std::memory_order_relaxed);
                                       return s;
                                     });
  PointResult result{std::move(figures), point, finished.load(), /*check_error=*/""};

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
