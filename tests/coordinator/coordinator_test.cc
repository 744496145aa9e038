// The driver (coordinator.h) in process: a memory log, a fake transport whose participants the
// test scripts, the system clock with short timeouts. The engines have their own unit tests;
// these check the wiring: durability before replies, parking when the store fails, recovery,
// idempotent begin, waiting, concurrency.
#include "txcoord/coordinator/coordinator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "txcoord/coordinator/memory_log.h"
#include "txcoord/schemas/json.h"
#include "txcoord/testing/poll.h"

namespace txcoord::coordinator {
namespace {

using std::chrono::milliseconds;

// Participants as a function of the request; replies come from a separate thread, never inline.
class FakeTransport final : public CallbackTransport {
 public:
  using Script = std::function<CallbackReply(const CallbackRequest&)>;

  explicit FakeTransport(Script script) : script_(std::move(script)) {
    worker_ = std::thread([this] { Run(); });
  }
  ~FakeTransport() override { Shutdown(); }

  void Send(CallbackRequest request, std::function<void(CallbackReply)> done) override {
    {
      std::lock_guard lock(mu_);
      calls_.push_back(request);
      if (!stopped_) {
        queue_.emplace_back(std::move(request), std::move(done));
        cv_.notify_one();
        return;
      }
    }
    std::thread([done = std::move(done)] {
      done({ReplyClass::kTransient, 0, "stopped"});
    }).detach();
  }

  void Shutdown() override {
    {
      std::lock_guard lock(mu_);
      if (stopped_) return;
      stopped_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }

  void SetScript(Script script) {
    std::lock_guard lock(mu_);
    script_ = std::move(script);
  }

  std::vector<CallbackRequest> calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }
  // "branch:phase" of every call for `gtid`, in order.
  std::vector<std::string> CallsOf(const std::string& gtid) {
    std::vector<std::string> out;
    for (const auto& c : calls()) {
      if (c.gtid == gtid) out.push_back(c.branch_id + ":" + c.phase);
    }
    return out;
  }

 private:
  void Run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return stopped_ || !queue_.empty(); });
      if (queue_.empty() && stopped_) return;
      auto [request, done] = std::move(queue_.front());
      queue_.pop_front();
      Script script = script_;
      lock.unlock();
      CallbackReply reply =
          stopped_ ? CallbackReply{ReplyClass::kTransient, 0, "stopped"} : script(request);
      done(std::move(reply));
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  Script script_;
  std::deque<std::pair<CallbackRequest, std::function<void(CallbackReply)>>> queue_;
  std::vector<CallbackRequest> calls_;
  bool stopped_ = false;
  std::thread worker_;
};

