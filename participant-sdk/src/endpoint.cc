#include "txcoord/participant/endpoint.h"

#include <Poco/Exception.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/SecureServerSocket.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/ThreadPool.h>
#include <Poco/URI.h>
#include <google/protobuf/util/json_util.h>
#include <strings.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <istream>
#include <mutex>
#include <ostream>

#include "json_scan.h"
#include "txcoord/participant/server_socket.h"
#include "txcoord/request_gate.h"
#include "txcoord/schemas/ids.h"
#include "txcoord/schemas/json.h"
#include "txcoord/v1/api.pb.h"

namespace txcoord::participant {
namespace {

using Poco::Net::HTTPRequest;
using Poco::Net::HTTPResponse;
using Poco::Net::HTTPServerRequest;
using Poco::Net::HTTPServerResponse;

constexpr int kListenBacklog = 256;
constexpr int kThreadIdleSeconds = 60;
constexpr int kMaxKeepAliveRequests = 10000;
// Unread bodies up to this size are skipped to keep a connection usable; larger ones close it.
constexpr std::streamsize kMaxDiscardBytes = 64 * 1024;
constexpr size_t kMaxMessageBytes = 500;
constexpr size_t kMaxEchoedChars = 200;

constexpr std::string_view kTxGtid = "Tx-Gtid";
constexpr std::string_view kTxBranchId = "Tx-Branch-Id";
constexpr std::string_view kTxPhase = "Tx-Phase";
constexpr std::string_view kTxAttempt = "Tx-Attempt";
constexpr std::string_view kTxOnePhase = "Tx-One-Phase";

using SagaSteps = std::map<std::string, internal::SagaStepRoute>;

// One line, at most kMaxMessageBytes, valid UTF-8: it goes into a JSON string, then into the
// coordinator's last_error.
std::string ReplyMessage(std::string_view text) {
  std::string line(text);
  for (char& c : line) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  if (line.size() > kMaxMessageBytes) {
    size_t cut = kMaxMessageBytes;
    // Back off to the start of a UTF-8 sequence.
    while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;
    line = line.substr(0, cut) + "...";
  }
  if (!internal::IsValidUtf8(line)) return PrintableForMessage(line, kMaxMessageBytes);
  return line;
}

std::string ErrorBody(std::string_view code, std::string_view message) {
  v1::ErrorReply reply;
  reply.mutable_error()->set_code(std::string(code));
  reply.mutable_error()->set_message(ReplyMessage(message));
  return MessageToJson(reply);
}

std::string RequestPath(const HTTPServerRequest& request) {
  const std::string& uri = request.getURI();
  return uri.substr(0, uri.find('?'));
}

bool HasBody(const HTTPServerRequest& request) {
  // A request with neither length nor chunking has no body (RFC 9112 section 6.3); Poco would
  // wait for the peer to close, so it is not read.
  return request.getChunkedTransferEncoding() ||
         (request.hasContentLength() && request.getContentLength64() > 0);
}

// Poco parses the next request of a kept-alive connection where the handler stopped reading, so
// an unread body would be taken for the next request. Read it away, or close after the reply.
void DiscardBody(HTTPServerRequest& request, HTTPServerResponse& response) {
  if (!HasBody(request)) return;
  std::istream& body = request.stream();
  body.ignore(kMaxDiscardBytes);
  if (body.peek() != std::char_traits<char>::eof()) response.setKeepAlive(false);
}

// The body, or nullopt when it is larger than `max_bytes` (then the connection is to be closed:
// the rest of the body is still on it).
std::optional<std::string> ReadBody(HTTPServerRequest& request, size_t max_bytes) {
  if (!HasBody(request)) return std::string();
  if (request.hasContentLength() &&
      static_cast<uint64_t>(request.getContentLength64()) > max_bytes) {
    return std::nullopt;
  }
  std::string body;
  std::istream& in = request.stream();
  char buffer[8192];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    body.append(buffer, static_cast<size_t>(in.gcount()));
    if (body.size() > max_bytes) return std::nullopt;
  }
  if (in.bad()) throw Poco::IOException("reading the request body failed");
  return body;
}

void Send(HTTPServerResponse& response, int status, const std::string& content_type,
          const std::string& body) {
  response.setStatusAndReason(static_cast<HTTPResponse::HTTPStatus>(status),
                              status == 425 ? std::string("Too Early")
                                            : HTTPResponse::getReasonForStatus(
                                                  static_cast<HTTPResponse::HTTPStatus>(status)));
  response.setContentType(content_type);
  response.setContentLength64(static_cast<Poco::Int64>(body.size()));
  response.set("Cache-Control", "no-store");
  // Flushed here rather than when Poco destroys the response, after the handler: by then Stop
  // may have shut the connection (see RequestGate).
  std::ostream& out = response.send();
  out.write(body.data(), static_cast<std::streamsize>(body.size()));
  out.flush();
}

void SendError(HTTPServerResponse& response, int status, std::string_view code,
               std::string_view message) {
  Send(response, status, "application/json", ErrorBody(code, message));
}

std::string_view ReplyCode(PhaseResult::Kind kind) {
  switch (kind) {
    case PhaseResult::Kind::kDone:
      return "OK";
    case PhaseResult::Kind::kRefused:
      return "CONFLICT";
    case PhaseResult::Kind::kInProgress:
      return "IN_PROGRESS";
    case PhaseResult::Kind::kTransient:
      return "UNAVAILABLE";
    case PhaseResult::Kind::kFailed:
      return "INTERNAL";
  }
  return "INTERNAL";
}

bool IsCallbackPhase(Phase phase) {
  return phase == Phase::kPrepare || phase == Phase::kCommit || phase == Phase::kAbort ||
         phase == Phase::kCanCommit || phase == Phase::kPreCommit;
}

// "/" segment ("/" segment)*, segments of unreserved characters.
bool IsValidBasePath(std::string_view path) {
  if (path.size() < 2 || path.front() != '/' || path.back() == '/') return false;
  char previous = '\0';
  for (char c : path) {
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '~' || c == '-';
    if (!unreserved && c != '/') return false;
    if (c == '/' && previous == '/') return false;
    previous = c;
  }
  return true;
}

std::optional<int> ParseAttempt(std::string_view text) {
  if (text.empty() || text.size() > 9) return std::nullopt;
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  if (value < 1) return std::nullopt;
  return value;
}

int64_t SystemUnixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Base of the server's handlers: counts as in progress at `gate` while it exists, and turns any
// exception into a 500 with the contract's body (or nothing, when the reply was already sent).
class GatedHandler : public Poco::Net::HTTPRequestHandler {
 public:
  explicit GatedHandler(RequestGate* gate) : gate_(gate) {}
  ~GatedHandler() override {
    if (gate_ != nullptr) gate_->Leave();
  }

