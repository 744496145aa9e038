// What the two example services share: flags, a small Poco HTTP server, SQLite helpers, and the
// SIGTERM wait. Example code: short on purpose, not a framework.
#pragma once

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
#include <signal.h>
#include <sqlite3.h>

#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace credit_limit {

// --name value pairs; anything else is an error with one line on stderr and exit code 2.
inline std::map<std::string, std::string> ParseFlags(
    int argc, char** argv, const std::map<std::string, std::string>& defaults,
    const std::string& usage) {
  std::map<std::string, std::string> flags = defaults;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help") {
      std::cout << usage;
      std::exit(0);
    }
    if (!arg.starts_with("--") || !defaults.contains(arg.substr(2)) || i + 1 >= argc) {
      std::cerr << argv[0] << ": bad flag " << arg << "; see --help" << std::endl;
      std::exit(2);
    }
    flags[arg.substr(2)] = argv[++i];
  }
  return flags;
}

struct Reply {
  int status = 200;
  std::string body;  // JSON, or text when content_type says so
  std::string content_type = "application/json";
};

using Route = std::function<Reply(const std::string& method, const std::string& path,
                                  const std::string& query, const std::string& body)>;

class Handler final : public Poco::Net::HTTPRequestHandler {
 public:
  explicit Handler(const Route& route) : route_(route) {}
  void handleRequest(Poco::Net::HTTPServerRequest& request,
                     Poco::Net::HTTPServerResponse& response) override {
    std::string body;
    Poco::StreamCopier::copyToString(request.stream(), body);
    const std::string& uri = request.getURI();
    const size_t q = uri.find('?');
    Reply reply;
    try {
      reply = route_(request.getMethod(), uri.substr(0, q),
                     q == std::string::npos ? "" : uri.substr(q + 1), body);
    } catch (const std::exception& e) {
      reply = {500, R"({"error":{"code":"UNAVAILABLE","message":"internal error"}})"};
      std::cerr << "request failed: " << e.what() << std::endl;
    }
    response.setStatus(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(reply.status));
    response.setContentType(reply.content_type);
    response.setContentLength64(static_cast<Poco::Int64>(reply.body.size()));
    response.send() << reply.body;
  }

 private:
  const Route& route_;
};

class Factory final : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  explicit Factory(const Route& route) : route_(route) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(
      const Poco::Net::HTTPServerRequest&) override {
    return new Handler(route_);
  }

 private:
  const Route& route_;
};

inline Reply Error(int status, const std::string& code, const std::string& message) {
  Poco::JSON::Object error;
  error.set("code", code);
  error.set("message", message);
  Poco::JSON::Object body;
  body.set("error", error);
  std::ostringstream out;
  body.stringify(out);
  return {status, out.str()};
}

inline std::string Json(const Poco::JSON::Object& object) {
  std::ostringstream out;
  object.stringify(out);
  return out.str();
}

inline Poco::JSON::Object::Ptr ParseObject(const std::string& body) {
  return Poco::JSON::Parser().parse(body).extract<Poco::JSON::Object::Ptr>();
}

inline void Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    const std::string why = err != nullptr ? err : "?";
    sqlite3_free(err);
    throw std::runtime_error(sql.substr(0, 60) + ": " + why);
  }
}

inline sqlite3* OpenDatabase(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
    throw std::runtime_error("cannot open " + path);
  }
  sqlite3_busy_timeout(db, 5000);
  Exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL");
  return db;
}

// Serves `route` on `listen` ("HOST:PORT", port 0 picks one), prints "<name> listening on
// HOST:PORT" on stdout, and blocks until SIGTERM or SIGINT. Returns 0.
inline int ServeUntilSignal(const std::string& name, const std::string& listen,
                            const Route& route) {
  const size_t colon = listen.rfind(':');
  Poco::Net::ServerSocket socket;
  try {
    socket.bind(
        Poco::Net::SocketAddress(listen.substr(0, colon),
                                 static_cast<Poco::UInt16>(std::stoi(listen.substr(colon + 1)))),
        true);
    socket.listen(64);
  } catch (const std::exception& e) {
    std::cerr << name << ": cannot listen on " << listen << ": " << e.what() << std::endl;
    return 1;
  }
  auto* params = new Poco::Net::HTTPServerParams;
  params->setMaxThreads(4);
  Poco::Net::HTTPServer server(new Factory(route), socket, params);
  server.start();
  std::cout << name << " listening on " << socket.address().toString() << std::endl;
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  int signal = 0;
  sigwait(&stop, &signal);
  server.stopAll(true);
  return 0;
}

// Call first in main: SIGTERM and SIGINT are then taken by ServeUntilSignal's sigwait only.
inline void BlockStopSignals() {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

}  // namespace credit_limit
