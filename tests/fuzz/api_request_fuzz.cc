// libFuzzer target for the coordinator API's request parsing (coordinator/service/api_request.h)
// and the saga definition checks a begin request goes through (saga/definition.h).
//
// The first input byte picks what is fuzzed; the rest is its input:
//   0  MatchApiRoute(method, path)        method and path split at the first '\n'
//   1  ParseListQuery(query)
//   2  IsValidTraceparent(header)
//   3  DecodeBody(JSON) into BeginRequest, then ValidateSaga on its steps
//   4  DecodeBody(binary protobuf) into BeginRequest, then ValidateSaga
//   5  DecodeBody(JSON) into Branch and into CompleteRequest
// Besides "no crash, no sanitizer report", every result is checked against the rules the
// parsers promise, so a parser that accepts what it must refuse is caught too. A failed check
// aborts with a message naming it.
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "api_request.h"
#include "txcoord/saga/definition.h"
#include "txcoord/schemas/ids.h"
#include "txcoord/schemas/json.h"
#include "txcoord/v1/api.pb.h"

namespace {

using txcoord::service::ApiRoute;
using txcoord::service::ErrorAnswer;

void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz check failed: %s\n", what);
  std::abort();
}

void FuzzRoute(std::string_view in) {
  const size_t nl = in.find('\n');
  const std::string_view method = in.substr(0, nl);
  const std::string_view path = nl == std::string_view::npos ? "" : in.substr(nl + 1);
  auto result = txcoord::service::MatchApiRoute(method, path);
  if (const auto* route = std::get_if<ApiRoute>(&result)) {
    Check(txcoord::service::IsApiPath(path), "a matched route is an API path");
    const bool needs_gtid = route->endpoint != txcoord::service::Endpoint::kBegin &&
                            route->endpoint != txcoord::service::Endpoint::kList &&
                            route->endpoint != txcoord::service::Endpoint::kPurge;
    Check(needs_gtid == !route->gtid.empty(), "a gtid exactly for the per-transaction routes");
    if (needs_gtid) Check(txcoord::ValidateId("gtid", route->gtid).ok(), "a matched gtid is valid");
    const bool needs_branch = route->endpoint == txcoord::service::Endpoint::kResolve;
    Check(needs_branch == !route->branch_id.empty(), "a branch_id exactly for resolve");
    if (needs_branch) {
      Check(txcoord::ValidateId("branch_id", route->branch_id).ok(), "a matched branch is valid");
    }
  } else {
    const auto& error = std::get<ErrorAnswer>(result);
    Check(!error.code.empty() && !error.message.empty(), "an error has a code and a message");
    Check(static_cast<int>(error.status) >= 400 && static_cast<int>(error.status) < 500,
          "a route error is a 4xx");
  }
}

void FuzzListQuery(std::string_view in) {
  const txcoord::coordinator::Timestamp now{std::chrono::milliseconds(1'700'000'000'000)};
  auto query = txcoord::service::ParseListQuery(in, now);
  if (!query.ok()) {
    Check(!query.status().message().empty(), "a refused query says why");
    return;
  }
  Check(query->limit >= 1 && query->limit <= 1000, "limit within 1..1000");
  Check(query->after.empty() || txcoord::ValidateId("after", query->after).ok(),
        "after is a valid gtid");
  if (query->created_before) Check(*query->created_before <= now, "older_than_ms looks back");
}

// The same text as the query of a purge (DELETE /v1/transactions).
void FuzzPurgeQuery(std::string_view in) {
  const txcoord::coordinator::Timestamp now{std::chrono::milliseconds(1'700'000'000'000)};
  auto query = txcoord::service::ParsePurgeQuery(in, now);
  if (!query.ok()) {
    Check(!query.status().message().empty(), "a refused purge query says why");
    return;
  }
  Check(query->limit >= 1 && query->limit <= 100'000, "purge limit within 1..100000");
  Check(query->finished_before <= now, "older_than_ms looks back");
}

void FuzzTraceparent(std::string_view in) {
  if (!txcoord::service::IsValidTraceparent(in)) return;
  Check(in.size() >= 55, "a valid traceparent has all four fields");
  Check(in.substr(0, 2) != "ff", "version ff is invalid");
  for (const char c : in) Check(c > 0x20 && c < 0x7f, "a valid traceparent is printable");
}

// A saga plan must be a topological order of exactly the request's steps.
void CheckSaga(const txcoord::v1::BeginRequest& request) {
  const txcoord::saga::UrlPolicy policy;
  const txcoord::saga::SagaValidation v = txcoord::saga::ValidateSaga(request.steps(), policy);
  if (!v.ok()) {
    Check(!v.status.message().empty(), "a refused saga says why");
    return;
  }
  const int n = request.steps_size();
  std::vector<int> position(n, -1);
  Check(static_cast<int>(v.plan.order.size()) == n, "the order holds every step");
  for (int i = 0; i < n; ++i) {
    const int step = v.plan.order[i];
    Check(step >= 0 && step < n && position[step] == -1, "the order is a permutation");
    position[step] = i;
  }
  for (int step = 0; step < n; ++step) {
    for (const int dep : v.plan.dependencies[step]) {
      Check(position[dep] < position[step], "a dependency comes before its dependent");
    }
  }
}

// Printing a decoded request and decoding the print gives the same request back: whatever the
// API accepts in either form has the same meaning in both.
void CheckRoundTrip(const txcoord::v1::BeginRequest& request) {
  const std::string json = txcoord::MessageToJson(request, {.print_defaults = false});
  txcoord::v1::BeginRequest again;
  if (!txcoord::JsonToMessage(json, &again).ok()) {
    // Only a value JSON cannot hold (a NaN or infinite number from a binary body) may fail to
    // print, and then the printer gives the error body, which is no BeginRequest.
    Check(json.find("\"error\"") != std::string::npos, "a printed request parses again");
    return;
  }
  Check(google::protobuf::util::MessageDifferencer::Equals(request, again),
        "JSON round trip keeps the request");
}

void FuzzBegin(std::string_view in, bool protobuf) {
  txcoord::v1::BeginRequest request;
  const txcoord::Status s = txcoord::service::DecodeBody(in, protobuf, false, &request);
  if (!s.ok()) {
    Check(!s.message().empty(), "a refused body says why");
    return;
  }
  CheckRoundTrip(request);
  if (request.protocol() == "saga" || request.steps_size() > 0) CheckSaga(request);
}

void FuzzSmallBodies(std::string_view in) {
  txcoord::v1::Branch branch;
  (void)txcoord::service::DecodeBody(in, false, false, &branch);
  txcoord::v1::CompleteRequest complete;
  (void)txcoord::service::DecodeBody(in, false, true, &complete);
}

}  // namespace

// protobuf logs every invalid UTF-8 string it refuses; the fuzzer makes millions.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 6) {
    case 0:
      FuzzRoute(in);
      break;
    case 1:
      FuzzListQuery(in);
      FuzzPurgeQuery(in);
      break;
    case 2:
      FuzzTraceparent(in);
      break;
    case 3:
      FuzzBegin(in, false);
      break;
    case 4:
      FuzzBegin(in, true);
      break;
    case 5:
      FuzzSmallBodies(in);
      break;
  }
  return 0;
}
