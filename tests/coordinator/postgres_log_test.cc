// What only the PostgreSQL backend has: a server that can go away under the log, and several
// log instances (coordinators) on one database.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <pqxx/pqxx>
#include <thread>

#include "log_test_util.h"
#include "txcoord/coordinator/log.h"
#include "txcoord/testing/poll.h"
#include "txcoord/testing/postgres_server.h"

namespace txcoord::coordinator {
namespace {

using namespace testutil;

std::unique_ptr<TransactionLog> MustOpen(const std::string& conninfo) {
  PostgresLogConfig c;
  c.conninfo = conninfo;
  auto log = OpenLog(c);
  EXPECT_TRUE(log.ok()) << log.status().ToString();
  return log.ok() ? std::move(log).value() : nullptr;
}

// PostgreSQL stops (immediate shutdown, like a crash) while 8 threads append. Each append must
// come back with an error instead of hanging; an error must never be OK for a lost append; once
// the server is back the same log object works again, and every acknowledged append is there.
TEST(PostgresLogTest, ServerGoingAwayMidAppendGivesErrorsAndTheLogRecovers) {
  auto server = testing::PostgresServer::Start();
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto db = (*server)->CreateDatabase("away");
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  auto log = MustOpen((*server)->ConnInfo(*db));
  ASSERT_NE(log, nullptr);

  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::mutex mu;
  std::vector<std::string> acknowledged;
  std::vector<StatusCode> error_codes;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; !stop; ++i) {
        const std::string g = "w" + std::to_string(t) + "-" + std::to_string(i);
        Status s = log->Append({Begin(g, kEpochMs + i)});
        std::lock_guard lock(mu);
        if (s.ok()) {
          acknowledged.push_back(g);
        } else {
          errors++;
          error_codes.push_back(s.code());
        }
      }
    });
  }
  auto wait_for = [](const std::function<bool()>& pred) {
    return testing::PollUntil(std::chrono::seconds(60), std::chrono::milliseconds(5), pred);
  };
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard lock(mu);
    return acknowledged.size() >= 200;
  }));
  ASSERT_TRUE((*server)->Stop(/*immediate=*/true).ok());
  ASSERT_TRUE(wait_for([&] { return errors.load() >= 20; }))
      << "appends against a stopped server must fail, not hang";
  EXPECT_FALSE(log->Ping().ok());
  {
    std::lock_guard lock(mu);
    for (StatusCode c : error_codes) {
      EXPECT_TRUE(c == StatusCode::kUnavailable || c == StatusCode::kUnknownOutcome)
          << StatusCodeName(c);
    }
  }
  ASSERT_TRUE((*server)->StartAgain().ok());
  const size_t acked_before = [&] {
    std::lock_guard lock(mu);
    return acknowledged.size();
  }();
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard lock(mu);
    return acknowledged.size() >= acked_before + 200;
  })) << "the log must work again once the server is back";
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_TRUE(log->Ping().ok());
  for (const auto& g : acknowledged) {
    auto tx = log->Read(g);
    EXPECT_TRUE(tx.ok()) << g << " was acknowledged: " << tx.status().ToString();
  }
}