// Generous: the machine is shared; a wrong implementation never gets there at all.
bool Eventually(const std::function<bool()>& done) {
  return testing::PollUntil(milliseconds(20'000), milliseconds(5), done);
}

CallbackReply Ok() { return {ReplyClass::kSuccess, 200, ""}; }
CallbackReply Refused() { return {ReplyClass::kRefused, 409, "HTTP 409: insufficient funds"}; }
CallbackReply Broken() { return {ReplyClass::kTransient, 500, "HTTP 500: boom"}; }

// A log whose appends fail while `failing` is set. AppendSoon returns at once and appends on a
// thread of its own, as the real backends' group commit does (its `done` comes from elsewhere).
class FlakyLog final : public ForwardingLog {
 public:
  using ForwardingLog::ForwardingLog;
  ~FlakyLog() override {
    ReleaseEnds();
    std::lock_guard lock(soon_mu_);
    for (std::thread& t : soon_threads_) t.join();
  }
  void AppendSoon(std::vector<v1::LogRecord> records, std::function<void(Status)> done) override {
    std::lock_guard lock(soon_mu_);
    soon_threads_.emplace_back(
        [this, records = std::move(records), done = std::move(done)]() mutable {
          done(Append(std::move(records)));
        });
  }
  std::atomic<bool> failing{false};
  std::atomic<int> delay_ms{0};  // each append takes this long: a slow store
  std::atomic<int> appends{0};   // appends begun
  Status Append(std::vector<v1::LogRecord> records) override {
    ++appends;
    if (const int ms = delay_ms; ms > 0) std::this_thread::sleep_for(milliseconds(ms));
    const bool has_end = std::any_of(records.begin(), records.end(),
                                     [](const v1::LogRecord& r) { return r.has_end(); });
    if (has_end) {
      std::unique_lock lock(ends_mu_);
      ++ends_waiting_;
      ends_cv_.notify_all();
      ends_cv_.wait(lock, [&] { return !hold_ends_; });
      --ends_waiting_;
      if (fail_ends_) return Status::Unavailable("store down for end records (test)");
    }
    if (failing) return Status::Unavailable("store down (test)");
    return ForwardingLog::Append(std::move(records));
  }

  // Appends holding an `end` record wait while held; released, they go on, or fail with `fail`.
  void HoldEnds() {
    std::lock_guard lock(ends_mu_);
    hold_ends_ = true;
  }
  void ReleaseEnds(bool fail = false) {
    std::lock_guard lock(ends_mu_);
    hold_ends_ = false;
    fail_ends_ = fail;
    ends_cv_.notify_all();
  }
  int EndsWaiting() {
    std::lock_guard lock(ends_mu_);
    return ends_waiting_;
  }

 private:
  std::mutex ends_mu_;
  std::condition_variable ends_cv_;
  bool hold_ends_ = false;  // GUARDED_BY(ends_mu_)
  bool fail_ends_ = false;  // GUARDED_BY(ends_mu_)
  int ends_waiting_ = 0;    // GUARDED_BY(ends_mu_)
  std::mutex soon_mu_;
  std::vector<std::thread> soon_threads_;  // GUARDED_BY(soon_mu_)
};

CoordinatorOptions FastOptions() {
  CoordinatorOptions o;
  o.engine.retry.initial = milliseconds(5);
  o.engine.retry.max = milliseconds(20);
  o.engine.retry.callback = milliseconds(500);
  o.recovery_interval = milliseconds(50);
  o.wait_grace = milliseconds(500);
  o.event_threads = 4;
  return o;
}

v1::BeginRequest TwoPc(const std::string& gtid, int branches = 2, int timeout_ms = 2000) {
  v1::BeginRequest r;
  r.set_gtid(gtid);
  r.set_protocol("2pc");
  r.set_timeout_ms(timeout_ms);
  r.set_wait(true);
  for (int i = 0; i < branches; ++i) {
    v1::Branch* b = r.add_branches();
    b->set_branch_id("b" + std::to_string(i));
    b->set_url("http://127.0.0.1:9/bank" + std::to_string(i));
    b->mutable_payload()->set_number_value(i);
  }
  return r;
}

class CoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void TearDown() override { Close(); }

  void Open() {
    log_ = OpenMemoryLog(store_);
    flaky_ = std::make_unique<FlakyLog>(log_.get());
    coordinator_ = std::make_unique<Coordinator>(*flaky_, transport_, SystemClock(), options_);
    ASSERT_TRUE(coordinator_->Start().ok());
  }
  void Close() {
    if (flaky_) flaky_->ReleaseEnds();  // a failed test may have left end records held
    if (coordinator_) coordinator_->Stop();
    coordinator_.reset();
    flaky_.reset();
    log_.reset();
  }
  // A crash: the process goes away, the store stays.
  void Restart() {
    Close();
    Open();
  }

  std::string StoredState(const std::string& gtid) {
    auto tx = log_->Read(gtid);
    return tx.ok() ? tx->summary.state : tx.status().ToString();
  }

  std::shared_ptr<MemoryLogStore> store_ = NewMemoryLogStore();
  std::unique_ptr<TransactionLog> log_;
  std::unique_ptr<FlakyLog> flaky_;
  FakeTransport transport_{[](const CallbackRequest&) { return Ok(); }};
  CoordinatorOptions options_ = FastOptions();
  std::unique_ptr<Coordinator> coordinator_;
};

TEST_F(CoordinatorTest, TwoPhaseCommitWithWaitAnswersCommittedOnceEveryBranchCommitted) {
  auto reply =
      coordinator_->Begin(TwoPc("t1"), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->http_status, 200);
  EXPECT_EQ(reply->transaction.state(), "committed");
  for (const auto& b : reply->transaction.branches()) EXPECT_EQ(b.state(), "committed");
  // The end record follows the reply (see the next test).
  ASSERT_TRUE(Eventually([&] { return StoredState("t1") == "committed"; }));
  EXPECT_EQ(transport_.CallsOf("t1"),
            (std::vector<std::string>{"b0:prepare", "b1:prepare", "b0:commit", "b1:commit"}));
  for (const auto& c : transport_.calls()) {
    EXPECT_EQ(c.traceparent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    EXPECT_NE(c.body.find("\"gtid\":\"t1\""), std::string::npos) << c.body;
  }
  EXPECT_EQ(transport_.calls()[0].url, "http://127.0.0.1:9/bank0/prepare");
  // Every body is the contract's Callback, with the branch's payload untouched.
  for (const auto& c : transport_.calls()) {
    v1::Callback body;
    ASSERT_TRUE(JsonToMessage(c.body, &body).ok()) << c.body;
    EXPECT_EQ(body.gtid(), "t1");
    EXPECT_EQ(body.branch_id(), c.branch_id);
    EXPECT_EQ(body.phase(), c.phase);
    EXPECT_EQ(body.payload().number_value(), c.branch_id == "b0" ? 0 : 1) << c.body;
  }
}

// The outcome is settled once the decision is durable and every branch acknowledged it; the
// `wait` reply says so without waiting for the end record's append, and the transaction stays
// in memory, shown with its final state, until that append is done.
TEST_F(CoordinatorTest, AWaitReplyDoesNotWaitForTheEndRecord) {
  flaky_->HoldEnds();
  auto reply = coordinator_->Begin(TwoPc("s1"), "");
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->http_status, 200);
  EXPECT_EQ(reply->transaction.state(), "committed");
  ASSERT_TRUE(Eventually([&] { return flaky_->EndsWaiting() == 1; }));
  EXPECT_EQ(StoredState("s1"), "committing");  // the decision is durable, the end is not yet
  auto seen = coordinator_->Get("s1");
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(seen->state(), "committed");
  // Commands meanwhile are answered as for a finished transaction.
  auto again = coordinator_->Begin(TwoPc("s1"), "");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->http_status, 200);
  EXPECT_EQ(again->transaction.state(), "committed");
  EXPECT_EQ(coordinator_->Abort("s1", false).status().code(), StatusCode::kConflict);
  EXPECT_EQ(coordinator_->Retry("s1").status().code(), StatusCode::kConflict);
  flaky_->ReleaseEnds();
  ASSERT_TRUE(Eventually([&] { return StoredState("s1") == "committed"; }));
  EXPECT_EQ(transport_.CallsOf("s1"),
            (std::vector<std::string>{"b0:prepare", "b1:prepare", "b0:commit", "b1:commit"}));
}