  void handleRequest(HTTPServerRequest& request, HTTPServerResponse& response) final {
    try {
      Handle(request, response);
    } catch (const std::exception& e) {
      if (response.sent()) return;  // the client went away mid-reply
      try {
        response.setKeepAlive(false);
        SendError(response, 500, "INTERNAL",
                  "the participant failed to answer: " + PrintableForMessage(e.what()));
      } catch (const std::exception&) {
        // The connection is broken; Poco closes it.
      }
    }
  }

 protected:
  virtual void Handle(HTTPServerRequest& request, HTTPServerResponse& response) = 0;

 private:
  RequestGate* const gate_;
};

class ErrorHandler final : public GatedHandler {
 public:
  ErrorHandler(RequestGate* gate, int status, std::string code, std::string message,
               std::string allow = "", bool close = false)
      : GatedHandler(gate),
        status_(status),
        code_(std::move(code)),
        message_(std::move(message)),
        allow_(std::move(allow)),
        close_(close) {}

 private:
  void Handle(HTTPServerRequest& request, HTTPServerResponse& response) override {
    if (close_) response.setKeepAlive(false);
    DiscardBody(request, response);
    if (!allow_.empty()) response.set("Allow", allow_);
    SendError(response, status_, code_, message_);
  }

  const int status_;
  const std::string code_;
  const std::string message_;
  const std::string allow_;
  const bool close_;
};

// Who answers a callback: a branch handler for the path's phase, or a saga step for the path's
// phase (or, when its action and compensate paths are the same, for the body's).
struct CallbackTarget {
  BranchHandler* branch = nullptr;
  SagaStepHandler* step = nullptr;
  std::optional<Phase> phase;  // nullopt only for a saga step whose two paths are the same
};

class CallbackHandler final : public GatedHandler {
 public:
  CallbackHandler(RequestGate* gate, const CallbackServerOptions& options, CallbackTarget target)
      : GatedHandler(gate), options_(options), target_(target) {}

