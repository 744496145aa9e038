// txctl, the recovery CLI, against the real txcoord: every transaction command through the
// running service (with a token), and offline on its store after it stopped (SQLite and
// PostgreSQL), with JSON outputs parsed and exit codes checked. The stuck transaction is a 2pc
// whose second branch answers 500 to every commit: only a resolve by hand lets it finish.
//
// The participant is an in-test HTTP server answering each POST {branch}/{phase} with a status
// the test sets (200 by default). Waits are bounded polls, never fixed sleeps.
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/StreamCopier.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "api_client.h"
#include "txcoord/schemas/json.h"
#include "txcoord/testing/poll.h"
#include "txcoord/testing/postgres_server.h"
#include "txcoord/testing/test_pki.h"
#include "txcoord/v1/api.pb.h"
#include "txcoord_process.h"

namespace txcoord::integration {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr milliseconds kStartTimeout = seconds(10);
constexpr milliseconds kPollTimeout = seconds(30);
constexpr milliseconds kPollInterval{20};
constexpr const char* kToken = "operator-token-1";

// Answers POST /{branch}/{phase} with the status set for "branch/phase" (200 when none), and
// counts the calls per "branch/phase". Thread-safe.
class Participant {
 public:
  Participant() {
    Poco::Net::ServerSocket socket(Poco::Net::SocketAddress("127.0.0.1", 0));
    port_ = socket.address().port();
    auto* params = new Poco::Net::HTTPServerParams;
    params->setMaxThreads(16);
    server_ = std::make_unique<Poco::Net::HTTPServer>(new Factory(this), pool_, socket, params);
    server_->start();
  }
  ~Participant() { server_->stopAll(true); }

  std::string Url(const std::string& branch) const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/" + branch;
  }
  void Answer(const std::string& key, int status) {
    std::lock_guard lock(mu_);
    statuses_[key] = status;
  }
  int Calls(const std::string& key) const {
    std::lock_guard lock(mu_);
    auto it = calls_.find(key);
    return it == calls_.end() ? 0 : it->second;
  }

 private:
  class Handler : public Poco::Net::HTTPRequestHandler {
   public:
    explicit Handler(Participant* p) : p_(p) {}
    void handleRequest(Poco::Net::HTTPServerRequest& request,
                       Poco::Net::HTTPServerResponse& response) override {
      std::string body;
      Poco::StreamCopier::copyToString(request.stream(), body);
      const std::string key = request.getURI().substr(1);  // "branch/phase"
      int status = 200;
      {
        std::lock_guard lock(p_->mu_);
        ++p_->calls_[key];
        if (auto it = p_->statuses_.find(key); it != p_->statuses_.end()) status = it->second;
      }
      response.setStatus(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(status));
      response.setContentType("application/json");
      const std::string reply = status == 200
                                    ? R"({"result":"done"})"
                                    : R"({"error":{"code":"INTERNAL","message":"disk full"}})";
      response.setContentLength(static_cast<std::streamsize>(reply.size()));
      response.send() << reply;
    }

   private:
    Participant* p_;
  };
  class Factory : public Poco::Net::HTTPRequestHandlerFactory {
   public:
    explicit Factory(Participant* p) : p_(p) {}
    Poco::Net::HTTPRequestHandler* createRequestHandler(
        const Poco::Net::HTTPServerRequest&) override {
      return new Handler(p_);
    }

   private:
    Participant* p_;
  };

  mutable std::mutex mu_;
  std::map<std::string, int> statuses_;  // GUARDED_BY(mu_)
  std::map<std::string, int> calls_;     // GUARDED_BY(mu_)
  int port_ = 0;
  Poco::ThreadPool pool_{2, 16};
  std::unique_ptr<Poco::Net::HTTPServer> server_;
};

struct TxctlRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::ostream& operator<<(std::ostream& os, const TxctlRun& r) {
  return os << "exit " << r.exit_code << "\nstdout:\n" << r.out << "\nstderr:\n" << r.err;
}

Poco::JSON::Object::Ptr ParseObject(const std::string& json) {
  Poco::JSON::Parser parser;
  return parser.parse(json).extract<Poco::JSON::Object::Ptr>();
}

