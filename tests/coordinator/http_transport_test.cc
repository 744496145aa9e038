// The HTTP callback transport (contract section 4) against real servers in the test process: a
// Poco HTTPServer with a configurable answer for the ordinary cases, and a raw TCP server for
// what a well-behaved HTTP server never does (close a kept-alive connection as a request
// arrives, trickle a reply byte by byte). Timing bounds are generous: they tell "bounded" from
// "hangs", never fast from slow.
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/NameValueCollection.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/StreamCopier.h>
#include <Poco/ThreadPool.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <ctime>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "txcoord/coordinator/transport.h"
#include "txcoord/participant/signature.h"
#include "txcoord/testing/poll.h"

namespace txcoord::coordinator {

// Readable failure messages (found by argument-dependent lookup, hence outside the unnamed
// namespace).
void PrintTo(ReplyClass reply_class, std::ostream* os) {
  switch (reply_class) {
    case ReplyClass::kSuccess:
      *os << "kSuccess";
      return;
    case ReplyClass::kRefused:
      *os << "kRefused";
      return;
    case ReplyClass::kInProgress:
      *os << "kInProgress";
      return;
    case ReplyClass::kTransient:
      *os << "kTransient";
      return;
  }
  *os << "ReplyClass(" << static_cast<int>(reply_class) << ")";
}

namespace {

using namespace std::chrono_literals;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using ::txcoord::testing::PollUntil;

// A participant that closed its end makes the transport's next write raise SIGPIPE; txcoord's
// main ignores it, and so must this test process.
[[maybe_unused]] const bool kSigpipeIgnored = [] {
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

// ---------------------------------------------------------------------------------------------
// A Poco HTTP server whose answer each test chooses.

struct SeenRequest {
  std::string method;
  std::string uri;  // as on the request line
  Poco::Net::NameValueCollection headers;
  std::string body;
  std::string client;  // the client's address:port, one per connection
};

struct Answer {
  int status = 200;
  std::string body;
  // Waits this long, or until the server stops, before answering.
  std::chrono::milliseconds delay{0};
};

class TestServer {
 public:
  using Behaviour = std::function<Answer(const SeenRequest&)>;

  explicit TestServer(Behaviour behaviour, std::chrono::milliseconds keep_alive = 10s)
      : behaviour_(std::move(behaviour)),
        threads_(2, 64),
        socket_(Poco::Net::SocketAddress("127.0.0.1", 0)) {
    Poco::Net::HTTPServerParams::Ptr params = new Poco::Net::HTTPServerParams;
    params->setKeepAlive(true);
    params->setKeepAliveTimeout(
        Poco::Timespan(std::chrono::duration_cast<std::chrono::microseconds>(keep_alive).count()));
    params->setMaxKeepAliveRequests(100000);
    params->setMaxThreads(64);
    params->setMaxQueued(1000);
    server_ =
        std::make_unique<Poco::Net::HTTPServer>(new Factory(*this), threads_, socket_, params);
    server_->start();
  }

  ~TestServer() {
    Release();
    server_->stopAll(true);
    // Handlers still running use this object; wait for them before it goes.
    EXPECT_TRUE(PollUntil(10s, 5ms, [this] { return active_handlers_.load() == 0; }));
    server_.reset();
    threads_.joinAll();
  }

  std::string Url(std::string_view path) const {
    return "http://127.0.0.1:" + std::to_string(socket_.address().port()) + std::string(path);
  }

  // Ends every delay now.
  void Release() {
    {
      std::lock_guard lock(mu_);
      released_ = true;
    }
    release_cv_.notify_all();
  }

  std::vector<SeenRequest> Requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  size_t RequestCount() const {
    std::lock_guard lock(mu_);
    return requests_.size();
  }
  // Distinct connections seen, told apart by the client's port.
  size_t Connections() const {
    std::lock_guard lock(mu_);
    std::set<std::string> clients;
    for (const SeenRequest& r : requests_) clients.insert(r.client);
    return clients.size();
  }

 private:
  class Handler : public Poco::Net::HTTPRequestHandler {
   public:
    explicit Handler(TestServer& server) : server_(server) {}
    void handleRequest(Poco::Net::HTTPServerRequest& request,
                       Poco::Net::HTTPServerResponse& response) override {
      ++server_.active_handlers_;
      server_.Handle(request, response);
      --server_.active_handlers_;
    }

   private:
    TestServer& server_;
  };

  class Factory : public Poco::Net::HTTPRequestHandlerFactory {
   public:
    explicit Factory(TestServer& server) : server_(server) {}
    Poco::Net::HTTPRequestHandler* createRequestHandler(
        const Poco::Net::HTTPServerRequest&) override {
      return new Handler(server_);
    }

   private:
    TestServer& server_;
  };

  void Handle(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) {
    SeenRequest seen;
    seen.method = request.getMethod();
    seen.uri = request.getURI();
    for (const auto& [name, value] : request) seen.headers.add(name, value);
    Poco::StreamCopier::copyToString(request.stream(), seen.body);
    seen.client = request.clientAddress().toString();
    {
      std::lock_guard lock(mu_);
      requests_.push_back(seen);
    }
    const Answer answer = behaviour_(seen);
    if (answer.delay > 0ms) {
      std::unique_lock lock(mu_);
      release_cv_.wait_for(lock, answer.delay, [this] { return released_; });
    }
    response.setStatusAndReason(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(answer.status),
                                "Test");
    response.setContentType("text/plain");
    response.setContentLength64(static_cast<Poco::Int64>(answer.body.size()));
    response.send().write(answer.body.data(), static_cast<std::streamsize>(answer.body.size()));
  }

  const Behaviour behaviour_;
  Poco::ThreadPool threads_;
  Poco::Net::ServerSocket socket_;
  std::unique_ptr<Poco::Net::HTTPServer> server_;
  std::atomic<int> active_handlers_{0};

  mutable std::mutex mu_;
  std::condition_variable release_cv_;
  bool released_ = false;              // GUARDED_BY(mu_)
  std::vector<SeenRequest> requests_;  // GUARDED_BY(mu_)
};

// ---------------------------------------------------------------------------------------------
// A raw TCP server: the test writes the bytes of each connection itself.

class RawServer {
 public:
  // Runs once per accepted connection, on a thread of its own; `index` counts from 0.
  using ConnectionFn = std::function<void(RawServer&, Poco::Net::StreamSocket&, int index)>;

  explicit RawServer(ConnectionFn on_connection)
      : on_connection_(std::move(on_connection)),
        socket_(Poco::Net::SocketAddress("127.0.0.1", 0)),
        accept_thread_([this] { AcceptLoop(); }) {}

  ~RawServer() {
    stopping_ = true;
    accept_thread_.join();
    for (std::thread& t : connection_threads_) t.join();
  }

  std::string Url(std::string_view path) const {
    return "http://127.0.0.1:" + std::to_string(socket_.address().port()) + std::string(path);
  }
  bool stopping() const { return stopping_; }
  int connections() const { return connections_; }
  std::vector<std::string> Requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }

  // Reads one request (head, and a body of Content-Length bytes) and records it; "" when the
  // client closed the connection first.
  std::string ReadRequest(Poco::Net::StreamSocket& socket) {
    std::string data;
    char buf[4096];
    size_t head_end;
    while ((head_end = data.find("\r\n\r\n")) == std::string::npos) {
      const int n = socket.receiveBytes(buf, sizeof buf);
      if (n <= 0) return "";
      data.append(buf, static_cast<size_t>(n));
    }
    std::string head = data.substr(0, head_end);
    std::transform(head.begin(), head.end(), head.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    size_t length = 0;
    if (size_t at = head.find("content-length:"); at != std::string::npos) {
      length = std::stoul(head.substr(at + 15));
    }
    while (data.size() < head_end + 4 + length) {
      const int n = socket.receiveBytes(buf, sizeof buf);
      if (n <= 0) return "";
      data.append(buf, static_cast<size_t>(n));
    }
    std::lock_guard lock(mu_);
    requests_.push_back(data);
    return data;
  }

  static void Reply200(Poco::Net::StreamSocket& socket, std::string_view body) {
    const std::string reply = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                              "\r\n\r\n" + std::string(body);
    socket.sendBytes(reply.data(), static_cast<int>(reply.size()));
  }

 private:
  void AcceptLoop() {
    int index = 0;
    while (!stopping_) {
      if (!socket_.poll(Poco::Timespan(0, 20'000), Poco::Net::Socket::SELECT_READ)) continue;
      Poco::Net::StreamSocket connection = socket_.acceptConnection();
      connection.setReceiveTimeout(Poco::Timespan(10, 0));
      ++connections_;
      connection_threads_.emplace_back([this, connection, index]() mutable {
        try {
          on_connection_(*this, connection, index);
        } catch (const std::exception&) {
          // The client went away; the test's assertions say whether that was expected.
        }
      });
      ++index;
    }
  }

  const ConnectionFn on_connection_;
  Poco::Net::ServerSocket socket_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  mutable std::mutex mu_;
  std::vector<std::string> requests_;            // GUARDED_BY(mu_)
  std::vector<std::thread> connection_threads_;  // accept thread only, then the destructor
  std::thread accept_thread_;                    // last: starts when the rest exists
};

// ---------------------------------------------------------------------------------------------
// Helpers.

CallbackRequest Request(std::string url) {
  CallbackRequest request;
  request.url = std::move(url);
  request.gtid = "order-42";
  request.branch_id = "debit";
  request.phase = "prepare";
  request.attempt = 1;
  request.body = R"({"gtid":"order-42","branch_id":"debit","phase":"prepare","payload":{}})";
  request.timeout = 5000ms;
  return request;
}

struct Completed {
  CallbackReply reply;
  std::thread::id thread;
};

// Sends and waits for `done`; nullopt when it did not come within `limit`.
std::optional<Completed> SendAndWait(CallbackTransport& transport, CallbackRequest request,
                                     std::chrono::seconds limit = 30s) {
  auto promise = std::make_shared<std::promise<Completed>>();
  std::future<Completed> future = promise->get_future();
  transport.Send(std::move(request), [promise](CallbackReply reply) {
    promise->set_value(Completed{std::move(reply), std::this_thread::get_id()});
  });
  if (future.wait_for(limit) != std::future_status::ready) return std::nullopt;
  return future.get();
}

std::unique_ptr<CallbackTransport> Transport(int threads = 4, std::string secret = "",
                                             size_t max_reply_bytes = 64 * 1024) {
  HttpTransportOptions options;
  options.threads = threads;
  options.max_idle_per_host = 16;
  options.callback_secret = std::move(secret);
  options.max_reply_bytes = max_reply_bytes;
  return NewHttpTransport(options);
}

// True when every byte is printable ASCII or part of a multi-byte UTF-8 character.
bool IsOneLine(std::string_view text) {
  return std::none_of(text.begin(), text.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c < 0x20 || c == 0x7F;
  });
}

// ---------------------------------------------------------------------------------------------
// Tests.

TEST(ClassifyHttpStatus, FollowsTheContractTable) {
  for (int status : {200, 201, 202, 204, 299}) {
    EXPECT_EQ(ClassifyHttpStatus(status), ReplyClass::kSuccess) << status;
  }
  EXPECT_EQ(ClassifyHttpStatus(409), ReplyClass::kRefused);
  EXPECT_EQ(ClassifyHttpStatus(425), ReplyClass::kInProgress);
  for (int status : {0, 100, 199, 300, 301, 400, 401, 404, 408, 410, 424, 426, 429, 500, 503}) {
    EXPECT_EQ(ClassifyHttpStatus(status), ReplyClass::kTransient) << status;
  }
}

TEST(HttpTransport, RepliesAreClassifiedWithStatusAndBodyInTheDetail) {
  TestServer server([](const SeenRequest& r) {
    const int status = std::stoi(r.uri.substr(r.uri.rfind('/') + 1));
    return Answer{status, status == 204 ? "" : "said " + std::to_string(status)};
  });
  auto transport = Transport();
  struct Case {
    int status;
    ReplyClass reply_class;
    std::string detail;
  };
  const Case cases[] = {{200, ReplyClass::kSuccess, "HTTP 200: said 200"},
                        {204, ReplyClass::kSuccess, "HTTP 204"},
                        {409, ReplyClass::kRefused, "HTTP 409: said 409"},
                        {425, ReplyClass::kInProgress, "HTTP 425: said 425"},
                        {500, ReplyClass::kTransient, "HTTP 500: said 500"},
                        {404, ReplyClass::kTransient, "HTTP 404: said 404"}};
  for (const Case& c : cases) {
    auto done = SendAndWait(*transport, Request(server.Url("/s/" + std::to_string(c.status))));
    ASSERT_TRUE(done.has_value()) << c.status;
    EXPECT_EQ(done->reply.reply_class, c.reply_class) << c.status;
    EXPECT_EQ(done->reply.http_status, c.status);
    EXPECT_EQ(done->reply.detail, c.detail);
    EXPECT_NE(done->thread, std::this_thread::get_id()) << "done must not run inside Send";
  }
}

TEST(HttpTransport, SendsTheContractHeadersTheSignatureAndTheBodyByteForByte) {
  const std::string secret = "s3cret-for-the-test";
  TestServer server([](const SeenRequest&) { return Answer{200, "ok"}; });
  auto transport = Transport(4, secret);

  CallbackRequest request = Request(server.Url("/bank/prepare?shard=3&x=a%2Fb"));
  request.gtid = "order-42";
  request.branch_id = "debit";
  request.phase = "prepare";
  request.attempt = 3;
  // Multi-byte UTF-8, an escaped newline and spaces: all must arrive unchanged.
  request.body = "{\"gtid\":\"order-42\",\"payload\":{\"note\":\"caf\xC3\xA9 \\n  x\"}}";
  request.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  request.extra_headers = {{"Tx-One-Phase", "true"}};
  const int64_t before = static_cast<int64_t>(std::time(nullptr));
  auto done = SendAndWait(*transport, request);
  const int64_t after = static_cast<int64_t>(std::time(nullptr));
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->reply.reply_class, ReplyClass::kSuccess) << done->reply.detail;

  const auto seen = server.Requests();
  ASSERT_EQ(seen.size(), 1u);
  const SeenRequest& r = seen[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.uri, "/bank/prepare?shard=3&x=a%2Fb");
  EXPECT_EQ(r.body, request.body);
  EXPECT_EQ(r.headers.get("Content-Type", ""), "application/json");
  EXPECT_EQ(r.headers.get("Tx-Gtid", ""), "order-42");
  EXPECT_EQ(r.headers.get("Tx-Branch-Id", ""), "debit");
  EXPECT_EQ(r.headers.get("Tx-Phase", ""), "prepare");
  EXPECT_EQ(r.headers.get("Tx-Attempt", ""), "3");
  EXPECT_EQ(r.headers.get("traceparent", ""), request.traceparent);
  EXPECT_EQ(r.headers.get("Tx-One-Phase", ""), "true");

  const std::string timestamp = r.headers.get("Tx-Timestamp", "");
  ASSERT_FALSE(timestamp.empty());
  const int64_t ts = std::stoll(timestamp);
  EXPECT_GE(ts, before);
  EXPECT_LE(ts, after);
  const std::string signature = r.headers.get("Tx-Signature", "");
  EXPECT_THAT(signature, StartsWith("sha256="));
  // Verified over the request-target as the server saw it on the request line.
  const Status verified = participant::VerifyCallback(secret, timestamp, signature, r.uri, r.body,
                                                      static_cast<int64_t>(std::time(nullptr)));
  EXPECT_TRUE(verified.ok()) << verified.ToString();
  EXPECT_FALSE(participant::VerifyCallback("another secret", timestamp, signature, r.uri, r.body,
                                           static_cast<int64_t>(std::time(nullptr)))
                   .ok());
}

TEST(HttpTransport, WithoutSecretOrTraceparentThoseHeadersAreAbsent) {
  TestServer server([](const SeenRequest&) { return Answer{200, ""}; });
  auto transport = Transport();
  ASSERT_TRUE(SendAndWait(*transport, Request(server.Url("/bank/commit"))).has_value());
  const auto seen = server.Requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_FALSE(seen[0].headers.has("Tx-Timestamp"));
  EXPECT_FALSE(seen[0].headers.has("Tx-Signature"));
  EXPECT_FALSE(seen[0].headers.has("traceparent"));
  EXPECT_EQ(seen[0].uri, "/bank/commit");
}

TEST(HttpTransport, ExtraHeadersCannotReplaceTheContractHeaders) {
  TestServer server([](const SeenRequest&) { return Answer{200, ""}; });
  auto transport = Transport();
  CallbackRequest request = Request(server.Url("/x"));
  request.attempt = 2;
  request.extra_headers = {{"Tx-Attempt", "99"}, {"Tx-Gtid", "other"}};
  ASSERT_TRUE(SendAndWait(*transport, request).has_value());
  const auto seen = server.Requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].headers.get("Tx-Attempt", ""), "2");
  EXPECT_EQ(seen[0].headers.get("Tx-Gtid", ""), "order-42");
}

TEST(HttpTransport, AHeaderValueWithANewlineIsRefusedNotSent) {
  TestServer server([](const SeenRequest&) { return Answer{200, ""}; });
  auto transport = Transport();
  CallbackRequest request = Request(server.Url("/x"));
  request.extra_headers = {{"X-Note", "a\r\nInjected: yes"}};
  auto done = SendAndWait(*transport, request);
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->reply.reply_class, ReplyClass::kTransient);
  EXPECT_THAT(done->reply.detail, HasSubstr("X-Note"));
  EXPECT_EQ(server.RequestCount(), 0u);
}

TEST(HttpTransport, AHandlerSlowerThanTheTimeoutIsTransientAndDoneComesInBoundedTime) {
  TestServer server([](const SeenRequest&) { return Answer{200, "late", 60s}; });
  auto transport = Transport();
  CallbackRequest request = Request(server.Url("/slow"));
  request.timeout = 300ms;
  const auto start = std::chrono::steady_clock::now();
  auto done = SendAndWait(*transport, request, 20s);
  ASSERT_TRUE(done.has_value()) << "done never came";
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_EQ(done->reply.reply_class, ReplyClass::kTransient);
  EXPECT_EQ(done->reply.http_status, 0);
  EXPECT_EQ(done->reply.detail, "no reply within 300 ms");
}

// Socket timeouts bound each recv; a server trickling a byte every 50 ms would never trip a
// 500 ms one. The budget is for the whole call.
TEST(HttpTransport, AReplyTrickledByteByByteIsCutAtTheWholeCallBudget) {
  RawServer server([](RawServer& s, Poco::Net::StreamSocket& socket, int) {
    if (s.ReadRequest(socket).empty()) return;
    const std::string start = "HTTP/1.1 200 OK\r\nX-Slow: ";
    socket.sendBytes(start.data(), static_cast<int>(start.size()));
    for (int i = 0; i < 400 && !s.stopping(); ++i) {  // 20 s at most
      std::this_thread::sleep_for(50ms);
      socket.sendBytes("a", 1);
    }
  });
  auto transport = Transport();
  CallbackRequest request = Request(server.Url("/trickle"));
  request.timeout = 500ms;
  const auto start = std::chrono::steady_clock::now();
  auto done = SendAndWait(*transport, request, 30s);
  ASSERT_TRUE(done.has_value());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 8s);
  EXPECT_EQ(done->reply.reply_class, ReplyClass::kTransient);
  EXPECT_EQ(done->reply.detail, "no reply within 500 ms");
}

