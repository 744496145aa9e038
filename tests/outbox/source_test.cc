// OutboxSource conformance: one suite over the SQLite and PostgreSQL sources (real databases),
// then what only PostgreSQL has (transactions committing out of id order, connection loss).
#include "txcoord/outbox/source.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>

#include <filesystem>
#include <pqxx/pqxx>
#include <thread>

#include "txcoord/outbox/outbox.h"
#include "txcoord/testing/poll.h"
#include "txcoord/testing/postgres_server.h"

namespace txcoord::outbox {
namespace {

using std::chrono::milliseconds;

v1::OutboxEvent Event(const std::string& aggregate, int n) {
  v1::OutboxEvent e;
  e.set_aggregate_type("customer");
  e.set_aggregate_id(aggregate);
  e.set_event_type("CreditLimitChanged");
  e.set_payload(R"({"customer":")" + aggregate + R"(","limit":)" + std::to_string(n) + "}");
  (*e.mutable_headers())["content-type"] = "application/json";
  return e;
}

std::vector<int64_t> Ids(const std::vector<OutboxRow>& rows) {
  std::vector<int64_t> ids;
  for (const OutboxRow& r : rows) ids.push_back(r.id);
  return ids;
}

// ---- backends ---------------------------------------------------------------------------------

class SqliteBackend {
 public:
  SqliteBackend() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "source-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
    path_ = dir_ + "/service.db";
    EXPECT_EQ(sqlite3_open(path_.c_str(), &db_), SQLITE_OK);
    Exec("PRAGMA journal_mode=WAL");
    EXPECT_TRUE(EnsureSchema(db_).ok());
  }
  ~SqliteBackend() {
    sqlite3_close(db_);
    std::filesystem::remove_all(dir_);
  }
  SourceConfig Config() const { return SqliteSourceConfig{path_}; }
  std::string Name() const { return "sqlite://" + path_; }

  // Appends `events` in one transaction of the service's own connection; returns their ids.
  std::vector<std::string> Insert(const std::vector<v1::OutboxEvent>& events) {
    std::vector<std::string> ids;
    Exec("BEGIN IMMEDIATE");
    for (const auto& e : events) {
      auto id = Append(db_, e);
      EXPECT_TRUE(id.ok()) << id.status().ToString();
      if (id.ok()) ids.push_back(*id);
    }
    Exec("COMMIT");
    return ids;
  }
  void Exec(const std::string& sql) {
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK)
        << sql << ": " << (err ? err : "");
    sqlite3_free(err);
  }
  int64_t Count(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sql;
    EXPECT_EQ(sqlite3_step(s), SQLITE_ROW);
    const int64_t n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
  }
  void AgePublished(int64_t id, int hours) {
    Exec("UPDATE txcoord_outbox SET published_at = strftime('%Y-%m-%dT%H:%M:%fZ','now','-" +
         std::to_string(hours) + " hours') WHERE id = " + std::to_string(id));
  }

 private:
  std::string dir_;
  std::string path_;
  sqlite3* db_ = nullptr;
};

class PostgresBackend {
 public:
  PostgresBackend()
      : db_(testing::SharedPostgres().CreateDatabase("source").value()),
        conninfo_(testing::SharedPostgres().ConnInfo(db_)),
        conn_(conninfo_) {
    pqxx::work w(conn_);
    EXPECT_TRUE(EnsureSchema(w).ok());
    w.commit();
  }
  SourceConfig Config() const { return PostgresSourceConfig{conninfo_}; }
  std::string Name() const { return testing::SharedPostgres().Uri(db_); }
  const std::string& conninfo() const { return conninfo_; }

  std::vector<std::string> Insert(const std::vector<v1::OutboxEvent>& events) {
    std::vector<std::string> ids;
    pqxx::work w(conn_);
    for (const auto& e : events) {
      auto id = Append(w, e);
      EXPECT_TRUE(id.ok()) << id.status().ToString();
      if (id.ok()) ids.push_back(*id);
    }
    w.commit();
    return ids;
  }
  void Exec(const std::string& sql) {
    pqxx::nontransaction n(conn_);
    n.exec(sql);
  }
  int64_t Count(const std::string& sql) {
    pqxx::nontransaction n(conn_);
    return n.exec1(sql)[0].as<int64_t>();
  }
  void AgePublished(int64_t id, int hours) {
    Exec("UPDATE txcoord_outbox SET published_at = now() - interval '" + std::to_string(hours) +
         " hours' WHERE id = " + std::to_string(id));
  }

