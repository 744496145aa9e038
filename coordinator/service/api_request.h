// Reading a /v1/ request (contract section 3) without serving it: which endpoint a method and
// path name, the list query, the traceparent header and the body. Pure functions, no I/O, so
// they are tested alone (tests/coordinator/service_api_test.cc).
#pragma once

#include <google/protobuf/message.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "http_reply.h"
#include "txcoord/coordinator/log.h"
#include "txcoord/status.h"

namespace txcoord::service {

enum class Endpoint {
  kBegin,           // POST /v1/transactions
  kList,            // GET  /v1/transactions?state=&older_than_ms=&limit=&after=
  kGet,             // GET  /v1/transactions/{gtid}
  kRegisterBranch,  // POST /v1/transactions/{gtid}/branches
  kCommit,          // POST /v1/transactions/{gtid}/commit
  kAbort,           // POST /v1/transactions/{gtid}/abort
  // Operator endpoints (docs/contract-additions.md section 4).
  kRetry,    // POST   /v1/transactions/{gtid}/retry
  kResolve,  // POST   /v1/transactions/{gtid}/branches/{branch_id}/resolve
  kHistory,  // GET    /v1/transactions/{gtid}/history
  kPurge,    // DELETE /v1/transactions?older_than_ms=&limit=&dry_run=
};

struct ApiRoute {
  Endpoint endpoint = Endpoint::kBegin;
  std::string gtid;  // from the path, valid per the contract; empty for kBegin, kList, kPurge
  std::string branch_id = {};  // kResolve only: from the path, valid per the contract
};

// The query of DELETE /v1/transactions.
struct PurgeQuery {
  coordinator::Timestamp finished_before{};
  int64_t limit = 10'000;  // transactions deleted by one request at most
  bool dry_run = false;    // count only: purged 0, remaining the eligible ones
};

// True for the paths the API owns, "/v1" and everything under "/v1/": they need a token.
bool IsApiPath(std::string_view path);

// The endpoint `method` and `path` (percent-encoded, without the query) name. Otherwise the
// error to answer: 404 NOT_FOUND for a path that names none, 405 (code INVALID_ARGUMENT, with
// Allow) for a method the path does not take, 400 INVALID_ARGUMENT for a gtid in the path that
// breaks the id rule. HEAD is taken wherever GET is.
std::variant<ApiRoute, ErrorAnswer> MatchApiRoute(std::string_view method, std::string_view path);

// The query of GET /v1/transactions (the part after '?', percent-encoded). `older_than_ms`
// becomes created_before = now - n. Errors (kInvalidArgument): an unknown or repeated
// parameter, a limit outside 1..1000, a negative or non-integer number, a bad `after` gtid or
// state.
Result<coordinator::ListQuery> ParseListQuery(std::string_view query, coordinator::Timestamp now);

// The query of DELETE /v1/transactions: `older_than_ms` (required; transactions whose end is
// older) becomes finished_before = now - n; `limit` 1..100000 (default 10000); `dry_run` true or
// false. Errors (kInvalidArgument) as for ParseListQuery.
Result<PurgeQuery> ParsePurgeQuery(std::string_view query, coordinator::Timestamp now);

// A W3C trace-context traceparent, checked loosely: "vv-<32 hex>-<16 hex>-ff" in lowercase hex,
// version not "ff", ids not all zeros; a version other than 00 may carry more after a '-'.
// The service drops an invalid one rather than refusing the request, as the W3C
// recommendation says a receiver should; it is never passed on to participants.
bool IsValidTraceparent(std::string_view traceparent);

// Decodes `body` into `message`: binary protobuf when `protobuf`, else JSON by the contract's
// mapping (unknown fields and wrong types refused). An empty body is an empty message when
// `empty_allowed`, else kInvalidArgument. The error names the message and what was wrong.
Status DecodeBody(std::string_view body, bool protobuf, bool empty_allowed,
                  google::protobuf::Message* message);

}  // namespace txcoord::service
