// The coordinator's HTTP front: a Poco HTTPServer with a bounded thread pool and queue, and a
// router over the transaction API (transaction_api.h), /healthz and /metrics.
//
//   /v1/...   the transaction API; needs `Authorization: Bearer <token>` when tokens are set
//             (401 UNAUTHENTICATED otherwise), whatever the path, so an unauthenticated client
//             learns nothing about which paths or gtids exist
//   /healthz  200 {"status":"ok"} when the store answers, 503 otherwise; no token
//   /metrics  Prometheus text (metrics.h); no token
// Every other path answers 404 and a wrong method 405, with the contract's error body
// {"error":{"code":...,"message":...}} (binary ErrorReply on Accept: application/x-protobuf).
//
// Overload, and why memory stays bounded:
//   - At most `max_threads` connections are served at once: a kept-alive connection holds its
//     thread until it closes or idles out (15 s), so the default is generous (128). Up to
//     `max_queued` more accepted connections wait for a thread. A connection beyond both gets
//     a canned `503 UNAVAILABLE` (contract body, Retry-After: 1, Connection: close) written by
//     the acceptor thread, and is closed: never a silent close. Further connections wait in
//     the kernel's listen backlog (256).
//   - At most `max_in_flight` /v1/ requests are handled at once (a `wait: true` begin holds
//     its thread for up to the transaction's timeout); one beyond gets 503 UNAVAILABLE with
//     Retry-After: 1 at once. Kept below max_threads, so /healthz and /metrics still answer
//     while the API is saturated.
//   - A request body is read into memory only up to `max_body_bytes` (413 TOO_LARGE beyond;
//     a declared Content-Length is checked before reading); Poco bounds request headers.
//   So the service holds at most max_threads requests, each with at most one body.
//
// Requests Poco cannot parse get Poco's own bare 400, without the contract's error body.
#pragma once

#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/ThreadPool.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "api_tokens.h"
#include "metrics.h"
#include "txcoord/coordinator/coordinator.h"
#include "txcoord/coordinator/log.h"
#include "txcoord/status.h"

namespace txcoord {
class RequestGate;
}  // namespace txcoord

namespace txcoord::service {

struct HttpServerOptions {
  int max_threads = 128;
  int max_queued = 128;
  int max_in_flight = 112;  // /v1/ requests at once; clamped to max_threads
  std::size_t max_body_bytes = 1024 * 1024;
  std::string software_version;  // the Server header, e.g. "txcoord/0.1.0"
};

// Binds and listens on `address` (port 0: the kernel picks one; read it from the socket).
// Errors say what to do: kUnavailable for an address in use or not available here.
// With `tls` (participant::NewServerContext), the socket speaks HTTPS: every accepted connection
// does the TLS handshake on its pool thread before its first request.
Result<Poco::Net::ServerSocket> ListenOn(const Poco::Net::SocketAddress& address,
                                         Poco::Net::Context::Ptr tls = nullptr);

// Thread-safety: Start and Stop are called from one thread; requests are served on the pool's
// threads and use `coordinator` and `log`, which are thread-safe.
class HttpService {
 public:
  // `coordinator` and `log` must outlive the service. `tokens` empty: no token needed.
  HttpService(coordinator::Coordinator& coordinator, coordinator::TransactionLog& log,
              ApiTokens tokens, const HttpServerOptions& options);
  ~HttpService();  // Stops if still running.

  HttpService(const HttpService&) = delete;
  HttpService& operator=(const HttpService&) = delete;

  // Starts accepting on `socket`, which ListenOn returned.
  void Start(const Poco::Net::ServerSocket& socket);

  // Stops accepting, lets the requests in progress finish and be answered, then shuts every
  // connection (idle kept-alive ones, requests still being received) and waits for the pool's
  // threads. Connections accepted but not yet picked up by a thread are closed unanswered; a
  // request that arrives meanwhile on a kept-alive connection gets 503.
  //
  // `before_waiting`, when given, runs once no new request is admitted and before waiting for
  // those in progress. main stops the Coordinator there: that answers `wait: true` requests at
  // once with their current, durable state (202), where they would otherwise hold the stop for
  // up to their transaction's timeout; commands already past their start finish their appends.
  // Blocks as long as the slowest request in progress.
  void Stop(const std::function<void()>& before_waiting = {});

  const HttpMetrics& metrics() const { return metrics_; }

 private:
  coordinator::Coordinator& coordinator_;
  coordinator::TransactionLog& log_;
  const ApiTokens tokens_;
  const HttpServerOptions options_;
  std::unique_ptr<RequestGate> gate_;
  HttpMetrics metrics_;
  Poco::ThreadPool pool_;  // declared before server_: the server uses it until destroyed
  std::unique_ptr<Poco::Net::HTTPServer> server_;
};

}  // namespace txcoord::service