 private:
  std::string db_;
  std::string conninfo_;
  pqxx::connection conn_;
};

template <typename Backend>
class SourceTest : public ::testing::Test {
 protected:
  std::unique_ptr<OutboxSource> Connected() {
    auto source = MakeSource(backend_.Config(), backend_.Name());
    Status s = source->Connect();
    EXPECT_TRUE(s.ok()) << s.ToString();
    return source;
  }
  Backend backend_;
};

using Backends = ::testing::Types<SqliteBackend, PostgresBackend>;
class BackendNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    return std::is_same_v<T, SqliteBackend> ? "Sqlite" : "Postgres";
  }
};
TYPED_TEST_SUITE(SourceTest, Backends, BackendNames);

TYPED_TEST(SourceTest, ReadsUnpublishedRowsInIdOrderWithEveryField) {
  const auto ids = this->backend_.Insert({Event("c-1", 1), Event("c-2", 1), Event("c-1", 2)});
  auto source = this->Connected();
  EXPECT_EQ(source->watermark(), 0);
  auto read = source->ReadNext(100);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_EQ(read->rows.size(), 3u);
  EXPECT_FALSE(read->more);
  EXPECT_EQ(Ids(read->rows), (std::vector<int64_t>{1, 2, 3}));
  const OutboxRow& first = read->rows[0];
  EXPECT_EQ(first.event_id, ids[0]);
  EXPECT_EQ(first.aggregate_type, "customer");
  EXPECT_EQ(first.aggregate_id, "c-1");
  EXPECT_EQ(first.event_type, "CreditLimitChanged");
  EXPECT_EQ(first.payload, R"({"customer":"c-1","limit":1})");
  auto headers = ParseStringObject(first.headers_json);
  ASSERT_TRUE(headers.ok()) << first.headers_json;
  EXPECT_EQ(headers->at(0).second, "application/json");
  EXPECT_EQ(source->watermark(), 3);
  auto again = source->ReadNext(100);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->rows.empty()) << "the watermark moved past what was read";
}

