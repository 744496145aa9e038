#include "txcoord/participant/client.h"

#include <Poco/Exception.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/NetException.h>
#include <Poco/Timespan.h>
#include <Poco/URI.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <istream>
#include <mutex>
#include <ostream>
#include <utility>
#include <vector>

#include "txcoord/schemas/ids.h"
#include "txcoord/schemas/json.h"

namespace txcoord::participant {
namespace {

using Poco::Net::HTTPClientSession;

// Shorter than the coordinator's server-side keep-alive timeout (15 s), so that a connection
// idle this long is reopened by Poco rather than found closed by the server.
constexpr int kIdleReuseSeconds = 5;
constexpr size_t kMaxEchoedBodyChars = 200;

Poco::Timespan ToTimespan(std::chrono::milliseconds ms) {
  return Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(ms.count()) * 1000);
}

std::string OneLine(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  std::replace(text.begin(), text.end(), '\r', ' ');
  return text;
}

// The contract's error body, when `body` is one.
std::optional<v1::ErrorReply> ErrorReplyOf(const std::string& body) {
  v1::ErrorReply reply;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(body, &reply, options).ok()) return std::nullopt;
  return reply;
}

// The contract's error body's message, or the start of whatever the body is.
std::string ErrorMessage(int status, const std::string& body) {
  const std::optional<v1::ErrorReply> parsed = ErrorReplyOf(body);
  if (parsed.has_value() && !parsed->error().message().empty()) {
    const v1::ErrorReply& reply = *parsed;
    return reply.error().message() + " (HTTP " + std::to_string(status) +
           (reply.error().code().empty() ? "" : " " + reply.error().code()) + ")";
  }
  return "HTTP " + std::to_string(status) + ": " +
         PrintableForMessage(body.empty() ? "(empty body)" : body, kMaxEchoedBodyChars);
}

Status StatusForHttp(int status, const std::string& body, std::string_view what) {
  std::string message = std::string(what) + ": " + ErrorMessage(status, body);
  if (status == 409) return Status::Conflict(std::move(message));
  if (status == 404) {
    // Only the coordinator's own NOT_FOUND says the transaction is unknown, which a participant
    // in doubt takes as abort (presumed abort). A 404 from a proxy, or from a URL with a wrong
    // path, says nothing about the transaction: retry, and say what is wrong.
    const std::optional<v1::ErrorReply> reply = ErrorReplyOf(body);
    if (reply.has_value() && reply->error().code() == "NOT_FOUND") {
      return Status::NotFound(std::move(message));
    }
    return Status::Unavailable(message +
                               "; a 404 without the contract's NOT_FOUND error body, so not the "
                               "coordinator's answer (is the coordinator URL right?)");
  }
  if (status == 401) {
    return Status::InvalidArgument(message + "; check the bearer token the client sends");
  }
  if (status == 429 || status >= 500) return Status::Unavailable(std::move(message));
  if (status >= 400) return Status::InvalidArgument(std::move(message));
  return Status::Unavailable(message + "; not a reply the contract defines");
}

template <typename Message>
Status ParseReply(const std::string& body, Message* message) {
  google::protobuf::util::JsonParseOptions options;
  // A newer coordinator may add fields (the contract allows it); they must not break the client.
  options.ignore_unknown_fields = true;
  auto status = google::protobuf::util::JsonStringToMessage(body, message, options);
  if (!status.ok()) {
    return Status::Internal("the coordinator's reply is not a " + message->GetDescriptor()->name() +
                            " record: " + std::string(status.message()));
  }
  return Status::Ok();
}

std::string ToJson(const google::protobuf::Message& message) {
  // Defaults are left out: an absent gtid asks the coordinator to generate one, "gtid": "" would
  // be an invalid id.
  return MessageToJson(message, JsonOptions{.print_defaults = false});
}

}  // namespace

struct CoordinatorClient::HttpCall {
  std::string method;
  std::string path;
  std::string body;  // sent when method is POST
  std::string gtid;  // Tx-Gtid, when not empty
  std::string what;  // "commit order-42", for messages
  std::string traceparent;
  std::chrono::milliseconds timeout{0};
  bool idempotent = true;     // safe to send again on a new connection
  bool changes_state = true;  // a lost reply is kUnknownOutcome (else kUnavailable)
};

