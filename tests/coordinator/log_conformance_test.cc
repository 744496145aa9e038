// One conformance suite for every backend of the transaction log.
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "log_backends.h"
#include "log_test_util.h"

namespace txcoord::coordinator {
namespace {

using namespace testutil;
using google::protobuf::util::MessageDifferencer;

template <typename Backend>
class LogConformance : public ::testing::Test {
 protected:
  void SetUp() override { log_ = Open(); }

  std::unique_ptr<TransactionLog> Open() {
    auto log = backend_.Open();
    EXPECT_TRUE(log.ok()) << log.status().ToString();
    return log.ok() ? std::move(log).value() : nullptr;
  }

  // A transaction that went all the way: begin, decision, branch outcomes, end.
  void AppendFinished(const std::string& gtid, int64_t at_ms, bool commit) {
    const auto outcome = commit ? v1::OUTCOME_COMMIT : v1::OUTCOME_ABORT;
    const std::string state = commit ? "committed" : "aborted";
    ASSERT_TRUE(log_->Append({Begin(gtid, at_ms)}).ok());
    ASSERT_TRUE(log_->Append({Decision(gtid, at_ms + 1, outcome)}).ok());
    ASSERT_TRUE(
        log_->Append({BranchOutcome(gtid, at_ms + 2, "b0", state),
                      BranchOutcome(gtid, at_ms + 2, "b1", state), End(gtid, at_ms + 3, state)})
            .ok());
  }