// The socket timeouts are set when a connection is made, not on every call; a kept-alive
// connection must still give each call its own budget, longer or shorter than the last one's.
TEST(HttpTransport, AReusedConnectionGivesEachCallItsOwnTimeout) {
  TestServer server([](const SeenRequest& seen) {
    return seen.uri == "/slow" ? Answer{200, "slow", 700ms} : Answer{200, "fast"};
  });
  auto transport = Transport(1);
  CallbackRequest fast = Request(server.Url("/fast"));
  fast.timeout = 200ms;
  auto first = SendAndWait(*transport, fast);
  ASSERT_TRUE(first.has_value());
  ASSERT_EQ(first->reply.reply_class, ReplyClass::kSuccess) << first->reply.detail;

  CallbackRequest patient = Request(server.Url("/slow"));
  patient.timeout = 10s;
  auto second = SendAndWait(*transport, patient, 30s);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->reply.reply_class, ReplyClass::kSuccess) << second->reply.detail;
  EXPECT_EQ(second->reply.detail, "HTTP 200: slow");
  EXPECT_EQ(server.Connections(), 1u) << "the second call did not reuse the connection";

  CallbackRequest hurried = Request(server.Url("/slow"));
  hurried.timeout = 300ms;
  const auto start = std::chrono::steady_clock::now();
  auto third = SendAndWait(*transport, hurried, 30s);
  ASSERT_TRUE(third.has_value());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 8s);
  EXPECT_EQ(third->reply.reply_class, ReplyClass::kTransient);
  EXPECT_EQ(third->reply.detail, "no reply within 300 ms");
  EXPECT_EQ(server.Connections(), 1u) << "the third call did not reuse the connection";
}

