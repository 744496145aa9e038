// The outbox library against a real SQLite file and a real PostgreSQL from the rig.
#include "txcoord/outbox/outbox.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <pqxx/pqxx>
#include <set>
#include <thread>

#include "txcoord/testing/postgres_server.h"

namespace txcoord::outbox {
namespace {

v1::OutboxEvent CreditLimitChanged(const std::string& customer, int limit) {
  v1::OutboxEvent e;
  e.set_aggregate_type("customer");
  e.set_aggregate_id(customer);
  e.set_event_type("CreditLimitChanged");
  e.set_payload(R"({"customer":")" + customer + R"(","limit":)" + std::to_string(limit) + "}");
  (*e.mutable_headers())["content-type"] = "application/json";
  return e;
}

TEST(EventId, IsAUuidV7AndIdsAreUniqueAndOrderedAcrossThreads) {
  const std::string id = NewEventId();
  ASSERT_EQ(id.size(), 36u);
  EXPECT_EQ(id[14], '7') << "version 7: " << id;
  EXPECT_TRUE(std::string("89ab").find(id[19]) != std::string::npos) << "variant: " << id;
  for (size_t i : {8u, 13u, 18u, 23u}) EXPECT_EQ(id[i], '-');

  constexpr int kThreads = 4, kPer = 5000;
  std::vector<std::vector<std::string>> per_thread(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) per_thread[t].push_back(NewEventId());
    });
  }
  for (auto& t : threads) t.join();
  std::set<std::string> all;
  for (const auto& ids : per_thread) {
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end())) << "one thread's ids sort in order";
    all.insert(ids.begin(), ids.end());
  }
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kPer)) << "no duplicates";
}

TEST(ValidateEvent, RefusesWhatWouldBreakTheSubjectOrTheHeaders) {
  EXPECT_TRUE(ValidateEvent(CreditLimitChanged("c-17", 100)).ok());
  auto bad = [](auto mutate) {
    v1::OutboxEvent e = CreditLimitChanged("c-17", 100);
    mutate(e);
    return ValidateEvent(e).code();
  };
  EXPECT_EQ(bad([](auto& e) { e.set_aggregate_type("cust.omer"); }), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](auto& e) { e.set_aggregate_type(""); }), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](auto& e) { e.set_event_type("Changed>"); }), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](auto& e) { e.set_event_type("a b"); }), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](auto& e) { e.set_aggregate_id(""); }), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](auto& e) { e.set_aggregate_id("c\n17"); }), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](auto& e) { e.set_event_id("has space"); }), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](auto& e) { (*e.mutable_headers())["Nats-Msg-Id"] = "x"; }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](auto& e) { (*e.mutable_headers())["TX-EVENT-ID"] = "x"; }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](auto& e) { (*e.mutable_headers())["bad name"] = "x"; }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](auto& e) { (*e.mutable_headers())["x-ok"] = "a\r\nInjected: 1"; }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](auto& e) { (*e.mutable_headers())["x-ok"] = "a\x01b"; }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](auto& e) { (*e.mutable_headers())["x-ok"] = "a\tb"; }), StatusCode::kOk);
}

// A row the relay would refuse holds back every later event of its aggregate, so Append refuses
// it while the service can still act on the error: each case is one ToMessage refuses.
TEST(ValidateEvent, RefusesEverythingTheRelayWouldRefuse) {
  v1::OutboxEvent e = CreditLimitChanged("c-17", 100);
  (*e.mutable_headers())["content-type"] = "application/json";
  e.set_payload("{\"limit\": 100");  // truncated
  const Status st = ValidateEvent(e);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("payload is not valid JSON"), std::string::npos) << st.message();
  e.set_payload("{\"limit\": 100}");
  EXPECT_TRUE(ValidateEvent(e).ok());
  (*e.mutable_headers())["content-type"] = "application/octet-stream";
  e.set_payload(std::string("\x00\xff", 2));
  EXPECT_TRUE(ValidateEvent(e).ok()) << "a payload not declared JSON may be any bytes";
}

class SqliteOutboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "outbox-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
    ASSERT_EQ(sqlite3_open((dir_ + "/svc.db").c_str(), &db_), SQLITE_OK);
  }
  void TearDown() override {
    sqlite3_close(db_);
    std::filesystem::remove_all(dir_);
  }
  void Exec(const char* sql) {
    ASSERT_EQ(sqlite3_exec(db_, sql, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db_);
  }
  int Count(const char* sql) {
    sqlite3_stmt* s = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql, -1, &s, nullptr), SQLITE_OK);
    EXPECT_EQ(sqlite3_step(s), SQLITE_ROW);
    const int n = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return n;
  }
  std::string dir_;
  sqlite3* db_ = nullptr;
};

TEST_F(SqliteOutboxTest, TheTablesAreTheContractsAndCreationIsIdempotent) {
  ASSERT_TRUE(EnsureSchema(db_).ok());
  ASSERT_TRUE(EnsureSchema(db_).ok());
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(
                db_, "SELECT name, type, \"notnull\" FROM pragma_table_info('txcoord_outbox')", -1,
                &s, nullptr),
            SQLITE_OK);
  std::vector<std::string> columns;
  while (sqlite3_step(s) == SQLITE_ROW) {
    columns.push_back(std::string(reinterpret_cast<const char*>(sqlite3_column_text(s, 0))) + " " +
                      reinterpret_cast<const char*>(sqlite3_column_text(s, 1)) + " " +
                      std::to_string(sqlite3_column_int(s, 2)));
  }
  sqlite3_finalize(s);
  EXPECT_EQ(columns, (std::vector<std::string>{
                         "id INTEGER 0", "event_id TEXT 1", "aggregate_type TEXT 1",
                         "aggregate_id TEXT 1", "event_type TEXT 1", "payload BLOB 1",
                         "headers TEXT 1", "created_at TEXT 1", "published_at TEXT 0"}));
  EXPECT_EQ(Count("SELECT count(*) FROM pragma_table_info('txcoord_inbox')"), 3);
}

