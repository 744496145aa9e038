// The /v1/ transaction API of the real txcoord executable (contract section 3), driven over
// HTTP the way any client would, with an in-test participant that answers 200 to everything.
//
// Each test starts its own txcoord on a fresh SQLite store with `--listen 127.0.0.1:0`. Every
// error reply is checked for its exact shape, {"error":{"code":...,"message":...}}, and code.
// Waits are bounded polls, never fixed sleeps.
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/StreamCopier.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api_client.h"
#include "txcoord/participant/signature.h"
#include "txcoord/schemas/json.h"
#include "txcoord/testing/poll.h"
#include "txcoord/v1/api.pb.h"
#include "txcoord_process.h"

namespace txcoord::integration {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr milliseconds kStartTimeout = seconds(10);
constexpr milliseconds kExitTimeout = seconds(15);
constexpr const char* kTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// A begin body with one branch per URL, named b0, b1, ...
std::string BeginBody(const std::string& gtid, const std::string& protocol,
                      const std::vector<std::string>& urls, bool wait, int timeout_ms = 10000) {
  std::string body = "{";
  if (!gtid.empty()) body += R"("gtid":")" + gtid + R"(",)";
  body += R"("protocol":")" + protocol + R"(","timeout_ms":)" + std::to_string(timeout_ms) +
          R"(,"branches":[)";
  for (size_t i = 0; i < urls.size(); ++i) {
    if (i > 0) body += ",";
    body += R"({"branch_id":"b)" + std::to_string(i) + R"(","url":")" + urls[i] +
            R"(","payload":{"account":"A","amount":30}})";
  }
  body += std::string(R"(],"wait":)") + (wait ? "true" : "false") + "}";
  return body;
}

class TxcoordApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "txcoord_api_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    txcoord_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  // Starts txcoord on this test's store with `extra` flags and waits for its listening line.
  void StartTxcoord(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"--listen", "127.0.0.1:0",
                                     "--store=sqlite://" + Path("txcoord.db")};
    args.insert(args.end(), extra.begin(), extra.end());
    txcoord_ = std::make_unique<TxcoordProcess>(TXCOORD_BIN, args,
                                                Path("stderr-" + std::to_string(++started_)));
    const std::optional<int> port = txcoord_->WaitForListening(kStartTimeout);
    ASSERT_TRUE(port.has_value()) << "txcoord did not start; stderr:\n" << txcoord_->Stderr();
    port_ = *port;
  }

  ApiReply Post(const std::string& path, const std::string& body,
                std::vector<std::pair<std::string, std::string>> headers = {}) {
    return Send(port_, {.method = "POST", .path = path, .body = body, .headers = headers});
  }
  ApiReply Get(const std::string& path) { return Send(port_, {.method = "GET", .path = path}); }

  std::string dir_;
  int started_ = 0;
  std::unique_ptr<TxcoordProcess> txcoord_;
  int port_ = 0;
};

TEST_F(TxcoordApiTest, TwoPhaseBeginWithWaitCommitsAndGetShowsTheRecord) {
  FakeParticipant bank;
  StartTxcoord();

  const ApiReply begun =
      Post("/v1/transactions",
           BeginBody("order-1", "2pc", {bank.Url("debit"), bank.Url("credit")}, /*wait=*/true),
           {{"traceparent", kTraceparent}});
  ASSERT_EQ(begun.status, 200) << begun.body;
  EXPECT_EQ(begun.content_type, "application/json");
  EXPECT_EQ(begun.Header("Tx-Gtid"), "order-1");
  const v1::Transaction committed = ParseTransaction(begun);
  EXPECT_EQ(committed.gtid(), "order-1");
  EXPECT_EQ(committed.protocol(), "2pc");
  EXPECT_EQ(committed.state(), "committed");
  ASSERT_EQ(committed.branches_size(), 2);
  for (const v1::Branch& branch : committed.branches()) {
    EXPECT_EQ(branch.state(), "committed") << branch.branch_id();
  }

  // Both branches were prepared, then committed, each call carrying the caller's traceparent.
  std::multiset<std::string> paths;
  for (const FakeParticipant::Call& call : bank.Calls()) {
    paths.insert(call.path);
    EXPECT_EQ(call.gtid, "order-1");
    EXPECT_EQ(call.traceparent, kTraceparent) << call.path;
  }
  EXPECT_EQ(paths, (std::multiset<std::string>{"/debit/prepare", "/debit/commit", "/credit/prepare",
                                               "/credit/commit"}));

  const ApiReply read = Get("/v1/transactions/order-1");
  ASSERT_EQ(read.status, 200) << read.body;
  EXPECT_EQ(read.Header("Tx-Gtid"), "order-1");
  const v1::Transaction stored = ParseTransaction(read);
  EXPECT_EQ(stored.state(), "committed");
  EXPECT_EQ(stored.branches_size(), 2);
  EXPECT_EQ(stored.created_at().seconds(), committed.created_at().seconds());
}

