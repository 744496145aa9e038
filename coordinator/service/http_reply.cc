#include "http_reply.h"

#include <algorithm>
#include <istream>
#include <ostream>
#include <utility>

#include "txcoord/schemas/json.h"
#include "txcoord/v1/api.pb.h"

namespace txcoord::service {
namespace {

using Poco::Net::HTTPResponse;
using Poco::Net::HTTPServerRequest;
using Poco::Net::HTTPServerResponse;

// Unread request bodies up to this size are skipped to keep the connection; see DiscardBody.
constexpr std::streamsize kMaxDiscardBytes = std::streamsize{64} * 1024;
// A body refused as too large is skipped up to this size before the reply: closing a socket
// with unread bytes makes the kernel send a reset, and a client still sending its body would
// then lose the 413 too. Reading costs bandwidth, not memory; past this the connection is cut.
constexpr std::streamsize kMaxDiscardTooLargeBytes = std::streamsize{8} * 1024 * 1024;
constexpr std::size_t kReadChunkBytes = 16 * 1024;

bool HasBody(const HTTPServerRequest& request) {
  // A request with neither length nor chunking has no body (RFC 9112 §6.3); Poco would wait for
  // the peer to close, so it must not be read.
  return request.getChunkedTransferEncoding() ||
         (request.hasContentLength() && request.getContentLength64() > 0);
}

void DiscardBodyUpTo(Exchange& exchange, std::streamsize max_bytes) {
  if (!HasBody(exchange.request)) return;
  std::istream& body = exchange.request.stream();
  body.ignore(max_bytes);
  if (body.peek() != std::char_traits<char>::eof()) exchange.response.setKeepAlive(false);
}

bool MediaTypeIs(const std::string& header, std::string_view type) {
  // "application/x-protobuf; proto=txcoord.v1.BeginRequest" still names the type.
  const std::string_view value(header);
  const std::string_view media = value.substr(0, value.find(';'));
  const size_t begin = media.find_first_not_of(' ');
  const size_t end = media.find_last_not_of(' ');
  return begin != std::string_view::npos && media.substr(begin, end - begin + 1) == type;
}

}  // namespace

ErrorAnswer ErrorAnswerFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
      return {HTTPResponse::HTTP_BAD_REQUEST, "INVALID_ARGUMENT", status.message()};
    case StatusCode::kPermissionDenied:
      return {HTTPResponse::HTTP_FORBIDDEN, "FORBIDDEN", status.message()};
    case StatusCode::kNotFound:
      return {HTTPResponse::HTTP_NOT_FOUND, "NOT_FOUND", status.message()};
    case StatusCode::kConflict:
    case StatusCode::kAlreadyExists:
      return {HTTPResponse::HTTP_CONFLICT, "CONFLICT", status.message()};
    case StatusCode::kTooLarge:
      return {HTTPResponse::HTTP_REQUEST_ENTITY_TOO_LARGE, "TOO_LARGE", status.message()};
    case StatusCode::kOk:  // not an error; answering 503 is the safe reading of a bug
    case StatusCode::kUnavailable:
    case StatusCode::kUnknownOutcome:
    case StatusCode::kCorruption:
    case StatusCode::kInternal:
      break;
  }
  return {HTTPResponse::HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE",
          status.message().empty() ? std::string("the coordinator cannot answer now; retry")
                                   : status.message()};
}

std::string RequestPath(const HTTPServerRequest& request) {
  const std::string& uri = request.getURI();
  return uri.substr(0, uri.find('?'));
}

bool WantsProtobuf(const HTTPServerRequest& request) {
  return request.get("Accept", "").find(kProtobufType) != std::string::npos;
}

bool SendsProtobuf(const HTTPServerRequest& request) {
  return MediaTypeIs(request.get("Content-Type", ""), kProtobufType);
}

Result<std::string> ReadBody(HTTPServerRequest& request, std::size_t max_bytes) {
  const std::string too_large = "the request body is larger than the limit of " +
                                std::to_string(max_bytes) + " bytes (--max-body-bytes)";
  if (!HasBody(request)) return std::string();
  if (request.hasContentLength() &&
      static_cast<Poco::UInt64>(request.getContentLength64()) > max_bytes) {
    return Status::TooLarge(too_large);
  }
  std::string body;
  if (request.hasContentLength()) {
    body.reserve(static_cast<std::size_t>(request.getContentLength64()));
  }
  std::istream& in = request.stream();
  // One byte beyond the limit is read to tell "exactly the limit" from "more".
  while (body.size() <= max_bytes) {
    const std::size_t want = std::min(kReadChunkBytes, max_bytes + 1 - body.size());
    const std::size_t at = body.size();
    body.resize(at + want);
    in.read(body.data() + at, static_cast<std::streamsize>(want));
    body.resize(at + static_cast<std::size_t>(in.gcount()));
    if (!in) break;
  }
  if (body.size() > max_bytes) return Status::TooLarge(too_large);
  if (request.hasContentLength() &&
      body.size() != static_cast<std::size_t>(request.getContentLength64())) {
    return Status::InvalidArgument("the request body ended after " + std::to_string(body.size()) +
                                   " of its " + std::to_string(request.getContentLength64()) +
                                   " bytes (Content-Length)");
  }
  return body;
}

void DiscardBody(Exchange& exchange) { DiscardBodyUpTo(exchange, kMaxDiscardBytes); }

void SendBody(Exchange& exchange, HTTPResponse::HTTPStatus status, std::string_view content_type,
              const std::string& body) {
  HTTPServerResponse& response = exchange.response;
  response.setStatusAndReason(status);
  response.setContentType(std::string(content_type));
  response.setContentLength64(static_cast<Poco::Int64>(body.size()));
  response.set("Cache-Control", "no-store");
  // Flushed here, not left to Poco, which flushes only when it destroys the response, after
  // the handler: by then HttpService::Stop may have shut the connection (see RequestGate).
  // For HEAD, Poco's stream drops the body and sends only the headers.
  if (exchange.before_reply) {
    auto before_reply = std::move(exchange.before_reply);
    exchange.before_reply = nullptr;
    before_reply(status);
  }
  std::ostream& out = response.send();
  out.write(body.data(), static_cast<std::streamsize>(body.size()));
  out.flush();
}

void SendMessage(Exchange& exchange, HTTPResponse::HTTPStatus status,
                 const google::protobuf::Message& message) {
  if (WantsProtobuf(exchange.request)) {
    SendBody(exchange, status, kProtobufType, message.SerializeAsString());
  } else {
    SendBody(exchange, status, kJsonType, MessageToJson(message));
  }
}

void SendError(Exchange& exchange, const ErrorAnswer& answer) {
  HTTPServerResponse& response = exchange.response;
  if (answer.close_connection) response.setKeepAlive(false);
  DiscardBodyUpTo(exchange, answer.status == HTTPResponse::HTTP_REQUEST_ENTITY_TOO_LARGE
                                ? kMaxDiscardTooLargeBytes
                                : kMaxDiscardBytes);
  if (!answer.allow.empty()) response.set("Allow", answer.allow);
  if (answer.status == HTTPResponse::HTTP_SERVICE_UNAVAILABLE) response.set("Retry-After", "1");
  if (answer.status == HTTPResponse::HTTP_UNAUTHORIZED) {
    response.set("WWW-Authenticate", "Bearer realm=\"txcoord\"");
  }
  v1::ErrorReply reply;
  reply.mutable_error()->set_code(std::string(answer.code));
  reply.mutable_error()->set_message(answer.message);
  SendMessage(exchange, answer.status, reply);
}

}  // namespace txcoord::service