TEST_F(SqliteOutboxTest, AnEventCommitsAndRollsBackWithTheCallersTransaction) {
  ASSERT_TRUE(EnsureSchema(db_).ok());
  Exec("CREATE TABLE customer (id TEXT PRIMARY KEY, credit_limit INTEGER)");
  Exec("BEGIN");
  Exec("INSERT INTO customer VALUES ('c-17', 100)");
  auto rolled_back = Append(db_, CreditLimitChanged("c-17", 100));
  ASSERT_TRUE(rolled_back.ok()) << rolled_back.status().ToString();
  Exec("ROLLBACK");
  EXPECT_EQ(Count("SELECT count(*) FROM txcoord_outbox"), 0);

  Exec("BEGIN");
  Exec("INSERT INTO customer VALUES ('c-17', 200)");
  auto id = Append(db_, CreditLimitChanged("c-17", 200));
  ASSERT_TRUE(id.ok());
  Exec("COMMIT");
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(
      sqlite3_prepare_v2(db_,
                         "SELECT event_id, aggregate_type, aggregate_id, event_type, payload, "
                         "headers, created_at, published_at, json_valid(headers) "
                         "FROM txcoord_outbox",
                         -1, &s, nullptr),
      SQLITE_OK);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  auto text = [&](int i) {
    return std::string(reinterpret_cast<const char*>(sqlite3_column_text(s, i)));
  };
  EXPECT_EQ(text(0), *id);
  EXPECT_EQ(text(1), "customer");
  EXPECT_EQ(text(2), "c-17");
  EXPECT_EQ(text(3), "CreditLimitChanged");
  EXPECT_EQ(
      std::string(static_cast<const char*>(sqlite3_column_blob(s, 4)), sqlite3_column_bytes(s, 4)),
      R"({"customer":"c-17","limit":200})");
  EXPECT_EQ(text(5), R"({"content-type":"application/json"})");
  EXPECT_EQ(text(6).size(), 24u) << "created_at like 2026-11-21T10:00:00.123Z: " << text(6);
  EXPECT_EQ(sqlite3_column_type(s, 7), SQLITE_NULL) << "not published yet";
  EXPECT_EQ(sqlite3_column_int(s, 8), 1);
  sqlite3_finalize(s);
}

TEST_F(SqliteOutboxTest, AGivenEventIdIsKeptAndARepeatIsRefused) {
  ASSERT_TRUE(EnsureSchema(db_).ok());
  auto e = CreditLimitChanged("c-1", 5);
  e.set_event_id("evt-1");
  auto first = Append(db_, e);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, "evt-1");
  EXPECT_EQ(Append(db_, e).status().code(), StatusCode::kAlreadyExists);
  auto empty = CreditLimitChanged("c-1", 5);
  empty.set_payload("");
  EXPECT_EQ(Append(db_, empty).status().code(), StatusCode::kInvalidArgument)
      << "declared JSON, and empty is not JSON: the relay could not publish it";
  (*empty.mutable_headers())["content-type"] = "application/octet-stream";
  EXPECT_TRUE(Append(db_, empty).ok()) << "an empty payload is a valid (empty) blob";
  EXPECT_EQ(Count("SELECT count(*) FROM txcoord_outbox"), 2);
}

TEST(PostgresOutboxTest, AppendInTheCallersTransactionAndTheContractsColumns) {
  auto db = testing::SharedPostgres().CreateDatabase("outbox");
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  pqxx::connection c(testing::SharedPostgres().ConnInfo(*db));
  {
    pqxx::work w(c);
    ASSERT_TRUE(EnsureSchema(w).ok());
    ASSERT_TRUE(EnsureSchema(w).ok());
    w.commit();
  }
  {
    pqxx::work w(c);
    ASSERT_TRUE(Append(w, CreditLimitChanged("c-9", 1)).ok());
    w.abort();
  }
  std::string id;
  {
    pqxx::work w(c);
    auto r = Append(w, CreditLimitChanged("c-9", 2));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    id = *r;
    w.commit();
  }
  pqxx::work w(c);
  const auto rows = w.exec(
      "SELECT event_id, aggregate_id, convert_from(payload, 'UTF8'), headers->>'content-type', "
      "published_at IS NULL, pg_typeof(headers)::text, pg_typeof(payload)::text FROM "
      "txcoord_outbox");
  ASSERT_EQ(rows.size(), 1u) << "the aborted append left nothing";
  EXPECT_EQ(rows[0][0].as<std::string>(), id);
  EXPECT_EQ(rows[0][1].as<std::string>(), "c-9");
  EXPECT_EQ(rows[0][2].as<std::string>(), R"({"customer":"c-9","limit":2})");
  EXPECT_EQ(rows[0][3].as<std::string>(), "application/json");
  EXPECT_TRUE(rows[0][4].as<bool>());
  EXPECT_EQ(rows[0][5].as<std::string>(), "jsonb");
  EXPECT_EQ(rows[0][6].as<std::string>(), "bytea");
}

}  // namespace
}  // namespace txcoord::outbox
