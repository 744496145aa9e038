// Where txctl's transaction commands go: the running txcoord over its HTTP API (contract
// section 3 and docs/contract-additions.md section 4), or, offline, the store itself.
//
// Both answer the same calls with the same messages, so the commands do not know which one they
// talk to. Errors are Status codes the commands turn into exit codes (ExitCodeFor):
//
//   kNotFound         no such transaction (404)
//   kConflict         the state does not allow it (409), or the store is in use by a running
//                     txcoord (offline)
//   kInvalidArgument  the request was wrong (400)
//   kPermissionDenied the coordinator refused the token (401) or the client (403)
//   kUnavailable      the coordinator or the store cannot be reached (connection, 5xx)
//
// Offline, abort and resolve run the transaction's engine over its records exactly as txcoord's
// recovery would (RecoverEngine), give it the command, and append the records it emits (the
// recovery's own, then the command's, then what follows once they are durable); the callbacks
// it would send are left to txcoord, which resends them when it next starts. So the store holds
// the same records the service would have written.
//
// Thread-safety: none; txctl is single-threaded.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "command.h"
#include "txcoord/status.h"
#include "txcoord/v1/api.pb.h"

namespace txcoord::txctl {

struct ListRequest {
  std::string state;                                    // empty: any
  std::optional<std::chrono::milliseconds> older_than;  // created before now - this
  int limit = 100;                                      // 1..1000: one page
  std::string after;                                    // the previous page's `next`
};

struct PurgeSlice {
  int64_t purged = 0;     // deleted by this call
  int64_t remaining = 0;  // still eligible after it
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual Result<v1::TransactionList> List(const ListRequest& request) = 0;
  virtual Result<v1::Transaction> Get(const std::string& gtid) = 0;
  virtual Result<v1::TransactionHistory> History(const std::string& gtid) = 0;
  // Offline there is nothing to send callbacks with: kConflict saying that txcoord does it when
  // it next starts (after checking that the gtid exists, kNotFound, and is not terminal).
  virtual Result<v1::Transaction> Retry(const std::string& gtid) = 0;
  virtual Result<v1::Transaction> Abort(const std::string& gtid) = 0;
  virtual Result<v1::Transaction> Resolve(const std::string& gtid, const std::string& branch_id,
                                          const v1::ResolveRequest& request) = 0;
  // Deletes at most `limit` finished transactions whose end is older than `older_than`
  // (limit 0: only counts them).
  virtual Result<PurgeSlice> Purge(std::chrono::milliseconds older_than, int64_t limit) = 0;

  // "the coordinator at URL" or "the store sqlite ./x.db", for messages.
  virtual std::string Describe() const = 0;
};

// Through the service: ctx.coordinator_url with ctx.bearer_token and ctx.tls. Fails
// (kInvalidArgument) only for a URL that is not http(s)://host:port or unusable TLS files; an
// unreachable coordinator shows at the first call.
Result<std::unique_ptr<Backend>> OpenServiceBackend(const Context& ctx);

// Offline on ctx.store_uri. kUnavailable when the store cannot be opened (a SQLite file that does
// not exist is not created: that is a wrong path), kConflict when a running txcoord holds it.
Result<std::unique_ptr<Backend>> OpenOfflineBackend(const Context& ctx);

// The one for ctx: offline with --store, else through the service.
Result<std::unique_ptr<Backend>> OpenBackend(const Context& ctx);

}  // namespace txcoord::txctl