// The same for tcc, whose commit command is what waits.
TEST_F(CoordinatorTest, ATccCommitWithWaitDoesNotWaitForTheEndRecord) {
  v1::BeginRequest r;
  r.set_gtid("s2");
  r.set_protocol("tcc");
  r.set_timeout_ms(5000);
  ASSERT_TRUE(coordinator_->Begin(r, "").ok());
  v1::Branch b;
  b.set_branch_id("debit");
  b.set_url("http://127.0.0.1:9/bank");
  ASSERT_TRUE(coordinator_->RegisterBranch("s2", b).ok());
  flaky_->HoldEnds();
  auto committed = coordinator_->Commit("s2", true);
  ASSERT_TRUE(committed.ok()) << committed.status().ToString();
  EXPECT_EQ(committed->http_status, 200);
  EXPECT_EQ(committed->transaction.state(), "committed");
  EXPECT_EQ(StoredState("s2"), "committing");
  auto repeated = coordinator_->Commit("s2", false);  // a retried commit: the same answer
  ASSERT_TRUE(repeated.ok()) << repeated.status().ToString();
  EXPECT_EQ(repeated->http_status, 200);
  EXPECT_EQ(repeated->transaction.state(), "committed");
  EXPECT_EQ(coordinator_->Abort("s2", false).status().code(), StatusCode::kConflict);
  flaky_->ReleaseEnds();
  ASSERT_TRUE(Eventually([&] { return StoredState("s2") == "committed"; }));
}

