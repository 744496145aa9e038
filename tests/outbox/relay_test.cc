// The relay in-process, on real SQLite, PostgreSQL and nats-server: what reaches the stream,
// and that failures (refused publishes, lost acks, dropped connections, a restarted broker,
// bad rows) never lose, duplicate in the stream, or reorder an aggregate's events.
#include "txcoord/outbox/relay.h"

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

#include "stream_reader.h"
#include "test_outboxes.h"
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

// A fast relay for tests: short timers, so failures are noticed and retried quickly.
RelayOptions FastOptions() {
  RelayOptions o;
  o.window = 64;
  o.publish_timeout = milliseconds(2000);
  o.sweep_interval = milliseconds(300);
  o.leader_retry = milliseconds(100);
  o.reconnect_min = milliseconds(20);
  o.reconnect_max = milliseconds(300);
  o.retry_min = milliseconds(5);
  o.retry_max = milliseconds(100);
  o.stats_interval = milliseconds(100);
  o.drain_timeout = milliseconds(5000);
  return o;
}

struct Stream {
  std::string url;
  std::string name;
  JetStreamConfig Config() const {
    JetStreamConfig c;
    c.url = url;
    c.stream = name;
    c.subject_prefix = name;  // streams must not overlap in subjects on the shared server
    return c;
  }
};

Stream NewStream(const std::string& url) { return {url, NatsServer::UniqueStreamName("relay")}; }

std::string Failures(const std::vector<std::string>& problems) {
  std::string text;
  for (const auto& p : problems) text += "\n  " + p;
  return text;
}

void ExpectStreamHolds(const Stream& stream, const Written& written) {
  auto messages = testing::ReadStream(stream.url, stream.name);
  ASSERT_TRUE(messages.ok()) << messages.status().ToString();
  EXPECT_EQ(messages->size(), written.count());
  const auto problems = testing::CheckExactlyOnceInOrder(*messages, written.Snapshot());
  EXPECT_TRUE(problems.empty()) << Failures(problems);
}

TEST(RelayTest, PublishesEveryRowOfEverySourceOnceInOrderWithTheContractsHeaders) {
  SqliteOutbox sqlite;
  PostgresOutbox postgres;
  const Stream stream = NewStream(SharedNats().Url());
  Written written;
  sqlite3* db = sqlite.Open();
  pqxx::connection pg(postgres.ConnInfo());
  for (int i = 0; i < 300; ++i) {
    sqlite.Write(db, {MakeEvent("customer", "s-" + std::to_string(i % 17), i)}, &written);
    postgres.Write(pg, {MakeEvent("order", "p-" + std::to_string(i % 13), i)}, &written);
  }
  sqlite3_close(db);

  std::atomic<int> acked{0};
  RelayHooks hooks;
  hooks.on_published = [&](size_t, int64_t, const std::string&, bool) { ++acked; };
  Relay relay(2,
              Relay::DefaultParts({sqlite.Config(), postgres.Config()},
                                  {sqlite.Uri(), postgres.Uri()}, stream.Config()),
              stream.name, FastOptions(), hooks);
  relay.Start();
  EXPECT_TRUE(PollUntil(milliseconds(60000), milliseconds(20),
                        [&] { return sqlite.Unpublished() == 0 && postgres.Unpublished() == 0; }));
  EXPECT_TRUE(relay.Stop());
  EXPECT_EQ(acked.load(), 600);
  ExpectStreamHolds(stream, written);

  auto messages = testing::ReadStream(stream.url, stream.name);
  ASSERT_TRUE(messages.ok());
  const testing::StreamMessage& m = messages->front();
  EXPECT_EQ(m.subject.substr(0, stream.name.size() + 1), stream.name + ".");
  EXPECT_TRUE(m.subject.ends_with(".Changed")) << m.subject;
  EXPECT_EQ(m.Header("Tx-Event-Id"), m.Header("Nats-Msg-Id"));
  EXPECT_EQ(m.Header("Tx-Event-Type"), "Changed");
  EXPECT_FALSE(m.Header("Tx-Outbox-Id").empty());
  EXPECT_EQ(m.Header("content-type"), "application/json");
  EXPECT_EQ(m.body.front(), '{');

  const auto statuses = relay.Statuses();
  ASSERT_EQ(statuses.size(), 2u);
  EXPECT_EQ(statuses[0].published_total + statuses[1].published_total, 600);
  EXPECT_EQ(statuses[0].marked_total + statuses[1].marked_total, 600);
}

