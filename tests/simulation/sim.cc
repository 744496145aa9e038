// The simulator (sim.h). One World per seed: the coordinator's driver (as coordinator.cc does
// it: one append at a time per transaction, park and recover on a failed append, recovery
// passes over ScanUnfinished), a store whose fsyncs take time and may fail, a network, the
// participants, the application, and the checks.
#include "sim.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "participant.h"
#include "txcoord/coordinator/engine.h"
#include "txcoord/coordinator/memory_log.h"
#include "txcoord/coordinator/transport.h"

namespace txcoord::simulation {

const std::vector<ProtocolSpec>& Protocols() {
  static const std::vector<ProtocolSpec> protocols = {
      {.name = "2pc",
       .flow = Flow::kCoordinatorDriven,
       .vote_phases = {"prepare"},
       .one_phase = true,
       .commit_within_deadline = true},
      {.name = "tcc", .flow = Flow::kApplicationDriven},
      {.name = "saga", .flow = Flow::kSaga},
      {.name = "3pc",
       .flow = Flow::kCoordinatorDriven,
       .vote_phases = {"can-commit", "pre-commit"},
       .participant_timeouts = true},
  };
  return protocols;
}

const ProtocolSpec* FindProtocol(const std::string& name) {
  for (const ProtocolSpec& p : Protocols()) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

namespace {

using coordinator::BeginArgs;
using coordinator::CallbackReply;
using coordinator::Effects;
using coordinator::Engine;
using coordinator::EngineOptions;
using coordinator::LoggedTransaction;
using coordinator::ReplyClass;
using coordinator::Send;
using coordinator::Timestamp;
using std::chrono::milliseconds;

// 2026-11-21T00:00:00Z: simulated time 0.
constexpr int64_t kEpochMs = 1'795'219'200'000;
// Events of one run at most: far more than any run needs; a livelock hits it.
constexpr int64_t kMaxEvents = 400'000;
// How long the quiet phase may take before a transaction not yet terminal is a violation.
constexpr int64_t kQuietLimitMs = 600'000;

// The one generator of a run, with draws that do not depend on the standard library's
// distributions (those may differ between library versions; these do not).
class Rng {
 public:
  explicit Rng(uint64_t seed) : g_(seed) {}
  uint64_t Next() { return g_(); }
  // Uniform in [lo, hi].
  int64_t Range(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(g_() % static_cast<uint64_t>(hi - lo + 1));
  }
  bool Chance(double p) { return p > 0 && static_cast<double>(g_() >> 11) * 0x1.0p-53 < p; }
  // One of a few probabilities, so that some runs have none of a fault and some have a lot.
  double Pick(std::initializer_list<double> options) {
    const auto i = static_cast<size_t>(Range(0, static_cast<int64_t>(options.size()) - 1));
    return *(options.begin() + i);
  }

 private:
  std::mt19937_64 g_;
};

// Fault rates of one run; they apply only before the quiet phase.
struct Faults {
  double drop = 0;         // a request or a reply is lost
  double duplicate = 0;    // a request arrives twice; a reply is delivered again
  double slow = 0;         // a message takes far longer than usual: reorders, timeouts
  double fsync_fail = 0;   // an append fails (half of those reached the disk anyway)
  double transient = 0;    // the participant answers 500 without doing anything
  double in_progress = 0;  // ... 425
  double bug_409 = 0;      // ... 409 to commit/abort/compensate (a participant bug)
  double slow_work = 0;    // the participant takes long over a request
  int coordinator_crashes = 0;
  int participant_crashes = 0;
  int partitions = 0;
  int spurious_timers = 0;  // OnTimer called when nothing is due (the driver may)
};

struct BranchPlan {
  std::string id;
  int participant = 0;
  std::string url;              // 2pc/tcc: the branch url; saga: the action url
  std::string compensate;       // saga
  bool refuses = false;         // the participant's business answer: vote no, the action fails
  std::vector<int> deps;        // saga: the steps it depends on
  std::vector<int> dependents;  // saga: the steps that depend on it
  // The participant's durable state of this branch.
  BranchState state = BranchState::kNone;
  bool by_timeout = false;  // 3pc: the participant decided on its own timeout
  uint64_t timer_version = 0;
};

// A command the application is waiting on: acknowledged once its record is durable.
enum class Command { kNone, kRegister, kCommit, kAbort };

struct TxPlan {
  int index = 0;
  std::string gtid;
  int64_t start_ms = 0;
  int timeout_ms = 0;
  std::vector<BranchPlan> branches;  // branches, or saga steps
  BeginArgs args;
  // The application.
  std::optional<int64_t> abort_at_ms;  // 2pc/saga: the client aborts at this time
  int abandon_at = -1;                 // tcc: the application stops before step N
  bool begun = false;                  // the client got its begin acknowledged
  bool app_done = false;
  int current = 0;  // tcc: the branch being registered or tried
  int try_failures = 0;
  Command command = Command::kNone;
  uint64_t command_live = 0;
  uint64_t command_seq = 0;
  std::optional<bool> acked_commit;  // the application was told: committed (true), aborted
  bool partition_case = false;
};

// What the store holds of a transaction, kept beside the MemoryLog for cheap checks.
struct DurableTx {
  bool begun = false;
  bool one_phase = false;
  int64_t deadline_ms = 0;
  v1::Outcome decision = v1::OUTCOME_UNSPECIFIED;
  bool ended = false;
  bool pre_committed = false;  // 3pc: the pre_commit record is durable
  std::string final_state;
  std::set<std::string> registered;               // tcc branches
  std::map<std::string, std::string> step_state;  // saga: the latest durable step state
};

// One engine the coordinator drives, as coordinator.cc's Live.
struct LiveTx {
  uint64_t id = 0;  // unique per engine: replies and fsyncs of a dropped one are ignored
  std::unique_ptr<Engine> engine;
  std::vector<v1::LogRecord> pending;   // emitted, not yet handed to the store
  std::vector<v1::LogRecord> inflight;  // handed to the store, fsync not yet done
  bool appending = false;
  uint64_t inflight_upto = 0;
  std::optional<int64_t> scheduled_wake;
};

// A callback (from the coordinator) or a Try (from the application) in the network.
struct Call {
  uint64_t id = 0;
  bool from_app = false;
  uint64_t incarnation = 0;  // of the coordinator that sent it
  uint64_t live = 0;
  int tx = 0;
  int branch = 0;
  Role role = Role::kVote;
  bool one_phase = false;
  Send send;  // as the engine emitted it (payload pointer cleared)
  int64_t deadline_ms = 0;
  int64_t budget_ms = 0;
  bool open = true;  // the transport has not answered yet
};

struct ParticipantSim {
  bool up = true;
  bool partitioned = false;  // cut off from the coordinator (and the application)
  uint64_t incarnation = 0;
  std::set<std::pair<int, int>> busy;  // (tx, branch) with work in flight
};

std::string Str(int64_t v) { return std::to_string(v); }

class World {
 public:
  World(const SimConfig& config, const ProtocolSpec& spec)
      : spec_(spec), rng_(config.seed), trace_on_(config.trace) {
    result_.seed = config.seed;
    result_.protocol = spec.name;
  }

  SimResult Run() {
    Setup();
    while (!queue_.empty() && !stop_) {
      auto node = queue_.extract(queue_.begin());
      now_ms_ = node.key().first;
      if (now_ms_ > faults_end_ms_ + kQuietLimitMs) break;
      if (++result_.stats.events > kMaxEvents) {
        Violation("more than " + Str(kMaxEvents) + " events: a livelock");
        break;
      }
      node.mapped()();
      if (!stop_) CheckStep();
    }
    if (!stop_) CheckFinal();
    result_.stats.sim_time_ms = now_ms_;
    result_.stats.transactions = static_cast<int>(txs_.size());
    for (const TxPlan& tx : txs_) result_.partition_cases += tx.partition_case ? 1 : 0;
    return std::move(result_);
  }

 private:
  // ---- setup

  void Setup() {
    const bool faulty = !rng_.Chance(0.1);  // one run in ten has no faults at all
    const int participants = static_cast<int>(rng_.Range(2, 4));
    participants_.resize(participants);
    options_.retry.initial = milliseconds(rng_.Range(5, 100));
    options_.retry.max = options_.retry.initial * rng_.Range(2, 20);
    options_.retry.callback = milliseconds(rng_.Range(30, 500));
    options_.one_phase = spec_.one_phase && rng_.Chance(0.7);
    options_.log_failed_attempts = rng_.Chance(0.8);
    options_.max_parallel_steps = static_cast<int>(rng_.Range(1, 4));
    latency_max_ms_ = rng_.Range(2, 30);
    participant_timeout_ms_ = rng_.Range(200, 3000);
    faults_end_ms_ = rng_.Range(500, 8000);
    const double refuse = rng_.Pick({0, 0.05, 0.2});
    if (faulty) {
      faults_.drop = rng_.Pick({0, 0.02, 0.1, 0.25});
      faults_.duplicate = rng_.Pick({0, 0.05, 0.2});
      faults_.slow = rng_.Pick({0, 0.02, 0.1});
      faults_.fsync_fail = rng_.Pick({0, 0, 0.02, 0.1});
      faults_.transient = rng_.Pick({0, 0.05, 0.2});
      faults_.in_progress = rng_.Pick({0, 0.05, 0.15});
      faults_.bug_409 = rng_.Pick({0, 0, 0.05});
      faults_.slow_work = rng_.Pick({0, 0.02, 0.1});
      faults_.coordinator_crashes = static_cast<int>(rng_.Range(0, 3));
      faults_.participant_crashes = static_cast<int>(rng_.Range(0, 4));
      faults_.partitions = static_cast<int>(rng_.Range(0, 2));
      faults_.spurious_timers = static_cast<int>(rng_.Range(0, 10));
    }
    Trace("seed " + std::to_string(result_.seed) + ", protocol " + spec_.name + ", " +
          Str(participants) + " participants, retry " + Str(options_.retry.initial.count()) + ".." +
          Str(options_.retry.max.count()) + " ms, callback budget " +
          Str(options_.retry.callback.count()) + " ms, one_phase " +
          (options_.one_phase ? "on" : "off") + ", faults until " + Str(faults_end_ms_) +
          " ms: drop " + std::to_string(faults_.drop) + ", dup " +
          std::to_string(faults_.duplicate) + ", fsync fail " + std::to_string(faults_.fsync_fail) +
          ", " + Str(faults_.coordinator_crashes) + " coordinator crashes, " +
          Str(faults_.participant_crashes) + " participant crashes, " + Str(faults_.partitions) +
          " partitions");

    const int count = static_cast<int>(rng_.Range(1, 3));
    for (int i = 0; i < count; ++i) txs_.push_back(PlanTransaction(i, refuse));
    durable_.resize(txs_.size());
    for (const TxPlan& tx : txs_) {
      gtid_index_[tx.gtid] = tx.index;
      At(tx.start_ms, [this, i = tx.index] { ClientBegin(i); });
    }
    for (int i = 0; i < faults_.coordinator_crashes; ++i) {
      At(rng_.Range(0, faults_end_ms_), [this] { CrashCoordinator(); });
    }
    for (int i = 0; i < faults_.participant_crashes; ++i) {
      const int p = static_cast<int>(rng_.Range(0, participants - 1));
      At(rng_.Range(0, faults_end_ms_), [this, p] { CrashParticipant(p); });
    }
    for (int i = 0; i < faults_.partitions; ++i) {
      const int p = static_cast<int>(rng_.Range(0, participants - 1));
      const int64_t from = rng_.Range(0, faults_end_ms_);
      const int64_t until = std::min(faults_end_ms_, from + rng_.Range(50, 3000));
      At(from, [this, p, until] { Partition(p, until); });
    }
    for (int i = 0; i < faults_.spurious_timers; ++i) {
      At(rng_.Range(0, faults_end_ms_), [this] { SpuriousTimer(); });
    }
    At(faults_end_ms_, [this] { Trace("faults stop: the quiet phase begins"); });
    store_ = coordinator::NewMemoryLogStore();
    log_ = coordinator::OpenMemoryLog(store_);
  }

  std::string ParticipantBase(int p) const { return "http://127.0.0.1:" + Str(7001 + p); }

  TxPlan PlanTransaction(int index, double refuse) {
    TxPlan tx;
    tx.index = index;
    tx.gtid = "tx-" + Str(index);
    tx.start_ms = rng_.Range(0, faults_end_ms_ / 2);
    tx.timeout_ms = static_cast<int>(rng_.Range(100, 3000));
    const int participants = static_cast<int>(participants_.size());
    int n = 0;
    switch (spec_.flow) {
      case Flow::kCoordinatorDriven:
        n = rng_.Chance(0.25) ? 1 : static_cast<int>(rng_.Range(2, 4));
        break;
      case Flow::kApplicationDriven:
        n = static_cast<int>(rng_.Range(0, 3));
        break;
      case Flow::kSaga:
        n = static_cast<int>(rng_.Range(1, 5));
        break;
    }
    for (int j = 0; j < n; ++j) {
      BranchPlan b;
      b.participant = static_cast<int>(rng_.Range(0, participants - 1));
      b.refuses = rng_.Chance(refuse);
      if (spec_.flow == Flow::kSaga) {
        b.id = "s" + Str(j);
        b.url = ParticipantBase(b.participant) + "/" + tx.gtid + "/" + b.id + "/action";
        b.compensate = ParticipantBase(b.participant) + "/" + tx.gtid + "/" + b.id + "/undo";
        for (int k = 0; k < j && b.deps.size() < 2; ++k) {
          if (rng_.Chance(0.4)) b.deps.push_back(k);
        }
      } else {
        b.id = "b" + Str(j);
        b.url = ParticipantBase(b.participant) + "/" + tx.gtid + "/" + b.id;
      }
      tx.branches.push_back(std::move(b));
    }
    for (int j = 0; j < n; ++j) {
      for (int d : tx.branches[j].deps) tx.branches[d].dependents.push_back(j);
    }
    if (spec_.flow != Flow::kApplicationDriven && rng_.Chance(0.15)) {
      tx.abort_at_ms = tx.start_ms + rng_.Range(0, tx.timeout_ms);
    }
    if (spec_.flow == Flow::kApplicationDriven && rng_.Chance(0.1)) {
      tx.abandon_at = static_cast<int>(rng_.Range(0, 2 * n));
    }

    v1::BeginRequest& req = tx.args.request;
    req.set_gtid(tx.gtid);
    req.set_protocol(spec_.name);
    req.set_timeout_ms(tx.timeout_ms);
    for (int j = 0; j < n; ++j) {
      const BranchPlan& b = tx.branches[j];
      if (spec_.flow == Flow::kSaga) {
        v1::Step* st = req.add_steps();
        st->set_step_id(b.id);
        st->set_action(b.url);
        st->set_compensate(b.compensate);
        (*st->mutable_payload()->mutable_struct_value()->mutable_fields())["amount"]
            .set_number_value(j + 1);
        for (int d : b.deps) st->add_depends_on(tx.branches[d].id);
        if (rng_.Chance(0.3)) st->set_timeout_ms(static_cast<int32_t>(rng_.Range(30, 300)));
        if (rng_.Chance(0.3)) {
          st->mutable_retry()->set_max_attempts(static_cast<int32_t>(rng_.Range(1, 4)));
        }
        if (rng_.Chance(0.2)) {
          const int32_t initial = static_cast<int32_t>(rng_.Range(5, 50));
          st->mutable_retry()->set_initial_ms(initial);
          st->mutable_retry()->set_max_ms(initial * static_cast<int32_t>(rng_.Range(1, 10)));
        }
      } else if (spec_.flow == Flow::kCoordinatorDriven) {
        *req.add_branches() = BranchDef(b, j);
      }
    }
    tx.args.request_digest = "digest-" + tx.gtid;
    tx.args.timeout_ms = tx.timeout_ms;
    return tx;
  }

  static v1::Branch BranchDef(const BranchPlan& b, int j) {
    v1::Branch def;
    def.set_branch_id(b.id);
    def.set_url(b.url);
    (*def.mutable_payload()->mutable_struct_value()->mutable_fields())["amount"].set_number_value(
        j + 1);
    return def;
  }

  // ---- events and time

  void At(int64_t at_ms, std::function<void()> fn) {
    queue_.emplace(std::make_pair(std::max(at_ms, now_ms_), ++event_seq_), std::move(fn));
  }
  Timestamp Now() const { return Timestamp(milliseconds(kEpochMs + now_ms_)); }
  static int64_t Ms(Timestamp t) { return t.time_since_epoch().count() - kEpochMs; }
  bool faults_on() const { return now_ms_ < faults_end_ms_; }
  bool Fault(double p) { return faults_on() && rng_.Chance(p); }

  int64_t Latency() {
    if (Fault(faults_.slow)) return rng_.Range(latency_max_ms_, 2000);
    return rng_.Range(1, latency_max_ms_);
  }

  // ---- reporting

  void Trace(const std::string& line) {
    if (trace_on_) result_.trace.push_back("t=" + Str(now_ms_) + "ms  " + line);
  }

  void Violation(const std::string& what) {
    if (stop_) return;
    stop_ = true;
    result_.violations.push_back("t=" + Str(now_ms_) + "ms: " + what);
    Trace("VIOLATION: " + what);
  }

  static std::string Describe(const Send& s) {
    return s.phase + "(" + s.branch_id + ", attempt " + Str(s.attempt) +
           (s.one_phase ? ", one-phase)" : ")");
  }

  static std::string Describe(const CallbackReply& r) {
    const char* cls = r.reply_class == ReplyClass::kSuccess      ? "ok"
                      : r.reply_class == ReplyClass::kRefused    ? "refused"
                      : r.reply_class == ReplyClass::kInProgress ? "in progress"
                                                                 : "transient";
    return std::string(cls) + " (" + (r.detail.empty() ? "HTTP " + Str(r.http_status) : r.detail) +
           ")";
  }

  LiveTx* FindLive(int tx) {
    auto it = live_.find(tx);
    return it == live_.end() ? nullptr : it->second.get();
  }

  // ---- the coordinator's driver

  // Hands an engine's effects to the world, as coordinator.cc's Process/Collect.
  void Process(int tx, Effects& fx) {
    LiveTx* live = FindLive(tx);
    for (v1::LogRecord& r : fx.append) live->pending.push_back(std::move(r));
    for (const Send& s : fx.send) {
      if (stop_) break;
      if (CheckSend(tx, *live, s)) Dispatch(tx, *live, s);
    }
    fx.Clear();
    if (stop_) return;
    CheckEngine(tx, *live);
    if (live->engine->finished()) {
      if (!live->pending.empty() || live->appending) {
        Violation(txs_[tx].gtid + ": records emitted after the engine finished");
        return;
      }
      Trace(txs_[tx].gtid + ": finished " + live->engine->state() + "; the engine is dropped");
      CheckViewMatchesLog(tx, *live->engine);
      live_.erase(tx);
      return;
    }
    ScheduleWake(tx, *live);
    if (!live->appending && !live->pending.empty()) StartAppend(tx, *live);
  }

  void ScheduleWake(int tx, LiveTx& live) {
    const auto wake = live.engine->WakeAt();
    if (!wake) return;
    const int64_t at = std::max(Ms(*wake), now_ms_);
    if (live.scheduled_wake && *live.scheduled_wake <= at) return;
    live.scheduled_wake = at;
    const int64_t late = faults_on() ? rng_.Range(0, 5) : 0;  // a timer may fire late
    At(at + late, [this, tx, id = live.id, at] { TimerFires(tx, id, at); });
  }

  void TimerFires(int tx, uint64_t id, int64_t at) {
    LiveTx* live = FindLive(tx);
    if (live == nullptr || live->id != id) return;
    if (live->scheduled_wake && *live->scheduled_wake <= at) live->scheduled_wake.reset();
    Trace(txs_[tx].gtid + ": timer");
    OnTimer(tx, *live);
  }

  void OnTimer(int tx, LiveTx& live) {
    Effects fx;
    live.engine->OnTimer(Now(), fx);
    // The next wake-up must lie in the future, or the driver would call OnTimer again at once.
    if (!live.engine->finished()) {
      if (const auto wake = live.engine->WakeAt();
          wake && Ms(*wake) <= now_ms_ && fx.send.empty() && fx.append.empty()) {
        Violation(txs_[tx].gtid + ": WakeAt() is not in the future right after OnTimer");
        return;
      }
    }
    Process(tx, fx);
  }

  void SpuriousTimer() {
    if (live_.empty() || !up_) return;
    auto it = live_.begin();
    std::advance(it, rng_.Range(0, static_cast<int64_t>(live_.size()) - 1));
    Trace(txs_[it->first].gtid + ": OnTimer called early");
    OnTimer(it->first, *it->second);
  }

  void StartAppend(int tx, LiveTx& live) {
    live.inflight = std::move(live.pending);
    live.pending.clear();
    live.appending = true;
    live.inflight_upto = live.engine->emitted();
    const bool fail = Fault(faults_.fsync_fail);
    const bool written = fail && rng_.Chance(0.5);
    const int64_t latency = rng_.Chance(0.05) ? rng_.Range(20, 200) : rng_.Range(0, 3);
    At(now_ms_ + latency, [this, tx, id = live.id, inc = incarnation_, fail, written] {
      FsyncDone(tx, id, inc, fail, written);
    });
  }

  void FsyncDone(int tx, uint64_t id, uint64_t incarnation, bool fail, bool written) {
    if (incarnation != incarnation_) return;  // the crash decided what reached the disk
    LiveTx* live = FindLive(tx);
    if (live == nullptr || live->id != id) return;
    if ((!fail || written) && !MakeDurable(tx, live->inflight)) return;
    if (fail) {
      ++result_.stats.fsync_failures;
      Trace(txs_[tx].gtid + ": fsync failed (" +
            (written ? "the records reached the disk anyway" : "nothing written") +
            "): the engine is dropped, recovery resumes it from the log");
      live_.erase(tx);
      KickRecovery();
      return;
    }
    Trace(txs_[tx].gtid + ": durable up to " + Str(live->inflight_upto));
    live->inflight.clear();
    live->appending = false;
    Effects fx;
    live->engine->OnDurable(Now(), live->inflight_upto, fx);
    Process(tx, fx);
  }

  // The records reached the disk: the MemoryLog checks them against the log's rules.
  bool MakeDurable(int tx, const std::vector<v1::LogRecord>& records) {
    const std::string& gtid = txs_[tx].gtid;
    const Status s = log_->Append(records);
    if (!s.ok()) {
      Violation(gtid + ": the log refused the engine's records: " + s.ToString());
      return false;
    }
    DurableTx& d = durable_[tx];
    for (const v1::LogRecord& r : records) {
      if (r.gtid() != gtid) {
        Violation(gtid + ": the engine emitted a record of " + r.gtid());
        return false;
      }
      if (d.ended) {
        Violation(gtid + ": a record after the end is durable");
        return false;
      }
      switch (r.body_case()) {
        case v1::LogRecord::kBegin:
          d.begun = true;
          d.one_phase = r.begin().one_phase();
          d.deadline_ms = Ms(coordinator::FromProto(r.begin().deadline()));
          break;
        case v1::LogRecord::kDecision: {
          const v1::Outcome o = r.decision().outcome();
          if (d.decision != v1::OUTCOME_UNSPECIFIED && d.decision != o) {
            Violation(gtid + ": the durable decision changed from " + v1::Outcome_Name(d.decision) +
                      " to " + v1::Outcome_Name(o));
            return false;
          }
          if (o == v1::OUTCOME_COMMIT && spec_.commit_within_deadline && !d.one_phase &&
              Ms(coordinator::FromProto(r.at())) > d.deadline_ms) {
            Violation(gtid + ": commit decided past the deadline");
            return false;
          }
          d.decision = o;
          Trace(gtid + ": decision " + v1::Outcome_Name(o) + " is durable");
          break;
        }
        case v1::LogRecord::kBranchRegistered:
          d.registered.insert(r.branch_registered().branch().branch_id());
          break;
        case v1::LogRecord::kStepOutcome:
          d.step_state[r.step_outcome().step_id()] = r.step_outcome().state();
          break;
        case v1::LogRecord::kEnd: {
          d.ended = true;
          d.final_state = r.end().final_state();
          const v1::Outcome want =
              d.final_state == "committed" ? v1::OUTCOME_COMMIT : v1::OUTCOME_ABORT;
          if (d.decision != want) {
            Violation(gtid + ": ended " + d.final_state + " with decision " +
                      v1::Outcome_Name(d.decision));
            return false;
          }
          break;
        }
        case v1::LogRecord::kPreCommit:
          if (d.decision != v1::OUTCOME_UNSPECIFIED) {
            Violation(gtid + ": a pre_commit record after the decision is durable");
            return false;
          }
          d.pre_committed = true;
          Trace(gtid + ": pre_commit is durable");
          break;
        case v1::LogRecord::kResolved:
          Violation(gtid + ": a resolved record, though no operator resolves in the simulation");
          return false;
        case v1::LogRecord::kBranchOutcome:
        case v1::LogRecord::BODY_NOT_SET:
          break;
      }
    }
    return true;
  }

  void KickRecovery() {
    if (recovery_scheduled_) return;
    recovery_scheduled_ = true;
    At(now_ms_ + rng_.Range(10, 200), [this, inc = incarnation_] {
      recovery_scheduled_ = false;
      if (inc == incarnation_) RecoveryPass();
    });
  }

  // Resumes every unfinished transaction that no engine drives, as Coordinator::RecoverNow.
  void RecoveryPass() {
    if (!up_) return;
    std::string after;
    for (;;) {
      auto batch = log_->ScanUnfinished(after, 100);
      if (!batch.ok()) {
        Violation("recovery scan failed: " + batch.status().ToString());
        return;
      }
      if (batch->empty()) return;
      after = batch->back().summary.gtid;
      for (const LoggedTransaction& logged : *batch) {
        Resume(logged);
        if (stop_) return;
      }
    }
  }

  void Resume(const LoggedTransaction& logged) {
    auto it = gtid_index_.find(logged.summary.gtid);
    if (it == gtid_index_.end()) {
      Violation("the log holds a transaction nobody began: " + logged.summary.gtid);
      return;
    }
    const int tx = it->second;
    if (live_.count(tx) != 0) return;
    Effects fx;
    auto engine = coordinator::RecoverEngine(Now(), logged, options_, rng_.Next(), fx);
    if (!engine.ok()) {
      Violation(logged.summary.gtid +
                ": cannot resume from its own log: " + engine.status().ToString());
      return;
    }
    if ((*engine)->finished()) return;
    auto live = std::make_unique<LiveTx>();
    live->id = ++next_live_;
    live->engine = std::move(engine).value();
    Trace(logged.summary.gtid + ": resumed from the log in state " + live->engine->state());
    ++result_.stats.recoveries;
    live_[tx] = std::move(live);
    Process(tx, fx);
  }

  void CrashCoordinator() {
    if (!up_) return;
    ++result_.stats.coordinator_crashes;
    Trace("COORDINATOR CRASH: engines and records not yet durable are lost");
    // An fsync in flight may have reached the disk or not; the process never learns which.
    for (auto& [tx, live] : live_) {
      if (live->appending && rng_.Chance(0.5)) {
        Trace(txs_[tx].gtid + ": the append in flight reached the disk");
        if (!MakeDurable(tx, live->inflight)) return;
      }
    }
    live_.clear();
    up_ = false;
    ++incarnation_;
    recovery_scheduled_ = false;
    At(now_ms_ + rng_.Range(10, 1000), [this] { RestartCoordinator(); });
  }

  void RestartCoordinator() {
    up_ = true;
    log_ = coordinator::OpenMemoryLog(store_);  // a new process opens the same disk
    Trace("coordinator restarts: recovery pass");
    RecoveryPass();
  }

  // ---- the checks

  // The durability rule of engine.h on every callback, before it leaves.
  bool CheckSend(int tx, const LiveTx& live, const Send& s) {
    const TxPlan& plan = txs_[tx];
    const DurableTx& d = durable_[tx];
    const std::string what = plan.gtid + ": " + Describe(s) + " ";
    Role role;
    if (!RoleOfPhase(s.phase, &role) || role == Role::kTry) {
      Violation(what + "has a phase no participant knows");
      return false;
    }
    const int j = BranchIndex(plan, s.branch_id);
    if (j < 0) {
      Violation(what + "names a branch the transaction does not have");
      return false;
    }
    if (s.attempt < 1) {
      Violation(what + "has an attempt number below 1");
      return false;
    }
    const BranchPlan& b = plan.branches[j];
    if (spec_.flow == Flow::kSaga) {
      const std::string& want = role == Role::kAction ? b.url : b.compensate;
      if (s.url != want) {
        Violation(what + "goes to " + s.url + " instead of " + want);
        return false;
      }
    } else {
      const v1::Branch* def = live.engine->FindBranch(s.branch_id);
      if (!s.url.empty() || def == nullptr || def->url() != b.url) {
        Violation(what + "does not go to the branch's url");
        return false;
      }
    }
    if (!d.begun) {
      Violation(what + "sent before the begin record is durable");
      return false;
    }
    const auto step_state = [&]() -> std::string {
      auto it = d.step_state.find(s.branch_id);
      return it == d.step_state.end() ? "pending" : it->second;
    };
    std::string wrong;
    switch (role) {
      case Role::kVote:
        if (spec_.flow != Flow::kCoordinatorDriven) wrong = "is not a phase of " + spec_.name;
        if (d.decision != v1::OUTCOME_UNSPECIFIED) wrong = "sent after the decision is durable";
        break;
      case Role::kPreCommit:
        // Skeen's rule needs the log to say "commit on recovery" before any branch may be
        // pre-committed.
        if (!d.pre_committed) wrong = "sent before the pre_commit record is durable";
        if (d.decision == v1::OUTCOME_ABORT) wrong = "sent after the abort decision is durable";
        break;
      case Role::kCommit:
        if (s.one_phase) {
          if (!spec_.one_phase || !d.one_phase || plan.branches.size() != 1) {
            wrong = "is one-phase in a transaction that is not";
          } else if (d.decision == v1::OUTCOME_ABORT) {
            wrong = "sent after the abort decision is durable";
          }
        } else if (d.decision != v1::OUTCOME_COMMIT) {
          wrong = "sent before the commit decision is durable";
        }
        break;
      case Role::kAbort:
        if (d.decision != v1::OUTCOME_ABORT) wrong = "sent before the abort decision is durable";
        break;
      case Role::kAction:
        if (d.decision != v1::OUTCOME_UNSPECIFIED) {
          wrong = "sent after the saga's decision is durable";
        } else if (step_state() != "running") {
          wrong = "sent while the step's durable state is " + step_state() + ", not running";
        }
        break;
      case Role::kCompensate:
        if (d.decision != v1::OUTCOME_ABORT) {
          wrong = "sent before the abort decision is durable";
        } else if (step_state() != "compensating") {
          wrong = "sent while the step's durable state is " + step_state() + ", not compensating";
        }
        break;
      case Role::kTry:
        break;
    }
    if (!wrong.empty()) {
      Violation(what + wrong);
      return false;
    }
    return true;
  }

  static int BranchIndex(const TxPlan& plan, const std::string& id) {
    for (size_t j = 0; j < plan.branches.size(); ++j) {
      if (plan.branches[j].id == id) return static_cast<int>(j);
    }
    return -1;
  }

  // What an engine says must agree with what is durable.
  void CheckEngine(int tx, const LiveTx& live) {
    const Engine& e = *live.engine;
    const std::string& gtid = txs_[tx].gtid;
    if (e.durable() > e.emitted()) {
      Violation(gtid + ": the engine counts more records durable than it emitted");
      return;
    }
    const DurableTx& d = durable_[tx];
    if (e.decided() && d.decision == v1::OUTCOME_UNSPECIFIED) {
      Violation(gtid + ": the engine says decided, but no decision is durable");
      return;
    }
    const std::string& st = e.state();
    const bool says_commit = st == "committing" || st == "committed";
    const bool says_abort = st == "aborting" || st == "aborted" || st == "compensating";
    if ((d.decision == v1::OUTCOME_COMMIT && says_abort) ||
        (d.decision == v1::OUTCOME_ABORT && says_commit)) {
      Violation(gtid + ": the engine is " + st + " though the durable decision is " +
                v1::Outcome_Name(d.decision));
    }
  }

  // A finished engine's public record (GET while it was live) says what the record folded from
  // the log says (GET after it was dropped): the transaction's state and every branch's or
  // step's.
  void CheckViewMatchesLog(int tx, const Engine& engine) {
    const std::string& gtid = txs_[tx].gtid;
    auto logged = log_->Read(gtid);
    if (!logged.ok()) {
      Violation(gtid + ": finished, but not readable from the log: " + logged.status().ToString());
      return;
    }
    const v1::Transaction view = engine.View();
    const v1::Transaction folded = coordinator::FoldRecord(*logged);
    std::string diff;
    if (view.state() != folded.state()) diff += " state " + view.state() + "/" + folded.state();
    if (view.branches_size() != folded.branches_size() ||
        view.steps_size() != folded.steps_size()) {
      diff += " a different number of branches or steps";
    } else {
      for (int i = 0; i < view.branches_size(); ++i) {
        const v1::Branch& a = view.branches(i);
        const v1::Branch& b = folded.branches(i);
        if (a.branch_id() != b.branch_id() || a.state() != b.state()) {
          diff +=
              " branch " + a.branch_id() + " " + a.state() + "/" + b.branch_id() + " " + b.state();
        }
      }
      for (int i = 0; i < view.steps_size(); ++i) {
        const v1::Step& a = view.steps(i);
        const v1::Step& b = folded.steps(i);
        if (a.step_id() != b.step_id() || a.state() != b.state()) {
          diff += " step " + a.step_id() + " " + a.state() + "/" + b.step_id() + " " + b.state();
        }
      }
    }
    if (!diff.empty()) {
      Violation(gtid +
                ": the engine's view and the record folded from the log differ (view/log):" + diff);
    }
  }

  // After every event: the bookkeeping that the incremental checks rely on is consistent.
  void CheckStep() {
    for (const auto& [tx, live] : live_) {
      if (live->engine->gtid() != txs_[tx].gtid) {
        Violation("an engine for " + live->engine->gtid() + " drives " + txs_[tx].gtid);
        return;
      }
    }
    if (!up_ && !live_.empty()) Violation("engines alive in a crashed coordinator");
  }

  // A participant changed a branch's durable state: all-or-nothing, and the saga's order.
  void Transition(int tx, int j, BranchState next) {
    TxPlan& plan = txs_[tx];
    BranchPlan& b = plan.branches[j];
    if (b.state == next) return;
    Trace(plan.gtid + "/" + b.id + " at participant " + Str(b.participant) + ": " +
          StateName(b.state) + " -> " + StateName(next) + (b.by_timeout ? " (own timeout)" : ""));
    b.state = next;
    if (spec_.flow == Flow::kSaga) {
      if (next == BranchState::kApplied) {
        for (int d : b.deps) {
          if (plan.branches[d].state != BranchState::kApplied) {
            Violation(plan.gtid + ": step " + b.id + "'s action ran while its dependency " +
                      plan.branches[d].id + " is " + StateName(plan.branches[d].state));
            return;
          }
        }
      }
      if (next == BranchState::kCompensated || next == BranchState::kNullCompensated) {
        for (int d : b.dependents) {
          const BranchState ds = plan.branches[d].state;
          if (ds != BranchState::kCompensated && ds != BranchState::kNullCompensated) {
            Violation(plan.gtid + ": step " + b.id + " compensated before its dependent " +
                      plan.branches[d].id + " (" + StateName(ds) + ")");
            return;
          }
        }
      }
      return;
    }
    if (next == BranchState::kPrepared || next == BranchState::kPreCommitted) {
      ArmParticipantTimeout(tx, j);
    }
    bool committed = false, aborted = false;
    for (const BranchPlan& o : plan.branches) {
      committed = committed || o.state == BranchState::kCommitted;
      aborted = aborted || o.state == BranchState::kAborted ||
                (o.state == BranchState::kRefused && !durable_[tx].one_phase);
    }
    if (committed && aborted) Inconsistent(tx, "a branch committed while another aborted");
  }

  // Branches of one transaction disagree: a violation, or the documented 3pc partition case
  // when a participant decided on its own timeout.
  void Inconsistent(int tx, const std::string& what) {
    TxPlan& plan = txs_[tx];
    const bool own_timeout = std::any_of(plan.branches.begin(), plan.branches.end(),
                                         [](const BranchPlan& b) { return b.by_timeout; });
    if (spec_.participant_timeouts && own_timeout) {
      if (!plan.partition_case) Trace(plan.gtid + ": partition case: " + what);
      plan.partition_case = true;
      return;
    }
    std::string states;
    for (const BranchPlan& b : plan.branches) states += " " + b.id + "=" + StateName(b.state);
    Violation(plan.gtid + ": all-or-nothing broken: " + what + ":" + states);
  }

  void CheckFinal() {
    for (const auto& [tx, live] : live_) {
      Violation(txs_[tx].gtid + " is not terminal after the quiet phase: " + live->engine->state() +
                ", " + Str(live->engine->durable()) + " of " + Str(live->engine->emitted()) +
                " records durable");
      return;
    }
    if (!up_) {
      Violation("the coordinator is still down after the quiet phase");
      return;
    }
    for (const TxPlan& tx : txs_) {
      CheckFinal(tx);
      if (stop_) return;
    }
  }

  void CheckFinal(const TxPlan& tx) {
    const DurableTx& d = durable_[tx.index];
    if (!tx.begun) {
      Violation(tx.gtid + ": the client's begin was never acknowledged");
      return;
    }
    auto logged = log_->Read(tx.gtid);
    if (!logged.ok()) {
      Violation(tx.gtid + ": not in the log: " + logged.status().ToString());
      return;
    }
    if (!logged->summary.finished() || !d.ended) {
      Violation(tx.gtid + " is not finished in the log: " + logged->summary.state);
      return;
    }
    const bool commit = d.final_state == "committed";
    (commit ? result_.stats.committed : result_.stats.aborted)++;
    if (tx.acked_commit && *tx.acked_commit != commit) {
      Violation(tx.gtid + ": the application was told " +
                (*tx.acked_commit ? "committed" : "aborted") + ", the outcome is " + d.final_state);
      return;
    }
    // The public record folded from the log says the same.
    const v1::Transaction folded = coordinator::FoldRecord(*logged);
    if (folded.state() != d.final_state) {
      Violation(tx.gtid + ": the folded record says " + folded.state() + ", the end " +
                d.final_state);
      return;
    }
    if (spec_.flow == Flow::kSaga) {
      const std::string want = commit ? "succeeded" : "compensated";
      for (const v1::Step& st : folded.steps()) {
        if (st.state() != want) {
          Violation(tx.gtid + ": step " + st.step_id() + " is " + st.state() +
                    " in the record of a " + d.final_state + " saga");
          return;
        }
      }
      for (const BranchPlan& b : tx.branches) {
        if (commit && b.state != BranchState::kApplied) {
          Violation(tx.gtid + ": committed saga, but step " + b.id + " is " + StateName(b.state) +
                    " at its participant");
          return;
        }
        if (!commit && b.state == BranchState::kApplied) {
          Violation(tx.gtid + ": aborted saga, but the effect of step " + b.id +
                    " is kept (applied, never compensated)");
          return;
        }
        if (!commit && b.state != BranchState::kCompensated &&
            b.state != BranchState::kNullCompensated) {
          Violation(tx.gtid + ": aborted saga, but step " + b.id + " was never compensated (" +
                    StateName(b.state) + "): no barrier stops a late action");
          return;
        }
      }
      return;
    }
    for (const v1::Branch& br : folded.branches()) {
      if (br.state() != d.final_state) {
        Violation(tx.gtid + ": branch " + br.branch_id() + " is " + br.state() +
                  " in the record of a " + d.final_state + " transaction");
        return;
      }
    }
    if (tx.partition_case) return;  // counted, reported in SimResult::partition_cases
    for (const BranchPlan& b : tx.branches) {
      const bool known = spec_.flow != Flow::kApplicationDriven || d.registered.count(b.id) != 0;
      const BranchState want = !known   ? BranchState::kNone
                               : commit ? BranchState::kCommitted
                                        : BranchState::kAborted;
      if (b.state != want) {
        Violation(tx.gtid + " is " + d.final_state + ", but branch " + b.id + " is " +
                  StateName(b.state) + " at its participant");
        return;
      }
    }
  }

  // ---- the network

  void Dispatch(int tx, const LiveTx& live, const Send& s) {
    Call c;
    c.id = ++next_call_;
    c.incarnation = incarnation_;
    c.live = live.id;
    c.tx = tx;
    c.branch = BranchIndex(txs_[tx], s.branch_id);
    RoleOfPhase(s.phase, &c.role);
    c.one_phase = s.one_phase;
    c.send = s;
    c.send.payload = nullptr;  // owned by the engine, valid only until its next call
    const milliseconds budget = s.timeout.count() > 0 ? s.timeout : options_.retry.callback;
    c.budget_ms = budget.count();
    c.deadline_ms = now_ms_ + c.budget_ms;
    ++result_.stats.callbacks;
    Trace(txs_[tx].gtid + ": send " + Describe(s) + " to participant " +
          Str(txs_[tx].branches[c.branch].participant));
    const uint64_t id = c.id;
    const int64_t deadline = c.deadline_ms;
    calls_.emplace(id, std::move(c));
    SendRequest(calls_.at(id));
    At(deadline, [this, id] { CallTimeout(id); });
  }

  bool Cut(int p) { return participants_[p].partitioned; }

  void SendRequest(const Call& c) {
    const int p = txs_[c.tx].branches[c.branch].participant;
    const int copies = Fault(faults_.duplicate) ? 2 : 1;
    if (copies == 2) ++result_.stats.duplicated;
    for (int i = 0; i < copies; ++i) {
      if (Fault(faults_.drop) || Cut(p)) {
        ++result_.stats.dropped;
        continue;
      }
      At(now_ms_ + Latency(), [this, id = c.id] { Arrive(id); });
    }
  }

  void SendReply(const Call& c, CallbackReply reply) {
    const int p = txs_[c.tx].branches[c.branch].participant;
    const bool again = Fault(faults_.duplicate);
    if (Fault(faults_.drop) || Cut(p)) {
      ++result_.stats.dropped;
      return;
    }
    At(now_ms_ + Latency(), [this, id = c.id, reply] { ReplyArrives(id, reply, false); });
    if (again) {
      ++result_.stats.duplicated;
      At(now_ms_ + Latency(), [this, id = c.id, reply] { ReplyArrives(id, reply, true); });
    }
  }

  static CallbackReply Http(int status, std::string detail) {
    return CallbackReply{coordinator::ClassifyHttpStatus(status), status, std::move(detail)};
  }

  // A request reaches its participant.
  void Arrive(uint64_t id) {
    const Call& c = calls_.at(id);
    BranchPlan& b = txs_[c.tx].branches[c.branch];
    ParticipantSim& p = participants_[b.participant];
    if (!p.up) {
      SendReply(c, CallbackReply{ReplyClass::kTransient, 0, "connection refused"});
      return;
    }
    if (Fault(faults_.transient)) {
      SendReply(c, Http(500, "HTTP 500: injected failure"));
      return;
    }
    if (Fault(faults_.in_progress)) {
      SendReply(c, Http(425, "HTTP 425: injected: still working"));
      return;
    }
    const bool phase_two = c.role == Role::kCommit || c.role == Role::kAbort ||
                           c.role == Role::kCompensate || c.role == Role::kPreCommit;
    if (phase_two && !c.one_phase && Fault(faults_.bug_409)) {
      SendReply(c, Http(409, "HTTP 409: injected participant bug"));
      return;
    }
    const auto key = std::make_pair(c.tx, c.branch);
    if (p.busy.count(key) != 0) {
      SendReply(c, Http(425, "HTTP 425: the previous request for this branch is still running"));
      return;
    }
    p.busy.insert(key);
    const int64_t work = Fault(faults_.slow_work) ? rng_.Range(50, 1000) : rng_.Range(0, 10);
    At(now_ms_ + work, [this, id, inc = p.incarnation] { WorkDone(id, inc); });
  }

  // The participant finishes a request: its durable state changes, and it answers.
  void WorkDone(uint64_t id, uint64_t participant_incarnation) {
    const Call& c = calls_.at(id);
    TxPlan& plan = txs_[c.tx];
    BranchPlan& b = plan.branches[c.branch];
    ParticipantSim& p = participants_[b.participant];
    if (p.incarnation != participant_incarnation) return;  // it crashed: the work is lost
    p.busy.erase(std::make_pair(c.tx, c.branch));
    const PhaseResult r = ApplyPhase(c.role, c.one_phase, b.refuses, b.state);
    int status = r.http_status;
    if (!r.anomaly.empty()) {
      const std::string what = plan.gtid + "/" + b.id + ": " + r.anomaly;
      if (!(spec_.participant_timeouts && b.by_timeout)) {
        Violation(what);
        return;
      }
      // The participant decided on its own and the coordinator decided otherwise: the 3pc
      // partition case. It acknowledges, so that the run can end; the case is counted.
      Inconsistent(c.tx, what);
      status = 200;
    } else {
      Transition(c.tx, c.branch, r.next);
      if (stop_) return;
    }
    b.timer_version++;  // it heard from the coordinator: its own timeout starts again
    if (b.state == BranchState::kPrepared || b.state == BranchState::kPreCommitted) {
      ArmParticipantTimeout(c.tx, c.branch);
    }
    SendReply(c, Http(status, "HTTP " + Str(status)));
  }

  void ReplyArrives(uint64_t id, const CallbackReply& reply, bool duplicate) {
    Call& c = calls_.at(id);
    if (c.from_app) {
      if (!c.open) return;
      c.open = false;
      OnTryReply(c.tx, c.branch, reply);
      return;
    }
    if (c.incarnation != incarnation_) return;  // the process that sent it is gone
    if (c.open) {  // the first copy to arrive is the transport's one answer
      c.open = false;
      Deliver(c, reply, false);
    } else if (duplicate) {  // the same reply again: engines must ignore it
      Deliver(c, reply, true);
    }  // else late: the transport already answered "no reply"
  }

  void CallTimeout(uint64_t id) {
    Call& c = calls_.at(id);
    if (!c.open) return;
    c.open = false;
    ++result_.stats.timeouts;
    const CallbackReply timeout{ReplyClass::kTransient, 0,
                                "no reply within " + Str(c.budget_ms) + " ms"};
    if (c.from_app) {
      OnTryReply(c.tx, c.branch, timeout);
      return;
    }
    if (c.incarnation != incarnation_) return;
    Deliver(c, timeout, false);
  }

  void Deliver(const Call& c, const CallbackReply& reply, bool duplicate) {
    LiveTx* live = FindLive(c.tx);
    if (live == nullptr || live->id != c.live) return;  // dropped (parked) since it was sent
    Trace(txs_[c.tx].gtid + ": reply to " + Describe(c.send) + ": " + Describe(reply) +
          (duplicate ? " (again)" : ""));
    Effects fx;
    live->engine->OnReply(Now(), c.send, reply, fx);
    Process(c.tx, fx);
  }

  // ---- participants

  void CrashParticipant(int p) {
    ParticipantSim& ps = participants_[p];
    if (!ps.up) return;
    ++result_.stats.participant_crashes;
    Trace("PARTICIPANT " + Str(p) + " CRASH: work in flight is lost, durable state kept");
    ps.up = false;
    ps.incarnation++;
    ps.busy.clear();
    At(now_ms_ + rng_.Range(20, 1500), [this, p] { RestartParticipant(p); });
  }

  void RestartParticipant(int p) {
    participants_[p].up = true;
    Trace("participant " + Str(p) + " restarts");
    for (TxPlan& tx : txs_) {
      for (size_t j = 0; j < tx.branches.size(); ++j) {
        const BranchPlan& b = tx.branches[j];
        if (b.participant == p &&
            (b.state == BranchState::kPrepared || b.state == BranchState::kPreCommitted)) {
          ArmParticipantTimeout(tx.index, static_cast<int>(j));
        }
      }
    }
  }

  void Partition(int p, int64_t until) {
    ++result_.stats.partitions;
    participants_[p].partitioned = true;
    Trace("participant " + Str(p) + " is cut off from the coordinator until t=" + Str(until));
    At(until, [this, p] {
      participants_[p].partitioned = false;
      Trace("participant " + Str(p) + " is reachable again");
    });
  }

  // 3pc (contract 4): a participant waiting in prepared/pre-committed asks the coordinator
  // when its timeout passes, and decides by itself when it cannot reach it.
  void ArmParticipantTimeout(int tx, int j) {
    if (!spec_.participant_timeouts) return;
    BranchPlan& b = txs_[tx].branches[j];
    const uint64_t version = ++b.timer_version;
    const uint64_t inc = participants_[b.participant].incarnation;
    At(now_ms_ + participant_timeout_ms_,
       [this, tx, j, version, inc] { ParticipantTimeout(tx, j, version, inc); });
  }

  void ParticipantTimeout(int tx, int j, uint64_t version, uint64_t incarnation) {
    BranchPlan& b = txs_[tx].branches[j];
    const ParticipantSim& p = participants_[b.participant];
    if (b.timer_version != version || p.incarnation != incarnation || !p.up) return;
    if (b.state != BranchState::kPrepared && b.state != BranchState::kPreCommitted) return;
    const DurableTx& d = durable_[tx];
    if (up_ && !p.partitioned) {  // GET /v1/transactions/{gtid} answers
      if (d.decision == v1::OUTCOME_UNSPECIFIED && d.begun) {
        ArmParticipantTimeout(tx, j);  // undecided: wait for the coordinator
        return;
      }
      Trace(txs_[tx].gtid + "/" + b.id + ": timeout; the coordinator says " +
            (d.begun ? v1::Outcome_Name(d.decision) : std::string("404 (presumed abort)")));
      Transition(
          tx, j,
          d.decision == v1::OUTCOME_COMMIT ? BranchState::kCommitted : BranchState::kAborted);
      return;
    }
    b.by_timeout = true;
    Transition(tx, j, TimeoutDecision(b.state));
  }

  // ---- the application

  void ClientBegin(int tx) {
    TxPlan& plan = txs_[tx];
    if (plan.begun) return;
    if (durable_[tx].begun) {
      plan.begun = true;
      Trace(plan.gtid + ": the client's begin is acknowledged");
      OnBegun(tx);
      return;
    }
    if (up_ && live_.count(tx) == 0) {
      Trace(plan.gtid + ": the client begins it");
      Effects fx;
      std::unique_ptr<Engine> engine =
          coordinator::BeginEngine(Now(), plan.args, options_, rng_.Next(), fx);
      if (engine == nullptr) {
        Violation(plan.gtid + ": BeginEngine refused a valid request");
        return;
      }
      auto live = std::make_unique<LiveTx>();
      live->id = ++next_live_;
      live->engine = std::move(engine);
      live_[tx] = std::move(live);
      Process(tx, fx);
    }
    // The client waits for its reply, and retries with the same gtid when none comes.
    At(now_ms_ + rng_.Range(20, 200), [this, tx] { ClientBegin(tx); });
  }

  void OnBegun(int tx) {
    TxPlan& plan = txs_[tx];
    if (spec_.flow == Flow::kApplicationDriven) {
      AppNext(tx);
    } else if (plan.abort_at_ms) {
      At(*plan.abort_at_ms, [this, tx] { Issue(tx, Command::kAbort); });
    }
  }

  // The tcc application's next move: register the next branch, or commit.
  void AppNext(int tx) {
    TxPlan& plan = txs_[tx];
    if (plan.app_done || Abandons(plan, plan.current * 2)) return;
    if (plan.current < static_cast<int>(plan.branches.size())) {
      Issue(tx, Command::kRegister);
    } else {
      Issue(tx, Command::kCommit);
    }
  }

  // Sends a command to the coordinator; retried until acknowledged (its record durable) or
  // refused.
  void Issue(int tx, Command command) {
    TxPlan& plan = txs_[tx];
    if (plan.app_done || durable_[tx].ended) {
      plan.app_done = true;
      return;
    }
    LiveTx* live = up_ ? FindLive(tx) : nullptr;
    if (live == nullptr) {  // down, or the transaction is being recovered: 503, retry
      At(now_ms_ + rng_.Range(20, 200), [this, tx, command] { Issue(tx, command); });
      return;
    }
    Effects fx;
    Result<uint64_t> seq = Status::Internal("no command");
    switch (command) {
      case Command::kRegister:
        seq = live->engine->RegisterBranch(
            Now(), BranchDef(plan.branches[plan.current], plan.current), fx);
        break;
      case Command::kCommit:
        seq = live->engine->Commit(Now(), fx);
        break;
      case Command::kAbort:
        seq = live->engine->Abort(Now(), "aborted by the simulated client", fx);
        break;
      case Command::kNone:
        break;
    }
    const uint64_t live_id = live->id;
    Trace(plan.gtid + ": the application calls " + CommandName(command) +
          (command == Command::kRegister ? " " + plan.branches[plan.current].id : "") + ": " +
          (seq.ok() ? "ok, record " + Str(*seq) : seq.status().ToString()));
    Process(tx, fx);
    if (stop_) return;
    if (!seq.ok()) {
      // Refused: the transaction is no longer active (the deadline passed, it is decided).
      plan.app_done = true;
      return;
    }
    plan.command = command;
    plan.command_live = live_id;
    plan.command_seq = *seq;
    Poll(tx);
  }

  static const char* CommandName(Command c) {
    switch (c) {
      case Command::kRegister:
        return "register";
      case Command::kCommit:
        return "commit";
      case Command::kAbort:
        return "abort";
      case Command::kNone:
        break;
    }
    return "nothing";
  }

  // Waits for the command's record: the reply comes once it is durable; if the engine that took
  // the command is gone, the reply is lost and the application asks again.
  void Poll(int tx) {
    TxPlan& plan = txs_[tx];
    const DurableTx& d = durable_[tx];
    LiveTx* live = FindLive(tx);
    bool acked = false;
    if (live != nullptr && live->id == plan.command_live) {
      acked = live->engine->durable() >= plan.command_seq || live->engine->finished();
    } else {
      switch (plan.command) {  // answered from the log, if it is there
        case Command::kRegister:
          acked = d.registered.count(plan.branches[plan.current].id) != 0;
          break;
        case Command::kCommit:
          acked = d.decision == v1::OUTCOME_COMMIT;
          break;
        case Command::kAbort:
          acked = d.decision == v1::OUTCOME_ABORT;
          break;
        case Command::kNone:
          break;
      }
      if (!acked) {
        const Command again = plan.command;
        plan.command = Command::kNone;
        if (!d.ended) {
          At(now_ms_ + rng_.Range(20, 200), [this, tx, again] { Issue(tx, again); });
        }
        return;
      }
    }
    if (!acked) {
      At(now_ms_ + rng_.Range(1, 50), [this, tx] { Poll(tx); });
      return;
    }
    const Command done = plan.command;
    plan.command = Command::kNone;
    Trace(plan.gtid + ": the application's " + CommandName(done) + " is acknowledged");
    switch (done) {
      case Command::kRegister:
        plan.try_failures = 0;
        CallTry(tx);
        break;
      case Command::kCommit:
        plan.acked_commit = true;
        plan.app_done = true;
        break;
      case Command::kAbort:
        plan.acked_commit = false;
        plan.app_done = true;
        break;
      case Command::kNone:
        break;
    }
  }

  // The application stops for good before its step N (register = 2i, try = 2i + 1).
  bool Abandons(TxPlan& plan, int step) {
    if (plan.abandon_at < 0 || step < plan.abandon_at) return false;
    plan.app_done = true;
    Trace(plan.gtid + ": the application stops (the deadline must abort it)");
    return true;
  }

  // The tcc application calls the Try of its current branch itself.
  void CallTry(int tx) {
    TxPlan& plan = txs_[tx];
    if (plan.app_done || Abandons(plan, plan.current * 2 + 1)) return;
    Call c;
    c.id = ++next_call_;
    c.from_app = true;
    c.tx = tx;
    c.branch = plan.current;
    c.role = Role::kTry;
    c.budget_ms = 300;
    c.deadline_ms = now_ms_ + c.budget_ms;
    Trace(plan.gtid + ": the application calls try(" + plan.branches[plan.current].id + ")");
    const uint64_t id = c.id;
    calls_.emplace(id, std::move(c));
    SendRequest(calls_.at(id));
    At(now_ms_ + 300, [this, id] { CallTimeout(id); });
  }

  void OnTryReply(int tx, int branch, const CallbackReply& reply) {
    TxPlan& plan = txs_[tx];
    if (plan.app_done || branch != plan.current) return;
    Trace(plan.gtid + ": try(" + plan.branches[branch].id + "): " + Describe(reply));
    switch (reply.reply_class) {
      case ReplyClass::kSuccess:
        ++plan.current;
        AppNext(tx);
        return;
      case ReplyClass::kRefused:
        Issue(tx, Command::kAbort);
        return;
      case ReplyClass::kInProgress:
      case ReplyClass::kTransient:
        if (++plan.try_failures >= 4) {
          Issue(tx, Command::kAbort);
        } else {
          At(now_ms_ + rng_.Range(10, 100), [this, tx] { CallTry(tx); });
        }
        return;
    }
  }

  const ProtocolSpec& spec_;
  Rng rng_;
  const bool trace_on_;
  SimResult result_;
  bool stop_ = false;

  EngineOptions options_;
  Faults faults_;
  int64_t latency_max_ms_ = 10;
  int64_t participant_timeout_ms_ = 1000;
  int64_t faults_end_ms_ = 0;

  int64_t now_ms_ = 0;
  uint64_t event_seq_ = 0;
  std::map<std::pair<int64_t, uint64_t>, std::function<void()>> queue_;

  std::vector<TxPlan> txs_;
  std::map<std::string, int> gtid_index_;
  std::vector<ParticipantSim> participants_;
  std::map<uint64_t, Call> calls_;
  uint64_t next_call_ = 0;

  // The store: records reach the MemoryLog only once their fsync completed.
  std::shared_ptr<coordinator::MemoryLogStore> store_;
  std::unique_ptr<coordinator::TransactionLog> log_;
  std::vector<DurableTx> durable_;

  // The coordinator.
  bool up_ = true;
  uint64_t incarnation_ = 0;
  std::map<int, std::unique_ptr<LiveTx>> live_;
  uint64_t next_live_ = 0;
  bool recovery_scheduled_ = false;
};

}  // namespace

SimResult Simulate(const SimConfig& config) {
  const ProtocolSpec* spec = FindProtocol(config.protocol);
  if (spec == nullptr) {
    SimResult r;
    r.seed = config.seed;
    r.protocol = config.protocol;
    r.violations.push_back("the simulation does not run protocol \"" + config.protocol + "\"");
    return r;
  }
  return Simulate(config, *spec);
}

SimResult Simulate(const SimConfig& config, const ProtocolSpec& spec) {
  World world(config, spec);
  return world.Run();
}

}  // namespace txcoord::simulation

namespace txcoord::simulation {
namespace {

void Add(SimStats& total, const SimStats& s) {
  total.events += s.events;
  total.transactions += s.transactions;
  total.committed += s.committed;
  total.aborted += s.aborted;
  total.callbacks += s.callbacks;
  total.dropped += s.dropped;
  total.duplicated += s.duplicated;
  total.timeouts += s.timeouts;
  total.coordinator_crashes += s.coordinator_crashes;
  total.participant_crashes += s.participant_crashes;
  total.partitions += s.partitions;
  total.fsync_failures += s.fsync_failures;
  total.recoveries += s.recoveries;
  total.sim_time_ms += s.sim_time_ms;
}

}  // namespace

SweepResult Sweep(const std::string& protocol, uint64_t first, uint64_t count, bool stop_at_first) {
  SweepResult sweep;
  sweep.protocol = protocol;
  sweep.first = first;
  sweep.count = count;
  for (uint64_t seed = first; seed < first + count; ++seed) {
    SimResult r = Simulate(SimConfig{.seed = seed, .protocol = protocol});
    ++sweep.runs;
    Add(sweep.totals, r.stats);
    sweep.partition_cases += r.partition_cases;
    if (r.ok()) continue;
    if (sweep.failing_seeds.empty()) {
      sweep.first_failure = Simulate(SimConfig{.seed = seed, .protocol = protocol, .trace = true});
      sweep.reproduced = sweep.first_failure.violations == r.violations;
    }
    sweep.failing_seeds.push_back(seed);
    if (stop_at_first) break;
  }
  return sweep;
}

void SilenceEngineLogs() { spdlog::set_level(spdlog::level::off); }

std::string Report(const SimResult& r) {
  std::string out = "seed " + std::to_string(r.seed) + " (" + r.protocol +
                    ") failed; replay: tests/simulation/run --seed " + std::to_string(r.seed) +
                    " --protocol " + r.protocol + " --trace\n";
  for (const std::string& v : r.violations) out += "  violation: " + v + "\n";
  if (!r.trace.empty()) {
    out += "trace:\n";
    for (const std::string& line : r.trace) out += "  " + line + "\n";
  }
  return out;
}

std::string Summary(const SweepResult& s) {
  const SimStats& t = s.totals;
  return s.protocol + ": " + std::to_string(s.runs) + " seeds from " + std::to_string(s.first) +
         ", " + std::to_string(s.failing_seeds.size()) + " failed; " +
         std::to_string(t.transactions) + " transactions (" + std::to_string(t.committed) +
         " committed, " + std::to_string(t.aborted) + " aborted), " + std::to_string(t.events) +
         " events, " + std::to_string(t.callbacks) + " callbacks (" + std::to_string(t.dropped) +
         " dropped, " + std::to_string(t.duplicated) + " duplicated, " +
         std::to_string(t.timeouts) + " timed out), " + std::to_string(t.coordinator_crashes) +
         " coordinator crashes, " + std::to_string(t.participant_crashes) +
         " participant crashes, " + std::to_string(t.partitions) + " partitions, " +
         std::to_string(t.fsync_failures) + " failed fsyncs, " + std::to_string(t.recoveries) +
         " recoveries; partition cases (3pc, counted, not failures): " +
         std::to_string(s.partition_cases);
}

}  // namespace txcoord::simulation