// The end record's append fails after the reply went out: nothing the client was told is lost.
// The transaction is parked and recovery, finding the commit decision, sends phase 2 again (the
// barrier makes that a no-op at a participant) and ends it.
TEST_F(CoordinatorTest, AFailedEndAppendAfterTheReplyIsFinishedByRecovery) {
  flaky_->HoldEnds();
  auto reply = coordinator_->Begin(TwoPc("s3"), "");
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->transaction.state(), "committed");
  ASSERT_TRUE(Eventually([&] { return flaky_->EndsWaiting() == 1; }));
  flaky_->ReleaseEnds(/*fail=*/true);
  ASSERT_TRUE(Eventually([&] { return coordinator_->counters().parked >= 1; }));
  flaky_->ReleaseEnds(/*fail=*/false);  // recovery passes meanwhile may have failed again
  ASSERT_TRUE(Eventually([&] { return StoredState("s3") == "committed"; }));
  const auto calls = transport_.CallsOf("s3");
  EXPECT_GE(std::count(calls.begin(), calls.end(), "b0:commit"), 2)
      << ::testing::PrintToString(calls);
  EXPECT_GE(std::count(calls.begin(), calls.end(), "b1:commit"), 2);
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "b0:abort"), 0);
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "b1:abort"), 0);
}

TEST_F(CoordinatorTest, ACallbackWithoutPayloadOmitsIt) {
  auto request = TwoPc("nopayload", 1);
  request.mutable_branches(0)->clear_payload();
  ASSERT_TRUE(coordinator_->Begin(request, "").ok());
  ASSERT_EQ(transport_.calls().size(), 1u);
  EXPECT_EQ(transport_.calls()[0].body,
            R"({"gtid":"nopayload","branch_id":"b0","phase":"commit"})");
}

TEST_F(CoordinatorTest, AVoteNoAbortsEveryBranchAndNamesTheBranchInTheReason) {
  transport_.SetScript([](const CallbackRequest& r) {
    return r.branch_id == "b1" && r.phase == "prepare" ? Refused() : Ok();
  });
  auto reply = coordinator_->Begin(TwoPc("t2"), "");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->transaction.state(), "aborted");
  EXPECT_NE(reply->transaction.reason().find("b1"), std::string::npos);
  EXPECT_NE(reply->transaction.reason().find("insufficient funds"), std::string::npos);
  auto calls = transport_.CallsOf("t2");
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "b0:abort"), 1);
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "b1:abort"), 1);
  EXPECT_EQ(std::count_if(calls.begin(), calls.end(),
                          [](const std::string& c) { return c.ends_with(":commit"); }),
            0);
}

TEST_F(CoordinatorTest, OnePhaseSendsASingleCommitMarkedOnePhase) {
  auto reply = coordinator_->Begin(TwoPc("t3", 1), "");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->transaction.state(), "committed");
  auto calls = transport_.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].phase, "commit");
  ASSERT_EQ(calls[0].extra_headers.size(), 1u);
  EXPECT_EQ(calls[0].extra_headers[0].first, "Tx-One-Phase");
}

TEST_F(CoordinatorTest, WithOnePhaseOffASingleBranchIsPreparedFirst) {
  Close();
  options_.engine.one_phase = false;
  Open();
  auto reply = coordinator_->Begin(TwoPc("t3b", 1), "");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->transaction.state(), "committed");
  EXPECT_EQ(transport_.CallsOf("t3b"), (std::vector<std::string>{"b0:prepare", "b0:commit"}));
  for (const auto& c : transport_.calls()) EXPECT_TRUE(c.extra_headers.empty());
}

TEST_F(CoordinatorTest, RepeatedBeginIsIdempotentAndADifferentBodyConflicts) {
  ASSERT_TRUE(coordinator_->Begin(TwoPc("t4"), "").ok());
  auto again = coordinator_->Begin(TwoPc("t4"), "");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->transaction.state(), "committed");
  auto other = coordinator_->Begin(TwoPc("t4", 3), "");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), StatusCode::kConflict);
  EXPECT_EQ(transport_.CallsOf("t4").size(), 4u);  // nothing ran twice
}

