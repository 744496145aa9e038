// Unit tests of the saga engine (saga/include/txcoord/saga/engine.h), with a fake clock and a
// fixed seed: no threads, no sleeps. A Harness plays the coordinator: it keeps the records the
// engine emits, reports them durable when a test says so, answers callbacks, fires timers and
// "crashes" by recovering a new engine from the durable records. On every callback the engine
// sends it checks the durability rule (everything emitted before it is durable), and the order
// rule (an action only after all its dependencies succeeded, a compensate only after all its
// dependents were compensated and the abort decision is durable).
#include "txcoord/saga/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace txcoord::saga {
namespace {

using std::chrono::milliseconds;

constexpr int64_t kEpochMs = 1'795'219'200'000;  // 2026-11-21T00:00:00Z
const Timestamp kT0{milliseconds(kEpochMs)};

struct Reply {
  StepReply kind;
  std::string detail;
};
Reply Ok() { return {StepReply::kDone, ""}; }
Reply Refused() { return {StepReply::kRefused, "HTTP 409: credit limit exceeded"}; }
Reply TooEarly() { return {StepReply::kInProgress, "HTTP 425: still working"}; }
Reply ServerError() { return {StepReply::kTransient, "HTTP 500: boom"}; }

struct StepSpec {
  std::string id;
  std::vector<std::string> deps;
};

SagaBegin MakeSaga(const std::vector<StepSpec>& specs, int timeout_ms = 10'000) {
  SagaBegin b;
  b.request.set_gtid("saga-1");
  b.request.set_protocol("saga");
  b.request.set_timeout_ms(timeout_ms);
  for (const StepSpec& spec : specs) {
    v1::Step* s = b.request.add_steps();
    s->set_step_id(spec.id);
    s->set_action("http://127.0.0.1:7001/" + spec.id + "/do");
    s->set_compensate("http://127.0.0.1:7001/" + spec.id + "/undo");
    (*s->mutable_payload()->mutable_struct_value()->mutable_fields())["n"].set_number_value(1);
    for (const std::string& d : spec.deps) s->add_depends_on(d);
  }
  b.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  b.request_digest = "digest";
  b.timeout_ms = timeout_ms;
  return b;
}

const std::vector<StepSpec> kSequential = {{"a", {}}, {"b", {"a"}}, {"c", {"b"}}};
const std::vector<StepSpec> kDiamond = {{"a", {}}, {"b", {"a"}}, {"c", {"a"}}, {"d", {"b", "c"}}};

SagaOptions Opts(int max_parallel = 16) {
  SagaOptions o;
  o.retry_initial = milliseconds(100);
  o.retry_max = milliseconds(2'000);
  o.max_parallel_steps = max_parallel;
  return o;
}

std::string Key(const Send& s) { return s.phase + ":" + s.step_id; }

std::vector<std::string> Keys(const std::vector<Send>& sends) {
  std::vector<std::string> keys;
  for (const Send& s : sends) keys.push_back(Key(s));
  std::sort(keys.begin(), keys.end());
  return keys;
}

class Harness {
 public:
  explicit Harness(SagaOptions options = Opts(), uint64_t seed = 42)
      : options_(options), seed_(seed) {}

  void Begin(const SagaBegin& begin) {
    Effects fx;
    auto e = SagaEngine::Begin(now_, begin, options_, seed_, fx);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(*e);
    base_ = records_.size();
    Apply(fx);
  }

  Status RecoverFrom(const std::vector<v1::LogRecord>& records) {
    records_ = records;
    durable_ = records_.size();
    outstanding_.clear();
    Effects fx;
    auto e = SagaEngine::Recover(now_, records_, options_, seed_ + ++crashes_, fx);
    if (!e.ok()) {
      EXPECT_TRUE(fx.append.empty() && fx.send.empty()) << "a refused recovery emitted effects";
      return e.status();
    }
    engine_ = std::move(*e);
    base_ = records_.size();
    Apply(fx);
    return Status::Ok();
  }

  // The records that were not durable are lost, and so are the callbacks in flight.
  void Crash() {
    std::vector<v1::LogRecord> kept(records_.begin(),
                                    records_.begin() + static_cast<std::ptrdiff_t>(durable_));
    const Status s = RecoverFrom(kept);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  void MakeAllDurable() {
    while (durable_ < records_.size()) {
      durable_ = records_.size();
      ++appends_;
      Effects fx;
      engine_->OnDurable(now_, durable_ - base_, fx);
      Apply(fx);
    }
  }

  void Answer(const std::string& key, const Reply& reply) {
    auto it = std::find_if(outstanding_.begin(), outstanding_.end(),
                           [&](const Send& s) { return Key(s) == key; });
    ASSERT_NE(it, outstanding_.end())
        << "no " << key
        << " in flight; in flight: " << ::testing::PrintToString(Keys(outstanding_));
    const Send s = *it;
    outstanding_.erase(it);
    Deliver(s, reply);
  }

  void Deliver(const Send& s, const Reply& reply) {
    Effects fx;
    engine_->OnReply(now_, s, reply.kind, reply.detail, fx);
    Apply(fx);
  }

  // A reply the engine must ignore entirely.
  void DeliverStale(const Send& s, const Reply& reply) {
    const std::string before = engine_->View().DebugString();
    const size_t records = records_.size();
    const size_t sends = calls_.size();
    Deliver(s, reply);
    EXPECT_EQ(records_.size(), records) << "a stale reply to " << Key(s) << " emitted records";
    EXPECT_EQ(calls_.size(), sends) << "a stale reply to " << Key(s) << " sent callbacks";
    EXPECT_EQ(engine_->View().DebugString(), before) << "a stale reply changed the record";
  }

  void AdvanceTo(Timestamp t) {
    now_ = std::max(now_, t);
    Effects fx;
    engine_->OnTimer(now_, fx);
    Apply(fx);
  }
  void Advance(milliseconds d) { AdvanceTo(now_ + d); }
  // Moves the clock without a timer event (a late timer).
  void SetClock(Timestamp t) { now_ = t; }

  Result<uint64_t> Abort() {
    Effects fx;
    Result<uint64_t> seq = engine_->Abort(now_, "", fx);
    Apply(fx);
    return seq;
  }

  Result<uint64_t> Resolve(const std::string& step, const std::string& as) {
    Effects fx;
    Result<uint64_t> seq = engine_->Resolve(now_, step, as, "alice", "done by hand", fx);
    Apply(fx);
    return seq;
  }
  void RetryNow() {
    Effects fx;
    engine_->RetryNow(now_, fx);
    Apply(fx);
  }
  // Forgets the callbacks in flight without answering them (their replies never come).
  std::vector<Send> DropOutstanding() {
    std::vector<Send> dropped;
    dropped.swap(outstanding_);
    return dropped;
  }

  // Runs until the saga is finished: records durable, every callback in flight answered by
  // `respond` (oldest first), timers fired. False if it does not finish within `max_events`.
  bool Drive(const std::function<Reply(const Send&)>& respond, int max_events = 10'000) {
    for (int i = 0; i < max_events; ++i) {
      MakeAllDurable();
      if (engine_->finished()) return true;
      if (!outstanding_.empty()) {
        const Send s = outstanding_.front();
        outstanding_.erase(outstanding_.begin());
        Deliver(s, respond(s));
        continue;
      }
      const auto wake = engine_->WakeAt();
      if (!wake) {
        ADD_FAILURE() << "the engine is stuck: nothing in flight, nothing to wait for";
        return false;
      }
      AdvanceTo(*wake);
    }
    return false;
  }

  SagaEngine& engine() { return *engine_; }
  const std::vector<v1::LogRecord>& records() const { return records_; }
  const std::vector<Send>& outstanding() const { return outstanding_; }
  // Every callback sent, in order, across crashes, as "phase:step".
  const std::vector<std::string>& calls() const { return calls_; }
  const std::vector<Timestamp>& call_times() const { return call_times_; }
  Timestamp now() const { return now_; }
  int appends() const { return appends_; }
  int max_in_flight() const { return max_in_flight_; }
  std::string StepState(const std::string& id) const {
    const v1::Transaction view = engine_->View();
    for (const auto& s : view.steps()) {
      if (s.step_id() == id) return s.state();
    }
    return "?";
  }

 private:
  // The latest durable state of each step, from the durable records.
  std::map<std::string, std::string> DurableStepStates() const {
    std::map<std::string, std::string> states;
    for (size_t i = 0; i < durable_; ++i) {
      const v1::LogRecord& r = records_[i];
      if (r.has_begin()) {
        for (const auto& s : r.begin().steps()) states[s.step_id()] = "pending";
      }
      if (r.has_step_outcome()) states[r.step_outcome().step_id()] = r.step_outcome().state();
      if (r.has_resolved()) states[r.resolved().branch_id()] = r.resolved().state();
    }
    return states;
  }
  bool DurableAbort() const {
    for (size_t i = 0; i < durable_; ++i) {
      if (records_[i].has_decision() && records_[i].decision().outcome() == v1::OUTCOME_ABORT)
        return true;
    }
    return false;
  }

  void Apply(Effects& fx) {
    if (!fx.send.empty()) {
      EXPECT_TRUE(fx.append.empty() && durable_ == records_.size())
          << "callbacks sent while records were not durable: " << records_.size() - durable_
          << " waiting, " << fx.append.size() << " new";
    }
    for (v1::LogRecord& r : fx.append) {
      EXPECT_EQ(r.gtid(), "saga-1");
      records_.push_back(std::move(r));
    }
    const std::map<std::string, std::string> durable_states = DurableStepStates();
    for (const Send& s : fx.send) {
      const v1::Step& def = engine_->step(s.step);
      EXPECT_EQ(def.step_id(), s.step_id);
      auto state = durable_states.find(s.step_id);
      ASSERT_NE(state, durable_states.end());
      if (s.phase == kPhaseAction) {
        EXPECT_EQ(state->second, "running") << "action of " << s.step_id << " not durably running";
        EXPECT_FALSE(DurableAbort()) << "action of " << s.step_id << " after the abort decision";
        for (const std::string& dep : def.depends_on()) {
          EXPECT_EQ(durable_states.at(dep), "succeeded")
              << "action of " << s.step_id << " before " << dep << " succeeded";
        }
      } else {
        ASSERT_EQ(s.phase, kPhaseCompensate);
        EXPECT_TRUE(DurableAbort()) << "compensate of " << s.step_id << " before the decision";
        EXPECT_EQ(state->second, "compensating") << s.step_id;
        for (int i = 0; i < engine_->step_count(); ++i) {
          const v1::Step& other = engine_->step(i);
          const auto& deps = other.depends_on();
          if (std::find(deps.begin(), deps.end(), s.step_id) == deps.end()) continue;
          EXPECT_EQ(durable_states.at(other.step_id()), "compensated")
              << "compensate of " << s.step_id << " before its dependent " << other.step_id();
        }
      }
      for (const Send& o : outstanding_) {
        EXPECT_FALSE(o.step == s.step && o.phase == s.phase && o.attempt == s.attempt)
            << "the same attempt sent twice: " << Key(s);
      }
      outstanding_.push_back(s);
      calls_.push_back(Key(s));
      call_times_.push_back(now_);
    }
    fx.Clear();
    max_in_flight_ = std::max(max_in_flight_, static_cast<int>(outstanding_.size()));
  }

  const SagaOptions options_;
  const uint64_t seed_;
  Timestamp now_ = kT0;
  std::unique_ptr<SagaEngine> engine_;
  std::vector<v1::LogRecord> records_;
  size_t durable_ = 0;
  size_t base_ = 0;
  int crashes_ = 0;
  int appends_ = 0;
  int max_in_flight_ = 0;
  std::vector<Send> outstanding_;
  std::vector<std::string> calls_;
  std::vector<Timestamp> call_times_;
};

const v1::LogRecord* Decision(const std::vector<v1::LogRecord>& records) {
  for (const auto& r : records) {
    if (r.has_decision()) return &r;
  }
  return nullptr;
}

// ---- forward

TEST(SagaForward, SequentialStepsRunInOrderAndCommitInFourAppends) {
  Harness h;
  h.Begin(MakeSaga(kSequential));
  EXPECT_TRUE(h.outstanding().empty()) << "an action before the begin was durable";
  ASSERT_EQ(h.records().size(), 2u) << "begin and running(a) are one append";
  EXPECT_TRUE(h.records()[0].has_begin());
  EXPECT_EQ(h.records()[1].step_outcome().state(), "running");
  for (const char* step : {"a", "b", "c"}) {
    h.MakeAllDurable();
    ASSERT_EQ(Keys(h.outstanding()), std::vector<std::string>{std::string("action:") + step});
    h.Answer(std::string("action:") + step, Ok());
  }
  EXPECT_EQ(h.engine().state(), "running") << "terminal only once the end is durable";
  h.MakeAllDurable();
  EXPECT_TRUE(h.engine().finished());
  EXPECT_EQ(h.engine().state(), "committed");
  EXPECT_EQ(h.calls(), (std::vector<std::string>{"action:a", "action:b", "action:c"}));
  EXPECT_EQ(h.appends(), 4);
  const v1::LogRecord* d = Decision(h.records());
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->decision().outcome(), v1::OUTCOME_COMMIT);
  EXPECT_TRUE(h.records().back().has_end());
  EXPECT_EQ(h.records().back().end().final_state(), "committed");
  const v1::Transaction view = h.engine().View();
  for (const auto& s : view.steps()) {
    EXPECT_EQ(s.state(), "succeeded");
    EXPECT_EQ(s.attempts(), 1);
  }
}

TEST(SagaForward, DiamondRunsItsParallelBranchesTogether) {
  Harness h;
  h.Begin(MakeSaga(kDiamond));
  h.MakeAllDurable();
  h.Answer("action:a", Ok());
  h.MakeAllDurable();
  EXPECT_EQ(Keys(h.outstanding()), (std::vector<std::string>{"action:b", "action:c"}));
  h.Answer("action:c", Ok());
  h.MakeAllDurable();
  EXPECT_EQ(Keys(h.outstanding()), (std::vector<std::string>{"action:b"}))
      << "d must wait for b as well";
  h.Answer("action:b", Ok());
  h.MakeAllDurable();
  EXPECT_EQ(Keys(h.outstanding()), (std::vector<std::string>{"action:d"}));
  h.Answer("action:d", Ok());
  h.MakeAllDurable();
  EXPECT_EQ(h.engine().state(), "committed");
}

// The coordinator's API validated and planned the steps already; the engine takes that plan
// instead of validating again (the proof: steps it would refuse on its own are taken with it).
TEST(SagaForward, APlanFromTheApisChecksIsTakenAsItIs) {
  SagaBegin begin = MakeSaga(kDiamond);
  SagaValidation checked = ValidateSaga(begin.request.steps(), UrlPolicy{{"http://"}});
  ASSERT_TRUE(checked.ok()) << checked.status.ToString();
  begin.plan = checked.plan;
  Harness h;
  h.Begin(begin);
  h.MakeAllDurable();
  h.Answer("action:a", Ok());
  h.MakeAllDurable();
  EXPECT_EQ(Keys(h.outstanding()), (std::vector<std::string>{"action:b", "action:c"}));

  SagaBegin unchecked = MakeSaga(kDiamond);
  unchecked.request.mutable_steps(0)->set_action("not a url");
  Effects fx;
  EXPECT_FALSE(SagaEngine::Begin(Timestamp{}, unchecked, Opts(), 1, fx).ok())
      << "without a plan the engine validates";
  unchecked.plan = checked.plan;
  EXPECT_TRUE(SagaEngine::Begin(Timestamp{}, unchecked, Opts(), 1, fx).ok())
      << "with one it does not validate again";
}

TEST(SagaForward, ParallelStepsAreBoundedLowestIndexFirst) {
  Harness h(Opts(/*max_parallel=*/2));
  h.Begin(MakeSaga({{"s0", {}}, {"s1", {}}, {"s2", {}}, {"s3", {}}, {"s4", {}}}));
  h.MakeAllDurable();
  EXPECT_EQ(Keys(h.outstanding()), (std::vector<std::string>{"action:s0", "action:s1"}));
  ASSERT_TRUE(h.Drive([](const Send&) { return Ok(); }));
  EXPECT_EQ(h.max_in_flight(), 2);
  EXPECT_EQ(h.calls().size(), 5u);
  EXPECT_EQ(h.engine().state(), "committed");
}

// ---- turning to compensation

TEST(SagaBackward, RefusalTurnsAndCompensatesEveryStepInReverseOrder) {
  Harness h;
  h.Begin(MakeSaga(kSequential));
  h.MakeAllDurable();
  h.Answer("action:a", Ok());
  h.MakeAllDurable();
  h.Answer("action:b", Refused());
  EXPECT_TRUE(h.outstanding().empty());
  EXPECT_EQ(h.engine().state(), "compensating");
  const v1::LogRecord* d = Decision(h.records());
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->decision().outcome(), v1::OUTCOME_ABORT);
  EXPECT_EQ(d->decision().reason(), "step \"b\" refused action: HTTP 409: credit limit exceeded");
  EXPECT_EQ(d->tx_state(), "compensating");
  EXPECT_EQ(h.StepState("b"), "failed");
  EXPECT_EQ(h.StepState("c"), "compensating") << "c never ran; it is compensated first";
  const std::string reason = d->decision().reason();
  // c never ran: it is compensated first all the same (a null compensation at the barrier).
  ASSERT_TRUE(h.Drive([](const Send&) { return Ok(); }));
  EXPECT_EQ(h.calls(), (std::vector<std::string>{"action:a", "action:b", "compensate:c",
                                                 "compensate:b", "compensate:a"}));
  EXPECT_EQ(h.engine().state(), "aborted");
  EXPECT_EQ(h.engine().View().reason(), reason);
  EXPECT_EQ(h.records().back().end().final_state(), "aborted");
}

TEST(SagaBackward, DiamondCompensatesIndependentStepsInParallel) {
  Harness h;
  h.Begin(MakeSaga(kDiamond));
  h.MakeAllDurable();
  h.Answer("action:a", Ok());
  h.MakeAllDurable();
  h.Answer("action:b", Ok());
  h.Answer("action:c", Ok());
  h.MakeAllDurable();
  h.Answer("action:d", Refused());
  EXPECT_TRUE(h.outstanding().empty()) << "a compensate before the decision was durable";
  h.MakeAllDurable();
  EXPECT_EQ(Keys(h.outstanding()), (std::vector<std::string>{"compensate:d"}));
  h.Answer("compensate:d", Ok());
  h.MakeAllDurable();
  EXPECT_EQ(Keys(h.outstanding()), (std::vector<std::string>{"compensate:b", "compensate:c"}));
  h.Answer("compensate:b", Ok());
  h.MakeAllDurable();
  EXPECT_EQ(Keys(h.outstanding()), (std::vector<std::string>{"compensate:c"}))
      << "a waits for both of its dependents";
  h.Answer("compensate:c", Ok());
  h.MakeAllDurable();
  EXPECT_EQ(Keys(h.outstanding()), (std::vector<std::string>{"compensate:a"}));
  h.Answer("compensate:a", Ok());
  h.MakeAllDurable();
  EXPECT_EQ(h.engine().state(), "aborted");
  EXPECT_NE(h.engine().View().reason().find("step \"d\""), std::string::npos);
}

TEST(SagaBackward, LateActionRepliesAfterTheTurnAreIgnored) {
  Harness h;
  h.Begin(MakeSaga({{"a", {}}, {"b", {}}}));
  h.MakeAllDurable();
  const Send b = h.outstanding()[1];
  ASSERT_EQ(Key(b), "action:b");
  h.Answer("action:a", Refused());
  h.MakeAllDurable();
  // b's action is still travelling; its success must not count, nor stop b's compensation.
  h.DeliverStale(b, Ok());
  EXPECT_EQ(Keys(h.outstanding()),
            (std::vector<std::string>{"action:b", "compensate:a", "compensate:b"}));
  ASSERT_TRUE(h.Drive([](const Send&) { return Ok(); }));
  EXPECT_EQ(h.engine().state(), "aborted");
}

TEST(SagaBackward, DeadlineTurnsAndNoActionGoesOutAfterIt) {
  Harness h;
  h.Begin(MakeSaga(kSequential, /*timeout_ms=*/1'000));
  h.MakeAllDurable();
  while (h.engine().decision() == v1::OUTCOME_UNSPECIFIED) {
    if (!h.outstanding().empty()) {
      h.Answer("action:a", ServerError());
      h.MakeAllDurable();
      continue;
    }
    h.AdvanceTo(*h.engine().WakeAt());
  }
  EXPECT_GT(h.now(), kT0 + milliseconds(1'000));
  const v1::LogRecord* d = Decision(h.records());
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->decision().outcome(), v1::OUTCOME_ABORT);
  EXPECT_NE(d->decision().reason().find("deadline"), std::string::npos) << d->decision().reason();
  EXPECT_NE(d->decision().reason().find("step \"a\""), std::string::npos);
  EXPECT_NE(d->decision().reason().find("HTTP 500: boom"), std::string::npos);
  for (size_t i = 0; i < h.calls().size(); ++i) {
    if (h.calls()[i].starts_with("action:")) {
      EXPECT_LE(h.call_times()[i], kT0 + milliseconds(1'000)) << "an action past the deadline";
    }
  }
  ASSERT_TRUE(h.Drive([](const Send&) { return Ok(); }));
  EXPECT_EQ(h.engine().state(), "aborted");
}

TEST(SagaBackward, ActionSuccessPastTheDeadlineComesTooLate) {
  Harness h;
  h.Begin(MakeSaga({{"a", {}}}, /*timeout_ms=*/1'000));
  h.MakeAllDurable();
  h.SetClock(kT0 + milliseconds(1'001));  // the deadline timer is late; the reply must not win
  h.Answer("action:a", Ok());
  EXPECT_EQ(h.engine().decision(), v1::OUTCOME_ABORT);
  ASSERT_TRUE(h.Drive([](const Send&) { return Ok(); }));
  EXPECT_EQ(h.engine().state(), "aborted");
  EXPECT_EQ(h.calls(), (std::vector<std::string>{"action:a", "compensate:a"}));
}

// ---- retries

TEST(SagaRetry, TransientFailuresBackOffAnd425DoesNotGrow) {
  SagaOptions o = Opts();
  o.log_failed_attempts = true;
  Harness h(o);
  SagaBegin begin = MakeSaga({{"a", {}}}, /*timeout_ms=*/600'000);
  begin.request.mutable_steps(0)->mutable_retry()->set_initial_ms(50);
  begin.request.mutable_steps(0)->mutable_retry()->set_max_ms(800);
  h.Begin(begin);
  h.MakeAllDurable();
  for (int failure = 1; failure <= 10; ++failure) {
    const Timestamp failed_at = h.now();
    h.Answer("action:a", ServerError());
    h.MakeAllDurable();
    const auto wake = h.engine().WakeAt();
    ASSERT_TRUE(wake);
    const int64_t ceiling = std::min<int64_t>(800, 50LL << (failure - 1));
    EXPECT_GE((*wake - failed_at).count(), 1);
    EXPECT_LE((*wake - failed_at).count(), ceiling) << "failure " << failure;
    h.AdvanceTo(*wake);
    ASSERT_EQ(h.outstanding().size(), 1u);
    EXPECT_EQ(h.outstanding()[0].attempt, failure + 1);
  }
  // 425: exactly the initial interval, however many failures came before.
  for (int i = 0; i < 3; ++i) {
    const Timestamp at = h.now();
    h.Answer("action:a", TooEarly());
    h.MakeAllDurable();
    EXPECT_EQ(*h.engine().WakeAt(), at + milliseconds(50));
    h.AdvanceTo(*h.engine().WakeAt());
  }
  h.Answer("action:a", Ok());
  h.MakeAllDurable();
  EXPECT_EQ(h.engine().state(), "committed");
  EXPECT_EQ(h.engine().View().steps(0).attempts(), 14);
  // Failed attempts are logged at 1, 2, 4, 8 only.
  std::vector<int> logged;
  for (const auto& r : h.records()) {
    if (r.has_step_outcome() && r.step_outcome().state() == "running" &&
        !r.step_outcome().last_error().empty())
      logged.push_back(r.step_outcome().attempts());
  }
  EXPECT_EQ(logged, (std::vector<int>{1, 2, 4, 8}));
}

TEST(SagaRetry, BackoffIsJitteredButReproducibleFromTheSeed) {
  auto delays = [](uint64_t seed) {
    Harness h(Opts(), seed);
    h.Begin(MakeSaga({{"a", {}}}, 600'000));
    h.MakeAllDurable();
    std::vector<int64_t> out;
    for (int i = 0; i < 8; ++i) {
      const Timestamp at = h.now();
      h.Answer("action:a", ServerError());
      h.MakeAllDurable();
      out.push_back((*h.engine().WakeAt() - at).count());
      h.AdvanceTo(*h.engine().WakeAt());
    }
    return out;
  };
  EXPECT_EQ(delays(7), delays(7));
  EXPECT_NE(delays(7), delays(8));
}

TEST(SagaRetry, MaxAttemptsFailsTheStep) {
  Harness h;
  SagaBegin begin = MakeSaga(kSequential, 600'000);
  begin.request.mutable_steps(1)->mutable_retry()->set_max_attempts(3);
  h.Begin(begin);
  ASSERT_TRUE(h.Drive([](const Send& s) {
    return s.step_id == "b" && s.phase == kPhaseAction ? ServerError() : Ok();
  }));
  EXPECT_EQ(h.engine().state(), "aborted");
  EXPECT_EQ(std::count(h.calls().begin(), h.calls().end(), "action:b"), 3);
  EXPECT_EQ(std::count(h.calls().begin(), h.calls().end(), "action:c"), 0);
  const v1::LogRecord* d = Decision(h.records());
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->decision().reason(), "step \"b\" failed action after 3 attempts: HTTP 500: boom");
}

TEST(SagaRetry, CompensationThatFailsManyTimesIsNeverGivenUp) {
  Harness h;
  h.Begin(MakeSaga(kSequential, 1'000));
  int undo_a = 0;
  ASSERT_TRUE(h.Drive([&](const Send& s) {
    if (s.step_id == "c" && s.phase == kPhaseAction) return Refused();
    if (s.step_id == "a" && s.phase == kPhaseCompensate && ++undo_a <= 40) {
      return (undo_a & (undo_a - 1)) == 0 && undo_a > 1 ? Refused() : ServerError();
    }
    return Ok();
  }));
  EXPECT_EQ(h.engine().state(), "aborted");
  EXPECT_EQ(undo_a, 41);
  EXPECT_GT(h.now(), kT0 + milliseconds(1'000)) << "compensation outlives the deadline";
  // Logged at attempts 1, 2, 4, 8, 16, 32 while failing; then compensated at 41.
  std::vector<int> logged;
  std::string bug_error;
  for (const auto& r : h.records()) {
    const auto& o = r.step_outcome();
    if (r.has_step_outcome() && o.step_id() == "a" && o.phase() == "compensate") {
      logged.push_back(o.attempts());
      if (o.last_error().find("participant bug") != std::string::npos) bug_error = o.last_error();
    }
  }
  EXPECT_EQ(logged, (std::vector<int>{0, 1, 2, 4, 8, 16, 32, 41}));
  EXPECT_EQ(h.engine().View().steps(0).attempts(), 41);
  EXPECT_EQ(bug_error.empty(), false) << "a 409 to compensate is logged as a participant bug";
}

// ---- stale and duplicate replies

TEST(SagaReplies, StaleAndDuplicateRepliesAreIgnored) {
  Harness h;
  h.Begin(MakeSaga(kSequential, 600'000));
  h.MakeAllDurable();
  const Send first = h.outstanding().front();
  h.Answer("action:a", ServerError());
  h.MakeAllDurable();
  h.AdvanceTo(*h.engine().WakeAt());
  ASSERT_EQ(h.outstanding().front().attempt, 2);
  h.DeliverStale(first, Ok());  // the first attempt's late success: not the attempt in flight
  const Send second = h.outstanding().front();
  h.Answer("action:a", Ok());
  h.DeliverStale(second, Ok());       // a duplicate
  h.DeliverStale(second, Refused());  // a contradicting duplicate
  Send other_phase = second;
  other_phase.phase = kPhaseCompensate;
  h.DeliverStale(other_phase, Ok());
  Send unknown = second;
  unknown.step = 7;
  h.DeliverStale(unknown, Ok());
  h.MakeAllDurable();
  EXPECT_EQ(Keys(h.outstanding()), (std::vector<std::string>{"action:b"}));
}

// ---- recovery

using Responder = std::function<Reply(const Send&)>;

// Runs a saga to its end and returns the records it wrote; the harness's assertions hold.
std::vector<v1::LogRecord> FullRun(const std::vector<StepSpec>& specs, const Responder& respond,
                                   std::string* final_state) {
  Harness h;
  h.Begin(MakeSaga(specs));
  EXPECT_TRUE(h.Drive(respond));
  *final_state = h.engine().state();
  return h.records();
}

void CheckEveryPrefix(const std::vector<StepSpec>& specs, const Responder& respond,
                      const std::string& want) {
  std::string final_state;
  const std::vector<v1::LogRecord> records = FullRun(specs, respond, &final_state);
  ASSERT_EQ(final_state, want);
  for (size_t k = 1; k <= records.size(); ++k) {
    SCOPED_TRACE("recovered from the first " + std::to_string(k) + " of " +
                 std::to_string(records.size()) + " records");
    const std::vector<v1::LogRecord> prefix(records.begin(),
                                            records.begin() + static_cast<std::ptrdiff_t>(k));
    const v1::LogRecord* decided = Decision(prefix);
    Harness h;
    ASSERT_TRUE(h.RecoverFrom(prefix).ok());
    if (k == records.size()) {
      EXPECT_TRUE(h.engine().finished());
      EXPECT_TRUE(h.calls().empty());
      continue;
    }
    // Steps whose durable state is running get their action again, at once (or after the
    // records the recovery emitted are durable).
    ASSERT_TRUE(h.Drive(respond));
    EXPECT_EQ(h.engine().state(), want);
    const v1::LogRecord* d = Decision(h.records());
    ASSERT_NE(d, nullptr);
    if (decided != nullptr) {
      EXPECT_EQ(d->decision().outcome(), decided->decision().outcome()) << "re-decided";
      EXPECT_EQ(d->decision().reason(), decided->decision().reason());
    }
    // Never a second decision record, and all steps in their final state.
    int decisions = 0;
    for (const auto& r : h.records()) decisions += r.has_decision() ? 1 : 0;
    EXPECT_EQ(decisions, 1);
    const v1::Transaction view = h.engine().View();
    for (const auto& s : view.steps()) {
      EXPECT_EQ(s.state(), want == "committed" ? "succeeded" : "compensated") << s.step_id();
    }
    // A step already compensated durably is not compensated again.
    std::set<std::string> compensated_before;
    for (const auto& r : prefix) {
      if (r.has_step_outcome() && r.step_outcome().state() == "compensated")
        compensated_before.insert(r.step_outcome().step_id());
    }
    for (const std::string& call : h.calls()) {
      if (call.starts_with("compensate:")) {
        EXPECT_EQ(compensated_before.count(call.substr(11)), 0u) << call << " again";
      }
      if (decided != nullptr && decided->decision().outcome() == v1::OUTCOME_ABORT) {
        EXPECT_FALSE(call.starts_with("action:")) << call << " after the abort was durable";
      }
    }
  }
}

TEST(SagaRecovery, EveryPrefixOfACommittedRunContinuesForward) {
  int flaky = 0;
  CheckEveryPrefix(
      kDiamond,
      [&](const Send& s) {
        if (s.step_id == "b" && ++flaky % 2 == 1) return ServerError();
        return Ok();
      },
      "committed");
}

TEST(SagaRecovery, EveryPrefixOfACompensatedRunContinuesBackward) {
  int flaky = 0;
  CheckEveryPrefix(
      kDiamond,
      [&](const Send& s) {
        if (s.step_id == "d" && s.phase == kPhaseAction) return Refused();
        if (s.step_id == "b" && s.phase == kPhaseCompensate && ++flaky % 2 == 1)
          return ServerError();
        return Ok();
      },
      "aborted");
}

TEST(SagaRecovery, CrashWhileRunningResendsTheRunningActionWithTheNextAttempt) {
  Harness h;
  h.Begin(MakeSaga(kSequential));
  h.MakeAllDurable();
  h.Answer("action:a", Ok());
  h.MakeAllDurable();
  h.Answer("action:b", ServerError());  // attempt 1 logged
  h.MakeAllDurable();
  h.Crash();
  ASSERT_EQ(Keys(h.outstanding()), (std::vector<std::string>{"action:b"}));
  EXPECT_EQ(h.outstanding()[0].attempt, 2);
  ASSERT_TRUE(h.Drive([](const Send&) { return Ok(); }));
  EXPECT_EQ(h.engine().state(), "committed");
  EXPECT_EQ(std::count(h.calls().begin(), h.calls().end(), "action:a"), 1);
}

TEST(SagaRecovery, RecoveredPastItsDeadlineTurns) {
  Harness h;
  h.Begin(MakeSaga(kSequential, 1'000));
  h.MakeAllDurable();
  Effects fx;
  auto e = SagaEngine::Recover(kT0 + milliseconds(5'000), h.records(), Opts(), 1, fx);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  ASSERT_FALSE(fx.append.empty());
  EXPECT_EQ(fx.append[0].decision().outcome(), v1::OUTCOME_ABORT);
  EXPECT_NE(fx.append[0].decision().reason().find("deadline"), std::string::npos);
  EXPECT_TRUE(fx.send.empty()) << "nothing before the decision is durable";
  EXPECT_EQ((*e)->state(), "compensating");
}

TEST(SagaRecovery, CorruptRecordsAreErrorsNotCrashes) {
  auto status = [](std::vector<v1::LogRecord> records) {
    Effects fx;
    auto e = SagaEngine::Recover(kT0, records, Opts(), 1, fx);
    return e.ok() ? StatusCode::kOk : e.status().code();
  };
  std::string state;
  const auto good = FullRun(
      kSequential, [](const Send&) { return Ok(); }, &state);
  EXPECT_EQ(status({}), StatusCode::kCorruption);
  EXPECT_EQ(status({good[1]}), StatusCode::kCorruption) << "no begin";
  std::vector<v1::LogRecord> twice = {good[0], good[0]};
  EXPECT_EQ(status(twice), StatusCode::kCorruption);
  v1::LogRecord unknown = good[1];
  unknown.mutable_step_outcome()->set_step_id("zz");
  EXPECT_EQ(status({good[0], unknown}), StatusCode::kCorruption);
  v1::LogRecord bad_state = good[1];
  bad_state.mutable_step_outcome()->set_state("sleeping");
  EXPECT_EQ(status({good[0], bad_state}), StatusCode::kCorruption);
  v1::LogRecord compensating = good[1];
  compensating.mutable_step_outcome()->set_state("compensating");
  EXPECT_EQ(status({good[0], compensating}), StatusCode::kCorruption) << "without a decision";
  v1::LogRecord cycle = good[0];
  cycle.mutable_begin()->mutable_steps(0)->add_depends_on("c");
  EXPECT_EQ(status({cycle}), StatusCode::kCorruption);
  v1::LogRecord two_pc = good[0];
  two_pc.mutable_begin()->set_protocol("2pc");
  EXPECT_EQ(status({two_pc}), StatusCode::kInvalidArgument);
  std::vector<v1::LogRecord> after_end = good;
  after_end.push_back(good[1]);
  EXPECT_EQ(status(after_end), StatusCode::kCorruption);
  EXPECT_EQ(status(good), StatusCode::kOk);
}

TEST(SagaRecovery, CommitDecidedWithoutEndAppendsTheEnd) {
  std::string state;
  auto records = FullRun(
      kSequential, [](const Send&) { return Ok(); }, &state);
  ASSERT_TRUE(records.back().has_end());
  records.pop_back();
  Harness h;
  ASSERT_TRUE(h.RecoverFrom(records).ok());
  ASSERT_EQ(h.records().size(), records.size() + 1);
  EXPECT_TRUE(h.records().back().has_end());
  h.MakeAllDurable();
  EXPECT_EQ(h.engine().state(), "committed");
  EXPECT_TRUE(h.calls().empty());
}

// ---- client commands

TEST(SagaCommands, AbortOfARunningSagaCompensatesIt) {
  Harness h;
  h.Begin(MakeSaga(kSequential));
  h.MakeAllDurable();
  h.Answer("action:a", Ok());
  h.MakeAllDurable();
  const Send b = h.outstanding().front();
  Effects none;
  EXPECT_EQ(h.engine().Commit(h.now(), none).status().code(), StatusCode::kConflict);
  const size_t before = h.records().size();
  auto seq = h.Abort();
  ASSERT_TRUE(seq.ok());
  ASSERT_GT(h.records().size(), before);
  EXPECT_EQ(h.records()[before].decision().reason(), "aborted by the application");
  EXPECT_EQ(*seq, h.engine().emitted() - (h.records().size() - before - 1))
      << "the client waits for the decision record";
  // A second abort answers with the same decision and emits nothing; a commit is refused.
  const size_t after = h.records().size();
  EXPECT_EQ(*h.Abort(), *seq);
  EXPECT_EQ(h.records().size(), after);
  EXPECT_EQ(h.engine().Commit(h.now(), none).status().code(), StatusCode::kConflict);
  h.MakeAllDurable();
  h.DeliverStale(b, Ok());  // b's action, still in flight when the client aborted
  ASSERT_TRUE(h.Drive([](const Send&) { return Ok(); }));
  EXPECT_EQ(h.engine().state(), "aborted");
  EXPECT_EQ(h.calls(), (std::vector<std::string>{"action:a", "action:b", "compensate:c",
                                                 "compensate:b", "compensate:a"}));
}

TEST(SagaCommands, AbortAfterCommitIsAConflict) {
  Harness h;
  h.Begin(MakeSaga({{"a", {}}}));
  ASSERT_TRUE(h.Drive([](const Send&) { return Ok(); }));
  Effects fx;
  EXPECT_EQ(h.engine().Abort(h.now(), "", fx).status().code(), StatusCode::kConflict);
  EXPECT_TRUE(h.engine().Commit(h.now(), fx).ok());
}

}  // namespace
}  // namespace txcoord::saga

namespace txcoord::saga {
namespace {

// ---- operators: resolve and retry (txctl)

int CountResolved(const std::vector<v1::LogRecord>& records) {
  return static_cast<int>(std::count_if(records.begin(), records.end(),
                                        [](const auto& r) { return r.has_resolved(); }));
}

TEST(SagaOperator, AnActionResolvedAsCommittedLetsTheSagaGoOn) {
  Harness h;
  h.Begin(MakeSaga(kSequential));
  h.MakeAllDurable();
  h.Answer("action:a", ServerError());
  h.MakeAllDurable();  // the failed attempt is logged (attempt 1)
  h.AdvanceTo(*h.engine().WakeAt());
  ASSERT_EQ(h.outstanding().size(), 1u);  // attempt 2 of a's action in flight
  const Send in_flight = h.outstanding().front();

  EXPECT_EQ(h.Resolve("a", "aborted").status().code(), StatusCode::kConflict)
      << "nothing is compensating before the saga is aborted";
  EXPECT_EQ(h.Resolve("b", "committed").status().code(), StatusCode::kConflict)
      << "b's action has not started";
  EXPECT_EQ(h.Resolve("zz", "committed").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(CountResolved(h.records()), 0);

  ASSERT_TRUE(h.Resolve("a", "committed").ok());
  EXPECT_EQ(CountResolved(h.records()), 1);
  EXPECT_EQ(h.StepState("a"), "succeeded");
  EXPECT_EQ(h.StepState("b"), "running");
  h.MakeAllDurable();
  h.DeliverStale(in_flight, Ok());
  ASSERT_TRUE(h.Drive([](const Send&) { return Ok(); }));
  EXPECT_EQ(h.engine().state(), "committed");
  EXPECT_EQ(std::count(h.calls().begin(), h.calls().end(), "action:a"), 2);
}

TEST(SagaOperator, ACompensationResolvedAsAbortedFinishesAndRecoveryKeepsIt) {
  Harness h;
  h.Begin(MakeSaga(kSequential));
  h.MakeAllDurable();
  h.Answer("action:a", Ok());
  h.MakeAllDurable();
  h.Answer("action:b", Refused());
  h.MakeAllDurable();
  h.Answer("compensate:c", Ok());
  h.MakeAllDurable();
  h.Answer("compensate:b", ServerError());
  ASSERT_EQ(h.StepState("b"), "compensating");

  EXPECT_EQ(h.Resolve("b", "committed").status().code(), StatusCode::kConflict)
      << "the saga is compensating: only aborted";
  EXPECT_EQ(h.Resolve("a", "aborted").status().code(), StatusCode::kConflict)
      << "a compensates after b";
  EXPECT_EQ(h.Resolve("c", "aborted").status().code(), StatusCode::kConflict)
      << "c is compensated already";
  ASSERT_TRUE(h.Resolve("b", "aborted").ok());
  EXPECT_EQ(h.StepState("b"), "compensated");
  EXPECT_EQ(h.StepState("a"), "compensating");
  const v1::LogRecord* resolved = nullptr;
  for (const auto& r : h.records()) {
    if (r.has_resolved()) resolved = &r;
  }
  ASSERT_NE(resolved, nullptr);
  EXPECT_EQ(resolved->resolved().phase(), "compensate");
  EXPECT_EQ(resolved->resolved().state(), "compensated");
  EXPECT_EQ(resolved->resolved().operator_(), "alice");
  EXPECT_EQ(resolved->resolved().attempts(), 1);
  EXPECT_EQ(resolved->resolved().last_error(), "HTTP 500: boom");

  // A crash once the resolve is durable: b is not compensated again, a is.
  h.MakeAllDurable();
  h.DropOutstanding();
  const size_t calls_before = h.calls().size();
  h.Crash();
  ASSERT_TRUE(h.Drive([](const Send&) { return Ok(); }));
  EXPECT_EQ(h.engine().state(), "aborted");
  const std::vector<std::string> after(h.calls().begin() + calls_before, h.calls().end());
  EXPECT_EQ(after, std::vector<std::string>{"compensate:a"});
}

TEST(SagaOperator, RetryNowSendsAWaitingCompensationAtOnce) {
  SagaOptions slow = Opts();
  slow.retry_initial = milliseconds(60'000);
  slow.retry_max = milliseconds(600'000);
  Harness h(slow);
  h.Begin(MakeSaga({{"a", {}}}));
  h.MakeAllDurable();
  ASSERT_TRUE(h.Abort().ok());
  h.MakeAllDurable();
  h.Answer("compensate:a", ServerError());  // the next attempt waits up to a minute
  h.MakeAllDurable();                       // the failed attempt is logged (attempt 1)
  const size_t waiting = h.calls().size();
  h.RetryNow();
  ASSERT_EQ(h.calls().size(), waiting + 1) << "sent without the clock moving";
  EXPECT_EQ(h.calls().back(), "compensate:a");
  h.RetryNow();
  EXPECT_EQ(h.calls().size(), waiting + 1) << "a call in flight is left to finish";
}

}  // namespace
}  // namespace txcoord::saga