TEST(HttpTransport, NobodyListeningIsConnectionRefused) {
  int port;
  {
    Poco::Net::ServerSocket probe(Poco::Net::SocketAddress("127.0.0.1", 0));
    port = probe.address().port();
  }  // Closed: nobody listens there now.
  auto transport = Transport();
  auto done =
      SendAndWait(*transport, Request("http://127.0.0.1:" + std::to_string(port) + "/bank"));
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->reply.reply_class, ReplyClass::kTransient);
  EXPECT_EQ(done->reply.http_status, 0);
  EXPECT_THAT(done->reply.detail, HasSubstr("connection refused"));
}

TEST(HttpTransport, SequentialCallsReuseOneKeptAliveConnection) {
  TestServer server([](const SeenRequest&) { return Answer{200, "ok"}; });
  auto transport = Transport();
  for (int i = 0; i < 20; ++i) {
    auto done = SendAndWait(*transport, Request(server.Url("/bank/prepare")));
    ASSERT_TRUE(done.has_value());
    ASSERT_EQ(done->reply.reply_class, ReplyClass::kSuccess) << done->reply.detail;
  }
  EXPECT_EQ(server.RequestCount(), 20u);
  EXPECT_EQ(server.Connections(), 1u);
}

TEST(HttpTransport, ACallGoesToTheMostRecentlyIdleWorker) {
  // One call at a time, with a pause after each so that its worker is idle again: the most
  // recently idle worker, whose cache is warm, takes the next call. A shared condition variable
  // hands them round all 16 workers instead. Two threads are allowed for a worker that was slow
  // to get back to idle once on a loaded machine.
  TestServer server([](const SeenRequest&) { return Answer{200, "ok"}; });
  auto transport = Transport(16);
  std::set<std::thread::id> workers;
  for (int i = 0; i < 30; ++i) {
    auto done = SendAndWait(*transport, Request(server.Url("/bank/prepare")));
    ASSERT_TRUE(done.has_value());
    ASSERT_EQ(done->reply.reply_class, ReplyClass::kSuccess) << done->reply.detail;
    workers.insert(done->thread);
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_LE(workers.size(), 2u);
}

// A chain of calls, each sent by the last one's `done` with SendNext: the worker that ran a
// `done` runs the next call itself. With Send, another worker would be woken for each one.
TEST(HttpTransport, ACallSentNextFromADoneRunsOnThatDonesWorker) {
  TestServer server([](const SeenRequest&) { return Answer{200, "ok"}; });
  auto transport = Transport(8);
  struct Chain {
    std::mutex mu;
    std::vector<std::thread::id> threads;
    std::promise<void> finished;
  };
  auto chain = std::make_shared<Chain>();
  std::function<void(CallbackReply)> step = [&, chain](CallbackReply reply) {
    EXPECT_EQ(reply.reply_class, ReplyClass::kSuccess) << reply.detail;
    std::lock_guard lock(chain->mu);
    chain->threads.push_back(std::this_thread::get_id());
    if (chain->threads.size() == 10) {
      chain->finished.set_value();
      return;
    }
    transport->SendNext(Request(server.Url("/step")), step);
  };
  transport->Send(Request(server.Url("/step")), step);
  ASSERT_EQ(chain->finished.get_future().wait_for(30s), std::future_status::ready);
  std::lock_guard lock(chain->mu);
  EXPECT_EQ(std::set<std::thread::id>(chain->threads.begin(), chain->threads.end()).size(), 1u);
  EXPECT_EQ(server.RequestCount(), 10u);
}

TEST(HttpTransport, ASecondCallSentNextFromOneDoneGoesToAnotherWorker) {
  TestServer server([](const SeenRequest&) { return Answer{200, "ok"}; });
  auto transport = Transport(8);
  auto first = std::make_shared<std::promise<Completed>>();
  auto second = std::make_shared<std::promise<Completed>>();
  transport->Send(Request(server.Url("/a")), [&, first, second](CallbackReply) {
    for (const auto& p : {first, second}) {
      transport->SendNext(Request(server.Url("/b")), [p](CallbackReply reply) {
        p->set_value(Completed{std::move(reply), std::this_thread::get_id()});
      });
    }
    // Only the first waits for this `done` to return: the second is on its way meanwhile.
    std::this_thread::sleep_for(200ms);
  });
  auto a = first->get_future();
  auto b = second->get_future();
  ASSERT_EQ(b.wait_for(30s), std::future_status::ready);
  ASSERT_EQ(a.wait_for(30s), std::future_status::ready);
  EXPECT_NE(a.get().thread, b.get().thread);
}

TEST(HttpTransport, ACallSentNextIsRefusedWhenTheTransportStopsBeforeItRuns) {
  TestServer server([](const SeenRequest&) { return Answer{200, "ok"}; });
  auto transport = Transport(2);
  auto next = std::make_shared<std::promise<Completed>>();
  std::promise<void> handed;
  transport->Send(Request(server.Url("/a")), [&, next](CallbackReply) {
    transport->SendNext(Request(server.Url("/b")), [next](CallbackReply reply) {
      next->set_value(Completed{std::move(reply), std::this_thread::get_id()});
    });
    handed.set_value();
    std::this_thread::sleep_for(300ms);  // Shutdown begins meanwhile
  });
  handed.get_future().wait();
  transport->Shutdown();
  auto done = next->get_future();
  ASSERT_EQ(done.wait_for(30s), std::future_status::ready);
  const Completed c = done.get();
  EXPECT_EQ(c.reply.reply_class, ReplyClass::kTransient);
  EXPECT_NE(c.reply.detail.find("stopping"), std::string::npos) << c.reply.detail;
  EXPECT_EQ(server.RequestCount(), 1u);  // /b never went out
}

TEST(HttpTransport, AConnectionTheServerClosedWhileIdleIsNotUsedAgain) {
  TestServer server([](const SeenRequest&) { return Answer{200, "ok"}; }, 200ms);
  auto transport = Transport();
  auto first = SendAndWait(*transport, Request(server.Url("/a")));
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->reply.reply_class, ReplyClass::kSuccess);
  std::this_thread::sleep_for(1s);  // Past the server's keep-alive timeout: it closes.
  auto second = SendAndWait(*transport, Request(server.Url("/b")));
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->reply.reply_class, ReplyClass::kSuccess) << second->reply.detail;
  EXPECT_EQ(server.RequestCount(), 2u);
  EXPECT_EQ(server.Connections(), 2u);
}

