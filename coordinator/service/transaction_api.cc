#include "transaction_api.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "txcoord/schemas/ids.h"
#include "txcoord/v1/api.pb.h"

namespace txcoord::service {
namespace {

using Poco::Net::HTTPResponse;
using Poco::Net::HTTPServerRequest;
using Poco::Net::HTTPServerResponse;

constexpr std::string_view kGtidHeader = "Tx-Gtid";

// Reads and decodes the body into `message`; on failure the error is answered and false
// returned.
bool ReadMessage(const ApiOptions& options, bool empty_allowed, Exchange& exchange,
                 google::protobuf::Message* message) {
  auto body = ReadBody(exchange.request, options.max_body_bytes);
  Status status = body.ok()
                      ? DecodeBody(*body, SendsProtobuf(exchange.request), empty_allowed, message)
                      : body.status();
  if (status.ok()) return true;
  SendError(exchange, ErrorAnswerFor(status));
  return false;
}

HTTPResponse::HTTPStatus AsHttpStatus(int status) {
  return static_cast<HTTPResponse::HTTPStatus>(status);
}

// The reply to begin, commit and abort.
void SendTransactionReply(Exchange& exchange, const Result<coordinator::TransactionReply>& reply) {
  if (!reply.ok()) {
    SendError(exchange, ErrorAnswerFor(reply.status()));
    return;
  }
  const std::string& gtid = reply->transaction.gtid();
  if (IsValidId(gtid)) exchange.response.set(std::string(kGtidHeader), gtid);
  SendMessage(exchange, AsHttpStatus(reply->http_status), reply->transaction);
}

void Begin(coordinator::Coordinator& coordinator, const ApiOptions& options, Exchange& exchange) {
  v1::BeginRequest begin;
  if (!ReadMessage(options, /*empty_allowed=*/false, exchange, &begin)) return;
  std::string traceparent = exchange.request.get("traceparent", "");
  if (!IsValidTraceparent(traceparent)) traceparent.clear();
  SendTransactionReply(exchange, coordinator.Begin(std::move(begin), std::move(traceparent)));
}

void RegisterBranch(coordinator::Coordinator& coordinator, const ApiOptions& options,
                    const std::string& gtid, Exchange& exchange) {
  v1::Branch branch;
  if (!ReadMessage(options, /*empty_allowed=*/false, exchange, &branch)) return;
  auto reply = coordinator.RegisterBranch(gtid, std::move(branch));
  if (reply.ok()) reply->http_status = HTTPResponse::HTTP_CREATED;
  SendTransactionReply(exchange, reply);
}

void Complete(coordinator::Coordinator& coordinator, const ApiOptions& options, bool commit,
              const std::string& gtid, Exchange& exchange) {
  v1::CompleteRequest complete;
  if (!ReadMessage(options, /*empty_allowed=*/true, exchange, &complete)) return;
  SendTransactionReply(exchange, commit ? coordinator.Commit(gtid, complete.wait())
                                        : coordinator.Abort(gtid, complete.wait()));
}

// A read's answer: 200 with the message, or the error.
template <typename Message>
void SendFound(Exchange& exchange, const Result<Message>& found) {
  if (!found.ok()) {
    SendError(exchange, ErrorAnswerFor(found.status()));
    return;
  }
  SendMessage(exchange, HTTPResponse::HTTP_OK, *found);
}

// What follows the '?' of the request's URI; empty when there is none.
std::string_view QueryString(const Exchange& exchange) {
  const std::string& uri = exchange.request.getURI();
  const size_t question = uri.find('?');
  return question == std::string::npos ? std::string_view()
                                       : std::string_view(uri).substr(question + 1);
}

void Get(coordinator::Coordinator& coordinator, const std::string& gtid, Exchange& exchange) {
  DiscardBody(exchange);
  SendFound(exchange, coordinator.Get(gtid));
}

void List(coordinator::Coordinator& coordinator, Exchange& exchange) {
  DiscardBody(exchange);
  auto list_query = ParseListQuery(QueryString(exchange), coordinator::SystemClock().Now());
  if (!list_query.ok()) {
    SendError(exchange, ErrorAnswerFor(list_query.status()));
    return;
  }
  SendFound(exchange, coordinator.List(*list_query));
}

void Retry(coordinator::Coordinator& coordinator, const ApiOptions& options,
           const std::string& gtid, Exchange& exchange) {
  v1::CompleteRequest ignored;  // no fields are read; an empty body or {} is expected
  if (!ReadMessage(options, /*empty_allowed=*/true, exchange, &ignored)) return;
  SendTransactionReply(exchange, coordinator.Retry(gtid));
}

void Resolve(coordinator::Coordinator& coordinator, const ApiOptions& options,
             const ApiRoute& route, Exchange& exchange) {
  v1::ResolveRequest resolve;
  if (!ReadMessage(options, /*empty_allowed=*/false, exchange, &resolve)) return;
  SendTransactionReply(exchange, coordinator.Resolve(route.gtid, route.branch_id, resolve));
}

void History(coordinator::Coordinator& coordinator, const std::string& gtid, Exchange& exchange) {
  DiscardBody(exchange);
  SendFound(exchange, coordinator.History(gtid));
}

void Purge(coordinator::Coordinator& coordinator, Exchange& exchange) {
  DiscardBody(exchange);
  auto purge_query = ParsePurgeQuery(QueryString(exchange), coordinator::SystemClock().Now());
  if (!purge_query.ok()) {
    SendError(exchange, ErrorAnswerFor(purge_query.status()));
    return;
  }
  auto result = coordinator.Purge(purge_query->finished_before,
                                  purge_query->dry_run ? 0 : purge_query->limit);
  if (!result.ok()) {
    SendError(exchange, ErrorAnswerFor(result.status()));
    return;
  }
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  v1::PurgeReply reply;
  reply.set_purged(static_cast<int32_t>(std::min(result->purged, kMax)));
  reply.set_remaining(static_cast<int32_t>(std::min(result->remaining, kMax)));
  SendMessage(exchange, HTTPResponse::HTTP_OK, reply);
}

}  // namespace

void ServeApi(coordinator::Coordinator& coordinator, const ApiOptions& options,
              const ApiRoute& route, Exchange& exchange) {
  // The path's gtid is valid (MatchApiRoute checked it), so it is safe in a header.
  if (!route.gtid.empty()) exchange.response.set(std::string(kGtidHeader), route.gtid);
  switch (route.endpoint) {
    case Endpoint::kBegin:
      Begin(coordinator, options, exchange);
      return;
    case Endpoint::kList:
      List(coordinator, exchange);
      return;
    case Endpoint::kGet:
      Get(coordinator, route.gtid, exchange);
      return;
    case Endpoint::kRegisterBranch:
      RegisterBranch(coordinator, options, route.gtid, exchange);
      return;
    case Endpoint::kCommit:
      Complete(coordinator, options, /*commit=*/true, route.gtid, exchange);
      return;
    case Endpoint::kAbort:
      Complete(coordinator, options, /*commit=*/false, route.gtid, exchange);
      return;
    case Endpoint::kRetry:
      Retry(coordinator, options, route.gtid, exchange);
      return;
    case Endpoint::kResolve:
      Resolve(coordinator, options, route, exchange);
      return;
    case Endpoint::kHistory:
      History(coordinator, route.gtid, exchange);
      return;
    case Endpoint::kPurge:
      Purge(coordinator, exchange);
      return;
  }
}

}  // namespace txcoord::service