 private:
  void Handle(HTTPServerRequest& request, HTTPServerResponse& response) override {
    std::optional<std::string> body = ReadBody(request, options_.max_body_bytes);
    if (!body) {
      response.setKeepAlive(false);  // the rest of the body is still on the connection
      SendError(response, 413, "TOO_LARGE",
                "the callback body exceeds this participant's limit of " +
                    std::to_string(options_.max_body_bytes) + " bytes");
      return;
    }

    if (!options_.callback_secrets.empty()) {
      const int64_t now = options_.clock ? options_.clock() : SystemUnixSeconds();
      Status verified = VerifyCallbackAny(options_.callback_secrets,
                                          request.get(std::string(kTimestampHeader), ""),
                                          request.get(std::string(kSignatureHeader), ""),
                                          request.getURI(), *body, now, options_.max_skew_seconds);
      if (!verified.ok()) {
        SendError(response, 401, "UNAUTHENTICATED", "callback refused: " + verified.message());
        return;
      }
    }

    Result<CallbackContext> ctx = Parse(request, *body);
    if (!ctx.ok()) {
      SendError(response, 400, "INVALID_ARGUMENT", ctx.status().message());
      return;
    }

    const PhaseResult result = Dispatch(*ctx);
    if (result.done()) {
      Send(response, 200, "application/json", R"({"result":"done"})");
    } else {
      SendError(response, result.http_status(), ReplyCode(result.kind()), result.message());
    }
  }

  Result<CallbackContext> Parse(const HTTPServerRequest& request, const std::string& body) const {
    v1::Callback callback;
    if (Status st = JsonToMessage(body, &callback); !st.ok()) {
      // The contract lets a coordinator add fields: a callback with fields this SDK does not
      // know is still a callback (as the client does with replies). Only the strict parse's
      // refusals for anything else are answered 400.
      google::protobuf::util::JsonParseOptions lenient;
      lenient.ignore_unknown_fields = true;
      callback.Clear();
      if (!google::protobuf::util::JsonStringToMessage(body, &callback, lenient).ok()) {
        return Status::InvalidArgument("the body is not a callback: " + st.message());
      }
    }
    TXCOORD_RETURN_IF_ERROR(ValidateId("gtid", callback.gtid()));
    TXCOORD_RETURN_IF_ERROR(ValidateId("branch_id", callback.branch_id()));
    Phase phase = Phase::kAction;
    if (target_.phase) {
      phase = *target_.phase;
      const std::string_view path_phase = PhaseName(phase);
      if (callback.phase() != path_phase) {
        return Status::InvalidArgument(
            "the body's phase \"" + PrintableForMessage(callback.phase(), kMaxEchoedChars) +
            "\" differs from the path's \"" + std::string(path_phase) + "\"");
      }
    } else {
      std::optional<Phase> body_phase = ParsePhase(callback.phase());
      if (!body_phase || (*body_phase != Phase::kAction && *body_phase != Phase::kCompensate)) {
        return Status::InvalidArgument("the body's phase \"" +
                                       PrintableForMessage(callback.phase(), kMaxEchoedChars) +
                                       "\" is not a saga step's: action or compensate");
      }
      phase = *body_phase;
    }
    const std::pair<std::string_view, const std::string*> expected[] = {
        {kTxGtid, &callback.gtid()},
        {kTxBranchId, &callback.branch_id()},
        {kTxPhase, &callback.phase()},
    };
    for (const auto& [name, value] : expected) {
      if (!request.has(std::string(name))) {
        return Status::InvalidArgument(std::string(name) + " header missing");
      }
      const std::string& header = request.get(std::string(name));
      if (header != *value) {
        return Status::InvalidArgument(
            std::string(name) + " header \"" + PrintableForMessage(header, kMaxEchoedChars) +
            "\" differs from the body's \"" + PrintableForMessage(*value, kMaxEchoedChars) + "\"");
      }
    }

    CallbackContext ctx;
    ctx.gtid = callback.gtid();
    ctx.branch_id = callback.branch_id();
    ctx.phase = phase;
    if (request.has(std::string(kTxAttempt))) {
      std::optional<int> attempt = ParseAttempt(request.get(std::string(kTxAttempt)));
      if (!attempt) return Status::InvalidArgument("Tx-Attempt must be a positive integer");
      ctx.attempt = *attempt;
    }
    if (request.has(std::string(kTxOnePhase))) {
      const std::string& one_phase = request.get(std::string(kTxOnePhase));
      if (one_phase != "true" && one_phase != "false") {
        return Status::InvalidArgument("Tx-One-Phase must be \"true\" or \"false\"");
      }
      ctx.one_phase = one_phase == "true";
      if (ctx.one_phase && phase != Phase::kCommit) {
        return Status::InvalidArgument("Tx-One-Phase: true is only valid on commit");
      }
    }
    ctx.traceparent = request.get("traceparent", "");
    ctx.payload = callback.payload();
    if (!callback.has_payload()) ctx.payload.set_null_value(google::protobuf::NULL_VALUE);
    const std::optional<std::string_view> raw = internal::RawMember(body, "payload");
    if (raw) {
      ctx.payload_json = std::string(*raw);
    } else if (callback.has_payload()) {
      // The member's name was written with escapes; the printed value is the next best thing.
      ctx.payload_json = MessageToJson(callback.payload(), JsonOptions{.print_defaults = false});
    } else {
      ctx.payload_json = "null";
    }
    return ctx;
  }

