// SqliteCommitGroup (commit_group.h): callbacks that arrive while a group commits share the next
// transaction and its one WAL sync, survive a power loss once answered, and never fail one
// another. The answers themselves are the barrier's; the conformance suite in barrier_test.cc
// runs them all through a group too.
//
// Groups are made deterministic with a gate: the first callback's business blocks until every
// other callback of the test is queued behind it, so the first group holds the gate alone and
// the second holds the rest, in the order the test queued them. The database goes through the
// power-loss VFS, which keeps every write not yet synced in memory, so what survives
// SimulatePowerLoss is exactly what was fsync'd.
#include "txcoord/participant/commit_group.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <future>
#include <latch>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "sdk_test_util.h"
#include "txcoord/participant/sqlite_statement.h"
#include "txcoord/testing/poll.h"
#include "txcoord/testing/powerloss_vfs.h"

namespace txcoord::participant {
namespace {

using Path = BarrierResult::Path;
using Kind = PhaseResult::Kind;
using testing::Ctx;
using testing::SqliteCount;
using testing::SqliteExec;
using testing::TempDir;

constexpr std::chrono::milliseconds kPollTimeout{20000};
constexpr std::chrono::milliseconds kPollInterval{1};

// The business change every test makes: one effect row per callback, in its transaction.
// Through SqliteStatement, which a group keeps prepared for its business functions too.
Status InsertEffect(sqlite3* db, const CallbackContext& ctx) {
  SqliteStatement stmt(db);
  if (stmt.Prepare("INSERT INTO effects (gtid) VALUES (?1)") != SQLITE_OK) {
    return Status::Internal(sqlite3_errmsg(db));
  }
  stmt.Bind(1, ctx.gtid);
  return stmt.Step() == SQLITE_DONE ? Status::Ok() : Status::Unavailable(sqlite3_errmsg(db));
}

sqlite3* OpenDurable(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                      txcoord::testing::kPowerLossVfsName) != SQLITE_OK) {
    sqlite3_close(db);
    throw std::runtime_error("open " + path);
  }
  sqlite3_busy_timeout(db, 20000);
  SqliteExec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
  return db;
}

::testing::AssertionResult Is(const BarrierResult& r, Path path, Kind kind) {
  if (r.path == path && r.reply.kind() == kind) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "path " << BarrierPathName(r.path) << ", HTTP "
                                       << r.reply.http_status() << " " << r.reply.message();
}

class CommitGroupTest : public ::testing::Test {
 protected:
  CommitGroupTest() : path_((dir_.path() / "participant.db").string()) {
    txcoord::testing::RegisterPowerLossVfs();
    db_ = OpenDurable(path_);
    SqliteExec(db_, "CREATE TABLE effects (gtid TEXT NOT NULL)");
    if (!Barrier::EnsureSchema(db_).ok()) throw std::runtime_error("barrier schema");
  }
  ~CommitGroupTest() override {
    group_.reset();
    // The group finalized the statements it kept: the connection closes at once.
    EXPECT_EQ(sqlite3_close(db_), SQLITE_OK);
  }

  void MakeGroup(SqliteCommitGroupOptions options = {}) {
    group_ = std::make_unique<SqliteCommitGroup>(db_, options);
  }

  // Runs ctx's callback on a thread of its own; returns once it is queued in the group.
  std::future<BarrierResult> Start(CallbackContext ctx, SqliteBusiness business) {
    const size_t before = group_->queued();
    auto result = std::async(std::launch::async,
                             [this, ctx = std::move(ctx), business = std::move(business)] {
                               return group_->Run(ctx, business);
                             });
    EXPECT_TRUE(txcoord::testing::PollUntil(kPollTimeout, kPollInterval,
                                            [&] { return group_->queued() > before; }));
    return result;
  }

  std::future<BarrierResult> StartEffect(const std::string& gtid) {
    return Start(Ctx(gtid, "b", Phase::kPrepare),
                 [gtid](sqlite3* db) { return InsertEffect(db, Ctx(gtid, "b", Phase::kPrepare)); });
  }