TEST(RelayTest, AnIdleRelayPublishesANewRowWithoutBeingAsked) {
  SqliteOutbox sqlite;
  PostgresOutbox postgres;
  const Stream stream = NewStream(SharedNats().Url());
  RelayOptions options = FastOptions();
  // A fallback check far in the future: only the change signals can wake the relay here.
  options.change_check = milliseconds(600000);
  options.sweep_interval = milliseconds(600000);
  Relay relay(2,
              Relay::DefaultParts({sqlite.Config(), postgres.Config()},
                                  {sqlite.Uri(), postgres.Uri()}, stream.Config()),
              stream.name, options);
  relay.Start();
  ASSERT_TRUE(PollUntil(milliseconds(20000), milliseconds(10), [&] {
    const auto s = relay.Statuses();
    return s[0].role == SourceStatus::Role::kLeader && s[0].bus_connected &&
           s[1].role == SourceStatus::Role::kLeader && s[1].bus_connected;
  }));
  Written written;
  for (int round = 0; round < 3; ++round) {
    std::this_thread::sleep_for(milliseconds(200));  // idle: the relay sleeps in poll()
    sqlite3* db = sqlite.Open();
    sqlite.Write(db, {MakeEvent("customer", "c-1", round)}, &written);
    sqlite3_close(db);
    pqxx::connection pg(postgres.ConnInfo());
    postgres.Write(pg, {MakeEvent("order", "o-1", round)}, &written);
    EXPECT_TRUE(PollUntil(milliseconds(20000), milliseconds(5),
                          [&] { return sqlite.Unpublished() == 0 && postgres.Unpublished() == 0; }))
        << "round " << round;
  }
  relay.Stop();
  ExpectStreamHolds(stream, written);
}

TEST(RelayTest, BadRowsAreHeldWithAClearErrorAndDoNotStopTheOtherRows) {
  SqliteOutbox sqlite;
  const Stream stream = NewStream(SharedNats().Url());
  Written good;
  sqlite3* db = sqlite.Open();
  sqlite.Write(db, {MakeEvent("customer", "ok-1", 1)}, &good);
  // Rows written by hand, as a service in another language might: not through Append.
  SqliteOutbox::Exec(db,
                     "INSERT INTO txcoord_outbox (event_id, aggregate_type, aggregate_id, "
                     "event_type, payload, headers) VALUES "
                     "('bad-json', 'customer', 'held-1', 'Changed', 'not json', "
                     "'{\"content-type\":\"application/json\"}'),"
                     "('bad-headers', 'customer', 'held-2', 'Changed', '{}', '[\"a\"]'),"
                     "('bad-subject', 'cust.omer', 'held-3', 'Changed', '{}', '{}')");
  // A good row of a held aggregate, after its bad row: it must wait, to keep the order.
  Written behind;
  sqlite.Write(db, {MakeEvent("customer", "held-1", 2)}, &behind);
  for (int i = 0; i < 20; ++i) sqlite.Write(db, {MakeEvent("customer", "ok-2", i)}, &good);
  sqlite3_close(db);

  Relay relay(1, Relay::DefaultParts({sqlite.Config()}, {sqlite.Uri()}, stream.Config()),
              stream.name, FastOptions());
  relay.Start();
  EXPECT_TRUE(
      PollUntil(milliseconds(30000), milliseconds(20),
                [&] { return sqlite.Unpublished() == 4 && relay.Statuses()[0].bad_rows == 3; }))
      << "unpublished " << sqlite.Unpublished() << ", bad " << relay.Statuses()[0].bad_rows;
  EXPECT_NE(relay.Statuses()[0].last_error, "") << "the error is visible in /healthz";
  ExpectStreamHolds(stream, good);
  EXPECT_EQ(sqlite.Count("SELECT count(*) FROM txcoord_outbox WHERE published_at IS NULL AND "
                         "aggregate_id = 'held-1'"),
            2);

  // An operator fixes one row and deletes another; the next sweep publishes the fixed row and
  // the one that waited behind it, in order.
  sqlite.Run("UPDATE txcoord_outbox SET payload = '{\"fixed\":true}' WHERE event_id = 'bad-json'");
  sqlite.Run("DELETE FROM txcoord_outbox WHERE event_id = 'bad-headers'");
  EXPECT_TRUE(
      PollUntil(milliseconds(30000), milliseconds(20),
                [&] { return sqlite.Unpublished() == 1 && relay.Statuses()[0].bad_rows == 1; }))
      << "unpublished " << sqlite.Unpublished() << ", bad " << relay.Statuses()[0].bad_rows;
  relay.Stop();
  auto messages = testing::ReadStream(stream.url, stream.name);
  ASSERT_TRUE(messages.ok());
  std::vector<std::string> held_1;
  for (const auto& m : *messages) {
    if (m.Header("Tx-Aggregate-Id") == "held-1") held_1.push_back(m.Header("Nats-Msg-Id"));
  }
  ASSERT_EQ(held_1.size(), 2u);
  EXPECT_EQ(held_1[0], "bad-json") << "the fixed row first, then the one that waited";
  EXPECT_EQ(held_1[1], behind.Snapshot().begin()->second.front());
}

