// Saga definitions: the `steps` of a begin request (contract section 3) checked once, up front,
// and turned into a plan the saga engine can run without re-checking anything.
//
// A step has an `action` URL, a `compensate` URL, a `payload` passed through untouched, and
// `depends_on`: the step_ids that must succeed before it runs. The dependencies form a DAG; steps
// with no path between them may run in parallel, and on failure the coordinator compensates every
// step that may have run in reverse dependency order.
//
// Everything here is a pure function of its arguments: no I/O, no clock, no global state, and the
// same input always gives the same plan and the same first error. Thread-safe.
#pragma once

#include <google/protobuf/repeated_ptr_field.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "txcoord/status.h"
#include "txcoord/v1/api.pb.h"

namespace txcoord::saga {

// ---------------------------------------------------------------------------------------------
// Participant URLs
// ---------------------------------------------------------------------------------------------

// Which participant URLs the coordinator may call (`--allow-url`, contract section 6): a URL is
// allowed when it starts with one of `allowed_prefixes`.
//
// A prefix should end with ':' (a host, any port: "http://127.0.0.1:") or '/' (a host and port,
// or a path below it: "http://10.0.0.5:8080/"). A prefix that ends elsewhere only matches at a
// boundary, so "http://10.0.0.5" allows "http://10.0.0.5:8080/x" but not "http://10.0.0.50/x",
// and "http://h:1/bank" allows "http://h:1/bank/x" but not "http://h:1/bankrupt". The scheme and
// host compare case-insensitively, the path exactly. An empty prefix matches nothing, and an empty
// list allows nothing.
struct UrlPolicy {
  // The default allows loopback only, as the contract requires.
  std::vector<std::string> allowed_prefixes = {
      "http://127.0.0.1:",  "http://localhost:",  "http://[::1]:",
      "https://127.0.0.1:", "https://localhost:", "https://[::1]:"};
};

// Participant URLs are plain ASCII and bounded, like the ids they travel with.
inline constexpr std::size_t kMaxParticipantUrlLength = 2048;

enum class UrlVerdict {
  kOk,
  // Missing, or not an absolute http(s) URL with a host: the request is wrong. INVALID_ARGUMENT
  // (400).
  kMalformed,
  // A well-formed URL the coordinator will not call: outside the allow-list, or carrying user-info
  // ("user@host"), which can make an allowed-looking prefix name another host
  // ("http://127.0.0.1:80@evil.com/"). FORBIDDEN (403).
  kForbidden,
};

struct UrlCheck {
  UrlVerdict verdict = UrlVerdict::kOk;
  // Empty when kOk; otherwise for a person: names `what`, says what is wrong and what to do. Never
  // repeats a user-info part, which may hold a password.
  std::string message;

  bool ok() const { return verdict == UrlVerdict::kOk; }
};

// Checks one participant URL. `what` names it in the message: `step "reserve" action`,
// `branch "debit" url`. The coordinator uses this for saga steps and for 2pc/3pc/tcc branches.
//
// Well-formed means: at most kMaxParticipantUrlLength characters of printable ASCII with no space
// or '\'; scheme http or https followed by "//"; a non-empty host; a port, when present, of digits
// only; and Poco::URI reading the same host and port as the text does. Then, if it has user-info or
// matches no prefix of `policy`, it is kForbidden.
UrlCheck CheckParticipantUrl(std::string_view what, std::string_view url, const UrlPolicy& policy);

// ---------------------------------------------------------------------------------------------
// Saga definitions
// ---------------------------------------------------------------------------------------------

// At most this many steps per saga. It bounds the callbacks, the log record and the work one
// request can cause; a workflow larger than this is better split into several sagas.
inline constexpr std::size_t kMaxSagaSteps = 100;

// A validated saga. Every step is named by its index in the request's `steps`, the order the
// client gave and the log records; step_ids are not repeated here.
//
// Invariants: `order` and the concatenation of `levels` are permutations of 0..n-1; each step's
// dependencies come before it in `order` and sit in strictly earlier levels.
struct SagaPlan {
  // A topological order: the lowest-index step whose dependencies are all earlier comes next
  // (Kahn's algorithm with ties broken by index), so the same definition always gives the same
  // order.
  std::vector<int> order;
  // dependencies[i]: the steps that step i depends on, in its `depends_on` order.
  std::vector<std::vector<int>> dependencies;
  // dependents[i]: the steps that depend on step i, ascending.
  std::vector<std::vector<int>> dependents;
  // levels[0] holds the steps with no dependencies; levels[k] the steps whose deepest dependency
  // is in levels[k-1]. Each level is ascending. A level's steps may run in parallel once the
  // earlier levels have succeeded, and compensating level by level from the last one undoes every
  // step after everything that depends on it.
  std::vector<std::vector<int>> levels;
};

// The outcome of ValidateSaga. On failure `status` is always kInvalidArgument (Status has no
// FORBIDDEN code), and `forbidden_url` says which reply the coordinator owes: true means 403
// FORBIDDEN (a URL outside the allow-list, or with user-info), false means 400 INVALID_ARGUMENT.
struct SagaValidation {
  Status status;
  bool forbidden_url = false;
  // Meaningful only when status.ok().
  SagaPlan plan;

  bool ok() const { return status.ok(); }
};

// Validates the `steps` of a saga begin request and plans them. Refused, with a message naming the
// offending step (by step_id, or by position as steps[i] when its step_id is itself the problem):
//   - no steps, or more than kMaxSagaSteps;
//   - a step_id that breaks the id rule (ValidateId), or one used by two steps;
//   - a missing or malformed `action` or `compensate` URL (see CheckParticipantUrl). Every step
//     needs a compensate URL: a failed saga compensates every step that may have run, and any
//     action may have run, even one whose reply was lost. A step with nothing to undo points at a
//     URL that answers 2xx;
//   - a `depends_on` entry that is not a step_id of this saga, names the step itself, or repeats;
//   - a cycle, reported with its steps in order: "steps form a cycle: a -> b -> c -> a", where
//     each step depends on the next;
//   - a URL that CheckParticipantUrl forbids (forbidden_url = true).
// The checks run in the order listed, each over the steps in request order, and the first failure
// is reported; so the same input always gets the same message. The exception is a forbidden URL:
// it is reported only when nothing else is wrong, so a request that is wrong is answered 400 even
// when it also names a forbidden URL, and a 403 means the definition is otherwise valid.
SagaValidation ValidateSaga(const google::protobuf::RepeatedPtrField<v1::Step>& steps,
                            const UrlPolicy& policy);

}  // namespace txcoord::saga
