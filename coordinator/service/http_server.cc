#include "http_server.h"

#include <Poco/Exception.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/SecureServerSocket.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Net/TCPServer.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <string_view>
#include <utility>
#include <variant>

#include "api_request.h"
#include "http_reply.h"
#include "transaction_api.h"
#include "txcoord/participant/server_socket.h"
#include "txcoord/request_gate.h"
#include "txcoord/schemas/ids.h"
#include "txcoord/schemas/json.h"
#include "txcoord/v1/api.pb.h"

namespace txcoord::service {
namespace {

using Poco::Net::HTTPRequest;
using Poco::Net::HTTPResponse;
using Poco::Net::HTTPServerRequest;
using Poco::Net::HTTPServerResponse;

constexpr int kListenBacklog = 256;
// An idle kept-alive connection holds a pool thread, so it is let go fairly soon.
constexpr int kKeepAliveTimeoutS = 15;
constexpr int kMaxKeepAliveRequests = 10000;
// Bounds reading one request and writing its reply: a stalled client frees its thread.
constexpr int kRequestTimeoutS = 30;
constexpr int kThreadIdleS = 60;
// What the acceptor reads and drops from a refused connection before closing it; see
// OverloadFilter.
constexpr size_t kMaxRefusedDrainBytes = 16 * 1024;

constexpr std::string_view kMetricsType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace

namespace {

// Counts /v1/ requests in progress against a limit. Lock-free: it is taken on every request.
class InFlightLimit {
 public:
  explicit InFlightLimit(int limit) : limit_(limit) {}

  bool TryAcquire() {
    if (in_flight_.fetch_add(1, std::memory_order_acq_rel) < limit_) return true;
    in_flight_.fetch_sub(1, std::memory_order_acq_rel);
    return false;
  }
  void Release() { in_flight_.fetch_sub(1, std::memory_order_acq_rel); }

 private:
  const int limit_;
  std::atomic<int> in_flight_{0};
};

// Refuses, in the acceptor thread, a connection that Poco's dispatcher would otherwise close
// without a word: it drops a connection when its queue already holds max_queued ones (all
// threads busy, since an idle thread would have taken them). The filter runs just before that
// check, and the acceptor is the only thread that adds to the queue, so "queue full now" means
// "would be dropped" (the queue can only shrink in between, which at worst refuses one early).
//
// The refused client gets a canned 503 with the contract's body and Connection: close. It is
// written without blocking (a new socket's send buffer is empty); then the write side is shut
// and what the client already sent is read away, so that closing does not turn into a reset
// that could discard the 503 at the client. Bytes the client sends after the close still cause
// a reset; a client that reads the reply it was sent still sees it.
class OverloadFilter final : public Poco::Net::TCPServerConnectionFilter {
 public:
  OverloadFilter(const Poco::Net::TCPServer& server, int max_queued, HttpMetrics& metrics)
      : server_(server), max_queued_(max_queued), metrics_(metrics), reply_(CannedReply()) {}

  bool accept(const Poco::Net::StreamSocket& socket) override {
    if (server_.queuedConnections() < max_queued_) return true;
    metrics_.CountRejected();
    const int fd = socket.impl()->sockfd();
    // Best effort: whatever fails here, the connection is closed, as Poco would have done.
    if (::send(fd, reply_.data(), reply_.size(), MSG_DONTWAIT | MSG_NOSIGNAL) > 0) {
      ::shutdown(fd, SHUT_WR);
    }
    char sink[4096];
    for (size_t drained = 0; drained < kMaxRefusedDrainBytes;) {
      const ssize_t n = ::recv(fd, sink, sizeof sink, MSG_DONTWAIT);
      if (n <= 0) break;
      drained += static_cast<size_t>(n);
    }
    if (!warned_.exchange(true)) {
      spdlog::warn(
          "overloaded: all connection threads are busy and {} connections wait; new "
          "connections get 503 (see txcoord_http_rejected_total; raise --max-threads or "
          "--max-queued if this persists)",
          max_queued_);
    }
    return false;
  }