// A bus that fails on purpose, seeded: refuses some publishes (nothing reaches the broker, an
// error comes back), loses the ack of others (the broker has the message, the relay hears
// nothing and must time out), and sometimes drops the whole connection right after a publish.
class FlakyBus final : public EventBusWrapper {
 public:
  FlakyBus(const JetStreamConfig& config, EventBus::Sink sink, uint64_t seed,
           std::atomic<int>* faults)
      : EventBusWrapper(MakeJetStreamBus(config,
                                         [this](const BusEvent& e) {
                                           if (e.kind == BusEvent::Kind::kAck && LoseAck()) return;
                                           sink_(e);
                                         })),
        sink_(std::move(sink)),
        engine_(seed),
        faults_(faults) {}

  Status PublishAsync(const BusMessage& message, uint64_t token) override {
    const double dice = Roll();
    if (dice < 0.05) {
      ++*faults_;
      BusEvent refused;
      refused.token = token;
      refused.status = Status::Unavailable("injected refusal");
      sink_(refused);
      return Status::Ok();
    }
    Status s = target().PublishAsync(message, token);
    if (s.ok() && dice > 0.998) {
      ++*faults_;
      target().Disconnect();
      BusEvent lost;
      lost.kind = BusEvent::Kind::kDisconnected;
      lost.status = Status::Unavailable("injected disconnect");
      sink_(lost);
    }
    return s;
  }

 private:
  bool LoseAck() {
    if (Roll() < 0.01) {
      ++*faults_;
      return true;
    }
    return false;
  }
  double Roll() {
    std::lock_guard lock(mu_);
    return std::uniform_real_distribution<double>(0, 1)(engine_);
  }

  EventBus::Sink sink_;
  std::mutex mu_;
  std::mt19937_64 engine_;
  std::atomic<int>* faults_;
};

TEST(RelayTest, RefusedPublishesLostAcksAndDroppedConnectionsNeverReorderAnAggregate) {
  const uint64_t seed = [] {
    const char* env = std::getenv("TXCOORD_SEED");
    return env != nullptr ? std::stoull(env) : std::random_device{}();
  }();
  std::cout << "seed " << seed << " (TXCOORD_SEED=" << seed << " replays it)" << std::endl;
  SCOPED_TRACE("seed " + std::to_string(seed));
  SqliteOutbox sqlite;
  PostgresOutbox postgres;
  const Stream stream = NewStream(SharedNats().Url());
  Written written;
  std::mt19937_64 engine(seed);
  {
    sqlite3* db = sqlite.Open();
    pqxx::connection pg(postgres.ConnInfo());
    // A few hot aggregates, so that retries and resets happen with later events waiting.
    for (int i = 0; i < 1500; ++i) {
      const std::string a = std::to_string(std::uniform_int_distribution<int>(0, 7)(engine));
      sqlite.Write(db, {MakeEvent("customer", "s-" + a, i)}, &written);
      if (i % 3 == 0) postgres.Write(pg, {MakeEvent("order", "p-" + a, i)}, &written);
    }
    sqlite3_close(db);
  }
  std::atomic<int> faults{0};
  RelayOptions options = FastOptions();
  options.publish_timeout = milliseconds(300);  // a lost ack is noticed quickly
  Relay::Parts parts = Relay::DefaultParts({sqlite.Config(), postgres.Config()},
                                           {sqlite.Uri(), postgres.Uri()}, stream.Config());
  parts.make_bus = [&](size_t index, EventBus::Sink sink) {
    return std::make_unique<FlakyBus>(stream.Config(), std::move(sink), seed + index, &faults);
  };
  Relay relay(2, std::move(parts), stream.name, options);
  relay.Start();
  EXPECT_TRUE(PollUntil(milliseconds(120000), milliseconds(20),
                        [&] { return sqlite.Unpublished() == 0 && postgres.Unpublished() == 0; }));
  relay.Stop();
  EXPECT_GT(faults.load(), 20) << "the test must actually inject failures";
  const auto statuses = relay.Statuses();
  EXPECT_GT(statuses[0].publish_errors_total + statuses[1].publish_errors_total, 0);
  ExpectStreamHolds(stream, written);
}

