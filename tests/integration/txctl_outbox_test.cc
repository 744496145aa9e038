// The txctl binary's outbox and dead-letter commands as a script meets them: --json output,
// exit codes, a replay that asks first, --wait following a real relay, dead letters listed and
// re-driven to a real inbox consumer. SQLite, PostgreSQL and nats-server from the test rig.
#include <Poco/JSON/Parser.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <nats/nats.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "stream_reader.h"
#include "test_outboxes.h"
#include "txcoord/outbox/relay.h"
#include "txcoord/participant/inbox.h"
#include "txcoord/testing/nats_server.h"
#include "txcoord/testing/poll.h"

extern char** environ;

namespace txcoord::integration {
namespace {

using outbox::testing::MakeEvent;
using outbox::testing::PostgresOutbox;
using outbox::testing::SqliteOutbox;
using std::chrono::milliseconds;
using txcoord::testing::NatsServer;
using txcoord::testing::PollUntil;
using txcoord::testing::SharedNats;

struct TxctlRun {
  int exit_code = -1;
  std::string out;
  std::string err;
  Poco::JSON::Object::Ptr Json() const {
    Poco::JSON::Parser parser;
    return parser.parse(out).extract<Poco::JSON::Object::Ptr>();
  }
};

std::string ReadAll(int fd) {
  std::string text;
  char buffer[4096];
  for (ssize_t n; (n = read(fd, buffer, sizeof buffer)) > 0;) text.append(buffer, n);
  close(fd);
  return text;
}

// Runs txctl with `args`, stdin from /dev/null (not a terminal), and waits for it.
TxctlRun Txctl(const std::vector<std::string>& args) {
  int out_pipe[2], err_pipe[2];
  if (pipe(out_pipe) != 0 || pipe(err_pipe) != 0) throw std::runtime_error("pipe");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  posix_spawn_file_actions_addclose(&actions, out_pipe[0]);
  posix_spawn_file_actions_addclose(&actions, err_pipe[0]);
  std::vector<std::string> words = {TXCTL_BIN};
  words.insert(words.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, TXCTL_BIN, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (rc != 0) throw std::runtime_error("posix_spawn txctl");
  TxctlRun run;
  // stderr is read on a thread so that neither pipe can fill up and stall the child.
  std::thread err_reader([&] { run.err = ReadAll(err_pipe[0]); });
  run.out = ReadAll(out_pipe[0]);
  err_reader.join();
  int status = 0;
  waitpid(pid, &status, 0);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

int64_t Int(const Poco::JSON::Object::Ptr& o, const std::string& key) {
  return o->getValue<Poco::Int64>(key);
}

std::string Str(const Poco::JSON::Object::Ptr& o, const std::string& key) {
  return o->getValue<std::string>(key);
}

TEST(TxctlOutbox, StatusOfSqliteAndPostgresSourcesAsJson) {
  SqliteOutbox sqlite;
  PostgresOutbox postgres;
  sqlite3* db = sqlite.Open();
  pqxx::connection pg(postgres.ConnInfo());
  for (int i = 0; i < 8; ++i) sqlite.Write(db, {MakeEvent("customer", "c-1", i)}, nullptr);
  for (int i = 0; i < 5; ++i) postgres.Write(pg, {MakeEvent("order", "o-1", i)}, nullptr);
  sqlite3_close(db);
  sqlite.Run("UPDATE txcoord_outbox SET published_at = '2024-05-02T00:00:00.000Z' WHERE id <= 3");
  postgres.Run(
      "UPDATE txcoord_outbox SET published_at = timestamptz '2024-05-02 00:00:00+00' WHERE id <= "
      "4");

  const TxctlRun run =
      Txctl({"--json", "outbox", "status", "--source", sqlite.Uri(), "--source", postgres.Uri()});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto sources = run.Json()->getArray("sources");
  ASSERT_EQ(sources->size(), 2u) << run.out;
  const auto s = sources->getObject(0);
  EXPECT_EQ(Str(s, "source"), sqlite.Uri());
  EXPECT_EQ(Int(s, "total_rows"), 8);
  EXPECT_EQ(Int(s, "pending_rows"), 5);
  EXPECT_EQ(Int(s, "oldest_pending_id"), 4);
  EXPECT_EQ(Int(s, "last_published_id"), 3);
  EXPECT_EQ(Str(s, "last_published_at"), "2024-05-02T00:00:00.000Z");
  EXPECT_GE(s->getValue<double>("lag_seconds"), 0.0);
  EXPECT_FALSE(s->getValue<bool>("relay_leading"));
  const auto p = sources->getObject(1);
  EXPECT_EQ(Int(p, "total_rows"), 5);
  EXPECT_EQ(Int(p, "pending_rows"), 1);
  EXPECT_EQ(Int(p, "oldest_pending_id"), 5);
  EXPECT_EQ(Int(p, "last_published_id"), 4);
  EXPECT_EQ(Str(p, "last_published_at"), "2024-05-02T00:00:00.000Z");

  // The table names each source on a line of its own.
  const TxctlRun table = Txctl({"outbox", "status", "--source", sqlite.Uri()});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("PENDING"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find(sqlite.Uri()), std::string::npos) << table.out;

  // One bad source: the others are still shown, the error is one line, the exit code says why.
  const TxctlRun partly = Txctl({"--json", "outbox", "status", "--source", sqlite.Uri(), "--source",
                                 "postgresql://nobody@127.0.0.1:1/none"});
  EXPECT_EQ(partly.exit_code, 4) << partly.err;
  EXPECT_EQ(partly.Json()->getArray("sources")->size(), 1u);
  EXPECT_EQ(std::count(partly.err.begin(), partly.err.end(), '\n'), 1) << partly.err;
  EXPECT_EQ(Txctl({"outbox", "status"}).exit_code, 2);
  EXPECT_EQ(Txctl({"outbox", "status", "--source", "mysql://x"}).exit_code, 2);
  EXPECT_EQ(Txctl({"outbox", "frobnicate"}).exit_code, 2);
}

TEST(TxctlOutbox, ReplayAsksFirstCountsOnADryRunAndWaitsForTheRelay) {
  SqliteOutbox sqlite;
  sqlite3* db = sqlite.Open();
  for (int i = 0; i < 30; ++i) {
    sqlite.Write(db, {MakeEvent("customer", "c-" + std::to_string(i % 4), i)}, nullptr);
  }
  sqlite3_close(db);
  sqlite.Run("UPDATE txcoord_outbox SET published_at = strftime('%Y-%m-%dT%H:%M:%fZ','now')");

  // Not a terminal and no --yes: refused, nothing changed.
  const TxctlRun asked = Txctl({"outbox", "replay", "--source", sqlite.Uri(), "--from-id", "11"});
  EXPECT_EQ(asked.exit_code, 2);
  EXPECT_NE(asked.err.find("--yes"), std::string::npos) << asked.err;
  EXPECT_EQ(sqlite.Unpublished(), 0);

  const TxctlRun dry = Txctl(
      {"--json", "outbox", "replay", "--source", sqlite.Uri(), "--from-id", "11", "--dry-run"});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_TRUE(dry.Json()->getValue<bool>("dry_run"));
  EXPECT_EQ(Int(dry.Json(), "rows_replayed"), 20);
  EXPECT_EQ(Int(dry.Json(), "from_id"), 11);
  EXPECT_EQ(Int(dry.Json(), "to_id"), 30);
  EXPECT_EQ(sqlite.Unpublished(), 0);

  EXPECT_EQ(Txctl({"outbox", "replay", "--source", sqlite.Uri()}).exit_code, 2);
  EXPECT_EQ(Txctl({"outbox", "replay", "--source", sqlite.Uri(), "--from-id", "1", "--from-time",
                   "2024-01-01T00:00:00Z", "--yes"})
                .exit_code,
            2);
  EXPECT_EQ(
      Txctl({"outbox", "replay", "--source", sqlite.Uri(), "--from-time", "last tuesday", "--yes"})
          .exit_code,
      2);

  // With a relay running: the replay is published again, and --wait sees it through.
  const std::string stream = NatsServer::UniqueStreamName("txctl_replay");
  outbox::JetStreamConfig bus;
  bus.url = SharedNats().Url();
  bus.stream = stream;
  bus.subject_prefix = stream;
  outbox::Relay relay(1, outbox::Relay::DefaultParts({sqlite.Config()}, {sqlite.Uri()}, bus),
                      stream, outbox::RelayOptions{});
  relay.Start();
  const TxctlRun replayed = Txctl({"--json", "outbox", "replay", "--source", sqlite.Uri(),
                                   "--from-id", "11", "--yes", "--wait", "--timeout", "60s"});
  ASSERT_EQ(replayed.exit_code, 0) << replayed.err;
  const auto reply = replayed.Json();
  EXPECT_FALSE(reply->getValue<bool>("dry_run"));
  EXPECT_EQ(Int(reply, "rows_replayed"), 20);
  EXPECT_GT(Int(reply, "replay_id"), 0);
  EXPECT_TRUE(reply->getValue<bool>("republished"));
  EXPECT_EQ(sqlite.Unpublished(), 0);
  EXPECT_EQ(sqlite.Count("SELECT count(*) FROM txcoord_outbox_replays WHERE from_id = 11 AND "
                         "rows_replayed = 20 AND requested_by LIKE 'txctl %'"),
            1);
  EXPECT_EQ(relay.Statuses()[0].replays_total, 1);

  const TxctlRun status = Txctl({"--json", "outbox", "status", "--source", sqlite.Uri()});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  const auto s = status.Json()->getArray("sources")->getObject(0);
  EXPECT_EQ(Int(s, "replays"), 1);
  EXPECT_TRUE(s->getValue<bool>("relay_leading"));
  relay.Stop();

  // Past the end: nothing to do, exit 0.
  const TxctlRun nothing =
      Txctl({"--json", "outbox", "replay", "--source", sqlite.Uri(), "--from-id", "1000", "--yes"});
  ASSERT_EQ(nothing.exit_code, 0) << nothing.err;
  EXPECT_EQ(Int(nothing.Json(), "from_id"), 0);
  EXPECT_EQ(Int(nothing.Json(), "rows_replayed"), 0);
}

TEST(TxctlOutbox, ReplayOfAPostgresOutboxByTime) {
  PostgresOutbox postgres;
  pqxx::connection pg(postgres.ConnInfo());
  for (int i = 0; i < 6; ++i) postgres.Write(pg, {MakeEvent("order", "o-1", i)}, nullptr);
  postgres.Run(
      "UPDATE txcoord_outbox SET created_at = timestamptz '2024-05-01 12:00:00+00' + id * "
      "interval '1 hour', published_at = now()");
  // 2024-05-01T15:30:00Z: rows 4, 5 and 6 were created at or after it.
  const TxctlRun run = Txctl({"--json", "outbox", "replay", "--source", postgres.Uri(),
                              "--from-time", "2024-05-01T17:30:00+02:00", "--yes"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(Int(run.Json(), "from_id"), 4);
  EXPECT_EQ(Int(run.Json(), "rows_replayed"), 3);
  EXPECT_EQ(postgres.Unpublished(), 3);
  EXPECT_EQ(postgres.Count("SELECT min(id) FROM txcoord_outbox WHERE published_at IS NULL"), 4);
}

// ---- deadletters --------------------------------------------------------------------------------

class TxctlDeadletters : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "txctl-dlq-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
    stream_ = NatsServer::UniqueStreamName("txctl_dlq");
    dead_stream_ = stream_ + "_DEAD";
    ASSERT_EQ(natsConnection_ConnectTo(&nc_, SharedNats().Url().c_str()), NATS_OK);
    ASSERT_EQ(natsConnection_JetStream(&js_, nc_, nullptr), NATS_OK);
    ASSERT_EQ(outbox::testing::AddStream(js_, stream_), NATS_OK);
    ASSERT_EQ(sqlite3_open((dir_ + "/replica.db").c_str(), &db_), SQLITE_OK);
  }
  void TearDown() override {
    consumer_.reset();
    sqlite3_close(db_);
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
    std::filesystem::remove_all(dir_);
  }

  void Publish(const std::string& event_id, const std::string& body) {
    const std::string subject = stream_ + ".item.Set";
    natsMsg* msg = nullptr;
    natsMsg_Create(&msg, subject.c_str(), nullptr, body.data(), static_cast<int>(body.size()));
    natsMsgHeader_Set(msg, "Nats-Msg-Id", event_id.c_str());
    natsMsgHeader_Set(msg, "Tx-Event-Id", event_id.c_str());
    EXPECT_EQ(js_PublishMsg(nullptr, js_, msg, nullptr, nullptr), NATS_OK);
    natsMsg_Destroy(msg);
  }

  // A consumer that refuses each event on its first `failures` attempts, dead-lettering it
  // after `failures` (max_failures), and applies it on the next.
  void StartConsumer(int failures) {
    participant::InboxConsumerOptions o;
    o.nats_url = SharedNats().Url();
    o.stream = stream_;
    o.consumer = "replica";
    o.max_failures = failures;
    o.retry_min = milliseconds(5);
    o.retry_max = milliseconds(20);
    o.dead_letter_prefix = stream_ + "_dead";
    o.dead_letter_stream = dead_stream_;
    auto consumer = participant::InboxConsumer::Create(
        o, db_, [this, failures](sqlite3*, const participant::InboxEvent& e) {
          if (++attempts_[e.event_id] <= failures) return Status::Unavailable("not yet");
          applied_.push_back(e.event_id);
          return Status::Ok();
        });
    ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
    consumer_ = std::move(consumer).value();
  }

  bool PollUntil(const std::function<bool()>& done) {
    return txcoord::testing::PollUntil(milliseconds(20000), milliseconds(0), [&] {
      EXPECT_TRUE(consumer_->PollOnce(milliseconds(50)).ok());
      return done();
    });
  }

  std::vector<std::string> Flags() const {
    return {"--nats", SharedNats().Url(), "--stream", dead_stream_};
  }
  TxctlRun Deadletters(std::vector<std::string> words) {
    std::vector<std::string> args = {"--json", "deadletters"};
    args.insert(args.end(), words.begin(), words.end());
    for (const auto& f : Flags()) args.push_back(f);
    return Txctl(args);
  }

  std::string dir_;
  std::string stream_;
  std::string dead_stream_;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  sqlite3* db_ = nullptr;
  std::map<std::string, int> attempts_;
  std::vector<std::string> applied_;
  std::unique_ptr<participant::InboxConsumer> consumer_;
};

TEST_F(TxctlDeadletters, ListThenRedriveOneAndAllUntilTheConsumerAppliedEach) {
  EXPECT_EQ(Deadletters({"list"}).exit_code, 3) << "no dead-letter stream yet";
  Publish("e-1", "one");
  Publish("e-2", "two");
  Publish("e-3", "three");
  StartConsumer(2);
  ASSERT_TRUE(PollUntil([&] { return consumer_->Stats().dead_lettered == 3; }));

  const TxctlRun list = Deadletters({"list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  const auto letters = list.Json()->getArray("dead_letters");
  ASSERT_EQ(letters->size(), 3u) << list.out;
  const auto first = letters->getObject(0);
  EXPECT_EQ(Str(first, "consumer"), "replica");
  EXPECT_EQ(Str(first, "event_id"), "e-1");
  EXPECT_EQ(Str(first, "subject"), stream_ + ".item.Set");
  EXPECT_EQ(Int(first, "attempts"), 2);
  EXPECT_NE(Str(first, "reason").find("not yet"), std::string::npos);
  EXPECT_EQ(Str(first, "payload"), "one");
  EXPECT_FALSE(Str(first, "dead_lettered_at").empty());
  const TxctlRun limited = Deadletters({"list", "--limit", "2"});
  ASSERT_EQ(limited.exit_code, 0) << limited.err;
  EXPECT_EQ(limited.Json()->getArray("dead_letters")->size(), 2u);
  const TxctlRun other = Deadletters({"list", "--consumer", "someone-else"});
  ASSERT_EQ(other.exit_code, 0) << other.err;
  EXPECT_EQ(other.Json()->getArray("dead_letters")->size(), 0u);

  // An id that names no dead letter: nothing is re-driven, not even the ones that exist.
  EXPECT_EQ(Deadletters({"redrive", "e-2", "e-nope"}).exit_code, 3);
  EXPECT_EQ(Deadletters({"list"}).Json()->getArray("dead_letters")->size(), 3u);
  EXPECT_EQ(Deadletters({"redrive"}).exit_code, 2);
  EXPECT_EQ(Deadletters({"redrive", "--all", "e-2"}).exit_code, 2);

  const TxctlRun one = Deadletters({"redrive", "e-2", "--consumer", "replica"});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const auto redriven = one.Json()->getArray("redriven");
  ASSERT_EQ(redriven->size(), 1u);
  EXPECT_EQ(Str(redriven->getObject(0), "event_id"), "e-2");
  EXPECT_EQ(Str(redriven->getObject(0), "stream"), stream_);
  ASSERT_TRUE(PollUntil([&] { return consumer_->Stats().applied == 1; }));
  EXPECT_EQ(applied_, std::vector<std::string>{"e-2"});

  const TxctlRun all = Deadletters({"redrive", "--all"});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  EXPECT_EQ(all.Json()->getArray("redriven")->size(), 2u);
  EXPECT_EQ(all.Json()->getArray("failed")->size(), 0u);
  ASSERT_TRUE(PollUntil([&] { return consumer_->Stats().applied == 3; }));
  EXPECT_EQ(applied_, (std::vector<std::string>{"e-2", "e-1", "e-3"}));
  EXPECT_EQ(Deadletters({"list"}).Json()->getArray("dead_letters")->size(), 0u);
  EXPECT_EQ(Deadletters({"redrive", "--all"}).Json()->getArray("redriven")->size(), 0u);

  // The table form, and an unreachable broker.
  const TxctlRun table =
      Txctl({"deadletters", "list", "--nats", SharedNats().Url(), "--stream", dead_stream_});
  EXPECT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("no dead letters"), std::string::npos) << table.out;
  EXPECT_EQ(Txctl({"deadletters", "list", "--nats", "nats://127.0.0.1:1"}).exit_code, 4);
}

}  // namespace
}  // namespace txcoord::integration
