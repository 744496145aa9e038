// CoordinatorClient: the coordinator's HTTP API (contract section 3) for applications and
// participants: begin, register a TCC branch, commit, abort, read a transaction.
//
// Errors. Every failure is a Status whose message starts with the call ("begin order-42: ") and
// carries the coordinator's own error message when it sent one:
//
//   reply / failure                         code              what the caller may assume
//   409                                     kConflict         nothing happened: state forbids it
//   404 with the error code NOT_FOUND       kNotFound         no such transaction (for an in-doubt
//                                                             participant: presumed abort)
//   404 with another body (a proxy's page,  kUnavailable      not the coordinator's answer: check
//     a wrong URL path)                                       the coordinator URL; retry later
//   400, 401, 403, 405, 413, other 4xx      kInvalidArgument  nothing happened: fix the request
//                                                             (401: check the bearer token)
//   429, 5xx, connection refused or reset   kUnavailable      nothing happened; retry later
//     before the request was sent
//   request sent, no complete reply (timeout, kUnknownOutcome    it may have happened: retry (begin
//     connection lost), or a 2xx reply that                      with a gtid, register, commit and
//     cannot be read                                             abort are idempotent) or Get
//
// For Get, which changes nothing, a lost reply is kUnavailable. A begin WITHOUT a gtid is the one
// call that is not idempotent: after kUnknownOutcome, retrying it may start a second transaction;
// give every begin a gtid when the outcome matters (the coordinator's begin is idempotent by
// gtid).
//
// Connections are HTTP/1.1 keep-alive, pooled per client. A kept-alive connection that the
// coordinator closed meanwhile is detected and the call is sent once more on a new connection,
// but only for idempotent calls (everything except a begin without a gtid).
//
// Headers sent: Content-Type/Accept application/json, `Tx-Gtid` when the call concerns a gtid,
// `traceparent` when CallOptions has one (a participant passes CallbackContext::traceparent on,
// so a trace spans the nested transaction), `Authorization: Bearer <token>` when configured.
//
// Thread-safety: all methods may be called from any thread concurrently.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "txcoord/participant/tls.h"
#include "txcoord/status.h"
#include "txcoord/v1/api.pb.h"

namespace txcoord::participant {

struct CoordinatorClientOptions {
  // The coordinator's base URL, http://host:port or https://host:port.
  std::string url = "http://127.0.0.1:8470";
  // For an https URL (tls.h): the CA the coordinator's certificate must chain to (default: the
  // system's CAs; its host name is always verified) and a client certificate for a coordinator
  // started with --tls-client-ca.
  TlsClientFiles tls = {};
  // When not empty, sent as `Authorization: Bearer <token>` (contract section 1).
  std::string bearer_token = {};
  std::chrono::milliseconds connect_timeout{2000};
  // Bound on each send and each wait for reply bytes, for calls without `wait`.
  std::chrono::milliseconds timeout{10000};
  // The same for calls with wait=true, which the coordinator answers only when the transaction
  // is terminal or its own wait is over. A begin with wait uses at least its timeout_ms plus
  // `timeout`. A commit or abort with wait does not know the transaction's timeout_ms: the
  // coordinator may hold its reply until that timeout plus its grace, so for a transaction
  // whose timeout_ms is near or above this, pass CallOptions::timeout (or raise this), or a
  // slow outcome reads as kUnknownOutcome.
  std::chrono::milliseconds wait_timeout{60000};
  // Kept-alive connections kept for reuse.
  int max_idle_connections = 16;
  // A reply body larger than this is an error (the coordinator's records are small).
  size_t max_reply_bytes = 8 * 1024 * 1024;
};

// Per call.
struct CallOptions {
  std::string traceparent;  // sent as `traceparent` when not empty
  // When positive, replaces the option's timeout / wait_timeout for this call.
  std::chrono::milliseconds timeout{0};
};

// The reply to begin, commit and abort: the transaction record, and whether it was terminal
// (200) or still running (202; also 201 if a coordinator answers so).
struct TransactionReply {
  v1::Transaction transaction;
  int http_status = 0;
  bool terminal() const { return http_status == 200; }
};

class CoordinatorClient {
 public:
  // kInvalidArgument for a URL that is not http://host:port[/].
  static Result<std::unique_ptr<CoordinatorClient>> Create(CoordinatorClientOptions options);
  ~CoordinatorClient();

  CoordinatorClient(const CoordinatorClient&) = delete;
  CoordinatorClient& operator=(const CoordinatorClient&) = delete;

  // POST /v1/transactions. With request.gtid set the call is idempotent.
  Result<TransactionReply> Begin(const v1::BeginRequest& request, const CallOptions& call = {});

  // POST /v1/transactions/{gtid}/branches (tcc): OK on 201 (or any 2xx). Register before calling
  // the branch's Try, so that a Try whose reply is lost is still cancelled.
  Status RegisterBranch(std::string_view gtid, const v1::Branch& branch,
                        const CallOptions& call = {});

  // POST /v1/transactions/{gtid}/commit and /abort, body {"wait": wait}.
  Result<TransactionReply> Commit(std::string_view gtid, bool wait, const CallOptions& call = {});
  Result<TransactionReply> Abort(std::string_view gtid, bool wait, const CallOptions& call = {});

  // GET /v1/transactions/{gtid}. kNotFound when the coordinator does not know it.
  Result<v1::Transaction> Get(std::string_view gtid, const CallOptions& call = {});

  const CoordinatorClientOptions& options() const { return options_; }

 private:
  class Pool;
  struct HttpCall;
  struct HttpReply;

  CoordinatorClient(CoordinatorClientOptions options, std::string host, uint16_t port,
                    Poco::Net::Context::Ptr tls);
  Result<HttpReply> Send(const HttpCall& call);
  // Sends `call`, whose 2xx answer is a transaction record.
  Result<TransactionReply> SendForTransaction(const HttpCall& call);
  Result<TransactionReply> Complete(std::string_view verb, std::string_view gtid, bool wait,
                                    const CallOptions& call);

  const CoordinatorClientOptions options_;
  const std::string host_;
  const uint16_t port_;
  std::unique_ptr<Pool> pool_;
};

}  // namespace txcoord::participant