// Holds every ack back until released: rows must stay unpublished (published_at NULL) until
// the broker's ack for them has reached the relay.
class GatedBus final : public EventBusWrapper {
 public:
  GatedBus(const JetStreamConfig& config, EventBus::Sink sink)
      : EventBusWrapper(MakeJetStreamBus(config, [this](const BusEvent& e) { Hold(e); })),
        sink_(std::move(sink)) {}
  ~GatedBus() override { Disconnect(); }

  void Release() {
    std::vector<BusEvent> held;
    {
      std::lock_guard lock(mu_);
      open_ = true;
      held.swap(held_);
    }
    for (const BusEvent& e : held) sink_(e);
  }
  size_t held() {
    std::lock_guard lock(mu_);
    return held_.size();
  }

 private:
  void Hold(const BusEvent& e) {
    {
      std::lock_guard lock(mu_);
      if (!open_) {
        held_.push_back(e);
        return;
      }
    }
    sink_(e);
  }
  EventBus::Sink sink_;
  std::mutex mu_;
  bool open_ = false;
  std::vector<BusEvent> held_;
};

// The relay's parts for one SQLite outbox, its bus a GatedBus that `bus` points to once made.
Relay::Parts GatedParts(const SqliteOutbox& sqlite, const Stream& stream,
                        std::atomic<GatedBus*>* bus) {
  Relay::Parts parts = Relay::DefaultParts({sqlite.Config()}, {sqlite.Uri()}, stream.Config());
  parts.make_bus = [bus, config = stream.Config()](size_t, EventBus::Sink sink) {
    auto gated = std::make_unique<GatedBus>(config, std::move(sink));
    *bus = gated.get();
    return gated;
  };
  return parts;
}

TEST(RelayTest, RowsAreMarkedOnlyAfterTheBrokersAck) {
  SqliteOutbox sqlite;
  const Stream stream = NewStream(SharedNats().Url());
  Written written;
  sqlite3* db = sqlite.Open();
  for (int i = 0; i < 40; ++i) {
    sqlite.Write(db, {MakeEvent("customer", "c-" + std::to_string(i % 10), i)}, &written);
  }
  sqlite3_close(db);
  std::atomic<GatedBus*> bus{nullptr};
  Relay::Parts parts = GatedParts(sqlite, stream, &bus);
  RelayOptions options = FastOptions();
  options.publish_timeout = milliseconds(60000);
  Relay relay(1, std::move(parts), stream.name, options);
  relay.Start();
  // One message per aggregate goes out; the broker stores them and acks, the acks are held.
  ASSERT_TRUE(PollUntil(milliseconds(20000), milliseconds(5),
                        [&] { return bus.load() != nullptr && bus.load()->held() == 10; }));
  std::this_thread::sleep_for(milliseconds(200));  // time to (wrongly) mark, or send more
  EXPECT_EQ(sqlite.Unpublished(), 40) << "nothing is marked before its ack";
  EXPECT_EQ(bus.load()->held(), 10u) << "no aggregate has a second event in flight";
  EXPECT_EQ(relay.Statuses()[0].in_flight, 10);
  bus.load()->Release();
  EXPECT_TRUE(
      PollUntil(milliseconds(20000), milliseconds(5), [&] { return sqlite.Unpublished() == 0; }));
  EXPECT_TRUE(relay.Stop());
  ExpectStreamHolds(stream, written);
}

