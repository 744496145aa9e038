#include "runs.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <utility>

namespace txcoord::bench {
namespace {

// The bank example serves 64 connections at once (bank_main.cc) and a kept-alive connection
// holds one of them, so the load generator's Try connections to a bank are capped well below
// that, leaving the rest to the coordinator's callbacks. A SQLite bank runs one callback at a
// time anyway (one connection behind a mutex), so more would not add throughput.
constexpr int kBankTryConnections = 16;
constexpr int64_t kBankBalance = 1'000'000'000;
constexpr int kInFlightClients = 64;
constexpr std::chrono::seconds kInFlightSettle{120};
constexpr size_t kMaxErrorSamples = 5;

std::string BankAccounts(int accounts) {
  std::string list;
  for (int i = 0; i < accounts; ++i) {
    list += (i == 0 ? "a" : ",a") + std::to_string(i) + "=" + std::to_string(kBankBalance);
  }
  return list;
}

}  // namespace

std::string_view SetupName(Setup s) { return s == Setup::kNull ? "null" : "bank"; }

Runner::Runner(const RunnerOptions& options, std::unique_ptr<CoordinatorRig> rig)
    : options_(options), rig_(std::move(rig)) {}
Runner::~Runner() = default;

Result<std::unique_ptr<Runner>> Runner::Start(const RunnerOptions& options) {
  auto rig = CoordinatorRig::Start(options.rig);
  if (!rig.ok()) return rig.status();
  return std::unique_ptr<Runner>(new Runner(options, std::move(rig).value()));
}

Result<PointResult> Runner::Run(const Point& point) {
  const int run = rig_->NextRun();
  auto store_uri = rig_->StoreUri(point.store, run);
  if (!store_uri.ok()) return store_uri.status();
  auto coordinator = rig_->StartCoordinator(*store_uri, run, point.concurrency);
  if (!coordinator.ok()) return coordinator.status();

  std::vector<std::unique_ptr<Server>> banks;
  std::vector<std::unique_ptr<ConnectionPool>> participant_pools;
  std::array<Participant, 2> participants;
  std::vector<pid_t> participant_pids;
  if (point.setup == Setup::kBank) {
    const std::string accounts = BankAccounts(options_.accounts);
    const std::filesystem::path& dir = rig_->work_dir();
    for (int i = 0; i < 2; ++i) {
      const std::string name = "bank" + std::to_string(run) + (i == 0 ? "a" : "b");
      auto bank = Server::Start(options_.bank_bin,
                                {"--name", name, "--listen", "127.0.0.1:0", "--sqlite",
                                 (dir / (name + ".db")).string(), "--accounts", accounts},
                                (dir / (name + ".log")).string());
      if (!bank.ok()) return bank.status();
      participant_pools.push_back(std::make_unique<ConnectionPool>(
          "127.0.0.1", static_cast<uint16_t>((*bank)->port()),
          std::min(point.concurrency, kBankTryConnections), kClientTimeout));
      participants[i] = {(*bank)->url(), participant_pools.back().get()};
      participant_pids.push_back((*bank)->pid());
      banks.push_back(std::move(bank).value());
    }
  } else {
    const Server& null = rig_->null_participant();
    participant_pools.push_back(std::make_unique<ConnectionPool>(
        "127.0.0.1", static_cast<uint16_t>(null.port()), point.concurrency, kClientTimeout));
    participants[0] = participants[1] = {null.url(), participant_pools[0].get()};
    participant_pids.push_back(null.pid());
  }

  ConnectionPool clients("127.0.0.1", static_cast<uint16_t>((*coordinator)->port()),
                         point.concurrency, kClientTimeout);
  const Transfers transfers(clients, participants, point.protocol, "r" + std::to_string(run),
                            options_.accounts);
  RunFigures figures =
      rig_->Measure(**coordinator, participant_pids, point.store, point.concurrency,
                    [&](int thread, int64_t seq) { return transfers.Run(thread, seq); });
  PointResult result{std::move(figures), point};
  if (Status s = (*coordinator)->Stop(); !s.ok()) result.stop_error = s.message();
  for (auto& bank : banks) (void)bank->Stop();
  return result;
}

Result<InFlightResult> Runner::InFlight(Protocol protocol, int transactions) {
  const int run = rig_->NextRun();
  auto store_uri = rig_->StoreUri(Store::kSqlite, run);
  if (!store_uri.ok()) return store_uri.status();
  // 2pc: prepares are answered 425, which the coordinator retries at --retry-initial-ms; an
  // interval of 10 minutes (the most txcoord takes) keeps every transaction in `preparing`
  // with one prepare per branch sent while the memory is read.
  std::unique_ptr<Server> slow_participant;
  std::vector<std::string> extra_args;
  const Server* participant = &rig_->null_participant();
  if (protocol == Protocol::k2pc) {
    auto slow = Server::Start(rig_->options().null_participant_bin,
                              {"--listen", "127.0.0.1:0", "--prepare-reply", "425"},
                              (rig_->work_dir() / "null_participant_425.log").string());
    if (!slow.ok()) return slow.status();
    slow_participant = std::move(slow).value();
    participant = slow_participant.get();
    extra_args = {"--retry-initial-ms", "600000", "--retry-max-ms", "600000"};
  }
  auto coordinator = rig_->StartCoordinator(*store_uri, run, kInFlightClients, extra_args);
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