// The race the idle check cannot see: the server closes a kept-alive connection just as the
// next request arrives on it. Retried once on a fresh connection, the same request unchanged.
TEST(HttpTransport, AReusedConnectionClosedBeforeAnyReplyIsRetriedOnceOnAFreshOne) {
  RawServer server([](RawServer& s, Poco::Net::StreamSocket& socket, int) {
    // On every connection: answer the first request, read the second and close unanswered.
    if (s.ReadRequest(socket).empty()) return;
    RawServer::Reply200(socket, "first");
    s.ReadRequest(socket);
    socket.close();
  });
  auto transport = Transport(1);
  auto first = SendAndWait(*transport, Request(server.Url("/bank/commit")));
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->reply.detail, "HTTP 200: first");
  CallbackRequest request = Request(server.Url("/bank/commit"));
  request.attempt = 4;
  auto second = SendAndWait(*transport, request);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->reply.reply_class, ReplyClass::kSuccess) << second->reply.detail;
  EXPECT_EQ(server.connections(), 2);
  const auto requests = server.Requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[1], requests[2]) << "the retry must be the same request, same Tx-Attempt";
  EXPECT_THAT(requests[2], HasSubstr("Tx-Attempt: 4\r\n"));
}

// On a fresh connection there is no stale-connection explanation: no retry, one request.
TEST(HttpTransport, AFreshConnectionClosedWithoutAReplyIsTransientAndNotRetried) {
  RawServer server([](RawServer& s, Poco::Net::StreamSocket& socket, int) {
    s.ReadRequest(socket);
    socket.close();
  });
  auto transport = Transport(1);
  auto done = SendAndWait(*transport, Request(server.Url("/bank/prepare")));
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->reply.reply_class, ReplyClass::kTransient);
  EXPECT_EQ(done->reply.detail, "connection closed without a reply");
  EXPECT_EQ(server.Requests().size(), 1u);
  EXPECT_EQ(server.connections(), 1);
}