TYPED_TEST(SourceTest, MarkedRowsAreNotReadAgainAndAReconnectStartsAtTheFirstUnpublished) {
  std::vector<v1::OutboxEvent> events;
  for (int i = 0; i < 10; ++i) events.push_back(Event("c-" + std::to_string(i % 3), i));
  this->backend_.Insert(events);
  auto source = this->Connected();
  auto first = source->ReadNext(4);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(Ids(first->rows), (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_TRUE(first->more) << "a full batch says there may be more";
  ASSERT_TRUE(source->MarkPublished({1, 2, 4}).ok());
  ASSERT_TRUE(source->MarkPublished({1}).ok()) << "marking twice is harmless";

  auto swept = source->ReadUnpublished(0, source->watermark(), 100);
  ASSERT_TRUE(swept.ok());
  EXPECT_EQ(Ids(*swept), (std::vector<int64_t>{3})) << "the sweep sees only unpublished rows";
  // A mark may still be on its way when MarkPublished returns; a sweep waits for it.
  EXPECT_EQ(this->backend_.Count("SELECT count(*) FROM txcoord_outbox WHERE published_at IS NULL"),
            7);

  auto fresh = this->Connected();
  EXPECT_EQ(fresh->watermark(), 2) << "just below the lowest unpublished row, 3";
  auto rest = fresh->ReadNext(100);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(Ids(rest->rows), (std::vector<int64_t>{3, 5, 6, 7, 8, 9, 10}));
}

TYPED_TEST(SourceTest, OneLeaderPerOutboxAndTheOtherTakesOverWhenItGoes) {
  this->backend_.Insert({Event("c-1", 1)});
  auto first = this->Connected();
  auto second = this->Connected();
  auto lead = first->TryLead();
  ASSERT_TRUE(lead.ok()) << lead.status().ToString();
  EXPECT_TRUE(*lead);
  EXPECT_TRUE(first->leading());
  auto other = second->TryLead();
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(*other) << "a second relay stands by";
  EXPECT_FALSE(second->leading());
  first.reset();  // the relay goes away: its lock with it
  const bool took_over = testing::PollUntil(milliseconds(10000), milliseconds(20), [&] {
    auto again = second->TryLead();
    return again.ok() && *again;
  });
  EXPECT_TRUE(took_over);
}

TYPED_TEST(SourceTest, ACommitElsewhereMakesTheChangeDescriptorReadable) {
  auto source = this->Connected();
  auto initial = source->CheckChanged();
  ASSERT_TRUE(initial.ok());
  auto quiet = source->CheckChanged();
  ASSERT_TRUE(quiet.ok());
  EXPECT_FALSE(quiet->changed) << "nothing committed since the last check";
  ASSERT_TRUE(source->MarkPublished({}).ok());

  std::thread writer([&] {
    std::this_thread::sleep_for(milliseconds(50));
    this->backend_.Insert({Event("c-9", 1)});
  });
  const int fd = source->change_fd();
  ASSERT_GE(fd, 0);
  bool changed = false;
  // Poll like the relay does; some wake-ups are not commits (other files, partial writes).
  testing::PollUntil(milliseconds(10000), milliseconds(1), [&] {
    pollfd p{fd, POLLIN, 0};
    poll(&p, 1, 5);
    {
      // Like the relay: after a signal, look again shortly (see ChangeCheck::recheck_after).
      auto c = source->CheckChanged();
      changed = changed || (c.ok() && c->changed);
    }
    return changed;
  });
  writer.join();
  EXPECT_TRUE(changed);
  auto read = source->ReadNext(10);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->rows.size(), 1u);
}

TYPED_TEST(SourceTest, TheRelaysOwnMarksAreNotAChange) {
  this->backend_.Insert({Event("c-1", 1), Event("c-1", 2)});
  auto source = this->Connected();
  ASSERT_TRUE(source->ReadNext(10).ok());
  ASSERT_TRUE(source->CheckChanged().ok());
  ASSERT_TRUE(source->MarkPublished({1, 2}).ok());
  auto changed = source->CheckChanged();
  ASSERT_TRUE(changed.ok());
  EXPECT_FALSE(changed->changed);
}

TYPED_TEST(SourceTest, RetentionRemovesOnlyOldPublishedRows) {
  this->backend_.Insert({Event("c-1", 1), Event("c-1", 2), Event("c-1", 3), Event("c-1", 4)});
  auto source = this->Connected();
  ASSERT_TRUE(source->MarkPublished({1, 2, 3}).ok());
  this->backend_.AgePublished(1, 48);
  this->backend_.AgePublished(2, 48);
  auto removed = source->ApplyRetention(std::chrono::hours(24), RetentionMode::kDelete, 1000);
  ASSERT_TRUE(removed.ok()) << removed.status().ToString();
  EXPECT_EQ(*removed, 2);
  EXPECT_EQ(this->backend_.Count("SELECT count(*) FROM txcoord_outbox"), 2)
      << "row 3 (published just now) and row 4 (unpublished) stay";

  ASSERT_TRUE(source->MarkPublished({4}).ok());
  this->backend_.AgePublished(3, 48);
  auto archived = source->ApplyRetention(std::chrono::hours(24), RetentionMode::kArchive, 1000);
  ASSERT_TRUE(archived.ok()) << archived.status().ToString();
  EXPECT_EQ(*archived, 1);
  EXPECT_EQ(this->backend_.Count("SELECT count(*) FROM txcoord_outbox"), 1);
  EXPECT_EQ(this->backend_.Count("SELECT count(*) FROM txcoord_outbox_archive WHERE id = 3"), 1);
}

TYPED_TEST(SourceTest, StatsCountPendingRowsAndTheOldestAge) {
  auto source = this->Connected();
  auto empty = source->Stats();
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->pending_rows, 0);
  EXPECT_EQ(empty->oldest_unpublished_age_s, 0);
  this->backend_.Insert({Event("c-1", 1), Event("c-2", 1), Event("c-3", 1)});
  ASSERT_TRUE(source->MarkPublished({2}).ok());
  auto stats = source->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->pending_rows, 2);
  EXPECT_GE(stats->oldest_unpublished_age_s, 0.0);
  EXPECT_LT(stats->oldest_unpublished_age_s, 600.0);
}

// ---- SQLite only ------------------------------------------------------------------------------

TEST(SqliteSourceTest, AMissingFileIsRefusedAndNotCreated) {
  const std::string path =
      (std::filesystem::temp_directory_path() / "no-such-dir-txrelay" / "x.db").string();
  auto source = MakeSource(SqliteSourceConfig{path}, "sqlite://" + path);
  Status s = source->Connect();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find(path), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(path));
}

// ---- PostgreSQL only --------------------------------------------------------------------------

