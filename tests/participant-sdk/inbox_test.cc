// The inbox consumer on a real nats-server with SQLite and PostgreSQL stores: each event applied
// once, redeliveries skipped, retries with backoff, dead letters, and a consumer process killed
// again and again while applying.
#include "txcoord/participant/inbox.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <pqxx/pqxx>
#include <random>
#include <thread>

#include "inbox_test_util.h"
#include "txcoord/testing/nats_server.h"
#include "txcoord/testing/poll.h"
#include "txcoord/testing/postgres_server.h"

namespace txcoord::participant {
namespace {

using std::chrono::milliseconds;
using testing::KeyValue;
using testing::Publisher;
using txcoord::testing::NatsServer;
using txcoord::testing::PollUntil;
using txcoord::testing::SharedNats;

class InboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "inbox-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
    ASSERT_EQ(sqlite3_open((dir_ + "/replica.db").c_str(), &db_), SQLITE_OK);
    testing::CreateReplicaTables(db_);
    stream_ = NatsServer::UniqueStreamName("inbox");
    publisher_ = std::make_unique<Publisher>(SharedNats().Url());
    publisher_->CreateStream(stream_);
  }
  void TearDown() override {
    sqlite3_close(db_);
    std::filesystem::remove_all(dir_);
  }

  InboxConsumerOptions Options() {
    InboxConsumerOptions o;
    o.nats_url = SharedNats().Url();
    o.stream = stream_;
    o.consumer = "replica";
    o.filter_subject = stream_ + ".item.>";
    o.retry_min = milliseconds(5);
    o.retry_max = milliseconds(20);
    o.dead_letter_prefix = stream_ + "_dead";
    o.dead_letter_stream = stream_ + "_DEAD";
    return o;
  }

  // Polls until `done` or 20 s.
  bool RunUntil(InboxConsumer& consumer, const std::function<bool()>& done) {
    return PollUntil(milliseconds(20000), milliseconds(0), [&] {
      EXPECT_TRUE(consumer.PollOnce(milliseconds(100)).ok());
      return done();
    });
  }

  std::string dir_;
  sqlite3* db_ = nullptr;
  std::string stream_;
  std::unique_ptr<Publisher> publisher_;
};

TEST_F(InboxTest, AppliesEachEventOnceAndIgnoresStaleVersions) {
  for (int v = 1; v <= 30; ++v) {
    publisher_->Publish(stream_, "e-" + std::to_string(v), {"k-" + std::to_string(v % 3), v, v});
  }
  // An old version arriving late is applied (recorded) but changes nothing.
  publisher_->Publish(stream_, "e-stale", {"k-0", 999, 3});
  auto consumer = InboxConsumer::Create(Options(), db_, testing::ApplyToReplica);
  ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
  EXPECT_TRUE(RunUntil(**consumer, [&] { return (*consumer)->Stats().applied == 31; }));
  EXPECT_EQ(testing::QueryInt(db_, "SELECT count(*) FROM applied WHERE times = 1"), 31);
  EXPECT_EQ(testing::Replica(db_),
            (std::map<std::string, int64_t>{{"k-0", 30}, {"k-1", 28}, {"k-2", 29}}));
  EXPECT_EQ(testing::QueryInt(db_,
                              "SELECT count(*) FROM txcoord_inbox WHERE consumer = "
                              "'replica'"),
            31);
  // Everything acked: nothing more comes, even after the ack wait.
  EXPECT_EQ((*consumer)->PollOnce(milliseconds(300)).value(), 0);
}