TEST_F(TxcoordApiTest, GeneratedGtidAndAnInvalidTraceparentIsNotPassedOn) {
  FakeParticipant bank;
  StartTxcoord();
  const ApiReply begun = Post("/v1/transactions", BeginBody("", "2pc", {bank.Url("x")}, true),
                              {{"traceparent", "00-not-a-trace-context"}});
  ASSERT_EQ(begun.status, 200) << begun.body;
  const v1::Transaction transaction = ParseTransaction(begun);
  EXPECT_FALSE(transaction.gtid().empty());
  EXPECT_EQ(begun.Header("Tx-Gtid"), transaction.gtid());
  ASSERT_FALSE(bank.Calls().empty());
  for (const FakeParticipant::Call& call : bank.Calls()) {
    EXPECT_EQ(call.gtid, transaction.gtid());
    EXPECT_EQ(call.traceparent, "") << call.path;
  }
}

TEST_F(TxcoordApiTest, CallbackSecretFileSignsEveryCallback) {
  FakeParticipant bank;
  // The trailing newline an editor leaves is not part of the secret.
  std::ofstream(Path("secret")) << "s3cret-shared\n";
  StartTxcoord({"--callback-secret-file", Path("secret")});
  ASSERT_EQ(Post("/v1/transactions", BeginBody("signed-1", "2pc", {bank.Url("a")}, true)).status,
            200);
  const std::vector<FakeParticipant::Call> calls = bank.Calls();
  ASSERT_FALSE(calls.empty());
  const int64_t now =
      std::chrono::duration_cast<seconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  for (const FakeParticipant::Call& call : calls) {
    const Status verified = participant::VerifyCallback("s3cret-shared", call.timestamp,
                                                        call.signature, call.path, call.body, now);
    EXPECT_TRUE(verified.ok()) << call.path << ": " << verified.ToString();
  }
}

TEST_F(TxcoordApiTest, TccBeginRegisterCommit) {
  FakeParticipant bank;
  StartTxcoord();

  const ApiReply begun = Post("/v1/transactions", R"({"gtid":"tcc-1","protocol":"tcc"})");
  ASSERT_EQ(begun.status, 202) << begun.body;
  EXPECT_EQ(begun.Header("Tx-Gtid"), "tcc-1");
  EXPECT_EQ(ParseTransaction(begun).state(), "active");

  const std::string branch =
      R"({"branch_id":"debit","url":")" + bank.Url("bank") + R"(","payload":{"amount":30}})";
  const ApiReply registered = Post("/v1/transactions/tcc-1/branches", branch);
  ASSERT_EQ(registered.status, 201) << registered.body;
  EXPECT_EQ(registered.Header("Tx-Gtid"), "tcc-1");
  const v1::Transaction with_branch = ParseTransaction(registered);
  EXPECT_EQ(with_branch.state(), "active");
  ASSERT_EQ(with_branch.branches_size(), 1);
  EXPECT_EQ(with_branch.branches(0).branch_id(), "debit");
  // Registering the same branch again is not an error.
  EXPECT_EQ(Post("/v1/transactions/tcc-1/branches", branch).status, 201);

  const ApiReply committed = Post("/v1/transactions/tcc-1/commit", R"({"wait":true})");
  ASSERT_EQ(committed.status, 200) << committed.body;
  EXPECT_EQ(ParseTransaction(committed).state(), "committed");
  const std::vector<FakeParticipant::Call> calls = bank.Calls();
  ASSERT_FALSE(calls.empty());
  for (const FakeParticipant::Call& call : calls) {
    EXPECT_EQ(call.path, "/bank/commit");
    EXPECT_EQ(call.phase, "commit");
  }

  // Commit again is answered with the outcome; abort after commit is a conflict.
  EXPECT_EQ(Post("/v1/transactions/tcc-1/commit", "").status, 200);
  ExpectError(Post("/v1/transactions/tcc-1/abort", ""), 409, "CONFLICT", "abort after commit");
  ExpectError(Post("/v1/transactions/tcc-1/branches", branch), 409, "CONFLICT",
              "register after commit");
}

TEST_F(TxcoordApiTest, CommitAfterAbortIsConflict) {
  StartTxcoord();
  ASSERT_EQ(Post("/v1/transactions", R"({"gtid":"ab-1","protocol":"tcc"})").status, 202);
  // An empty body is allowed and means wait: false.
  const ApiReply aborting = Post("/v1/transactions/ab-1/abort", "");
  ASSERT_TRUE(aborting.status == 200 || aborting.status == 202) << aborting.body;
  const ApiReply aborted = Post("/v1/transactions/ab-1/abort", R"({"wait":true})");
  ASSERT_EQ(aborted.status, 200) << aborted.body;
  EXPECT_EQ(ParseTransaction(aborted).state(), "aborted");
  ExpectError(Post("/v1/transactions/ab-1/commit", ""), 409, "CONFLICT", "commit after abort");
  ExpectError(Post("/v1/transactions/ab-1/commit", R"({"wait":true})"), 409, "CONFLICT",
              "commit after abort, waiting");
}