 private:
  static std::string CannedReply() {
    v1::ErrorReply error;
    error.mutable_error()->set_code("UNAVAILABLE");
    error.mutable_error()->set_message(
        "the coordinator is overloaded: every connection thread is busy and the queue of "
        "waiting connections is full; retry shortly");
    const std::string body = MessageToJson(error);
    return "HTTP/1.1 503 Service Unavailable\r\n"
           "Content-Type: application/json\r\n"
           "Content-Length: " +
           std::to_string(body.size()) +
           "\r\n"
           "Retry-After: 1\r\n"
           "Cache-Control: no-store\r\n"
           "Connection: close\r\n"
           "\r\n" +
           body;
  }

  const Poco::Net::TCPServer& server_;
  const int max_queued_;
  HttpMetrics& metrics_;
  const std::string reply_;
  std::atomic<bool> warned_{false};  // the first refusal is logged, not every one
};

// Shared by the handlers; logs the store's health when it changes rather than on every probe,
// since a load balancer may ask every second.
class HealthLog {
 public:
  void Report(const Status& status) {
    const bool ok = status.ok();
    if (healthy_.exchange(ok) == ok) return;
    if (ok) {
      spdlog::info("store reachable again");
    } else {
      spdlog::warn("store unreachable, /healthz answers 503: {}", status.ToString());
    }
  }

 private:
  std::atomic<bool> healthy_{true};
};

// A handler that catches what Poco would otherwise turn into a bare 500 without the contract's
// body, and what a vanished client throws while the reply is written. It counts the reply in
// the metrics just before the reply is flushed (Exchange::before_reply). While it exists, the
// request it serves counts as in progress at `gate` (when given).
class ContractHandler : public Poco::Net::HTTPRequestHandler {
 public:
  ContractHandler(RequestGate* gate, HttpMetrics& metrics) : gate_(gate), metrics_(metrics) {}
  ~ContractHandler() override {
    if (gate_ != nullptr) gate_->Leave();
  }

  void handleRequest(HTTPServerRequest& request, HTTPServerResponse& response) final {
    Exchange exchange{request, response, [this](int status) {
                        metrics_.CountReply(status);
                        BeforeReply();
                      }};
    try {
      Handle(exchange);
    } catch (const std::exception& e) {
      if (response.sent()) return;  // the client went away mid-reply; nothing left to tell it
      spdlog::error("{} {}: {}", request.getMethod(), PrintableForMessage(RequestPath(request)),
                    e.what());
      try {
        SendError(exchange,
                  {HTTPResponse::HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                   "the coordinator failed to answer; retry, and see its log if this repeats",
                   /*allow=*/"", /*close_connection=*/true});
      } catch (const std::exception&) {
        // The connection is broken; Poco closes it.
      }
    }
  }

 protected:
  virtual void Handle(Exchange& exchange) = 0;
  // Runs once the reply is decided, just before it is flushed; at most once per request.
  virtual void BeforeReply() {}

 private:
  RequestGate* const gate_;
  HttpMetrics& metrics_;
};

class HealthzHandler final : public ContractHandler {
 public:
  HealthzHandler(RequestGate* gate, HttpMetrics& metrics, coordinator::Coordinator& coordinator,
                 HealthLog& health_log)
      : ContractHandler(gate, metrics), coordinator_(coordinator), health_log_(health_log) {}

 private:
  void Handle(Exchange& exchange) override {
    const Status status = coordinator_.Ping();
    health_log_.Report(status);
    if (!status.ok()) {
      // The details (paths, hosts) stay in the log: /healthz needs no token.
      SendError(exchange, {HTTPResponse::HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                           "the transaction store is unreachable; see the coordinator's log"});
      return;
    }
    DiscardBody(exchange);
    // Not a schema message, so always JSON.
    SendBody(exchange, HTTPResponse::HTTP_OK, kJsonType, R"({"status":"ok"})");
  }

  coordinator::Coordinator& coordinator_;
  HealthLog& health_log_;
};

class MetricsHandler final : public ContractHandler {
 public:
  MetricsHandler(RequestGate* gate, HttpMetrics& metrics, coordinator::Coordinator& coordinator,
                 coordinator::TransactionLog& log)
      : ContractHandler(gate, metrics),
        gate_(*gate),
        http_metrics_(metrics),
        coordinator_(coordinator),
        log_(log) {}

