// Reading requests and writing replies the contract's way, shared by every handler of the
// service: bodies read with a size limit, replies as JSON or (on request) binary protobuf, and
// the error body {"error":{"code":...,"message":...}} with the status each Status code maps to.
//
// Thread-safety: free functions over one request and its response, which belong to one thread.
#pragma once

#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <google/protobuf/message.h>

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include "txcoord/status.h"

namespace txcoord::service {

inline constexpr std::string_view kJsonType = "application/json";
inline constexpr std::string_view kProtobufType = "application/x-protobuf";

// One request and its response, as the handlers see them.
struct Exchange {
  Poco::Net::HTTPServerRequest& request;
  Poco::Net::HTTPServerResponse& response;
  // When set, runs once, with the reply's status, just before the reply is flushed: the last
  // moment before the client can see it and send its next request. Bookkeeping done here (the
  // metrics, the in-flight count) is therefore never behind what a client has seen.
  std::function<void(int status)> before_reply = {};
};

// An error reply, decided before it is written.
struct ErrorAnswer {
  Poco::Net::HTTPResponse::HTTPStatus status = Poco::Net::HTTPResponse::HTTP_SERVICE_UNAVAILABLE;
  std::string_view code;  // the contract's code: INVALID_ARGUMENT, NOT_FOUND, ...
  std::string message;
  std::string allow = {};         // the Allow header of a 405
  bool close_connection = false;  // e.g. while stopping
};

// The contract's status and code for an error Status: kInvalidArgument 400 INVALID_ARGUMENT,
// kPermissionDenied 403 FORBIDDEN, kNotFound 404 NOT_FOUND, kConflict and kAlreadyExists 409
// CONFLICT, kTooLarge 413 TOO_LARGE, everything else 503 UNAVAILABLE. The message is the
// Status's, which the coordinator writes for the client.
ErrorAnswer ErrorAnswerFor(const Status& status);

// The request's path, without the query.
std::string RequestPath(const Poco::Net::HTTPServerRequest& request);

// True when the client asked for binary protobuf replies (Accept: application/x-protobuf).
bool WantsProtobuf(const Poco::Net::HTTPServerRequest& request);
// True when the request body is binary protobuf (Content-Type: application/x-protobuf); any
// other body is read as JSON.
bool SendsProtobuf(const Poco::Net::HTTPServerRequest& request);

// Reads the whole request body, at most `max_bytes`, into memory. A declared Content-Length
// above it is refused before anything is read, and a chunked body is cut off as soon as it
// passes it: kTooLarge either way (SendError then skips a bounded part of the rest, and closes
// the connection if more remains). A request with neither a length nor chunking has an empty
// body; one that ends before its Content-Length is kInvalidArgument.
Result<std::string> ReadBody(Poco::Net::HTTPServerRequest& request, std::size_t max_bytes);

// Poco parses the next request of a kept-alive connection right where the handler stopped
// reading, so a body the handler ignores would be taken for the next request line. Reads it
// away, or closes the connection after the reply when it is too large to bother.
void DiscardBody(Exchange& exchange);

// Writes the reply and flushes it at once, so that the reply is on the wire before the handler
// returns (see txcoord/request_gate.h). Runs `exchange.before_reply` first.
void SendBody(Exchange& exchange, Poco::Net::HTTPResponse::HTTPStatus status,
              std::string_view content_type, const std::string& body);

// Writes `message` as JSON, or as binary protobuf when the client asked for it.
void SendMessage(Exchange& exchange, Poco::Net::HTTPResponse::HTTPStatus status,
                 const google::protobuf::Message& message);

// The contract's error reply, JSON or (on request) binary ErrorReply. Skips an unread body
// first; adds Retry-After: 1 to a 503, which always means "retry", and WWW-Authenticate to a
// 401.
void SendError(Exchange& exchange, const ErrorAnswer& answer);

}  // namespace txcoord::service
