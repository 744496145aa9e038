// A participant's HTTP/1.1 server on bare sockets, for tests that script how it misbehaves:
// Poco's HTTPServer cannot drop a connection mid-call without a reply, and its pool would cap
// how many calls can be held in progress at once. Keep-alive, one thread per connection; the
// handler decides each reply.
//
// Thread safety: the handler runs on the connections' threads, concurrently, so whatever it
// touches needs its own lock. Its owner must outlive the server: declare the server after what
// the handler uses, so that it is destroyed (and its threads joined) first.
#pragma once

#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/StreamSocket.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace txcoord::integration {

struct RawRequest {
  std::string head;  // The request line and headers, without the blank line after them.
  std::string body;
  std::string path;  // "/x/prepare"
  // "x:prepare": the last path segment after the rest, which is how the tests name a call.
  std::string key;
};

struct RawReply {
  int status = 200;
  std::string body;  // Sent as application/json.
};

class RawHttpParticipant {
 public:
  // nullopt from the handler closes the connection with no reply: a participant dying mid-call.
  using Handler = std::function<std::optional<RawReply>(const RawRequest&)>;

  explicit RawHttpParticipant(Handler handler);
  ~RawHttpParticipant();

  RawHttpParticipant(const RawHttpParticipant&) = delete;
  RawHttpParticipant& operator=(const RawHttpParticipant&) = delete;

  // http://127.0.0.1:PORT followed by `path`.
  std::string Url(const std::string& path) const;

 private:
  void Accept();
  // Reads requests off one kept-alive connection until it closes.
  void Serve(Poco::Net::StreamSocket s);

  const Handler handler_;
  Poco::Net::ServerSocket socket_;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<Poco::Net::StreamSocket> open_;  // GUARDED_BY(mu_)
  std::vector<std::thread> connections_;       // GUARDED_BY(mu_)
};

}  // namespace txcoord::integration