 private:
  void Handle(Exchange& exchange) override {
    DiscardBody(exchange);
    MetricsSnapshot snapshot;
    snapshot.coordinator = coordinator_.counters();
    snapshot.log = log_.Stats();
    snapshot.requests_in_progress = gate_.in_progress();
    SendBody(exchange, HTTPResponse::HTTP_OK, kMetricsType, RenderMetrics(snapshot, http_metrics_));
  }

  RequestGate& gate_;
  HttpMetrics& http_metrics_;
  coordinator::Coordinator& coordinator_;
  coordinator::TransactionLog& log_;
};

class ApiHandler final : public ContractHandler {
 public:
  // Holds one slot of `in_flight`, taken by the router, until its reply is about to leave (so
  // that a client's next request never meets its own finished one), or until destroyed.
  ApiHandler(RequestGate* gate, HttpMetrics& metrics, InFlightLimit& in_flight,
             coordinator::Coordinator& coordinator, const ApiOptions& options, ApiRoute route)
      : ContractHandler(gate, metrics),
        in_flight_(in_flight),
        coordinator_(coordinator),
        options_(options),
        route_(std::move(route)) {}
  ~ApiHandler() override { BeforeReply(); }

 private:
  void Handle(Exchange& exchange) override { ServeApi(coordinator_, options_, route_, exchange); }

  void BeforeReply() override {
    if (!released_) in_flight_.Release();
    released_ = true;
  }

  bool released_ = false;
  InFlightLimit& in_flight_;
  coordinator::Coordinator& coordinator_;
  const ApiOptions& options_;
  const ApiRoute route_;
};

class ErrorHandler final : public ContractHandler {
 public:
  ErrorHandler(RequestGate* gate, HttpMetrics& metrics, ErrorAnswer answer)
      : ContractHandler(gate, metrics), answer_(std::move(answer)) {}

 private:
  void Handle(Exchange& exchange) override { SendError(exchange, answer_); }

  const ErrorAnswer answer_;
};

class Router final : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  Router(coordinator::Coordinator& coordinator, coordinator::TransactionLog& log,
         const ApiTokens& tokens, RequestGate& gate, HttpMetrics& metrics,
         const HttpServerOptions& options)
      : coordinator_(coordinator),
        log_(log),
        tokens_(tokens),
        gate_(gate),
        metrics_(metrics),
        in_flight_(std::min(options.max_in_flight, options.max_threads)),
        api_options_{.max_body_bytes = options.max_body_bytes} {}

  Poco::Net::HTTPRequestHandler* createRequestHandler(const HTTPServerRequest& request) override {
    if (!gate_.Enter()) {
      // Stopping: answered without doing anything, so cutting it off costs nothing either.
      return new ErrorHandler(nullptr, metrics_,
                              {HTTPResponse::HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                               "the coordinator is shutting down; retry shortly",
                               /*allow=*/"", /*close_connection=*/true});
    }
    const std::string path = RequestPath(request);
    const std::string& method = request.getMethod();
    const bool get = method == HTTPRequest::HTTP_GET || method == HTTPRequest::HTTP_HEAD;
    if (path == "/healthz" || path == "/metrics") {
      if (!get) {
        return Error({HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "INVALID_ARGUMENT",
                      "method " + PrintableForMessage(method, 20) + " is not allowed on " + path +
                          "; use GET",
                      "GET, HEAD"});
      }
      if (path == "/healthz")
        return new HealthzHandler(&gate_, metrics_, coordinator_, health_log_);
      return new MetricsHandler(&gate_, metrics_, coordinator_, log_);
    }
    if (IsApiPath(path)) {
      if (!tokens_.Verify(request.get("Authorization", ""))) {
        return Error({HTTPResponse::HTTP_UNAUTHORIZED, "UNAUTHENTICATED",
                      "this coordinator needs an API token: send the header "
                      "\"Authorization: Bearer <token>\" with a token from its --token-file"});
      }
      auto route = MatchApiRoute(method, path);
      if (auto* error = std::get_if<ErrorAnswer>(&route)) return Error(std::move(*error));
      if (!in_flight_.TryAcquire()) {
        metrics_.CountRejected();
        return Error({HTTPResponse::HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                      "the coordinator is overloaded: too many requests in progress; retry "
                      "shortly"});
      }
      return new ApiHandler(&gate_, metrics_, in_flight_, coordinator_, api_options_,
                            std::get<ApiRoute>(std::move(route)));
    }
    return Error({HTTPResponse::HTTP_NOT_FOUND, "NOT_FOUND",
                  "no endpoint " + PrintableForMessage(method, 20) + " " +
                      PrintableForMessage(path) +
                      "; this coordinator serves /v1/transactions, /healthz and /metrics"});
  }

