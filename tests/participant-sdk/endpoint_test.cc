// CallbackServer over real HTTP on loopback: routing, the checks before a handler runs (headers,
// body, size, signatures), the mapping of PhaseResults to replies, application routes, and a
// clean stop.
#include "txcoord/participant/endpoint.h"

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <latch>
#include <mutex>
#include <sstream>
#include <thread>

#include "sdk_test_util.h"
#include "txcoord/participant/signature.h"
#include "txcoord/schemas/json.h"
#include "txcoord/v1/api.pb.h"

namespace txcoord::participant {
namespace {

using Headers = std::vector<std::pair<std::string, std::string>>;

class RecordingHandler : public BranchHandler {
 public:
  std::function<PhaseResult(const CallbackContext&)> answer = [](const CallbackContext&) {
    return PhaseResult::Done();
  };

  PhaseResult Prepare(const CallbackContext& ctx) override { return Record(ctx); }
  PhaseResult Commit(const CallbackContext& ctx) override { return Record(ctx); }
  PhaseResult Abort(const CallbackContext& ctx) override { return Record(ctx); }

  std::vector<CallbackContext> calls() const {
    std::lock_guard lock(mu_);
    return calls_;
  }

 private:
  PhaseResult Record(const CallbackContext& ctx) {
    {
      std::lock_guard lock(mu_);
      calls_.push_back(ctx);
    }
    return answer(ctx);
  }

  mutable std::mutex mu_;
  std::vector<CallbackContext> calls_;
};

struct Reply {
  int status = 0;
  std::string body;
  std::string code;     // error.code, when the body is the contract's error
  std::string message;  // error.message
  bool keep_alive = false;
};

Reply Send(Poco::Net::HTTPClientSession& session, const std::string& method,
           const std::string& path, const std::string& body, const Headers& headers,
           bool chunked = false) {
  Poco::Net::HTTPRequest request(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
  request.setKeepAlive(true);
  for (const auto& [name, value] : headers) request.set(name, value);
  if (chunked) {
    request.setChunkedTransferEncoding(true);
  } else if (!body.empty() || method == "POST") {
    request.setContentLength64(static_cast<Poco::Int64>(body.size()));
  }
  request.setContentType("application/json");
  session.sendRequest(request) << body;
  Poco::Net::HTTPResponse response;
  std::istream& in = session.receiveResponse(response);
  Reply reply;
  reply.status = static_cast<int>(response.getStatus());
  reply.keep_alive = response.getKeepAlive();
  std::ostringstream text;
  text << in.rdbuf();
  reply.body = text.str();
  v1::ErrorReply error;
  google::protobuf::util::JsonParseOptions options;
  if (google::protobuf::util::JsonStringToMessage(reply.body, &error, options).ok()) {
    reply.code = error.error().code();
    reply.message = error.error().message();
  }
  return reply;
}

std::string CallbackBody(const std::string& gtid, const std::string& branch_id,
                         const std::string& phase) {
  return R"({"gtid":")" + gtid + R"(","branch_id":")" + branch_id + R"(","phase":")" + phase +
         R"(","payload":{"account":"A","amount":30}})";
}

Headers CallbackHeaders(const std::string& gtid, const std::string& branch_id,
                        const std::string& phase, int attempt = 1) {
  return {{"Tx-Gtid", gtid},
          {"Tx-Branch-Id", branch_id},
          {"Tx-Phase", phase},
          {"Tx-Attempt", std::to_string(attempt)}};
}

class EndpointTest : public ::testing::Test {
 protected:
  // Registers `bank` under /bank and starts the server.
  void StartServer(CallbackServerOptions options = {}) {
    server_ = std::make_unique<CallbackServer>(std::move(options));
    ASSERT_TRUE(server_->AddHandler("/bank", &bank_).ok());
    Result<int> port = server_->Start("127.0.0.1:0");
    ASSERT_TRUE(port.ok()) << port.status().ToString();
    session_ = std::make_unique<Poco::Net::HTTPClientSession>("127.0.0.1", *port);
    session_->setKeepAlive(true);
    session_->setTimeout(Poco::Timespan(20, 0));
  }

  Reply Callback(const std::string& phase, const std::string& gtid = "order-42",
                 const std::string& branch_id = "debit") {
    return Send(*session_, "POST", "/bank/" + phase, CallbackBody(gtid, branch_id, phase),
                CallbackHeaders(gtid, branch_id, phase));
  }

