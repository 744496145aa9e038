// The coordinator's one seam to participants: sending a callback (contract section 4) and
// classifying the reply. The engines never see HTTP; they see a CallbackReply.
//
// Thread-safety: Send may be called from any thread concurrently. `done` runs on a transport
// thread, never inside Send, exactly once per Send, also when the transport shuts down. `done`
// must not throw (an exception from it is swallowed) and must not call Shutdown or destroy the
// transport (both wait for the transport's threads, one of which is running `done`).
#pragma once

#include <Poco/Net/Context.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace txcoord::coordinator {

// What a participant's reply means (contract section 4's table).
enum class ReplyClass {
  kSuccess,     // any 2xx: vote yes, or the phase is done
  kRefused,     // 409: vote no / business failure; never retried for a first phase
  kInProgress,  // 425: still working; retried at the normal interval, no backoff growth
  kTransient,   // anything else, a timeout, a refused or broken connection: retried with backoff
};

// The reply class of an HTTP status code.
ReplyClass ClassifyHttpStatus(int http_status);

struct CallbackRequest {
  std::string url;  // absolute http(s) URL to POST to: {branch url}/{phase}, or a saga step's URL
  std::string gtid;
  std::string branch_id;    // for saga steps, the step_id
  std::string phase;        // "prepare", "commit", "abort", ...
  int attempt = 1;          // Tx-Attempt, 1-based
  std::string body;         // the serialized JSON Callback body, sent byte for byte
  std::string traceparent;  // sent as `traceparent` when not empty
  // Further headers, e.g. {"Tx-One-Phase", "true"}.
  std::vector<std::pair<std::string, std::string>> extra_headers;
  // Whole-call budget: connect, send, and read the reply. Past it the call is kTransient
  // "no reply within N ms". It starts when a transport thread takes the call, not while the call
  // waits in the queue.
  std::chrono::milliseconds timeout{5000};
};

struct CallbackReply {
  ReplyClass reply_class = ReplyClass::kTransient;
  int http_status = 0;  // 0 when no HTTP reply arrived
  // For a person and for the record's last_error, one line, at most ~300 bytes, never a secret:
  // "HTTP 500: <start of the body>", "no reply within 3000 ms", "connection refused".
  std::string detail;
};

class CallbackTransport {
 public:
  virtual ~CallbackTransport() = default;
  virtual void Send(CallbackRequest request, std::function<void(CallbackReply)> done) = 0;
  // Send, for a call made from inside a `done` that returns right after it: a transport may run
  // the call on the thread that runs that `done` once it returns, instead of waking another.
  // Only a hint; the call's outcome and timeout are those of Send.
  virtual void SendNext(CallbackRequest request, std::function<void(CallbackReply)> done) {
    Send(std::move(request), std::move(done));
  }
  // Stops sending. Calls not yet started complete with kTransient ("coordinator stopping");
  // blocks until calls in progress returned (each is bounded by its timeout). A Send after
  // Shutdown completes the same way, on a transport thread. Idempotent.
  virtual void Shutdown() = 0;
};

struct HttpTransportOptions {
  // Calls in progress at once (at least 1). More wait in a FIFO queue.
  int threads = 64;
  // Kept-alive connections kept per participant host:port; 0 closes each after its call.
  int max_idle_per_host = 64;
  // When not empty, every callback carries Tx-Timestamp and Tx-Signature (contract section 4),
  // signed over the request-target exactly as on the request line (path, and query if any).
  std::string callback_secret;
  // A reply body is read up to this many bytes; the rest is discarded.
  size_t max_reply_bytes = 64 * 1024;
  // For https participant URLs: the client context (participant::NewClientContext: the CAs that
  // participants' certificates must chain to, and the coordinator's own client certificate for
  // participants that require one). Null: https URLs fail with kTransient "https callbacks are
  // not configured".
  Poco::Net::Context::Ptr tls_context;
};

// Callbacks over HTTP/1.1 with Poco: a pool of kept-alive connections per participant, a per-call
// timeout, and signing; https URLs over TLS with `tls_context` (host name and certificate
// verified; a failed verification is a kTransient reply naming it). The destructor calls Shutdown.
//
// The process must ignore SIGPIPE (txcoord's main does): writing to a connection the participant
// has reset would otherwise kill it.
std::unique_ptr<CallbackTransport> NewHttpTransport(const HttpTransportOptions& options);

}  // namespace txcoord::coordinator
