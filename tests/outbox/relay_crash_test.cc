// The relay's crash test: concurrent writers fill a SQLite and a PostgreSQL outbox while the
// txrelay process is SIGKILLed at random (and crashes itself at fault points) and nats-server is
// restarted twice, once killed and once stopped. Afterwards the stream must hold every event
// exactly once by Nats-Msg-Id, each aggregate's events in outbox order, and no row may be left
// unpublished.
//
// Knobs (environment): TXCOORD_CRASH_EVENTS (default 50000), TXCOORD_RELAY_KILLS (default 20,
// at least 2 for the two broker restarts to fall between kills), TXCOORD_SEED (replays a run:
// the kill schedule, the writers' batches and aggregates; the relay's own fault points are not
// seeded).
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <iostream>
#include <random>
#include <thread>

#include "relay_process.h"
#include "stream_reader.h"
#include "test_outboxes.h"
#include "txcoord/testing/nats_server.h"
#include "txcoord/testing/poll.h"

namespace txcoord::outbox {
namespace {

using std::chrono::milliseconds;
using testing::MakeEvent;
using testing::PostgresOutbox;
using testing::RelayProcess;
using testing::SqliteOutbox;
using testing::Written;
using txcoord::testing::NatsServer;
using txcoord::testing::PollUntil;

// The exit code of a relay that reached a fault point (outbox/src/fault_points.h).
constexpr int kFaultExitCodeForTest = 86;

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && value[0] != '\0' ? std::stoll(value) : fallback;
}

TEST(RelayCrashTest, EveryEventExactlyOnceInOrderDespiteKilledRelaysAndBrokerRestarts) {
  const int64_t total_events = EnvInt("TXCOORD_CRASH_EVENTS", 50000);
  const int64_t kills = std::max<int64_t>(2, EnvInt("TXCOORD_RELAY_KILLS", 20));
  const uint64_t seed =
      static_cast<uint64_t>(EnvInt("TXCOORD_SEED", static_cast<int64_t>(std::random_device{}())));
  std::cout << "seed " << seed << " (TXCOORD_SEED=" << seed << " replays it), " << total_events
            << " events, " << kills << " relay kills" << std::endl;
  SCOPED_TRACE("seed " + std::to_string(seed));

  auto nats = NatsServer::Start();
  ASSERT_TRUE(nats.ok()) << nats.status().ToString();
  SqliteOutbox sqlite;
  PostgresOutbox postgres;
  const std::string stream = NatsServer::UniqueStreamName("crash");
  std::string tmpl = (std::filesystem::temp_directory_path() / "relay-crash-XXXXXX").string();
  const std::string dir = mkdtemp(tmpl.data());
  const std::string log = dir + "/txrelay.err";
  const std::vector<std::string> args = {
      "--source",         sqlite.Uri(),   "--source", postgres.Uri(),
      "--nats",           (*nats)->Url(), "--stream", stream,
      "--subject-prefix", stream,         "--listen", "127.0.0.1:0",
      "--drain-timeout",  "10s"};
  // Crashes right where a random SIGKILL rarely lands: acks received, rows not yet marked;
  // a message handed to the broker, its ack not yet back.
  const std::vector<std::string> env = {
      "TXCOORD_FAULT_POINTS=relay.after_ack_before_mark=0.001,relay.after_publish=0.00002"};

  // Writers: two per outbox, batches of 1 to 8 events in one transaction, 100 aggregates per
  // outbox, each writer its own seeded stream of choices. Two writers may append to the same
  // aggregate at once; its order is then the outbox's id order, which is what is checked.
  Written written;
  std::atomic<int64_t> remaining{total_events};
  std::atomic<bool> writer_failed{false};
  const auto take = [&](int64_t want) {
    int64_t left = remaining.load();
    while (left > 0 && !remaining.compare_exchange_weak(left, left - std::min(want, left))) {
    }
    return std::min(want, std::max<int64_t>(left, 0));
  };
  const auto batch = [&](std::mt19937_64& engine, const char* kind, int64_t n) {
    std::vector<v1::OutboxEvent> events;
    for (int64_t i = 0; i < n; ++i) {
      const int aggregate = std::uniform_int_distribution<int>(0, 99)(engine);
      events.push_back(MakeEvent(kind, std::string(kind) + "-" + std::to_string(aggregate),
                                 static_cast<int>(i)));
    }
    return events;
  };
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      std::mt19937_64 engine(seed * 31 + static_cast<uint64_t>(w));
      try {
        sqlite3* db = w < 2 ? sqlite.Open() : nullptr;
        std::unique_ptr<pqxx::connection> pg =
            w >= 2 ? std::make_unique<pqxx::connection>(postgres.ConnInfo()) : nullptr;
        while (true) {
          const int64_t n = take(std::uniform_int_distribution<int64_t>(1, 8)(engine));
          if (n == 0) break;
          if (db != nullptr) {
            sqlite.Write(db, batch(engine, "sq", n), &written);
          } else {
            postgres.Write(*pg, batch(engine, "pg", n), &written);
          }
          // Spread the writes over the kills: a few milliseconds between transactions.
          std::this_thread::sleep_for(
              milliseconds(std::uniform_int_distribution<int>(0, 4)(engine)));
        }
        if (db != nullptr) sqlite3_close(db);
      } catch (const std::exception& e) {
        std::cerr << "writer " << w << " failed: " << e.what() << std::endl;
        writer_failed = true;
      }
    });
  }

  // The killer: start a relay, let it run for a random while (one kill in ten right after
  // start-up, before it is even listening), SIGKILL it, start the next.
  std::mt19937_64 engine(seed);
  int64_t sigkills = 0;
  int64_t fault_exits = 0;
  int broker_restarts = 0;
  const int64_t restart_at[2] = {kills / 3, 2 * kills / 3};
  while (sigkills < kills) {
    RelayProcess relay(TXRELAY_BIN, args, log, env);
    const bool early = std::uniform_int_distribution<int>(0, 9)(engine) == 0;
    if (!early) {
      const auto port = relay.WaitForListening(milliseconds(30000));
      if (!port.has_value()) {
        const auto code = relay.WaitForExit(milliseconds(1000));
        if (code == kFaultExitCodeForTest) {
          ++fault_exits;
          continue;
        }
        FAIL() << "txrelay did not start (exit " << code.value_or(-1) << "):\n" << relay.Stderr();
      }
    }
    const int run_ms = early ? std::uniform_int_distribution<int>(0, 50)(engine)
                             : std::uniform_int_distribution<int>(100, 1200)(engine);
    const auto until = std::chrono::steady_clock::now() + milliseconds(run_ms);
    if (broker_restarts < 2 && sigkills == restart_at[broker_restarts]) {
      // The broker goes away under a running relay, killed the first time, stopped the
      // second, right after a burst of events, so that many messages are in flight then.
      std::this_thread::sleep_for(milliseconds(run_ms / 2));
      if (const int64_t n = take(2000); n > 0) {
        sqlite3* db = sqlite.Open();
        sqlite.Write(db, batch(engine, "sq", n), &written);
        sqlite3_close(db);
      }
      std::this_thread::sleep_for(milliseconds(std::uniform_int_distribution<int>(1, 8)(engine)));
      ASSERT_TRUE((*nats)->Stop(/*immediate=*/broker_restarts == 0).ok());
      std::this_thread::sleep_for(milliseconds(300));
      ASSERT_TRUE((*nats)->StartAgain().ok());
      ++broker_restarts;
    }
    std::this_thread::sleep_until(until);
    if (const auto code = relay.ExitedCode(); code.has_value()) {
      ASSERT_EQ(*code, kFaultExitCodeForTest) << "txrelay died on its own:\n" << relay.Stderr();
      ++fault_exits;
      continue;
    }
    relay.Signal(SIGKILL);
    ASSERT_TRUE(relay.WaitForExit(milliseconds(10000)).has_value());
    ++sigkills;
  }
  for (auto& w : writers) w.join();
  ASSERT_FALSE(writer_failed.load());
  ASSERT_EQ(written.count(), static_cast<size_t>(total_events));
  EXPECT_EQ(broker_restarts, 2);

  // A last relay, without fault points, publishes the rest and stops cleanly.
  RelayProcess last(TXRELAY_BIN, args, log);
  ASSERT_TRUE(last.WaitForListening(milliseconds(30000)).has_value()) << last.Stderr();
  EXPECT_TRUE(PollUntil(milliseconds(180000), milliseconds(100),
                        [&] { return sqlite.Unpublished() == 0 && postgres.Unpublished() == 0; }))
      << "left unpublished: sqlite " << sqlite.Unpublished() << ", postgresql "
      << postgres.Unpublished();
  last.Signal(SIGTERM);
  EXPECT_EQ(last.WaitForExit(milliseconds(30000)), 0);

  auto messages = testing::ReadStream((*nats)->Url(), stream);
  ASSERT_TRUE(messages.ok()) << messages.status().ToString();
  testing::ExpectedEvents expected;
  sqlite.AddExpected(expected);
  postgres.AddExpected(expected);
  size_t expected_count = 0;
  for (const auto& [aggregate, ids] : expected) expected_count += ids.size();
  ASSERT_EQ(expected_count, static_cast<size_t>(total_events)) << "the outboxes hold every event";
  const auto problems = testing::CheckExactlyOnceInOrder(*messages, expected);
  std::string text;
  for (const auto& p : problems) text += "\n  " + p;
  EXPECT_TRUE(problems.empty()) << text;
  EXPECT_EQ(messages->size(), static_cast<size_t>(total_events));
  std::cout << sigkills << " SIGKILLs, " << fault_exits << " fault-point crashes, "
            << broker_restarts << " broker restarts; " << messages->size()
            << " messages in the stream" << std::endl;
  if (!HasFailure()) std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace txcoord::outbox