// Two coordinators on one database race to begin the same gtids: exactly one wins each.
TEST(PostgresLogTest, TwoInstancesBeginningTheSameGtidGetExactlyOneWinner) {
  auto db = testing::SharedPostgres().CreateDatabase("race");
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  auto a = MustOpen(testing::SharedPostgres().ConnInfo(*db));
  auto b = MustOpen(testing::SharedPostgres().ConnInfo(*db));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  constexpr int kGtids = 200;
  std::atomic<int> wins{0}, already{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      TransactionLog* log = t % 2 == 0 ? a.get() : b.get();
      for (int i = 0; i < kGtids; ++i) {
        Status s = log->Append({Begin("race-" + std::to_string(i), kEpochMs + t)});
        if (s.ok()) {
          wins++;
        } else if (s.code() == StatusCode::kAlreadyExists) {
          already++;
        } else {
          other++;
          ADD_FAILURE() << s.ToString();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wins.load(), kGtids);
  EXPECT_EQ(already.load(), 7 * kGtids);
  EXPECT_EQ(other.load(), 0);
  for (int i = 0; i < kGtids; ++i) {
    auto tx = a->Read("race-" + std::to_string(i));
    ASSERT_TRUE(tx.ok());
    EXPECT_EQ(tx->records.size(), 1u) << "one begin only";
  }
}

// A store at schema version 1 (version 2's indexes absent) is migrated at open; a store newer than
// this build is refused.
TEST(PostgresLogTest, SchemaIsMigratedOnOpenAndANewerOneIsRefused) {
  auto db = testing::SharedPostgres().CreateDatabase("schema");
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  const std::string conninfo = testing::SharedPostgres().ConnInfo(*db);
  {
    auto log = MustOpen(conninfo);
    ASSERT_NE(log, nullptr);
    ASSERT_TRUE(log->Append({Begin("kept", kEpochMs)}).ok());
  }
  auto count_indexes = [&] {
    pqxx::connection c(conninfo);
    pqxx::work w(c);
    return w
        .exec1(
            "SELECT count(*) FROM pg_indexes WHERE indexname IN "
            "('txcoord_tx_unfinished', 'txcoord_tx_by_created', 'txcoord_tx_by_finished')")[0]
        .as<int>();
  };
  auto exec = [&](const std::string& sql) {
    pqxx::connection c(conninfo);
    pqxx::work w(c);
    w.exec(sql);
    w.commit();
  };
  ASSERT_EQ(count_indexes(), 3);
  exec(
      "DROP INDEX txcoord_tx_unfinished; DROP INDEX txcoord_tx_by_created; "
      "DROP INDEX txcoord_tx_by_finished; "
      "UPDATE txcoord_meta SET value = '1' WHERE key = 'schema_version'");
  {
    auto log = MustOpen(conninfo);
    ASSERT_NE(log, nullptr);
    EXPECT_TRUE(log->Read("kept").ok());
  }
  EXPECT_EQ(count_indexes(), 3) << "version 2 was applied again";

  exec("UPDATE txcoord_meta SET value = '99' WHERE key = 'schema_version'");
  PostgresLogConfig c;
  c.conninfo = conninfo;
  auto newer = OpenLog(c);
  ASSERT_FALSE(newer.ok());
  EXPECT_EQ(newer.status().code(), StatusCode::kConflict);
  EXPECT_NE(newer.status().message().find("upgrade txcoord"), std::string::npos);
}

// Another session holds the transaction's row: the append fails (retryable) after the lock
// timeout instead of blocking the group leader, and every append behind it, for good.
TEST(PostgresLogTest, ARowLockedElsewhereGivesUnavailableNotAHang) {
  auto db = testing::SharedPostgres().CreateDatabase("locked");
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  const std::string conninfo = testing::SharedPostgres().ConnInfo(*db);
  auto log = MustOpen(conninfo);
  ASSERT_NE(log, nullptr);
  ASSERT_TRUE(log->Append({Begin("held", kEpochMs)}).ok());
  {
    pqxx::connection other(conninfo);
    pqxx::work hold(other);
    hold.exec("SELECT gtid FROM txcoord_tx WHERE gtid = 'held' FOR UPDATE");
    const Status s = log->Append({Decision("held", kEpochMs + 1, v1::OUTCOME_ABORT)});
    EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  }  // the other session's transaction ends here
  EXPECT_TRUE(log->Append({Decision("held", kEpochMs + 2, v1::OUTCOME_ABORT)}).ok());
  auto tx = log->Read("held");
  ASSERT_TRUE(tx.ok());
  EXPECT_EQ(tx->records.size(), 2u) << "the timed-out append left nothing";
}

std::unique_ptr<TransactionLog> OpenExclusive(const std::string& conninfo, Status* refused) {
  PostgresLogConfig c;
  c.conninfo = conninfo;
  c.exclusive = true;
  auto log = OpenLog(c);
  if (!log.ok()) {
    *refused = log.status();
    return nullptr;
  }
  return std::move(log).value();
}

// Coordinators share a store; an offline tool (txctl --store) has it alone, and neither side
// waits for the other: the one that comes second is refused at once, saying who holds it.
TEST(PostgresLogTest, AnOfflineToolAndCoordinatorsExcludeEachOther) {
  auto db = testing::SharedPostgres().CreateDatabase("presence");
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  const std::string conninfo = testing::SharedPostgres().ConnInfo(*db);
  auto a = MustOpen(conninfo);
  auto b = MustOpen(conninfo);  // a second coordinator instance: fine
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  Status refused;
  EXPECT_EQ(OpenExclusive(conninfo, &refused), nullptr);
  EXPECT_EQ(refused.code(), StatusCode::kUnavailable) << refused.ToString();
  EXPECT_NE(refused.message().find("in use by another txcoord"), std::string::npos)
      << refused.ToString();
  a.reset();
  EXPECT_EQ(OpenExclusive(conninfo, &refused), nullptr) << "b still uses the store";
  b.reset();

  auto tool = OpenExclusive(conninfo, &refused);
  ASSERT_NE(tool, nullptr) << refused.ToString();
  ASSERT_TRUE(tool->Append({Begin("by-hand", kEpochMs)}).ok());
  PostgresLogConfig c;
  c.conninfo = conninfo;
  auto blocked = OpenLog(c);
  ASSERT_FALSE(blocked.ok());
  EXPECT_EQ(blocked.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(blocked.status().message().find("offline txctl"), std::string::npos)
      << blocked.status().ToString();
  tool.reset();
  auto c1 = MustOpen(conninfo);
  ASSERT_NE(c1, nullptr);
  auto tx = c1->Read("by-hand");
  ASSERT_TRUE(tx.ok()) << tx.status().ToString();
  EXPECT_EQ(tx->records.size(), 1u);
}

// A coordinator whose session was cut (a server restart, a network blip) while an offline tool
// took the store cannot write when it reconnects: its appends fail (kUnavailable) until the tool
// is done, then work again.
TEST(PostgresLogTest, ACoordinatorReconnectingWhileAnOfflineToolHoldsTheStoreWaitsForIt) {
  auto db = testing::SharedPostgres().CreateDatabase("presence_cut");
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  const std::string conninfo = testing::SharedPostgres().ConnInfo(*db);
  auto coordinator = MustOpen(conninfo);
  ASSERT_NE(coordinator, nullptr);
  ASSERT_TRUE(coordinator->Append({Begin("before", kEpochMs)}).ok());
  {
    pqxx::connection admin(conninfo);
    pqxx::nontransaction n(admin);
    n.exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
        "current_database() AND pid <> pg_backend_pid()");
  }
  Status refused;
  auto tool = OpenExclusive(conninfo, &refused);
  ASSERT_NE(tool, nullptr) << "the cut session's lock went with it: " << refused.ToString();
  // The first append may meet the dead session; the next reconnects and meets the tool.
  Status s = coordinator->Append({Begin("during", kEpochMs + 1)});
  if (s.ok() || s.message().find("offline txctl") == std::string::npos) {
    s = coordinator->Append({Begin("during", kEpochMs + 1)});
  }
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("offline txctl"), std::string::npos) << s.ToString();
  EXPECT_EQ(tool->Read("during").status().code(), StatusCode::kNotFound);
  tool.reset();
  EXPECT_TRUE(coordinator->Append({Begin("during", kEpochMs + 2)}).ok());
  Status blocked_tool;
  EXPECT_EQ(OpenExclusive(conninfo, &blocked_tool), nullptr)
      << "the coordinator holds the store again";
}

// libpq quotes the connection string, or the offending piece of it, in its errors.
TEST(PostgresLogTest, ErrorsNeverShowThePassword) {
  for (const std::string uri : {"postgresql://txc:S3cretPw@[::1:5432/txlog",
                                "postgresql://txc:S3cret%zzPw@127.0.0.1:1/txlog",
                                "postgresql://txc:S3cretPw@127.0.0.1:1/txlog",
                                "host=127.0.0.1 port=1 user=txc password=S3cretPw dbname=x"}) {
    PostgresLogConfig c;
    c.conninfo = uri;
    auto log = OpenLog(c);
    ASSERT_FALSE(log.ok()) << uri;
    EXPECT_EQ(log.status().message().find("S3cret"), std::string::npos) << log.status().ToString();
  }
  auto bad_scheme = ParseStoreUri("postgresq://txc:S3cretPw@127.0.0.1/txlog");
  ASSERT_FALSE(bad_scheme.ok());
  EXPECT_EQ(bad_scheme.status().message().find("S3cret"), std::string::npos);
  auto no_scheme = ParseStoreUri("txc:S3cretPw@127.0.0.1/txlog");
  ASSERT_FALSE(no_scheme.ok());
  EXPECT_EQ(no_scheme.status().message().find("S3cret"), std::string::npos);
}

TEST(PostgresLogTest, UnreachableServerIsAClearErrorAtOpen) {
  PostgresLogConfig c;
  c.conninfo = "postgresql://nobody@127.0.0.1:1/none";
  auto log = OpenLog(c);
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), StatusCode::kUnavailable) << log.status().ToString();
}

}  // namespace
}  // namespace txcoord::coordinator