TEST_F(CoordinatorTest, BadRequestsAreRefusedAndNothingIsStored) {
  auto no_branches = coordinator_->Begin(TwoPc("bad1", 0), "");
  EXPECT_EQ(no_branches.status().code(), StatusCode::kInvalidArgument);
  auto forbidden = TwoPc("bad2");
  forbidden.mutable_branches(0)->set_url("http://10.1.2.3:80/bank");
  EXPECT_EQ(coordinator_->Begin(forbidden, "").status().code(), StatusCode::kPermissionDenied);
  auto dup = TwoPc("bad3");
  dup.mutable_branches(1)->set_branch_id("b0");
  EXPECT_EQ(coordinator_->Begin(dup, "").status().code(), StatusCode::kInvalidArgument);
  auto proto = TwoPc("bad4");
  proto.set_protocol("xa");
  EXPECT_EQ(coordinator_->Begin(proto, "").status().code(), StatusCode::kInvalidArgument);
  auto gtid = TwoPc("bad gtid");
  EXPECT_EQ(coordinator_->Begin(gtid, "").status().code(), StatusCode::kInvalidArgument);
  for (const char* g : {"bad1", "bad2", "bad3", "bad4"}) {
    EXPECT_EQ(coordinator_->Get(g).status().code(), StatusCode::kNotFound) << g;
  }
  EXPECT_TRUE(transport_.calls().empty());
}

TEST_F(CoordinatorTest, TccRegisterCommitAndTheConflictsAround) {
  v1::BeginRequest r;
  r.set_gtid("tcc1");
  r.set_protocol("tcc");
  r.set_timeout_ms(5000);
  auto begun = coordinator_->Begin(r, "");
  ASSERT_TRUE(begun.ok());
  EXPECT_EQ(begun->http_status, 202);
  EXPECT_EQ(begun->transaction.state(), "active");
  v1::Branch b;
  b.set_branch_id("debit");
  b.set_url("http://127.0.0.1:9/bank");
  ASSERT_TRUE(coordinator_->RegisterBranch("tcc1", b).ok());
  ASSERT_TRUE(coordinator_->RegisterBranch("tcc1", b).ok());  // twice is fine
  b.set_url("http://127.0.0.1:9/other");
  EXPECT_EQ(coordinator_->RegisterBranch("tcc1", b).status().code(), StatusCode::kConflict);
  auto committed = coordinator_->Commit("tcc1", true);
  ASSERT_TRUE(committed.ok());
  EXPECT_EQ(committed->transaction.state(), "committed");
  EXPECT_EQ(transport_.CallsOf("tcc1"), (std::vector<std::string>{"debit:commit"}));
  EXPECT_EQ(coordinator_->Abort("tcc1", false).status().code(), StatusCode::kConflict);
  auto again = coordinator_->Commit("tcc1", false);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->http_status, 200);
  EXPECT_EQ(coordinator_->RegisterBranch("tcc1", b).status().code(), StatusCode::kConflict);
  EXPECT_EQ(coordinator_->Commit("nope", false).status().code(), StatusCode::kNotFound);
}

TEST_F(CoordinatorTest, TccPastItsDeadlineIsAbortedByTheTimer) {
  v1::BeginRequest r;
  r.set_gtid("tcc2");
  r.set_protocol("tcc");
  r.set_timeout_ms(50);
  v1::Branch* b = r.add_branches();
  b->set_branch_id("x");
  b->set_url("http://127.0.0.1:9/bank");
  ASSERT_TRUE(coordinator_->Begin(r, "").ok());
  ASSERT_TRUE(Eventually([&] { return StoredState("tcc2") == "aborted"; }));
  EXPECT_EQ(transport_.CallsOf("tcc2"), (std::vector<std::string>{"x:abort"}));
  EXPECT_EQ(coordinator_->Commit("tcc2", false).status().code(), StatusCode::kConflict);
}

