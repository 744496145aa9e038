#include "http_server.h"

#include <Poco/Exception.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <istream>
#include <mutex>
#include <ostream>
#include <string_view>

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
// Unread request bodies up to this size are skipped to keep the connection; see DiscardBody.
constexpr std::streamsize kMaxDiscardBytes = std::streamsize{64} * 1024;
constexpr size_t kMaxEchoedPathChars = 200;

// Poco parses the next request of a kept-alive connection right where the handler stopped
// reading, so a body the handler ignores would be taken for the next request line. Read it
// away, or close the connection after the reply when it is too large to bother.
void DiscardBody(HTTPServerRequest& request, HTTPServerResponse& response) {
  // A request with neither length nor chunking has no body (RFC 9112 §6.3); Poco would wait for
  // the peer to close, so do not read it.
  if (!request.getChunkedTransferEncoding() &&
      !(request.hasContentLength() && request.getContentLength64() > 0)) {
    return;
  }
  std::istream& body = request.stream();
  body.ignore(kMaxDiscardBytes);
  if (body.peek() != std::char_traits<char>::eof()) response.setKeepAlive(false);
}

bool WantsProtobuf(const HTTPServerRequest& request) {
  return request.get("Accept", "").find("application/x-protobuf") != std::string::npos;
}

void SendBody(HTTPServerResponse& response, HTTPResponse::HTTPStatus status,
              std::string_view content_type, const std::string& body) {
  response.setStatusAndReason(status);
  response.setContentType(std::string(content_type));
  response.setContentLength64(static_cast<Poco::Int64>(body.size()));
  response.set("Cache-Control", "no-store");
  // Flushed here, not left to Poco, which flushes only when it destroys the response, after
  // the handler: by then HttpService::Stop may have shut the connection (see RequestGate).
  // For HEAD, Poco's stream drops the body and sends only the headers.
  std::ostream& out = response.send();
  out.write(body.data(), static_cast<std::streamsize>(body.size()));
  out.flush();
}

// The contract's error reply, JSON or (on request) binary protobuf.
void SendError(HTTPServerRequest& request, HTTPServerResponse& response,
               HTTPResponse::HTTPStatus status, std::string_view code, std::string message) {
  DiscardBody(request, response);
  v1::ErrorReply reply;
  reply.mutable_error()->set_code(std::string(code));
  reply.mutable_error()->set_message(std::move(message));
  if (WantsProtobuf(request)) {
    SendBody(response, status, "application/x-protobuf", reply.SerializeAsString());
  } else {
    SendBody(response, status, "application/json", MessageToJson(reply));
  }
}

std::string RequestPath(const HTTPServerRequest& request) {
  const std::string& uri = request.getURI();
  return uri.substr(0, uri.find('?'));
}

}  // namespace

// Admits requests until stopping begins and counts those in progress, so that Stop can wait for
// exactly the requests already admitted and then cut every connection. A request leaves when
// its handler is destroyed, after its reply was flushed (SendBody). Poco's own graceful stop
// (stopAll(false)) instead waits on every connection's lock, which is also held while a request
// is still being received, so one client that sent half a request would hold up the stop for
// the whole request timeout.
class RequestGate {
 public:
  // True when admitted: the request counts as in progress until Leave().
  bool Enter() {
    std::lock_guard lock(mu_);
    if (closed_) return false;
    ++in_progress_;
    return true;
  }

  void Leave() {
    std::lock_guard lock(mu_);
    if (--in_progress_ == 0) idle_cv_.notify_all();
  }