// A member of a JSON object as a message, parsed strictly (unknown fields fail).
template <typename Message>
Message Member(const Poco::JSON::Object::Ptr& object, const std::string& name) {
  Message message;
  std::ostringstream text;
  object->getObject(name)->stringify(text);
  const Status s = JsonToMessage(text.str(), &message);
  EXPECT_TRUE(s.ok()) << name << ": " << s.ToString();
  return message;
}

template <typename Message>
Message Parse(const TxctlRun& run) {
  Message message;
  const Status s = JsonToMessage(run.out, &message);
  EXPECT_TRUE(s.ok()) << s.ToString() << "\n" << run;
  return message;
}

const v1::Branch* FindBranch(const v1::Transaction& tx, const std::string& id) {
  for (const v1::Branch& b : tx.branches()) {
    if (b.branch_id() == id) return &b;
  }
  return nullptr;
}

const v1::HistoryEntry* FindEntry(const v1::TransactionHistory& h, const std::string& kind) {
  for (const v1::HistoryEntry& e : h.entries()) {
    if (e.kind() == kind) return &e;
  }
  return nullptr;
}

class TxctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "txctl_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    std::ofstream(Path("tokens")) << "# operators\n" << kToken << "\n";
    std::ofstream(Path("token")) << kToken << "\n";
    std::ofstream(Path("wrong-token")) << "not-the-token\n";
    store_ = "sqlite://" + Path("txcoord.db");
  }
  void TearDown() override {
    txcoord_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  // Long retry delays: a stuck branch is retried only when txctl says so (or after minutes).
  void StartTxcoord(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"--listen",     "127.0.0.1:0",    "--store=" + store_,
                                     "--token-file", Path("tokens"),   "--retry-initial-ms",
                                     "600000",       "--retry-max-ms", "600000"};
    args.insert(args.end(), extra.begin(), extra.end());
    txcoord_ = std::make_unique<TxcoordProcess>(TXCOORD_BIN, args,
                                                Path("txcoord-stderr-" + std::to_string(++runs_)));
    const std::optional<int> port = txcoord_->WaitForListening(kStartTimeout);
    ASSERT_TRUE(port.has_value()) << "txcoord did not start; stderr:\n" << txcoord_->Stderr();
    port_ = *port;
  }

  void StopTxcoord() {
    txcoord_->Signal(SIGTERM);
    ASSERT_EQ(txcoord_->WaitForExit(seconds(20)), 0) << txcoord_->Stderr();
    txcoord_.reset();
  }

  // Runs txctl with `args` and waits for it to exit (draining its stdout meanwhile).
  TxctlRun Txctl(const std::vector<std::string>& args) {
    const std::string err_path = Path("txctl-stderr-" + std::to_string(++runs_));
    TxcoordProcess process(TXCTL_BIN, args, err_path);
    TxctlRun run;
    const auto deadline = std::chrono::steady_clock::now() + seconds(60);
    std::optional<int> code;
    while (!code && std::chrono::steady_clock::now() < deadline) {
      code = process.WaitForExit(milliseconds(50));
      run.out = process.Stdout();
    }
    run.exit_code = code.value_or(-1);
    run.out = process.Stdout();
    run.err = process.Stderr();
    return run;
  }

  // txctl through the service, with the token.
  TxctlRun Online(std::vector<std::string> args) {
    args.insert(args.begin(), {"--coordinator", "http://127.0.0.1:" + std::to_string(port_),
                               "--token-file", Path("token")});
    return Txctl(args);
  }
  TxctlRun Offline(std::vector<std::string> args) {
    args.insert(args.begin(), {"--store", store_});
    return Txctl(args);
  }

  ApiReply Begin(const std::string& body) {
    return Send(port_,
                {.method = "POST", .path = "/v1/transactions", .body = body, .token = kToken});
  }

  // A 2pc with branches "good" and `second` (both at `p`), branch ids as their names.
  void BeginTwoPhase(const std::string& gtid, Participant& p, const std::string& second,
                     bool wait) {
    const ApiReply reply =
        Begin(R"({"gtid":")" + gtid +
              R"(","protocol":"2pc","timeout_ms":30000,"branches":[)"
              R"({"branch_id":"good","url":")" +
              p.Url("good") + R"("},{"branch_id":")" + second + R"(","url":")" + p.Url(second) +
              R"("}],"wait":)" + (wait ? "true" : "false") + "}");
    ASSERT_TRUE(reply.status == 200 || reply.status == 202) << reply.body;
  }

  void BeginTcc(const std::string& gtid, Participant& p) {
    ASSERT_EQ(Begin(R"({"gtid":")" + gtid + R"(","protocol":"tcc","timeout_ms":600000})").status,
              202);
    const ApiReply registered =
        Send(port_, {.method = "POST",
                     .path = "/v1/transactions/" + gtid + "/branches",
                     .body = R"({"branch_id":"hold","url":")" + p.Url("hold") + R"("})",
                     .token = kToken});
    ASSERT_EQ(registered.status, 201) << registered.body;
  }

  // Polls `txctl show GTID --json` (through `run`) until `done` holds for the transaction.
  template <typename RunFn, typename Done>
  v1::Transaction ShowUntil(RunFn run, const std::string& gtid, Done done) {
    v1::Transaction tx;
    const bool ok = testing::PollUntil(kPollTimeout, kPollInterval, [&] {
      const TxctlRun shown = run({"show", gtid, "--json"});
      if (shown.exit_code != 0) return false;
      tx = Member<v1::Transaction>(ParseObject(shown.out), "transaction");
      return done(tx);
    });
    EXPECT_TRUE(ok) << "transaction " << gtid << " never got there; last state "
                    << tx.DebugString();
    return tx;
  }

  std::string dir_;
  std::string store_;
  int runs_ = 0;
  std::unique_ptr<TxcoordProcess> txcoord_;
  int port_ = 0;
};