TEST_F(CoordinatorTest, PhaseTwoIsRetriedUntilTheParticipantAnswers) {
  std::atomic<int> commits{0};
  transport_.SetScript([&](const CallbackRequest& r) {
    if (r.phase == "commit" && r.branch_id == "b1" && ++commits < 6) return Broken();
    return Ok();
  });
  auto reply = coordinator_->Begin(TwoPc("t5"), "");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->transaction.state(), "committed");
  EXPECT_EQ(commits.load(), 6);
  auto tx = coordinator_->Get("t5");
  ASSERT_TRUE(tx.ok());
  EXPECT_EQ(tx->branches(1).attempts(), 6);
  EXPECT_EQ(tx->branches(1).last_error(), "HTTP 500: boom");
}

TEST_F(CoordinatorTest, AFailedAppendParksTheTransactionAndRecoveryFinishesIt) {
  // Prepares succeed, then the store fails before the decision: the client hears 503.
  std::atomic<int> prepared{0};
  transport_.SetScript([&](const CallbackRequest& r) {
    if (r.phase == "prepare" && ++prepared == 2) flaky_->failing = true;
    return Ok();
  });
  auto reply = coordinator_->Begin(TwoPc("t6"), "");
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(StoredState("t6"), "preparing");
  flaky_->failing = false;
  // Undecided when parked, so recovery aborts it (presumed abort) and tells every branch.
  ASSERT_TRUE(Eventually([&] { return StoredState("t6") == "aborted"; }));
  auto calls = transport_.CallsOf("t6");
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "b0:abort"), 1);
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "b1:abort"), 1);
  EXPECT_GE(coordinator_->counters().parked, 1);  // more if a pass ran while still down
}

