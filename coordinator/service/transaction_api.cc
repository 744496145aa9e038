#include "transaction_api.h"

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
bool ReadMessage(const ApiOptions& options, bool empty_allowed, HTTPServerRequest& request,
                 HTTPServerResponse& response, google::protobuf::Message* message) {
  auto body = ReadBody(request, options.max_body_bytes);
  Status status =
      body.ok() ? DecodeBody(*body, SendsProtobuf(request), empty_allowed, message) : body.status();
  if (status.ok()) return true;
  SendError(request, response, ErrorAnswerFor(status));
  return false;
}

HTTPResponse::HTTPStatus AsHttpStatus(int status) {
  return static_cast<HTTPResponse::HTTPStatus>(status);
}

// The reply to begin, commit and abort.
void SendTransactionReply(HTTPServerRequest& request, HTTPServerResponse& response,
                          const Result<coordinator::TransactionReply>& reply) {
  if (!reply.ok()) {
    SendError(request, response, ErrorAnswerFor(reply.status()));
    return;
  }
  const std::string& gtid = reply->transaction.gtid();
  if (IsValidId(gtid)) response.set(std::string(kGtidHeader), gtid);
  SendMessage(request, response, AsHttpStatus(reply->http_status), reply->transaction);
}

void Begin(coordinator::Coordinator& coordinator, const ApiOptions& options,
           HTTPServerRequest& request, HTTPServerResponse& response) {
  v1::BeginRequest begin;
  if (!ReadMessage(options, /*empty_allowed=*/false, request, response, &begin)) return;
  std::string traceparent = request.get("traceparent", "");
  if (!IsValidTraceparent(traceparent)) traceparent.clear();
  SendTransactionReply(request, response,
                       coordinator.Begin(std::move(begin), std::move(traceparent)));
}

void RegisterBranch(coordinator::Coordinator& coordinator, const ApiOptions& options,
                    const std::string& gtid, HTTPServerRequest& request,
                    HTTPServerResponse& response) {
  v1::Branch branch;
  if (!ReadMessage(options, /*empty_allowed=*/false, request, response, &branch)) return;
  auto reply = coordinator.RegisterBranch(gtid, std::move(branch));
  if (reply.ok()) reply->http_status = HTTPResponse::HTTP_CREATED;
  SendTransactionReply(request, response, reply);
}

void Complete(coordinator::Coordinator& coordinator, const ApiOptions& options, bool commit,
              const std::string& gtid, HTTPServerRequest& request, HTTPServerResponse& response) {
  v1::CompleteRequest complete;
  if (!ReadMessage(options, /*empty_allowed=*/true, request, response, &complete)) return;
  SendTransactionReply(request, response,
                       commit ? coordinator.Commit(gtid, complete.wait())
                              : coordinator.Abort(gtid, complete.wait()));
}

void Get(coordinator::Coordinator& coordinator, const std::string& gtid, HTTPServerRequest& request,
         HTTPServerResponse& response) {
  DiscardBody(request, response);
  auto transaction = coordinator.Get(gtid);
  if (!transaction.ok()) {
    SendError(request, response, ErrorAnswerFor(transaction.status()));
    return;
  }
  SendMessage(request, response, HTTPResponse::HTTP_OK, *transaction);
}

void List(coordinator::Coordinator& coordinator, HTTPServerRequest& request,
          HTTPServerResponse& response) {
  DiscardBody(request, response);
  const std::string& uri = request.getURI();
  const size_t question = uri.find('?');
  const std::string_view query = question == std::string::npos
                                     ? std::string_view()
                                     : std::string_view(uri).substr(question + 1);
  auto list_query = ParseListQuery(query, coordinator::SystemClock().Now());
  if (!list_query.ok()) {
    SendError(request, response, ErrorAnswerFor(list_query.status()));
    return;
  }
  auto page = coordinator.List(*list_query);
  if (!page.ok()) {
    SendError(request, response, ErrorAnswerFor(page.status()));
    return;
  }
  SendMessage(request, response, HTTPResponse::HTTP_OK, *page);
}

}  // namespace

void ServeApi(coordinator::Coordinator& coordinator, const ApiOptions& options,
              const ApiRoute& route, HTTPServerRequest& request, HTTPServerResponse& response) {
  // The path's gtid is valid (MatchApiRoute checked it), so it is safe in a header.
  if (!route.gtid.empty()) response.set(std::string(kGtidHeader), route.gtid);
  switch (route.endpoint) {
    case Endpoint::kBegin:
      Begin(coordinator, options, request, response);
      return;
    case Endpoint::kList:
      List(coordinator, request, response);
      return;
    case Endpoint::kGet:
      Get(coordinator, route.gtid, request, response);
      return;
    case Endpoint::kRegisterBranch:
      RegisterBranch(coordinator, options, route.gtid, request, response);
      return;
    case Endpoint::kCommit:
      Complete(coordinator, options, /*commit=*/true, route.gtid, request, response);
      return;
    case Endpoint::kAbort:
      Complete(coordinator, options, /*commit=*/false, route.gtid, request, response);
      return;
  }
}

}  // namespace txcoord::service