// The stuck branch has failed its commit at least once: the transaction is committing.
bool StuckInCommit(const v1::Transaction& tx) {
  const v1::Branch* stuck = FindBranch(tx, "stuck");
  return tx.state() == "committing" && stuck != nullptr && stuck->attempts() >= 1 &&
         !stuck->last_error().empty();
}

TEST_F(TxctlTest, EveryCommandThroughTheService) {
  Participant bank;
  bank.Answer("stuck/commit", 500);
  StartTxcoord();
  BeginTwoPhase("ok-1", bank, "fine", /*wait=*/true);
  BeginTwoPhase("stuck-1", bank, "stuck", /*wait=*/false);
  BeginTcc("tcc-1", bank);
  auto online = [this](std::vector<std::string> args) { return Online(std::move(args)); };
  ShowUntil(online, "stuck-1", StuckInCommit);

  // list: everything, newest first, then filtered, then paged.
  const TxctlRun all = Online({"list", "--json"});
  ASSERT_EQ(all.exit_code, 0) << all;
  const auto list = Parse<v1::TransactionList>(all);
  ASSERT_EQ(list.transactions_size(), 3) << all;
  EXPECT_EQ(list.transactions(0).gtid(), "tcc-1");
  EXPECT_EQ(list.next(), "");
  const TxctlRun tcc_only = Online({"list", "--protocol", "tcc", "--json"});
  ASSERT_EQ(tcc_only.exit_code, 0) << tcc_only;
  const auto tccs = Parse<v1::TransactionList>(tcc_only);
  ASSERT_EQ(tccs.transactions_size(), 1);
  EXPECT_EQ(tccs.transactions(0).state(), "active");
  const TxctlRun committing = Online({"list", "--state", "committing", "--json"});
  const auto committing_list = Parse<v1::TransactionList>(committing);
  ASSERT_EQ(committing_list.transactions_size(), 1) << committing;
  EXPECT_EQ(committing_list.transactions(0).gtid(), "stuck-1");
  const TxctlRun first = Online({"list", "--limit", "1", "--json"});
  const auto page1 = Parse<v1::TransactionList>(first);
  ASSERT_EQ(page1.transactions_size(), 1) << first;
  ASSERT_EQ(page1.next(), page1.transactions(0).gtid());
  const auto page2 = Parse<v1::TransactionList>(
      Online({"list", "--limit", "5", "--after", page1.next(), "--json"}));
  ASSERT_EQ(page2.transactions_size(), 2);
  EXPECT_NE(page2.transactions(0).gtid(), page1.transactions(0).gtid());
  const TxctlRun table = Online({"list"});
  ASSERT_EQ(table.exit_code, 0) << table;
  EXPECT_NE(table.out.find("GTID"), std::string::npos) << table;
  EXPECT_NE(table.out.find("stuck-1"), std::string::npos) << table;
  EXPECT_NE(table.out.find("branch stuck: HTTP 500"), std::string::npos)
      << "the stuck branch's error\n"
      << table;

  // show: branches with attempts and last errors, then the history.
  const TxctlRun shown = Online({"show", "stuck-1", "--json"});
  ASSERT_EQ(shown.exit_code, 0) << shown;
  const auto shown_json = ParseObject(shown.out);
  const auto tx = Member<v1::Transaction>(shown_json, "transaction");
  const auto history = Member<v1::TransactionHistory>(shown_json, "history");
  EXPECT_EQ(FindBranch(tx, "good")->state(), "committed");
  EXPECT_NE(FindBranch(tx, "stuck")->last_error().find("500"), std::string::npos);
  ASSERT_NE(FindEntry(history, "begin"), nullptr);
  ASSERT_NE(FindEntry(history, "decision"), nullptr);
  EXPECT_EQ(FindEntry(history, "decision")->outcome(), "commit");
  EXPECT_EQ(history.entries(0).seq(), 1);
  const TxctlRun shown_table = Online({"show", "stuck-1"});
  ASSERT_EQ(shown_table.exit_code, 0) << shown_table;
  EXPECT_NE(shown_table.out.find("history:"), std::string::npos) << shown_table;
  EXPECT_NE(shown_table.out.find("decided commit"), std::string::npos) << shown_table;

  // retry: the next commit attempt comes now, not after the (up to ten minute) backoff.
  const int commits_before = bank.Calls("stuck/commit");
  const TxctlRun retried = Online({"retry", "stuck-1", "--json"});
  ASSERT_EQ(retried.exit_code, 0) << retried;
  EXPECT_EQ(Parse<v1::Transaction>(retried).gtid(), "stuck-1");
  EXPECT_TRUE(testing::PollUntil(seconds(20), kPollInterval, [&] {
    return bank.Calls("stuck/commit") > commits_before;
  })) << "no commit was sent again after txctl retry";

  // abort: refused once the commit is decided; done while undecided.
  const TxctlRun refused = Online({"abort", "stuck-1"});
  EXPECT_EQ(refused.exit_code, 1) << refused;
  EXPECT_NE(refused.err.find("can no longer abort"), std::string::npos) << refused;
  const TxctlRun aborted = Online({"abort", "tcc-1", "--json"});
  ASSERT_EQ(aborted.exit_code, 0) << aborted;
  const auto aborted_tx = Parse<v1::Transaction>(aborted);
  EXPECT_TRUE(aborted_tx.state() == "aborting" || aborted_tx.state() == "aborted") << aborted;
  ShowUntil(online, "tcc-1", [](const v1::Transaction& t) { return t.state() == "aborted"; });
  EXPECT_EQ(bank.Calls("hold/abort"), 1);

  // resolve: the wrong outcome is refused; the decided one lets the transaction finish.
  const TxctlRun contradicts =
      Online({"resolve", "stuck-1", "--branch", "stuck", "--as", "aborted", "--operator", "x"});
  EXPECT_EQ(contradicts.exit_code, 1) << contradicts;
  EXPECT_NE(contradicts.err.find("decision"), std::string::npos) << contradicts;
  const TxctlRun unknown_branch =
      Online({"resolve", "stuck-1", "--branch", "nope", "--as", "committed", "--operator", "x"});
  EXPECT_EQ(unknown_branch.exit_code, 3) << unknown_branch;
  const TxctlRun resolved =
      Online({"resolve", "stuck-1", "--branch", "stuck", "--as", "committed", "--operator", "alice",
              "--reason", "applied by hand", "--json"});
  ASSERT_EQ(resolved.exit_code, 0) << resolved;
  const auto finished = ShowUntil(
      online, "stuck-1", [](const v1::Transaction& t) { return t.state() == "committed"; });
  EXPECT_EQ(FindBranch(finished, "stuck")->state(), "committed");
  const auto final_history = Member<v1::TransactionHistory>(
      ParseObject(Online({"show", "stuck-1", "--json"}).out), "history");
  const v1::HistoryEntry* resolve = FindEntry(final_history, "resolved");
  ASSERT_NE(resolve, nullptr);
  EXPECT_EQ(resolve->branch_id(), "stuck");
  EXPECT_EQ(resolve->operator_(), "alice");
  EXPECT_EQ(resolve->reason(), "applied by hand");
  EXPECT_EQ(resolve->resolved_as(), "committed");
  EXPECT_EQ(resolve->phase(), "commit");
  EXPECT_NE(resolve->detail().find("alice"), std::string::npos);
  EXPECT_EQ(final_history.entries(final_history.entries_size() - 1).kind(), "end");
  // Once finished there is nothing to resolve or retry.
  EXPECT_EQ(Online({"resolve", "stuck-1", "--branch", "stuck", "--as", "committed", "--operator",
                    "alice"})
                .exit_code,
            1);
  EXPECT_EQ(Online({"retry", "stuck-1"}).exit_code, 1);
  EXPECT_EQ(Online({"abort", "ok-1"}).exit_code, 1);

  // Not found: 3.
  EXPECT_EQ(Online({"show", "no-such-tx"}).exit_code, 3);
  EXPECT_EQ(Online({"retry", "no-such-tx"}).exit_code, 3);
  EXPECT_EQ(Online({"abort", "no-such-tx"}).exit_code, 3);

  // purge: a dry run counts, without --yes nothing goes, with --yes all three go.
  int64_t eligible = 0;
  ASSERT_TRUE(testing::PollUntil(kPollTimeout, kPollInterval, [&] {
    const TxctlRun counted = Online({"purge", "--older-than", "1ms", "--dry-run", "--json"});
    if (counted.exit_code != 0) return false;
    eligible = ParseObject(counted.out)->getValue<int64_t>("remaining");
    return eligible == 3;
  })) << eligible;
  const TxctlRun unconfirmed = Online({"purge", "--older-than", "1ms"});
  EXPECT_EQ(unconfirmed.exit_code, 2) << unconfirmed;
  EXPECT_EQ(Online({"show", "ok-1"}).exit_code, 0) << "purged without --yes";
  const TxctlRun purged =
      Online({"purge", "--older-than", "1ms", "--yes", "--batch", "2", "--json"});
  ASSERT_EQ(purged.exit_code, 0) << purged;
  EXPECT_EQ(ParseObject(purged.out)->getValue<int64_t>("purged"), 3) << purged;
  EXPECT_EQ(Online({"show", "ok-1"}).exit_code, 3);
  EXPECT_EQ(Parse<v1::TransactionList>(Online({"list", "--json"})).transactions_size(), 0);
}

