// txrelay as a process: its command line (contract section 6), /healthz and /metrics, a clean
// SIGTERM, and two relays on one outbox where the active one is killed.
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/StreamCopier.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "relay_process.h"
#include "stream_reader.h"
#include "test_outboxes.h"
#include "txcoord/participant/tls.h"
#include "txcoord/testing/nats_server.h"
#include "txcoord/testing/poll.h"
#include "txcoord/testing/test_pki.h"

namespace txcoord::outbox {
namespace {

using std::chrono::milliseconds;
using testing::HttpGet;
using testing::MakeEvent;
using testing::PostgresOutbox;
using testing::RelayProcess;
using testing::SqliteOutbox;
using testing::Written;
using txcoord::testing::NatsServer;
using txcoord::testing::PollUntil;
using txcoord::testing::SharedNats;

class TxrelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "txrelay-test-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<RelayProcess> Start(const std::vector<std::string>& args) {
    return std::make_unique<RelayProcess>(TXRELAY_BIN, args,
                                          dir_ + "/relay-" + std::to_string(++started_) + ".err");
  }

  // Runs txrelay to completion; returns its exit code and its stderr.
  std::pair<int, std::string> RunToExit(const std::vector<std::string>& args) {
    auto relay = Start(args);
    const auto code = relay->WaitForExit(milliseconds(30000));
    return {code.value_or(-1), relay->Stderr()};
  }

  std::string dir_;
  int started_ = 0;
};

int Lines(const std::string& text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

TEST_F(TxrelayTest, HelpListsTheContractsFlags) {
  auto relay = Start({"--help"});
  ASSERT_EQ(relay->WaitForExit(milliseconds(10000)), 0);
  const std::string help = relay->Stdout();
  for (const char* flag : {"--source", "--nats", "--stream", "--subject-prefix", "--config",
                           "--listen", "--retention"}) {
    EXPECT_NE(help.find(flag), std::string::npos) << flag << " missing from:\n" << help;
  }
}

TEST_F(TxrelayTest, ABadCommandLineExitsTwoWithOneLineOnStderr) {
  const std::string sqlite = "sqlite://" + dir_ + "/x.db";
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--bogus"}, "unknown flag --bogus"},
      {{}, "no --source"},
      {{"--source", "mysql://db/x"}, "is not a source URI"},
      {{"--source", sqlite, "--window", "0"}, "--window"},
      {{"--source", sqlite, "--retention", "soon"}, "is not a duration"},
      {{"--source", sqlite, "--duplicate-window", "30s"}, "at least 2m"},
      {{"--source", sqlite, "--nats", "http://x"}, "not a NATS URL"},
      {{"--source", sqlite, "--subject-prefix", "a.>"}, "--subject-prefix"},
      {{"--source", sqlite, "stray"}, "unexpected argument"},
      {{"--source", sqlite, "--config", dir_ + "/none.conf"}, "cannot read --config"},
  };
  for (const auto& [args, expected] : cases) {
    const auto [code, err] = RunToExit(args);
    EXPECT_EQ(code, 2) << err;
    EXPECT_EQ(Lines(err), 1) << err;
    EXPECT_NE(err.find(expected), std::string::npos) << "wanted \"" << expected << "\" in " << err;
  }
}