  PhaseResult Dispatch(const CallbackContext& ctx) const {
    try {
      if (target_.step != nullptr) {
        if (ctx.phase == Phase::kAction) return target_.step->Action(ctx);
        if (ctx.phase == Phase::kCompensate) return target_.step->Compensate(ctx);
        return PhaseResult::Failed("phase not routed");  // Parse admits only the two
      }
      switch (ctx.phase) {
        case Phase::kPrepare:
          return target_.branch->Prepare(ctx);
        case Phase::kCommit:
          return target_.branch->Commit(ctx);
        case Phase::kAbort:
          return target_.branch->Abort(ctx);
        case Phase::kCanCommit:
          return target_.branch->CanCommit(ctx);
        case Phase::kPreCommit:
          return target_.branch->PreCommit(ctx);
        default:
          return PhaseResult::Failed("phase not routed");  // the router only creates the above
      }
    } catch (const std::exception& e) {
      return PhaseResult::Failed(std::string("the ") + std::string(PhaseName(ctx.phase)) +
                                 " handler threw: " + PrintableForMessage(e.what(), 300));
    } catch (...) {
      return PhaseResult::Failed(std::string("the ") + std::string(PhaseName(ctx.phase)) +
                                 " handler threw a non-standard exception");
    }
  }

  const CallbackServerOptions& options_;
  const CallbackTarget target_;
};

class RouteHandler final : public GatedHandler {
 public:
  RouteHandler(RequestGate* gate, const CallbackServerOptions& options, const Route& route)
      : GatedHandler(gate), options_(options), route_(route) {}

 private:
  void Handle(HTTPServerRequest& request, HTTPServerResponse& response) override {
    std::optional<std::string> body = ReadBody(request, options_.max_body_bytes);
    if (!body) {
      response.setKeepAlive(false);
      SendError(response, 413, "TOO_LARGE",
                "the request body exceeds the limit of " + std::to_string(options_.max_body_bytes) +
                    " bytes");
      return;
    }
    HttpRequest req;
    req.method = request.getMethod();
    const std::string& uri = request.getURI();
    const size_t q = uri.find('?');
    req.path = uri.substr(0, q);
    if (q != std::string::npos) req.query = uri.substr(q + 1);
    for (const auto& [name, value] : request) req.headers.emplace_back(name, value);
    req.body = std::move(*body);

    HttpResponse res;
    try {
      route_(req, res);
    } catch (const std::exception& e) {
      res = HttpResponse();
      res.SetError(500, "INTERNAL",
                   "the route " + req.method + " " + req.path +
                       " threw: " + PrintableForMessage(e.what(), 300));
    } catch (...) {
      res = HttpResponse();
      res.SetError(500, "INTERNAL", "the route threw a non-standard exception");
    }
    for (const auto& [name, value] : res.headers) response.set(name, value);
    Send(response, res.status, res.content_type, res.body);
  }