TEST_F(TxctlTest, TokensUsageErrorsAndAnUnreachableCoordinator) {
  StartTxcoord();
  const std::string url = "http://127.0.0.1:" + std::to_string(port_);
  const TxctlRun wrong = Txctl({"--coordinator", url, "--token-file", Path("wrong-token"), "list"});
  EXPECT_EQ(wrong.exit_code, 4) << wrong;
  EXPECT_NE(wrong.err.find("token"), std::string::npos) << wrong;
  const TxctlRun none = Txctl({"--coordinator", url, "list", "--json"});
  EXPECT_EQ(none.exit_code, 4) << none;
  EXPECT_EQ(none.out, "");
  ASSERT_EQ(Online({"list", "--json"}).exit_code, 0);

  EXPECT_EQ(Online({"bogus"}).exit_code, 2);
  EXPECT_EQ(Online({"list", "--bogus"}).exit_code, 2);
  EXPECT_EQ(Online({"list", "--older-than", "ten minutes"}).exit_code, 2);
  EXPECT_EQ(Online({"show"}).exit_code, 2);
  EXPECT_EQ(Online({"show", "bad gtid"}).exit_code, 2);
  EXPECT_EQ(Online({"resolve", "x", "--branch", "b", "--as", "maybe"}).exit_code, 2);
  EXPECT_EQ(Online({"resolve", "x", "--as", "committed"}).exit_code, 2);
  EXPECT_EQ(Online({"purge"}).exit_code, 2);
  // --operator defaults to $USER; without either a resolve is refused before anything is sent.
  unsetenv("USER");
  EXPECT_EQ(Online({"resolve", "no-such-tx", "--branch", "b", "--as", "committed"}).exit_code, 2);
  setenv("USER", "dave", 1);
  EXPECT_EQ(Online({"resolve", "no-such-tx", "--branch", "b", "--as", "committed"}).exit_code, 3);
  EXPECT_EQ(Txctl({"--coordinator", url, "--store", store_, "list"}).exit_code, 2);
  const TxctlRun help = Online({"resolve", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--as"), std::string::npos) << help;
  EXPECT_EQ(Txctl({"--help"}).exit_code, 0);

  // The SQLite store is locked by the running txcoord: offline refuses with one clear line.
  const TxctlRun locked = Offline({"list"});
  EXPECT_EQ(locked.exit_code, 1) << locked;
  EXPECT_NE(locked.err.find("in use by a running txcoord"), std::string::npos) << locked;

  StopTxcoord();
  const TxctlRun down = Txctl({"--coordinator", url, "--token-file", Path("token"), "list"});
  EXPECT_EQ(down.exit_code, 4) << down;
  EXPECT_NE(down.err.find("cannot reach"), std::string::npos) << down;
  // A store that does not exist is not created.
  const TxctlRun missing = Txctl({"--store", "sqlite://" + Path("typo.db"), "list"});
  EXPECT_EQ(missing.exit_code, 4) << missing;
  EXPECT_FALSE(std::filesystem::exists(Path("typo.db")));
}

// HTTPS with a client certificate: txctl verifies the coordinator against --ca and presents
// --cert/--key; without them, or trusting another CA, it cannot connect (exit 4).
TEST_F(TxctlTest, HttpsWithClientCertificates) {
  const txcoord::testing::TestPki pki(dir_);
  StartTxcoord({"--tls-cert", pki.Pem("server"), "--tls-key", pki.Key("server"), "--tls-client-ca",
                pki.Pem("ca")});
  const std::string url = "https://localhost:" + std::to_string(port_);
  const std::vector<std::string> common = {"--coordinator", url, "--token-file", Path("token")};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = common;
    args.insert(args.end(), extra.begin(), extra.end());
    return Txctl(args);
  };
  const TxctlRun ok = with({"--ca", pki.Pem("ca"), "--cert", pki.Pem("txcoord-client"), "--key",
                            pki.Key("txcoord-client"), "list", "--json"});
  ASSERT_EQ(ok.exit_code, 0) << ok;
  EXPECT_EQ(Parse<v1::TransactionList>(ok).transactions_size(), 0);
  const TxctlRun no_cert = with({"--ca", pki.Pem("ca"), "list"});
  EXPECT_EQ(no_cert.exit_code, 4) << no_cert;
  const TxctlRun wrong_ca = with({"--ca", pki.Pem("other-ca"), "--cert", pki.Pem("txcoord-client"),
                                  "--key", pki.Key("txcoord-client"), "list"});
  EXPECT_EQ(wrong_ca.exit_code, 4) << wrong_ca;
  const TxctlRun missing_file = with({"--ca", Path("missing.pem"), "list"});
  EXPECT_EQ(missing_file.exit_code, 2) << missing_file;
  const TxctlRun plain = Txctl({"--coordinator", "http://127.0.0.1:" + std::to_string(port_),
                                "--token-file", Path("token"), "list"});
  EXPECT_EQ(plain.exit_code, 4) << plain;
}

// Offline on the store of a stopped txcoord: the same commands, and what they write is what
// the service picks up at its next start. TxctlRun on SQLite and on PostgreSQL.
class TxctlOfflineTest : public TxctlTest, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    TxctlTest::SetUp();
    if (GetParam() == "postgresql") {
      auto db = txcoord::testing::SharedPostgres().CreateDatabase("txctl");
      ASSERT_TRUE(db.ok()) << db.status().ToString();
      store_ = txcoord::testing::SharedPostgres().Uri(*db);
    }
  }
};

