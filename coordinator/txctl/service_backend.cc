// The Backend through the running txcoord: one HTTP/1.1 (or HTTPS) session per txctl run, kept
// alive across the calls of a command (list pages, purge slices).
#include <Poco/Exception.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/NetException.h>
#include <Poco/URI.h>
#include <google/protobuf/util/json_util.h>

#include <istream>
#include <memory>
#include <ostream>
#include <string>
#include <utility>

#include "backend.h"
#include "txcoord/participant/tls.h"

namespace txcoord::txctl {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kConnectTimeout{3000};
constexpr milliseconds kCallTimeout{30000};
constexpr size_t kMaxReplyBytes = 64 * 1024 * 1024;

std::string Encoded(const std::string& text) {
  std::string out;
  Poco::URI::encode(text, "/?#[]@!$&'()*+,;=%", out);
  return out;
}

// Replies are parsed leniently: a newer coordinator may add fields this txctl does not know.
Status ParseJson(const std::string& body, google::protobuf::Message* message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  const auto status = google::protobuf::util::JsonStringToMessage(body, message, options);
  if (!status.ok()) {
    return Status::Unavailable("the coordinator's reply is not a " +
                               message->GetDescriptor()->name() + ": " +
                               std::string(status.message()));
  }
  return Status::Ok();
}

class ServiceBackend final : public Backend {
 public:
  ServiceBackend(std::string url, std::string host, uint16_t port, Poco::Net::Context::Ptr tls,
                 std::string token)
      : url_(std::move(url)),
        host_(std::move(host)),
        port_(port),
        tls_(std::move(tls)),
        token_(std::move(token)) {}

  Result<v1::TransactionList> List(const ListRequest& request) override {
    std::string query = "limit=" + std::to_string(request.limit);
    if (!request.state.empty()) query += "&state=" + Encoded(request.state);
    if (request.older_than)
      query += "&older_than_ms=" + std::to_string(request.older_than->count());
    if (!request.after.empty()) query += "&after=" + Encoded(request.after);
    v1::TransactionList list;
    TXCOORD_RETURN_IF_ERROR(Call("GET", "/v1/transactions?" + query, "", &list));
    return list;
  }

  Result<v1::Transaction> Get(const std::string& gtid) override {
    v1::Transaction tx;
    TXCOORD_RETURN_IF_ERROR(Call("GET", TransactionPath(gtid), "", &tx));
    return tx;
  }

  Result<v1::TransactionHistory> History(const std::string& gtid) override {
    v1::TransactionHistory history;
    TXCOORD_RETURN_IF_ERROR(Call("GET", TransactionPath(gtid) + "/history", "", &history));
    return history;
  }

  Result<v1::Transaction> Retry(const std::string& gtid) override {
    v1::Transaction tx;
    TXCOORD_RETURN_IF_ERROR(Call("POST", TransactionPath(gtid) + "/retry", "{}", &tx));
    return tx;
  }

  Result<v1::Transaction> Abort(const std::string& gtid) override {
    v1::Transaction tx;
    TXCOORD_RETURN_IF_ERROR(
        Call("POST", TransactionPath(gtid) + "/abort", R"({"wait":false})", &tx));
    return tx;
  }

  Result<v1::Transaction> Resolve(const std::string& gtid, const std::string& branch_id,
                                  const v1::ResolveRequest& request) override {
    std::string body;
    google::protobuf::util::JsonPrintOptions print;
    print.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(request, &body, print);
    v1::Transaction tx;
    TXCOORD_RETURN_IF_ERROR(Call(
        "POST", TransactionPath(gtid) + "/branches/" + Encoded(branch_id) + "/resolve", body, &tx));
    return tx;
  }

  Result<PurgeSlice> Purge(milliseconds older_than, int64_t limit) override {
    std::string query = "older_than_ms=" + std::to_string(older_than.count());
    query += limit > 0 ? "&limit=" + std::to_string(limit) : std::string("&dry_run=true");
    v1::PurgeReply reply;
    TXCOORD_RETURN_IF_ERROR(Call("DELETE", "/v1/transactions?" + query, "", &reply));
    return PurgeSlice{reply.purged(), reply.remaining()};
  }

  std::string Describe() const override { return "the coordinator at " + url_; }

 private:
  static std::string TransactionPath(const std::string& gtid) {
    return "/v1/transactions/" + Encoded(gtid);
  }