// Reads of changing limits, with the relay's other statements on the session between them and
// rows committed meanwhile: every row is read once, in order.
TYPED_TEST(SourceTest, ReadsOfChangingLimitsNeverSkipOrRepeatARow) {
  auto source = this->Connected();
  std::vector<v1::OutboxEvent> first;
  for (int i = 1; i <= 14; ++i) first.push_back(Event("c-" + std::to_string(i % 3), i));
  this->backend_.Insert(first);
  std::vector<int64_t> seen;
  const auto read = [&](int limit) {
    auto r = source->ReadNext(limit);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return false;
    for (int64_t id : Ids(r->rows)) seen.push_back(id);
    EXPECT_LE(static_cast<int>(r->rows.size()), limit);
    return r->more;
  };
  EXPECT_TRUE(read(4));  // 1-4
  auto stats = source->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->pending_rows, 14);
  ASSERT_TRUE(source->CheckChanged().ok());
  ASSERT_TRUE(source->TryLead().value());
  EXPECT_TRUE(read(4));  // 5-8
  EXPECT_TRUE(read(2));  // 9, 10
  EXPECT_EQ(seen.size(), 10u);
  this->backend_.Insert({Event("c-1", 15), Event("c-2", 16)});
  auto sweep = source->ReadUnpublished(0, 10, 100);
  ASSERT_TRUE(sweep.ok()) << sweep.status().ToString();
  EXPECT_EQ(sweep->size(), 10u);
  EXPECT_FALSE(read(100));  // 11-16
  std::vector<int64_t> all(16);
  for (int i = 0; i < 16; ++i) all[i] = i + 1;
  EXPECT_EQ(seen, all) << "every row once, in order";
  EXPECT_FALSE(read(100));
  EXPECT_EQ(seen.size(), 16u) << "nothing read twice";
}

// A read stops at the row whose payload reaches the byte bound: memory held by one read is
// bounded by bytes, not only by rows. One row larger than the bound still comes, alone. Published
// rows in between (PostgreSQL reads them for its gap check) do not count.
TYPED_TEST(SourceTest, AReadStopsAtTheRowThatReachesTheByteBound) {
  std::vector<v1::OutboxEvent> events;
  for (int i = 0; i < 8; ++i) {
    v1::OutboxEvent e = Event("c-" + std::to_string(i % 2), i);
    e.set_payload(std::string(i == 5 ? 5000 : 400, 'a' + i));
    e.clear_headers();  // not JSON: the bytes above are the payload, whole
    events.push_back(e);
  }
  this->backend_.Insert(events);
  auto source = this->Connected();
  ASSERT_TRUE(source->MarkPublished({2}).ok());  // published: skipped, and not counted
  ASSERT_TRUE(source->Stats().ok());             // the mark is done once this returns
  auto first = source->ReadNext(ReadLimit(100, 1000));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  // 400 (id 1) + 400 (id 3) = 800 < 1000, so id 4 comes too and reaches it.
  EXPECT_EQ(Ids(first->rows), (std::vector<int64_t>{1, 3, 4}));
  EXPECT_TRUE(first->more) << "cut by bytes: there may be more";
  auto big = source->ReadNext(ReadLimit(100, 1000));
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(Ids(big->rows), (std::vector<int64_t>{5, 6})) << "id 6 (5,000 bytes) reaches it";
  auto rest = source->ReadNext(ReadLimit(100, 1000));
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(Ids(rest->rows), (std::vector<int64_t>{7, 8}));
  EXPECT_FALSE(rest->more) << "800 bytes, under the bound: nothing was cut";
  auto alone = source->ReadUnpublished(5, 8, ReadLimit(100, 10));
  ASSERT_TRUE(alone.ok()) << alone.status().ToString();
  EXPECT_EQ(Ids(*alone), (std::vector<int64_t>{6})) << "the first row comes whatever its size";
  auto swept = source->ReadUnpublished(0, 8, ReadLimit(100, 1200));
  ASSERT_TRUE(swept.ok());
  EXPECT_EQ(Ids(*swept), (std::vector<int64_t>{1, 3, 4}));
  EXPECT_TRUE(ReadMayHaveMore(*swept, ReadLimit(100, 1200)));
  EXPECT_FALSE(ReadMayHaveMore(*swept, ReadLimit(100, 1201)));
  EXPECT_TRUE(ReadMayHaveMore(*swept, ReadLimit(3)));
}