  const CallbackServerOptions& options_;
  const Route& route_;
};

}  // namespace

std::string HttpRequest::Header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n.size() == name.size() && strncasecmp(n.data(), name.data(), n.size()) == 0) return v;
  }
  return "";
}

std::string HttpRequest::QueryParam(std::string_view name) const {
  try {
    Poco::URI uri("/?" + query);
    for (const auto& [k, v] : uri.getQueryParameters()) {
      if (k == name) return v;
    }
  } catch (const Poco::Exception&) {
    // A malformed query has no parameters.
  }
  return "";
}

void HttpResponse::SetError(int http_status, std::string_view code, std::string_view message) {
  status = http_status;
  content_type = "application/json";
  body = ErrorBody(code, message);
}

namespace {

// Picks the handler of each request. Owned by the HTTPServer (Poco deletes it with the server).
class Router final : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  Router(const CallbackServerOptions& options,
         const std::map<std::string, BranchHandler*>& handlers, const SagaSteps& saga_steps,
         const std::map<std::pair<std::string, std::string>, Route>& routes, RequestGate& gate)
      : options_(options),
        handlers_(handlers),
        saga_steps_(saga_steps),
        routes_(routes),
        gate_(gate) {}

  // Called by Poco for each request, on the connection's thread.
  Poco::Net::HTTPRequestHandler* createRequestHandler(const HTTPServerRequest& request) override {
    if (!gate_.Enter()) {
      return new ErrorHandler(nullptr, 503, "UNAVAILABLE",
                              "the participant is shutting down; retry shortly", "",
                              /*close=*/true);
    }
    const std::string path = RequestPath(request);
    const std::string& method = request.getMethod();
    if (auto step = saga_steps_.find(path); step != saga_steps_.end()) {
      if (method != HTTPRequest::HTTP_POST) {
        return new ErrorHandler(
            &gate_, 405, "INVALID_ARGUMENT",
            "saga callbacks are POST requests, not " + PrintableForMessage(method, 16), "POST");
      }
      return new CallbackHandler(
          &gate_, options_,
          CallbackTarget{.step = step->second.handler, .phase = step->second.phase});
    }
    const size_t slash = path.rfind('/');
    if (slash != std::string::npos && slash > 0) {
      auto handler = handlers_.find(path.substr(0, slash));
      if (handler != handlers_.end()) {
        const std::string phase_name = path.substr(slash + 1);
        std::optional<Phase> phase = ParsePhase(phase_name);
        if (!phase || !IsCallbackPhase(*phase)) {
          return new ErrorHandler(&gate_, 404, "NOT_FOUND",
                                  "no phase \"" + PrintableForMessage(phase_name, 64) +
                                      "\" under " + handler->first +
                                      "; phases served: prepare, commit, abort, can-commit, "
                                      "pre-commit");
        }
        if (method != HTTPRequest::HTTP_POST) {
          return new ErrorHandler(
              &gate_, 405, "INVALID_ARGUMENT",
              "callbacks are POST requests, not " + PrintableForMessage(method, 16), "POST");
        }
        return new CallbackHandler(&gate_, options_,
                                   CallbackTarget{.branch = handler->second, .phase = *phase});
      }
    }
    if (auto route = routes_.find({method, path}); route != routes_.end()) {
      return new RouteHandler(&gate_, options_, route->second);
    }
    std::string allow;
    for (const auto& [key, route] : routes_) {
      if (key.second == path) allow += (allow.empty() ? "" : ", ") + key.first;
    }
    if (!allow.empty()) {
      return new ErrorHandler(&gate_, 405, "INVALID_ARGUMENT",
                              "method " + PrintableForMessage(method, 16) + " is not allowed on " +
                                  PrintableForMessage(path, kMaxEchoedChars) + "; use " + allow,
                              allow);
    }
    return new ErrorHandler(
        &gate_, 404, "NOT_FOUND",
        "nothing at " + PrintableForMessage(path, kMaxEchoedChars) + " on this participant");
  }