TEST_P(TxctlOfflineTest, CommandsOnTheStoreAfterTheServiceStopped) {
  Participant bank;
  bank.Answer("stuck/commit", 500);
  StartTxcoord();
  BeginTwoPhase("stuck-1", bank, "stuck", /*wait=*/false);
  BeginTcc("tcc-1", bank);
  auto online = [this](std::vector<std::string> args) { return Online(std::move(args)); };
  ShowUntil(online, "stuck-1", StuckInCommit);
  // While txcoord runs, offline is refused on either store (SQLite: the file lock; PostgreSQL:
  // the presence lock on txcoord's writer session), also for a command that only reads.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"list"}, std::vector<std::string>{"abort", "tcc-1"}}) {
    const TxctlRun locked = Offline(args);
    EXPECT_EQ(locked.exit_code, 1) << locked;
    EXPECT_NE(locked.err.find("in use by a running txcoord"), std::string::npos) << locked;
  }
  StopTxcoord();

  const TxctlRun all = Offline({"list", "--json"});
  ASSERT_EQ(all.exit_code, 0) << all;
  const auto list = Parse<v1::TransactionList>(all);
  ASSERT_EQ(list.transactions_size(), 2) << all;
  EXPECT_EQ(list.transactions(0).gtid(), "tcc-1");
  EXPECT_EQ(list.transactions(1).state(), "committing");
  const TxctlRun shown = Offline({"show", "stuck-1", "--json"});
  ASSERT_EQ(shown.exit_code, 0) << shown;
  const auto shown_json = ParseObject(shown.out);
  const auto tx = Member<v1::Transaction>(shown_json, "transaction");
  EXPECT_NE(FindBranch(tx, "stuck")->last_error().find("500"), std::string::npos) << shown;
  EXPECT_NE(FindEntry(Member<v1::TransactionHistory>(shown_json, "history"), "decision"), nullptr);
  EXPECT_EQ(Offline({"show", "no-such-tx"}).exit_code, 3);

  // retry is the service's job: said so, exit 1; unknown gtids are still 3.
  const TxctlRun retried = Offline({"retry", "stuck-1"});
  EXPECT_EQ(retried.exit_code, 1) << retried;
  EXPECT_NE(retried.err.find("next starts"), std::string::npos) << retried;
  EXPECT_EQ(Offline({"retry", "no-such-tx"}).exit_code, 3);

  // abort: refused after the commit decision, done for the undecided tcc.
  const TxctlRun refused = Offline({"abort", "stuck-1"});
  EXPECT_EQ(refused.exit_code, 1) << refused;
  EXPECT_NE(refused.err.find("can no longer abort"), std::string::npos) << refused;
  const TxctlRun aborted = Offline({"abort", "tcc-1", "--json"});
  ASSERT_EQ(aborted.exit_code, 0) << aborted;
  EXPECT_EQ(Parse<v1::Transaction>(aborted).state(), "aborting");

  // resolve: the stuck commit, by hand. The good branch's acknowledgement was never logged
  // (phase-2 successes are logged with the end), so the transaction stays committing until
  // txcoord sends that commit again.
  EXPECT_EQ(
      Offline({"resolve", "stuck-1", "--branch", "stuck", "--as", "aborted", "--operator", "bob"})
          .exit_code,
      1);
  const TxctlRun resolved = Offline({"resolve", "stuck-1", "--branch", "stuck", "--as", "committed",
                                     "--operator", "bob", "--reason", "fixed offline", "--json"});
  ASSERT_EQ(resolved.exit_code, 0) << resolved;
  const auto resolved_tx = Parse<v1::Transaction>(resolved);
  EXPECT_EQ(resolved_tx.state(), "committing") << resolved;
  EXPECT_EQ(FindBranch(resolved_tx, "stuck")->state(), "committed") << resolved;
  const auto history = Member<v1::TransactionHistory>(
      ParseObject(Offline({"show", "stuck-1", "--json"}).out), "history");
  const v1::HistoryEntry* resolve = FindEntry(history, "resolved");
  ASSERT_NE(resolve, nullptr);
  EXPECT_EQ(resolve->operator_(), "bob");
  EXPECT_EQ(resolve->reason(), "fixed offline");

  // The service, started again, sends the abort that txctl decided, and keeps the resolve.
  // The stuck participant still fails: only the resolve lets the transaction finish.
  const int hold_aborts = bank.Calls("hold/abort");
  const int stuck_commits = bank.Calls("stuck/commit");
  StartTxcoord();
  ShowUntil(online, "tcc-1", [](const v1::Transaction& t) { return t.state() == "aborted"; });
  EXPECT_EQ(bank.Calls("hold/abort"), hold_aborts + 1);
  const auto after = ShowUntil(online, "stuck-1",
                               [](const v1::Transaction& t) { return t.state() == "committed"; });
  EXPECT_EQ(FindBranch(after, "stuck")->state(), "committed");
  EXPECT_EQ(bank.Calls("stuck/commit"), stuck_commits) << "a resolved branch was called again";
  const auto final_history = Member<v1::TransactionHistory>(
      ParseObject(Online({"show", "stuck-1", "--json"}).out), "history");
  EXPECT_NE(FindEntry(final_history, "resolved"), nullptr);
  EXPECT_EQ(final_history.entries(final_history.entries_size() - 1).kind(), "end");
  StopTxcoord();

  // purge offline.
  int64_t eligible = 0;
  ASSERT_TRUE(testing::PollUntil(kPollTimeout, kPollInterval, [&] {
    const TxctlRun counted = Offline({"purge", "--older-than", "1ms", "--dry-run", "--json"});
    if (counted.exit_code != 0) return false;
    eligible = ParseObject(counted.out)->getValue<int64_t>("remaining");
    return eligible == 2;
  })) << eligible;
  const TxctlRun purged = Offline({"purge", "--older-than", "1ms", "--yes", "--json"});
  ASSERT_EQ(purged.exit_code, 0) << purged;
  EXPECT_EQ(ParseObject(purged.out)->getValue<int64_t>("purged"), 2) << purged;
  EXPECT_EQ(Offline({"show", "stuck-1"}).exit_code, 3);
}

