// The /v1/ transaction API of contract section 3, served over a Coordinator: one call per
// request, after the router matched it (api_request.h) and checked its token and the overload
// limit.
//
// Replies: the coordinator's record as JSON, or binary protobuf on Accept:
// application/x-protobuf; status 200 when terminal and 202 otherwise (begin, commit, abort),
// 201 for a registered branch, 200 for reads. Every reply about one transaction carries its
// gtid in a Tx-Gtid header. Errors: the contract's error body, with the status ErrorAnswerFor
// gives the coordinator's Status.
//
// Thread-safety: ServeApi may run on any number of threads at once; the Coordinator is
// thread-safe and nothing else is shared.
#pragma once

#include <cstddef>

#include "api_request.h"
#include "http_reply.h"
#include "txcoord/coordinator/coordinator.h"

namespace txcoord::service {

struct ApiOptions {
  std::size_t max_body_bytes = 1024 * 1024;  // larger request bodies get 413 TOO_LARGE
};

// Serves the request `route` names. A `wait: true` begin, commit or abort holds the calling
// thread until the transaction is terminal or its deadline plus the coordinator's grace has
// passed. Exceptions (a client that went away) propagate to the caller.
void ServeApi(coordinator::Coordinator& coordinator, const ApiOptions& options,
              const ApiRoute& route, Exchange& exchange);

}  // namespace txcoord::service