  RecordingHandler bank_;
  std::unique_ptr<CallbackServer> server_;
  std::unique_ptr<Poco::Net::HTTPClientSession> session_;
};

TEST_F(EndpointTest, RoutesEachPhaseToTheHandlerOfItsBasePath) {
  RecordingHandler ledger;
  server_ = std::make_unique<CallbackServer>();
  ASSERT_TRUE(server_->AddHandler("/bank", &bank_).ok());
  ASSERT_TRUE(server_->AddHandler("/v1/ledger", &ledger).ok());
  Result<int> port = server_->Start("127.0.0.1:0");
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  EXPECT_EQ(server_->port(), *port);
  Poco::Net::HTTPClientSession session("127.0.0.1", *port);
  session.setKeepAlive(true);

  for (const char* phase : {"prepare", "commit", "abort"}) {
    const Reply reply =
        Send(session, "POST", std::string("/bank/") + phase, CallbackBody("g1", "debit", phase),
             CallbackHeaders("g1", "debit", phase));
    EXPECT_EQ(reply.status, 200) << phase << ": " << reply.body;
    EXPECT_EQ(reply.body, R"({"result":"done"})");
    EXPECT_TRUE(reply.keep_alive);
  }
  const Reply reply =
      Send(session, "POST", "/v1/ledger/prepare", CallbackBody("g1", "credit", "prepare"),
           CallbackHeaders("g1", "credit", "prepare"));
  EXPECT_EQ(reply.status, 200) << reply.body;

  const auto bank_calls = bank_.calls();
  ASSERT_EQ(bank_calls.size(), 3u);
  EXPECT_EQ(bank_calls[0].phase, Phase::kPrepare);
  EXPECT_EQ(bank_calls[1].phase, Phase::kCommit);
  EXPECT_EQ(bank_calls[2].phase, Phase::kAbort);
  const auto ledger_calls = ledger.calls();
  ASSERT_EQ(ledger_calls.size(), 1u);
  EXPECT_EQ(ledger_calls[0].branch_id, "credit");
}