  Poco::Net::HTTPClientSession& Session() {
    if (!session_) {
      if (tls_.isNull()) {
        session_ = std::make_unique<Poco::Net::HTTPClientSession>(host_, port_);
      } else {
        session_ = std::make_unique<Poco::Net::HTTPSClientSession>(host_, port_, tls_);
      }
      session_->setKeepAlive(true);
      const auto span = [](milliseconds ms) { return Poco::Timespan(ms.count() * 1000); };
      session_->setTimeout(span(kConnectTimeout), span(kCallTimeout), span(kCallTimeout));
    }
    return *session_;
  }

  // One request; 2xx replies are parsed into `reply`, the others become the Status the header
  // of backend.h lists, carrying the coordinator's own message.
  Status Call(const std::string& method, const std::string& path, const std::string& body,
              google::protobuf::Message* reply) {
    int status = 0;
    std::string text;
    try {
      Poco::Net::HTTPRequest request(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
      request.setKeepAlive(true);
      request.set("Accept", "application/json");
      if (!token_.empty()) request.set("Authorization", "Bearer " + token_);
      if (!body.empty()) {
        request.setContentType("application/json");
        request.setContentLength64(static_cast<Poco::Int64>(body.size()));
      }
      std::ostream& out = Session().sendRequest(request);
      out << body;
      out.flush();
      Poco::Net::HTTPResponse response;
      std::istream& in = Session().receiveResponse(response);
      char buffer[8192];
      while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
        text.append(buffer, static_cast<size_t>(in.gcount()));
        if (text.size() > kMaxReplyBytes) {
          session_.reset();
          return Status::Unavailable("the reply of " + Describe() + " is larger than 64 MiB");
        }
      }
      status = static_cast<int>(response.getStatus());
      if (!response.getKeepAlive()) session_.reset();
    } catch (const Poco::Exception& e) {
      session_.reset();
      std::string message = "cannot reach " + Describe() + ": " + e.displayText();
      if (dynamic_cast<const Poco::Net::ConnectionRefusedException*>(&e) != nullptr) {
        message += "; is txcoord running? (with it stopped, use --store)";
      }
      return Status::Unavailable(message);
    } catch (const std::exception& e) {
      session_.reset();
      return Status::Unavailable("cannot reach " + Describe() + ": " + e.what());
    }
    if (status >= 200 && status <= 299) return ParseJson(text, reply);
    v1::ErrorReply error;
    std::string message;
    if (ParseJson(text, &error).ok() && !error.error().message().empty()) {
      message = error.error().message();
    } else {
      message = "HTTP " + std::to_string(status) + " from " + Describe();
    }
    switch (status) {
      case 400:
      case 405:
        return Status::InvalidArgument(message);
      case 401:
        return Status::PermissionDenied(Describe() + " refused the token (401 " + message +
                                        "); give --token-file with one of its tokens");
      case 403:
        return Status::PermissionDenied(message);
      case 404:
        return Status::NotFound(message);
      case 409:
        return Status::Conflict(message);
      case 413:
        return Status::TooLarge(message);
      default:
        return Status::Unavailable(message + " (HTTP " + std::to_string(status) + ")");
    }
  }

  const std::string url_;
  const std::string host_;
  const uint16_t port_;
  const Poco::Net::Context::Ptr tls_;
  const std::string token_;
  std::unique_ptr<Poco::Net::HTTPClientSession> session_;
};

}  // namespace

Result<std::unique_ptr<Backend>> OpenServiceBackend(const Context& ctx) {
  const std::string& url = ctx.coordinator_url;
  Poco::URI uri;
  try {
    uri = Poco::URI(url);
  } catch (const Poco::Exception& e) {
    return Status::InvalidArgument("--coordinator " + url + " is not a URL: " + e.displayText());
  }
  const bool https = uri.getScheme() == "https";
  if ((!https && uri.getScheme() != "http") || uri.getHost().empty() ||
      (!uri.getPath().empty() && uri.getPath() != "/") || !uri.getQuery().empty()) {
    return Status::InvalidArgument("--coordinator " + url +
                                   " must be http://HOST:PORT or https://HOST:PORT");
  }
  Poco::Net::Context::Ptr tls;
  if (https) {
    auto context = participant::NewClientContext(ctx.tls);
    if (!context.ok()) return context.status();
    tls = *context;
  } else if (!ctx.tls.ca_file.empty() || !ctx.tls.cert_file.empty()) {
    return Status::InvalidArgument("--ca, --cert and --key are for an https:// --coordinator");
  }
  return std::unique_ptr<Backend>(std::make_unique<ServiceBackend>(
      url, uri.getHost(), uri.getPort(), std::move(tls), ctx.bearer_token));
}

Result<std::unique_ptr<Backend>> OpenBackend(const Context& ctx) {
  return ctx.offline() ? OpenOfflineBackend(ctx) : OpenServiceBackend(ctx);
}

}  // namespace txcoord::txctl