TEST(HttpTransport, ManyConcurrentSendsEachCompleteExactlyOnceWithTheirOwnReply) {
  TestServer server([](const SeenRequest& r) {
    return Answer{200, r.headers.get("Tx-Branch-Id", "")};
  });
  auto transport = Transport(8);
  constexpr int kSenders = 5;
  constexpr int kPerSender = 100;
  constexpr int kCalls = kSenders * kPerSender;
  std::vector<std::atomic<int>> calls(kCalls);
  std::vector<std::string> details(kCalls);  // each slot written by its own done only
  std::atomic<int> completed{0};
  std::atomic<int> succeeded{0};
  std::vector<std::thread> senders;
  for (int s = 0; s < kSenders; ++s) {
    senders.emplace_back([&, s] {
      for (int i = 0; i < kPerSender; ++i) {
        const int id = s * kPerSender + i;
        CallbackRequest request = Request(server.Url("/bank/prepare"));
        request.branch_id = "b" + std::to_string(id);
        transport->Send(std::move(request), [&, id](CallbackReply reply) {
          if (calls[id]++ == 0) details[id] = reply.detail;
          if (reply.reply_class == ReplyClass::kSuccess) ++succeeded;
          ++completed;
        });
      }
    });
  }
  for (std::thread& t : senders) t.join();
  ASSERT_TRUE(PollUntil(60s, 5ms, [&] { return completed.load() >= kCalls; }))
      << completed.load() << " of " << kCalls << " completed";
  transport->Shutdown();  // Nothing may complete after this returns.
  EXPECT_EQ(completed.load(), kCalls);
  EXPECT_EQ(succeeded.load(), kCalls);
  for (int id = 0; id < kCalls; ++id) {
    EXPECT_EQ(calls[id].load(), 1) << id;
    EXPECT_EQ(details[id], "HTTP 200: b" + std::to_string(id)) << "a reply went to the wrong call";
  }
  EXPECT_LE(server.Connections(), 8u) << "at most one connection per worker";
}