TEST_F(EndpointTest, TheCallbackReachesTheHandlerWhole) {
  StartServer();
  // Spacing and a number beyond 2^53 that only the raw text keeps exactly.
  const std::string payload = R"({ "account" : "A", "amount": 12345678901234567891 })";
  const std::string body =
      R"({"gtid":"order-42","branch_id":"debit","phase":"commit","payload":)" + payload + "}";
  Headers headers = CallbackHeaders("order-42", "debit", "commit", 3);
  headers.emplace_back("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  headers.emplace_back("Tx-One-Phase", "true");
  const Reply reply = Send(*session_, "POST", "/bank/commit", body, headers);
  ASSERT_EQ(reply.status, 200) << reply.body;

  const auto calls = bank_.calls();
  ASSERT_EQ(calls.size(), 1u);
  const CallbackContext& ctx = calls[0];
  EXPECT_EQ(ctx.gtid, "order-42");
  EXPECT_EQ(ctx.branch_id, "debit");
  EXPECT_EQ(ctx.phase, Phase::kCommit);
  EXPECT_EQ(ctx.attempt, 3);
  EXPECT_TRUE(ctx.one_phase);
  EXPECT_EQ(ctx.traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  EXPECT_EQ(ctx.payload_json, payload);
  EXPECT_EQ(ctx.payload.struct_value().fields().at("account").string_value(), "A");

  // Without the header (and without a payload): not one-phase, a null payload.
  const Reply plain = Send(*session_, "POST", "/bank/commit",
                           R"({"gtid":"order-43","branch_id":"debit","phase":"commit"})",
                           CallbackHeaders("order-43", "debit", "commit"));
  ASSERT_EQ(plain.status, 200) << plain.body;
  const CallbackContext second = bank_.calls().at(1);
  EXPECT_FALSE(second.one_phase);
  EXPECT_EQ(second.attempt, 1);
  EXPECT_TRUE(second.traceparent.empty());
  EXPECT_EQ(second.payload_json, "null");
  EXPECT_TRUE(second.payload.has_null_value());

  // A member name written with an escape still yields the payload, printed from the value.
  const Reply escaped =
      Send(*session_, "POST", "/bank/commit",
           R"({"gtid":"order-44","branch_id":"debit","phase":"commit","pay\u006coad":{"a":[1,2]}})",
           CallbackHeaders("order-44", "debit", "commit"));
  ASSERT_EQ(escaped.status, 200) << escaped.body;
  EXPECT_EQ(bank_.calls().at(2).payload_json, R"({"a":[1,2]})");
}

TEST_F(EndpointTest, PhaseResultsBecomeTheContractsReplies) {
  StartServer();
  struct Case {
    PhaseResult result;
    int status;
    std::string code;
  };
  const std::vector<Case> cases = {
      {PhaseResult::Refused("insufficient funds in A"), 409, "CONFLICT"},
      {PhaseResult::InProgress("still checking"), 425, "IN_PROGRESS"},
      {PhaseResult::Transient("database restarting"), 503, "UNAVAILABLE"},
      {PhaseResult::Failed("bug in the ledger"), 500, "INTERNAL"},
  };
  for (const Case& c : cases) {
    bank_.answer = [&](const CallbackContext&) { return c.result; };
    const Reply reply = Callback("prepare");
    EXPECT_EQ(reply.status, c.status) << reply.body;
    EXPECT_EQ(reply.code, c.code) << reply.body;
    EXPECT_EQ(reply.message, c.result.message());
    EXPECT_TRUE(reply.keep_alive);
  }
}

TEST_F(EndpointTest, AThrowingHandlerIsAnswered500AndTheServerCarriesOn) {
  StartServer();
  bank_.answer = [](const CallbackContext&) -> PhaseResult {
    throw std::runtime_error("ledger exploded\nat line 2");
  };
  const Reply reply = Callback("prepare");
  EXPECT_EQ(reply.status, 500);
  EXPECT_EQ(reply.code, "INTERNAL");
  EXPECT_NE(reply.message.find("prepare handler threw: ledger exploded"), std::string::npos)
      << reply.message;
  EXPECT_EQ(reply.message.find('\n'), std::string::npos) << "one line";
  bank_.answer = [](const CallbackContext&) -> PhaseResult { throw 42; };
  EXPECT_EQ(Callback("commit").status, 500);
  bank_.answer = [](const CallbackContext&) { return PhaseResult::Done(); };
  EXPECT_EQ(Callback("abort").status, 200);
}

TEST_F(EndpointTest, ThreePhaseIsRefusedByDefault) {
  StartServer();
  const Reply reply = Callback("can-commit");
  EXPECT_EQ(reply.status, 409);
  EXPECT_EQ(reply.message, "3pc not supported by this participant");
  EXPECT_EQ(Callback("pre-commit").status, 409);
}

TEST_F(EndpointTest, UnknownPathsAndMethodsAreRefused) {
  StartServer();
  const Reply no_handler =
      Send(*session_, "POST", "/shop/prepare", CallbackBody("g1", "b1", "prepare"),
           CallbackHeaders("g1", "b1", "prepare"));
  EXPECT_EQ(no_handler.status, 404);
  EXPECT_EQ(no_handler.code, "NOT_FOUND");
  const Reply saga = Send(*session_, "POST", "/bank/action", CallbackBody("g1", "b1", "action"),
                          CallbackHeaders("g1", "b1", "action"));
  EXPECT_EQ(saga.status, 404);
  EXPECT_NE(saga.message.find("phases served"), std::string::npos) << saga.message;
  EXPECT_EQ(Send(*session_, "POST", "/bank", "{}", {}).status, 404);
  const Reply get = Send(*session_, "GET", "/bank/prepare", "", {});
  EXPECT_EQ(get.status, 405);
  EXPECT_EQ(get.code, "INVALID_ARGUMENT");
  EXPECT_TRUE(bank_.calls().empty());
}

TEST_F(EndpointTest, HeadersThatDisagreeWithTheBodyAre400) {
  StartServer();
  const std::string body = CallbackBody("order-42", "debit", "prepare");
  struct Case {
    std::string header;
    std::string value;  // "" drops the header
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"Tx-Gtid", "order-43", "Tx-Gtid header \"order-43\" differs"},
      {"Tx-Branch-Id", "credit", "Tx-Branch-Id header \"credit\" differs"},
      {"Tx-Phase", "commit", "Tx-Phase header \"commit\" differs"},
      {"Tx-Gtid", "", "Tx-Gtid header missing"},
      {"Tx-Phase", "", "Tx-Phase header missing"},
      {"Tx-Attempt", "0", "Tx-Attempt must be a positive integer"},
      {"Tx-Attempt", "two", "Tx-Attempt must be a positive integer"},
      {"Tx-One-Phase", "yes", "Tx-One-Phase must be"},
      {"Tx-One-Phase", "true", "only valid on commit"},
  };
  for (const Case& c : cases) {
    Headers headers;
    for (auto [name, value] : CallbackHeaders("order-42", "debit", "prepare")) {
      if (name != c.header) headers.emplace_back(name, value);
    }
    if (!c.value.empty()) headers.emplace_back(c.header, c.value);
    const Reply reply = Send(*session_, "POST", "/bank/prepare", body, headers);
    EXPECT_EQ(reply.status, 400) << c.header << "=" << c.value;
    EXPECT_EQ(reply.code, "INVALID_ARGUMENT");
    EXPECT_NE(reply.message.find(c.expect), std::string::npos) << reply.message;
  }
  EXPECT_TRUE(bank_.calls().empty());
}

// The contract lets a coordinator add fields to a callback; a participant must not refuse them.
TEST_F(EndpointTest, FieldsACoordinatorAddsToACallbackAreIgnored) {
  StartServer();
  const Headers headers = CallbackHeaders("order-42", "debit", "prepare");
  const Reply reply = Send(*session_, "POST", "/bank/prepare",
                           R"({"gtid":"order-42","branch_id":"debit","phase":"prepare",)"
                           R"("deadline":"2026-12-07T10:00:00Z","colour":{"r":1}})",
                           headers);
  EXPECT_EQ(reply.status, 200) << reply.body;
  // Still a callback: a wrong type in a known field is refused.
  const Reply wrong =
      Send(*session_, "POST", "/bank/prepare",
           R"({"gtid":42,"branch_id":"debit","phase":"prepare","colour":"red"})", headers);
  EXPECT_EQ(wrong.status, 400) << wrong.body;
}

TEST_F(EndpointTest, BodiesThatAreNotACallbackAre400) {
  StartServer();
  const Headers headers = CallbackHeaders("order-42", "debit", "prepare");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json", "not a callback"},
      {"", "not a callback"},
      {R"({"gtid":42,"branch_id":"debit","phase":"prepare"})", "not a callback"},
      {R"({"gtid":"order 42","branch_id":"debit","phase":"prepare"})", "gtid"},
      {R"({"gtid":"order-42","branch_id":"debit","phase":"commit"})", "differs from the path"},
  };
  for (const auto& [body, expect] : cases) {
    const Reply reply = Send(*session_, "POST", "/bank/prepare", body, headers);
    EXPECT_EQ(reply.status, 400) << body;
    EXPECT_NE(reply.message.find(expect), std::string::npos) << body << ": " << reply.message;
  }
  EXPECT_TRUE(bank_.calls().empty());
}

