#include "raw_http_participant.h"

#include <utility>

namespace txcoord::integration {

RawHttpParticipant::RawHttpParticipant(Handler handler)
    : handler_(std::move(handler)), socket_(Poco::Net::SocketAddress("127.0.0.1", 0)) {
  acceptor_ = std::thread([this] { Accept(); });
}

RawHttpParticipant::~RawHttpParticipant() {
  stopping_ = true;
  // close() does not wake a thread blocked in accept(); a connection does.
  try {
    Poco::Net::StreamSocket wake(socket_.address());
  } catch (const std::exception&) {
  }
  acceptor_.join();
  socket_.close();
  std::vector<std::thread> connections;
  {
    std::lock_guard lock(mu_);
    for (auto& s : open_) {
      try {
        s.shutdown();
      } catch (const std::exception&) {
        // closed already (a scripted death)
      }
    }
    connections.swap(connections_);
  }
  for (auto& t : connections) t.join();
}

std::string RawHttpParticipant::Url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(socket_.address().port()) + path;
}

void RawHttpParticipant::Accept() {
  while (!stopping_) {
    try {
      Poco::Net::StreamSocket s = socket_.acceptConnection();
      std::lock_guard lock(mu_);
      open_.push_back(s);
      connections_.emplace_back([this, s]() mutable { Serve(s); });
    } catch (const std::exception&) {
      if (stopping_) return;
    }
  }
}

void RawHttpParticipant::Serve(Poco::Net::StreamSocket s) {
  std::string buffer;
  char chunk[4096];
  try {
    for (;;) {
      size_t header_end;
      while ((header_end = buffer.find("\r\n\r\n")) == std::string::npos) {
        const int n = s.receiveBytes(chunk, sizeof chunk);
        if (n <= 0) return;
        buffer.append(chunk, n);
      }
      RawRequest request;
      request.head = buffer.substr(0, header_end);
      size_t length = 0;
      if (auto at = request.head.find("Content-Length: "); at != std::string::npos) {
        length = std::stoul(request.head.substr(at + 16));
      }
      while (buffer.size() < header_end + 4 + length) {
        const int n = s.receiveBytes(chunk, sizeof chunk);
        if (n <= 0) return;
        buffer.append(chunk, n);
      }
      request.body = buffer.substr(header_end + 4, length);
      buffer.erase(0, header_end + 4 + length);
      // "POST /x/prepare HTTP/1.1"
      request.path = request.head.substr(5, request.head.find(' ', 5) - 5);
      const size_t last_slash = request.path.rfind('/');
      request.key =
          request.path.substr(1, last_slash - 1) + ":" + request.path.substr(last_slash + 1);
      const std::optional<RawReply> reply = handler_(request);
      if (!reply.has_value()) {
        s.close();
        return;
      }
      const std::string text = "HTTP/1.1 " + std::to_string(reply->status) +
                               " Scripted\r\nContent-Type: application/json\r\nContent-Length: " +
                               std::to_string(reply->body.size()) + "\r\n\r\n" + reply->body;
      s.sendBytes(text.data(), static_cast<int>(text.size()));
    }
  } catch (const std::exception&) {
    // The coordinator closed the connection (its timeout, or it was killed): nothing to answer.
  }
}

}  // namespace txcoord::integration