 private:
  const CallbackServerOptions& options_;
  const std::map<std::string, BranchHandler*>& handlers_;
  const SagaSteps& saga_steps_;
  const std::map<std::pair<std::string, std::string>, Route>& routes_;
  RequestGate& gate_;
};

}  // namespace

class CallbackServer::Impl {
 public:
  Impl(const CallbackServerOptions& options, const std::map<std::string, BranchHandler*>& handlers,
       const SagaSteps& saga_steps,
       const std::map<std::pair<std::string, std::string>, Route>& routes)
      : options_(options),
        handlers_(handlers),
        saga_steps_(saga_steps),
        routes_(routes),
        pool_(std::min(2, std::max(1, options.max_threads)), std::max(1, options.max_threads),
              kThreadIdleSeconds) {}

  Result<int> Start(const std::string& address) {
    Poco::Net::ServerSocket socket = NewPlainServerSocket();
    if (!options_.tls.cert_file.empty()) {
      auto tls = NewServerContext(options_.tls);
      if (!tls.ok()) return tls.status();
      socket = Poco::Net::SecureServerSocket(*tls);
    }
    try {
      Poco::Net::SocketAddress where(address);
      socket.bind(where, /*reuseAddress=*/true, /*reusePort=*/false);
      socket.listen(kListenBacklog);
    } catch (const Poco::Exception& e) {
      std::string message = "cannot listen on " + PrintableForMessage(address, 100) + ": ";
      if (e.code() == EADDRINUSE) {
        message += "the address is already in use";
      } else {
        message += e.displayText();
      }
      return Status::Unavailable(message);
    }
    const int port = socket.address().port();

    Poco::Net::HTTPServerParams::Ptr params = new Poco::Net::HTTPServerParams;
    params->setMaxThreads(std::max(1, options_.max_threads));
    params->setMaxQueued(std::max(1, options_.max_queued));
    params->setThreadIdleTime(Poco::Timespan(kThreadIdleSeconds, 0));
    params->setKeepAlive(true);
    params->setKeepAliveTimeout(
        Poco::Timespan(static_cast<long>(options_.keep_alive_timeout.count()), 0));
    params->setMaxKeepAliveRequests(kMaxKeepAliveRequests);
    params->setTimeout(Poco::Timespan(static_cast<long>(options_.request_timeout.count()), 0));
    params->setSoftwareVersion("txcoord-participant");
    server_ = std::make_unique<Poco::Net::HTTPServer>(
        new Router(options_, handlers_, saga_steps_, routes_, gate_), pool_, socket, params);
    server_->start();
    return port;
  }

  void Stop() {
    if (!server_) return;
    server_->stop();  // closes the listening socket and connections not yet picked up
    gate_.Close();
    gate_.WaitIdle();        // requests in progress finish and are answered
    server_->stopAll(true);  // then every connection is shut: idle ones, half-received requests
    pool_.joinAll();
    server_.reset();
  }

 private:
  const CallbackServerOptions& options_;
  const std::map<std::string, BranchHandler*>& handlers_;
  const SagaSteps& saga_steps_;
  const std::map<std::pair<std::string, std::string>, Route>& routes_;
  RequestGate gate_;
  Poco::ThreadPool pool_;  // before server_: the server uses it until destroyed
  std::unique_ptr<Poco::Net::HTTPServer> server_;
};

CallbackServer::CallbackServer(CallbackServerOptions options) : options_(std::move(options)) {}

CallbackServer::~CallbackServer() { Stop(); }

Status CallbackServer::AddHandler(std::string base_path, BranchHandler* handler) {
  if (impl_ || stopped_) return Status::Conflict("AddHandler after Start");
  if (handler == nullptr) return Status::InvalidArgument("AddHandler: null handler");
  if (!IsValidBasePath(base_path)) {
    return Status::InvalidArgument("base path \"" + PrintableForMessage(base_path, 100) +
                                   "\" must be \"/\" and segments of [A-Za-z0-9._~-], without a "
                                   "trailing \"/\", e.g. \"/bank\"");
  }
  for (const auto& [key, route] : routes_) {
    if (key.second.starts_with(base_path + "/")) {
      return Status::InvalidArgument("route " + key.second + " is under base path " + base_path);
    }
  }
  for (const auto& [path, step] : saga_steps_) {
    if (path.starts_with(base_path + "/")) {
      return Status::InvalidArgument("saga step path " + path + " is under base path " + base_path);
    }
  }
  if (!handlers_.emplace(base_path, handler).second) {
    return Status::AlreadyExists("a handler is already registered for " + base_path);
  }
  return Status::Ok();
}

