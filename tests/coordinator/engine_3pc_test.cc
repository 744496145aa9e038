// Unit tests of the 3pc engine (engine.h's diagram, coordinator/src/engine_3pc.cc): every
// transition and deadline, driven by a fake clock and fixed seeds, with no threads and no sleeps.
// The Harness plays the driver, as in engine_test.cc: it appends the engine's records to a
// MemoryLog (so the log's rules check every record), reports durability when a test says so,
// answers callbacks with chosen replies, fires timers, and "crashes" by resuming a new engine
// from the durable records. On every callback it checks the 3pc durability rules: no can-commit
// before the begin is durable or past the deadline, no pre-commit before the pre_commit record is
// durable, no commit or abort before that decision is durable, never both, and never an abort
// once a pre-commit went out.
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "txcoord/coordinator/engine.h"
#include "txcoord/coordinator/memory_log.h"

namespace txcoord::coordinator {
namespace {

using google::protobuf::util::MessageDifferencer;
using std::chrono::milliseconds;

constexpr int64_t kEpochMs = 1'795'219'200'000;  // 2026-11-21T00:00:00Z
const Timestamp kT0{milliseconds(kEpochMs)};
constexpr int kTimeoutMs = 10'000;

CallbackReply Ok() { return {ReplyClass::kSuccess, 200, ""}; }
CallbackReply Refused() { return {ReplyClass::kRefused, 409, "HTTP 409: insufficient funds"}; }
CallbackReply TooEarly() { return {ReplyClass::kInProgress, 425, "HTTP 425: still working"}; }
CallbackReply ServerError() { return {ReplyClass::kTransient, 500, "HTTP 500: boom"}; }
CallbackReply NoReply() { return {ReplyClass::kTransient, 0, "no reply within 5000 ms"}; }

BeginArgs Args(int branches, int timeout_ms = kTimeoutMs) {
  BeginArgs a;
  a.request.set_gtid("tx-3");
  a.request.set_protocol("3pc");
  a.request.set_timeout_ms(timeout_ms);
  for (int i = 0; i < branches; ++i) {
    v1::Branch* b = a.request.add_branches();
    b->set_branch_id("b" + std::to_string(i));
    b->set_url("http://127.0.0.1:7001/b" + std::to_string(i));
    (*b->mutable_payload()->mutable_struct_value()->mutable_fields())["amount"].set_number_value(
        30);
  }
  a.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  a.request_digest = "digest-3";
  a.timeout_ms = timeout_ms;
  return a;
}

EngineOptions Options() {
  EngineOptions o;
  o.retry.initial = milliseconds(100);
  o.retry.max = milliseconds(2'000);
  return o;
}

std::vector<std::string> Keys(const std::vector<Send>& sends) {
  std::vector<std::string> keys;
  for (const Send& s : sends) keys.push_back(s.phase + ":" + s.branch_id);
  std::sort(keys.begin(), keys.end());
  return keys;
}

std::vector<std::string> AllOf(const std::string& phase, int branches) {
  std::vector<std::string> keys;
  for (int i = 0; i < branches; ++i) keys.push_back(phase + ":b" + std::to_string(i));
  return keys;
}

int CountKind(const std::vector<v1::LogRecord>& records, v1::LogRecord::BodyCase kind) {
  return static_cast<int>(std::count_if(records.begin(), records.end(),
                                        [kind](const auto& r) { return r.body_case() == kind; }));
}

// Index of the first record of `kind` in records[0, count), or -1.
int IndexOf(const std::vector<v1::LogRecord>& records, v1::LogRecord::BodyCase kind, size_t count) {
  for (size_t i = 0; i < count && i < records.size(); ++i) {
    if (records[i].body_case() == kind) return static_cast<int>(i);
  }
  return -1;
}

v1::Outcome DecisionIn(const std::vector<v1::LogRecord>& records, size_t count) {
  const int i = IndexOf(records, v1::LogRecord::kDecision, count);
  return i < 0 ? v1::OUTCOME_UNSPECIFIED : records[i].decision().outcome();
}

class Harness {
 public:
  explicit Harness(uint64_t seed = 7) : seed_(seed) { ResetLog(); }

  void Begin(const BeginArgs& args) {
    gtid_ = args.request.gtid();
    Effects fx;
    engine_ = BeginEngine(now_, args, Options(), seed_, fx);
    base_ = records_.size();
    Apply(fx);
  }

  Status RecoverFrom(const std::vector<v1::LogRecord>& records) {
    ResetLog();
    for (const v1::LogRecord& r : records) TXCOORD_RETURN_IF_ERROR(log_->Append({r}));
    records_ = records;
    durable_ = records_.size();
    gtid_ = records.empty() ? "" : records.front().gtid();
    return Resume();
  }

  // Loses what is not durable and every callback in flight; resumes from the log.
  bool Crash() {
    ++crashes_;
    records_.resize(durable_);
    outstanding_.clear();
    engine_.reset();
    if (records_.empty()) return false;
    ResetLog();
    for (const v1::LogRecord& r : records_) EXPECT_TRUE(log_->Append({r}).ok());
    const Status s = Resume();
    EXPECT_TRUE(s.ok()) << "recovery failed: " << s.ToString();
    return s.ok();
  }

  void MakeDurable(size_t upto) {
    ASSERT_LE(upto, records_.size());
    if (upto <= durable_) return;
    durable_ = upto;
    Effects fx;
    engine_->OnDurable(now_, upto - base_, fx);
    Apply(fx);
  }
  void MakeAllDurable() {
    for (int i = 0; i < 100 && durable_ < records_.size(); ++i) MakeDurable(records_.size());
  }

  bool InFlight(const std::string& branch, const std::string& phase) const {
    return std::any_of(outstanding_.begin(), outstanding_.end(),
                       [&](const Send& s) { return s.branch_id == branch && s.phase == phase; });
  }
  void Answer(const std::string& branch, const std::string& phase, const CallbackReply& reply) {
    auto it = std::find_if(outstanding_.begin(), outstanding_.end(), [&](const Send& s) {
      return s.branch_id == branch && s.phase == phase;
    });
    ASSERT_NE(it, outstanding_.end()) << "no " << phase << " to " << branch << " in flight";
    const Send s = *it;
    outstanding_.erase(it);
    Deliver(s, reply);
  }
  void AnswerAll(const CallbackReply& reply) {
    std::vector<Send> all;
    all.swap(outstanding_);
    for (const Send& s : all) Deliver(s, reply);
  }
  void AnswerAt(size_t i, const CallbackReply& reply) {
    const Send s = outstanding_.at(i);
    outstanding_.erase(outstanding_.begin() + static_cast<std::ptrdiff_t>(i));
    Deliver(s, reply);
  }
  // A reply to a callback that is not in flight: the engine must ignore it entirely.
  void DeliverStale(const Send& s, const CallbackReply& reply) {
    const v1::Transaction before = engine_->View();
    const size_t records = records_.size();
    const size_t sends = sends_.size();
    const auto wake = engine_->WakeAt();
    Deliver(s, reply);
    EXPECT_EQ(records_.size(), records) << "a stale reply emitted records";
    EXPECT_EQ(sends_.size(), sends) << "a stale reply caused a send";
    EXPECT_EQ(engine_->WakeAt(), wake) << "a stale reply moved the timer";
    EXPECT_TRUE(MessageDifferencer::Equals(before, engine_->View()))
        << "a stale reply changed the view";
  }

  void Advance(milliseconds d) { now_ += d; }
  void SetNow(Timestamp t) { now_ = t; }
  void Tick() {
    Effects fx;
    engine_->OnTimer(now_, fx);
    Apply(fx);
    if (!engine_->finished()) {
      if (const auto wake = engine_->WakeAt()) {
        EXPECT_GT(*wake, now_) << "WakeAt() is not in the future right after OnTimer";
      }
    }
  }
  void RetryNow() {
    Effects fx;
    engine_->RetryNow(now_, fx);
    Apply(fx);
  }
  bool Fire() {
    const auto wake = engine_->WakeAt();
    if (!wake) return false;
    now_ = std::max(now_, *wake);
    Tick();
    return true;
  }

  Result<uint64_t> Commit() {
    Effects fx;
    auto r = engine_->Commit(now_, fx);
    Apply(fx);
    return r;
  }
  Result<uint64_t> Abort(std::string reason = "") {
    Effects fx;
    auto r = engine_->Abort(now_, std::move(reason), fx);
    Apply(fx);
    return r;
  }
  Result<uint64_t> Resolve(const std::string& branch, const std::string& as,
                           const std::string& op = "alice", const std::string& reason = "") {
    v1::ResolvedRecord request;
    request.set_branch_id(branch);
    request.set_as(as);
    request.set_operator_(op);
    request.set_reason(reason);
    Effects fx;
    auto r = engine_->Resolve(now_, request, fx);
    Apply(fx);
    return r;
  }
  Result<uint64_t> Register() {
    v1::Branch b;
    b.set_branch_id("late");
    b.set_url("http://127.0.0.1:7001/late");
    Effects fx;
    auto r = engine_->RegisterBranch(now_, b, fx);
    Apply(fx);
    return r;
  }

  Engine& engine() { return *engine_; }
  Timestamp now() const { return now_; }
  const std::vector<v1::LogRecord>& records() const { return records_; }
  std::vector<v1::LogRecord> RecordsFrom(size_t first) const {
    return {records_.begin() + static_cast<std::ptrdiff_t>(std::min(first, records_.size())),
            records_.end()};
  }
  size_t durable() const { return durable_; }
  const std::vector<Send>& outstanding() const { return outstanding_; }
  std::vector<Send> TakeSends() {
    std::vector<Send> s(sends_.begin() + static_cast<std::ptrdiff_t>(taken_), sends_.end());
    taken_ = sends_.size();
    return s;
  }
  bool sent_commit() const { return sent_commit_; }
  bool sent_abort() const { return sent_abort_; }
  bool sent_pre_commit() const { return sent_pre_commit_; }

  std::string BranchState(const std::string& id) const {
    const v1::Transaction view = engine_->View();
    for (const v1::Branch& b : view.branches()) {
      if (b.branch_id() == id) return b.state();
    }
    return "";
  }
  std::string BranchError(const std::string& id) const {
    const v1::Transaction view = engine_->View();
    for (const v1::Branch& b : view.branches()) {
      if (b.branch_id() == id) return b.last_error();
    }
    return "";
  }
  void ExpectFoldMatchesView() {
    auto logged = log_->Read(gtid_);
    ASSERT_TRUE(logged.ok()) << logged.status().ToString();
    const v1::Transaction folded = FoldRecord(*logged);
    std::string diff;
    MessageDifferencer d;
    d.ReportDifferencesToString(&diff);
    EXPECT_TRUE(d.Compare(folded, engine_->View())) << diff;
  }

 private:
  void ResetLog() {
    store_ = NewMemoryLogStore();
    log_ = OpenMemoryLog(store_);
  }

  Status Resume() {
    auto logged = log_->Read(gtid_);
    if (!logged.ok()) return logged.status();
    Effects fx;
    auto engine = RecoverEngine(now_, *logged, Options(), seed_ + 1000 * (crashes_ + 1), fx);
    if (!engine.ok()) return engine.status();
    engine_ = std::move(engine).value();
    base_ = records_.size();
    Apply(fx);
    return Status::Ok();
  }

  Timestamp Deadline() const { return FromProto(records_.front().begin().deadline()); }

  void Deliver(const Send& s, const CallbackReply& reply) {
    Effects fx;
    engine_->OnReply(now_, s, reply, fx);
    Apply(fx);
  }

  void Apply(Effects& fx) {
    for (v1::LogRecord& r : fx.append) {
      const Status s = log_->Append({r});
      EXPECT_TRUE(s.ok()) << "record #" << records_.size() + 1
                          << " breaks the log's rules: " << s.ToString() << "\n"
                          << r.DebugString();
      EXPECT_EQ(FromProto(r.at()), now_) << "records carry the time of the event";
      if (r.has_pre_commit()) {
        EXPECT_LE(now_, Deadline()) << "pre-committing decided past the can-commit deadline";
        EXPECT_EQ(DecisionIn(records_, records_.size()), v1::OUTCOME_UNSPECIFIED);
      }
      records_.push_back(std::move(r));
    }
    for (Send& s : fx.send) {
      CheckSend(s);
      sends_.push_back(s);
      outstanding_.push_back(std::move(s));
    }
    fx.Clear();
  }

  void CheckSend(const Send& s) {
    SCOPED_TRACE("sending " + s.phase + " to " + s.branch_id);
    EXPECT_GE(durable_, 1u) << "a callback before the begin is durable";
    EXPECT_NE(engine_->FindBranch(s.branch_id), nullptr);
    EXPECT_FALSE(s.one_phase);
    EXPECT_TRUE(s.url.empty()) << "3pc callbacks go to the branch's url";
    const bool pre_commit_durable = IndexOf(records_, v1::LogRecord::kPreCommit, durable_) >= 0;
    const bool pre_commit_any = IndexOf(records_, v1::LogRecord::kPreCommit, records_.size()) >= 0;
    const v1::Outcome durable_decision = DecisionIn(records_, durable_);
    const v1::Outcome any_decision = DecisionIn(records_, records_.size());
    if (s.phase == "can-commit") {
      EXPECT_FALSE(pre_commit_any) << "a can-commit after the pre_commit record";
      EXPECT_EQ(any_decision, v1::OUTCOME_UNSPECIFIED) << "a can-commit after the decision";
      EXPECT_LE(now_, Deadline()) << "a can-commit past the deadline";
    } else if (s.phase == "pre-commit") {
      EXPECT_TRUE(pre_commit_durable) << "pre-commit sent before the pre_commit record is durable";
      EXPECT_EQ(any_decision, v1::OUTCOME_UNSPECIFIED) << "a pre-commit after the decision";
      sent_pre_commit_ = true;
    } else if (s.phase == "commit") {
      EXPECT_EQ(durable_decision, v1::OUTCOME_COMMIT) << "commit before a durable commit decision";
      sent_commit_ = true;
    } else if (s.phase == "abort") {
      EXPECT_EQ(durable_decision, v1::OUTCOME_ABORT) << "abort before a durable abort decision";
      EXPECT_FALSE(sent_pre_commit_) << "an abort after a pre-commit went out";
      sent_abort_ = true;
    } else {
      ADD_FAILURE() << "unknown phase " << s.phase;
    }
    EXPECT_FALSE(sent_commit_ && sent_abort_) << "both commit and abort were sent";
  }

  const uint64_t seed_;
  Timestamp now_ = kT0;
  std::string gtid_;
  std::shared_ptr<MemoryLogStore> store_;
  std::unique_ptr<TransactionLog> log_;
  std::unique_ptr<Engine> engine_;
  std::vector<v1::LogRecord> records_;
  size_t durable_ = 0;
  size_t base_ = 0;
  std::vector<Send> sends_;
  std::vector<Send> outstanding_;
  size_t taken_ = 0;
  bool sent_commit_ = false;
  bool sent_abort_ = false;
  bool sent_pre_commit_ = false;
  int crashes_ = 0;
};

// Answers everything with 2xx and fires timers until the transaction is finished.
void RunToEnd(Harness& h) {
  for (int i = 0; i < 1000 && !h.engine().finished(); ++i) {
    h.MakeAllDurable();
    h.AnswerAll(Ok());
    if (h.engine().finished()) break;
    if (h.outstanding().empty() && h.durable() == h.records().size() && !h.Fire()) {
      FAIL() << "stuck in " << h.engine().state() << ": nothing in flight, no timer";
    }
  }
  ASSERT_TRUE(h.engine().finished()) << "still " << h.engine().state();
}

bool PreCommitEmitted(const Harness& h) {
  return CountKind(h.records(), v1::LogRecord::kPreCommit) > 0;
}

// Begins with `n` branches, makes the begin durable and has every branch vote yes: the
// pre_commit record is emitted, not durable yet.
void ToPreCommitting(Harness& h, int n) {
  h.Begin(Args(n));
  h.MakeAllDurable();
  h.AnswerAll(Ok());
  ASSERT_TRUE(PreCommitEmitted(h));
  ASSERT_EQ(h.engine().state(), "can-committing") << "pre-committing shows once durable";
}

// ================================================================================ forward

TEST(ThreePc, BeginIsDurableBeforeAnyCanCommit) {
  Harness h;
  h.Begin(Args(3));
  ASSERT_EQ(h.records().size(), 1u);
  const v1::LogRecord& begin = h.records()[0];
  EXPECT_EQ(begin.tx_state(), "can-committing");
  EXPECT_EQ(begin.begin().protocol(), "3pc");
  EXPECT_FALSE(begin.begin().one_phase());
  EXPECT_EQ(FromProto(begin.begin().deadline()), kT0 + milliseconds(kTimeoutMs));
  EXPECT_EQ(h.engine().state(), "can-committing");
  EXPECT_TRUE(h.TakeSends().empty()) << "nothing is sent before the begin is durable";
  h.MakeAllDurable();
  EXPECT_EQ(Keys(h.TakeSends()), AllOf("can-commit", 3)) << "can-commit to all, in parallel";
  for (const Send& s : h.outstanding()) EXPECT_EQ(s.attempt, 1);
}

TEST(ThreePc, OneBranchStillRunsEveryPhase) {
  // No one-phase shortcut in 3pc: a lone participant still votes, pre-commits and commits.
  Harness h;
  h.Begin(Args(1));
  h.MakeAllDurable();
  EXPECT_EQ(Keys(h.TakeSends()), AllOf("can-commit", 1));
  RunToEnd(h);
  EXPECT_EQ(h.engine().state(), "committed");
  EXPECT_EQ(CountKind(h.records(), v1::LogRecord::kPreCommit), 1);
}

TEST(ThreePc, AllYesWritesThePreCommitRecordBeforeAnyPreCommit) {
  Harness h;
  h.Begin(Args(3));
  h.MakeAllDurable();
  h.Answer("b0", "can-commit", Ok());
  h.Answer("b2", "can-commit", Ok());
  EXPECT_EQ(h.engine().state(), "can-committing") << "b1 has not voted";
  EXPECT_EQ(h.BranchState("b0"), "voted-yes");
  EXPECT_EQ(CountKind(h.records(), v1::LogRecord::kPreCommit), 0);
  h.TakeSends();
  h.Answer("b1", "can-commit", Ok());
  // Not durable yet: GET must not tell a participant "pre-committing" (it would commit), since a
  // crash now loses the record and recovery aborts.
  EXPECT_EQ(h.engine().state(), "can-committing");
  EXPECT_EQ(h.engine().View().state(), "can-committing");
  ASSERT_EQ(CountKind(h.records(), v1::LogRecord::kPreCommit), 1);
  const v1::LogRecord& pre = h.records().back();
  ASSERT_TRUE(pre.has_pre_commit()) << "the votes' outcomes come first, the pre_commit record last";
  EXPECT_EQ(pre.tx_state(), "pre-committing");
  EXPECT_EQ(FromProto(pre.pre_commit().deadline()), h.now() + milliseconds(kTimeoutMs));
  EXPECT_EQ(CountKind(h.records(), v1::LogRecord::kBranchOutcome), 3) << "every yes vote logged";
  EXPECT_TRUE(h.TakeSends().empty()) << "no pre-commit before the record is durable";
  EXPECT_FALSE(h.engine().decided());
  // Durable up to the votes but not the pre_commit record: still nothing.
  h.MakeDurable(h.records().size() - 1);
  EXPECT_TRUE(h.TakeSends().empty());
  h.MakeAllDurable();
  EXPECT_EQ(h.engine().state(), "pre-committing");
  EXPECT_EQ(Keys(h.TakeSends()), AllOf("pre-commit", 3));
}

TEST(ThreePc, EveryPreCommitAcknowledgedDecidesCommit) {
  Harness h;
  ToPreCommitting(h, 2);
  h.MakeAllDurable();
  h.Answer("b0", "pre-commit", Ok());
  EXPECT_EQ(h.BranchState("b0"), "pre-committed");
  EXPECT_EQ(h.engine().state(), "pre-committing");
  EXPECT_EQ(CountKind(h.records(), v1::LogRecord::kDecision), 0);
  h.TakeSends();
  h.Answer("b1", "pre-commit", Ok());
  EXPECT_EQ(h.engine().state(), "committing");
  EXPECT_EQ(h.records().back().tx_state().empty(), true) << "outcomes follow the decision";
  EXPECT_EQ(DecisionIn(h.records(), h.records().size()), v1::OUTCOME_COMMIT);
  EXPECT_FALSE(h.engine().decided()) << "not durable yet";
  EXPECT_TRUE(h.TakeSends().empty()) << "no commit before the decision is durable";
  h.MakeAllDurable();
  EXPECT_TRUE(h.engine().decided());
  EXPECT_EQ(Keys(h.TakeSends()), AllOf("commit", 2));
  EXPECT_EQ(h.Commit().status().code(), StatusCode::kOk) << "commit of a committing 3pc: its seq";
  EXPECT_EQ(h.Abort().status().code(), StatusCode::kConflict);
  h.Answer("b0", "commit", Ok());
  EXPECT_FALSE(h.engine().finished());
  h.Answer("b1", "commit", Ok());
  EXPECT_TRUE(h.records().back().has_end());
  EXPECT_EQ(h.records().back().end().final_state(), "committed");
  EXPECT_EQ(h.engine().state(), "committing") << "terminal only once the end is durable";
  h.MakeAllDurable();
  EXPECT_TRUE(h.engine().finished());
  EXPECT_EQ(h.engine().state(), "committed");
  EXPECT_FALSE(h.engine().WakeAt().has_value());
  EXPECT_EQ(h.BranchState("b0"), "committed");
  EXPECT_EQ(h.BranchState("b1"), "committed");
  EXPECT_TRUE(h.engine().View().reason().empty());
  h.ExpectFoldMatchesView();
}

// ================================================================================ aborts

TEST(ThreePc, ANoVoteAbortsEveryBranchOnceTheDecisionIsDurable) {
  Harness h;
  h.Begin(Args(3));
  h.MakeAllDurable();
  h.Answer("b0", "can-commit", Ok());
  h.Answer("b1", "can-commit", Refused());
  EXPECT_EQ(h.engine().state(), "aborting");
  EXPECT_EQ(h.BranchState("b1"), "failed");
  EXPECT_EQ(h.engine().View().reason(),
            "branch \"b1\" refused can-commit: HTTP 409: insufficient funds");
  h.TakeSends();
  h.Answer("b2", "can-commit", Ok());  // a late yes changes nothing
  EXPECT_EQ(h.engine().state(), "aborting");
  EXPECT_EQ(CountKind(h.records(), v1::LogRecord::kPreCommit), 0);
  EXPECT_TRUE(h.TakeSends().empty()) << "no abort before the decision is durable";
  h.MakeAllDurable();
  EXPECT_EQ(Keys(h.TakeSends()), AllOf("abort", 3)) << "also to the branch that voted no";
  RunToEnd(h);
  EXPECT_EQ(h.engine().state(), "aborted");
  EXPECT_FALSE(h.sent_pre_commit());
  h.ExpectFoldMatchesView();
}

TEST(ThreePc, TheDeadlineInCanCommitAborts) {
  Harness h;
  h.Begin(Args(2));
  h.MakeAllDurable();
  h.Answer("b0", "can-commit", Ok());
  h.Answer("b1", "can-commit", NoReply());
  // b1 keeps failing; its retries back off, and none goes out past the deadline.
  for (int i = 0; i < 200 && h.engine().state() == "can-committing"; ++i) {
    ASSERT_TRUE(h.Fire());
    if (h.InFlight("b1", "can-commit")) h.Answer("b1", "can-commit", ServerError());
  }
  EXPECT_EQ(h.engine().state(), "aborting");
  EXPECT_GT(h.now(), kT0 + milliseconds(kTimeoutMs));
  EXPECT_EQ(h.engine().View().reason(),
            "deadline passed while can-committing; branch \"b1\" had not answered can-commit "
            "(last error: HTTP 500: boom)");
  RunToEnd(h);
  EXPECT_EQ(h.engine().state(), "aborted");
  EXPECT_FALSE(h.sent_pre_commit());
}

TEST(ThreePc, YesVotesArrivingPastTheDeadlineDoNotPreCommit) {
  Harness h;
  h.Begin(Args(2));
  h.MakeAllDurable();
  h.Answer("b0", "can-commit", Ok());
  h.Advance(milliseconds(kTimeoutMs + 1));  // the timer has not fired yet
  h.Answer("b1", "can-commit", Ok());
  EXPECT_EQ(h.engine().state(), "aborting");
  EXPECT_EQ(CountKind(h.records(), v1::LogRecord::kPreCommit), 0);
}

TEST(ThreePc, BeginDurablePastTheDeadlineSendsNoCanCommit) {
  Harness h;
  h.Begin(Args(2));
  h.Advance(milliseconds(kTimeoutMs + 5));
  h.MakeAllDurable();
  EXPECT_EQ(h.engine().state(), "aborting");
  EXPECT_EQ(h.engine().View().reason(), "deadline passed while can-committing");
  RunToEnd(h);
  EXPECT_EQ(h.engine().state(), "aborted");
}

TEST(ThreePc, TheApplicationMayAbortOnlyWhileCanCommitting) {
  Harness h;
  h.Begin(Args(2));
  EXPECT_EQ(h.Commit().status().code(), StatusCode::kConflict) << "3pc commits by itself";
  EXPECT_EQ(h.Register().status().code(), StatusCode::kConflict);
  h.MakeAllDurable();
  h.Answer("b0", "can-commit", Ok());
  auto seq = h.Abort("changed my mind");
  ASSERT_TRUE(seq.ok()) << seq.status().ToString();
  EXPECT_EQ(h.engine().state(), "aborting");
  EXPECT_EQ(h.engine().View().reason(), "changed my mind");
  EXPECT_EQ(*h.Abort(), *seq) << "abort again: the same decision";
  EXPECT_EQ(h.Commit().status().code(), StatusCode::kConflict);
  h.Answer("b1", "can-commit", Ok());
  RunToEnd(h);
  EXPECT_EQ(h.engine().state(), "aborted");

  Harness p;
  ToPreCommitting(p, 2);
  // Emitted but not durable: the pre_commit record is on its way, a branch may soon be
  // pre-committed, so abort is refused already.
  const auto refused = p.Abort();
  EXPECT_EQ(refused.status().code(), StatusCode::kConflict);
  EXPECT_NE(refused.status().message().find("pre-committing"), std::string::npos);
  p.MakeAllDurable();
  EXPECT_EQ(p.Abort().status().code(), StatusCode::kConflict);
  EXPECT_EQ(p.Commit().status().code(), StatusCode::kConflict) << "not decided yet";
  RunToEnd(p);
  EXPECT_EQ(p.engine().state(), "committed");
}

// ================================================================================ pre-commit

TEST(ThreePc, ThePreCommitDeadlineCommitsWithoutEveryAcknowledgement) {
  Harness h;
  ToPreCommitting(h, 2);
  const Timestamp pre_deadline = FromProto(h.records().back().pre_commit().deadline());
  h.MakeAllDurable();
  h.Answer("b0", "pre-commit", Ok());
  h.Answer("b1", "pre-commit", NoReply());
  for (int i = 0; i < 200 && h.engine().state() == "pre-committing"; ++i) {
    ASSERT_TRUE(h.Fire());
    if (h.InFlight("b1", "pre-commit")) h.Answer("b1", "pre-commit", NoReply());
  }
  EXPECT_EQ(h.engine().state(), "committing");
  EXPECT_GT(h.now(), pre_deadline);
  EXPECT_EQ(h.BranchError("b1"), "no reply within 5000 ms") << "the lost acknowledgement shows";
  EXPECT_EQ(h.BranchState("b1"), "voted-yes");
  h.TakeSends();
  h.MakeAllDurable();
  EXPECT_EQ(Keys(h.TakeSends()), AllOf("commit", 2)) << "commit also to the silent branch";
  RunToEnd(h);
  EXPECT_EQ(h.engine().state(), "committed");
}

TEST(ThreePc, PreCommitDurableOnlyPastItsDeadlineCommitsAtOnce) {
  Harness h;
  ToPreCommitting(h, 2);
  h.Advance(milliseconds(kTimeoutMs + 1));
  h.MakeAllDurable();
  EXPECT_EQ(h.engine().state(), "committing");
  EXPECT_FALSE(h.sent_pre_commit()) << "no pre-commit past its deadline";
  RunToEnd(h);
  EXPECT_EQ(h.engine().state(), "committed");
}

TEST(ThreePc, ARefusedPreCommitCountsAsAnsweredAndTheCommitConflictShows) {
  // A participant that aborted on its own timeout before its pre-commit arrived answers 409.
  // The outcome is commit all the same (another branch may be pre-committed); its commit gets
  // 409 too, a participant-side inconsistency that the record keeps showing, retried forever.
  Harness h;
  ToPreCommitting(h, 2);
  h.MakeAllDurable();
  h.Answer("b0", "pre-commit", Refused());
  EXPECT_EQ(h.BranchState("b0"), "pre-commit-refused");
  EXPECT_NE(h.BranchError("b0").find("refused pre-commit"), std::string::npos);
  EXPECT_FALSE(h.InFlight("b0", "pre-commit")) << "a 409 to pre-commit is not retried";
  h.Answer("b1", "pre-commit", Ok());
  EXPECT_EQ(h.engine().state(), "committing");
  h.MakeAllDurable();
  h.Answer("b1", "commit", Ok());
  for (int i = 0; i < 20; ++i) {
    h.Answer("b0", "commit", Refused());
    h.MakeAllDurable();
    ASSERT_TRUE(h.Fire());
  }
  EXPECT_FALSE(h.engine().finished());
  EXPECT_EQ(h.engine().state(), "committing");
  EXPECT_NE(h.BranchError("b0").find("participant bug, retried: 409 to commit"), std::string::npos);
}

TEST(ThreePc, InProgressAndTransientPreCommitsAreRetried) {
  Harness h;
  ToPreCommitting(h, 1);
  h.MakeAllDurable();
  h.TakeSends();
  h.Answer("b0", "pre-commit", TooEarly());
  EXPECT_EQ(h.engine().WakeAt(), h.now() + milliseconds(100)) << "425: the initial interval";
  ASSERT_TRUE(h.Fire());
  auto sends = h.TakeSends();
  ASSERT_EQ(sends.size(), 1u);
  EXPECT_EQ(sends[0].phase, "pre-commit");
  EXPECT_EQ(sends[0].attempt, 2);
  h.Answer("b0", "pre-commit", ServerError());
  ASSERT_TRUE(h.Fire());
  sends = h.TakeSends();
  ASSERT_EQ(sends.size(), 1u);
  EXPECT_EQ(sends[0].attempt, 3);
  h.Answer("b0", "pre-commit", Ok());
  EXPECT_EQ(h.engine().state(), "committing");
}

TEST(ThreePc, PhaseTwoIsNeverGivenUp) {
  Harness h;
  ToPreCommitting(h, 1);
  h.MakeAllDurable();
  h.AnswerAll(Ok());
  h.MakeAllDurable();
  for (int i = 0; i < 50; ++i) {
    h.Answer("b0", "commit", NoReply());
    h.MakeAllDurable();
    ASSERT_TRUE(h.Fire());
  }
  EXPECT_EQ(h.engine().state(), "committing");
  h.Answer("b0", "commit", Ok());
  h.MakeAllDurable();
  EXPECT_EQ(h.engine().state(), "committed");
  EXPECT_EQ(h.engine().View().branches(0).attempts(), 51);
}

TEST(ThreePc, RetryNowSendsAWaitingRetryAtOnce) {
  Harness h;
  ToPreCommitting(h, 1);
  h.MakeAllDurable();
  h.AnswerAll(Ok());
  h.MakeAllDurable();
  for (int i = 0; i < 6; ++i) {  // a long backoff builds up
    h.Answer("b0", "commit", ServerError());
    h.MakeAllDurable();
    ASSERT_TRUE(h.Fire());
  }
  h.Answer("b0", "commit", ServerError());
  h.MakeAllDurable();
  ASSERT_TRUE(h.outstanding().empty());
  ASSERT_TRUE(h.engine().WakeAt().has_value());
  ASSERT_GT(*h.engine().WakeAt(), h.now());
  h.TakeSends();
  h.RetryNow();
  const std::vector<Send> sent = h.TakeSends();
  ASSERT_EQ(sent.size(), 1u) << "the waiting commit goes out without the clock moving";
  EXPECT_EQ(sent[0].phase, "commit");
  EXPECT_EQ(sent[0].attempt, 8);
  h.RetryNow();
  EXPECT_TRUE(h.TakeSends().empty()) << "a call in flight is left to finish";
}

// ================================================================================ resolve

// Two branches pre-committed and decided commit; b1 acknowledged its commit, b0's commit keeps
// failing and is still being retried.
void StuckInCommit(Harness& h) {
  ToPreCommitting(h, 2);
  h.MakeAllDurable();
  h.AnswerAll(Ok());
  h.MakeAllDurable();
  ASSERT_TRUE(h.engine().decided());
  h.Answer("b1", "commit", Ok());
  for (int i = 0; i < 3; ++i) {
    h.Answer("b0", "commit", ServerError());
    h.MakeAllDurable();
    ASSERT_TRUE(h.Fire());
  }
  h.MakeAllDurable();
  ASSERT_TRUE(h.InFlight("b0", "commit"));
  ASSERT_EQ(h.engine().state(), "committing");
}

TEST(ThreePcResolve, AStuckCommitResolvedByHandFinishesTheTransaction) {
  Harness h;
  StuckInCommit(h);
  const Send in_flight = h.outstanding().front();
  const size_t before = h.records().size();

  EXPECT_EQ(h.Resolve("nope", "committed").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(h.Resolve("b0", "maybe").status().code(), StatusCode::kInvalidArgument);
  const auto contradicts = h.Resolve("b0", "aborted");
  EXPECT_EQ(contradicts.status().code(), StatusCode::kConflict);
  EXPECT_NE(contradicts.status().message().find("decision"), std::string::npos);
  EXPECT_EQ(h.Resolve("b1", "committed").status().code(), StatusCode::kConflict)
      << "b1 acknowledged its commit: nothing is outstanding";
  EXPECT_EQ(h.records().size(), before) << "a refused resolve writes nothing";

  ASSERT_TRUE(h.Resolve("b0", "committed", "alice", "applied by hand").ok());
  ASSERT_EQ(CountKind(h.records(), v1::LogRecord::kResolved), 1);
  const v1::LogRecord& resolved = h.records()[before];
  ASSERT_TRUE(resolved.has_resolved());
  EXPECT_EQ(resolved.resolved().branch_id(), "b0");
  EXPECT_EQ(resolved.resolved().operator_(), "alice");
  EXPECT_EQ(resolved.resolved().reason(), "applied by hand");
  EXPECT_EQ(resolved.resolved().phase(), "commit");
  EXPECT_EQ(resolved.resolved().state(), "committed");
  EXPECT_EQ(resolved.resolved().attempts(), 4);
  EXPECT_EQ(resolved.resolved().last_error(), "HTTP 500: boom");
  EXPECT_EQ(h.records().back().end().final_state(), "committed") << "the end follows at once";
  h.MakeAllDurable();
  EXPECT_TRUE(h.engine().finished());
  EXPECT_EQ(h.engine().state(), "committed");
  EXPECT_EQ(h.BranchState("b0"), "committed");
  h.ExpectFoldMatchesView();
  h.DeliverStale(in_flight, Ok());
  EXPECT_EQ(h.Resolve("b0", "committed").status().code(), StatusCode::kConflict)
      << "a finished transaction has nothing outstanding";
}

TEST(ThreePcResolve, RecoveryReplaysTheResolveAndAsksOnlyTheOthers) {
  Harness h;
  StuckInCommit(h);
  const size_t before = h.records().size();
  ASSERT_TRUE(h.Resolve("b0", "committed").ok());
  h.MakeDurable(before + 1);  // the resolve is durable, the end is lost in the crash
  ASSERT_TRUE(h.Crash());
  EXPECT_EQ(h.BranchState("b0"), "committed");
  EXPECT_FALSE(h.InFlight("b0", "commit")) << "a resolved branch is not asked again";
  h.MakeAllDurable();
  RunToEnd(h);
  EXPECT_EQ(h.engine().state(), "committed");
  EXPECT_FALSE(h.InFlight("b0", "commit"));
  h.ExpectFoldMatchesView();
}

TEST(ThreePcResolve, RecoveryKeepsTheResolvedBranchsAttemptsAndError) {
  Harness h;
  StuckInCommit(h);
  const size_t before = h.records().size();
  ASSERT_TRUE(h.Resolve("b0", "committed").ok());
  ASSERT_EQ(h.records()[before].resolved().attempts(), 4);
  h.MakeDurable(before + 1);  // the resolve is durable, the end is lost in the crash
  ASSERT_TRUE(h.Crash());
  const v1::Branch b0 = h.engine().View().branches(0);
  ASSERT_EQ(b0.branch_id(), "b0");
  EXPECT_EQ(b0.state(), "committed");
  EXPECT_EQ(b0.attempts(), 4) << "the record keeps what the branch took, also after a restart";
  EXPECT_EQ(b0.last_error(), "HTTP 500: boom");
  h.MakeAllDurable();
  RunToEnd(h);
  EXPECT_EQ(h.engine().View().branches(0).attempts(), 4);
  h.ExpectFoldMatchesView();
}

TEST(ThreePcResolve, NothingBeforeTheDecisionAndAnAbortOnlyAsAborted) {
  Harness undecided;
  undecided.Begin(Args(2));
  undecided.MakeAllDurable();
  const auto early = undecided.Resolve("b0", "committed");
  EXPECT_EQ(early.status().code(), StatusCode::kConflict) << early.status().ToString();
  EXPECT_EQ(CountKind(undecided.records(), v1::LogRecord::kResolved), 0);

  Harness aborting;
  aborting.Begin(Args(2));
  aborting.MakeAllDurable();
  aborting.Answer("b0", "can-commit", Refused());
  aborting.MakeAllDurable();
  ASSERT_TRUE(aborting.engine().decided());
  ASSERT_TRUE(aborting.InFlight("b1", "abort") || aborting.InFlight("b1", "can-commit"));
  EXPECT_EQ(aborting.Resolve("b1", "committed").status().code(), StatusCode::kConflict);
  const auto r = aborting.Resolve("b1", "aborted", "bob", "rolled back by hand");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  aborting.MakeAllDurable();
  RunToEnd(aborting);
  EXPECT_EQ(aborting.engine().state(), "aborted");
  EXPECT_EQ(aborting.BranchState("b1"), "aborted");
  aborting.ExpectFoldMatchesView();
}

// ================================================================================ stale replies

TEST(ThreePc, DuplicateAndLateRepliesAreIgnored) {
  Harness h;
  h.Begin(Args(2));
  h.MakeAllDurable();
  const std::vector<Send> can_commits = h.TakeSends();
  ASSERT_EQ(can_commits.size(), 2u);
  h.Answer("b0", "can-commit", NoReply());
  ASSERT_TRUE(h.Fire());  // b0's second can-commit
  // The first attempt's reply, arriving late: ignored, whatever it says.
  h.DeliverStale(can_commits[0], Refused());
  h.DeliverStale(can_commits[0], Ok());
  h.AnswerAll(Ok());
  ASSERT_TRUE(PreCommitEmitted(h));
  // A duplicate of an answered can-commit, once pre-committing.
  Send second = can_commits[0];
  second.attempt = 2;
  h.DeliverStale(second, Refused());
  h.TakeSends();
  h.MakeAllDurable();
  const std::vector<Send> pre_commits = h.TakeSends();
  ASSERT_EQ(pre_commits.size(), 2u);
  h.Answer(pre_commits[0].branch_id, "pre-commit", Ok());
  h.DeliverStale(pre_commits[0], Refused());  // duplicate of an answered pre-commit
  h.Answer(pre_commits[1].branch_id, "pre-commit", Ok());
  ASSERT_EQ(h.engine().state(), "committing");
  h.DeliverStale(pre_commits[1], Ok());  // a pre-commit reply after the decision
  h.MakeAllDurable();
  const std::vector<Send> commits = h.TakeSends();
  h.AnswerAll(Ok());
  h.MakeAllDurable();
  ASSERT_TRUE(h.engine().finished());
  h.DeliverStale(commits[0], ServerError());  // after the end
  Send unknown = commits[0];
  unknown.branch_id = "nobody";
  h.DeliverStale(unknown, Ok());
  EXPECT_EQ(h.engine().state(), "committed");
}

// ================================================================================ recovery

// What a prefix of a run's records says, and so how recovery must resume.
struct PrefixExpectation {
  std::vector<std::string> branches;
  bool pre_commit = false;
  v1::Outcome decision = v1::OUTCOME_UNSPECIFIED;
  std::string end;
  std::set<std::string> acked;
};

PrefixExpectation Expect(const std::vector<v1::LogRecord>& prefix) {
  PrefixExpectation e;
  std::map<std::string, std::string> last_state;
  for (const v1::LogRecord& r : prefix) {
    if (r.has_begin()) {
      for (const auto& b : r.begin().branches()) e.branches.push_back(b.branch_id());
    } else if (r.has_pre_commit()) {
      e.pre_commit = true;
    } else if (r.has_decision()) {
      e.decision = r.decision().outcome();
    } else if (r.has_branch_outcome()) {
      last_state[r.branch_outcome().branch_id()] = r.branch_outcome().state();
    } else if (r.has_end()) {
      e.end = r.end().final_state();
    }
  }
  const std::string acked = e.decision == v1::OUTCOME_COMMIT ? "committed" : "aborted";
  for (const auto& [id, state] : last_state) {
    if (e.decision != v1::OUTCOME_UNSPECIFIED && state == acked) e.acked.insert(id);
  }
  return e;
}

std::vector<std::string> Want(const std::string& phase, const PrefixExpectation& e,
                              bool skip_acked) {
  std::vector<std::string> want;
  for (const std::string& b : e.branches) {
    if (!skip_acked || e.acked.count(b) == 0) want.push_back(phase + ":" + b);
  }
  std::sort(want.begin(), want.end());
  return want;
}

// Recovers from every prefix of `records` (what the log may hold after a crash) and checks the
// termination rule: decided → that decision again; pre_commit durable → commit; else → abort.
void CheckEveryPrefix(const std::vector<v1::LogRecord>& records) {
  for (size_t k = 1; k <= records.size(); ++k) {
    SCOPED_TRACE("prefix of " + std::to_string(k) + " of " + std::to_string(records.size()));
    const std::vector<v1::LogRecord> prefix(records.begin(),
                                            records.begin() + static_cast<std::ptrdiff_t>(k));
    const PrefixExpectation e = Expect(prefix);
    Harness h(100 + k);
    h.SetNow(FromProto(records.back().at()) + milliseconds(1000));  // after the run's records
    const Status s = h.RecoverFrom(prefix);
    ASSERT_TRUE(s.ok()) << s.ToString();
    const std::vector<Send> sends = h.TakeSends();
    const std::vector<v1::LogRecord> emitted = h.RecordsFrom(k);
    if (!e.end.empty()) {
      EXPECT_TRUE(h.engine().finished());
      EXPECT_EQ(h.engine().state(), e.end);
      EXPECT_TRUE(sends.empty());
      EXPECT_TRUE(emitted.empty());
      h.ExpectFoldMatchesView();
      continue;
    }
    std::string final_state;
    if (e.decision != v1::OUTCOME_UNSPECIFIED) {
      const bool commit = e.decision == v1::OUTCOME_COMMIT;
      final_state = commit ? "committed" : "aborted";
      EXPECT_TRUE(h.engine().decided());
      const auto want = Want(commit ? "commit" : "abort", e, /*skip_acked=*/true);
      EXPECT_EQ(Keys(sends), want);
      if (!want.empty()) {
        EXPECT_TRUE(emitted.empty());
      }
    } else if (e.pre_commit) {
      final_state = "committed";
      EXPECT_EQ(h.engine().state(), "committing") << "pre_commit durable: Skeen's rule commits";
      ASSERT_FALSE(emitted.empty());
      EXPECT_EQ(emitted[0].decision().outcome(), v1::OUTCOME_COMMIT);
      EXPECT_TRUE(sends.empty()) << "no commit before the decision is durable";
      h.MakeAllDurable();
      EXPECT_EQ(Keys(h.TakeSends()), Want("commit", e, false));
    } else {
      final_state = "aborted";
      EXPECT_EQ(h.engine().state(), "aborting") << "no pre_commit: nobody is pre-committed";
      ASSERT_FALSE(emitted.empty());
      EXPECT_EQ(emitted[0].decision().outcome(), v1::OUTCOME_ABORT);
      EXPECT_NE(emitted[0].decision().reason().find("coordinator restarted"), std::string::npos);
      EXPECT_TRUE(sends.empty());
      h.MakeAllDurable();
      EXPECT_EQ(Keys(h.TakeSends()), Want("abort", e, false));
    }
    RunToEnd(h);
    EXPECT_EQ(h.engine().state(), final_state);
    const v1::Transaction view = h.engine().View();
    for (const v1::Branch& b : view.branches()) EXPECT_EQ(b.state(), final_state);
    h.ExpectFoldMatchesView();
  }
}

// A commit with failures in every phase (logged at powers of two).
std::vector<v1::LogRecord> CommitRun() {
  Harness h(3);
  h.Begin(Args(3));
  h.MakeAllDurable();
  h.Answer("b0", "can-commit", ServerError());
  h.Answer("b1", "can-commit", Ok());
  h.Answer("b2", "can-commit", TooEarly());
  h.MakeAllDurable();
  for (int i = 0; i < 10 && !PreCommitEmitted(h); ++i) {
    EXPECT_TRUE(h.Fire());
    h.AnswerAll(Ok());
  }
  h.MakeAllDurable();
  EXPECT_EQ(h.engine().state(), "pre-committing");
  h.Answer("b0", "pre-commit", Ok());
  h.Answer("b1", "pre-commit", NoReply());
  h.Answer("b2", "pre-commit", Ok());
  h.MakeAllDurable();
  for (int i = 0; i < 10 && h.engine().state() == "pre-committing"; ++i) {
    EXPECT_TRUE(h.Fire());
    h.AnswerAll(Ok());
  }
  h.MakeAllDurable();
  h.Answer("b2", "commit", ServerError());
  h.MakeAllDurable();
  RunToEnd(h);
  EXPECT_EQ(h.engine().state(), "committed");
  return h.records();
}

std::vector<v1::LogRecord> AbortRun() {
  Harness h(4);
  h.Begin(Args(2));
  h.MakeAllDurable();
  h.Answer("b0", "can-commit", Ok());
  h.Answer("b1", "can-commit", Refused());
  h.MakeAllDurable();
  h.Answer("b0", "abort", ServerError());
  h.MakeAllDurable();
  RunToEnd(h);
  EXPECT_EQ(h.engine().state(), "aborted");
  return h.records();
}

std::vector<v1::LogRecord> PreCommitDeadlineRun() {
  Harness h(5);
  ToPreCommitting(h, 2);
  h.MakeAllDurable();
  h.Answer("b0", "pre-commit", Ok());
  h.Answer("b1", "pre-commit", NoReply());
  for (int i = 0; i < 200 && h.engine().state() == "pre-committing"; ++i) {
    EXPECT_TRUE(h.Fire());
    if (h.InFlight("b1", "pre-commit")) h.Answer("b1", "pre-commit", NoReply());
  }
  RunToEnd(h);
  EXPECT_EQ(h.engine().state(), "committed");
  return h.records();
}

TEST(ThreePcRecovery, EveryPrefixOfACommit) {
  const auto records = CommitRun();
  ASSERT_GT(records.size(), 12u);
  ASSERT_EQ(CountKind(records, v1::LogRecord::kPreCommit), 1);
  CheckEveryPrefix(records);
}

TEST(ThreePcRecovery, EveryPrefixOfAnAbort) { CheckEveryPrefix(AbortRun()); }

TEST(ThreePcRecovery, EveryPrefixOfAPreCommitDeadlineCommit) {
  CheckEveryPrefix(PreCommitDeadlineRun());
}

TEST(ThreePcRecovery, APreCommitRecordLostInTheCrashMeansAbort) {
  Harness h;
  ToPreCommitting(h, 2);  // the pre_commit record is emitted, not durable
  ASSERT_TRUE(h.Crash());
  EXPECT_EQ(h.engine().state(), "aborting");
  RunToEnd(h);
  EXPECT_EQ(h.engine().state(), "aborted");
  EXPECT_FALSE(h.sent_pre_commit());
  EXPECT_FALSE(h.sent_commit());
}

TEST(ThreePcRecovery, ACrashAfterPreCommitsWentOutCommits) {
  Harness h;
  ToPreCommitting(h, 2);
  h.MakeAllDurable();
  h.Answer("b0", "pre-commit", Ok());  // b1's pre-commit is still in flight: b0 is pre-committed
  ASSERT_TRUE(h.Crash());
  EXPECT_EQ(h.engine().state(), "committing");
  EXPECT_EQ(h.Abort().status().code(), StatusCode::kConflict);
  RunToEnd(h);
  EXPECT_EQ(h.engine().state(), "committed");
  EXPECT_FALSE(h.sent_abort());
}

LoggedTransaction Logged(std::vector<v1::LogRecord> records) {
  LoggedTransaction t;
  t.summary.gtid = "tx-3";
  t.summary.protocol = "3pc";
  t.summary.state = "can-committing";
  t.summary.created_at = kT0;
  t.summary.updated_at = kT0;
  t.summary.record_count = static_cast<int64_t>(records.size());
  t.records = std::move(records);
  return t;
}

Status RecoverStatus(const LoggedTransaction& t) {
  Effects fx;
  auto e = RecoverEngine(kT0, t, Options(), 1, fx);
  if (!e.ok()) {
    EXPECT_TRUE(fx.append.empty() && fx.send.empty());
  }
  return e.ok() ? Status::Ok() : e.status();
}

v1::LogRecord Rec(v1::LogRecord r) {
  r.set_gtid("tx-3");
  *r.mutable_at() = ToProto(kT0);
  return r;
}

TEST(ThreePcRecovery, CorruptInputsAreErrorsNotCrashes) {
  Harness h;
  h.Begin(Args(2));
  const v1::LogRecord begin = h.records()[0];
  v1::LogRecord pre;
  pre.set_tx_state("pre-committing");
  *pre.mutable_pre_commit()->mutable_deadline() = ToProto(kT0 + milliseconds(1));
  pre = Rec(pre);
  v1::LogRecord abort;
  abort.mutable_decision()->set_outcome(v1::OUTCOME_ABORT);
  abort = Rec(abort);
  v1::LogRecord registered;
  registered.mutable_branch_registered()->mutable_branch()->set_branch_id("b9");
  registered = Rec(registered);

  EXPECT_TRUE(RecoverStatus(Logged({begin})).ok()) << "the well-formed control";
  EXPECT_TRUE(RecoverStatus(Logged({begin, pre})).ok());
  EXPECT_EQ(RecoverStatus(Logged({begin, pre, pre})).code(), StatusCode::kCorruption);
  EXPECT_EQ(RecoverStatus(Logged({begin, pre, abort})).code(), StatusCode::kCorruption)
      << "an abort after the pre_commit record";
  EXPECT_EQ(RecoverStatus(Logged({begin, registered})).code(), StatusCode::kCorruption);
  EXPECT_EQ(RecoverStatus(Logged({pre})).code(), StatusCode::kCorruption) << "no begin";
  v1::LogRecord one_phase = begin;
  one_phase.mutable_begin()->set_one_phase(true);
  EXPECT_EQ(RecoverStatus(Logged({one_phase})).code(), StatusCode::kCorruption);
  v1::LogRecord two_pc = begin;
  two_pc.mutable_begin()->set_protocol("2pc");
  EXPECT_EQ(RecoverStatus(Logged({two_pc})).code(), StatusCode::kCorruption);

  // A pre_commit record in a 2pc transaction is corrupt for the 2pc engine too.
  LoggedTransaction t = Logged({two_pc, pre});
  t.summary.protocol = "2pc";
  EXPECT_EQ(RecoverStatus(t).code(), StatusCode::kCorruption);
}

// ================================================================================ log rules

TEST(ThreePcLogRules, ThePreCommitRecordComesOnceOnlyIn3pcAndOnlyACommitFollows) {
  auto log = OpenMemoryLog(NewMemoryLogStore());
  Harness h;
  h.Begin(Args(2));
  v1::LogRecord begin = h.records()[0];
  v1::LogRecord pre;
  pre.set_tx_state("pre-committing");
  *pre.mutable_pre_commit()->mutable_deadline() = ToProto(kT0 + milliseconds(1));
  pre = Rec(pre);
  v1::LogRecord abort;
  abort.set_tx_state("aborting");
  abort.mutable_decision()->set_outcome(v1::OUTCOME_ABORT);
  abort = Rec(abort);
  v1::LogRecord commit = abort;
  commit.set_tx_state("committing");
  commit.mutable_decision()->set_outcome(v1::OUTCOME_COMMIT);

  // In 2pc: refused.
  v1::LogRecord two_pc = begin;
  two_pc.set_gtid("tx-2");
  two_pc.mutable_begin()->set_protocol("2pc");
  v1::LogRecord pre2 = pre;
  pre2.set_gtid("tx-2");
  ASSERT_TRUE(log->Append({two_pc}).ok());
  EXPECT_FALSE(log->Append({pre2}).ok());

  // tx_state pre-committing on anything but pre_commit: refused.
  v1::LogRecord outcome;
  outcome.set_tx_state("pre-committing");
  outcome.mutable_branch_outcome()->set_branch_id("b0");
  outcome.mutable_branch_outcome()->set_state("voted-yes");
  outcome = Rec(outcome);
  ASSERT_TRUE(log->Append({begin}).ok());
  EXPECT_FALSE(log->Append({outcome}).ok());
  // Without the right tx_state, or without a deadline: refused.
  v1::LogRecord no_state = pre;
  no_state.clear_tx_state();
  EXPECT_FALSE(log->Append({no_state}).ok());
  v1::LogRecord no_deadline = pre;
  no_deadline.mutable_pre_commit()->clear_deadline();
  EXPECT_FALSE(log->Append({no_deadline}).ok());

  ASSERT_TRUE(log->Append({pre}).ok());
  EXPECT_EQ(log->Append({pre}).code(), StatusCode::kConflict) << "twice";
  EXPECT_EQ(log->Append({abort}).code(), StatusCode::kConflict) << "abort after pre_commit";
  ASSERT_TRUE(log->Append({commit}).ok());
  EXPECT_FALSE(log->Append({pre}).ok()) << "after the decision";
  auto logged = log->Read("tx-3");
  ASSERT_TRUE(logged.ok());
  EXPECT_EQ(logged->summary.state, "committing");
  EXPECT_EQ(logged->records.size(), 3u);
}

// ================================================================================ property

// Random replies (including duplicates and stale ones), random durability delays, timers and
// crashes, over many seeds: every run ends committed or aborted, the Harness's checks hold on
// every send, and a run that sent any pre-commit ends committed.
TEST(ThreePcProperty, RandomRepliesDurabilityAndCrashes) {
  const CallbackReply replies[] = {Ok(),      Ok(),       Ok(),          Ok(),
                                   Refused(), TooEarly(), ServerError(), NoReply()};
  int committed = 0, aborted = 0;
  for (uint64_t seed = 1; seed <= 400; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    Harness h(seed);
    h.Begin(Args(1 + static_cast<int>(rng() % 3), 2'000));
    bool pre_commit_sent = false;
    for (int step = 0; step < 400 && !h.engine().finished(); ++step) {
      switch (rng() % 6) {
        case 0:  // the log catches up some of the way
          if (h.durable() < h.records().size()) {
            h.MakeDurable(h.durable() + 1 + rng() % (h.records().size() - h.durable()));
          }
          break;
        case 1:
        case 2:
          if (!h.outstanding().empty()) {
            const CallbackReply& r = replies[rng() % 8];
            h.AnswerAt(rng() % h.outstanding().size(), r);
          }
          break;
        case 3:
          h.Advance(milliseconds(rng() % 700));
          h.Tick();
          break;
        case 4:
          if (rng() % 8 == 0) {
            if (!h.Crash()) step = 1000;  // the begin was never durable: nothing exists
          }
          break;
        case 5:
          if (rng() % 10 == 0) (void)h.Abort();
          break;
      }
      if (step >= 1000) break;
      for (const Send& s : h.TakeSends()) pre_commit_sent |= s.phase == "pre-commit";
    }
    if (h.records().empty() || h.durable() == 0) continue;
    if (!h.engine().finished()) RunToEnd(h);
    if (HasFatalFailure()) return;
    const std::string& state = h.engine().state();
    ASSERT_TRUE(state == "committed" || state == "aborted") << state;
    if (pre_commit_sent) {
      EXPECT_EQ(state, "committed") << "a pre-commit went out, then abort";
    }
    (state == "committed" ? committed : aborted)++;
  }
  EXPECT_GT(committed, 20);
  EXPECT_GT(aborted, 20);
}

}  // namespace
}  // namespace txcoord::coordinator
