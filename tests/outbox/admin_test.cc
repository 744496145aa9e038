// The operators' outbox library (admin.h) on real SQLite, PostgreSQL and nats-server: status
// numbers, replays picked up by a running relay (in id order, deduplicated within the window,
// stored again into a stream that lost them), and dead letters listed and re-driven to inbox
// consumers that fail N times and then succeed.
#include "txcoord/outbox/admin.h"

#include <gtest/gtest.h>
#include <nats/nats.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <set>

#include "stream_reader.h"
#include "test_outboxes.h"
#include "txcoord/outbox/relay.h"
#include "txcoord/participant/inbox.h"
#include "txcoord/testing/nats_server.h"
#include "txcoord/testing/poll.h"

namespace txcoord::outbox {
namespace {

using std::chrono::milliseconds;
using testing::MakeEvent;
using testing::PostgresOutbox;
using testing::SqliteOutbox;
using testing::Written;
using txcoord::testing::NatsServer;
using txcoord::testing::PollUntil;
using txcoord::testing::SharedNats;

std::string Failures(const std::vector<std::string>& problems) {
  std::string text;
  for (const auto& p : problems) text += "\n  " + p;
  return text;
}

// ---- Backends: the same tests on a SQLite file and a PostgreSQL database ------------------------

struct SqliteBackend {
  static constexpr const char* kName = "Sqlite";
  SqliteOutbox outbox;
  void Write(const std::vector<v1::OutboxEvent>& events, Written* written) {
    sqlite3* db = outbox.Open();
    outbox.Write(db, events, written);
    sqlite3_close(db);
  }
  // Row `id` created `id` minutes after 2024-05-01T12:00:00Z.
  std::string SetCreatedAtSql() const {
    return "UPDATE txcoord_outbox SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', "
           "'2024-05-01T12:00:00', '+' || id || ' minutes')";
  }
  // Rows up to `last` published `id` seconds after 2024-05-02T00:00:00Z.
  std::string MarkPublishedSql(int64_t last) const {
    return "UPDATE txcoord_outbox SET published_at = strftime('%Y-%m-%dT%H:%M:%fZ', "
           "'2024-05-02T00:00:00', '+' || id || ' seconds') WHERE id <= " +
           std::to_string(last);
  }
};

struct PostgresBackend {
  static constexpr const char* kName = "Postgres";
  PostgresOutbox outbox;
  void Write(const std::vector<v1::OutboxEvent>& events, Written* written) {
    pqxx::connection c(outbox.ConnInfo());
    outbox.Write(c, events, written);
  }
  std::string SetCreatedAtSql() const {
    return "UPDATE txcoord_outbox SET created_at = timestamptz '2024-05-01 12:00:00+00' + id * "
           "interval '1 minute'";
  }
  std::string MarkPublishedSql(int64_t last) const {
    return "UPDATE txcoord_outbox SET published_at = timestamptz '2024-05-02 00:00:00+00' + id * "
           "interval '1 second' WHERE id <= " +
           std::to_string(last);
  }
};

template <typename Backend>
class AdminTest : public ::testing::Test {
 protected:
  Backend backend_;
};

using Backends = ::testing::Types<SqliteBackend, PostgresBackend>;
struct BackendNames {
  template <typename T>
  static std::string GetName(int) {
    return T::kName;
  }
};
TYPED_TEST_SUITE(AdminTest, Backends, BackendNames);

// ---- Status, and where a replay starts ----------------------------------------------------------

TYPED_TEST(AdminTest, StatusCountsRowsAndAReplayStartsWhereItWasToldInOneSuffix) {
  auto& outbox = this->backend_.outbox;
  for (int i = 0; i < 10; ++i) {
    this->backend_.Write({MakeEvent("customer", i % 2 == 0 ? "a" : "b", i)}, nullptr);
  }
  outbox.Run(this->backend_.SetCreatedAtSql());
  outbox.Run(this->backend_.MarkPublishedSql(6));

  auto status = ReadOutboxStatus(outbox.Uri());
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_EQ(status->total_rows, 10);
  EXPECT_EQ(status->pending_rows, 4);
  EXPECT_EQ(status->oldest_pending_id, 7);
  EXPECT_EQ(status->oldest_pending_created_at, "2024-05-01T12:07:00.000Z");
  // The lag is the oldest pending row's age: from 2024-05-01T12:07Z to now.
  const double expected_lag =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count() -
      1714565220.0;
  EXPECT_NEAR(status->lag_s, expected_lag, 300.0);
  EXPECT_EQ(status->last_published_id, 6);
  EXPECT_EQ(status->last_published_at, "2024-05-02T00:00:06.000Z");
  EXPECT_EQ(status->replays, 0);
  EXPECT_EQ(status->relay_leading, std::optional<bool>(false));

  // 14:04:30+02:00 is 12:04:30Z: the first row created at or after it is row 5.
  ReplayRequest by_time;
  by_time.from_time = "2024-05-01T14:04:30+02:00";
  by_time.dry_run = true;
  auto dry = ReplayOutbox(outbox.Uri(), by_time);
  ASSERT_TRUE(dry.ok()) << dry.status().ToString();
  EXPECT_EQ(dry->from_id, 5);
  EXPECT_EQ(dry->to_id, 10);
  EXPECT_EQ(dry->rows_replayed, 2) << "rows 5 and 6 are published";
  EXPECT_EQ(dry->rows_pending, 4);
  EXPECT_EQ(dry->replay_id, 0);
  EXPECT_EQ(outbox.Unpublished(), 4) << "a dry run changes nothing";

  by_time.dry_run = false;
  by_time.requested_by = "admin_test";
  std::vector<std::pair<int64_t, int64_t>> progress;
  by_time.progress = [&](int64_t done, int64_t total) { progress.emplace_back(done, total); };
  auto replayed = ReplayOutbox(outbox.Uri(), by_time);
  ASSERT_TRUE(replayed.ok()) << replayed.status().ToString();
  EXPECT_EQ(replayed->from_id, 5);
  EXPECT_EQ(replayed->rows_replayed, 2);
  EXPECT_GT(replayed->replay_id, 0);
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back(), std::make_pair(int64_t{2}, int64_t{2}));
  EXPECT_EQ(outbox.Count("SELECT count(*) FROM txcoord_outbox WHERE published_at IS NULL AND id "
                         ">= 5"),
            6);
  EXPECT_EQ(outbox.Count("SELECT count(*) FROM txcoord_outbox WHERE published_at IS NULL AND id "
                         "< 5"),
            0)
      << "rows before the start keep their published_at";
  EXPECT_EQ(outbox.Count("SELECT count(*) FROM txcoord_outbox_replays WHERE from_id = 5 AND "
                         "to_id = 10 AND rows_replayed = 2 AND requested_by = 'admin_test'"),
            1);
  status = ReadOutboxStatus(outbox.Uri());
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->pending_rows, 6);
  EXPECT_EQ(status->oldest_pending_id, 5);
  EXPECT_EQ(status->replays, 1);
  EXPECT_FALSE(status->last_replay_at.empty());