TEST(HttpTransport, ShutdownCompletesQueuedCallsAndWaitsForTheOneInProgress) {
  TestServer server([](const SeenRequest& r) {
    return r.uri == "/block" ? Answer{200, "finished", 60s} : Answer{200, "ok"};
  });
  auto transport = Transport(1);  // One worker: everything after /block waits in the queue.

  std::promise<CallbackReply> blocked;
  transport->Send(Request(server.Url("/block")),
                  [&](CallbackReply reply) { blocked.set_value(std::move(reply)); });
  ASSERT_TRUE(PollUntil(10s, 2ms, [&] { return server.RequestCount() == 1; }));

  constexpr int kQueued = 5;
  std::mutex mu;
  std::vector<CallbackReply> queued_replies;
  std::set<std::thread::id> queued_threads;
  for (int i = 0; i < kQueued; ++i) {
    transport->Send(Request(server.Url("/queued")), [&](CallbackReply reply) {
      std::lock_guard lock(mu);
      queued_replies.push_back(std::move(reply));
      queued_threads.insert(std::this_thread::get_id());
    });
  }

  std::atomic<bool> shutdown_returned{false};
  std::thread stopper([&] {
    transport->Shutdown();
    shutdown_returned = true;
  });
  // The queued calls complete at once, without waiting for the call in progress.
  ASSERT_TRUE(PollUntil(10s, 2ms, [&] {
    std::lock_guard lock(mu);
    return queued_replies.size() == kQueued;
  }));
  EXPECT_FALSE(shutdown_returned.load()) << "Shutdown must wait for the call in progress";
  server.Release();
  stopper.join();

  // The call in progress finished normally, before Shutdown returned.
  std::future<CallbackReply> blocked_future = blocked.get_future();
  ASSERT_EQ(blocked_future.wait_for(0s), std::future_status::ready);
  EXPECT_EQ(blocked_future.get().detail, "HTTP 200: finished");
  {
    std::lock_guard lock(mu);
    for (const CallbackReply& reply : queued_replies) {
      EXPECT_EQ(reply.reply_class, ReplyClass::kTransient);
      EXPECT_EQ(reply.detail, "coordinator stopping");
    }
    EXPECT_FALSE(queued_threads.count(std::this_thread::get_id()));
    EXPECT_FALSE(queued_threads.count(stopper.get_id()));
  }
  EXPECT_EQ(server.RequestCount(), 1u) << "queued calls must not be sent after Shutdown";

  // After Shutdown: refused the same way, on a transport thread.
  auto late = SendAndWait(*transport, Request(server.Url("/late")));
  ASSERT_TRUE(late.has_value());
  EXPECT_EQ(late->reply.reply_class, ReplyClass::kTransient);
  EXPECT_EQ(late->reply.detail, "coordinator stopping");
  EXPECT_NE(late->thread, std::this_thread::get_id());
  transport->Shutdown();  // Again: harmless.
  EXPECT_EQ(server.RequestCount(), 1u);
}

