// The load generator's HTTP client: kept-alive Poco connections to one server, shared by the
// client threads of a run. The same stack measures the round-trip floor and drives the
// transactions, so the floor and the figures pay the same client costs.
//
// A bounded pool: at most max_connections are open at once, and a call waits while all are busy.
// A participant whose server has a fixed number of threads (a kept-alive connection holds one
// until it closes) must not be handed more connections than it can serve next to the
// coordinator's; see the README ("set-ups").
//
// Thread-safety: Post and Get may be called from any thread concurrently.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "txcoord/status.h"

namespace Poco::Net {
class HTTPClientSession;
}

namespace txcoord::bench {

struct HttpReply {
  int status = 0;
  std::string body;
};

class ConnectionPool {
 public:
  ConnectionPool(std::string host, uint16_t port, int max_connections,
                 std::chrono::milliseconds timeout);
  ~ConnectionPool();

  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  // POST `path` with a JSON body; `gtid`, when not empty, goes in Tx-Gtid. Any HTTP reply is a
  // reply; kUnavailable when the exchange failed (refused, reset, timed out), with the reason.
  // A failed connection is closed and a new one opened by the next call; nothing is retried.
  Result<HttpReply> Post(std::string_view path, std::string_view body, std::string_view gtid = {});
  Result<HttpReply> Get(std::string_view path);

  std::string address() const { return host_ + ":" + std::to_string(port_); }

 private:
  Result<HttpReply> Exchange(const std::string& method, std::string_view path,
                             std::string_view body, std::string_view gtid);
  std::unique_ptr<Poco::Net::HTTPClientSession> Take();
  void Put(std::unique_ptr<Poco::Net::HTTPClientSession> session);

  const std::string host_;
  const uint16_t port_;
  const int max_connections_;
  const std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Poco::Net::HTTPClientSession>> idle_;  // GUARDED_BY(mu_)
  int open_ = 0;  // GUARDED_BY(mu_): idle and in use
};

// The top-level "state" of a transaction record as the coordinator prints it ({"gtid": ...,
// "protocol": ..., "state": ..., ..., "branches": [...]}): the first "state" member, which comes
// before the branches' own. Empty when there is none.
std::string_view TopLevelState(std::string_view record);

}  // namespace txcoord::bench