INSTANTIATE_TEST_SUITE_P(Stores, TxctlOfflineTest, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

// A saga whose compensation fails forever: abort it, then resolve the compensation by hand.
TEST_F(TxctlTest, ResolveFinishesAStuckSagaCompensation) {
  Participant shop;
  shop.Answer("reserve/release", 500);
  shop.Answer("charge/pay", 409);  // the second step refuses: the saga compensates
  StartTxcoord();
  const ApiReply begun =
      Begin(R"({"gtid":"saga-1","protocol":"saga","timeout_ms":30000,"steps":[)"
            R"({"step_id":"reserve","action":")" +
            shop.Url("reserve/hold") + R"(","compensate":")" + shop.Url("reserve/release") +
            R"("},{"step_id":"charge","action":")" + shop.Url("charge/pay") +
            R"(","compensate":")" + shop.Url("charge/refund") + R"(","depends_on":["reserve"]}]})");
  ASSERT_EQ(begun.status, 202) << begun.body;
  auto online = [this](std::vector<std::string> args) { return Online(std::move(args)); };
  ShowUntil(online, "saga-1", [](const v1::Transaction& t) {
    return t.state() == "compensating" && t.steps_size() == 2 &&
           t.steps(0).state() == "compensating" && t.steps(0).attempts() >= 1;
  });
  // The saga is decided abort: its action cannot be resolved as committed.
  const TxctlRun wrong =
      Online({"resolve", "saga-1", "--branch", "reserve", "--as", "committed", "--operator", "x"});
  EXPECT_EQ(wrong.exit_code, 1) << wrong;
  const TxctlRun resolved = Online({"resolve", "saga-1", "--branch", "reserve", "--as", "aborted",
                                    "--operator", "carol", "--reason", "released in the shop UI"});
  ASSERT_EQ(resolved.exit_code, 0) << resolved;
  EXPECT_NE(resolved.out.find("resolved as aborted by carol"), std::string::npos) << resolved;
  const auto done =
      ShowUntil(online, "saga-1", [](const v1::Transaction& t) { return t.state() == "aborted"; });
  EXPECT_EQ(done.steps(0).state(), "compensated");
  const auto history = Member<v1::TransactionHistory>(
      ParseObject(Online({"show", "saga-1", "--json"}).out), "history");
  const v1::HistoryEntry* resolve = FindEntry(history, "resolved");
  ASSERT_NE(resolve, nullptr);
  EXPECT_EQ(resolve->phase(), "compensate");
  EXPECT_EQ(resolve->state(), "compensated");
  EXPECT_EQ(resolve->operator_(), "carol");
}

}  // namespace
}  // namespace txcoord::integration