  // Rows deleted by retention cannot be replayed: a start below them begins at the first row.
  outbox.Run("DELETE FROM txcoord_outbox WHERE id <= 2");
  ReplayRequest by_id;
  by_id.from_id = 1;
  auto after_retention = ReplayOutbox(outbox.Uri(), by_id);
  ASSERT_TRUE(after_retention.ok()) << after_retention.status().ToString();
  EXPECT_EQ(after_retention->first_row_id, 3);
  EXPECT_EQ(after_retention->from_id, 3);
  EXPECT_EQ(after_retention->rows_replayed, 2) << "rows 3 and 4";
  EXPECT_EQ(outbox.Unpublished(), 8);

  // Past the end there is nothing to replay, and no replay is recorded.
  by_id.from_id = 11;
  auto past_end = ReplayOutbox(outbox.Uri(), by_id);
  ASSERT_TRUE(past_end.ok()) << past_end.status().ToString();
  EXPECT_EQ(past_end->from_id, 0);
  EXPECT_EQ(past_end->rows_replayed, 0);
  EXPECT_EQ(past_end->replay_id, 0);
  EXPECT_EQ(outbox.Count("SELECT count(*) FROM txcoord_outbox_replays"), 2);
}

TEST(AdminErrors, BadRequestsAndMissingOutboxesGetAClearErrorAndCreateNothing) {
  SqliteOutbox outbox;
  ReplayRequest both;
  both.from_id = 1;
  both.from_time = "2024-05-01T12:00:00Z";
  EXPECT_EQ(ReplayOutbox(outbox.Uri(), both).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ReplayOutbox(outbox.Uri(), ReplayRequest{}).status().code(),
            StatusCode::kInvalidArgument);
  ReplayRequest bad_time;
  bad_time.from_time = "yesterday";
  const Status bad = ReplayOutbox(outbox.Uri(), bad_time).status();
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("RFC 3339"), std::string::npos) << bad.message();

  EXPECT_EQ(ReadOutboxStatus("mysql://x").status().code(), StatusCode::kInvalidArgument);
  const std::string missing = outbox.path() + ".missing";
  EXPECT_EQ(ReadOutboxStatus("sqlite://" + missing).status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(missing)) << "status never creates a database";

  const std::string empty = outbox.path() + ".empty.db";
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(empty.c_str(), &db), SQLITE_OK);
  sqlite3_close(db);
  const Status no_table = ReadOutboxStatus("sqlite://" + empty).status();
  EXPECT_EQ(no_table.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(no_table.message().find("no txcoord_outbox"), std::string::npos) << no_table.message();
  ReplayRequest from_one;
  from_one.from_id = 1;
  EXPECT_EQ(ReplayOutbox("sqlite://" + empty, from_one).status().code(),
            StatusCode::kInvalidArgument);

  auto& pg = txcoord::testing::SharedPostgres();
  const std::string plain = pg.CreateDatabase("admin_plain").value();
  EXPECT_EQ(ReadOutboxStatus(pg.Uri(plain)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadOutboxStatus("postgresql://nobody@127.0.0.1:1/none").status().code(),
            StatusCode::kUnavailable);
}

TEST(NormalizeRfc3339, TakesZonesAndFractionsAndRefusesTheRest) {
  EXPECT_EQ(NormalizeRfc3339("2024-05-01T12:00:00Z").value(), "2024-05-01T12:00:00.000Z");
  EXPECT_EQ(NormalizeRfc3339("2024-05-01t12:00:00.5z").value(), "2024-05-01T12:00:00.500Z");
  EXPECT_EQ(NormalizeRfc3339("2024-05-01 01:30:00.123456-02:30").value(),
            "2024-05-01T04:00:00.123Z");
  EXPECT_EQ(NormalizeRfc3339("2024-03-01T00:30:00+01:00").value(), "2024-02-29T23:30:00.000Z");
  for (const char* bad :
       {"", "2024-05-01", "2024-05-01T12:00:00", "2024-13-01T00:00:00Z", "2023-02-29T00:00:00Z",
        "2024-05-01T24:00:00Z", "2024-05-01T12:00Z", "2024-05-01T12:00:00.Z",
        "2024-05-01T12:00:00+0200", "2024-05-01T12:00:00Z junk", "1714565220"}) {
    EXPECT_EQ(NormalizeRfc3339(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

// ---- Replays and a running relay ----------------------------------------------------------------

struct Published {
  int64_t id;
  std::string event_id;
  bool duplicate;
};

// A relay on one source whose sweep never runs during a test: only a replay's rewind makes it
// read below its watermark.
class RelayUnderTest {
 public:
  RelayUnderTest(const std::string& uri, SourceConfig config, const std::string& stream) {
    JetStreamConfig bus;
    bus.url = SharedNats().Url();
    bus.stream = stream;
    bus.subject_prefix = stream;
    RelayOptions options;
    options.window = 64;
    options.sweep_interval = std::chrono::hours(1);
    options.leader_retry = milliseconds(100);
    options.reconnect_min = milliseconds(20);
    options.reconnect_max = milliseconds(300);
    options.stats_interval = milliseconds(100);
    RelayHooks hooks;
    hooks.on_published = [this](size_t, int64_t id, const std::string& event_id, bool dup) {
      std::lock_guard lock(mu_);
      published_.push_back({id, event_id, dup});
    };
    relay_ = std::make_unique<Relay>(1, Relay::DefaultParts({std::move(config)}, {uri}, bus),
                                     stream, options, hooks);
    relay_->Start();
  }
  ~RelayUnderTest() { relay_->Stop(); }

  std::vector<Published> Take() {
    std::lock_guard lock(mu_);
    return std::exchange(published_, {});
  }
  size_t count() {
    std::lock_guard lock(mu_);
    return published_.size();
  }
  Relay& relay() { return *relay_; }

 private:
  std::mutex mu_;
  std::vector<Published> published_;  // GUARDED_BY(mu_)
  std::unique_ptr<Relay> relay_;
};

// Event ids per aggregate in id order, for rows with id >= from_id.
template <typename Outbox>
testing::ExpectedEvents RowsFrom(const Outbox& outbox, int64_t from_id) {
  testing::ExpectedEvents all;
  outbox.AddExpected(all);
  // AddExpected gives every row; keep the suffix by looking the ids up.
  testing::ExpectedEvents out;
  std::set<std::string> keep;
  for (const auto& [aggregate, ids] : all) {
    for (const auto& id : ids) {
      if (outbox.Count("SELECT count(*) FROM txcoord_outbox WHERE event_id = '" + id +
                       "' AND id >= " + std::to_string(from_id)) == 1) {
        out[aggregate].push_back(id);
      }
    }
  }
  return out;
}

// The ids `published` holds per aggregate, checked to be ascending.
void ExpectAscendingPerAggregate(const std::vector<Published>& published,
                                 const std::map<int64_t, std::string>& aggregate_of_id) {
  std::map<std::string, int64_t> last;
  for (const Published& p : published) {
    auto it = aggregate_of_id.find(p.id);
    ASSERT_NE(it, aggregate_of_id.end()) << "row " << p.id;
    int64_t& previous = last[it->second];
    EXPECT_GT(p.id, previous) << "aggregate " << it->second << ": row " << p.id
                              << " was published after row " << previous;
    previous = p.id;
  }
}

Status RecreateStream(const std::string& url, const std::string& name) {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  natsStatus s = natsConnection_ConnectTo(&nc, url.c_str());
  if (s == NATS_OK) s = natsConnection_JetStream(&js, nc, nullptr);
  if (s == NATS_OK) s = js_DeleteStream(js, name.c_str(), nullptr, nullptr);
  if (s == NATS_OK) s = testing::AddStream(js, name, std::chrono::minutes(2));
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  if (s != NATS_OK)
    return Status::Unavailable(std::string("recreate stream: ") + natsStatus_GetText(s));
  return Status::Ok();
}

TYPED_TEST(AdminTest, ARunningRelayPublishesReplayedRowsAgainInOrderAndTheStreamKeepsEachOnce) {
  auto& outbox = this->backend_.outbox;
  const std::string stream = NatsServer::UniqueStreamName("replay");
  Written written;
  for (int i = 0; i < 60; ++i) {
    this->backend_.Write({MakeEvent("customer", "c-" + std::to_string(i % 3), i)}, &written);
  }
  RelayUnderTest relay(outbox.Uri(), outbox.Config(), stream);
  ASSERT_TRUE(PollUntil(milliseconds(60000), milliseconds(10),
                        [&] { return outbox.Unpublished() == 0 && relay.count() == 60; }));
  // Leadership shows in the status while the relay runs.
  ASSERT_TRUE(PollUntil(milliseconds(10000), milliseconds(20), [&] {
    auto status = ReadOutboxStatus(outbox.Uri());
    return status.ok() && status->relay_leading == std::optional<bool>(true);
  }));
  relay.Take();

  // 1. Within the duplicate window: rows 25 to 60 are published again, in id order per
  // aggregate, and the broker drops every one of them as a duplicate.
  ReplayRequest request;
  request.from_id = 25;
  auto replayed = ReplayOutbox(outbox.Uri(), request);
  ASSERT_TRUE(replayed.ok()) << replayed.status().ToString();
  EXPECT_EQ(replayed->from_id, 25);
  EXPECT_EQ(replayed->rows_replayed, 36);
  // Written after the replay: each must follow the replayed rows of its aggregate.
  for (int i = 0; i < 3; ++i) {
    this->backend_.Write({MakeEvent("customer", "c-" + std::to_string(i), 100 + i)}, &written);
  }
  ASSERT_TRUE(PollUntil(milliseconds(60000), milliseconds(10),
                        [&] { return outbox.Unpublished() == 0 && relay.count() >= 39; }))
      << relay.count() << " published, " << outbox.Unpublished() << " unpublished";
  // Row i of the first 60 belongs to c-(i-1)%3; rows 61 to 63 to c-0, c-1, c-2.
  std::map<int64_t, std::string> aggregate_of_id;
  for (int64_t id = 1; id <= 63; ++id) {
    aggregate_of_id[id] = "customer/c-" + std::to_string(id <= 60 ? (id - 1) % 3 : id - 61);
  }
  std::vector<Published> after = relay.Take();
  std::set<int64_t> ids;
  for (const Published& p : after) {
    EXPECT_TRUE(ids.insert(p.id).second) << "row " << p.id << " published twice";
    EXPECT_EQ(p.duplicate, p.id <= 60) << "row " << p.id;
  }
  std::set<int64_t> expected_ids;
  for (int64_t id = 25; id <= 63; ++id) expected_ids.insert(id);
  EXPECT_EQ(ids, expected_ids) << "exactly the replayed rows and the new ones";
  ExpectAscendingPerAggregate(after, aggregate_of_id);
  {
    auto messages = testing::ReadStream(SharedNats().Url(), stream);
    ASSERT_TRUE(messages.ok()) << messages.status().ToString();
    EXPECT_EQ(messages->size(), 63u);
    const auto problems = testing::CheckExactlyOnceInOrder(*messages, written.Snapshot());
    EXPECT_TRUE(problems.empty()) << Failures(problems);
  }

  // 2. A stream that lost its messages (deleted and made again, as after losing its store):
  // a replay from row 40 stores rows 40 to 63 again, once each, in order per aggregate.
  ASSERT_TRUE(RecreateStream(SharedNats().Url(), stream).ok());
  request.from_id = 40;
  replayed = ReplayOutbox(outbox.Uri(), request);
  ASSERT_TRUE(replayed.ok()) << replayed.status().ToString();
  EXPECT_EQ(replayed->rows_replayed, 24);
  ASSERT_TRUE(PollUntil(milliseconds(60000), milliseconds(10),
                        [&] { return outbox.Unpublished() == 0 && relay.count() >= 24; }));
  after = relay.Take();
  EXPECT_EQ(after.size(), 24u);
  for (const Published& p : after) EXPECT_FALSE(p.duplicate) << "row " << p.id;
  ExpectAscendingPerAggregate(after, aggregate_of_id);
  auto messages = testing::ReadStream(SharedNats().Url(), stream);
  ASSERT_TRUE(messages.ok()) << messages.status().ToString();
  EXPECT_EQ(messages->size(), 24u);
  const auto problems = testing::CheckExactlyOnceInOrder(*messages, RowsFrom(outbox, 40));
  EXPECT_TRUE(problems.empty()) << Failures(problems);
  EXPECT_EQ(relay.relay().Statuses()[0].replays_total, 2);
}

// ---- Dead letters -------------------------------------------------------------------------------

// An events stream and its dead-letter stream of their own, and events published as txrelay
// publishes them.
class DeadLetterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "deadletter-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
    stream_ = NatsServer::UniqueStreamName("dlq_events");
    dead_stream_ = stream_ + "_DEAD";
    ASSERT_EQ(natsConnection_ConnectTo(&nc_, SharedNats().Url().c_str()), NATS_OK);
    ASSERT_EQ(natsConnection_JetStream(&js_, nc_, nullptr), NATS_OK);
    ASSERT_EQ(testing::AddStream(js_, stream_), NATS_OK);
  }
  void TearDown() override {
    consumers_.clear();
    for (sqlite3* db : dbs_) sqlite3_close(db);
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
    std::filesystem::remove_all(dir_);
  }

  void Publish(const std::string& event_id, const std::string& body) {
    const std::string subject = stream_ + ".item.Set";
    natsMsg* msg = nullptr;
    ASSERT_EQ(
        natsMsg_Create(&msg, subject.c_str(), nullptr, body.data(), static_cast<int>(body.size())),
        NATS_OK);
    natsMsgHeader_Set(msg, "Nats-Msg-Id", event_id.c_str());
    natsMsgHeader_Set(msg, "Tx-Event-Id", event_id.c_str());
    natsMsgHeader_Set(msg, "Tx-Event-Type", "Set");
    natsMsgHeader_Set(msg, "Tx-Aggregate-Type", "item");
    natsMsgHeader_Set(msg, "Tx-Aggregate-Id", "k");
    natsMsgHeader_Set(msg, "content-type", "text/plain");
    EXPECT_EQ(js_PublishMsg(nullptr, js_, msg, nullptr, nullptr), NATS_OK);
    natsMsg_Destroy(msg);
  }

  // A consumer whose handler records each applied event in table `applied` and fails while
  // `fail(event_id, attempt_number_overall)` says so.
  participant::InboxConsumer& AddConsumer(const std::string& name, int max_failures,
                                          std::function<bool(const std::string&, int)> fail) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open((dir_ + "/" + name + ".db").c_str(), &db), SQLITE_OK);
    sqlite3_exec(db, "CREATE TABLE applied (event_id TEXT NOT NULL, body TEXT NOT NULL)", nullptr,
                 nullptr, nullptr);
    dbs_.push_back(db);
    participant::InboxConsumerOptions o;
    o.nats_url = SharedNats().Url();
    o.stream = stream_;
    o.consumer = name;
    o.max_failures = max_failures;
    o.retry_min = milliseconds(5);
    o.retry_max = milliseconds(20);
    o.dead_letter_prefix = stream_ + "_dead";
    o.dead_letter_stream = dead_stream_;
    auto attempts = std::make_shared<std::map<std::string, int>>();
    auto consumer = participant::InboxConsumer::Create(
        o, db, [attempts, fail](sqlite3* db, const participant::InboxEvent& e) {
          const int n = ++(*attempts)[e.event_id];
          if (fail(e.event_id, n)) {
            return Status::Unavailable("refused attempt " + std::to_string(n));
          }
          sqlite3_stmt* s = nullptr;
          sqlite3_prepare_v2(db, "INSERT INTO applied VALUES (?1, ?2)", -1, &s, nullptr);
          sqlite3_bind_text(s, 1, e.event_id.c_str(), -1, SQLITE_TRANSIENT);
          sqlite3_bind_text(s, 2, e.payload.c_str(), -1, SQLITE_TRANSIENT);
          const int rc = sqlite3_step(s);
          sqlite3_finalize(s);
          return rc == SQLITE_DONE ? Status::Ok() : Status::Unavailable("insert");
        });
    EXPECT_TRUE(consumer.ok()) << consumer.status().ToString();
    consumers_.push_back(std::move(consumer).value());
    return *consumers_.back();
  }

  // Polls every consumer until `done`, for up to 20 s.
  bool RunUntil(const std::function<bool()>& done) {
    return PollUntil(milliseconds(20000), milliseconds(0), [&] {
      for (auto& c : consumers_) EXPECT_TRUE(c->PollOnce(milliseconds(50)).ok());
      return done();
    });
  }

  int64_t Applied(size_t consumer, const std::string& event_id) {
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(dbs_[consumer], "SELECT count(*) FROM applied WHERE event_id = ?1", -1, &s,
                       nullptr);
    sqlite3_bind_text(s, 1, event_id.c_str(), -1, SQLITE_TRANSIENT);
    const int64_t n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_finalize(s);
    return n;
  }

  std::unique_ptr<DeadLetterQueue> Queue() {
    DeadLetterConfig config;
    config.nats_url = SharedNats().Url();
    config.stream = dead_stream_;
    auto queue = DeadLetterQueue::Connect(config);
    EXPECT_TRUE(queue.ok()) << queue.status().ToString();
    return queue.ok() ? std::move(queue).value() : nullptr;
  }

  std::string dir_;
  std::string stream_;
  std::string dead_stream_;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  std::vector<sqlite3*> dbs_;
  std::vector<std::unique_ptr<participant::InboxConsumer>> consumers_;
};

TEST_F(DeadLetterTest, AnEventThatFailedNTimesIsListedThenReDrivenAndAppliedOnceEverywhere) {
  Publish("e-1", "one");
  Publish("e-2", "two");
  Publish("e-3", "three");
  // `replica` refuses e-2 on its first three attempts, which is all it allows; `audit` takes all.
  auto& replica =
      AddConsumer("replica", 3, [](const std::string& id, int n) { return id == "e-2" && n <= 3; });
  auto& audit = AddConsumer("audit", 3, [](const std::string&, int) { return false; });
  ASSERT_TRUE(RunUntil([&] {
    return replica.Stats().applied == 2 && replica.Stats().dead_lettered == 1 &&
           audit.Stats().applied == 3;
  }));

  auto queue = Queue();
  ASSERT_NE(queue, nullptr);
  auto letters = queue->List();
  ASSERT_TRUE(letters.ok()) << letters.status().ToString();
  ASSERT_EQ(letters->size(), 1u);
  const DeadLetter letter = letters->front();
  EXPECT_EQ(letter.consumer, "replica");
  EXPECT_EQ(letter.event_id, "e-2");
  EXPECT_EQ(letter.original_subject, stream_ + ".item.Set");
  EXPECT_GT(letter.original_sequence, 0u);
  EXPECT_EQ(letter.attempts, 3);
  EXPECT_NE(letter.reason.find("refused attempt 3"), std::string::npos) << letter.reason;
  EXPECT_EQ(letter.payload, "two");
  EXPECT_EQ(letter.subject, stream_ + "_dead.replica");
  EXPECT_FALSE(letter.dead_lettered_at.empty());

  auto driven = queue->Redrive(letter);
  ASSERT_TRUE(driven.ok()) << driven.status().ToString();
  EXPECT_EQ(driven->stream, stream_);
  EXPECT_EQ(driven->subject, stream_ + ".item.Set");
  EXPECT_FALSE(driven->duplicate);
  EXPECT_EQ(queue->List().value().size(), 0u) << "deleted from the dead-letter stream";

  // The 4th attempt succeeds; `audit` applied e-2 before and skips the copy by its inbox.
  ASSERT_TRUE(RunUntil(
      [&] { return replica.Stats().applied == 3 && audit.Stats().duplicates_skipped == 1; }));
  EXPECT_EQ(Applied(0, "e-2"), 1);
  EXPECT_EQ(Applied(1, "e-2"), 1);
  EXPECT_EQ(audit.Stats().applied, 3);

  // The copy kept the payload and the original headers, under an id of its own.
  natsMsg* copy = nullptr;
  ASSERT_EQ(js_GetMsg(&copy, js_, stream_.c_str(), driven->stream_sequence, nullptr, nullptr),
            NATS_OK);
  const char* value = nullptr;
  EXPECT_EQ(std::string(natsMsg_GetData(copy), natsMsg_GetDataLength(copy)), "two");
  ASSERT_EQ(natsMsgHeader_Get(copy, "Tx-Event-Id", &value), NATS_OK);
  EXPECT_STREQ(value, "e-2");
  ASSERT_EQ(natsMsgHeader_Get(copy, "content-type", &value), NATS_OK);
  EXPECT_STREQ(value, "text/plain");
  ASSERT_EQ(natsMsgHeader_Get(copy, "Nats-Msg-Id", &value), NATS_OK);
  EXPECT_NE(std::string(value), "e-2");
  EXPECT_NE(natsMsgHeader_Get(copy, "Tx-Dead-Letter-Reason", &value), NATS_OK);
  natsMsg_Destroy(copy);

  // Re-driving it again (as after a delete that failed) is dropped by the broker as a repeat.
  auto again = queue->Redrive(letter);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(again->duplicate);
  for (auto& c : consumers_) EXPECT_EQ(c->PollOnce(milliseconds(300)).value(), 0);
  EXPECT_EQ(Applied(0, "e-2"), 1);
}

TEST_F(DeadLetterTest, AReDrivenEventThatFailsAgainIsDeadLetteredAgain) {
  Publish("e-poison", "bad");
  auto& consumer = AddConsumer("replica", 2, [](const std::string&, int) { return true; });
  ASSERT_TRUE(RunUntil([&] { return consumer.Stats().dead_lettered == 1; }));
  auto queue = Queue();
  ASSERT_NE(queue, nullptr);
  auto letters = queue->List();
  ASSERT_TRUE(letters.ok() && letters->size() == 1u);
  ASSERT_TRUE(queue->Redrive(letters->front()).ok());
  ASSERT_TRUE(RunUntil([&] { return consumer.Stats().dead_lettered == 2; }));
  // Within the dead-letter stream's duplicate window too: the new failure is kept, not dropped
  // as a repeat of the first.
  letters = queue->List();
  ASSERT_TRUE(letters.ok());
  ASSERT_EQ(letters->size(), 1u);
  EXPECT_EQ(letters->front().event_id, "e-poison");
  EXPECT_EQ(letters->front().attempts, 2);
}

TEST_F(DeadLetterTest, WhatCannotBeReDrivenIsRefusedAndAMissingStreamIsNotFound) {
  auto queue = Queue();
  ASSERT_NE(queue, nullptr);
  EXPECT_EQ(queue->List().status().code(), StatusCode::kNotFound) << "no dead letter yet";

  Publish("e-poison", "bad");
  auto& consumer = AddConsumer("replica", 1, [](const std::string&, int) { return true; });
  ASSERT_TRUE(RunUntil([&] { return consumer.Stats().dead_lettered == 1; }));
  DeadLetter letter = queue->List().value().front();
  DeadLetter nowhere = letter;
  nowhere.original_subject.clear();
  EXPECT_EQ(queue->Redrive(nowhere).status().code(), StatusCode::kInvalidArgument);
  DeadLetter loop = letter;
  loop.original_subject = stream_ + "_dead.replica";
  const Status refused = queue->Redrive(loop).status();
  EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument) << refused.ToString();
  EXPECT_EQ(queue->List().value().size(), 1u) << "a refused re-drive leaves the dead letter";

  DeadLetterConfig unreachable;
  unreachable.nats_url = "nats://127.0.0.1:1";
  unreachable.timeout = milliseconds(500);
  EXPECT_EQ(DeadLetterQueue::Connect(unreachable).status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace txcoord::outbox
