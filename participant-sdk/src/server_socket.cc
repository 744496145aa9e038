#include "txcoord/participant/server_socket.h"

#include <Poco/Net/NetException.h>
#include <Poco/Net/ServerSocketImpl.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocketImpl.h>
#include <Poco/Timespan.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>

namespace txcoord::participant {
namespace {

// Poco's Socket::poll contract on one descriptor with one poll(2): true when an operation of
// `mode` would not block (for reading that includes end of stream, a reset and any error, which
// poll reports whatever was asked); false when `timeout` passed first. Waits again for what is
// left after EINTR; other failures throw like Poco's (Poco::Net::NetException and kin).
bool PollOne(int fd, const Poco::Timespan& timeout, int mode) {
  if (fd < 0) throw Poco::Net::InvalidSocketException();
  short events = 0;
  if ((mode & Poco::Net::SocketImpl::SELECT_READ) != 0) events |= POLLIN;
  if ((mode & Poco::Net::SocketImpl::SELECT_WRITE) != 0) events |= POLLOUT;
  if ((mode & Poco::Net::SocketImpl::SELECT_ERROR) != 0) events |= POLLPRI;
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::microseconds(timeout.totalMicroseconds());
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now());
    // Rounded up to whole milliseconds: a timeout of a fraction of one still waits.
    const int64_t left_ms = left.count() <= 0 ? 0 : (left.count() + 999) / 1000;
    pollfd entry{.fd = fd, .events = events, .revents = 0};
    const int rc = ::poll(&entry, 1, static_cast<int>(std::min<int64_t>(left_ms, INT32_MAX)));
    if (rc >= 0) return rc > 0;
    if (errno != EINTR) {
      const int code = errno;
      throw Poco::Net::NetException("poll failed", code);
    }
  }
}

// An accepted connection: Poco's stream socket with PollOne as its poll.
class PollingStreamSocketImpl final : public Poco::Net::StreamSocketImpl {
 public:
  explicit PollingStreamSocketImpl(poco_socket_t fd) : StreamSocketImpl(fd) {}

  bool poll(const Poco::Timespan& timeout, int mode) override {
    return PollOne(sockfd(), timeout, mode);
  }
};

// The listening socket: hands out PollingStreamSocketImpl connections; its own poll (the
// TCPServer's acceptor waits on it) is PollOne too.
class PollingServerSocketImpl final : public Poco::Net::ServerSocketImpl {
 public:
  Poco::Net::SocketImpl* acceptConnection(Poco::Net::SocketAddress& client_address) override {
    const int listener = sockfd();
    if (listener < 0) throw Poco::Net::InvalidSocketException();
    sockaddr_storage address{};
    for (;;) {
      socklen_t length = sizeof address;
      // Close-on-exec: a process the server starts must not inherit its clients' connections.
      const int fd =
          ::accept4(listener, reinterpret_cast<sockaddr*>(&address), &length, SOCK_CLOEXEC);
      if (fd >= 0) {
        client_address = Poco::Net::SocketAddress(reinterpret_cast<sockaddr*>(&address), length);
        return new PollingStreamSocketImpl(fd);
      }
      if (errno != EINTR) error();  // throws the exception Poco's accept would
    }
  }

  bool poll(const Poco::Timespan& timeout, int mode) override {
    return PollOne(sockfd(), timeout, mode);
  }
};

// ServerSocket's constructor from an implementation is protected.
class PlainServerSocket final : public Poco::Net::ServerSocket {
 public:
  PlainServerSocket() : ServerSocket(new PollingServerSocketImpl, true) {}
};

}  // namespace

Poco::Net::ServerSocket NewPlainServerSocket() { return PlainServerSocket(); }

}  // namespace txcoord::participant
