// Unit tests of the pure parts of the log: the append rules, the fold, the group committer.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "log_internal.h"
#include "log_test_util.h"

namespace txcoord::coordinator {
namespace {

using namespace testutil;
using internal::ApplyRecord;

TEST(LogRules, BeginCreatesSummaryAndSecondBeginIsRefused) {
  std::optional<TransactionSummary> s;
  ASSERT_TRUE(ApplyRecord(Begin("g1", kEpochMs), &s).ok());
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->protocol, "2pc");
  EXPECT_EQ(s->state, "preparing");
  EXPECT_EQ(s->created_at, T(kEpochMs));
  EXPECT_EQ(s->deadline, T(kEpochMs + 10'000));
  EXPECT_FALSE(s->finished());
  EXPECT_EQ(ApplyRecord(Begin("g1", kEpochMs + 1), &s).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(s->created_at, T(kEpochMs)) << "a refused record must not change the summary";
}

TEST(LogRules, RecordWithoutBeginIsNotFound) {
  std::optional<TransactionSummary> s;
  EXPECT_EQ(ApplyRecord(Decision("g1", kEpochMs, v1::OUTCOME_ABORT), &s).code(),
            StatusCode::kNotFound);
  EXPECT_FALSE(s.has_value());
}

TEST(LogRules, DecisionNeverChanges) {
  std::optional<TransactionSummary> s;
  ASSERT_TRUE(ApplyRecord(Begin("g1", kEpochMs), &s).ok());
  ASSERT_TRUE(ApplyRecord(Decision("g1", kEpochMs + 1, v1::OUTCOME_COMMIT), &s).ok());
  EXPECT_TRUE(ApplyRecord(Decision("g1", kEpochMs + 2, v1::OUTCOME_COMMIT), &s).ok())
      << "the same decision again is a retried append, accepted";
  EXPECT_EQ(ApplyRecord(Decision("g1", kEpochMs + 3, v1::OUTCOME_ABORT), &s).code(),
            StatusCode::kConflict);
  EXPECT_EQ(s->decision, v1::OUTCOME_COMMIT);
  EXPECT_EQ(s->state, "committing");
}

TEST(LogRules, EndMustMatchDecisionAndNothingFollowsIt) {
  std::optional<TransactionSummary> s;
  ASSERT_TRUE(ApplyRecord(Begin("g1", kEpochMs), &s).ok());
  EXPECT_EQ(ApplyRecord(End("g1", kEpochMs + 1, "committed"), &s).code(), StatusCode::kConflict)
      << "committed without a durable commit decision";
  ASSERT_TRUE(ApplyRecord(End("g1", kEpochMs + 1, "aborted"), &s).ok()) << "presumed abort";
  EXPECT_TRUE(s->finished());
  EXPECT_EQ(s->state, "aborted");
  EXPECT_EQ(ApplyRecord(BranchOutcome("g1", kEpochMs + 2, "b0", "aborted"), &s).code(),
            StatusCode::kConflict);
  EXPECT_EQ(ApplyRecord(Decision("g1", kEpochMs + 2, v1::OUTCOME_ABORT), &s).code(),
            StatusCode::kConflict);

  std::optional<TransactionSummary> c;
  ASSERT_TRUE(ApplyRecord(Begin("g2", kEpochMs), &c).ok());
  ASSERT_TRUE(ApplyRecord(Decision("g2", kEpochMs + 1, v1::OUTCOME_COMMIT), &c).ok());
  EXPECT_EQ(ApplyRecord(End("g2", kEpochMs + 2, "aborted"), &c).code(), StatusCode::kConflict)
      << "a committed decision cannot end aborted";
  EXPECT_TRUE(ApplyRecord(End("g2", kEpochMs + 2, "committed"), &c).ok());
}

TEST(LogRules, MalformedRecordsAreInvalidArguments) {
  std::optional<TransactionSummary> s;
  auto bad_gtid = Begin("has space", kEpochMs);
  EXPECT_EQ(ApplyRecord(bad_gtid, &s).code(), StatusCode::kInvalidArgument);
  auto long_gtid = Begin(std::string(129, 'a'), kEpochMs);
  EXPECT_EQ(ApplyRecord(long_gtid, &s).code(), StatusCode::kInvalidArgument);
  auto no_time = Begin("g", kEpochMs);
  no_time.clear_at();
  EXPECT_EQ(ApplyRecord(no_time, &s).code(), StatusCode::kInvalidArgument);
  auto bad_protocol = Begin("g", kEpochMs, "4pc");
  EXPECT_EQ(ApplyRecord(bad_protocol, &s).code(), StatusCode::kInvalidArgument);
  auto dup_branch = Begin("g", kEpochMs);
  dup_branch.mutable_begin()->mutable_branches(1)->set_branch_id("b0");
  EXPECT_EQ(ApplyRecord(dup_branch, &s).code(), StatusCode::kInvalidArgument);
  auto no_body = Begin("g", kEpochMs);
  no_body.clear_begin();
  EXPECT_EQ(ApplyRecord(no_body, &s).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(s.has_value());

  ASSERT_TRUE(ApplyRecord(Begin("g", kEpochMs), &s).ok());
  auto terminal_without_end = Decision("g", kEpochMs, v1::OUTCOME_ABORT);
  terminal_without_end.set_tx_state("aborted");
  EXPECT_EQ(ApplyRecord(terminal_without_end, &s).code(), StatusCode::kInvalidArgument);
  auto end_mismatch = End("g", kEpochMs, "aborted");
  end_mismatch.set_tx_state("committed");
  EXPECT_EQ(ApplyRecord(end_mismatch, &s).code(), StatusCode::kInvalidArgument);
  auto no_outcome = Decision("g", kEpochMs, v1::OUTCOME_UNSPECIFIED);
  EXPECT_EQ(ApplyRecord(no_outcome, &s).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(s->finished());
}

TEST(LogRules, ADeadlineOutsideTheStorableRangeIsRefused) {
  std::optional<TransactionSummary> s;
  auto huge = Begin("g", kEpochMs);
  huge.mutable_begin()->mutable_deadline()->set_seconds(9'300'000'000'000'000);  // would overflow
  EXPECT_EQ(ApplyRecord(huge, &s).code(), StatusCode::kInvalidArgument);
  auto before_1970 = Begin("g", kEpochMs);
  before_1970.mutable_begin()->mutable_deadline()->set_seconds(-5);
  EXPECT_EQ(ApplyRecord(before_1970, &s).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(s.has_value());
  // And converting such a time never overflows, whoever asks.
  google::protobuf::Timestamp t;
  t.set_seconds(std::numeric_limits<int64_t>::max());
  EXPECT_GT(FromProto(t).time_since_epoch().count(), 0);
}

TEST(LogRules, ApplyBatchRejectsAWholeAppendButKeepsTheOthers) {
  internal::PendingAppend good, bad, later;
  good.records = {Begin("a", kEpochMs)};
  // Valid first record, invalid second: the whole append must go.
  bad.records = {Begin("b", kEpochMs), Decision("missing", kEpochMs, v1::OUTCOME_ABORT)};
  later.records = {Decision("a", kEpochMs + 1, v1::OUTCOME_COMMIT)};  // depends on `good`
  std::vector<internal::PendingAppend*> batch = {&good, &bad, &later};
  internal::SummaryMap summaries;
  for (const auto& g : internal::BatchGtids(batch)) summaries[g] = std::nullopt;
  std::vector<internal::EncodedRecord> out;
  const auto changed = internal::ApplyBatch(batch, &summaries, &out);
  EXPECT_TRUE(good.status.ok());
  EXPECT_EQ(bad.status.code(), StatusCode::kNotFound);
  EXPECT_TRUE(later.status.ok()) << later.status.ToString();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].kind, "begin");
  EXPECT_EQ(out[1].kind, "decision");
  EXPECT_EQ(changed, std::vector<std::string>{"a"});
  EXPECT_FALSE(summaries["b"].has_value()) << "the refused append's begin must not count";
  EXPECT_EQ(summaries["a"]->decision, v1::OUTCOME_COMMIT);
}

TEST(LogRules, DecodeRecordDetectsDamage) {
  const auto r = Begin("g", kEpochMs);
  std::string body;
  r.SerializeToString(&body);
  const uint32_t crc = internal::Checksum(body);
  ASSERT_TRUE(internal::DecodeRecord("g", 1, body, crc).ok());
  std::string flipped = body;
  flipped[flipped.size() / 2] ^= 0x20;
  EXPECT_EQ(internal::DecodeRecord("g", 1, flipped, crc).status().code(), StatusCode::kCorruption);
  EXPECT_EQ(internal::DecodeRecord("g", 1, body.substr(0, body.size() - 3), crc).status().code(),
            StatusCode::kCorruption)
      << "a torn (short) record";
  EXPECT_EQ(internal::DecodeRecord("other", 1, body, crc).status().code(), StatusCode::kCorruption);
}

TEST(Fold, RecordShowsBranchesAttemptsErrorsAndReason) {
  LoggedTransaction tx;
  tx.records = {Begin("g", kEpochMs), BranchOutcome("g", kEpochMs + 1, "b0", "prepared"),
                BranchOutcome("g", kEpochMs + 2, "b1", "failed", 3, "HTTP 500: disk full"),
                Decision("g", kEpochMs + 3, v1::OUTCOME_ABORT, "branch b1 answered 409"),
                BranchOutcome("g", kEpochMs + 4, "b0", "aborted", 2, "")};
  std::optional<TransactionSummary> s;
  for (const auto& r : tx.records) ASSERT_TRUE(ApplyRecord(r, &s).ok());
  tx.summary = *s;
  const v1::Transaction record = FoldRecord(tx);
  EXPECT_EQ(record.gtid(), "g");
  EXPECT_EQ(record.protocol(), "2pc");
  EXPECT_EQ(record.state(), "aborting");
  EXPECT_EQ(record.reason(), "branch b1 answered 409");
  EXPECT_EQ(record.created_at().seconds(), kEpochMs / 1000);
  EXPECT_EQ(record.updated_at().seconds(), (kEpochMs + 4) / 1000);
  ASSERT_EQ(record.branches_size(), 2);
  EXPECT_EQ(record.branches(0).branch_id(), "b0");
  EXPECT_EQ(record.branches(0).state(), "aborted");
  EXPECT_EQ(record.branches(0).attempts(), 2);
  EXPECT_EQ(record.branches(1).state(), "failed");
  EXPECT_EQ(record.branches(1).attempts(), 3);
  EXPECT_EQ(record.branches(1).last_error(), "HTTP 500: disk full");
  EXPECT_EQ(record.branches(1).url(), "http://127.0.0.1:7001/bank");
  EXPECT_FALSE(record.branches(0).has_payload()) << "payloads stay out of the public record";
}

TEST(Fold, RegisteredBranchesAppearOnceAndStepsStartPending) {
  LoggedTransaction tx;
  auto begin = Begin("s", kEpochMs, "saga", 0);
  auto* step = begin.mutable_begin()->add_steps();
  step->set_step_id("reserve");
  step->set_action("http://127.0.0.1:7003/credit/reserve");
  step->set_compensate("http://127.0.0.1:7003/credit/release");
  v1::LogRecord reg;
  reg.set_gtid("s");
  *reg.mutable_at() = ToProto(T(kEpochMs + 1));
  reg.mutable_branch_registered()->mutable_branch()->set_branch_id("x");
  tx.records = {begin, reg, reg};
  tx.summary.gtid = "s";
  const auto record = FoldRecord(tx);
  ASSERT_EQ(record.branches_size(), 1);
  EXPECT_EQ(record.branches(0).state(), "registered");
  ASSERT_EQ(record.steps_size(), 1);
  EXPECT_EQ(record.steps(0).state(), "pending");
  EXPECT_EQ(record.steps(0).compensate(), "http://127.0.0.1:7003/credit/release");
}

// Deterministic check of grouping: the first commit is held until 15 more appends are queued;
// they must then all go in one second commit.
TEST(GroupCommitter, AppendsArrivingDuringACommitShareTheNext) {
  std::atomic<int> calls{0};
  std::vector<size_t> group_sizes;
  std::atomic<internal::GroupCommitter*> self{nullptr};
  internal::GroupCommitter gc(64, [&](std::span<internal::PendingAppend* const> batch) {
    if (calls.fetch_add(1) == 0) {
      while (self.load()->queued() < 16) std::this_thread::yield();
    }
    group_sizes.push_back(batch.size());  // only one leader at a time: no race
    for (auto* p : batch) p->status = Status::Ok();
  });
  self = &gc;
  std::vector<std::thread> threads;
  threads.emplace_back([&] { EXPECT_TRUE(gc.Submit({Begin("first", kEpochMs)}).ok()); });
  while (gc.queued() < 1) std::this_thread::yield();
  for (int i = 0; i < 15; ++i) {
    threads.emplace_back(
        [&, i] { EXPECT_TRUE(gc.Submit({Begin("g" + std::to_string(i), kEpochMs)}).ok()); });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(group_sizes, (std::vector<size_t>{1, 15}));
  EXPECT_EQ(gc.stats().commits, 2);
  EXPECT_EQ(gc.stats().appends, 16);
  EXPECT_EQ(gc.stats().largest_group, 15);
}

// A backend that throws (an allocation failure, a library exception) fails its group with
// INTERNAL and leaves the committer working: the queue must not stay stuck behind it.
TEST(GroupCommitter, AThrowingCommitFailsItsGroupAndTheNextAppendStillCommits) {
  int calls = 0;
  internal::GroupCommitter gc(8, [&](std::span<internal::PendingAppend* const> batch) {
    if (++calls == 1) throw std::runtime_error("disk on fire");
    for (auto* p : batch) p->status = Status::Ok();
  });
  const Status first = gc.Submit({Begin("g1", kEpochMs)});
  EXPECT_EQ(first.code(), StatusCode::kInternal);
  EXPECT_NE(first.message().find("disk on fire"), std::string::npos);
  EXPECT_EQ(gc.queued(), 0u);
  EXPECT_TRUE(gc.Submit({Begin("g2", kEpochMs)}).ok());
}

TEST(GroupCommitter, MalformedRecordsNeverReachTheBackend) {
  int calls = 0;
  internal::GroupCommitter gc(8, [&](std::span<internal::PendingAppend* const> batch) {
    ++calls;
    for (auto* p : batch) p->status = Status::Ok();
  });
  EXPECT_EQ(gc.Submit({Begin("bad\xff", kEpochMs)}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(gc.Submit({Begin("ok", kEpochMs), Begin("", kEpochMs)}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(calls, 0);
}

TEST(GroupCommitter, MaxBatchBoundsAGroupAndEachAppendGetsItsOwnStatus) {
  internal::GroupCommitter* self = nullptr;
  std::atomic<int> calls{0};
  std::vector<size_t> sizes;
  internal::GroupCommitter gc(4, [&](std::span<internal::PendingAppend* const> batch) {
    if (calls.fetch_add(1) == 0) {
      while (self->queued() < 10) std::this_thread::yield();
    }
    sizes.push_back(batch.size());
    for (auto* p : batch) {
      p->status = p->records[0].gtid().ends_with("7") ? Status::Conflict("no seven") : Status::Ok();
    }
  });
  self = &gc;
  std::vector<std::thread> threads;
  std::vector<Status> results(10);
  threads.emplace_back([&] { results[0] = gc.Submit({Begin("g0", kEpochMs)}); });
  while (gc.queued() < 1) std::this_thread::yield();
  for (int i = 1; i < 10; ++i) {
    threads.emplace_back(
        [&, i] { results[i] = gc.Submit({Begin("g" + std::to_string(i), kEpochMs)}); });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(sizes, (std::vector<size_t>{1, 4, 4, 1}));
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(results[i].ok(), i != 7) << i;
  }
}

// SubmitSoon returns at once; with no other append coming, the committer's own thread commits
// the records after about kSoonDelay and calls `done` with the outcome.
TEST(GroupCommitter, ASoonAppendAloneIsCommittedByTheCommittersThread) {
  std::mutex mu;
  std::vector<std::string> committed;  // GUARDED_BY(mu)
  internal::GroupCommitter gc(8, [&](std::span<internal::PendingAppend* const> batch) {
    std::lock_guard lock(mu);
    for (auto* p : batch) {
      committed.push_back(p->records[0].gtid());
      p->status = Status::Ok();
    }
  });
  std::atomic<bool> called{false};
  std::atomic<int> code{-1};
  const auto start = std::chrono::steady_clock::now();
  gc.SubmitSoon({Begin("soon", kEpochMs)}, [&](Status s) {
    code = static_cast<int>(s.code());
    called = true;
  });
  // Generous: the machine is shared; a committer that never flushes never gets there at all.
  const auto give_up = start + std::chrono::seconds(20);
  while (!called && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_TRUE(called.load());
  EXPECT_GE(std::chrono::steady_clock::now() - start, internal::GroupCommitter::kSoonDelay)
      << "it did not wait for another append to share the commit";
  EXPECT_EQ(code.load(), static_cast<int>(StatusCode::kOk));
  std::lock_guard lock(mu);
  EXPECT_EQ(committed, (std::vector<std::string>{"soon"}));
  EXPECT_EQ(gc.stats().commits, 1);
}

// An append that comes within the delay takes the held records along: one commit for both,
// and `done` runs on the thread that led it, before its Submit returns.
TEST(GroupCommitter, ASoonAppendSharesTheNextAppendsCommit) {
  std::vector<size_t> sizes;
  internal::GroupCommitter gc(8, [&](std::span<internal::PendingAppend* const> batch) {
    sizes.push_back(batch.size());
    for (auto* p : batch) p->status = Status::Ok();
  });
  std::thread::id done_on;
  gc.SubmitSoon({Begin("end-of-one", kEpochMs)}, [&](Status s) {
    EXPECT_TRUE(s.ok());
    done_on = std::this_thread::get_id();
  });
  ASSERT_TRUE(gc.Submit({Begin("begin-of-next", kEpochMs)}).ok());
  EXPECT_EQ(done_on, std::this_thread::get_id());
  EXPECT_EQ(sizes, (std::vector<size_t>{2}));
  EXPECT_EQ(gc.stats().commits, 1);
  EXPECT_EQ(gc.stats().appends, 2);
}

// What is still held when the committer goes away is committed first; a malformed record is
// refused at once, without reaching the backend.
TEST(GroupCommitter, HeldAppendsAreCommittedOnDestructionAndBadOnesRefusedAtOnce) {
  int calls = 0;
  Status held = Status::Internal("not called");
  Status bad = Status::Internal("not called");
  {
    internal::GroupCommitter gc(8, [&](std::span<internal::PendingAppend* const> batch) {
      ++calls;
      for (auto* p : batch) p->status = Status::Conflict("the backend's answer");
    });
    gc.SubmitSoon({Begin("bad\xff", kEpochMs)}, [&](Status s) { bad = s; });
    EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
    gc.SubmitSoon({Begin("held", kEpochMs)}, [&](Status s) { held = s; });
  }
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(held.code(), StatusCode::kConflict) << "the backend's own status reaches done";
}

}  // namespace
}  // namespace txcoord::coordinator
