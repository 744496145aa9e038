// The coordinator's HTTP front: a Poco HTTPServer with a bounded thread pool and a router.
//
// Served now: GET /healthz. Every other path answers 404, a wrong method 405, both with the
// contract's error body {"error":{"code":...,"message":...}} (binary ErrorReply when the client
// sends Accept: application/x-protobuf).
//
// Overload: at most `max_threads` connections are served at once (a kept-alive connection holds
// its thread until it closes or idles out) and `max_queued` more wait. Beyond that Poco's
// TCPServer closes new connections without an answer; the contract's 429/503 for overload is
// left to the issue that adds the transaction API.
//
// Requests Poco cannot parse get Poco's own bare 400, without the contract's error body.
#pragma once

#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/ThreadPool.h>

#include <memory>
#include <string>

#include "txcoord/coordinator/log.h"
#include "txcoord/status.h"

namespace txcoord::service {

class RequestGate;

struct HttpServerOptions {
  int max_threads = 32;
  int max_queued = 128;
  std::string software_version;  // the Server header, e.g. "txcoord/0.1.0"
};

// Binds and listens on `address` (port 0: the kernel picks one; read it from the socket).
// Errors say what to do: kUnavailable for an address in use or not available here.
Result<Poco::Net::ServerSocket> ListenOn(const Poco::Net::SocketAddress& address);

// Thread-safety: Start and Stop are called from one thread; requests are served on the pool's
// threads and only read `log`, which is thread-safe.
class HttpService {
 public:
  // `log` must outlive the service.
  HttpService(coordinator::TransactionLog& log, const HttpServerOptions& options);
  ~HttpService();  // Stops if still running.

  HttpService(const HttpService&) = delete;
  HttpService& operator=(const HttpService&) = delete;

  // Starts accepting on `socket`, which ListenOn returned.
  void Start(const Poco::Net::ServerSocket& socket);

  // Stops accepting, lets the requests in progress finish and be answered, then shuts every
  // connection (idle kept-alive ones, requests still being received) and waits for the pool's
  // threads. Connections accepted but not yet picked up by a thread are closed unanswered; a
  // request that arrives meanwhile on a kept-alive connection gets 503. Blocks as long as the
  // slowest request in progress.
  void Stop();

 private:
  coordinator::TransactionLog& log_;
  const HttpServerOptions options_;
  std::unique_ptr<RequestGate> gate_;
  Poco::ThreadPool pool_;  // declared before server_: the server uses it until destroyed
  std::unique_ptr<Poco::Net::HTTPServer> server_;
};

}  // namespace txcoord::service