TEST_F(TxrelayTest, ASourceThatCannotBeOpenedExitsOneWithOneLine) {
  const auto [code, err] = RunToExit({"--source", "sqlite://" + dir_ + "/missing.db"});
  EXPECT_EQ(code, 1) << err;
  EXPECT_EQ(Lines(err), 1) << err;
  EXPECT_NE(err.find("missing.db"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/missing.db")) << "never created";

  const auto [pg_code, pg_err] = RunToExit(
      {"--source", "postgresql://nobody:secret@127.0.0.1:1/db", "--listen", "127.0.0.1:0"});
  EXPECT_EQ(pg_code, 1) << pg_err;
  EXPECT_EQ(Lines(pg_err), 1) << pg_err;
  EXPECT_EQ(pg_err.find("secret"), std::string::npos) << "no password in errors: " << pg_err;
}

TEST_F(TxrelayTest, ServesHealthAndMetricsPublishesAndStopsCleanlyOnSigterm) {
  SqliteOutbox sqlite;
  const std::string stream = NatsServer::UniqueStreamName("cli");
  // Flags from a config file, one of them overridden on the command line.
  const std::string config = dir_ + "/txrelay.conf";
  std::ofstream(config) << "source = " << sqlite.Uri() << "\nnats = " << SharedNats().Url()
                        << "\nstream = " << stream << "\nsubject-prefix = " << stream
                        << "\nlisten = 127.0.0.1:1\n";
  auto relay = Start({"--config", config, "--listen", "127.0.0.1:0"});
  const auto port = relay->WaitForListening(milliseconds(20000));
  ASSERT_TRUE(port.has_value()) << relay->Stderr();
  EXPECT_TRUE(PollUntil(milliseconds(20000), milliseconds(20), [&] {
    return HttpGet(*port, "/healthz").status == 200;
  })) << HttpGet(*port, "/healthz").body;
  EXPECT_NE(HttpGet(*port, "/healthz").body.find("\"role\":\"leader\""), std::string::npos);

  Written written;
  sqlite3* db = sqlite.Open();
  for (int i = 0; i < 20; ++i) sqlite.Write(db, {MakeEvent("customer", "c-1", i)}, &written);
  sqlite3_close(db);
  EXPECT_TRUE(
      PollUntil(milliseconds(20000), milliseconds(10), [&] { return sqlite.Unpublished() == 0; }));

  std::string metrics;
  EXPECT_TRUE(PollUntil(milliseconds(10000), milliseconds(50), [&] {
    metrics = HttpGet(*port, "/metrics").body;
    return metrics.find("txrelay_published_total{source=\"" + sqlite.Uri() + "\"} 20") !=
           std::string::npos;
  })) << metrics;
  for (const char* name : {"txrelay_rows_pending", "txrelay_oldest_unpublished_age_seconds",
                           "txrelay_publish_rate_per_second",
                           "# TYPE txrelay_published_total "
                           "counter"}) {
    EXPECT_NE(metrics.find(name), std::string::npos) << name;
  }
  EXPECT_EQ(HttpGet(*port, "/nope").status, 404);

  relay->Signal(SIGTERM);
  EXPECT_EQ(relay->WaitForExit(milliseconds(20000)), 0) << relay->Stderr();
  EXPECT_NE(relay->Stderr().find("stopped"), std::string::npos);
  auto messages = testing::ReadStream(SharedNats().Url(), stream);
  ASSERT_TRUE(messages.ok());
  EXPECT_TRUE(testing::CheckExactlyOnceInOrder(*messages, written.Snapshot()).empty());
}

// /healthz and /metrics over HTTPS with client certificates (issue 7): a client with a
// certificate from the CA reads them; one without is refused in the handshake.
TEST_F(TxrelayTest, ServesHealthzOverHttpsWithClientCertificates) {
  SqliteOutbox sqlite;
  const txcoord::testing::TestPki pki(dir_);
  auto relay =
      Start({"--source", sqlite.Uri(), "--nats", SharedNats().Url(), "--stream",
             NatsServer::UniqueStreamName("tls"), "--listen", "127.0.0.1:0", "--tls-cert",
             pki.Pem("server"), "--tls-key", pki.Key("server"), "--tls-client-ca", pki.Pem("ca")});
  const auto port = relay->WaitForListening(milliseconds(20000));
  ASSERT_TRUE(port.has_value()) << relay->Stderr();

  const auto get = [&](bool with_cert) {
    participant::TlsClientFiles files{.ca_file = pki.Pem("ca")};
    if (with_cert) {
      files.cert_file = pki.Pem("app-client");
      files.key_file = pki.Key("app-client");
    }
    auto context = participant::NewClientContext(files);
    if (!context.ok()) throw std::runtime_error(context.status().message());
    Poco::Net::HTTPSClientSession session("localhost", static_cast<Poco::UInt16>(*port), *context);
    session.setTimeout(Poco::Timespan(10, 0));
    Poco::Net::HTTPRequest request("GET", "/metrics", Poco::Net::HTTPMessage::HTTP_1_1);
    session.sendRequest(request);
    Poco::Net::HTTPResponse response;
    std::string body;
    Poco::StreamCopier::copyToString(session.receiveResponse(response), body);
    return std::make_pair(static_cast<int>(response.getStatus()), body);
  };
  const auto [status, body] = get(true);
  EXPECT_EQ(status, 200);
  EXPECT_NE(body.find("txrelay_rows_pending"), std::string::npos) << body;
  EXPECT_ANY_THROW(get(false));
  // Plain HTTP gets no answer from an HTTPS port.
  EXPECT_NE(HttpGet(*port, "/healthz").status, 200);

  relay->Signal(SIGTERM);
  EXPECT_EQ(relay->WaitForExit(milliseconds(20000)), 0) << relay->Stderr();
}

TEST_F(TxrelayTest, NatsDownAtStartIsRetriedAndShowsInHealthz) {
  SqliteOutbox sqlite;
  auto relay =
      Start({"--source", sqlite.Uri(), "--nats", "nats://127.0.0.1:1", "--listen", "127.0.0.1:0"});
  const auto port = relay->WaitForListening(milliseconds(20000));
  ASSERT_TRUE(port.has_value()) << relay->Stderr();
  HttpGet(*port, "/healthz");
  EXPECT_TRUE(PollUntil(milliseconds(10000), milliseconds(50), [&] {
    const auto reply = HttpGet(*port, "/healthz");
    return reply.status == 503 && reply.body.find("last_error") != std::string::npos;
  })) << HttpGet(*port, "/healthz").body;
  relay->Signal(SIGTERM);
  EXPECT_EQ(relay->WaitForExit(milliseconds(20000)), 0) << relay->Stderr();
}

// Two relays on one outbox while a service keeps writing; the active relay is SIGKILLed.
template <typename Outbox>
void TakeoverScenario(const std::string& dir) {
  Outbox outbox;
  const std::string stream = NatsServer::UniqueStreamName("takeover");
  const std::vector<std::string> args = {
      "--source",         outbox.Uri(), "--nats",   SharedNats().Url(), "--stream",        stream,
      "--subject-prefix", stream,       "--listen", "127.0.0.1:0",      "--drain-timeout", "5s"};
  RelayProcess first(TXRELAY_BIN, args, dir + "/first.err");
  RelayProcess second(TXRELAY_BIN, args, dir + "/second.err");
  const auto first_port = first.WaitForListening(milliseconds(20000));
  const auto second_port = second.WaitForListening(milliseconds(20000));
  ASSERT_TRUE(first_port && second_port) << first.Stderr() << second.Stderr();
  const auto role = [](int port) {
    const std::string body = HttpGet(port, "/healthz").body;
    if (body.find("\"role\":\"leader\"") != std::string::npos) return std::string("leader");
    if (body.find("\"role\":\"standby\"") != std::string::npos) return std::string("standby");
    return std::string("other");
  };
  ASSERT_TRUE(PollUntil(milliseconds(20000), milliseconds(20),
                        [&] {
                          const std::string a = role(*first_port), b = role(*second_port);
                          return (a == "leader" && b == "standby") ||
                                 (a == "standby" && b == "leader");
                        }))
      << "exactly one leader: " << role(*first_port) << " / " << role(*second_port);
  const bool first_leads = role(*first_port) == "leader";
  RelayProcess& leader = first_leads ? first : second;
  const int standby_port = first_leads ? *second_port : *first_port;

  Written written;
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    int i = 0;
    auto write = [&](auto& connection) {
      while (!stop.load() || i < 600) {
        outbox.Write(connection, {MakeEvent("customer", "c-" + std::to_string(i % 7), i)},
                     &written);
        ++i;
        if (i >= 600 && stop.load()) break;
        std::this_thread::sleep_for(milliseconds(1));
      }
    };
    if constexpr (std::is_same_v<Outbox, SqliteOutbox>) {
      sqlite3* db = outbox.Open();
      write(db);
      sqlite3_close(db);
    } else {
      pqxx::connection c(outbox.ConnInfo());
      write(c);
    }
  });
  EXPECT_TRUE(PollUntil(milliseconds(20000), milliseconds(5), [&] {
    return written.count() > 200 && outbox.Unpublished() < static_cast<int64_t>(written.count());
  })) << "the leader publishes";
  leader.Signal(SIGKILL);
  ASSERT_TRUE(leader.WaitForExit(milliseconds(10000)).has_value());
  EXPECT_TRUE(PollUntil(milliseconds(15000), milliseconds(20), [&] {
    return role(standby_port) == "leader";
  })) << "the standby takes over within seconds";
  stop.store(true);
  writer.join();
  EXPECT_TRUE(
      PollUntil(milliseconds(30000), milliseconds(20), [&] { return outbox.Unpublished() == 0; }));
  auto messages = testing::ReadStream(SharedNats().Url(), stream);
  ASSERT_TRUE(messages.ok()) << messages.status().ToString();
  EXPECT_EQ(messages->size(), written.count());
  const auto problems = testing::CheckExactlyOnceInOrder(*messages, written.Snapshot());
  std::string text;
  for (const auto& p : problems) text += "\n  " + p;
  EXPECT_TRUE(problems.empty()) << text;
}

TEST_F(TxrelayTest, TwoRelaysOnOnePostgresOutboxTheStandbyTakesOverWhenTheLeaderDies) {
  TakeoverScenario<PostgresOutbox>(dir_);
}

TEST_F(TxrelayTest, TwoRelaysOnOneSqliteOutboxTheStandbyTakesOverWhenTheLeaderDies) {
  TakeoverScenario<SqliteOutbox>(dir_);
}

}  // namespace
}  // namespace txcoord::outbox
