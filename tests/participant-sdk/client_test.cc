// CoordinatorClient against a fake coordinator (fake_coordinator.h) that answers as the contract
// says and records what it received.
#include "txcoord/participant/client.h"

#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/StreamSocket.h>
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "fake_coordinator.h"
#include "txcoord/schemas/json.h"

namespace txcoord::participant {
namespace {

using testing::ErrorJson;
using testing::FakeCoordinator;
using testing::TransactionJson;

constexpr std::string_view kTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

std::unique_ptr<CoordinatorClient> NewClient(const std::string& url,
                                             CoordinatorClientOptions options = {}) {
  options.url = url;
  Result<std::unique_ptr<CoordinatorClient>> client = CoordinatorClient::Create(options);
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return std::move(*client);
}

v1::BeginRequest TransferRequest(const std::string& gtid) {
  v1::BeginRequest request;
  request.set_gtid(gtid);
  request.set_protocol("2pc");
  request.set_timeout_ms(10000);
  request.set_wait(false);
  v1::Branch* debit = request.add_branches();
  debit->set_branch_id("debit");
  debit->set_url("http://127.0.0.1:7001/bank");
  auto& fields = *debit->mutable_payload()->mutable_struct_value()->mutable_fields();
  fields["account"].set_string_value("A");
  fields["amount"].set_number_value(30);
  return request;
}

TEST(CoordinatorClientTest, BeginSendsTheContractsRequestAndReadsTheRecord) {
  FakeCoordinator fake([](const FakeCoordinator::Request&, FakeCoordinator::Reply& reply) {
    reply.status = 202;
    // A field this client does not know: a newer coordinator may add fields.
    reply.body = TransactionJson("order-42", "preparing", R"(,"added_later":{"x":1})");
  });
  CoordinatorClientOptions options;
  options.bearer_token = "tok-123";
  auto client = NewClient(fake.url(), options);

  CallOptions call;
  call.traceparent = std::string(kTraceparent);
  Result<TransactionReply> reply = client->Begin(TransferRequest("order-42"), call);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->http_status, 202);
  EXPECT_FALSE(reply->terminal());
  EXPECT_EQ(reply->transaction.gtid(), "order-42");
  EXPECT_EQ(reply->transaction.state(), "preparing");
  ASSERT_EQ(reply->transaction.branches_size(), 1);
  EXPECT_EQ(reply->transaction.branches(0).attempts(), 1);

  const auto requests = fake.requests();
  ASSERT_EQ(requests.size(), 1u);
  const auto& sent = requests[0];
  EXPECT_EQ(sent.method, "POST");
  EXPECT_EQ(sent.uri, "/v1/transactions");
  EXPECT_EQ(sent.Header("Tx-Gtid"), "order-42");
  EXPECT_EQ(sent.Header("traceparent"), kTraceparent);
  EXPECT_EQ(sent.Header("Authorization"), "Bearer tok-123");
  EXPECT_EQ(sent.Header("Content-Type"), "application/json");
  v1::BeginRequest parsed;
  ASSERT_TRUE(JsonToMessage(sent.body, &parsed).ok()) << sent.body;  // strict: no unknown fields
  EXPECT_EQ(parsed.gtid(), "order-42");
  EXPECT_EQ(parsed.protocol(), "2pc");
  EXPECT_EQ(parsed.timeout_ms(), 10000);
  ASSERT_EQ(parsed.branches_size(), 1);
  EXPECT_EQ(parsed.branches(0).payload().struct_value().fields().at("amount").number_value(), 30);
}

TEST(CoordinatorClientTest, BeginWithoutGtidLeavesItOutAndATerminalReplyIs200) {
  FakeCoordinator fake([](const FakeCoordinator::Request&, FakeCoordinator::Reply& reply) {
    reply.status = 200;
    reply.body = TransactionJson("generated-1", "committed");
  });
  auto client = NewClient(fake.url());
  v1::BeginRequest request = TransferRequest("");
  request.set_wait(true);
  Result<TransactionReply> reply = client->Begin(request);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_TRUE(reply->terminal());
  EXPECT_EQ(reply->transaction.gtid(), "generated-1");
  const auto sent = fake.requests().at(0);
  EXPECT_EQ(sent.body.find("\"gtid\""), std::string::npos) << sent.body;
  EXPECT_FALSE(sent.Has("Tx-Gtid"));
  EXPECT_FALSE(sent.Has("traceparent"));
  EXPECT_FALSE(sent.Has("Authorization"));
}

TEST(CoordinatorClientTest, RegisterCommitAbortAndGetUseTheirPaths) {
  FakeCoordinator fake([](const FakeCoordinator::Request& request, FakeCoordinator::Reply& reply) {
    if (request.uri.ends_with("/branches")) {
      reply.status = 201;
      reply.body = "{}";
    } else if (request.uri.ends_with("/commit")) {
      reply.status = 200;
      reply.body = TransactionJson("tcc-7", "committed");
    } else if (request.uri.ends_with("/abort")) {
      reply.status = 202;
      reply.body = TransactionJson("tcc-8", "aborting");
    } else {
      reply.body = TransactionJson("tcc-7", "committed");
    }
  });
  auto client = NewClient(fake.url());
  v1::Branch branch;
  branch.set_branch_id("credit");
  branch.set_url("http://127.0.0.1:7002/bank");
  branch.mutable_payload()->set_string_value("B");
  CallOptions call;
  call.traceparent = std::string(kTraceparent);
  ASSERT_TRUE(client->RegisterBranch("tcc-7", branch, call).ok());
  Result<TransactionReply> committed = client->Commit("tcc-7", /*wait=*/true, call);
  ASSERT_TRUE(committed.ok()) << committed.status().ToString();
  EXPECT_TRUE(committed->terminal());
  Result<TransactionReply> aborting = client->Abort("tcc-8", /*wait=*/false);
  ASSERT_TRUE(aborting.ok()) << aborting.status().ToString();
  EXPECT_FALSE(aborting->terminal());
  EXPECT_EQ(aborting->transaction.state(), "aborting");
  Result<v1::Transaction> got = client->Get("tcc-7");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->state(), "committed");