class PostgresGapTest : public ::testing::Test {
 protected:
  std::unique_ptr<OutboxSource> Connected() {
    auto source = MakeSource(backend_.Config(), backend_.Name());
    Status s = source->Connect();
    EXPECT_TRUE(s.ok()) << s.ToString();
    return source;
  }
  PostgresBackend backend_;
};

TEST_F(PostgresGapTest, ALaterCommitWaitsForAnEarlierIdStillInFlight) {
  auto source = this->Connected();
  pqxx::connection slow_conn(backend_.conninfo());
  pqxx::work slow(slow_conn);
  ASSERT_TRUE(Append(slow, Event("c-1", 1)).ok());  // takes id 1, commits later
  backend_.Insert({Event("c-2", 1)});               // id 2, committed
  auto held = source->ReadNext(100);
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  EXPECT_TRUE(held->rows.empty()) << "row 2 must wait: id 1 may still commit";
  EXPECT_GT(held->recheck_after.count(), 0);
  auto still = source->ReadNext(100);
  ASSERT_TRUE(still.ok());
  EXPECT_TRUE(still->rows.empty());
  slow.commit();
  auto both = source->ReadNext(100);
  ASSERT_TRUE(both.ok());
  EXPECT_EQ(Ids(both->rows), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(both->recheck_after.count(), 0);
}

TEST_F(PostgresGapTest, ARolledBackIdIsSkippedOnceItsTransactionEnded) {
  auto source = this->Connected();
  // A long transaction that never touches the outbox must not hold anything back.
  pqxx::connection bystander_conn(backend_.conninfo());
  pqxx::work bystander(bystander_conn);
  bystander.exec("CREATE TABLE unrelated (x int)");
  bystander.exec("INSERT INTO unrelated VALUES (1)");

  {
    pqxx::connection doomed_conn(backend_.conninfo());
    pqxx::work doomed(doomed_conn);
    ASSERT_TRUE(Append(doomed, Event("c-1", 1)).ok());  // id 1
    backend_.Insert({Event("c-2", 1)});                 // id 2
    auto held = source->ReadNext(100);
    ASSERT_TRUE(held.ok());
    EXPECT_TRUE(held->rows.empty());
    doomed.abort();
  }
  std::vector<int64_t> read;
  testing::PollUntil(milliseconds(5000), milliseconds(5), [&] {
    auto r = source->ReadNext(100);
    if (r.ok()) {
      for (const auto& row : r->rows) read.push_back(row.id);
    }
    return !read.empty();
  });
  EXPECT_EQ(read, (std::vector<int64_t>{2}));
  EXPECT_EQ(source->watermark(), 2);
  bystander.abort();
}

TEST_F(PostgresGapTest, ALostConnectionIsReportedAndEndsTheLeadership) {
  backend_.Insert({Event("c-1", 1)});
  auto source = this->Connected();
  auto lead = source->TryLead();
  ASSERT_TRUE(lead.ok() && *lead);
  backend_.Exec(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
      "'txrelay' AND datname = current_database()");
  auto read = source->ReadNext(10);
  EXPECT_EQ(read.status().code(), StatusCode::kUnavailable);
  EXPECT_FALSE(source->connected());
  EXPECT_FALSE(source->leading());
  ASSERT_TRUE(source->Connect().ok());
  auto again = source->TryLead();
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(*again);
  auto rows = source->ReadNext(10);
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->rows.size(), 1u);
}

TEST_F(PostgresGapTest, AMarkIsNotWaitedForAndItsFailureIsTheNextCallsAndLosesNothing) {
  backend_.Insert({Event("c-1", 1), Event("c-2", 1)});
  auto source = this->Connected();
  auto first = source->ReadNext(10);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(Ids(first->rows), (std::vector<int64_t>{1, 2}));
  // The rows are locked elsewhere: the UPDATE waits on the server, MarkPublished does not.
  pqxx::connection bystander_conn(backend_.conninfo());
  pqxx::work bystander(bystander_conn);
  bystander.exec("SELECT id FROM txcoord_outbox FOR UPDATE");
  ASSERT_TRUE(source->MarkPublished({1, 2}).ok()) << "sent, not waited for";
  backend_.Exec(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
      "'txrelay' AND datname = current_database()");
  auto stats = source->Stats();
  EXPECT_EQ(stats.status().code(), StatusCode::kUnavailable);
  EXPECT_FALSE(source->connected());
  bystander.abort();
  EXPECT_EQ(backend_.Count("SELECT count(*) FROM txcoord_outbox WHERE published_at IS NULL"), 2)
      << "the lost mark marked nothing";
  ASSERT_TRUE(source->Connect().ok());
  auto again = source->ReadNext(10);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(Ids(again->rows), (std::vector<int64_t>{1, 2})) << "read again, to be published again";
}