TEST_F(EndpointTest, BodiesAboveTheLimitAre413AndCloseTheConnection) {
  CallbackServerOptions options;
  options.max_body_bytes = 1024;
  StartServer(options);
  const std::string big =
      R"({"gtid":"order-42","branch_id":"debit","phase":"prepare","payload":")" +
      std::string(2000, 'x') + "\"}";
  const Headers headers = CallbackHeaders("order-42", "debit", "prepare");
  const Reply declared = Send(*session_, "POST", "/bank/prepare", big, headers);
  EXPECT_EQ(declared.status, 413);
  EXPECT_EQ(declared.code, "TOO_LARGE");
  EXPECT_FALSE(declared.keep_alive);
  session_->reset();
  const Reply chunked = Send(*session_, "POST", "/bank/prepare", big, headers, /*chunked=*/true);
  EXPECT_EQ(chunked.status, 413);
  EXPECT_FALSE(chunked.keep_alive);
  session_->reset();
  EXPECT_TRUE(bank_.calls().empty());
  // Just below the limit is fine.
  EXPECT_EQ(Callback("prepare").status, 200);
}

class SignedEndpointTest : public EndpointTest {
 protected:
  static constexpr int64_t kNow = 1700000000;

  void SetUp() override {
    CallbackServerOptions options;
    options.callback_secrets = {"old-secret", "new-secret"};
    options.clock = [this] { return now_.load(); };
    StartServer(options);
  }

  std::atomic<int64_t> now_{kNow};