  Backend backend_;
  std::unique_ptr<TransactionLog> log_;
};

struct BackendName {
  template <typename T>
  static std::string GetName(int) {
    return T::kName;
  }
};
using Backends = ::testing::Types<MemoryBackend, SqliteBackend, PostgresBackend>;
TYPED_TEST_SUITE(LogConformance, Backends, BackendName);

TYPED_TEST(LogConformance, ReadGivesBackEveryRecordInAppendOrder) {
  auto& log = this->log_;
  ASSERT_NE(log, nullptr);
  std::vector<v1::LogRecord> all = {Begin("order-42", kEpochMs)};
  ASSERT_TRUE(log->Append({all[0]}).ok());
  all.push_back(BranchOutcome("order-42", kEpochMs + 5, "b0", "prepared"));
  all.push_back(BranchOutcome("order-42", kEpochMs + 6, "b1", "prepared"));
  ASSERT_TRUE(log->Append({all[1], all[2]}).ok());
  all.push_back(Decision("order-42", kEpochMs + 7, v1::OUTCOME_COMMIT));
  ASSERT_TRUE(log->Append({all[3]}).ok());

  auto tx = log->Read("order-42");
  ASSERT_TRUE(tx.ok()) << tx.status().ToString();
  ASSERT_EQ(tx->records.size(), all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(tx->records[i], all[i])) << i;
  }
  EXPECT_EQ(tx->summary.gtid, "order-42");
  EXPECT_EQ(tx->summary.protocol, "2pc");
  EXPECT_EQ(tx->summary.state, "committing");
  EXPECT_EQ(tx->summary.decision, v1::OUTCOME_COMMIT);
  EXPECT_EQ(tx->summary.created_at, T(kEpochMs));
  EXPECT_EQ(tx->summary.updated_at, T(kEpochMs + 7));
  EXPECT_EQ(tx->summary.deadline, T(kEpochMs + 10'000));
  EXPECT_FALSE(tx->summary.finished());
  // The payload survives byte for byte.
  EXPECT_EQ(tx->records[0]
                .begin()
                .branches(1)
                .payload()
                .struct_value()
                .fields()
                .at("amount")
                .number_value(),
            31);
  EXPECT_EQ(log->Read("nope").status().code(), StatusCode::kNotFound);
}

// All six record kinds go through the store and come back equal, for TCC and saga shapes too.
TYPED_TEST(LogConformance, EveryRecordKindRoundTrips) {
  auto& log = this->log_;
  ASSERT_NE(log, nullptr);
  std::vector<v1::LogRecord> tcc = {Begin("tcc-1", kEpochMs, "tcc", 0)};
  for (const char* id : {"debit", "credit"}) {
    v1::LogRecord reg;
    reg.set_gtid("tcc-1");
    *reg.mutable_at() = ToProto(T(kEpochMs + 1));
    auto* b = reg.mutable_branch_registered()->mutable_branch();
    b->set_branch_id(id);
    b->set_url(std::string("http://127.0.0.1:7001/") + id);
    b->mutable_payload()->set_string_value(id);
    tcc.push_back(reg);
  }
  std::vector<v1::LogRecord> saga = {Begin("saga-1", kEpochMs, "saga", 0)};
  auto* step = saga[0].mutable_begin()->add_steps();
  step->set_step_id("reserve");
  step->set_action("http://127.0.0.1:7003/credit/reserve");
  step->set_compensate("http://127.0.0.1:7003/credit/release");
  step->add_depends_on("check");
  v1::LogRecord outcome;
  outcome.set_gtid("saga-1");
  *outcome.mutable_at() = ToProto(T(kEpochMs + 2));
  outcome.set_tx_state("compensating");
  auto* o = outcome.mutable_step_outcome();
  o->set_step_id("reserve");
  o->set_phase("action");
  o->set_state("failed");
  o->set_attempts(4);
  o->set_last_error("HTTP 409: credit limit exceeded");
  saga.push_back(outcome);
  ASSERT_TRUE(log->Append(tcc).ok());
  ASSERT_TRUE(log->Append(saga).ok());

  for (const auto& [gtid, want] : {std::pair{"tcc-1", tcc}, std::pair{"saga-1", saga}}) {
    auto tx = log->Read(gtid);
    ASSERT_TRUE(tx.ok()) << tx.status().ToString();
    ASSERT_EQ(tx->records.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_TRUE(MessageDifferencer::Equals(tx->records[i], want[i])) << gtid << " " << i;
    }
  }
  const auto tcc_record = FoldRecord(*log->Read("tcc-1"));
  EXPECT_EQ(tcc_record.state(), "active");
  ASSERT_EQ(tcc_record.branches_size(), 2);
  EXPECT_EQ(tcc_record.branches(1).branch_id(), "credit");
  const auto saga_record = FoldRecord(*log->Read("saga-1"));
  EXPECT_EQ(saga_record.state(), "compensating");
  ASSERT_EQ(saga_record.steps_size(), 1);
  EXPECT_EQ(saga_record.steps(0).state(), "failed");
  EXPECT_EQ(saga_record.steps(0).attempts(), 4);
  EXPECT_EQ(saga_record.steps(0).last_error(), "HTTP 409: credit limit exceeded");
  EXPECT_EQ(saga_record.steps(0).depends_on(0), "check");
}

TYPED_TEST(LogConformance, AnAppendIsAllOrNothingAcrossTransactions) {
  auto& log = this->log_;
  ASSERT_NE(log, nullptr);
  ASSERT_TRUE(log->Append({Begin("a", kEpochMs)}).ok());
  // One append touching two transactions, whose last record is refused.
  Status s = log->Append({Begin("b", kEpochMs), Decision("a", kEpochMs + 1, v1::OUTCOME_COMMIT),
                          End("a", kEpochMs + 2, "aborted")});
  EXPECT_EQ(s.code(), StatusCode::kConflict) << s.ToString();
  EXPECT_EQ(log->Read("b").status().code(), StatusCode::kNotFound);
  auto a = log->Read("a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->records.size(), 1u);
  EXPECT_EQ(a->summary.decision, v1::OUTCOME_UNSPECIFIED);
  // Both transactions in one append, accepted together.
  ASSERT_TRUE(log->Append({Begin("b", kEpochMs), Decision("a", kEpochMs + 1, v1::OUTCOME_ABORT),
                           End("a", kEpochMs + 2, "aborted")})
                  .ok());
  EXPECT_TRUE(log->Read("b").ok());
  EXPECT_TRUE(log->Read("a")->summary.finished());
}

TYPED_TEST(LogConformance, RulesAreEnforcedByTheStore) {
  auto& log = this->log_;
  ASSERT_NE(log, nullptr);
  ASSERT_TRUE(log->Append({Begin("g", kEpochMs)}).ok());
  EXPECT_EQ(log->Append({Begin("g", kEpochMs + 1)}).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(log->Append({Decision("ghost", kEpochMs, v1::OUTCOME_ABORT)}).code(),
            StatusCode::kNotFound);
  ASSERT_TRUE(log->Append({Decision("g", kEpochMs + 1, v1::OUTCOME_COMMIT)}).ok());
  EXPECT_TRUE(log->Append({Decision("g", kEpochMs + 2, v1::OUTCOME_COMMIT)}).ok());
  EXPECT_EQ(log->Append({Decision("g", kEpochMs + 3, v1::OUTCOME_ABORT)}).code(),
            StatusCode::kConflict);
  ASSERT_TRUE(log->Append({End("g", kEpochMs + 4, "committed")}).ok());
  EXPECT_EQ(log->Append({BranchOutcome("g", kEpochMs + 5, "b0", "committed")}).code(),
            StatusCode::kConflict);
  EXPECT_EQ(log->Append({}).code(), StatusCode::kInvalidArgument);
  // A gtid that is not valid UTF-8 is refused as bad input, not as a store failure.
  EXPECT_EQ(log->Append({Begin("bad\xff", kEpochMs)}).code(), StatusCode::kInvalidArgument);
  auto tx = log->Read("g");
  ASSERT_TRUE(tx.ok());
  EXPECT_EQ(tx->records.size(), 4u) << "refused appends leave nothing behind";
  EXPECT_EQ(tx->summary.state, "committed");
  EXPECT_TRUE(tx->summary.finished());
}

// AppendSoon: `done` hears what Append would have said, once the records are stored; the rules
// hold as for Append; records still held when the log closes are committed before it does.
TYPED_TEST(LogConformance, AppendSoonStoresTheRecordsAndReportsTheOutcome) {
  auto& log = this->log_;
  ASSERT_NE(log, nullptr);
  ASSERT_TRUE(log->Append({Begin("soon", kEpochMs)}).ok());
  ASSERT_TRUE(log->Append({Decision("soon", kEpochMs + 1, v1::OUTCOME_COMMIT)}).ok());
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Status> outcomes;  // GUARDED_BY(mu)
  auto done = [&](Status s) {
    std::lock_guard lock(mu);
    outcomes.push_back(std::move(s));
    cv.notify_all();
  };
  log->AppendSoon({End("soon", kEpochMs + 2, "committed")}, done);
  log->AppendSoon({End("soon", kEpochMs + 3, "committed")}, done);  // nothing follows an end
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return outcomes.size() == 2; }));
    EXPECT_TRUE(outcomes[0].ok()) << outcomes[0].ToString();
    EXPECT_EQ(outcomes[1].code(), StatusCode::kConflict) << outcomes[1].ToString();
  }
  auto tx = log->Read("soon");
  ASSERT_TRUE(tx.ok()) << tx.status().ToString();
  EXPECT_EQ(tx->summary.state, "committed");

