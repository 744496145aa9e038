// The crash test of sagas (issue 4): concurrent sagas whose steps fail at random, while the
// coordinator and the participants are SIGKILLed and restarted.
//
// Set-up, all real processes on loopback: txcoord on a SQLite store, and three saga participants
// (saga_participant_main.cc), each with its own SQLite database, whose steps run behind the
// barrier (SqliteSagaStep) and record each action and each compensation as a row of their own
// database, in the same local transaction. The participants inject transient faults on actions
// and compensations (503, 500, a reply lost after the effect, a reply slower than the
// coordinator's callback timeout, a call that arrives late, a connection reset before the call
// or after it ran). Some steps refuse by their payload (409): the test knows which sagas must
// abort.
//
// `sagas` sagas (300), drawn from the seed, of four shapes over steps spread at random over the
// participants:
//   seq3   s1 -> s2 -> s3
//   seq4   s1 -> s2 -> s3 -> s4
//   pair   s1 -> {s2, s3} -> s4        (s2 and s3 in parallel)
//   fork   s1 -> {s2, s3}
// with saga deadlines from 3 to 20 s (one in eight below 2 s) and, on some steps, a max_attempts of
// 3, so that sagas also abort by their deadline and by attempts running out. Client threads (100)
// submit them with idempotent gtids (wait=true) and retry the submission across coordinator
// restarts, then read the outcome: a third of the sagas at once, the rest released as the kills go
// on, so that every kill lands among running sagas. Meanwhile a killer SIGKILLs the coordinator at
// least `coordinator_kills` times and a random participant at least `participant_kills` times,
// restarting each at once on the same port (the coordinator on the same store).
//
// Afterwards, within 60 s of the last restart:
//   - every saga is terminal (GET), as the client saw it, with every step `succeeded`
//     (committed) or `compensated` (aborted);
//   - committed: every step's action applied exactly once, no compensation;
//   - aborted: every applied action compensated exactly once, no compensation without its
//     action, so no step left an effect behind; a refusing step's action left nothing;
//   - a saga with a refusing step is aborted, and a reason "step X refused action" names a
//     refusing step;
//   - order: for each dependency a -> b, b's action was applied no earlier than a's, and a's
//     compensation no earlier than b's (timestamps of the participants' rows);
//   - each participant's balance is the sum of its committed steps' amounts.
// The participants' databases are read after the participants are stopped.
//
// Knobs: TXCOORD_SAGA_CRASH_SAGAS (300), TXCOORD_SAGA_CRASH_COORDINATOR_KILLS (30),
// TXCOORD_SAGA_CRASH_PARTICIPANT_KILLS (10), TXCOORD_SAGA_CRASH_CLIENTS (100),
// TXCOORD_SAGA_CRASH_FAULT_PERCENT (20: faults per callback), TXCOORD_SAGA_CRASH_DROP_PERCENT (5:
// connection resets), TXCOORD_SEED (printed on every run).
#include <Poco/Net/ServerSocket.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <regex>
#include <set>
#include <thread>

#include "restartable.h"
#include "txcoord/participant/client.h"
#include "txcoord/participant/saga.h"
#include "txcoord/testing/poll.h"