  Reply SignedCallback(const std::string& secret, int64_t timestamp,
                       const std::string& body_override = "") {
    const std::string path = "/bank/prepare";
    const std::string body = CallbackBody("order-42", "debit", "prepare");
    Headers headers = CallbackHeaders("order-42", "debit", "prepare");
    headers.emplace_back("Tx-Timestamp", std::to_string(timestamp));
    headers.emplace_back("Tx-Signature", SignCallback(secret, timestamp, path, body).value());
    return Send(*session_, "POST", path, body_override.empty() ? body : body_override, headers);
  }
};

TEST_F(SignedEndpointTest, AGoodSignatureWithEitherSecretIsAccepted) {
  EXPECT_EQ(SignedCallback("old-secret", kNow).status, 200);
  EXPECT_EQ(SignedCallback("new-secret", kNow - 299).status, 200);
  EXPECT_EQ(bank_.calls().size(), 2u);
}

TEST_F(SignedEndpointTest, ForgedUnsignedStaleOrTamperedCallbacksAre401) {
  const Reply forged = SignedCallback("guessed-secret", kNow);
  EXPECT_EQ(forged.status, 401);
  EXPECT_EQ(forged.code, "UNAUTHENTICATED");
  EXPECT_NE(forged.message.find("signature does not match"), std::string::npos);

  const Reply stale = SignedCallback("new-secret", kNow - 301);
  EXPECT_EQ(stale.status, 401);
  EXPECT_NE(stale.message.find("301 s behind"), std::string::npos) << stale.message;

  const Reply tampered =
      SignedCallback("new-secret", kNow, CallbackBody("order-42", "debit", "prepare") + " ");
  EXPECT_EQ(tampered.status, 401);

  const Reply unsigned_reply = Callback("prepare");
  EXPECT_EQ(unsigned_reply.status, 401);
  EXPECT_EQ(unsigned_reply.code, "UNAUTHENTICATED");
  EXPECT_NE(unsigned_reply.message.find("header missing"), std::string::npos);
  EXPECT_TRUE(bank_.calls().empty());
}

// A captured callback sent again byte for byte: within the skew window it reaches the handler
// (whose barrier makes a repeat a no-op); once the window has passed it is refused.
TEST_F(SignedEndpointTest, AReplayedCallbackIsRefusedOnceItsTimestampIsStale) {
  const int64_t signed_at = kNow;
  EXPECT_EQ(SignedCallback("new-secret", signed_at).status, 200);
  now_ = kNow + 60;
  EXPECT_EQ(SignedCallback("new-secret", signed_at).status, 200) << "within the window";
  now_ = kNow + 301;
  const Reply replayed = SignedCallback("new-secret", signed_at);
  EXPECT_EQ(replayed.status, 401);
  EXPECT_EQ(replayed.code, "UNAUTHENTICATED");
  EXPECT_NE(replayed.message.find("301 s behind"), std::string::npos) << replayed.message;
  EXPECT_EQ(bank_.calls().size(), 2u) << "the stale replay never reached the handler";
}

