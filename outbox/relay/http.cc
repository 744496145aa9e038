#include "http.h"

#include <Poco/Exception.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/SecureServerSocket.h>

#include <ostream>

namespace txcoord::relay {
namespace {

using Poco::Net::HTTPResponse;
using Poco::Net::HTTPServerRequest;
using Poco::Net::HTTPServerResponse;

void Send(HTTPServerResponse& response, HTTPResponse::HTTPStatus status,
          const std::string& content_type, const std::string& body) {
  response.setStatusAndReason(status);
  response.setContentType(content_type);
  response.setContentLength64(static_cast<Poco::Int64>(body.size()));
  response.set("Cache-Control", "no-store");
  response.setKeepAlive(false);
  std::ostream& out = response.send();
  out.write(body.data(), static_cast<std::streamsize>(body.size()));
  out.flush();
}

void SendError(HTTPServerResponse& response, HTTPResponse::HTTPStatus status,
               const std::string& code, const std::string& message) {
  Send(response, status, "application/json",
       "{\"error\":{\"code\":\"" + code + "\",\"message\":\"" + message + "\"}}");
}

class Handler final : public Poco::Net::HTTPRequestHandler {
 public:
  explicit Handler(const outbox::Relay& relay) : relay_(relay) {}
  void handleRequest(HTTPServerRequest& request, HTTPServerResponse& response) override {
    const std::string path = request.getURI().substr(0, request.getURI().find('?'));
    if (path != "/healthz" && path != "/metrics") {
      SendError(response, HTTPResponse::HTTP_NOT_FOUND, "NOT_FOUND",
                "no such path; txrelay serves GET /healthz and GET /metrics");
      return;
    }
    if (request.getMethod() != "GET" && request.getMethod() != "HEAD") {
      response.set("Allow", "GET, HEAD");
      SendError(response, HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "INVALID_ARGUMENT", "use GET");
      return;
    }
    const std::vector<outbox::SourceStatus> statuses = relay_.Statuses();
    if (path == "/metrics") {
      Send(response, HTTPResponse::HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
           outbox::PrometheusText(statuses));
      return;
    }
    std::string detail;
    const bool healthy = outbox::Healthy(statuses, &detail);
    Send(response, healthy ? HTTPResponse::HTTP_OK : HTTPResponse::HTTP_SERVICE_UNAVAILABLE,
         "application/json", detail);
  }

 private:
  const outbox::Relay& relay_;
};

class Factory final : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  explicit Factory(const outbox::Relay& relay) : relay_(relay) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(const HTTPServerRequest&) override {
    return new Handler(relay_);
  }

 private:
  const outbox::Relay& relay_;
};

}  // namespace

Result<Poco::Net::ServerSocket> ListenOn(const Poco::Net::SocketAddress& address,
                                         Poco::Net::Context::Ptr tls) {
  try {
    Poco::Net::ServerSocket socket;
    if (!tls.isNull()) socket = Poco::Net::SecureServerSocket(tls);
    socket.bind(address, /*reuseAddress=*/true);
    socket.listen(64);
    return socket;
  } catch (const Poco::Exception& e) {
    return Status::Unavailable("cannot listen on " + address.toString() + ": " + e.displayText() +
                               "; pick a free port with --listen HOST:PORT (port 0: any)");
  }
}

StatusServer::StatusServer(const outbox::Relay& relay) : relay_(relay), pool_(1, 4) {}

StatusServer::~StatusServer() { Stop(); }

void StatusServer::Start(const Poco::Net::ServerSocket& socket) {
  auto* params = new Poco::Net::HTTPServerParams;
  params->setMaxThreads(4);
  params->setMaxQueued(16);
  params->setKeepAlive(false);
  params->setTimeout(Poco::Timespan(10, 0));
  server_ = std::make_unique<Poco::Net::HTTPServer>(new Factory(relay_), pool_, socket, params);
  server_->start();
}

void StatusServer::Stop() {
  if (server_ == nullptr) return;
  server_->stopAll(true);
  server_.reset();
  pool_.joinAll();
}

}  // namespace txcoord::relay