TEST_F(TxcoordApiTest, BeginIsIdempotentByGtid) {
  StartTxcoord();
  const std::string body = R"({"gtid":"idem-1","protocol":"tcc","timeout_ms":60000})";
  const ApiReply first = Post("/v1/transactions", body);
  ASSERT_EQ(first.status, 202) << first.body;
  const ApiReply again = Post("/v1/transactions", body);
  ASSERT_EQ(again.status, 202) << again.body;
  const v1::Transaction a = ParseTransaction(first);
  const v1::Transaction b = ParseTransaction(again);
  EXPECT_EQ(a.gtid(), b.gtid());
  EXPECT_EQ(a.created_at().seconds(), b.created_at().seconds());
  EXPECT_EQ(a.created_at().nanos(), b.created_at().nanos());
  EXPECT_EQ(a.deadline().seconds(), b.deadline().seconds());

  ExpectError(Post("/v1/transactions", R"({"gtid":"idem-1","protocol":"tcc","timeout_ms":5000})"),
              409, "CONFLICT", "same gtid, different body");
  // The first request is what is stored.
  const v1::Transaction stored = ParseTransaction(Get("/v1/transactions/idem-1"));
  EXPECT_EQ(stored.deadline().seconds(), a.deadline().seconds());
}

TEST_F(TxcoordApiTest, ListPagesNewestFirstAndFilters) {
  StartTxcoord();
  for (const char* gtid : {"list-1", "list-2", "list-3"}) {
    ASSERT_EQ(Post("/v1/transactions", std::string(R"({"protocol":"tcc","gtid":")") + gtid + "\"}")
                  .status,
              202);
  }
  auto page = [&](const std::string& query) {
    const ApiReply reply = Get("/v1/transactions" + query);
    EXPECT_EQ(reply.status, 200) << query << ": " << reply.body;
    v1::TransactionList list;
    const Status parsed = JsonToMessage(reply.body, &list);
    EXPECT_TRUE(parsed.ok()) << parsed.ToString();
    std::vector<std::string> gtids;
    for (const v1::Transaction& t : list.transactions()) gtids.push_back(t.gtid());
    return std::make_pair(gtids, list.next());
  };

  const auto [first, next] = page("?limit=2");
  EXPECT_EQ(first, (std::vector<std::string>{"list-3", "list-2"}));
  ASSERT_FALSE(next.empty());
  const auto [second, last] = page("?limit=2&after=" + next);
  EXPECT_EQ(second, (std::vector<std::string>{"list-1"}));
  EXPECT_EQ(last, "");

  EXPECT_EQ(page("?state=active").first.size(), 3u);
  EXPECT_EQ(page("?state=committed").first.size(), 0u);
  EXPECT_EQ(page("?older_than_ms=0&limit=1000").first.size(), 3u);
  EXPECT_EQ(page("?older_than_ms=3600000").first.size(), 0u);
  EXPECT_EQ(page("").first.size(), 3u);
}

struct BadRequest {
  std::string what;
  ApiRequest request;
  int status;
  std::string code;
};