  // Held at close: committed by the close, so a reopened log has it.
  ASSERT_TRUE(log->Append({Begin("held", kEpochMs)}).ok());
  ASSERT_TRUE(log->Append({Decision("held", kEpochMs + 1, v1::OUTCOME_ABORT)}).ok());
  std::atomic<bool> held_ok{false};
  log->AppendSoon({End("held", kEpochMs + 2, "aborted")}, [&](Status s) { held_ok = s.ok(); });
  log.reset();
  EXPECT_TRUE(held_ok.load());
  log = this->Open();
  ASSERT_NE(log, nullptr);
  auto held = log->Read("held");
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  EXPECT_EQ(held->summary.state, "aborted");
}

TYPED_TEST(LogConformance, ConcurrentAppendsAreAllDurableAndShareCommits) {
  auto& log = this->log_;
  ASSERT_NE(log, nullptr);
  constexpr int kThreads = 32;
  constexpr int kPerThread = 20;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string g = "t" + std::to_string(t) + "-" + std::to_string(i);
        const int64_t at = kEpochMs + i;
        if (!log->Append({Begin(g, at)}).ok()) failures++;
        if (!log->Append({Decision(g, at + 1, v1::OUTCOME_ABORT)}).ok()) failures++;
        if (!log->Append({End(g, at + 2, "aborted")}).ok()) failures++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  const LogStats stats = log->Stats();
  EXPECT_EQ(stats.appends, 3 * kThreads * kPerThread);
  if constexpr (TypeParam::kDurable) {
    // 32 writers that each wait for a fsync: appends must have shared commits.
    EXPECT_LT(stats.commits, stats.appends);
    EXPECT_GT(stats.largest_group, 1);
  }

  log.reset();  // close, then reopen: everything acknowledged is there
  log = this->Open();
  ASSERT_NE(log, nullptr);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      const std::string g = "t" + std::to_string(t) + "-" + std::to_string(i);
      auto tx = log->Read(g);
      ASSERT_TRUE(tx.ok()) << g << ": " << tx.status().ToString();
      ASSERT_EQ(tx->records.size(), 3u) << g;
      EXPECT_TRUE(tx->records[0].has_begin());
      EXPECT_TRUE(tx->records[1].has_decision());
      EXPECT_TRUE(tx->records[2].has_end());
      EXPECT_EQ(tx->summary.state, "aborted");
    }
  }
}