  const auto requests = fake.requests();
  ASSERT_EQ(requests.size(), 4u);
  EXPECT_EQ(requests[0].method, "POST");
  EXPECT_EQ(requests[0].uri, "/v1/transactions/tcc-7/branches");
  v1::Branch sent_branch;
  ASSERT_TRUE(JsonToMessage(requests[0].body, &sent_branch).ok()) << requests[0].body;
  EXPECT_EQ(sent_branch.branch_id(), "credit");
  EXPECT_EQ(sent_branch.payload().string_value(), "B");
  EXPECT_EQ(requests[0].Header("Tx-Gtid"), "tcc-7");
  EXPECT_EQ(requests[0].Header("traceparent"), kTraceparent);

  EXPECT_EQ(requests[1].uri, "/v1/transactions/tcc-7/commit");
  v1::CompleteRequest wait;
  ASSERT_TRUE(JsonToMessage(requests[1].body, &wait).ok()) << requests[1].body;
  EXPECT_TRUE(wait.wait());
  EXPECT_EQ(requests[1].Header("traceparent"), kTraceparent);

  EXPECT_EQ(requests[2].uri, "/v1/transactions/tcc-8/abort");
  v1::CompleteRequest no_wait;
  ASSERT_TRUE(JsonToMessage(requests[2].body, &no_wait).ok()) << requests[2].body;
  EXPECT_FALSE(no_wait.wait());
  EXPECT_EQ(requests[2].Header("Tx-Gtid"), "tcc-8");

  EXPECT_EQ(requests[3].method, "GET");
  EXPECT_EQ(requests[3].uri, "/v1/transactions/tcc-7");
  EXPECT_EQ(requests[3].Header("Tx-Gtid"), "tcc-7");
}

TEST(CoordinatorClientTest, ErrorRepliesBecomeStatusCodesWithTheServersMessage) {
  struct Case {
    int status;
    StatusCode code;
  };
  const std::vector<Case> cases = {
      {409, StatusCode::kConflict},        {404, StatusCode::kUnavailable},
      {400, StatusCode::kInvalidArgument}, {401, StatusCode::kInvalidArgument},
      {403, StatusCode::kInvalidArgument}, {413, StatusCode::kInvalidArgument},
      {429, StatusCode::kUnavailable},     {500, StatusCode::kUnavailable},
      {503, StatusCode::kUnavailable},
  };
  for (const Case& c : cases) {
    FakeCoordinator fake([&](const FakeCoordinator::Request&, FakeCoordinator::Reply& reply) {
      reply.status = c.status;
      reply.body = ErrorJson("SOME_CODE", "the coordinator says no to " + std::to_string(c.status));
    });
    auto client = NewClient(fake.url());
    const std::string expected = "the coordinator says no to " + std::to_string(c.status);
    const Result<TransactionReply> commit = client->Commit("order-42", false);
    ASSERT_FALSE(commit.ok()) << c.status;
    EXPECT_EQ(commit.status().code(), c.code) << c.status << ": " << commit.status().ToString();
    EXPECT_NE(commit.status().message().find(expected), std::string::npos)
        << commit.status().ToString();
    EXPECT_TRUE(commit.status().message().starts_with("commit order-42: "))
        << commit.status().ToString();
    const Result<v1::Transaction> get = client->Get("order-42");
    EXPECT_EQ(get.status().code(), c.code) << c.status;
    const Status registered = client->RegisterBranch("order-42", v1::Branch());
    EXPECT_EQ(registered.code(), StatusCode::kInvalidArgument) << "an empty branch_id is refused";
  }
}