// Large events: what the relay holds is bounded by their bytes too, not only by their count. Acks
// are held, so nothing leaves memory; reading stops at the row that reaches the byte bound, and
// goes on as acks free room.
TEST(RelayTest, LargeEventsAreHeldUpToTheByteBound) {
  SqliteOutbox sqlite;
  const Stream stream = NewStream(SharedNats().Url());
  Written written;
  sqlite3* db = sqlite.Open();
  const std::string pad(10'000, 'x');
  for (int i = 0; i < 40; ++i) {
    v1::OutboxEvent e = MakeEvent("customer", "c-" + std::to_string(i), i);  // 40 aggregates
    e.set_payload(R"({"n":)" + std::to_string(i) + R"(,"pad":")" + pad + R"("})");
    sqlite.Write(db, {e}, &written);
  }
  sqlite3_close(db);
  const int64_t payload = static_cast<int64_t>(pad.size()) + 16;  // {"n":NN,"pad":"..."}
  std::atomic<GatedBus*> bus{nullptr};
  Relay::Parts parts = GatedParts(sqlite, stream, &bus);
  RelayOptions options = FastOptions();
  options.publish_timeout = milliseconds(60000);
  options.max_buffered_bytes = 5 * payload - 100;  // the fifth row reaches it
  Relay relay(1, std::move(parts), stream.name, options);
  relay.Start();
  ASSERT_TRUE(PollUntil(milliseconds(20000), milliseconds(5),
                        [&] { return bus.load() != nullptr && bus.load()->held() == 5; }));
  std::this_thread::sleep_for(milliseconds(200));  // time to (wrongly) read more
  const SourceStatus held = relay.Statuses()[0];
  EXPECT_EQ(held.buffered, 5) << "the row count (16,384) would have let all 40 in";
  EXPECT_EQ(held.buffered_bytes, 5 * payload);
  EXPECT_EQ(held.in_flight, 5);
  EXPECT_EQ(bus.load()->held(), 5u);
  bus.load()->Release();
  EXPECT_TRUE(
      PollUntil(milliseconds(20000), milliseconds(5), [&] { return sqlite.Unpublished() == 0; }));
  EXPECT_TRUE(relay.Stop());
  EXPECT_EQ(relay.Statuses()[0].buffered_bytes, 0);
  ExpectStreamHolds(stream, written);
}

// A source whose database fails now and then: a read, a mark, a change check.
class FlakySource final : public OutboxSourceWrapper {
 public:
  explicit FlakySource(std::unique_ptr<OutboxSource> target)
      : OutboxSourceWrapper(std::move(target)) {}
  Result<ReadResult> ReadNext(ReadLimit limit) override {
    if (++reads_ % 4 == 2) return Fail("read");
    return target().ReadNext(limit);
  }
  Status MarkPublished(const std::vector<int64_t>& ids) override {
    if (++marks_ % 3 == 1) return Fail("mark");
    return target().MarkPublished(ids);
  }
  int failures() const { return failures_.load(); }

 private:
  Status Fail(const std::string& what) {
    ++failures_;
    target().Close();  // as a real source does when its connection breaks
    return Status::Unavailable("injected " + what + " failure");
  }
  int reads_ = 0;
  int marks_ = 0;
  std::atomic<int> failures_{0};
};

TEST(RelayTest, SourceFailuresAreRetriedAndPublishingResumesInOrder) {
  SqliteOutbox sqlite;
  PostgresOutbox postgres;
  const Stream stream = NewStream(SharedNats().Url());
  Written written;
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    sqlite3* db = sqlite.Open();
    pqxx::connection pg(postgres.ConnInfo());
    for (int i = 0; i < 400; ++i) {
      sqlite.Write(db, {MakeEvent("customer", "s-" + std::to_string(i % 3), i)}, &written);
      postgres.Write(pg, {MakeEvent("order", "p-" + std::to_string(i % 3), i)}, &written);
      if (i % 50 == 0) std::this_thread::sleep_for(milliseconds(20));
    }
    sqlite3_close(db);
  });
  std::vector<FlakySource*> flaky(2);
  Relay::Parts parts = Relay::DefaultParts({sqlite.Config(), postgres.Config()},
                                           {sqlite.Uri(), postgres.Uri()}, stream.Config());
  auto make_real = parts.make_source;
  parts.make_source = [&](size_t i) {
    auto source = std::make_unique<FlakySource>(make_real(i));
    flaky[i] = source.get();
    return source;
  };
  Relay relay(2, std::move(parts), stream.name, FastOptions());
  relay.Start();
  writer.join();
  EXPECT_TRUE(PollUntil(milliseconds(60000), milliseconds(20),
                        [&] { return sqlite.Unpublished() == 0 && postgres.Unpublished() == 0; }));
  const auto statuses = relay.Statuses();
  EXPECT_EQ(statuses[0].role, SourceStatus::Role::kLeader) << "leading again after reconnects";
  EXPECT_EQ(statuses[1].role, SourceStatus::Role::kLeader);
  EXPECT_GT(statuses[0].source_reconnects_total, 0);
  relay.Stop();
  EXPECT_GT(flaky[0]->failures() + flaky[1]->failures(), 4);
  ExpectStreamHolds(stream, written);
}

