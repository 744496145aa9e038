// CallbackServer: the embeddable HTTP server that receives the coordinator's callbacks (contract
// section 4) and hands them to BranchHandlers, plus a few routes of the application's own.
//
//   server.AddHandler("/bank", &bank);            // branch url: http://127.0.0.1:PORT/bank
//   server.AddSagaStep("/credit/reserve", "/credit/release", &reserve);  // a saga step's
//                                                 // action and compensate urls
//   server.AddRoute("GET", "/balance", [&](const HttpRequest& req, HttpResponse& res) {...});
//   Result<int> port = server.Start("127.0.0.1:0");
//
// A callback is `POST {base_path}/{phase}` with phase prepare, commit, abort, can-commit or
// pre-commit, or `POST {action_path}` / `POST {compensate_path}` of a saga step (phase action or
// compensate; when both paths are the same, the body's phase says which). The server checks, in
// this order, and answers with the contract's error body {"error":{"code":...,"message":...}}:
//   404 NOT_FOUND         no handler for the base path, or an unknown phase, or no saga step at
//                         the path; 405 for another method
//   413 TOO_LARGE         a body above max_body_bytes (not read; the connection is closed)
//   401 UNAUTHENTICATED   when secrets are configured: Tx-Timestamp/Tx-Signature missing, forged,
//                         or more than max_skew_seconds off (VerifyCallbackAny, signature.h)
//   400 INVALID_ARGUMENT  the body is not a Callback (fields a coordinator adds are ignored),
//                         a bad gtid or branch_id, a body phase that differs from the path's
//                         (for a saga step whose two paths are the same: a phase other than
//                         action or compensate), a
//                         missing Tx-Gtid / Tx-Branch-Id / Tx-Phase header or one that differs
//                         from the body, a Tx-Attempt that is not a positive integer, or a
//                         Tx-One-Phase other than "true"/"false" or on a phase other than commit
// then calls the handler and answers its PhaseResult: 200 {"result":"done"}, 409 CONFLICT,
// 425 IN_PROGRESS, 503 UNAVAILABLE, 500 INTERNAL (the last four with the handler's message).
// A handler that throws is answered 500 with a one-line message and the server carries on.
//
// Threads: at most max_threads connections are served at once (a kept-alive connection holds its
// thread until it closes or idles out) and max_queued more wait; beyond that new connections
// are closed unanswered, which the coordinator treats as a transient failure and retries.
//
// Thread-safety: AddHandler, AddSagaStep and AddRoute only before Start (they fail afterwards);
// Start and Stop from one thread. Handlers and routes are called concurrently from the server's
// threads, also for the same branch, and must be thread-safe. They must outlive the server (or
// Stop()).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "txcoord/participant/handler.h"
#include "txcoord/participant/signature.h"
#include "txcoord/participant/tls.h"
#include "txcoord/status.h"

namespace txcoord::participant {

// A request to an application route: the body is read completely (up to max_body_bytes).
struct HttpRequest {
  std::string method;
  std::string path;   // without the query
  std::string query;  // after '?', undecoded; may be empty
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // The first header with this name (case-insensitive), or "" when absent.
  std::string Header(std::string_view name) const;
  // The first query parameter with this name, percent-decoded, or "" when absent.
  std::string QueryParam(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;

  // Sets the contract's error body {"error":{"code":..,"message":..}} and the status.
  void SetError(int http_status, std::string_view code, std::string_view message);
};

using Route = std::function<void(const HttpRequest& request, HttpResponse& response)>;

struct CallbackServerOptions {
  int max_threads = 16;
  int max_queued = 64;
  // Larger callback or route bodies are refused with 413.
  size_t max_body_bytes = 1024 * 1024;
  // When not empty, every callback must be signed with one of these (rotation: list old and
  // new); see signature.h. Application routes are not checked.
  std::vector<std::string> callback_secrets = {};
  int64_t max_skew_seconds = kDefaultMaxSkewSeconds;
  // Unix seconds for the skew check; the system clock when empty (tests inject one).
  std::function<int64_t()> clock = {};
  // An idle kept-alive connection is closed after this long (it holds a thread meanwhile).
  std::chrono::seconds keep_alive_timeout{15};
  // Bounds receiving one request and sending its reply.
  std::chrono::seconds request_timeout{30};
  // HTTPS when cert_file is set (tls.h); with client_ca_file, only a coordinator presenting a
  // certificate signed by that CA (txcoord --callback-cert) can connect.
  TlsServerFiles tls = {};
};

namespace internal {
// A saga step's path: its handler and the phase the path serves; nullopt when the step's action
// and compensate paths are the same (the body's phase decides). CallbackServer's, not for use.
struct SagaStepRoute {
  SagaStepHandler* handler = nullptr;
  std::optional<Phase> phase;
};
}  // namespace internal

class CallbackServer {
 public:
  explicit CallbackServer(CallbackServerOptions options = {});
  ~CallbackServer();  // Stop()s.

  CallbackServer(const CallbackServer&) = delete;
  CallbackServer& operator=(const CallbackServer&) = delete;

  // Routes POST {base_path}/{phase} to `handler`. base_path is "/" followed by one or more
  // segments of [A-Za-z0-9._~-] separated by "/", without a trailing "/" (e.g. "/bank",
  // "/v1/bank"). kInvalidArgument for a bad path, kAlreadyExists for a duplicate, kConflict after
  // Start. `handler` is not owned.
  Status AddHandler(std::string base_path, BranchHandler* handler);

  // Routes a saga step: POST action_path to handler->Action and POST compensate_path to
  // handler->Compensate. The step's urls in the begin request are then
  // http://HOST:PORT{action_path} and http://HOST:PORT{compensate_path} (a query after the path
  // is allowed in them and ignored by the routing). The two paths may be the same; then the
  // body's phase (action or compensate) picks the method. Paths follow AddHandler's rule for
  // base paths and match exactly. kInvalidArgument for a bad path or one under a handler's base
  // path, kAlreadyExists for a path already taken by another saga step or by a route (of any
  // method), kConflict after Start. `handler` is not owned; one handler may serve many steps.
  Status AddSagaStep(std::string action_path, std::string compensate_path,
                     SagaStepHandler* handler);

  // An application route: exact method and path (no query). A route may not sit under a
  // handler's base path nor on a saga step's path. Exceptions from `route` are answered 500.
  // Same errors as AddHandler.
  Status AddRoute(std::string method, std::string path, Route route);

  // Binds `address` ("127.0.0.1:0" picks a free port) and serves. Returns the bound port.
  // kUnavailable when the address cannot be bound; kConflict when already started.
  Result<int> Start(const std::string& address);

  // Stops accepting, lets requests in progress finish and be answered, closes every connection
  // and joins the threads. Idempotent. After Stop the server cannot be started again.
  void Stop();

  int port() const { return port_; }

 private:
  class Impl;
  const CallbackServerOptions options_;
  std::map<std::string, BranchHandler*> handlers_;               // base path -> handler
  std::map<std::string, internal::SagaStepRoute> saga_steps_;    // exact path -> step
  std::map<std::pair<std::string, std::string>, Route> routes_;  // (method, path) -> route
  std::unique_ptr<Impl> impl_;                                   // set by Start
  int port_ = 0;
  bool stopped_ = false;
};

}  // namespace txcoord::participant
