// What the API tests need to talk to a real txcoord and to stand in for its participants:
// one-shot HTTP exchanges that keep every reply header, a strict reader of the contract's error
// body, and a fake participant that answers every callback.
//
// Not thread-safe unless said: Send may be called from several threads, each with its own
// connection; FakeParticipant is thread-safe.
#pragma once

#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/NameValueCollection.h>
#include <Poco/ThreadPool.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "txcoord/v1/api.pb.h"

namespace txcoord::integration {

struct ApiRequest {
  std::string method = "GET";
  std::string path = {};
  std::string body = {};
  std::string content_type = "application/json";  // sent only with a body
  std::string accept = {};
  std::string token = {};  // sent as "Authorization: Bearer <token>" when not empty
  std::vector<std::pair<std::string, std::string>> headers = {};
  bool chunked = false;  // send the body with chunked transfer encoding
};

struct ApiReply {
  int status = 0;
  std::string content_type;
  std::string body;
  Poco::Net::NameValueCollection headers;
  std::string Header(const std::string& name) const { return headers.get(name, ""); }
};

// One request on a new connection. Throws Poco::Exception when the connection fails.
ApiReply Send(int port, const ApiRequest& request,
              std::chrono::milliseconds timeout = std::chrono::seconds(20));

// Checks `reply` is the contract's error: `status`, a JSON body that is exactly
// {"error":{"code":code,"message":<non-empty>}} (nothing more, nothing less). Returns the
// message; adds a test failure naming `context` otherwise.
std::string ExpectError(const ApiReply& reply, int status, const std::string& code,
                        const std::string& context);

// Parses a JSON Transaction reply strictly; a test failure when it does not parse.
v1::Transaction ParseTransaction(const ApiReply& reply);

// A participant that answers 200 "{}" to every POST, after `delay`, and records each call.
class FakeParticipant {
 public:
  struct Call {
    std::string path;         // e.g. /bank/prepare
    std::string phase;        // Tx-Phase
    std::string gtid;         // Tx-Gtid
    std::string traceparent;  // empty when absent
    std::string timestamp;    // Tx-Timestamp, empty when absent
    std::string signature;    // Tx-Signature, empty when absent
    std::string body;
  };

  explicit FakeParticipant(std::chrono::milliseconds delay = std::chrono::milliseconds(0));
  ~FakeParticipant();

  int port() const { return port_; }
  // The base URL of a branch: http://127.0.0.1:PORT/<name>.
  std::string Url(const std::string& name) const;
  std::vector<Call> Calls() const;
  // How many calls are being answered right now.
  int InProgress() const { return in_progress_.load(); }

  // Used by the handler.
  void Record(Call call);
  std::chrono::milliseconds delay() const { return delay_; }
  std::atomic<int>& in_progress() { return in_progress_; }

 private:
  const std::chrono::milliseconds delay_;
  mutable std::mutex mu_;
  std::vector<Call> calls_;  // GUARDED_BY(mu_)
  std::atomic<int> in_progress_{0};
  int port_ = 0;
  Poco::ThreadPool pool_{2, 64};  // before server_, which uses it until destroyed
  std::unique_ptr<Poco::Net::HTTPServer> server_;
};

}  // namespace txcoord::integration