TEST(HttpTransport, DestroyingTheTransportCompletesEveryCallExactlyOnce) {
  TestServer server([](const SeenRequest&) { return Answer{200, "ok", 20ms}; });
  constexpr int kCalls = 50;
  std::vector<std::atomic<int>> calls(kCalls);
  {
    auto transport = Transport(2);
    for (int id = 0; id < kCalls; ++id) {
      transport->Send(Request(server.Url("/x")), [&, id](CallbackReply) { ++calls[id]; });
    }
  }  // The destructor shuts down: some calls ran, the rest were refused.
  for (int id = 0; id < kCalls; ++id) EXPECT_EQ(calls[id].load(), 1) << id;
}

TEST(HttpTransport, AnOversizedReplyIsCutInTheDetailAndItsConnectionNotReused) {
  TestServer server([](const SeenRequest& r) {
    return r.uri == "/big" ? Answer{500, std::string(1 << 20, 'x')} : Answer{200, "small"};
  });
  auto transport = Transport(1, "", 1024);
  auto big = SendAndWait(*transport, Request(server.Url("/big")));
  ASSERT_TRUE(big.has_value());
  EXPECT_EQ(big->reply.reply_class, ReplyClass::kTransient);
  EXPECT_EQ(big->reply.http_status, 500);
  EXPECT_LE(big->reply.detail.size(), 300u);
  EXPECT_THAT(big->reply.detail, StartsWith("HTTP 500: xxxxxxxx"));
  EXPECT_THAT(big->reply.detail, EndsWith("..."));
  // The rest of the big body was never read, so that connection cannot carry another request.
  auto next = SendAndWait(*transport, Request(server.Url("/next")));
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->reply.detail, "HTTP 200: small");
  EXPECT_EQ(server.Connections(), 2u);
}