 private:
  ContractHandler* Error(ErrorAnswer answer) {
    return new ErrorHandler(&gate_, metrics_, std::move(answer));
  }

  coordinator::Coordinator& coordinator_;
  coordinator::TransactionLog& log_;
  const ApiTokens& tokens_;
  RequestGate& gate_;
  HttpMetrics& metrics_;
  InFlightLimit in_flight_;
  const ApiOptions api_options_;
  HealthLog health_log_;
};

}  // namespace

Result<Poco::Net::ServerSocket> ListenOn(const Poco::Net::SocketAddress& address,
                                         Poco::Net::Context::Ptr tls) {
  const std::string where = "cannot listen on " + address.toString();
  try {
    Poco::Net::ServerSocket socket = participant::NewPlainServerSocket();
    if (!tls.isNull()) socket = Poco::Net::SecureServerSocket(tls);
    // SO_REUSEADDR lets a restarted coordinator bind while its old connections sit in
    // TIME_WAIT. Not SO_REUSEPORT: that would let a second process share the port silently.
    socket.bind(address, /*reuseAddress=*/true, /*reusePort=*/false);
    socket.listen(kListenBacklog);
    return socket;
  } catch (const Poco::Exception& e) {
    switch (e.code()) {
      case EADDRINUSE:
        return Status::Unavailable(where +
                                   ": the address is already in use; stop the process "
                                   "using it or choose another --listen");
      case EACCES:
        return Status::Unavailable(where +
                                   ": permission denied; use a port above 1023 or "
                                   "grant the capability to bind low ports");
      case EADDRNOTAVAIL:
        return Status::Unavailable(where +
                                   ": the address does not belong to this machine; "
                                   "use 127.0.0.1, 0.0.0.0 or a local address");
      default:
        return Status::Unavailable(where + ": " + e.displayText());
    }
  }
}

HttpService::HttpService(coordinator::Coordinator& coordinator, coordinator::TransactionLog& log,
                         ApiTokens tokens, const HttpServerOptions& options)
    : coordinator_(coordinator),
      log_(log),
      tokens_(std::move(tokens)),
      options_(options),
      gate_(std::make_unique<RequestGate>()),
      pool_(/*minCapacity=*/std::min(2, options.max_threads),
            /*maxCapacity=*/options.max_threads, /*idleTime=*/kThreadIdleS) {}

HttpService::~HttpService() { Stop(); }

void HttpService::Start(const Poco::Net::ServerSocket& socket) {
  Poco::Net::HTTPServerParams::Ptr params = new Poco::Net::HTTPServerParams;
  params->setMaxThreads(options_.max_threads);
  params->setMaxQueued(options_.max_queued);
  params->setThreadIdleTime(Poco::Timespan(kThreadIdleS, 0));
  params->setKeepAlive(true);
  params->setKeepAliveTimeout(Poco::Timespan(kKeepAliveTimeoutS, 0));
  params->setMaxKeepAliveRequests(kMaxKeepAliveRequests);
  params->setTimeout(Poco::Timespan(kRequestTimeoutS, 0));
  params->setSoftwareVersion(options_.software_version);
  server_ = std::make_unique<Poco::Net::HTTPServer>(
      new Router(coordinator_, log_, tokens_, *gate_, metrics_, options_), pool_, socket, params);
  server_->setConnectionFilter(new OverloadFilter(*server_, options_.max_queued, metrics_));
  server_->start();
}

void HttpService::Stop(const std::function<void()>& before_waiting) {
  if (!server_) return;
  server_->stop();  // closes the listening socket and the connections not yet picked up
  gate_->Close();
  if (before_waiting) before_waiting();
  gate_->WaitIdle();       // requests in progress finish and are answered
  server_->stopAll(true);  // then every connection is shut: idle ones, half-received requests
  pool_.joinAll();
  server_.reset();
}

}  // namespace txcoord::service