TEST_F(TxcoordApiTest, BadRequestsGetTheContractErrorAndCode) {
  FakeParticipant bank;
  StartTxcoord({"--max-body-bytes", "4096"});
  ASSERT_EQ(Post("/v1/transactions", R"({"gtid":"exists","protocol":"tcc"})").status, 202);

  const std::string big = R"({"protocol":"tcc","gtid":")" + std::string(8000, 'x') + "\"}";
  const std::vector<BadRequest> cases = {
      {"malformed JSON",
       {.method = "POST", .path = "/v1/transactions", .body = R"({"protocol":)"},
       400,
       "INVALID_ARGUMENT"},
      {"not an object",
       {.method = "POST", .path = "/v1/transactions", .body = "[1,2]"},
       400,
       "INVALID_ARGUMENT"},
      {"wrong type",
       {.method = "POST", .path = "/v1/transactions", .body = R"({"protocol":"tcc","wait":"yes"})"},
       400,
       "INVALID_ARGUMENT"},
      {"wrong number type",
       {.method = "POST",
        .path = "/v1/transactions",
        .body = R"({"protocol":"tcc","timeout_ms":"soon"})"},
       400,
       "INVALID_ARGUMENT"},
      {"unknown field",
       {.method = "POST", .path = "/v1/transactions", .body = R"({"protocol":"tcc","colour":1})"},
       400,
       "INVALID_ARGUMENT"},
      {"bad gtid in body",
       {.method = "POST",
        .path = "/v1/transactions",
        .body = R"({"protocol":"tcc","gtid":"has space"})"},
       400,
       "INVALID_ARGUMENT"},
      {"unknown protocol",
       {.method = "POST", .path = "/v1/transactions", .body = R"({"protocol":"4pc"})"},
       400,
       "INVALID_ARGUMENT"},
      {"empty begin body", {.method = "POST", .path = "/v1/transactions"}, 400, "INVALID_ARGUMENT"},
      {"bad branch body",
       {.method = "POST", .path = "/v1/transactions/exists/branches", .body = "{"},
       400,
       "INVALID_ARGUMENT"},
      {"bad commit body",
       {.method = "POST", .path = "/v1/transactions/exists/commit", .body = R"({"wait":1})"},
       400,
       "INVALID_ARGUMENT"},
      {"bad gtid in path", {.path = "/v1/transactions/bad%20id"}, 400, "INVALID_ARGUMENT"},
      {"bad gtid in a command path",
       {.method = "POST", .path = "/v1/transactions/bad!id/commit"},
       400,
       "INVALID_ARGUMENT"},
      {"gtid too long",
       {.path = "/v1/transactions/" + std::string(129, 'g')},
       400,
       "INVALID_ARGUMENT"},
      {"unknown gtid", {.path = "/v1/transactions/nope"}, 404, "NOT_FOUND"},
      {"commit of an unknown gtid",
       {.method = "POST", .path = "/v1/transactions/nope/commit"},
       404,
       "NOT_FOUND"},
      {"unknown path", {.path = "/v1/nothing"}, 404, "NOT_FOUND"},
      {"unknown command",
       {.method = "POST", .path = "/v1/transactions/exists/rollback"},
       404,
       "NOT_FOUND"},
      {"DELETE a transaction",
       {.method = "DELETE", .path = "/v1/transactions/exists"},
       405,
       "INVALID_ARGUMENT"},
      {"PUT the collection",
       {.method = "PUT", .path = "/v1/transactions"},
       405,
       "INVALID_ARGUMENT"},
      {"GET a command", {.path = "/v1/transactions/exists/commit"}, 405, "INVALID_ARGUMENT"},
      {"limit 0", {.path = "/v1/transactions?limit=0"}, 400, "INVALID_ARGUMENT"},
      {"limit 1001", {.path = "/v1/transactions?limit=1001"}, 400, "INVALID_ARGUMENT"},
      {"limit not a number", {.path = "/v1/transactions?limit=ten"}, 400, "INVALID_ARGUMENT"},
      {"negative age", {.path = "/v1/transactions?older_than_ms=-1"}, 400, "INVALID_ARGUMENT"},
      {"unknown parameter", {.path = "/v1/transactions?colour=red"}, 400, "INVALID_ARGUMENT"},
      {"repeated parameter", {.path = "/v1/transactions?limit=1&limit=2"}, 400, "INVALID_ARGUMENT"},
      {"bad cursor", {.path = "/v1/transactions?after=bad%20id"}, 400, "INVALID_ARGUMENT"},
      {"URL outside the allow-list",
       {.method = "POST",
        .path = "/v1/transactions",
        .body = BeginBody("far-1", "2pc", {"http://203.0.113.9:80/bank"}, false)},
       403,
       "FORBIDDEN"},
      {"oversized body",
       {.method = "POST", .path = "/v1/transactions", .body = big},
       413,
       "TOO_LARGE"},
      {"oversized chunked body",
       {.method = "POST", .path = "/v1/transactions", .body = big, .chunked = true},
       413,
       "TOO_LARGE"},
  };
  for (const BadRequest& bad : cases) {
    const ApiReply reply = Send(port_, bad.request);
    ExpectError(reply, bad.status, bad.code, bad.what);
    if (bad.status == 405) {
      EXPECT_FALSE(reply.Header("Allow").empty()) << bad.what;
    }
  }
  // None of them left anything behind, and the service still serves.
  EXPECT_EQ(Get("/v1/transactions/far-1").status, 404);
  const ApiReply list = Get("/v1/transactions");
  v1::TransactionList stored;
  ASSERT_TRUE(JsonToMessage(list.body, &stored).ok()) << list.body;
  ASSERT_EQ(stored.transactions_size(), 1);
  EXPECT_EQ(stored.transactions(0).gtid(), "exists");
}

