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
#include <istream>
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
constexpr std::streamsize kMaxDiscardBytes = 64 * 1024;
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
  response.setContentLength64(static_cast<Poco::UInt64>(body.size()));
  response.set("Cache-Control", "no-store");
  response.sendBuffer(body.data(), body.size());
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
// body, and what a vanished client throws while the reply is written.
class ContractHandler : public Poco::Net::HTTPRequestHandler {
 public:
  void handleRequest(HTTPServerRequest& request, HTTPServerResponse& response) final {
    try {
      Handle(request, response);
    } catch (const std::exception& e) {
      if (response.sent()) return;  // the client went away mid-reply; nothing left to tell it
      spdlog::error("{} {}: {}", request.getMethod(), RequestPath(request), e.what());
      response.setKeepAlive(false);
      SendError(request, response, HTTPResponse::HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
                "the coordinator failed to answer; retry, and see its log if this repeats");
    }
  }

 protected:
  virtual void Handle(HTTPServerRequest& request, HTTPServerResponse& response) = 0;
};

class HealthzHandler final : public ContractHandler {
 public:
  HealthzHandler(coordinator::TransactionLog& log, HealthLog& health_log)
      : log_(log), health_log_(health_log) {}

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

class ErrorHandler final : public ContractHandler {
 public:
  ErrorHandler(HTTPResponse::HTTPStatus status, std::string_view code, std::string message,
               std::string allow = {})
      : status_(status), code_(code), message_(std::move(message)), allow_(std::move(allow)) {}

 private:
  void Handle(HTTPServerRequest& request, HTTPServerResponse& response) override {
    if (!allow_.empty()) response.set("Allow", allow_);
    SendError(request, response, status_, code_, message_);
  }

  const HTTPResponse::HTTPStatus status_;
  const std::string_view code_;
  const std::string message_;
  const std::string allow_;
};

class Router final : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  explicit Router(coordinator::TransactionLog& log) : log_(log) {}

  Poco::Net::HTTPRequestHandler* createRequestHandler(const HTTPServerRequest& request) override {
    const std::string path = RequestPath(request);
    const std::string& method = request.getMethod();
    if (path == "/healthz") {
      if (method == HTTPRequest::HTTP_GET || method == HTTPRequest::HTTP_HEAD) {
        return new HealthzHandler(log_, health_log_);
      }
      return new ErrorHandler(HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "INVALID_ARGUMENT",
                              "method " + method + " is not allowed on /healthz; use GET",
                              "GET, HEAD");
    }
    std::string shown = path.substr(0, kMaxEchoedPathChars);
    return new ErrorHandler(
        HTTPResponse::HTTP_NOT_FOUND, "NOT_FOUND",
        "no endpoint " + method + " " + shown + "; this coordinator serves GET /healthz");
  }

 private:
  coordinator::TransactionLog& log_;
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
  server_ = std::make_unique<Poco::Net::HTTPServer>(new Router(log_), pool_, socket, params);
  server_->start();
}

void HttpService::Stop() {
  if (!server_) return;
  // false: each connection is shut down only once its request in progress has been answered.
  server_->stopAll(/*abortCurrent=*/false);
  pool_.joinAll();
  server_.reset();
}

}  // namespace txcoord::service