struct CoordinatorClient::HttpReply {
  int status = 0;
  std::string body;
};

// Idle kept-alive sessions. Thread-safe.
class CoordinatorClient::Pool {
 public:
  // `tls` null: plain HTTP.
  Pool(std::string host, uint16_t port, size_t max_idle, Poco::Net::Context::Ptr tls)
      : host_(std::move(host)), port_(port), max_idle_(max_idle), tls_(std::move(tls)) {}

  // A session and whether it has served a request before.
  std::pair<std::unique_ptr<HTTPClientSession>, bool> Take() {
    {
      std::lock_guard lock(mu_);
      if (!idle_.empty()) {
        auto session = std::move(idle_.back());
        idle_.pop_back();
        return {std::move(session), true};
      }
    }
    std::unique_ptr<HTTPClientSession> session =
        tls_.isNull() ? std::make_unique<HTTPClientSession>(host_, port_)
                      : std::make_unique<Poco::Net::HTTPSClientSession>(host_, port_, tls_);
    session->setKeepAlive(true);
    session->setKeepAliveTimeout(Poco::Timespan(kIdleReuseSeconds, 0));
    return {std::move(session), false};
  }

  void Put(std::unique_ptr<HTTPClientSession> session) {
    std::lock_guard lock(mu_);
    if (idle_.size() < max_idle_) idle_.push_back(std::move(session));
  }

 private:
  const std::string host_;
  const uint16_t port_;
  const size_t max_idle_;
  const Poco::Net::Context::Ptr tls_;
  std::mutex mu_;
  std::vector<std::unique_ptr<HTTPClientSession>> idle_;  // GUARDED_BY(mu_)
};

Result<std::unique_ptr<CoordinatorClient>> CoordinatorClient::Create(
    CoordinatorClientOptions options) {
  Poco::URI uri;
  try {
    uri = Poco::URI(options.url);
  } catch (const Poco::Exception& e) {
    return Status::InvalidArgument("coordinator URL \"" + PrintableForMessage(options.url) +
                                   "\" is not a URL: " + e.displayText());
  }
  const bool https = uri.getScheme() == "https";
  if ((!https && uri.getScheme() != "http") || uri.getHost().empty() ||
      !(uri.getPath().empty() || uri.getPath() == "/") || !uri.getRawQuery().empty()) {
    return Status::InvalidArgument("coordinator URL \"" + PrintableForMessage(options.url) +
                                   "\" must be http://host:port or https://host:port (no path)");
  }
  if (options.max_idle_connections < 0) options.max_idle_connections = 0;
  Poco::Net::Context::Ptr tls;
  if (https) {
    auto context = NewClientContext(options.tls);
    if (!context.ok()) return context.status();
    tls = *context;
  }
  std::string host = uri.getHost();
  const uint16_t port = uri.getPort();
  return std::unique_ptr<CoordinatorClient>(
      new CoordinatorClient(std::move(options), std::move(host), port, std::move(tls)));
}

CoordinatorClient::CoordinatorClient(CoordinatorClientOptions options, std::string host,
                                     uint16_t port, Poco::Net::Context::Ptr tls)
    : options_(std::move(options)),
      host_(std::move(host)),
      port_(port),
      pool_(std::make_unique<Pool>(host_, port_, static_cast<size_t>(options_.max_idle_connections),
                                   std::move(tls))) {}

CoordinatorClient::~CoordinatorClient() = default;