TEST_F(TxcoordApiTest, RejectedBeginLeavesNothingStored) {
  FakeParticipant bank;
  StartTxcoord();
  // Forbidden URL (403), a duplicate branch (400), a bad second branch (400): each names a gtid.
  ExpectError(Post("/v1/transactions",
                   BeginBody("half-1", "2pc", {bank.Url("a"), "http://198.51.100.7:1/x"}, true)),
              403, "FORBIDDEN", "one forbidden URL of two");
  ExpectError(
      Post("/v1/transactions",
           R"({"gtid":"half-2","protocol":"2pc","branches":[{"branch_id":"a","url":")" +
               bank.Url("a") + R"("},{"branch_id":"a","url":")" + bank.Url("b") + R"("}]})"),
      400, "INVALID_ARGUMENT", "duplicate branch");
  ExpectError(Post("/v1/transactions",
                   R"({"gtid":"half-3","protocol":"2pc","branches":[{"branch_id":"a","url":")" +
                       bank.Url("a") + R"("},{"branch_id":"b","url":"ftp://127.0.0.1:1/x"}]})"),
              400, "INVALID_ARGUMENT", "malformed second URL");
  for (const char* gtid : {"half-1", "half-2", "half-3"}) {
    ExpectError(Get(std::string("/v1/transactions/") + gtid), 404, "NOT_FOUND", gtid);
  }
  EXPECT_TRUE(bank.Calls().empty());
}

TEST_F(TxcoordApiTest, OversizedBodyWithinReasonKeepsTheConnection) {
  StartTxcoord({"--max-body-bytes", "1024"});
  Poco::Net::HTTPClientSession session("127.0.0.1", static_cast<Poco::UInt16>(port_));
  session.setKeepAlive(true);
  session.setTimeout(Poco::Timespan(5, 0));
  const std::string big = R"({"protocol":"tcc","gtid":")" + std::string(5000, 'x') + "\"}";
  Poco::Net::HTTPRequest request("POST", "/v1/transactions", Poco::Net::HTTPMessage::HTTP_1_1);
  request.setContentType("application/json");
  request.setContentLength64(static_cast<Poco::Int64>(big.size()));
  session.sendRequest(request) << big;
  Poco::Net::HTTPResponse response;
  std::string body;
  Poco::StreamCopier::copyToString(session.receiveResponse(response), body);
  EXPECT_EQ(response.getStatus(), 413) << body;
  const auto local_port = session.socket().address().port();

  Poco::Net::HTTPRequest health("GET", "/healthz", Poco::Net::HTTPMessage::HTTP_1_1);
  session.sendRequest(health);
  Poco::StreamCopier::copyToString(session.receiveResponse(response), body);
  EXPECT_EQ(response.getStatus(), 200);
  EXPECT_EQ(session.socket().address().port(), local_port) << "the connection was not kept";
}

TEST_F(TxcoordApiTest, TokensGuardTheApiButNotHealthOrMetrics) {
  std::ofstream(Path("tokens")) << "# API tokens\n\nsecret-one\n  secret-two  \n";
  StartTxcoord({"--token-file", Path("tokens")});

  auto list = [&](const std::vector<std::pair<std::string, std::string>>& headers) {
    return Send(port_, {.path = "/v1/transactions", .headers = headers});
  };
  const ApiReply missing = list({});
  ExpectError(missing, 401, "UNAUTHENTICATED", "no token");
  EXPECT_NE(missing.Header("WWW-Authenticate").find("Bearer"), std::string::npos);
  ExpectError(list({{"Authorization", "Bearer secret-on"}}), 401, "UNAUTHENTICATED", "prefix");
  ExpectError(list({{"Authorization", "Bearer secret-one-more"}}), 401, "UNAUTHENTICATED",
              "longer");
  ExpectError(list({{"Authorization", "Bearer # API tokens"}}), 401, "UNAUTHENTICATED",
              "a comment line");
  ExpectError(list({{"Authorization", "Basic c2VjcmV0LW9uZQ=="}}), 401, "UNAUTHENTICATED",
              "another scheme");
  ExpectError(list({{"Authorization", "secret-one"}}), 401, "UNAUTHENTICATED", "no scheme");
  // Unknown /v1/ paths and gtids say nothing without a token.
  ExpectError(Get("/v1/transactions/anything"), 401, "UNAUTHENTICATED", "a gtid");
  ExpectError(Get("/v1/else"), 401, "UNAUTHENTICATED", "unknown path");

  EXPECT_EQ(list({{"Authorization", "Bearer secret-one"}}).status, 200);
  EXPECT_EQ(list({{"Authorization", "Bearer secret-two"}}).status, 200);
  EXPECT_EQ(list({{"Authorization", "bearer secret-two"}}).status, 200);
  const ApiReply begun = Send(port_, {.method = "POST",
                                      .path = "/v1/transactions",
                                      .body = R"({"gtid":"auth-1","protocol":"tcc"})",
                                      .token = "secret-two"});
  EXPECT_EQ(begun.status, 202) << begun.body;

  EXPECT_EQ(Get("/healthz").status, 200);
  EXPECT_EQ(Get("/metrics").status, 200);
}