TEST_F(CoordinatorTest, ARestartResumesDecidedTransactionsAndAbortsUndecidedOnes) {
  // Participants hang (transient) so nothing finishes before the "crash".
  transport_.SetScript(
      [](const CallbackRequest& r) { return r.phase == "commit" ? Broken() : Ok(); });
  auto committing = TwoPc("decided");
  committing.set_wait(false);
  ASSERT_TRUE(coordinator_->Begin(committing, "").ok());
  ASSERT_TRUE(Eventually([&] { return StoredState("decided") == "committing"; }));
  // "decided" keeps failing its commits until the restart: finished before it, it would not be
  // recovered at all.
  transport_.SetScript([](const CallbackRequest& r) {
    return r.phase == "prepare" || r.gtid == "decided" ? Broken() : Ok();
  });
  auto preparing = TwoPc("undecided", 2, 60'000);
  preparing.set_wait(false);
  ASSERT_TRUE(coordinator_->Begin(preparing, "").ok());
  Restart();
  transport_.SetScript([](const CallbackRequest&) { return Ok(); });
  ASSERT_TRUE(Eventually([&] {
    return StoredState("decided") == "committed" && StoredState("undecided") == "aborted";
  }));
  auto reason = coordinator_->Get("undecided");
  ASSERT_TRUE(reason.ok());
  EXPECT_NE(reason->reason().find("presumed abort"), std::string::npos);
  EXPECT_GE(coordinator_->counters().recovered, 2);
}

// `wait` lasts until the deadline plus the grace, also for a transaction resumed after a
// restart: a client retrying after a crash must not get an early 202.
TEST_F(CoordinatorTest, AWaitAfterARestartLastsUntilTheDeadlinePlusTheGrace) {
  v1::BeginRequest r;
  r.set_gtid("tcc-wait");
  r.set_protocol("tcc");
  r.set_timeout_ms(60'000);
  ASSERT_TRUE(coordinator_->Begin(r, "").ok());
  v1::Branch b;
  b.set_branch_id("debit");
  b.set_url("http://127.0.0.1:9/bank");
  ASSERT_TRUE(coordinator_->RegisterBranch("tcc-wait", b).ok());
  options_.wait_grace = milliseconds(100);
  Restart();
  // Time passing is the point: more than the grace since the restart resumed it, far from its
  // deadline. (Longer never makes a correct coordinator fail.)
  std::this_thread::sleep_for(milliseconds(250));
  // A participant slow enough that the reply cannot be terminal unless the wait waits for it.
  transport_.SetScript([](const CallbackRequest&) {
    std::this_thread::sleep_for(milliseconds(150));
    return Ok();
  });
  auto committed = coordinator_->Commit("tcc-wait", true);
  ASSERT_TRUE(committed.ok()) << committed.status().ToString();
  EXPECT_EQ(committed->http_status, 200);
  EXPECT_EQ(committed->transaction.state(), "committed");
}

// A begin for a gtid the log already holds (finished, so no longer in memory) is in memory for
// as long as its append takes to be refused. Meanwhile the stored transaction is the answer:
// a GET shows it, and a repeat of its own request gets it, not the newcomer's 409.
TEST_F(CoordinatorTest, ABeginTheLogWillRefuseDoesNotHideTheStoredTransaction) {
  auto first = coordinator_->Begin(TwoPc("again"), "");
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->transaction.state(), "committed");
  auto other = TwoPc("again");
  other.mutable_branches(0)->mutable_payload()->set_number_value(42);  // a different body

  flaky_->delay_ms = 400;
  const int appends_before = flaky_->appends;
  std::thread newcomer([&] {
    auto refused = coordinator_->Begin(other, "");
    EXPECT_EQ(refused.status().code(), StatusCode::kConflict) << refused.status().ToString();
  });
  EXPECT_TRUE(Eventually([&] { return flaky_->appends > appends_before; }))
      << "the newcomer's append never began";
  auto seen = coordinator_->Get("again");
  EXPECT_TRUE(seen.ok()) << seen.status().ToString();
  if (seen.ok()) {
    EXPECT_EQ(seen->state(), "committed");
    EXPECT_EQ(seen->branches(0).payload().number_value(), 0);
  }
  auto repeated = coordinator_->Begin(TwoPc("again"), "");
  newcomer.join();  // before any assertion can return
  ASSERT_TRUE(repeated.ok()) << repeated.status().ToString();
  EXPECT_EQ(repeated->http_status, 200);
  EXPECT_EQ(repeated->transaction.state(), "committed");
  flaky_->delay_ms = 0;
  EXPECT_EQ(transport_.CallsOf("again"),
            (std::vector<std::string>{"b0:prepare", "b1:prepare", "b0:commit", "b1:commit"}));
}

TEST_F(CoordinatorTest, ManyConcurrentTransactionsAllFinishAndShareCommits) {
  std::atomic<int> n{0};
  transport_.SetScript([&](const CallbackRequest& r) {
    // Every seventh transaction votes no on its second branch.
    const bool no =
        r.phase == "prepare" && r.branch_id == "b1" && std::stoi(r.gtid.substr(2)) % 7 == 0;
    ++n;
    return no ? Refused() : Ok();
  });
  std::vector<std::thread> clients;
  std::atomic<int> committed{0}, aborted{0}, failed{0};
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < 50; ++i) {
        auto reply = coordinator_->Begin(TwoPc("m-" + std::to_string(c * 50 + i)), "");
        if (!reply.ok()) {
          ++failed;
        } else if (reply->transaction.state() == "committed") {
          ++committed;
        } else if (reply->transaction.state() == "aborted") {
          ++aborted;
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(committed + aborted, 400);
  EXPECT_EQ(aborted.load(), (400 + 6) / 7);  // 0, 7, ..., 399
  // The last end records may still be on their way when the last reply arrives.
  EXPECT_TRUE(Eventually([&] { return coordinator_->counters().live == 0; }));
}

TEST_F(CoordinatorTest, StopWakesWaitingClientsWithTheCurrentState) {
  transport_.SetScript([](const CallbackRequest&) { return Broken(); });
  std::thread waiter([&] {
    auto reply = coordinator_->Begin(TwoPc("w1", 2, 60'000), "");
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    EXPECT_EQ(reply->http_status, 202);
    EXPECT_EQ(reply->transaction.state(), "preparing");
  });
  ASSERT_TRUE(Eventually([&] { return StoredState("w1") == "preparing"; }));
  coordinator_->Stop();
  waiter.join();
  EXPECT_EQ(coordinator_->Begin(TwoPc("w2"), "").status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace txcoord::coordinator