TYPED_TEST(LogConformance, AppendsToOneTransactionFromManyThreadsKeepTheirOrder) {
  auto& log = this->log_;
  ASSERT_NE(log, nullptr);
  ASSERT_TRUE(log->Append({Begin("hot", kEpochMs, "2pc", 8)}).ok());
  std::vector<std::thread> threads;
  for (int b = 0; b < 8; ++b) {
    threads.emplace_back([&, b] {
      for (int attempt = 1; attempt <= 10; ++attempt) {
        EXPECT_TRUE(log->Append({BranchOutcome("hot", kEpochMs + attempt, "b" + std::to_string(b),
                                               "preparing", attempt, "retry")})
                        .ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  auto tx = log->Read("hot");
  ASSERT_TRUE(tx.ok());
  ASSERT_EQ(tx->records.size(), 81u);
  // Each branch's attempts appear in the order its thread appended them.
  std::map<std::string, int> last;
  for (size_t i = 1; i < tx->records.size(); ++i) {
    const auto& o = tx->records[i].branch_outcome();
    EXPECT_EQ(o.attempts(), last[o.branch_id()] + 1) << o.branch_id();
    last[o.branch_id()] = o.attempts();
  }
  const auto record = FoldRecord(*tx);
  ASSERT_EQ(record.branches_size(), 8);
  for (const auto& b : record.branches()) EXPECT_EQ(b.attempts(), 10);
}

TYPED_TEST(LogConformance, ScanUnfinishedPagesThroughEveryUnfinishedTransaction) {
  auto& log = this->log_;
  ASSERT_NE(log, nullptr);
  std::set<std::string> unfinished;
  for (int i = 0; i < 25; ++i) {
    const std::string g = "u" + std::to_string(100 + i);
    if (i % 3 == 0) {
      this->AppendFinished(g, kEpochMs + i, i % 2 == 0);
    } else {
      ASSERT_TRUE(log->Append({Begin(g, kEpochMs + i)}).ok());
      unfinished.insert(g);
    }
  }
  std::set<std::string> seen;
  std::string after;
  int pages = 0;
  for (;;) {
    auto page = log->ScanUnfinished(after, 4);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    if (page->empty()) break;
    EXPECT_LE(page->size(), 4u);
    for (const auto& tx : *page) {
      EXPECT_FALSE(tx.summary.finished());
      EXPECT_FALSE(tx.records.empty());
      EXPECT_TRUE(seen.insert(tx.summary.gtid).second) << "seen twice: " << tx.summary.gtid;
      EXPECT_GT(tx.summary.gtid, after) << "pages are in gtid order";
    }
    after = page->back().summary.gtid;
    ++pages;
  }
  EXPECT_EQ(seen, unfinished);
  EXPECT_EQ(pages, 4);  // 16 unfinished in pages of 4
  // A default-constructed cursor means "from the start", like "".
  auto from_start = log->ScanUnfinished(std::string_view{}, 100);
  ASSERT_TRUE(from_start.ok());
  EXPECT_EQ(from_start->size(), unfinished.size());
  EXPECT_EQ(log->ScanUnfinished("", 0).status().code(), StatusCode::kInvalidArgument);
}

TYPED_TEST(LogConformance, ListFiltersByStateAndAgeNewestFirstWithPaging) {
  auto& log = this->log_;
  ASSERT_NE(log, nullptr);
  // Pairs of transactions created at the same millisecond, to exercise the tie-break.
  for (int i = 0; i < 10; ++i) {
    const int64_t at = kEpochMs + (i / 2) * 1000;
    const std::string g = "l" + std::to_string(i);
    if (i < 4) {
      this->AppendFinished(g, at, true);
    } else {
      ASSERT_TRUE(log->Append({Begin(g, at)}).ok());
    }
  }
  // All, newest first, in pages of 3.
  std::vector<std::string> order;
  ListQuery q;
  q.limit = 3;
  for (;;) {
    auto page = log->List(q);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    for (const auto& s : page->transactions) order.push_back(s.gtid);
    if (page->next.empty()) break;
    EXPECT_EQ(page->transactions.size(), 3u);
    q.after = page->next;
  }
  EXPECT_EQ(order,
            (std::vector<std::string>{"l9", "l8", "l7", "l6", "l5", "l4", "l3", "l2", "l1", "l0"}));
  // By state.
  ListQuery committed;
  committed.state = "committed";
  auto page = log->List(committed);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->transactions.size(), 4u);
  for (const auto& s : page->transactions) EXPECT_EQ(s.state, "committed");
  EXPECT_TRUE(page->next.empty());
  // By age: created before the third second.
  ListQuery old;
  old.created_before = T(kEpochMs + 2000);
  page = log->List(old);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->transactions.size(), 4u);
  for (const auto& s : page->transactions) EXPECT_LT(s.created_at, T(kEpochMs + 2000));
  // Both filters, and an empty result.
  ListQuery none;
  none.state = "preparing";
  none.created_before = T(kEpochMs + 2000);
  page = log->List(none);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->transactions.empty());
  // Bad input.
  ListQuery bad_cursor;
  bad_cursor.after = "never-existed";
  EXPECT_EQ(log->List(bad_cursor).status().code(), StatusCode::kInvalidArgument);
  ListQuery bad_limit;
  bad_limit.limit = 1001;
  EXPECT_EQ(log->List(bad_limit).status().code(), StatusCode::kInvalidArgument);
}

TYPED_TEST(LogConformance, PurgeRemovesOnlyFinishedTransactionsOlderThanTheRetention) {
  auto& log = this->log_;
  ASSERT_NE(log, nullptr);
  for (int i = 0; i < 1200; ++i) {  // more than one purge chunk
    this->AppendFinished("old" + std::to_string(i), kEpochMs, i % 2 == 0);
  }
  this->AppendFinished("recent", kEpochMs + 60'000, true);
  ASSERT_TRUE(log->Append({Begin("open-old", kEpochMs - 1000)}).ok());

  auto purged = log->Purge(T(kEpochMs + 30'000));
  ASSERT_TRUE(purged.ok()) << purged.status().ToString();
  EXPECT_EQ(*purged, 1200);
  EXPECT_EQ(log->Read("old0").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(log->Read("old1199").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(log->Read("recent").ok());
  EXPECT_TRUE(log->Read("open-old").ok()) << "an unfinished transaction is never purged";
  auto again = log->Purge(T(kEpochMs + 30'000));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0);
  // A purged gtid may begin again: it is a new transaction.
  EXPECT_TRUE(log->Append({Begin("old0", kEpochMs + 70'000)}).ok());
}

TYPED_TEST(LogConformance, PurgeTakesAtMostTheLimitAndCountsWhatIsEligible) {
  auto& log = this->log_;
  ASSERT_NE(log, nullptr);
  for (int i = 0; i < 700; ++i) this->AppendFinished("old" + std::to_string(i), kEpochMs, true);
  this->AppendFinished("recent", kEpochMs + 60'000, false);
  ASSERT_TRUE(log->Append({Begin("open-old", kEpochMs - 1000)}).ok());
  const Timestamp cutoff = T(kEpochMs + 30'000);

  auto eligible = log->CountPurgeable(cutoff);
  ASSERT_TRUE(eligible.ok()) << eligible.status().ToString();
  EXPECT_EQ(*eligible, 700);
  EXPECT_EQ(*log->CountPurgeable(T(kEpochMs + 70'000)), 701) << "recent counts once old enough";
  EXPECT_EQ(*log->CountPurgeable(T(kEpochMs)), 0) << "ended at the cutoff: not before it";

  auto first = log->Purge(cutoff, 600);  // more than one chunk, less than all
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(*first, 600);
  EXPECT_EQ(*log->CountPurgeable(cutoff), 100);
  auto second = log->Purge(cutoff, 600);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, 100);
  EXPECT_EQ(*log->CountPurgeable(cutoff), 0);
  EXPECT_EQ(*log->Purge(cutoff, 600), 0);
  EXPECT_TRUE(log->Read("recent").ok());
  EXPECT_TRUE(log->Read("open-old").ok());
}

// The history of a transaction is Read's records in append order, resolves included.
TYPED_TEST(LogConformance, AResolveIsStoredInTheHistoryAndMustAgreeWithTheDecision) {
  auto& log = this->log_;
  ASSERT_NE(log, nullptr);
  // Undecided: a resolve as aborted is refused (no abort decision); as committed it is not
  // (a saga's action, or a one-phase commit decided in the same append).
  ASSERT_TRUE(log->Append({Begin("tx-1", kEpochMs)}).ok());
  EXPECT_EQ(log->Append({Resolved("tx-1", kEpochMs + 1, "b1", "aborted")}).code(),
            StatusCode::kConflict);
  ASSERT_TRUE(log->Append({Decision("tx-1", kEpochMs + 2, v1::OUTCOME_COMMIT)}).ok());
  EXPECT_EQ(log->Append({Resolved("tx-1", kEpochMs + 3, "b1", "aborted")}).code(),
            StatusCode::kConflict);
  ASSERT_TRUE(log->Append({BranchOutcome("tx-1", kEpochMs + 3, "b0", "committed")}).ok());
  ASSERT_TRUE(
      log->Append({Resolved("tx-1", kEpochMs + 4, "b1", "committed", "alice", "why")}).ok());
  ASSERT_TRUE(log->Append({End("tx-1", kEpochMs + 5, "committed")}).ok());

  ASSERT_TRUE(
      log->Append({Begin("tx-2", kEpochMs), Decision("tx-2", kEpochMs + 1, v1::OUTCOME_ABORT)})
          .ok());
  EXPECT_EQ(log->Append({Resolved("tx-2", kEpochMs + 2, "b0", "committed")}).code(),
            StatusCode::kConflict);
  EXPECT_TRUE(log->Append({Resolved("tx-2", kEpochMs + 2, "b0", "aborted")}).ok());
  // Malformed: no operator, or an `as` that is neither.
  EXPECT_EQ(log->Append({Resolved("tx-2", kEpochMs + 3, "b1", "aborted", "")}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(log->Append({Resolved("tx-2", kEpochMs + 3, "b1", "maybe")}).code(),
            StatusCode::kInvalidArgument);

  auto tx = log->Read("tx-1");
  ASSERT_TRUE(tx.ok()) << tx.status().ToString();
  ASSERT_EQ(tx->records.size(), 5u);
  ASSERT_TRUE(tx->records[3].has_resolved());
  EXPECT_TRUE(MessageDifferencer::Equals(
      tx->records[3], Resolved("tx-1", kEpochMs + 4, "b1", "committed", "alice", "why")));
  const v1::Transaction record = FoldRecord(*tx);
  ASSERT_EQ(record.branches_size(), 2);
  EXPECT_EQ(record.branches(1).state(), "committed");
  EXPECT_EQ(record.branches(1).attempts(), 8);
  EXPECT_EQ(record.branches(1).last_error(), "HTTP 500: disk full");

  const v1::TransactionHistory history = HistoryOf(*tx);
  ASSERT_EQ(history.entries_size(), 5);
  const std::vector<std::string> kinds = {"begin", "decision", "branch_outcome", "resolved", "end"};
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(history.entries(i).seq(), i + 1);
    EXPECT_EQ(history.entries(i).kind(), kinds[i]);
    EXPECT_FALSE(history.entries(i).detail().empty());
  }
  const v1::HistoryEntry& resolved = history.entries(3);
  EXPECT_EQ(resolved.branch_id(), "b1");
  EXPECT_EQ(resolved.operator_(), "alice");
  EXPECT_EQ(resolved.reason(), "why");
  EXPECT_EQ(resolved.resolved_as(), "committed");
  EXPECT_EQ(resolved.attempts(), 8);
  EXPECT_EQ(resolved.at().seconds(), (kEpochMs + 4) / 1000);
  EXPECT_NE(resolved.detail().find("resolved by hand as committed by alice: why"),
            std::string::npos)
      << resolved.detail();
  EXPECT_EQ(history.entries(1).outcome(), "commit");
  EXPECT_EQ(history.entries(4).state(), "committed");
  EXPECT_EQ(history.state(), "committed");
}

TYPED_TEST(LogConformance, ATornRecordIsReportedAsCorruption) {
  auto& log = this->log_;
  ASSERT_NE(log, nullptr);
  this->AppendFinished("torn", kEpochMs, true);
  ASSERT_TRUE(log->Append({Begin("fine", kEpochMs)}).ok());
  this->backend_.TearRecords("torn");
  auto tx = log->Read("torn");
  EXPECT_EQ(tx.status().code(), StatusCode::kCorruption) << tx.status().ToString();
  EXPECT_NE(tx.status().message().find("torn"), std::string::npos) << "names the transaction";
  EXPECT_TRUE(log->Read("fine").ok()) << "other transactions stay readable";
}

TYPED_TEST(LogConformance, ALostRecordIsReportedAsCorruption) {
  auto& log = this->log_;
  ASSERT_NE(log, nullptr);
  this->AppendFinished("holed", kEpochMs, false);
  this->backend_.DropLastRecord("holed");
  auto tx = log->Read("holed");
  EXPECT_EQ(tx.status().code(), StatusCode::kCorruption) << tx.status().ToString();
  EXPECT_NE(tx.status().message().find("holed"), std::string::npos);
}

TYPED_TEST(LogConformance, LargePayloadsAndReopenRoundTrip) {
  auto& log = this->log_;
  ASSERT_NE(log, nullptr);
  auto begin = Begin("big", kEpochMs);
  std::string blob(512 * 1024, 'x');
  blob[1000] = '\0';  // binary-safe
  begin.mutable_begin()->mutable_branches(0)->mutable_payload()->set_string_value(blob);
  ASSERT_TRUE(log->Append({begin}).ok());
  log.reset();
  log = this->Open();
  ASSERT_NE(log, nullptr);
  auto tx = log->Read("big");
  ASSERT_TRUE(tx.ok()) << tx.status().ToString();
  EXPECT_EQ(tx->records[0].begin().branches(0).payload().string_value(), blob);
  EXPECT_TRUE(log->Ping().ok());
}

}  // namespace
}  // namespace txcoord::coordinator