TEST_F(TxcoordApiTest, EmptyTokenOrSecretFileStopsTheStart) {
  std::ofstream(Path("tokens")) << "# only a comment\n\n   \n";
  std::ofstream(Path("secret")) << "\n";
  for (const std::vector<std::string>& flags :
       {std::vector<std::string>{"--token-file", Path("tokens")},
        std::vector<std::string>{"--callback-secret-file", Path("secret")}}) {
    std::vector<std::string> args = {"--listen", "127.0.0.1:0",
                                     "--store=sqlite://" + Path("txcoord.db")};
    args.insert(args.end(), flags.begin(), flags.end());
    TxcoordProcess process(TXCOORD_BIN, args, Path("stderr-empty"));
    const std::optional<int> code = process.WaitForExit(kExitTimeout);
    ASSERT_TRUE(code.has_value()) << "txcoord kept running with " << flags[0];
    EXPECT_EQ(*code, 2);
    const auto lines = Lines(process.Stderr());
    ASSERT_EQ(lines.size(), 1u) << process.Stderr();
    EXPECT_NE(lines[0].find(flags[1]), std::string::npos) << lines[0];
    EXPECT_EQ(process.Stdout().find("listening"), std::string::npos);
  }
}

TEST_F(TxcoordApiTest, ProtobufRequestsAndReplies) {
  FakeParticipant bank;
  StartTxcoord();
  v1::BeginRequest begin;
  begin.set_gtid("pb-1");
  begin.set_protocol("tcc");
  begin.set_timeout_ms(30000);
  const ApiReply begun = Send(port_, {.method = "POST",
                                      .path = "/v1/transactions",
                                      .body = begin.SerializeAsString(),
                                      .content_type = "application/x-protobuf",
                                      .accept = "application/x-protobuf"});
  ASSERT_EQ(begun.status, 202);
  EXPECT_EQ(begun.content_type, "application/x-protobuf");
  v1::Transaction transaction;
  ASSERT_TRUE(transaction.ParseFromString(begun.body));
  EXPECT_EQ(transaction.gtid(), "pb-1");
  EXPECT_EQ(transaction.state(), "active");

  v1::Branch branch;
  branch.set_branch_id("debit");
  branch.set_url(bank.Url("bank"));
  branch.mutable_payload()
      ->mutable_struct_value()
      ->mutable_fields()
      ->
      operator[]("amount")
      .set_number_value(30);
  const ApiReply registered = Send(port_, {.method = "POST",
                                           .path = "/v1/transactions/pb-1/branches",
                                           .body = branch.SerializeAsString(),
                                           .content_type = "application/x-protobuf"});
  ASSERT_EQ(registered.status, 201) << registered.body;
  EXPECT_EQ(registered.content_type, "application/json");  // no Accept: JSON reply

  const ApiReply read =
      Send(port_, {.path = "/v1/transactions/pb-1", .accept = "application/x-protobuf"});
  ASSERT_EQ(read.status, 200);
  ASSERT_TRUE(transaction.ParseFromString(read.body));
  ASSERT_EQ(transaction.branches_size(), 1);
  EXPECT_EQ(transaction.branches(0).branch_id(), "debit");
  EXPECT_EQ(transaction.branches(0).url(), bank.Url("bank"));

  const ApiReply missing =
      Send(port_, {.path = "/v1/transactions/pb-2", .accept = "application/x-protobuf"});
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.content_type, "application/x-protobuf");
  v1::ErrorReply error;
  ASSERT_TRUE(error.ParseFromString(missing.body));
  EXPECT_EQ(error.error().code(), "NOT_FOUND");

  ExpectError(Send(port_, {.method = "POST",
                           .path = "/v1/transactions",
                           .body = "\xff\xff\xff",
                           .content_type = "application/x-protobuf"}),
              400, "INVALID_ARGUMENT", "a body that is not protobuf");
}

// The samples of a /metrics page by name and labels; a test failure for a line that is neither
// a comment nor `name{labels} value`.
std::map<std::string, double> ParseMetrics(const ApiReply& metrics) {
  const std::regex sample(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")"
      R"((?:,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*\})? (-?[0-9]+(?:\.[0-9]+)?)$)");
  std::map<std::string, double> values;
  for (const std::string& line : Lines(metrics.body)) {
    if (line.starts_with("#")) continue;
    std::smatch match;
    if (!std::regex_match(line, match, sample)) {
      ADD_FAILURE() << "not a sample line: " << line;
      continue;
    }
    values[match[1].str() + match[2].str()] = std::stod(match[3].str());
  }
  return values;
}

