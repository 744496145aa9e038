// A fake coordinator for unit tests of the SDK's client side: a real Poco HTTP server on a free
// loopback port whose replies a test scripts, and which records every request it got. The real
// coordinator service is tested elsewhere; this one only mimics the contract's replies.
#pragma once

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>

#include <functional>
#include <istream>
#include <map>
#include <memory>
#include <mutex>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

namespace txcoord::participant::testing {

class FakeCoordinator {
 public:
  struct Request {
    std::string method;
    std::string uri;
    std::map<std::string, std::string> headers;  // names as sent
    std::string body;
    int client_port = 0;  // tells connections apart

    std::string Header(const std::string& name) const {
      auto it = headers.find(name);
      return it == headers.end() ? "" : it->second;
    }
    bool Has(const std::string& name) const { return headers.count(name) > 0; }
  };
  struct Reply {
    int status = 200;
    std::string body = "{}";
  };
  // Called on a server thread for each request; may block (e.g. to make the client time out).
  using Script = std::function<void(const Request&, Reply&)>;

  explicit FakeCoordinator(Script script) : shared_(std::make_shared<Shared>()) {
    shared_->script = std::move(script);
    Poco::Net::ServerSocket socket(Poco::Net::SocketAddress("127.0.0.1", 0));
    port_ = socket.address().port();
    Poco::Net::HTTPServerParams::Ptr params = new Poco::Net::HTTPServerParams;
    params->setMaxThreads(8);
    params->setKeepAlive(true);
    server_ = std::make_unique<Poco::Net::HTTPServer>(new Factory(shared_), socket, params);
    server_->start();
  }
  ~FakeCoordinator() { server_->stopAll(/*abortCurrent=*/true); }

  FakeCoordinator(const FakeCoordinator&) = delete;
  FakeCoordinator& operator=(const FakeCoordinator&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

  std::vector<Request> requests() const {
    std::lock_guard lock(shared_->mu);
    return shared_->requests;
  }

 private:
  struct Shared {
    Script script;
    mutable std::mutex mu;
    std::vector<Request> requests;
  };

  class Handler : public Poco::Net::HTTPRequestHandler {
   public:
    explicit Handler(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}
    void handleRequest(Poco::Net::HTTPServerRequest& request,
                       Poco::Net::HTTPServerResponse& response) override {
      Request recorded;
      recorded.method = request.getMethod();
      recorded.uri = request.getURI();
      for (const auto& [name, value] : request) recorded.headers[name] = value;
      if (request.getChunkedTransferEncoding() ||
          (request.hasContentLength() && request.getContentLength64() > 0)) {
        std::ostringstream body;
        body << request.stream().rdbuf();
        recorded.body = body.str();
      }
      recorded.client_port = request.clientAddress().port();
      {
        std::lock_guard lock(shared_->mu);
        shared_->requests.push_back(recorded);
      }
      Reply reply;
      shared_->script(recorded, reply);
      response.setStatus(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(reply.status));
      response.setContentType("application/json");
      response.setContentLength64(static_cast<Poco::Int64>(reply.body.size()));
      response.send() << reply.body;
    }

   private:
    std::shared_ptr<Shared> shared_;
  };

  class Factory : public Poco::Net::HTTPRequestHandlerFactory {
   public:
    explicit Factory(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}
    Poco::Net::HTTPRequestHandler* createRequestHandler(
        const Poco::Net::HTTPServerRequest&) override {
      return new Handler(shared_);
    }

   private:
    std::shared_ptr<Shared> shared_;
  };

  std::shared_ptr<Shared> shared_;
  int port_ = 0;
  std::unique_ptr<Poco::Net::HTTPServer> server_;
};

// A transaction record as the coordinator would send it.
inline std::string TransactionJson(const std::string& gtid, const std::string& state,
                                   const std::string& extra = "") {
  return R"({"gtid":")" + gtid + R"(","protocol":"2pc","state":")" + state +
         R"(","created_at":"2024-05-01T10:00:00Z","updated_at":"2024-05-01T10:00:01Z",)" +
         R"("deadline":"2024-05-01T10:00:10Z","reason":"","branches":[)" +
         R"({"branch_id":"debit","url":"http://127.0.0.1:7001/bank","state":"prepared",)" +
         R"("attempts":1,"last_error":""}],"steps":[])" + extra + "}";
}

inline std::string ErrorJson(const std::string& code, const std::string& message) {
  return R"({"error":{"code":")" + code + R"(","message":")" + message + R"("}})";
}

}  // namespace txcoord::participant::testing