TEST_F(InboxTest, AnEventAlreadyInTheInboxIsSkippedAndAcked) {
  // As if a consumer had committed e-1 and died before acking it.
  ASSERT_EQ(sqlite3_exec(db_,
                         "CREATE TABLE IF NOT EXISTS txcoord_inbox (consumer TEXT NOT NULL, "
                         "event_id TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT '', PRIMARY "
                         "KEY (consumer, event_id));"
                         "INSERT INTO txcoord_inbox (consumer, event_id) VALUES ('replica', 'e-1')",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  publisher_->Publish(stream_, "e-1", {"k", 1, 1});
  publisher_->Publish(stream_, "e-2", {"k", 2, 2});
  int calls = 0;
  auto consumer = InboxConsumer::Create(Options(), db_, [&](sqlite3* db, const InboxEvent& e) {
    ++calls;
    return testing::ApplyToReplica(db, e);
  });
  ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
  EXPECT_TRUE(RunUntil(**consumer, [&] {
    const auto s = (*consumer)->Stats();
    return s.applied + s.duplicates_skipped == 2;
  }));
  EXPECT_EQ(calls, 1) << "the handler never saw the redelivered event";
  EXPECT_EQ((*consumer)->Stats().duplicates_skipped, 1);
  EXPECT_EQ(testing::QueryInt(db_, "SELECT count(*) FROM applied WHERE event_id = 'e-1'"), 0);
  EXPECT_EQ((*consumer)->PollOnce(milliseconds(300)).value(), 0) << "e-1 was acked";
}

TEST_F(InboxTest, AFailingHandlerIsRetriedThenTheEventIsDeadLetteredAndTheRestGoesOn) {
  publisher_->Publish(stream_, "e-1", {"k", 1, 1});
  publisher_->Publish(stream_, "e-poison", {"k", 2, 2});
  publisher_->Publish(stream_, "e-flaky", {"k", 3, 3});
  publisher_->Publish(stream_, "e-4", {"k", 4, 4});
  std::map<std::string, int> attempts;
  InboxConsumerOptions options = Options();
  options.max_failures = 3;
  auto consumer = InboxConsumer::Create(options, db_, [&](sqlite3* db, const InboxEvent& e) {
    const int n = ++attempts[e.event_id];
    if (e.event_id == "e-poison") return Status::InvalidArgument("poison: refuses to apply");
    if (e.event_id == "e-flaky" && n < 3) return Status::Unavailable("flaky, try again");
    return testing::ApplyToReplica(db, e);
  });
  ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
  EXPECT_TRUE(RunUntil(**consumer, [&] {
    const auto s = (*consumer)->Stats();
    return s.applied == 3 && s.dead_lettered == 1;
  }));
  EXPECT_EQ(attempts["e-poison"], 3) << "tried max_failures times";
  EXPECT_EQ(attempts["e-flaky"], 3) << "retried until it succeeded";
  EXPECT_EQ((*consumer)->Stats().handler_failures, 5);
  EXPECT_EQ(testing::Replica(db_).at("k"), 4);
  EXPECT_EQ(testing::QueryInt(db_, "SELECT count(*) FROM applied WHERE event_id = 'e-poison'"), 0)
      << "a failed attempt left nothing behind";
  EXPECT_FALSE((*consumer)->Stats().last_error.empty());

  // The dead letter is in its own stream, with the reason, for operators to see.
  natsMsg* dead = nullptr;
  ASSERT_EQ(js_GetLastMsg(&dead, publisher_->js(), options.dead_letter_stream.c_str(),
                          (options.dead_letter_prefix + ".replica").c_str(), nullptr, nullptr),
            NATS_OK);
  const char* value = nullptr;
  ASSERT_EQ(natsMsgHeader_Get(dead, "Tx-Event-Id", &value), NATS_OK);
  EXPECT_STREQ(value, "e-poison");
  ASSERT_EQ(natsMsgHeader_Get(dead, "Tx-Dead-Letter-Reason", &value), NATS_OK);
  EXPECT_NE(std::string(value).find("poison: refuses to apply"), std::string::npos) << value;
  ASSERT_EQ(natsMsgHeader_Get(dead, "Tx-Dead-Letter-Subject", &value), NATS_OK);
  EXPECT_EQ(std::string(value), stream_ + ".item.Set");
  EXPECT_EQ(std::string(natsMsg_GetData(dead), natsMsg_GetDataLength(dead)), "k 2 2");
  natsMsg_Destroy(dead);
  EXPECT_EQ((*consumer)->PollOnce(milliseconds(300)).value(), 0) << "not redelivered";
}

// The database away (here: another writer holds SQLite's lock) is not the event's fault: with
// max_failures = 2 and 20 ms of backoff, counting it as a handler failure would dead-letter the
// event within a few tens of milliseconds.
TEST_F(InboxTest, ADatabaseOutageIsWaitedOutNotDeadLettered) {
  publisher_->Publish(stream_, "e-1", {"k", 1, 1});
  publisher_->Publish(stream_, "e-2", {"k", 2, 2});
  InboxConsumerOptions options = Options();
  options.max_failures = 2;
  auto consumer = InboxConsumer::Create(options, db_, testing::ApplyToReplica);
  ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
  // Create gives the connection a 10 s busy timeout; a short one lets the test see many
  // failed attempts quickly.
  sqlite3_busy_timeout(db_, 1);
  sqlite3* blocker = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/replica.db").c_str(), &blocker), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(blocker, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  (*consumer)->Start();
  EXPECT_TRUE(PollUntil(milliseconds(20000), milliseconds(5),
                        [&] { return (*consumer)->Stats().store_failures >= 10; }));
  EXPECT_EQ((*consumer)->Stats().applied, 0);
  ASSERT_EQ(sqlite3_exec(blocker, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(blocker);
  EXPECT_TRUE(PollUntil(milliseconds(20000), milliseconds(5),
                        [&] { return (*consumer)->Stats().applied == 2; }));
  (*consumer)->Stop();
  const InboxStats stats = (*consumer)->Stats();
  EXPECT_EQ(stats.dead_lettered, 0);
  EXPECT_EQ(stats.handler_failures, 0);
  EXPECT_NE(stats.last_error.find("database"), std::string::npos) << stats.last_error;
  EXPECT_EQ(testing::Replica(db_).at("k"), 2);
}

// While the dead-letter stream cannot take the poisoned event, the event stays in progress and
// the next one waits: a nak would let e-2 be applied first, and the poisoned event come back
// after it.
TEST_F(InboxTest, AFailedDeadLetterPublishIsRetriedAndNothingOvertakesIt) {
  publisher_->Publish(stream_, "e-poison", {"k", 1, 1});
  publisher_->Publish(stream_, "e-2", {"k", 2, 2});
  InboxConsumerOptions options = Options();
  options.max_failures = 1;
  auto consumer = InboxConsumer::Create(options, db_, [&](sqlite3* db, const InboxEvent& e) {
    if (e.event_id == "e-poison") return Status::InvalidArgument("poison");
    return testing::ApplyToReplica(db, e);
  });
  ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
  // Create made the dead-letter stream; without it, the publish has no stream to land in.
  ASSERT_EQ(js_DeleteStream(publisher_->js(), options.dead_letter_stream.c_str(), nullptr, nullptr),
            NATS_OK);
  (*consumer)->Start();
  EXPECT_TRUE(PollUntil(milliseconds(20000), milliseconds(5), [&] {
    return (*consumer)->Stats().last_error.find("dead-letter event e-poison") != std::string::npos;
  }));
  std::this_thread::sleep_for(milliseconds(300));  // retries go on meanwhile
  EXPECT_EQ((*consumer)->Stats().applied, 0) << "e-2 overtook the event being dead-lettered";
  EXPECT_EQ((*consumer)->Stats().dead_lettered, 0);
  jsStreamConfig config;
  jsStreamConfig_Init(&config);
  const std::string subjects = options.dead_letter_prefix + ".>";
  const char* subject_list[] = {subjects.c_str()};
  config.Name = options.dead_letter_stream.c_str();
  config.Subjects = subject_list;
  config.SubjectsLen = 1;
  ASSERT_EQ(js_AddStream(nullptr, publisher_->js(), &config, nullptr, nullptr), NATS_OK);
  EXPECT_TRUE(PollUntil(milliseconds(20000), milliseconds(5), [&] {
    const InboxStats s = (*consumer)->Stats();
    return s.dead_lettered == 1 && s.applied == 1;
  }));
  (*consumer)->Stop();
  EXPECT_EQ(testing::Replica(db_).at("k"), 2);
}

TEST_F(InboxTest, APostgresStoreCommitsTheEffectWithItsInboxRow) {
  auto& pg = txcoord::testing::SharedPostgres();
  const std::string db = pg.CreateDatabase("inbox").value();
  {
    pqxx::connection c(pg.ConnInfo(db));
    pqxx::work w(c);
    w.exec("CREATE TABLE totals (key TEXT PRIMARY KEY, total BIGINT NOT NULL)");
    w.commit();
  }
  for (int i = 1; i <= 20; ++i) publisher_->Publish(stream_, "e-" + std::to_string(i), {"k", i, i});
  publisher_->Publish(stream_, "e-bad", {"k", -1, 0});
  InboxConsumerOptions options = Options();
  options.max_failures = 2;
  const auto handler = [](pqxx::transaction_base& tx, const InboxEvent& e) {
    KeyValue kv;
    if (!testing::ParsePayload(e.payload, kv)) return Status::InvalidArgument("payload");
    tx.exec_params(
        "INSERT INTO totals VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET total = "
        "totals.total + excluded.total",
        kv.key, kv.value);
    // Fails after writing: the write must be rolled back with the inbox row.
    if (kv.value < 0) return Status::InvalidArgument("negative amounts are refused");
    return Status::Ok();
  };
  auto consumer = InboxConsumer::Create(options, pg.ConnInfo(db), handler);
  ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
  EXPECT_TRUE(RunUntil(**consumer, [&] {
    const auto s = (*consumer)->Stats();
    return s.applied == 20 && s.dead_lettered == 1;
  }));
  pqxx::connection c(pg.ConnInfo(db));
  pqxx::nontransaction n(c);
  EXPECT_EQ(n.exec1("SELECT total FROM totals WHERE key = 'k'")[0].as<int64_t>(), 210);
  EXPECT_EQ(n.exec1("SELECT count(*) FROM txcoord_inbox")[0].as<int64_t>(), 20);
}

// A consumer process, SIGKILLed again and again while it applies (and crashing itself between
// COMMIT and ack at a fault point), while more events keep arriving. Afterwards every event was
// applied exactly once and the replica equals the source.
TEST_F(InboxTest, AConsumerKilledRepeatedlyAppliesEveryEventOnce) {
  const uint64_t seed = [] {
    const char* env = std::getenv("TXCOORD_SEED");
    return env != nullptr ? std::stoull(env) : std::random_device{}();
  }();
  std::cout << "seed " << seed << " (TXCOORD_SEED=" << seed << " replays it)" << std::endl;
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 engine(seed);
  std::map<std::string, int64_t> source;   // key -> latest value
  std::map<std::string, int64_t> version;  // key -> latest version
  int published = 0;
  const auto publish = [&](int n) {
    for (int i = 0; i < n; ++i) {
      const std::string key =
          "k-" + std::to_string(std::uniform_int_distribution<int>(0, 49)(engine));
      const int64_t value = std::uniform_int_distribution<int64_t>(0, 1000000)(engine);
      publisher_->Publish(stream_, "e-" + std::to_string(++published),
                          {key, value, ++version[key]});
      source[key] = value;
    }
  };
  publish(1500);
  sqlite3_close(db_);  // the children own the replica now
  db_ = nullptr;
  const std::string db_path = dir_ + "/replica.db";

  const auto spawn = [&](bool faults) {
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      if (faults) setenv("TXCOORD_FAULT_POINTS", "inbox.after_commit_before_ack=0.003", 1);
      execl(INBOX_CHILD_BIN, INBOX_CHILD_BIN, SharedNats().Url().c_str(), stream_.c_str(),
            "replica", db_path.c_str(), "500", static_cast<char*>(nullptr));
      _exit(127);
    }
    return pid;
  };
  int kills = 0;
  int fault_exits = 0;
  for (int round = 0; round < 15; ++round) {
    const pid_t child = spawn(round % 2 == 1);
    std::this_thread::sleep_for(milliseconds(std::uniform_int_distribution<int>(50, 400)(engine)));
    if (round % 3 == 0) publish(100);
    int status = 0;
    if (waitpid(child, &status, WNOHANG) == child) {
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 86)
          << "the consumer died on its own, status " << status;
      ++fault_exits;
      continue;
    }
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    ++kills;
  }
  // A last consumer without faults finishes the job and stops cleanly.
  std::filesystem::remove(db_path + ".ready");
  const pid_t last = spawn(false);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  const bool done = PollUntil(milliseconds(60000), milliseconds(50), [&] {
    return testing::QueryInt(db, "SELECT count(*) FROM applied") == published;
  });
  EXPECT_TRUE(PollUntil(milliseconds(20000), milliseconds(10),
                        [&] { return std::filesystem::exists(db_path + ".ready"); }));
  kill(last, SIGTERM);
  int status = 0;
  waitpid(last, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_TRUE(done) << testing::QueryInt(db, "SELECT count(*) FROM applied") << " of " << published
                    << " applied";
  EXPECT_EQ(testing::QueryInt(db, "SELECT count(*) FROM applied WHERE times <> 1"), 0)
      << "an event's effect was committed twice";
  EXPECT_EQ(testing::QueryInt(db, "SELECT count(*) FROM txcoord_inbox"), published);
  EXPECT_EQ(testing::Replica(db), source) << "the replica equals the source";
  sqlite3_close(db);
  std::cout << kills << " SIGKILLs, " << fault_exits << " fault-point crashes, " << published
            << " events" << std::endl;
  EXPECT_GE(kills, 7);
}

}  // namespace
}  // namespace txcoord::participant