TEST_F(TxcoordApiTest, MetricsAreParseablePrometheusText) {
  FakeParticipant bank;
  StartTxcoord();
  ASSERT_EQ(Post("/v1/transactions", BeginBody("m-1", "2pc", {bank.Url("a")}, true)).status, 200);
  ASSERT_EQ(Get("/v1/transactions/none").status, 404);

  // Replies are counted before they leave, so the page already shows both.
  const ApiReply metrics = Get("/metrics");
  std::map<std::string, double> values = ParseMetrics(metrics);
  EXPECT_EQ(metrics.status, 200);
  EXPECT_EQ(metrics.content_type.rfind("text/plain", 0), 0u) << metrics.content_type;
  for (const char* name :
       {"txcoord_transactions_live", "txcoord_transactions_begun_total",
        "txcoord_transactions_finished_total{outcome=\"committed\"}",
        "txcoord_transactions_finished_total{outcome=\"aborted\"}",
        "txcoord_transactions_recovered_total", "txcoord_callbacks_total",
        "txcoord_callback_failures_total", "txcoord_http_rejected_total",
        "txcoord_http_requests_total{code=\"200\"}", "txcoord_http_requests_total{code=\"404\"}"}) {
    EXPECT_EQ(values.count(name), 1u) << name << " missing from:\n" << metrics.body;
  }
  EXPECT_GE(values["txcoord_transactions_begun_total"], 1);
  EXPECT_GE(values["txcoord_transactions_finished_total{outcome=\"committed\"}"], 1);
  EXPECT_GE(values["txcoord_callbacks_total"], 1);
  EXPECT_GE(values["txcoord_http_requests_total{code=\"404\"}"], 1);
  EXPECT_EQ(values["txcoord_http_rejected_total"], 0);
}

// The per-protocol, per-phase and in-doubt figures follow what happened: a committed 2pc
// transaction counts under protocol 2pc and its callbacks in the prepare and commit histograms;
// one whose second branch never answers retries its prepare, aborts at the deadline and then
// stays `aborting` (its abort cannot be delivered), so it is in doubt until it can be.
TEST_F(TxcoordApiTest, MetricsCountByProtocolPhaseAndShowTransactionsInDoubt) {
  FakeParticipant bank;
  StartTxcoord();
  ASSERT_EQ(Post("/v1/transactions", BeginBody("p-1", "2pc", {bank.Url("a"), bank.Url("b")}, true))
                .status,
            200);
  int dead_port = 0;  // a port just released: nothing listens there, every callback is refused
  {
    Poco::Net::ServerSocket probe(Poco::Net::SocketAddress("127.0.0.1", 0));
    dead_port = probe.address().port();
  }
  const std::string dead = "http://127.0.0.1:" + std::to_string(dead_port) + "/bank";
  ASSERT_EQ(Post("/v1/transactions",
                 BeginBody("p-2", "2pc", {bank.Url("a"), dead}, /*wait=*/true, /*timeout_ms=*/600))
                .status,
            202);

  std::map<std::string, double> values;
  ASSERT_TRUE(testing::PollUntil(seconds(10), milliseconds(50), [&] {
    values = ParseMetrics(Get("/metrics"));
    return values["txcoord_callback_retries_total{phase=\"abort\"}"] >= 1;
  })) << Get("/metrics").body;
  EXPECT_EQ(values["txcoord_transactions_total{protocol=\"2pc\",outcome=\"committed\"}"], 1);
  EXPECT_EQ(values["txcoord_transactions_total{protocol=\"2pc\",outcome=\"aborted\"}"], 0);
  EXPECT_EQ(values["txcoord_transactions_total{protocol=\"saga\",outcome=\"committed\"}"], 0);
  EXPECT_EQ(values["txcoord_transaction_duration_seconds_count{protocol=\"2pc\"}"], 1);
  EXPECT_EQ(values["txcoord_transaction_duration_seconds_bucket{protocol=\"2pc\",le=\"+Inf\"}"],
            1);
  // p-1: 2 prepares and 2 commits; p-2: at least 2 prepares (one retried) and 2 aborts.
  EXPECT_GE(values["txcoord_callback_duration_seconds_count{phase=\"prepare\"}"], 4);
  EXPECT_EQ(values["txcoord_callback_duration_seconds_count{phase=\"commit\"}"], 2);
  EXPECT_GE(values["txcoord_callback_retries_total{phase=\"prepare\"}"], 1);
  EXPECT_EQ(values["txcoord_callback_retries_total{phase=\"commit\"}"], 0);
  // Buckets are cumulative and end with +Inf = count.
  EXPECT_LE(values["txcoord_callback_duration_seconds_bucket{phase=\"commit\",le=\"0.001\"}"],
            values["txcoord_callback_duration_seconds_bucket{phase=\"commit\",le=\"10\"}"]);
  EXPECT_EQ(values["txcoord_callback_duration_seconds_bucket{phase=\"commit\",le=\"+Inf\"}"], 2);
  EXPECT_EQ(values["txcoord_transactions_by_state{state=\"aborting\"}"], 1);
  EXPECT_EQ(values["txcoord_transactions_in_doubt"], 1);
  EXPECT_EQ(values.count("txcoord_transactions_by_state{state=\"preparing\"}"), 0u);
}