Result<CoordinatorClient::HttpReply> CoordinatorClient::Send(const HttpCall& call) {
  const std::chrono::milliseconds timeout = call.timeout;
  for (int attempt = 0;; ++attempt) {
    auto [session, reused] = pool_->Take();
    session->setTimeout(ToTimespan(options_.connect_timeout), ToTimespan(timeout),
                        ToTimespan(timeout));

    Poco::Net::HTTPRequest request(call.method, call.path, Poco::Net::HTTPMessage::HTTP_1_1);
    request.setKeepAlive(true);
    request.set("Accept", "application/json");
    if (!call.gtid.empty()) request.set("Tx-Gtid", call.gtid);
    if (!call.traceparent.empty()) request.set("traceparent", call.traceparent);
    if (!options_.bearer_token.empty()) {
      request.set("Authorization", "Bearer " + options_.bearer_token);
    }
    if (call.method == Poco::Net::HTTPRequest::HTTP_POST) {
      request.setContentType("application/json");
      request.setContentLength64(static_cast<Poco::Int64>(call.body.size()));
    }

    // Phase 1: until the request is fully written, the coordinator cannot have acted on it.
    try {
      std::ostream& out = session->sendRequest(request);
      out.write(call.body.data(), static_cast<std::streamsize>(call.body.size()));
      out.flush();
      if (!out.good()) throw Poco::Net::NetException("writing the request failed");
    } catch (const Poco::Exception& e) {
      if (reused && attempt == 0) continue;  // a stale kept-alive connection; nothing was sent
      return Status::Unavailable(call.what + ": cannot send to the coordinator at " + host_ + ":" +
                                 std::to_string(port_) + ": " + OneLine(e.displayText()));
    }

    // Phase 2: the request was sent; without a complete reply its outcome is unknown.
    try {
      Poco::Net::HTTPResponse response;
      std::istream& in = session->receiveResponse(response);
      HttpReply reply;
      reply.status = static_cast<int>(response.getStatus());
      const size_t limit = options_.max_reply_bytes;
      char buffer[8192];
      while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
        reply.body.append(buffer, static_cast<size_t>(in.gcount()));
        if (reply.body.size() > limit) {
          const std::string message = call.what + ": the coordinator's reply exceeds " +
                                      std::to_string(limit) + " bytes (max_reply_bytes)";
          return call.changes_state ? Status::UnknownOutcome(message)
                                    : Status::Unavailable(message);
        }
      }
      if (in.bad()) throw Poco::Net::NetException("reading the reply body failed");
      if (response.getKeepAlive()) pool_->Put(std::move(session));
      return reply;
    } catch (const Poco::Exception& e) {
      // The coordinator closed a kept-alive connection without reading our request: the usual
      // keep-alive race. Sending again is safe for idempotent calls.
      const bool closed_unanswered = dynamic_cast<const Poco::Net::NoMessageException*>(&e) ||
                                     dynamic_cast<const Poco::Net::ConnectionResetException*>(&e);
      if (reused && attempt == 0 && closed_unanswered && call.idempotent) continue;
      std::string message = call.what + ": ";
      if (dynamic_cast<const Poco::TimeoutException*>(&e) != nullptr) {
        message +=
            "no reply from the coordinator within " + std::to_string(timeout.count()) + " ms";
      } else {
        message += "no complete reply from the coordinator: " + OneLine(e.displayText());
      }
      if (!call.changes_state) return Status::Unavailable(message);
      return Status::UnknownOutcome(message +
                                    "; the request may have taken effect: retry it (it is "
                                    "idempotent with a gtid) or read the transaction back");
    }
  }
}

Result<TransactionReply> CoordinatorClient::SendForTransaction(const HttpCall& call) {
  Result<HttpReply> reply = Send(call);
  if (!reply.ok()) return reply.status();
  if (reply->status < 200 || reply->status > 299) {
    return StatusForHttp(reply->status, reply->body, call.what);
  }
  TransactionReply out;
  out.http_status = reply->status;
  if (Status st = ParseReply(reply->body, &out.transaction); !st.ok()) {
    return Status::UnknownOutcome(call.what + ": " + st.message());
  }
  return out;
}