TEST(HttpTransport, TheDetailIsOnePrintableLineWithoutTheSecret) {
  const std::string secret = "do-not-leak-me";
  TestServer server([&](const SeenRequest&) {
    return Answer{409, "no\r\n\tfunds\x01\x7f for " + secret + " caf\xC3\xA9 \xFF end\n"};
  });
  auto transport = Transport(1, secret);
  auto done = SendAndWait(*transport, Request(server.Url("/bank/prepare")));
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->reply.reply_class, ReplyClass::kRefused);
  const std::string& detail = done->reply.detail;
  EXPECT_TRUE(IsOneLine(detail)) << detail;
  EXPECT_THAT(detail, Not(HasSubstr(secret)));
  EXPECT_EQ(detail, "HTTP 409: no funds\\x01\\x7f for [redacted] caf\xC3\xA9 \\xff end");
}

TEST(HttpTransport, HttpsIsRefusedCleanly) {
  auto transport = Transport();
  auto done = SendAndWait(*transport, Request("https://127.0.0.1:1/bank/prepare"));
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->reply.reply_class, ReplyClass::kTransient);
  EXPECT_EQ(done->reply.http_status, 0);
  EXPECT_EQ(done->reply.detail, "https callbacks are not configured");
  EXPECT_NE(done->thread, std::this_thread::get_id());
}

TEST(HttpTransport, MalformedUrlsAreTransientWithAClearDetail) {
  auto transport = Transport();
  for (const char* url :
       {"", "not a url", "http://", "ftp://127.0.0.1/x", "http://127.0.0.1:99999/x",
        "http://user:pw@127.0.0.1:1/x", "http://127.0.0.1:1/a b", "//127.0.0.1:1/x"}) {
    auto done = SendAndWait(*transport, Request(url));
    ASSERT_TRUE(done.has_value()) << url;
    EXPECT_EQ(done->reply.reply_class, ReplyClass::kTransient) << url;
    EXPECT_THAT(done->reply.detail, StartsWith("malformed callback URL")) << url;
    EXPECT_THAT(done->reply.detail, Not(HasSubstr("pw"))) << url;
  }
}

}  // namespace
}  // namespace txcoord::coordinator