TEST(CallbackServerTest, ApplicationRoutesShareTheServer) {
  RecordingHandler bank;
  CallbackServer server;
  ASSERT_TRUE(server.AddHandler("/bank", &bank).ok());
  ASSERT_TRUE(server
                  .AddRoute("GET", "/balance",
                            [](const HttpRequest& request, HttpResponse& response) {
                              response.body = R"({"account":")" + request.QueryParam("account") +
                                              R"(","balance":70})";
                            })
                  .ok());
  ASSERT_TRUE(server
                  .AddRoute("POST", "/transfer",
                            [](const HttpRequest& request, HttpResponse& response) {
                              if (request.Header("x-request-id").empty()) {
                                response.SetError(400, "INVALID_ARGUMENT", "X-Request-Id missing");
                                return;
                              }
                              response.status = 201;
                              response.headers.emplace_back("X-Echo", request.body);
                              response.body = request.body;
                            })
                  .ok());
  ASSERT_TRUE(
      server
          .AddRoute("POST", "/explode",
                    [](const HttpRequest&, HttpResponse&) { throw std::logic_error("route bug"); })
          .ok());
  // Registration errors.
  EXPECT_EQ(server.AddHandler("/bank", &bank).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(server.AddHandler("bank", &bank).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(server.AddHandler("/bank/", &bank).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(server.AddHandler("/transfer/x", nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(server.AddRoute("GET", "/bank/prepare", [](auto&, auto&) {}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(server.AddRoute("GET", "/balance", [](auto&, auto&) {}).code(),
            StatusCode::kAlreadyExists);

  Result<int> port = server.Start("127.0.0.1:0");
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  EXPECT_EQ(server.AddRoute("GET", "/late", [](auto&, auto&) {}).code(), StatusCode::kConflict);
  EXPECT_EQ(server.Start("127.0.0.1:0").status().code(), StatusCode::kConflict);

  Poco::Net::HTTPClientSession session("127.0.0.1", *port);
  const Reply balance = Send(session, "GET", "/balance?account=A%20B", "", {});
  EXPECT_EQ(balance.status, 200);
  EXPECT_EQ(balance.body, R"({"account":"A B","balance":70})");
  const Reply transfer =
      Send(session, "POST", "/transfer", R"({"from":"A"})", {{"X-Request-Id", "r-1"}});
  EXPECT_EQ(transfer.status, 201);
  EXPECT_EQ(transfer.body, R"({"from":"A"})");
  const Reply refused = Send(session, "POST", "/transfer", "{}", {});
  EXPECT_EQ(refused.status, 400);
  EXPECT_EQ(refused.message, "X-Request-Id missing");
  const Reply wrong_method = Send(session, "GET", "/transfer", "", {});
  EXPECT_EQ(wrong_method.status, 405);
  const Reply exploded = Send(session, "POST", "/explode", "{}", {});
  EXPECT_EQ(exploded.status, 500);
  EXPECT_NE(exploded.message.find("route bug"), std::string::npos);
  EXPECT_EQ(Send(session, "GET", "/nothing", "", {}).status, 404);
}

TEST(CallbackServerTest, StartOnATakenPortIsUnavailable) {
  Poco::Net::ServerSocket taken(Poco::Net::SocketAddress("127.0.0.1", 0));
  CallbackServer server;
  Result<int> port = server.Start("127.0.0.1:" + std::to_string(taken.address().port()));
  EXPECT_EQ(port.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(port.status().message().find("in use"), std::string::npos) << port.status().ToString();
  CallbackServerOptions options;
  options.callback_secrets = {"s", ""};
  CallbackServer bad_secret(options);
  EXPECT_EQ(bad_secret.Start("127.0.0.1:0").status().code(), StatusCode::kInvalidArgument);
}

// Stop waits for a request in progress and answers it, then closes kept-alive connections.
TEST(CallbackServerTest, StopAnswersTheRequestInProgressAndClosesIdleConnections) {
  RecordingHandler bank;
  std::latch inside{1};
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  bank.answer = [&](const CallbackContext& ctx) {
    if (ctx.gtid == "slow") {
      inside.count_down();
      released.wait();
    }
    return PhaseResult::Done();
  };
  CallbackServer server;
  ASSERT_TRUE(server.AddHandler("/bank", &bank).ok());
  Result<int> port = server.Start("127.0.0.1:0");
  ASSERT_TRUE(port.ok());

  // An idle kept-alive connection.
  Poco::Net::HTTPClientSession idle("127.0.0.1", *port);
  ASSERT_EQ(Send(idle, "POST", "/bank/prepare", CallbackBody("g1", "b1", "prepare"),
                 CallbackHeaders("g1", "b1", "prepare"))
                .status,
            200);

  auto slow = std::async(std::launch::async, [&] {
    Poco::Net::HTTPClientSession session("127.0.0.1", *port);
    return Send(session, "POST", "/bank/commit", CallbackBody("slow", "b1", "commit"),
                CallbackHeaders("slow", "b1", "commit"));
  });
  inside.wait();
  auto stopped = std::async(std::launch::async, [&] { server.Stop(); });
  // Stop cannot finish while the slow request is in progress.
  EXPECT_EQ(stopped.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
  release.set_value();
  stopped.get();
  EXPECT_EQ(slow.get().status, 200) << "the request in progress is answered";
  // The idle connection was closed: the next request on it fails, and so does a new one.
  EXPECT_ANY_THROW(Send(idle, "POST", "/bank/prepare", CallbackBody("g2", "b1", "prepare"),
                        CallbackHeaders("g2", "b1", "prepare")));
  Poco::Net::HTTPClientSession fresh("127.0.0.1", *port);
  EXPECT_ANY_THROW(Send(fresh, "POST", "/bank/prepare", CallbackBody("g3", "b1", "prepare"),
                        CallbackHeaders("g3", "b1", "prepare")));
  server.Stop();  // idempotent
  EXPECT_EQ(server.Start("127.0.0.1:0").status().code(), StatusCode::kConflict);
}

}  // namespace
}  // namespace txcoord::participant