Result<TransactionReply> CoordinatorClient::Begin(const v1::BeginRequest& request,
                                                  const CallOptions& call) {
  std::string what = "begin";
  if (!request.gtid().empty()) {
    TXCOORD_RETURN_IF_ERROR(ValidateId("gtid", request.gtid()).WithContext(what));
    what += " " + request.gtid();
  }
  HttpCall http;
  http.method = Poco::Net::HTTPRequest::HTTP_POST;
  http.path = "/v1/transactions";
  http.body = ToJson(request);
  http.gtid = request.gtid();
  http.what = what;
  http.traceparent = call.traceparent;
  http.idempotent = !request.gtid().empty();
  if (call.timeout.count() > 0) {
    http.timeout = call.timeout;
  } else if (request.wait()) {
    http.timeout = std::max(options_.wait_timeout,
                            std::chrono::milliseconds(request.timeout_ms()) + options_.timeout);
  } else {
    http.timeout = options_.timeout;
  }
  return SendForTransaction(http);
}

Status CoordinatorClient::RegisterBranch(std::string_view gtid, const v1::Branch& branch,
                                         const CallOptions& call) {
  const std::string what = "register branch " + PrintableForMessage(branch.branch_id()) + " of " +
                           PrintableForMessage(gtid);
  TXCOORD_RETURN_IF_ERROR(ValidateId("gtid", gtid).WithContext(what));
  TXCOORD_RETURN_IF_ERROR(ValidateId("branch_id", branch.branch_id()).WithContext(what));
  HttpCall http;
  http.method = Poco::Net::HTTPRequest::HTTP_POST;
  http.path = "/v1/transactions/" + std::string(gtid) + "/branches";
  http.body = ToJson(branch);
  http.gtid = std::string(gtid);
  http.what = what;
  http.traceparent = call.traceparent;
  http.timeout = call.timeout.count() > 0 ? call.timeout : options_.timeout;
  Result<HttpReply> reply = Send(http);
  if (!reply.ok()) return reply.status();
  if (reply->status < 200 || reply->status > 299) {
    return StatusForHttp(reply->status, reply->body, what);
  }
  return Status::Ok();
}

Result<TransactionReply> CoordinatorClient::Complete(std::string_view verb, std::string_view gtid,
                                                     bool wait, const CallOptions& call) {
  const std::string what = std::string(verb) + " " + PrintableForMessage(gtid);
  TXCOORD_RETURN_IF_ERROR(ValidateId("gtid", gtid).WithContext(what));
  v1::CompleteRequest body;
  body.set_wait(wait);
  HttpCall http;
  http.method = Poco::Net::HTTPRequest::HTTP_POST;
  http.path = "/v1/transactions/" + std::string(gtid) + "/" + std::string(verb);
  http.body = ToJson(body);
  http.gtid = std::string(gtid);
  http.what = what;
  http.traceparent = call.traceparent;
  http.timeout = call.timeout.count() > 0 ? call.timeout
                 : wait                   ? options_.wait_timeout
                                          : options_.timeout;
  return SendForTransaction(http);
}

Result<TransactionReply> CoordinatorClient::Commit(std::string_view gtid, bool wait,
                                                   const CallOptions& call) {
  return Complete("commit", gtid, wait, call);
}

Result<TransactionReply> CoordinatorClient::Abort(std::string_view gtid, bool wait,
                                                  const CallOptions& call) {
  return Complete("abort", gtid, wait, call);
}

Result<v1::Transaction> CoordinatorClient::Get(std::string_view gtid, const CallOptions& call) {
  const std::string what = "get " + PrintableForMessage(gtid);
  TXCOORD_RETURN_IF_ERROR(ValidateId("gtid", gtid).WithContext(what));
  HttpCall http;
  http.method = Poco::Net::HTTPRequest::HTTP_GET;
  http.path = "/v1/transactions/" + std::string(gtid);
  http.gtid = std::string(gtid);
  http.what = what;
  http.traceparent = call.traceparent;
  http.timeout = call.timeout.count() > 0 ? call.timeout : options_.timeout;
  http.changes_state = false;
  Result<HttpReply> reply = Send(http);
  if (!reply.ok()) return reply.status();
  if (reply->status != 200) return StatusForHttp(reply->status, reply->body, what);
  v1::Transaction transaction;
  if (Status st = ParseReply(reply->body, &transaction); !st.ok()) {
    return Status::Unavailable(what + ": " + st.message());
  }
  return transaction;
}

}  // namespace txcoord::participant