// The relay before a crash (or a failover) was waiting for id 2 while id 3 of the same aggregate
// was already visible. Starting again below the lowest visible unpublished row would take id 2
// as settled and publish 3 first; 2 would follow in a sweep, out of order.
TEST_F(PostgresGapTest, AnIdStillInFlightAcrossAReconnectStillGoesFirst) {
  backend_.Insert({Event("c-1", 1)});
  auto before = this->Connected();
  auto first = before->ReadNext(100);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(Ids(first->rows), (std::vector<int64_t>{1}));
  ASSERT_TRUE(before->MarkPublished({1}).ok());

  pqxx::connection slow_conn(backend_.conninfo());
  pqxx::work slow(slow_conn);
  ASSERT_TRUE(Append(slow, Event("c-1", 2)).ok());  // id 2, commits later
  backend_.Insert({Event("c-1", 3)});               // id 3, committed
  auto held = before->ReadNext(100);
  ASSERT_TRUE(held.ok());
  EXPECT_TRUE(held->rows.empty());
  before.reset();  // its mark of id 1 completes; the relay's knowledge of the gap is gone

  auto after = this->Connected();
  auto read = after->ReadNext(100);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_TRUE(read->rows.empty()) << "id 3 must still wait for id 2";
  EXPECT_EQ(after->watermark(), 1);
  slow.commit();
  auto both = after->ReadNext(100);
  ASSERT_TRUE(both.ok());
  EXPECT_EQ(Ids(both->rows), (std::vector<int64_t>{2, 3}));
}

// Ids up to the highest published one are settled: a connect that starts lower (an unpublished
// row there) does not wait on a void id below it.
TEST_F(PostgresGapTest, AConnectTakesIdsUpToTheHighestPublishedOneAsSettled) {
  backend_.Insert({Event("c-1", 1)});  // id 1, left unpublished (say, a held aggregate)
  pqxx::connection doomed_conn(backend_.conninfo());
  {
    pqxx::work doomed(doomed_conn);
    ASSERT_TRUE(Append(doomed, Event("c-9", 1)).ok());  // id 2, rolled back
  }
  backend_.Insert({Event("c-2", 1)});  // id 3
  backend_.Exec("UPDATE txcoord_outbox SET published_at = now() WHERE id = 3");
  auto source = this->Connected();
  EXPECT_EQ(source->watermark(), 0);
  auto read = source->ReadNext(100);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(Ids(read->rows), (std::vector<int64_t>{1}));
  EXPECT_EQ(source->watermark(), 3);
  EXPECT_EQ(read->recheck_after.count(), 0) << "id 2 is settled: no gap to wait for";
}

TEST_F(PostgresGapTest, RetentionKeepsTheHighestPublishedRowForTheNextConnect) {
  backend_.Insert({Event("c-1", 1), Event("c-1", 2), Event("c-1", 3)});
  backend_.Exec("UPDATE txcoord_outbox SET published_at = now() - interval '48 hours'");
  {
    auto source = this->Connected();
    auto removed = source->ApplyRetention(std::chrono::hours(24), RetentionMode::kDelete, 1000);
    ASSERT_TRUE(removed.ok()) << removed.status().ToString();
    EXPECT_EQ(*removed, 2);
  }
  EXPECT_EQ(backend_.Count("SELECT id FROM txcoord_outbox"), 3) << "the highest published row";

  pqxx::connection slow_conn(backend_.conninfo());
  pqxx::work slow(slow_conn);
  ASSERT_TRUE(Append(slow, Event("c-1", 4)).ok());  // id 4, commits later
  backend_.Insert({Event("c-1", 5)});               // id 5
  auto source = this->Connected();
  EXPECT_EQ(source->watermark(), 3);
  auto held = source->ReadNext(100);
  ASSERT_TRUE(held.ok());
  EXPECT_TRUE(held->rows.empty()) << "id 5 waits for id 4";
  slow.commit();
  auto both = source->ReadNext(100);
  ASSERT_TRUE(both.ok());
  EXPECT_EQ(Ids(both->rows), (std::vector<int64_t>{4, 5}));
}

}  // namespace
}  // namespace txcoord::outbox