  // Admits no more requests, and waits until those in progress have left.
  void CloseAndWait() {
    std::unique_lock lock(mu_);
    closed_ = true;
    idle_cv_.wait(lock, [this] { return in_progress_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable idle_cv_;
  bool closed_ = false;  // GUARDED_BY(mu_)
  int in_progress_ = 0;  // GUARDED_BY(mu_)
};

namespace {

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
// body, and what a vanished client throws while the reply is written. While it exists, the
// request it serves counts as in progress at `gate` (when given).
class ContractHandler : public Poco::Net::HTTPRequestHandler {
 public:
  explicit ContractHandler(RequestGate* gate) : gate_(gate) {}
  ~ContractHandler() override {
    if (gate_ != nullptr) gate_->Leave();
  }

  void handleRequest(HTTPServerRequest& request, HTTPServerResponse& response) final {
    try {
      Handle(request, response);
    } catch (const std::exception& e) {
      if (response.sent()) return;  // the client went away mid-reply; nothing left to tell it
      spdlog::error("{} {}: {}", request.getMethod(), RequestPath(request), e.what());
      response.setKeepAlive(false);
      try {
        SendError(request, response, HTTPResponse::HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                  "the coordinator failed to answer; retry, and see its log if this repeats");
      } catch (const std::exception&) {
        // The connection is broken; Poco closes it.
      }
    }
  }

 protected:
  virtual void Handle(HTTPServerRequest& request, HTTPServerResponse& response) = 0;

 private:
  RequestGate* const gate_;
};

class HealthzHandler final : public ContractHandler {
 public:
  HealthzHandler(RequestGate* gate, coordinator::TransactionLog& log, HealthLog& health_log)
      : ContractHandler(gate), log_(log), health_log_(health_log) {}

 private:
  void Handle(HTTPServerRequest& request, HTTPServerResponse& response) override {
    const Status status = log_.Ping();
    health_log_.Report(status);
    if (!status.ok()) {
      // The details (paths, hosts) stay in the log: /healthz needs no token.
      SendError(request, response, HTTPResponse::HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                "the transaction store is unreachable; see the coordinator's log");
      return;
    }
    DiscardBody(request, response);
    // Not a schema message, so always JSON.
    SendBody(response, HTTPResponse::HTTP_OK, "application/json", R"({"status":"ok"})");
  }

  coordinator::TransactionLog& log_;
  HealthLog& health_log_;
};

struct ErrorAnswer {
  HTTPResponse::HTTPStatus status;
  std::string_view code;
  std::string message;
  std::string allow = {};  // the Allow header of a 405
  bool close_connection = false;
};

class ErrorHandler final : public ContractHandler {
 public:
  ErrorHandler(RequestGate* gate, ErrorAnswer answer)
      : ContractHandler(gate), answer_(std::move(answer)) {}

 private:
  void Handle(HTTPServerRequest& request, HTTPServerResponse& response) override {
    if (!answer_.allow.empty()) response.set("Allow", answer_.allow);
    if (answer_.close_connection) response.setKeepAlive(false);
    SendError(request, response, answer_.status, answer_.code, answer_.message);
  }

  const ErrorAnswer answer_;
};

class Router final : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  Router(coordinator::TransactionLog& log, RequestGate& gate) : log_(log), gate_(gate) {}

  Poco::Net::HTTPRequestHandler* createRequestHandler(const HTTPServerRequest& request) override {
    if (!gate_.Enter()) {
      // Stopping: answered without doing anything, so cutting it off costs nothing either.
      return new ErrorHandler(nullptr, {HTTPResponse::HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                                        "the coordinator is shutting down; retry shortly",
                                        /*allow=*/"", /*close_connection=*/true});
    }
    const std::string path = RequestPath(request);
    const std::string& method = request.getMethod();
    if (path == "/healthz") {
      if (method == HTTPRequest::HTTP_GET || method == HTTPRequest::HTTP_HEAD) {
        return new HealthzHandler(&gate_, log_, health_log_);
      }
      return new ErrorHandler(
          &gate_, {HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "INVALID_ARGUMENT",
                   "method " + method + " is not allowed on /healthz; use GET", "GET, HEAD"});
    }
    const std::string shown = path.substr(0, kMaxEchoedPathChars);
    return new ErrorHandler(
        &gate_, {HTTPResponse::HTTP_NOT_FOUND, "NOT_FOUND",
                 "no endpoint " + method + " " + shown + "; this coordinator serves GET /healthz"});
  }

 private:
  coordinator::TransactionLog& log_;
  RequestGate& gate_;
  HealthLog health_log_;
};

}  // namespace

Result<Poco::Net::ServerSocket> ListenOn(const Poco::Net::SocketAddress& address) {
  const std::string where = "cannot listen on " + address.toString();
  try {
    Poco::Net::ServerSocket socket;
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

HttpService::HttpService(coordinator::TransactionLog& log, const HttpServerOptions& options)
    : log_(log),
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
  server_ =
      std::make_unique<Poco::Net::HTTPServer>(new Router(log_, *gate_), pool_, socket, params);
  server_->start();
}

void HttpService::Stop() {
  if (!server_) return;
  server_->stop();         // closes the listening socket and the connections not yet picked up
  gate_->CloseAndWait();   // requests in progress finish and are answered
  server_->stopAll(true);  // then every connection is shut: idle ones, half-received requests
  pool_.joinAll();
  server_.reset();
}

}  // namespace txcoord::service