TEST(RelayTest, ABrokerRestartIsRiddenOut) {
  auto nats = NatsServer::Start();
  ASSERT_TRUE(nats.ok()) << nats.status().ToString();
  SqliteOutbox sqlite;
  PostgresOutbox postgres;
  const Stream stream = NewStream((*nats)->Url());
  Written written;
  sqlite3* db = sqlite.Open();
  pqxx::connection pg(postgres.ConnInfo());
  const auto write = [&](int from, int to) {
    for (int i = from; i < to; ++i) {
      sqlite.Write(db, {MakeEvent("customer", "s-" + std::to_string(i % 5), i)}, &written);
      postgres.Write(pg, {MakeEvent("order", "p-" + std::to_string(i % 5), i)}, &written);
    }
  };
  write(0, 200);
  Relay relay(2,
              Relay::DefaultParts({sqlite.Config(), postgres.Config()},
                                  {sqlite.Uri(), postgres.Uri()}, stream.Config()),
              stream.name, FastOptions());
  relay.Start();
  ASSERT_TRUE(PollUntil(milliseconds(30000), milliseconds(10),
                        [&] { return relay.Statuses()[0].published_total > 50; }));
  ASSERT_TRUE((*nats)->Stop(/*immediate=*/true).ok());
  write(200, 400);  // while the broker is down
  EXPECT_TRUE(PollUntil(milliseconds(10000), milliseconds(10), [&] {
    const auto s = relay.Statuses();
    return !s[0].bus_connected && !s[1].bus_connected;
  })) << "the relay notices";
  ASSERT_TRUE((*nats)->StartAgain().ok());
  write(400, 500);
  EXPECT_TRUE(PollUntil(milliseconds(60000), milliseconds(20),
                        [&] { return sqlite.Unpublished() == 0 && postgres.Unpublished() == 0; }));
  sqlite3_close(db);
  EXPECT_TRUE(relay.Stop());
  EXPECT_GE(relay.Statuses()[0].bus_reconnects_total, 1);
  ExpectStreamHolds(stream, written);
}

TEST(RelayTest, AcknowledgedRowsThatWereNotMarkedArePublishedAgainAsDuplicates) {
  SqliteOutbox sqlite;
  const Stream stream = NewStream(SharedNats().Url());
  Written written;
  sqlite3* db = sqlite.Open();
  for (int i = 0; i < 50; ++i) sqlite.Write(db, {MakeEvent("customer", "c-1", i)}, &written);
  sqlite3_close(db);
  {
    Relay relay(1, Relay::DefaultParts({sqlite.Config()}, {sqlite.Uri()}, stream.Config()),
                stream.name, FastOptions());
    relay.Start();
    ASSERT_TRUE(PollUntil(milliseconds(30000), milliseconds(10),
                          [&] { return sqlite.Unpublished() == 0; }));
    relay.Stop();
  }
  // As if a relay had crashed between the acks and the marks.
  sqlite.Run("UPDATE txcoord_outbox SET published_at = NULL");
  std::atomic<int> duplicates{0};
  RelayHooks hooks;
  hooks.on_published = [&](size_t, int64_t, const std::string&, bool duplicate) {
    duplicates += duplicate ? 1 : 0;
  };
  Relay again(1, Relay::DefaultParts({sqlite.Config()}, {sqlite.Uri()}, stream.Config()),
              stream.name, FastOptions(), hooks);
  again.Start();
  ASSERT_TRUE(
      PollUntil(milliseconds(30000), milliseconds(10), [&] { return sqlite.Unpublished() == 0; }));
  again.Stop();
  EXPECT_EQ(duplicates.load(), 50) << "the broker recognised every repeat by its Nats-Msg-Id";
  EXPECT_EQ(again.Statuses()[0].duplicates_total, 50);
  ExpectStreamHolds(stream, written);
}

