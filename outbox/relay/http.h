// txrelay's HTTP side: GET /healthz (200 or 503, a JSON object per source) and GET /metrics
// (Prometheus text). Nothing else; every other path is 404 and a wrong method 405, with the
// contract's error body.
#pragma once

#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/ThreadPool.h>

#include <memory>

#include "txcoord/outbox/relay.h"
#include "txcoord/status.h"

namespace txcoord::relay {

// Binds and listens on `address`, speaking HTTPS when `tls` is set (participant::NewServerContext);
// kUnavailable saying what to do when it is in use.
Result<Poco::Net::ServerSocket> ListenOn(const Poco::Net::SocketAddress& address,
                                         Poco::Net::Context::Ptr tls = nullptr);

// Thread-safety: Start and Stop from one thread; requests run on a small pool and only read
// relay.Statuses(), which is thread-safe.
class StatusServer {
 public:
  explicit StatusServer(const outbox::Relay& relay);
  ~StatusServer();
  void Start(const Poco::Net::ServerSocket& socket);
  void Stop();

 private:
  const outbox::Relay& relay_;
  Poco::ThreadPool pool_;
  std::unique_ptr<Poco::Net::HTTPServer> server_;
};

}  // namespace txcoord::relay