// A participant in doubt takes "not found" as abort, so only the coordinator's own NOT_FOUND
// counts; a 404 page of a proxy or of a wrong URL path is retried.
TEST(CoordinatorClientTest, OnlyTheContractsNotFoundBodyMeansTheTransactionIsUnknown) {
  struct Case {
    std::string body;
    StatusCode code;
  };
  const std::vector<Case> cases = {
      {ErrorJson("NOT_FOUND", "no transaction order-42"), StatusCode::kNotFound},
      {ErrorJson("SOME_CODE", "something else"), StatusCode::kUnavailable},
      {"<html><body>404 Not Found</body></html>", StatusCode::kUnavailable},
      {"", StatusCode::kUnavailable},
  };
  for (const Case& c : cases) {
    FakeCoordinator fake([&](const FakeCoordinator::Request&, FakeCoordinator::Reply& reply) {
      reply.status = 404;
      reply.body = c.body;
    });
    auto client = NewClient(fake.url());
    const Result<v1::Transaction> get = client->Get("order-42");
    ASSERT_FALSE(get.ok());
    EXPECT_EQ(get.status().code(), c.code) << c.body << ": " << get.status().ToString();
    if (c.code == StatusCode::kUnavailable) {
      EXPECT_NE(get.status().message().find("coordinator URL"), std::string::npos)
          << get.status().ToString();
    }
  }
}

