#include "runs.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <mutex>
#include <thread>
#include <utility>

#include "txcoord/testing/postgres_server.h"

namespace txcoord::bench {
namespace {

namespace fs = std::filesystem;

constexpr std::chrono::milliseconds kClientTimeout{30'000};
// The bank example serves 64 connections at once (bank_main.cc) and a kept-alive connection
// holds one of them, so the load generator's Try connections to a bank are capped well below
// that, leaving the rest to the coordinator's callbacks. A SQLite bank runs one callback at a
// time anyway (one connection behind a mutex), so more would not add throughput.
constexpr int kBankTryConnections = 16;
constexpr int64_t kBankBalance = 1'000'000'000;
constexpr int kInFlightClients = 64;
constexpr std::chrono::seconds kInFlightSettle{120};
constexpr size_t kMaxErrorSamples = 5;

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

struct Metrics {
  int64_t log_commits = -1;
  int64_t log_appends = -1;
  int64_t live = -1;
  int64_t callbacks = -1;
  int64_t callback_failures = -1;
};

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

std::string BankAccounts(int accounts) {
  std::string list;
  for (int i = 0; i < accounts; ++i) {
    list += (i == 0 ? "a" : ",a") + std::to_string(i) + "=" + std::to_string(kBankBalance);
  }
  return list;
}

}  // namespace

std::string_view SetupName(Setup s) { return s == Setup::kNull ? "null" : "bank"; }
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
    auto db = pg_->CreateDatabase("txn_floor");
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

Result<std::string> Runner::StoreUri(Store store, int run) {
  if (store == Store::kSqlite) {
    return "sqlite://" + (work_dir() / ("txcoord-" + std::to_string(run) + ".db")).string();
  }
  auto db = pg_->CreateDatabase("txn_run" + std::to_string(run));
  if (!db.ok()) return db.status();
  return pg_->Uri(*db);
}

Result<std::unique_ptr<Server>> Runner::StartCoordinator(
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

Result<PointResult> Runner::Run(const Point& point) {
  const int run = ++runs_;
  auto store_uri = StoreUri(point.store, run);
  if (!store_uri.ok()) return store_uri.status();
  auto coordinator = StartCoordinator(*store_uri, run, point.concurrency, {});
  if (!coordinator.ok()) return coordinator.status();

  std::vector<std::unique_ptr<Server>> banks;
  std::vector<std::unique_ptr<ConnectionPool>> participant_pools;
  std::array<Participant, 2> participants;
  std::vector<pid_t> participant_pids;
  if (point.setup == Setup::kBank) {
    const std::string accounts = BankAccounts(options_.accounts);
    for (int i = 0; i < 2; ++i) {
      const std::string name = "bank" + std::to_string(run) + (i == 0 ? "a" : "b");
      auto bank = Server::Start(options_.bank_bin,
                                {"--name", name, "--listen", "127.0.0.1:0", "--sqlite",
                                 (work_dir() / (name + ".db")).string(), "--accounts", accounts},
                                (work_dir() / (name + ".log")).string());
      if (!bank.ok()) return bank.status();
      participant_pools.push_back(std::make_unique<ConnectionPool>(
          "127.0.0.1", static_cast<uint16_t>((*bank)->port()),
          std::min(point.concurrency, kBankTryConnections), kClientTimeout));
      participants[i] = {(*bank)->url(), participant_pools.back().get()};
      participant_pids.push_back((*bank)->pid());
      banks.push_back(std::move(bank).value());
    }
  } else {
    participant_pools.push_back(std::make_unique<ConnectionPool>(
        "127.0.0.1", static_cast<uint16_t>(null_participant_->port()), point.concurrency,
        kClientTimeout));
    participants[0] = participants[1] = {null_participant_->url(), participant_pools[0].get()};
    participant_pids.push_back(null_participant_->pid());
  }

  const uint16_t port = static_cast<uint16_t>((*coordinator)->port());
  const pid_t coordinator_pid = (*coordinator)->pid();
  ConnectionPool clients("127.0.0.1", port, point.concurrency, kClientTimeout);
  ConnectionPool metrics("127.0.0.1", port, 1, kClientTimeout);
  const Transfers transfers(clients, participants, point.protocol, "r" + std::to_string(run),
                            options_.accounts);

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
  PointResult result;
  result.point = point;
  result.loop = RunClosedLoop(
      point.concurrency, options_.warmup_s, options_.seconds,
      [&](int thread, int64_t seq) { return transfers.Run(thread, seq); },
      [&] { start = sample(); },
      [&] {
        end = sample();
        memory = ReadMemory(coordinator_pid);
      });
  const double window_s = std::chrono::duration<double>(end.at - start.at).count();
  result.cpu_coordinator = (end.coordinator_s - start.coordinator_s) / window_s;
  result.cpu_participants = (end.participants_s - start.participants_s) / window_s;
  result.cpu_postgres = (end.postgres_s - start.postgres_s) / window_s;
  result.log_commits = end.metrics.log_commits - start.metrics.log_commits;
  result.log_appends = end.metrics.log_appends - start.metrics.log_appends;
  if (memory.ok()) result.coordinator_memory = *memory;

  if (Status s = (*coordinator)->Stop(); !s.ok()) result.stop_error = s.message();
  for (auto& bank : banks) (void)bank->Stop();
  return result;
}

Result<InFlightResult> Runner::InFlight(Protocol protocol, int transactions) {
  const int run = ++runs_;
  auto store_uri = StoreUri(Store::kSqlite, run);
  if (!store_uri.ok()) return store_uri.status();
  // 2pc: prepares are answered 425, which the coordinator retries at --retry-initial-ms; an
  // interval of 10 minutes (the most txcoord takes) keeps every transaction in `preparing`
  // with one prepare per branch sent while the memory is read.
  std::unique_ptr<Server> slow_participant;
  std::vector<std::string> extra_args;
  const Server* participant = null_participant_.get();
  if (protocol == Protocol::k2pc) {
    auto slow = Server::Start(options_.null_participant_bin,
                              {"--listen", "127.0.0.1:0", "--prepare-reply", "425"},
                              (work_dir() / "null_participant_425.log").string());
    if (!slow.ok()) return slow.status();
    slow_participant = std::move(slow).value();
    participant = slow_participant.get();
    extra_args = {"--retry-initial-ms", "600000", "--retry-max-ms", "600000"};
  }
  auto coordinator = StartCoordinator(*store_uri, run, kInFlightClients, extra_args);
  if (!coordinator.ok()) return coordinator.status();
  const uint16_t port = static_cast<uint16_t>((*coordinator)->port());
  ConnectionPool clients("127.0.0.1", port, kInFlightClients, kClientTimeout);
  ConnectionPool metrics("127.0.0.1", port, 1, kClientTimeout);
  ConnectionPool participant_pool("127.0.0.1", static_cast<uint16_t>(participant->port()), 1,
                                  kClientTimeout);
  const Participant p{participant->url(), &participant_pool};
  const Transfers transfers(clients, {p, p}, protocol, "h" + std::to_string(run),
                            options_.accounts);

  InFlightResult result;
  result.protocol = protocol;
  result.requested = transactions;
  auto idle = ReadMemory((*coordinator)->pid());
  if (!idle.ok()) return idle.status();
  result.idle = *idle;

  std::atomic<int> next{0};
  std::mutex errors_mu;
  const Clock::time_point load_start = Clock::now();
  {
    std::vector<std::jthread> loaders;
    for (int t = 0; t < kInFlightClients; ++t) {
      loaders.emplace_back([&, t] {
        for (int64_t seq = next++; seq < transactions; seq = next++) {
          const Status s = transfers.Hold(t, seq);
          if (s.ok()) continue;
          std::lock_guard lock(errors_mu);
          ++result.errors;
          if (result.first_errors.size() < kMaxErrorSamples) {
            result.first_errors.push_back(s.ToString());
          }
        }
      });
    }
  }
  result.load_s = std::chrono::duration<double>(Clock::now() - load_start).count();
  if (protocol == Protocol::k2pc) {
    // Until every first prepare was answered (425 counts as a failed callback), so that the
    // memory is read in the steady state: nothing queued, each transaction waiting.
    const int64_t expected = 2 * (transactions - result.errors);
    const Clock::time_point give_up = Clock::now() + kInFlightSettle;
    while (ReadMetrics(metrics).callback_failures < expected && Clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  result.live = ReadMetrics(metrics).live;
  auto held = ReadMemory((*coordinator)->pid());
  if (!held.ok()) return held.status();
  result.held = *held;
  if (Status s = (*coordinator)->Stop(std::chrono::seconds(30)); !s.ok()) {
    result.stop_error = s.message();
  }
  if (slow_participant) (void)slow_participant->Stop();
  return result;
}

}  // namespace txcoord::bench