TEST(RelayTest, RetentionDeletesOldPublishedRows) {
  SqliteOutbox sqlite;
  const Stream stream = NewStream(SharedNats().Url());
  sqlite3* db = sqlite.Open();
  for (int i = 0; i < 30; ++i) sqlite.Write(db, {MakeEvent("customer", "c-1", i)}, nullptr);
  sqlite3_close(db);
  RelayOptions options = FastOptions();
  options.retention = std::chrono::hours(1);
  options.retention_interval = milliseconds(100);
  Relay relay(1, Relay::DefaultParts({sqlite.Config()}, {sqlite.Uri()}, stream.Config()),
              stream.name, options);
  relay.Start();
  ASSERT_TRUE(
      PollUntil(milliseconds(30000), milliseconds(10), [&] { return sqlite.Unpublished() == 0; }));
  EXPECT_EQ(sqlite.Count("SELECT count(*) FROM txcoord_outbox"), 30) << "too young to go";
  sqlite.Run(
      "UPDATE txcoord_outbox SET published_at = strftime('%Y-%m-%dT%H:%M:%fZ','now','-2 hours') "
      "WHERE id <= 10");
  EXPECT_TRUE(PollUntil(milliseconds(10000), milliseconds(20),
                        [&] { return sqlite.Count("SELECT count(*) FROM txcoord_outbox") == 20; }));
  relay.Stop();
  EXPECT_EQ(relay.Statuses()[0].retention_removed_total, 10);
  EXPECT_EQ(sqlite.Count("SELECT min(id) FROM txcoord_outbox"), 11);
}

// A retention statement that keeps failing on a working connection (a missing DELETE right, an
// archive table that no longer matches) must not stop publishing: before, each failure dropped
// the window and reconnected, and nothing was ever marked.
class RetentionFails final : public OutboxSourceWrapper {
 public:
  explicit RetentionFails(std::unique_ptr<OutboxSource> target)
      : OutboxSourceWrapper(std::move(target)) {}
  Result<int64_t> ApplyRetention(std::chrono::seconds, RetentionMode, int) override {
    ++attempts_;
    return Status::Internal("permission denied for table txcoord_outbox (test)");
  }
  int attempts() const { return attempts_.load(); }

 private:
  std::atomic<int> attempts_{0};
};

TEST(RelayTest, AFailingRetentionDoesNotStopPublishing) {
  SqliteOutbox sqlite;
  const Stream stream = NewStream(SharedNats().Url());
  Written written;
  sqlite3* db = sqlite.Open();
  for (int i = 0; i < 100; ++i) {
    sqlite.Write(db, {MakeEvent("customer", "c-" + std::to_string(i % 5), i)}, &written);
  }
  sqlite3_close(db);
  RelayOptions options = FastOptions();
  options.retention = std::chrono::hours(1);
  options.retention_interval = milliseconds(50);
  Relay::Parts parts = Relay::DefaultParts({sqlite.Config()}, {sqlite.Uri()}, stream.Config());
  auto make_real = parts.make_source;
  RetentionFails* failing = nullptr;
  parts.make_source = [&](size_t i) {
    auto source = std::make_unique<RetentionFails>(make_real(i));
    failing = source.get();
    return source;
  };
  Relay relay(1, std::move(parts), stream.name, options);
  relay.Start();
  EXPECT_TRUE(
      PollUntil(milliseconds(30000), milliseconds(10), [&] { return sqlite.Unpublished() == 0; }));
  // Retention is still tried, at its interval.
  EXPECT_TRUE(PollUntil(milliseconds(10000), milliseconds(10),
                        [&] { return failing != nullptr && failing->attempts() >= 3; }));
  const auto statuses = relay.Statuses();
  EXPECT_EQ(statuses[0].source_reconnects_total, 0) << "a failed retention reconnected";
  EXPECT_TRUE(relay.Stop());
  ExpectStreamHolds(stream, written);
}

}  // namespace
}  // namespace txcoord::outbox