// Connections beyond threads + queue get a 503 with the contract's body, never a silent close.
TEST_F(TxcoordApiTest, ConnectionsBeyondThreadsAndQueueGet503) {
  FakeParticipant slow(milliseconds(700));
  StartTxcoord({"--max-threads", "2", "--max-queued", "1"});
  // Poco counts a connection as queued until a thread takes it, also a thread it has just
  // started, so in a burst even the second connection may be refused: at least one is served.
  constexpr int kClients = 10;
  std::vector<std::future<ApiReply>> replies;
  for (int i = 0; i < kClients; ++i) {
    replies.push_back(std::async(std::launch::async, [&, i] {
      return Post("/v1/transactions",
                  BeginBody("busy-" + std::to_string(i), "2pc", {slow.Url("a")}, true));
    }));
  }
  int ok = 0;
  int refused = 0;
  for (auto& future : replies) {
    try {
      const ApiReply reply = future.get();
      if (reply.status == 503) {
        ++refused;
        ExpectError(reply, 503, "UNAVAILABLE", "refused connection");
        EXPECT_EQ(reply.Header("Retry-After"), "1");
      } else {
        EXPECT_EQ(reply.status, 200) << reply.body;
        ++ok;
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << "a client got no HTTP answer: " << e.what();
    }
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(refused, 1);
  // Still serving, and it counted what it refused.
  EXPECT_EQ(Get("/healthz").status, 200);
  const std::string metrics = Get("/metrics").body;
  EXPECT_NE(metrics.find("txcoord_http_rejected_total " + std::to_string(refused)),
            std::string::npos)
      << metrics;
}

// /v1/ requests beyond --max-in-flight get 503 at once; /healthz still answers.
TEST_F(TxcoordApiTest, RequestsBeyondTheInFlightLimitGet503WithRetryAfter) {
  FakeParticipant slow(milliseconds(1500));
  StartTxcoord({"--max-in-flight", "1"});
  auto held = std::async(std::launch::async, [&] {
    return Post("/v1/transactions", BeginBody("held-1", "2pc", {slow.Url("a")}, true));
  });
  ASSERT_TRUE(
      testing::PollUntil(seconds(10), milliseconds(5), [&] { return slow.InProgress() == 1; }));
  const ApiReply refused = Get("/v1/transactions");
  ExpectError(refused, 503, "UNAVAILABLE", "second request in flight");
  EXPECT_EQ(refused.Header("Retry-After"), "1");
  EXPECT_EQ(Get("/healthz").status, 200);
  EXPECT_EQ(held.get().status, 200);
  EXPECT_EQ(Get("/v1/transactions").status, 200);
}

// SIGTERM answers a request waiting for an outcome at once with its durable state, exits 0, and
// the next start drives the transaction to its end.
TEST_F(TxcoordApiTest, SigtermAnswersWaitingRequestsAndRecoveryFinishes) {
  FakeParticipant slow(milliseconds(1500));
  StartTxcoord({"--callback-timeout-ms", "5000", "--retry-initial-ms", "50"});
  auto waiting = std::async(std::launch::async, [&] {
    return Post("/v1/transactions",
                BeginBody("term-1", "2pc", {slow.Url("a"), slow.Url("b")}, true, 30000));
  });
  ASSERT_TRUE(
      testing::PollUntil(seconds(10), milliseconds(5), [&] { return slow.InProgress() > 0; }));
  const auto signalled = std::chrono::steady_clock::now();
  txcoord_->Signal(SIGTERM);
  const ApiReply reply = waiting.get();
  EXPECT_LT(std::chrono::steady_clock::now() - signalled, seconds(5));
  ASSERT_TRUE(reply.status == 200 || reply.status == 202) << reply.body;
  EXPECT_EQ(ParseTransaction(reply).gtid(), "term-1");
  const std::optional<int> code = txcoord_->WaitForExit(kExitTimeout);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << txcoord_->Stderr();

  StartTxcoord({"--retry-initial-ms", "50"});
  std::string state;
  EXPECT_TRUE(testing::PollUntil(seconds(30), milliseconds(50),
                                 [&] {
                                   state = ParseTransaction(Get("/v1/transactions/term-1")).state();
                                   return state == "committed" || state == "aborted";
                                 }))
      << "still " << state;
}

}  // namespace
}  // namespace txcoord::integration