TEST(CoordinatorClientTest, ANonContractErrorBodyIsQuoted) {
  FakeCoordinator fake([](const FakeCoordinator::Request&, FakeCoordinator::Reply& reply) {
    reply.status = 502;
    reply.body = "<html>Bad Gateway</html>";
  });
  auto client = NewClient(fake.url());
  const Result<v1::Transaction> got = client->Get("order-42");
  EXPECT_EQ(got.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(got.status().message().find("HTTP 502: <html>Bad Gateway</html>"), std::string::npos)
      << got.status().ToString();
}

TEST(CoordinatorClientTest, BadIdsAreRefusedWithoutSending) {
  FakeCoordinator fake([](const FakeCoordinator::Request&, FakeCoordinator::Reply&) {});
  auto client = NewClient(fake.url());
  EXPECT_EQ(client->Get("order/42").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(client->Commit("", true).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(client->Begin(TransferRequest("has space")).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(fake.requests().empty());
}

TEST(CoordinatorClientTest, CreateRefusesWhatIsNotAnHttpBaseUrl) {
  for (const char* url : {"", "127.0.0.1:8470", "https://127.0.0.1:8470/v1", "http://h:1/v1",
                          "ftp://host", "http://:80"}) {
    CoordinatorClientOptions options;
    options.url = url;
    EXPECT_EQ(CoordinatorClient::Create(options).status().code(), StatusCode::kInvalidArgument)
        << url;
  }
  CoordinatorClientOptions options;
  options.url = "http://127.0.0.1:8470/";
  EXPECT_TRUE(CoordinatorClient::Create(options).ok());
  // https is served too (tests/integration/tls_test.cc); a CA file that is not there is said
  // at once, not at the first call.
  options.url = "https://127.0.0.1:8470";
  options.tls.ca_file = "/nonexistent/ca.pem";
  EXPECT_EQ(CoordinatorClient::Create(options).status().code(), StatusCode::kInvalidArgument);
}

TEST(CoordinatorClientTest, ARefusedConnectionIsUnavailable) {
  int port = 0;
  {
    Poco::Net::ServerSocket socket(Poco::Net::SocketAddress("127.0.0.1", 0));
    port = socket.address().port();
  }  // closed: nothing listens on the port now
  auto client = NewClient("http://127.0.0.1:" + std::to_string(port));
  const Result<TransactionReply> commit = client->Commit("order-42", false);
  EXPECT_EQ(commit.status().code(), StatusCode::kUnavailable) << commit.status().ToString();
  EXPECT_TRUE(commit.status().NothingHappened());
}

TEST(CoordinatorClientTest, NoReplyInTimeIsUnknownForCommitAndUnavailableForGet) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  FakeCoordinator fake([released](const FakeCoordinator::Request&, FakeCoordinator::Reply&) {
    released.wait();  // never answers while the client waits
  });
  CoordinatorClientOptions options;
  options.timeout = std::chrono::milliseconds(200);
  auto client = NewClient(fake.url(), options);
  const Result<TransactionReply> commit = client->Commit("order-42", false);
  const Result<v1::Transaction> get = client->Get("order-42");
  release.set_value();
  EXPECT_EQ(commit.status().code(), StatusCode::kUnknownOutcome) << commit.status().ToString();
  EXPECT_FALSE(commit.status().NothingHappened());
  EXPECT_NE(commit.status().message().find("no reply"), std::string::npos);
  EXPECT_EQ(get.status().code(), StatusCode::kUnavailable) << get.status().ToString();
}

TEST(CoordinatorClientTest, ConnectionsAreKeptAlive) {
  FakeCoordinator fake([](const FakeCoordinator::Request&, FakeCoordinator::Reply& reply) {
    reply.body = TransactionJson("order-42", "committed");
  });
  auto client = NewClient(fake.url());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(client->Get("order-42").ok());
  const auto requests = fake.requests();
  ASSERT_EQ(requests.size(), 5u);
  for (const auto& r : requests) EXPECT_EQ(r.client_port, requests[0].client_port);
}

TEST(CoordinatorClientTest, AReplyAboveTheLimitIsRefused) {
  FakeCoordinator fake([](const FakeCoordinator::Request&, FakeCoordinator::Reply& reply) {
    reply.body =
        TransactionJson("order-42", "committed", R"(,"pad":")" + std::string(4096, 'x') + "\"");
  });
  CoordinatorClientOptions options;
  options.max_reply_bytes = 1024;
  auto client = NewClient(fake.url(), options);
  EXPECT_EQ(client->Get("order-42").status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(client->Commit("order-42", false).status().code(), StatusCode::kUnknownOutcome);
}

// A raw HTTP server that answers each connection's first request with a keep-alive reply and
// then closes the connection: what a coordinator does when its keep-alive timeout passes.
class ClosingServer {
 public:
  ClosingServer() : socket_(Poco::Net::SocketAddress("127.0.0.1", 0)) {
    thread_ = std::thread([this] {
      for (int i = 0; i < 2; ++i) {
        try {
          Poco::Net::StreamSocket connection = socket_.acceptConnection();
          std::string request;
          char buffer[1024];
          while (request.find("\r\n\r\n") == std::string::npos) {
            const int n = connection.receiveBytes(buffer, sizeof buffer);
            if (n <= 0) break;
            request.append(buffer, static_cast<size_t>(n));
          }
          const std::string body = TransactionJson("order-42", "committed");
          const std::string reply =
              "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
              "Content-Length: " +
              std::to_string(body.size()) + "\r\n\r\n" + body;
          connection.sendBytes(reply.data(), static_cast<int>(reply.size()));
          connection.shutdown();
          connection.close();
          ++connections_;
        } catch (const Poco::Exception&) {
          // The client went away; the test's assertions tell what was missed.
        }
      }
    });
  }
  ~ClosingServer() {
    // Unblocks acceptConnection when a test failed before the second connection.
    for (int i = connections_; i < 2; ++i) {
      try {
        Poco::Net::StreamSocket unblock(socket_.address());
      } catch (const Poco::Exception&) {
      }
    }
    thread_.join();
  }

  int port() const { return socket_.address().port(); }
  int connections() const { return connections_; }

 private:
  Poco::Net::ServerSocket socket_;
  std::atomic<int> connections_{0};
  std::thread thread_;
};

TEST(CoordinatorClientTest, AKeptAliveConnectionClosedByTheServerIsReplacedForIdempotentCalls) {
  ClosingServer server;
  auto client = NewClient("http://127.0.0.1:" + std::to_string(server.port()));
  ASSERT_TRUE(client->Get("order-42").ok());
  // The pooled connection is closed by now (or will be when read); the second call must notice
  // and send again on a new connection rather than fail.
  Result<v1::Transaction> second = client->Get("order-42");
  EXPECT_TRUE(second.ok()) << second.status().ToString();
}

}  // namespace
}  // namespace txcoord::participant