Status CallbackServer::AddSagaStep(std::string action_path, std::string compensate_path,
                                   SagaStepHandler* handler) {
  if (impl_ || stopped_) return Status::Conflict("AddSagaStep after Start");
  if (handler == nullptr) return Status::InvalidArgument("AddSagaStep: null handler");
  const std::pair<std::string_view, const std::string*> paths[] = {
      {"action", &action_path}, {"compensate", &compensate_path}};
  for (const auto& [what, path] : paths) {
    if (!IsValidBasePath(*path)) {
      return Status::InvalidArgument(std::string(what) + " path \"" +
                                     PrintableForMessage(*path, 100) +
                                     "\" must be \"/\" and segments of [A-Za-z0-9._~-], without "
                                     "a trailing \"/\", e.g. \"/credit/reserve\"");
    }
    for (const auto& [base, branch] : handlers_) {
      if (path->starts_with(base + "/")) {
        return Status::InvalidArgument(std::string(what) + " path " + *path +
                                       " is under the handler's base path " + base);
      }
    }
    if (saga_steps_.contains(*path)) {
      return Status::AlreadyExists("a saga step is already registered at " + *path);
    }
    for (const auto& [key, route] : routes_) {
      if (key.second == *path) {
        return Status::AlreadyExists("the path " + *path + " is a route's (" + key.first + ")");
      }
    }
  }
  if (action_path == compensate_path) {
    saga_steps_.emplace(action_path, internal::SagaStepRoute{handler, std::nullopt});
  } else {
    saga_steps_.emplace(action_path, internal::SagaStepRoute{handler, Phase::kAction});
    saga_steps_.emplace(compensate_path, internal::SagaStepRoute{handler, Phase::kCompensate});
  }
  return Status::Ok();
}

Status CallbackServer::AddRoute(std::string method, std::string path, Route route) {
  if (impl_ || stopped_) return Status::Conflict("AddRoute after Start");
  if (!route) return Status::InvalidArgument("AddRoute: empty route function");
  if (method.empty() ||
      !std::all_of(method.begin(), method.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
    return Status::InvalidArgument("route method must be an upper-case HTTP method, e.g. GET");
  }
  if (path != "/" && !IsValidBasePath(path)) {
    return Status::InvalidArgument("route path \"" + PrintableForMessage(path, 100) +
                                   "\" must be \"/\" and segments of [A-Za-z0-9._~-]");
  }
  for (const auto& [base, handler] : handlers_) {
    if (path.starts_with(base + "/")) {
      return Status::InvalidArgument("route " + path + " is under the handler's base path " + base);
    }
  }
  if (saga_steps_.contains(path)) {
    return Status::AlreadyExists("the path " + path + " is a saga step's");
  }
  if (!routes_.emplace(std::make_pair(method, path), std::move(route)).second) {
    return Status::AlreadyExists("a route is already registered for " + method + " " + path);
  }
  return Status::Ok();
}

Result<int> CallbackServer::Start(const std::string& address) {
  if (impl_ || stopped_) return Status::Conflict("the callback server was already started");
  for (size_t i = 0; i < options_.callback_secrets.size(); ++i) {
    if (options_.callback_secrets[i].empty()) {
      return Status::InvalidArgument("callback secret " + std::to_string(i + 1) +
                                     " is empty; an empty secret would let anyone sign");
    }
  }
  auto impl = std::make_unique<Impl>(options_, handlers_, saga_steps_, routes_);
  Result<int> port = impl->Start(address);
  if (!port.ok()) return port.status();
  impl_ = std::move(impl);
  port_ = *port;
  return port_;
}

void CallbackServer::Stop() {
  if (impl_) impl_->Stop();
  impl_.reset();
  stopped_ = stopped_ || port_ != 0;
}

}  // namespace txcoord::participant