namespace txcoord::integration {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr int kParticipants = 3;
// Above the coordinator's --callback-timeout-ms below: a slow reply is given up and retried.
constexpr int kCallbackTimeoutMs = 1000;
constexpr int kSlowMs = 1300;

struct StepPlan {
  std::string id;
  int participant = 0;
  int64_t amount = 0;
  bool refuse = false;   // the action answers 409, by its payload
  int max_attempts = 0;  // 0: retried until the deadline
  std::vector<std::string> depends_on;
};

struct SagaPlan {
  std::string gtid;
  std::string shape;
  int timeout_ms = 0;
  std::vector<StepPlan> steps;
  bool must_abort() const {
    for (const StepPlan& s : steps) {
      if (s.refuse) return true;
    }
    return false;
  }
};

std::vector<SagaPlan> DrawSagas(int count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const std::vector<std::pair<std::string, std::vector<std::vector<std::string>>>> shapes = {
      {"seq3", {{}, {"s1"}, {"s2"}}},
      {"seq4", {{}, {"s1"}, {"s2"}, {"s3"}}},
      {"pair", {{}, {"s1"}, {"s1"}, {"s2", "s3"}}},
      {"fork", {{}, {"s1"}, {"s1"}}},
  };
  std::vector<SagaPlan> plan;
  for (int i = 0; i < count; ++i) {
    const auto& [shape, deps] = shapes[rng() % shapes.size()];
    SagaPlan saga;
    saga.gtid = "saga-" + std::to_string(i);
    saga.shape = shape;
    // Mostly long enough to get through the kills; one in eight short enough that the deadline
    // may pass while an action is in flight.
    saga.timeout_ms = rng() % 8 == 0 ? 800 + static_cast<int>(rng() % 1200)
                                     : 3000 + static_cast<int>(rng() % 17'000);
    // About one saga in four has a step that refuses.
    const int refusing = rng() % 4 == 0 ? static_cast<int>(rng() % deps.size()) : -1;
    for (size_t s = 0; s < deps.size(); ++s) {
      StepPlan step;
      step.id = "s" + std::to_string(s + 1);
      step.participant = static_cast<int>(rng() % kParticipants);
      step.amount = 1 + static_cast<int64_t>(rng() % 1000);
      step.refuse = static_cast<int>(s) == refusing;
      step.max_attempts = rng() % 8 == 0 ? 3 : 0;
      step.depends_on = deps[s];
      saga.steps.push_back(std::move(step));
    }
    plan.push_back(std::move(saga));
  }
  return plan;
}

bool Retryable(const Status& s) {
  return s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kUnknownOutcome;
}

bool Terminal(const std::string& state) { return state == "committed" || state == "aborted"; }

// One participant's rows for one step.
struct StepEffects {
  int actions = 0;
  int compensations = 0;
  std::string action_at;      // the first row's timestamp
  std::string compensate_at;  // idem
};

struct ParticipantDb {
  std::map<std::pair<std::string, std::string>, StepEffects> steps;  // (gtid, step_id)
  int64_t balance = 0;
};

ParticipantDb ReadParticipantDb(const std::string& path) {
  ParticipantDb out;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << "cannot open " << path << ": " << sqlite3_errmsg(db);
    sqlite3_close(db);
    return out;
  }
  sqlite3_stmt* rows = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, "SELECT gtid, step_id, kind, at FROM effects ORDER BY id", -1,
                               &rows, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  while (rows != nullptr && sqlite3_step(rows) == SQLITE_ROW) {
    auto text = [&](int col) {
      const auto* p = sqlite3_column_text(rows, col);
      return std::string(p != nullptr ? reinterpret_cast<const char*>(p) : "");
    };
    StepEffects& e = out.steps[{text(0), text(1)}];
    if (text(2) == "action") {
      if (e.actions++ == 0) e.action_at = text(3);
    } else {
      if (e.compensations++ == 0) e.compensate_at = text(3);
    }
  }
  sqlite3_finalize(rows);
  sqlite3_stmt* balance = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, "SELECT total FROM balance WHERE id = 1", -1, &balance, nullptr),
            SQLITE_OK);
  if (balance != nullptr && sqlite3_step(balance) == SQLITE_ROW) {
    out.balance = sqlite3_column_int64(balance, 0);
  } else {
    ADD_FAILURE() << path << " has no balance row";
  }
  sqlite3_finalize(balance);
  sqlite3_close(db);
  return out;
}

class SagaCrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = SeedFromEnv();
    std::cout << "seed " << seed_ << " (TXCOORD_SEED to replay)" << std::endl;
    dir_ =
        std::filesystem::temp_directory_path() / ("txcoord-saga-crash-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);

    coordinator_port_ = FreePortBelowEphemeralRange();
    const std::string store = "sqlite://" + (dir_ / "txcoord.db").string();
    const std::string listen = "127.0.0.1:" + std::to_string(coordinator_port_);
    coordinator_ = std::make_unique<Restartable>(
        "txcoord", TXCOORD_BIN,
        [=](int) {
          return std::vector<std::string>{"--listen",
                                          listen,
                                          "--store",
                                          store,
                                          "--callback-timeout-ms",
                                          std::to_string(kCallbackTimeoutMs),
                                          "--retry-initial-ms",
                                          "20",
                                          "--retry-max-ms",
                                          "200",
                                          "--recovery-interval-ms",
                                          "1000"};
        },
        dir_.string());
    const int fault_percent = EnvInt("TXCOORD_SAGA_CRASH_FAULT_PERCENT", 20);
    const int drop_percent = EnvInt("TXCOORD_SAGA_CRASH_DROP_PERCENT", 5);
    for (int p = 0; p < kParticipants; ++p) {
      const int port = FreePortBelowEphemeralRange();
      const std::string db = (dir_ / ("p" + std::to_string(p) + ".db")).string();
      participant_ports_.push_back(port);
      participant_dbs_.push_back(db);
      const uint64_t seed = seed_;
      participants_.push_back(std::make_unique<Restartable>(
          "participant-" + std::to_string(p), SAGA_PARTICIPANT_BIN,
          [=](int start) {
            return std::vector<std::string>{
                "--listen",        "127.0.0.1:" + std::to_string(port),
                "--sqlite",        db,
                "--seed",          std::to_string((seed ^ (1000003ULL * (p + 1))) + start),
                "--fault-percent", std::to_string(fault_percent),
                "--slow-ms",       std::to_string(kSlowMs),
                "--drop-percent",  std::to_string(drop_percent)};
          },
          dir_.string()));
    }
    coordinator_->Start();
    for (auto& p : participants_) p->Start();
  }

  void TearDown() override {
    if (coordinator_) coordinator_->Kill();
    for (auto& p : participants_) p->Kill();
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  std::string StepUrl(int participant, const char* phase) const {
    return "http://127.0.0.1:" + std::to_string(participant_ports_[participant]) + "/step/" + phase;
  }

  participant::Saga Build(participant::CoordinatorClient& client, const SagaPlan& plan) const {
    participant::Saga saga(client, plan.gtid);
    for (const StepPlan& s : plan.steps) {
      google::protobuf::Value payload;
      auto& fields = *payload.mutable_struct_value()->mutable_fields();
      fields["amount"].set_number_value(static_cast<double>(s.amount));
      fields["refuse"].set_bool_value(s.refuse);
      saga.Step(s.id, StepUrl(s.participant, "action"), StepUrl(s.participant, "compensate"),
                std::move(payload), s.depends_on);
      if (s.max_attempts > 0) {
        saga.StepRetry(s.id, milliseconds(20), milliseconds(100), s.max_attempts);
      }
    }
    saga.Timeout(milliseconds(plan.timeout_ms));
    return saga;
  }

  uint64_t seed_ = 0;
  std::filesystem::path dir_;
  int coordinator_port_ = 0;
  std::vector<int> participant_ports_;
  std::vector<std::string> participant_dbs_;
  std::unique_ptr<Restartable> coordinator_;
  std::vector<std::unique_ptr<Restartable>> participants_;
};