  // The gate: a prepare whose business waits for OpenGate. Returns once it is inside.
  std::future<BarrierResult> StartGate() {
    auto result = Start(Ctx("gate", "b", Phase::kPrepare), [this](sqlite3* db) {
      gate_inside_.count_down();
      gate_open_.wait();
      return InsertEffect(db, Ctx("gate", "b", Phase::kPrepare));
    });
    gate_inside_.wait();
    return result;
  }
  void OpenGate() { gate_open_.count_down(); }

  // The gate, then `n` prepares (gtids g0, g1, ...) queued behind it; each must be done.
  void RunGatedEffects(int n) {
    auto gate = StartGate();
    std::vector<std::future<BarrierResult>> queued;
    for (int i = 0; i < n; ++i) queued.push_back(StartEffect("g" + std::to_string(i)));
    OpenGate();
    EXPECT_TRUE(Is(gate.get(), Path::kRan, Kind::kDone));
    for (auto& f : queued) EXPECT_TRUE(Is(f.get(), Path::kRan, Kind::kDone));
  }

  int64_t Effects(const std::string& gtid) {
    return group_->Exclusive([&](sqlite3* db) {
      return SqliteCount(db, "SELECT count(*) FROM effects WHERE gtid = '" + gtid + "'");
    });
  }
  int64_t BarrierRows(const std::string& gtid) {
    return group_->Exclusive([&](sqlite3* db) {
      return SqliteCount(db, "SELECT count(*) FROM txcoord_barrier WHERE gtid = '" + gtid + "'");
    });
  }

  TempDir dir_;
  const std::string path_;
  sqlite3* db_ = nullptr;
  std::unique_ptr<SqliteCommitGroup> group_;
  std::latch gate_inside_{1};
  std::latch gate_open_{1};
};

TEST_F(CommitGroupTest, CallbacksQueuedDuringACommitShareTheNextOneAndSurviveAPowerLoss) {
  MakeGroup();
  txcoord::testing::ResetPowerLossVfsStats();
  RunGatedEffects(8);

  const GroupStats stats = group_->stats();
  EXPECT_EQ(stats.groups, 2) << "the gate alone, then the eight queued behind it";
  EXPECT_EQ(stats.members, 9);
  EXPECT_EQ(stats.largest_group, 8);
  EXPECT_EQ(txcoord::testing::GetPowerLossVfsStats().syncs_wal, 2u)
      << "one WAL sync per group, not per callback";

  // Every answered callback is on the disk: the power goes, the database reopens from it.
  txcoord::testing::SimulatePowerLoss();
  group_.reset();
  EXPECT_EQ(sqlite3_close(db_), SQLITE_OK);
  ASSERT_EQ(txcoord::testing::OpenPowerLossVfsFiles(), 0u);
  db_ = OpenDurable(path_);
  MakeGroup();
  EXPECT_EQ(Effects("gate"), 1);
  for (int i = 0; i < 8; ++i) {
    const std::string gtid = "g" + std::to_string(i);
    EXPECT_EQ(Effects(gtid), 1) << gtid;
    int calls = 0;
    const BarrierResult again = group_->Run(Ctx(gtid, "b", Phase::kPrepare), [&](sqlite3*) {
      ++calls;
      return Status::Ok();
    });
    EXPECT_TRUE(Is(again, Path::kRepeated, Kind::kDone)) << gtid;
    EXPECT_EQ(calls, 0) << gtid;
  }
}

TEST_F(CommitGroupTest, AGroupHoldsAtMostMaxGroupCallbacks) {
  MakeGroup({.max_group = 2});
  RunGatedEffects(5);
  const GroupStats stats = group_->stats();
  EXPECT_EQ(stats.groups, 4) << "the gate, then 2 + 2 + 1";
  EXPECT_EQ(stats.largest_group, 2);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Effects("g" + std::to_string(i)), 1);
}