TEST_F(SagaCrashTest, EveryEffectIsAppliedOnceOrCompensatedOnce) {
  const int saga_count = EnvInt("TXCOORD_SAGA_CRASH_SAGAS", 300);
  const int coordinator_kills = EnvInt("TXCOORD_SAGA_CRASH_COORDINATOR_KILLS", 30);
  const int participant_kills = EnvInt("TXCOORD_SAGA_CRASH_PARTICIPANT_KILLS", 10);
  const int client_count = EnvInt("TXCOORD_SAGA_CRASH_CLIENTS", 100);
  const auto started = Clock::now();
  const std::vector<SagaPlan> plan = DrawSagas(saga_count, seed_);

  // Until the killer is done, clients keep at it for up to 10 minutes (ctest's timeout is the
  // real bound); then for 60 s after the last restart.
  std::atomic<Clock::rep> give_up{
      (Clock::now() + std::chrono::minutes(10)).time_since_epoch().count()};
  auto past_give_up = [&] { return Clock::now().time_since_epoch().count() >= give_up.load(); };

  // When the sagas start: a third at once, the rest spread over the first three quarters of the
  // kills, so that every kill lands among sagas in all their states (starting, going forward,
  // compensating, finishing). Saga i may be submitted once `kills_done` reaches release_after(i).
  const int burst = saga_count / 3;
  const int spread_over = (coordinator_kills + participant_kills) * 3 / 4;
  auto release_after = [&](int i) {
    if (i < burst) return 0;
    return static_cast<int>(static_cast<int64_t>(i - burst) * spread_over /
                            std::max(1, saga_count - burst));
  };
  std::mutex release_mu;
  std::condition_variable release_cv;
  int kills_done = 0;        // GUARDED_BY(release_mu)
  bool killer_done = false;  // GUARDED_BY(release_mu): every saga may start

  std::atomic<int> next{0};
  std::atomic<int> submitted{0};  // sagas submitted at least once
  std::atomic<int> finished{0};   // sagas whose client is done with them
  std::atomic<int> resubmits{0};
  std::mutex results_mu;
  std::map<std::string, std::string> seen;  // gtid -> the terminal state the client saw
  std::vector<std::string> errors;
  std::vector<std::thread> clients;
  for (int c = 0; c < client_count; ++c) {
    clients.emplace_back([&] {
      participant::CoordinatorClientOptions options;
      options.url = "http://127.0.0.1:" + std::to_string(coordinator_port_);
      options.timeout = seconds(15);
      auto client = participant::CoordinatorClient::Create(options);
      if (!client.ok()) {
        std::lock_guard lock(results_mu);
        errors.push_back(client.status().ToString());
        return;
      }
      for (int i; (i = next++) < saga_count;) {
        {
          std::unique_lock lock(release_mu);
          release_cv.wait(lock, [&] { return killer_done || kills_done >= release_after(i); });
        }
        ++submitted;
        const participant::Saga saga = Build(**client, plan[i]);
        // Submit until the coordinator answers: the same request every time (same gtid), so a
        // repeat after a lost reply or a restart returns the saga already begun.
        Result<participant::TransactionReply> reply = saga.Submit(/*wait=*/true);
        milliseconds pause(20);
        while (!reply.ok() && Retryable(reply.status()) && !past_give_up()) {
          ++resubmits;
          std::this_thread::sleep_for(pause);
          pause = std::min(pause * 2, milliseconds(500));
          reply = saga.Submit(/*wait=*/true);
        }
        if (!reply.ok()) {
          std::lock_guard lock(results_mu);
          errors.push_back(plan[i].gtid + ": submit: " + reply.status().ToString());
          ++finished;
          continue;
        }
        // Not terminal yet (the coordinator's wait ended first): read it until it is.
        std::string state = reply->transaction.state();
        pause = milliseconds(50);
        while (!Terminal(state) && !past_give_up()) {
          std::this_thread::sleep_for(pause);
          pause = std::min(pause * 2, milliseconds(1000));
          auto got = (*client)->Get(plan[i].gtid);
          if (got.ok()) {
            state = got->state();
          } else if (!Retryable(got.status())) {
            std::lock_guard lock(results_mu);
            errors.push_back(plan[i].gtid + ": get after begin: " + got.status().ToString());
            break;
          }
        }
        ++finished;
        std::lock_guard lock(results_mu);
        seen[plan[i].gtid] = state;
      }
    });
  }

  // The killer, on this thread: TxcoordProcess gives its children PR_SET_PDEATHSIG, which fires
  // when the forking *thread* exits, so restarts come from the thread that outlives them. Random
  // pauses, the coordinator more often than the participants, until both counts are reached and
  // every saga has started (at most four times the coordinator's count).
  int killed_coordinator = 0, killed_participants = 0;
  int64_t in_flight_at_kills = 0;  // sagas submitted and not yet finished, summed over the kills
  int max_in_flight_at_kill = 0;
  {
    std::mt19937_64 krng(seed_ ^ 0x9e3779b97f4a7c15ULL);
    while (killed_coordinator < coordinator_kills || killed_participants < participant_kills ||
           (submitted < saga_count && killed_coordinator < coordinator_kills * 4)) {
      std::this_thread::sleep_for(milliseconds(50 + krng() % 400));
      const int in_flight = submitted - finished;
      in_flight_at_kills += in_flight;
      max_in_flight_at_kill = std::max(max_in_flight_at_kill, in_flight);
      if (killed_participants >= participant_kills || krng() % 4 != 0) {
        coordinator_->Kill();
        coordinator_->Start();
        ++killed_coordinator;
      } else {
        auto& p = participants_[krng() % participants_.size()];
        p->Kill();
        p->Start();
        ++killed_participants;
      }
      {
        std::lock_guard lock(release_mu);
        ++kills_done;
      }
      release_cv.notify_all();
      if (HasFatalFailure()) break;
    }
  }
  {
    std::lock_guard lock(release_mu);
    killer_done = true;
  }
  release_cv.notify_all();
  const auto last_restart = Clock::now();
  give_up = (last_restart + seconds(60)).time_since_epoch().count();
  for (auto& t : clients) t.join();
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_TRUE(errors.empty()) << errors.size() << " sagas failed, first: " << errors.front();

  // Every saga terminal within 60 s of the last restart.
  participant::CoordinatorClientOptions options;
  options.url = "http://127.0.0.1:" + std::to_string(coordinator_port_);
  auto client = participant::CoordinatorClient::Create(options);
  ASSERT_TRUE(client.ok());
  std::map<std::string, v1::Transaction> final_tx;
  std::string last_seen;  // why the last saga checked was not terminal
  const bool all_terminal = testing::PollUntil(
      std::chrono::duration_cast<milliseconds>(seconds(60) - (Clock::now() - last_restart)),
      milliseconds(200), [&] {
        for (const SagaPlan& s : plan) {
          if (final_tx.count(s.gtid) != 0) continue;
          auto tx = (*client)->Get(s.gtid);
          if (tx.ok() && Terminal(tx->state())) {
            final_tx[s.gtid] = *tx;
          } else {
            last_seen = s.gtid + ": " + (tx.ok() ? tx->state() : tx.status().ToString());
          }
        }
        return final_tx.size() == plan.size();
      });
  ASSERT_TRUE(all_terminal) << final_tx.size() << " of " << plan.size()
                            << " terminal 60 s after the last restart; " << last_seen;

  // Stopped, so that nothing is written any more (calls in progress finish first).
  coordinator_->Stop();
  for (auto& p : participants_) p->Stop();
  std::vector<ParticipantDb> dbs;
  for (const std::string& path : participant_dbs_) dbs.push_back(ReadParticipantDb(path));

  const std::regex refused_re("step \"([^\"]+)\" refused action");
  std::set<std::tuple<int, std::string, std::string>> planned;  // participant, gtid, step
  std::vector<int64_t> expected_balance(kParticipants, 0);
  int committed = 0, aborted = 0, refusals = 0, by_deadline = 0, by_attempts = 0;
  for (const SagaPlan& s : plan) {
    const v1::Transaction& tx = final_tx[s.gtid];
    const bool is_committed = tx.state() == "committed";
    committed += is_committed;
    aborted += !is_committed;
    refusals += s.must_abort();
    by_deadline += tx.reason().find("deadline") != std::string::npos;
    by_attempts += tx.reason().find("attempts") != std::string::npos;
    const std::string where =
        s.gtid + " (" + s.shape + ", " + tx.state() + ": " + tx.reason() + ")";
    EXPECT_EQ(seen[s.gtid], tx.state()) << where << ": the client saw another state";
    if (s.must_abort()) {
      EXPECT_FALSE(is_committed) << where << " has a refusing step";
    }
    if (std::smatch m; std::regex_search(tx.reason(), m, refused_re)) {
      bool named_refuses = false;
      for (const StepPlan& step : s.steps) named_refuses |= step.id == m[1] && step.refuse;
      EXPECT_TRUE(named_refuses) << where << ": the step named did not refuse";
    }
    ASSERT_EQ(tx.steps_size(), static_cast<int>(s.steps.size())) << where;
    for (const auto& step : tx.steps()) {
      EXPECT_EQ(step.state(), is_committed ? "succeeded" : "compensated")
          << where << " step " << step.step_id();
    }

    std::map<std::string, StepEffects> effects;
    for (const StepPlan& step : s.steps) {
      planned.insert({step.participant, s.gtid, step.id});
      const auto& rows = dbs[step.participant].steps;
      const auto found = rows.find({s.gtid, step.id});
      const StepEffects e = found != rows.end() ? found->second : StepEffects{};
      effects[step.id] = e;
      const std::string at = where + " step " + step.id + " on participant " +
                             std::to_string(step.participant) + ": " + std::to_string(e.actions) +
                             " actions, " + std::to_string(e.compensations) + " compensations";
      if (is_committed) {
        EXPECT_EQ(e.actions, 1) << at;
        EXPECT_EQ(e.compensations, 0) << at;
        expected_balance[step.participant] += step.amount;
      } else {
        EXPECT_LE(e.actions, 1) << at;
        EXPECT_EQ(e.compensations, e.actions) << at;
        if (step.refuse) {
          EXPECT_EQ(e.actions, 0) << at << ": a refused action left its effect";
        }
      }
    }
    // Dependency order, by the rows' timestamps (one clock: one machine).
    for (const StepPlan& step : s.steps) {
      for (const std::string& dep : step.depends_on) {
        const StepEffects& a = effects[dep];
        const StepEffects& b = effects[step.id];
        if (a.actions > 0 && b.actions > 0) {
          EXPECT_GE(b.action_at, a.action_at)
              << where << ": " << step.id << " ran before " << dep << " it depends on";
        }
        if (a.compensations > 0 && b.compensations > 0) {
          EXPECT_GE(a.compensate_at, b.compensate_at)
              << where << ": " << dep << " was compensated before " << step.id;
        }
      }
    }
  }
  for (int p = 0; p < kParticipants; ++p) {
    EXPECT_EQ(dbs[p].balance, expected_balance[p]) << "participant " << p << "'s balance";
    for (const auto& [key, e] : dbs[p].steps) {
      EXPECT_TRUE(planned.count({p, key.first, key.second}) != 0)
          << "participant " << p << " has effects of " << key.first << "/" << key.second
          << ", a step it does not serve";
    }
  }

  const auto elapsed = std::chrono::duration_cast<seconds>(Clock::now() - started);
  std::cout << "sagas " << plan.size() << ": " << committed << " committed, " << aborted
            << " aborted (" << refusals << " with a refusing step, " << by_deadline
            << " by the deadline, " << by_attempts << " by attempts); killed the coordinator "
            << killed_coordinator << " times and participants " << killed_participants
            << " times, with "
            << in_flight_at_kills / std::max(1, killed_coordinator + killed_participants)
            << " sagas in flight on average (at most " << max_in_flight_at_kill << "); "
            << resubmits << " resubmissions; " << elapsed.count() << " s" << std::endl;
  EXPECT_GT(committed, 0);
  EXPECT_GE(aborted, refusals);
}

}  // namespace
}  // namespace txcoord::integration