TEST_F(CommitGroupTest, ARefusalOrAFailureInAGroupStaysWithItsOwnCallback) {
  MakeGroup();
  auto gate = StartGate();
  auto ok_before = StartEffect("ok-before");
  auto refused = Start(Ctx("refused", "b", Phase::kPrepare), [](sqlite3* db) {
    TXCOORD_RETURN_IF_ERROR(InsertEffect(db, Ctx("refused", "b", Phase::kPrepare)));
    return Status::Conflict("insufficient funds");
  });
  auto transient = Start(Ctx("transient", "b", Phase::kPrepare), [](sqlite3* db) {
    TXCOORD_RETURN_IF_ERROR(InsertEffect(db, Ctx("transient", "b", Phase::kPrepare)));
    return Status::Unavailable("downstream busy");
  });
  auto throwing = Start(Ctx("throwing", "b", Phase::kPrepare), [](sqlite3* db) -> Status {
    TXCOORD_RETURN_IF_ERROR(InsertEffect(db, Ctx("throwing", "b", Phase::kPrepare)));
    throw std::runtime_error("disk on fire");
  });
  auto ok_after = StartEffect("ok-after");
  OpenGate();

  EXPECT_TRUE(Is(gate.get(), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(ok_before.get(), Path::kRan, Kind::kDone));
  const BarrierResult r = refused.get();
  EXPECT_TRUE(Is(r, Path::kRefused, Kind::kRefused));
  EXPECT_EQ(r.reply.message(), "insufficient funds");
  const BarrierResult t = transient.get();
  EXPECT_TRUE(Is(t, Path::kFailed, Kind::kTransient));
  EXPECT_EQ(t.reply.http_status(), 503);
  const BarrierResult th = throwing.get();
  EXPECT_TRUE(Is(th, Path::kFailed, Kind::kFailed));
  EXPECT_EQ(th.reply.http_status(), 500);
  EXPECT_TRUE(Is(ok_after.get(), Path::kRan, Kind::kDone));
  EXPECT_EQ(group_->stats().groups, 2);

  EXPECT_EQ(Effects("ok-before"), 1);
  EXPECT_EQ(Effects("ok-after"), 1);
  EXPECT_EQ(Effects("refused"), 0) << "a refusal's changes are rolled back";
  EXPECT_EQ(BarrierRows("refused"), 1) << "and the refusal recorded";
  EXPECT_EQ(Effects("transient"), 0);
  EXPECT_EQ(BarrierRows("transient"), 0);
  EXPECT_EQ(Effects("throwing"), 0);
  EXPECT_EQ(BarrierRows("throwing"), 0);

  // The refusal repeats its answer; the failures run on their retry.
  int calls = 0;
  const SqliteBusiness count = [&](sqlite3*) {
    ++calls;
    return Status::Ok();
  };
  const BarrierResult again = group_->Run(Ctx("refused", "b", Phase::kPrepare), count);
  EXPECT_TRUE(Is(again, Path::kRepeated, Kind::kRefused));
  EXPECT_EQ(again.reply.message(), "insufficient funds");
  EXPECT_TRUE(
      Is(group_->Run(Ctx("transient", "b", Phase::kPrepare), count), Path::kRan, Kind::kDone));
  EXPECT_TRUE(
      Is(group_->Run(Ctx("throwing", "b", Phase::kPrepare), count), Path::kRan, Kind::kDone));
  EXPECT_EQ(calls, 2);
}

// A business that ends the group's transaction itself (it must not) gets 503; whatever it did
// to the others, each of them is answered for what the database holds: the ones before it run
// again alone, the ones after it in a new transaction.
class CommitGroupEndedTest : public CommitGroupTest,
                             public ::testing::WithParamInterface<const char*> {};

TEST_P(CommitGroupEndedTest, ABusinessThatEndsTheTransactionFailsAloneAndTheOthersCommit) {
  const std::string statement = GetParam();
  MakeGroup();
  auto gate = StartGate();
  auto before = StartEffect("before");
  auto culprit = Start(Ctx("culprit", "b", Phase::kPrepare), [&](sqlite3* db) {
    TXCOORD_RETURN_IF_ERROR(InsertEffect(db, Ctx("culprit", "b", Phase::kPrepare)));
    SqliteExec(db, statement);
    return Status::Ok();
  });
  auto after = StartEffect("after");
  OpenGate();

  EXPECT_TRUE(Is(gate.get(), Path::kRan, Kind::kDone));
  const BarrierResult b = before.get();
  const BarrierResult c = culprit.get();
  const BarrierResult a = after.get();
  EXPECT_EQ(b.reply.kind(), Kind::kDone) << BarrierPathName(b.path) << " " << b.reply.message();
  // After a COMMIT the first run of `before` is in the database and its second run repeats it;
  // after a ROLLBACK it is gone and the second run does it again.
  EXPECT_EQ(b.path, statement == "COMMIT" ? Path::kRepeated : Path::kRan);
  EXPECT_TRUE(Is(c, Path::kFailed, Kind::kTransient));
  EXPECT_EQ(c.reply.http_status(), 503);
  EXPECT_NE(c.reply.message().find("ended the transaction"), std::string::npos)
      << c.reply.message();
  EXPECT_TRUE(Is(a, Path::kRan, Kind::kDone));

  EXPECT_EQ(Effects("gate"), 1);
  EXPECT_EQ(Effects("before"), 1) << "applied once, whichever way the transaction ended";
  EXPECT_EQ(Effects("after"), 1);
  // The culprit's own change went with the transaction it ended: committed or rolled back.
  EXPECT_EQ(Effects("culprit"), statement == "COMMIT" ? 1 : 0);
}

INSTANTIATE_TEST_SUITE_P(CommitOrRollback, CommitGroupEndedTest,
                         ::testing::Values("COMMIT", "ROLLBACK"));

TEST_F(CommitGroupTest, AFailedGroupCommitRunsEachCallbackAgainAloneAndFailsOnlyTheCulprit) {
  // A deferred foreign key is checked at COMMIT: a member can break the group's commit after
  // its own business succeeded.
  SqliteExec(db_,
             "PRAGMA foreign_keys = ON;"
             "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
             "CREATE TABLE child (parent_id INTEGER REFERENCES parent (id) "
             "DEFERRABLE INITIALLY DEFERRED);");
  MakeGroup();
  auto gate = StartGate();
  auto before = StartEffect("before");
  std::atomic<int> culprit_calls{0};
  const SqliteBusiness orphan = [&](sqlite3* db) {
    ++culprit_calls;
    TXCOORD_RETURN_IF_ERROR(InsertEffect(db, Ctx("culprit", "b", Phase::kPrepare)));
    SqliteExec(db, "INSERT INTO child (parent_id) VALUES (42)");
    return Status::Ok();
  };
  auto culprit = Start(Ctx("culprit", "b", Phase::kPrepare), orphan);
  auto after = StartEffect("after");
  OpenGate();

  EXPECT_TRUE(Is(gate.get(), Path::kRan, Kind::kDone));
  EXPECT_TRUE(Is(before.get(), Path::kRan, Kind::kDone));
  // Its answer is the one it gets alone (Barrier::RunInTransaction): a constraint that fails at
  // COMMIT is a refusal, with nothing recorded.
  const BarrierResult c = culprit.get();
  EXPECT_TRUE(Is(c, Path::kFailed, Kind::kRefused));
  EXPECT_EQ(c.reply.http_status(), 409);
  EXPECT_NE(c.reply.message().find("FOREIGN KEY"), std::string::npos) << c.reply.message();
  EXPECT_TRUE(Is(after.get(), Path::kRan, Kind::kDone));
  EXPECT_EQ(culprit_calls.load(), 2) << "once in the group, once alone";

  EXPECT_EQ(Effects("before"), 1);
  EXPECT_EQ(Effects("after"), 1);
  EXPECT_EQ(Effects("culprit"), 0);
  EXPECT_EQ(BarrierRows("culprit"), 0) << "nothing recorded: the retry runs it";

  group_->Exclusive([](sqlite3* db) {
    SqliteExec(db, "INSERT INTO parent (id) VALUES (42)");
    return 0;
  });
  EXPECT_TRUE(
      Is(group_->Run(Ctx("culprit", "b", Phase::kPrepare), orphan), Path::kRan, Kind::kDone));
  EXPECT_EQ(Effects("culprit"), 1);
}

// The barrier's statements, and the business's own SqliteStatements, are prepared once per
// group's connection, then reused; outside a group a SqliteStatement is finalized.
TEST_F(CommitGroupTest, StatementsArePreparedOnceAndKept) {
  MakeGroup();
  const auto prepared = [&] {
    return group_->Exclusive([](sqlite3* db) {
      int n = 0;
      for (sqlite3_stmt* s = sqlite3_next_stmt(db, nullptr); s; s = sqlite3_next_stmt(db, s)) ++n;
      return n;
    });
  };
  EXPECT_EQ(prepared(), 0);
  const auto run = [&](const std::string& gtid, Phase phase) {
    return group_->Run(Ctx(gtid, "b", phase),
                       [&](sqlite3* db) { return InsertEffect(db, Ctx(gtid, "b", phase)); });
  };
  ASSERT_TRUE(Is(run("first", Phase::kPrepare), Path::kRan, Kind::kDone));
  ASSERT_TRUE(Is(run("first", Phase::kCommit), Path::kRan, Kind::kDone));
  ASSERT_TRUE(Is(run("first", Phase::kCommit), Path::kRepeated, Kind::kDone));
  const int kept = prepared();
  EXPECT_GT(kept, 0);
  for (int i = 0; i < 20; ++i) {
    const std::string gtid = "g" + std::to_string(i);
    ASSERT_TRUE(Is(run(gtid, Phase::kPrepare), Path::kRan, Kind::kDone));
    ASSERT_TRUE(Is(run(gtid, Phase::kCommit), Path::kRan, Kind::kDone));
    ASSERT_TRUE(Is(run(gtid, Phase::kCommit), Path::kRepeated, Kind::kDone));
  }
  EXPECT_EQ(prepared(), kept) << "the same statements, reset and bound again";
  EXPECT_EQ(Effects("g19"), 2);

  // The business's statement is among them: the same callbacks with a business that prepares
  // nothing of its own leave one statement fewer in a new group.
  group_.reset();
  MakeGroup();
  ASSERT_TRUE(
      Is(group_->Run(Ctx("plain", "b", Phase::kPrepare), [](sqlite3*) { return Status::Ok(); }),
         Path::kRan, Kind::kDone));
  ASSERT_TRUE(
      Is(group_->Run(Ctx("plain", "b", Phase::kCommit), [](sqlite3*) { return Status::Ok(); }),
         Path::kRan, Kind::kDone));
  ASSERT_TRUE(
      Is(group_->Run(Ctx("plain", "b", Phase::kCommit), [](sqlite3*) { return Status::Ok(); }),
         Path::kRepeated, Kind::kDone));
  EXPECT_EQ(prepared(), kept - 1);
  // Outside a group's run (here under Exclusive) a statement is prepared and finalized.
  const Status outside = group_->Exclusive(
      [](sqlite3* db) { return InsertEffect(db, Ctx("outside", "b", Phase::kPrepare)); });
  ASSERT_TRUE(outside.ok()) << outside.ToString();
  EXPECT_EQ(prepared(), kept - 1);
  EXPECT_EQ(Effects("outside"), 1);
}

TEST_F(CommitGroupTest, ExclusiveWaitsForTheGroupThatRuns) {
  MakeGroup();
  auto gate = StartGate();
  std::latch exclusive_started{1};
  auto exclusive = std::async(std::launch::async, [&] {
    exclusive_started.count_down();
    return group_->Exclusive([&](sqlite3* db) {
      // The gate's transaction committed before this runs: its effect is visible, and no
      // transaction is open on the connection.
      return std::make_pair(SqliteCount(db, "SELECT count(*) FROM effects WHERE gtid = 'gate'"),
                            sqlite3_get_autocommit(db) != 0);
    });
  });
  exclusive_started.wait();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // give Exclusive time to try
  OpenGate();
  EXPECT_TRUE(Is(gate.get(), Path::kRan, Kind::kDone));
  const auto [effects, no_transaction] = exclusive.get();
  EXPECT_EQ(effects, 1);
  EXPECT_TRUE(no_transaction);
}

}  // namespace
}  // namespace txcoord::participant
