#include "http_client.h"

#include <Poco/Exception.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Timespan.h>

#include <istream>
#include <ostream>
#include <utility>

namespace txcoord::bench {
namespace {

Poco::Timespan ToTimespan(std::chrono::milliseconds ms) {
  return Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(ms.count()) * 1000);
}

}  // namespace

ConnectionPool::ConnectionPool(std::string host, uint16_t port, int max_connections,
                               std::chrono::milliseconds timeout)
    : host_(std::move(host)), port_(port), max_connections_(max_connections), timeout_(timeout) {}

ConnectionPool::~ConnectionPool() = default;

std::unique_ptr<Poco::Net::HTTPClientSession> ConnectionPool::Take() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return !idle_.empty() || open_ < max_connections_; });
  if (!idle_.empty()) {
    auto session = std::move(idle_.back());
    idle_.pop_back();
    return session;
  }
  ++open_;
  lock.unlock();
  auto session = std::make_unique<Poco::Net::HTTPClientSession>(host_, port_);
  session->setKeepAlive(true);
  session->setTimeout(ToTimespan(timeout_));
  return session;
}

void ConnectionPool::Put(std::unique_ptr<Poco::Net::HTTPClientSession> session) {
  {
    std::lock_guard lock(mu_);
    if (session) {
      idle_.push_back(std::move(session));
    } else {
      --open_;  // closed after a failure: its slot is free again
    }
  }
  cv_.notify_one();
}

Result<HttpReply> ConnectionPool::Exchange(const std::string& method, std::string_view path,
                                           std::string_view body, std::string_view gtid) {
  auto session = Take();
  try {
    Poco::Net::HTTPRequest request(method, std::string(path), Poco::Net::HTTPMessage::HTTP_1_1);
    request.setKeepAlive(true);
    if (!gtid.empty()) request.set("Tx-Gtid", std::string(gtid));
    if (method == Poco::Net::HTTPRequest::HTTP_POST) {
      request.setContentType("application/json");
      request.setContentLength64(static_cast<Poco::Int64>(body.size()));
    }
    std::ostream& out = session->sendRequest(request);
    out.write(body.data(), static_cast<std::streamsize>(body.size()));
    Poco::Net::HTTPResponse response;
    std::istream& in = session->receiveResponse(response);
    HttpReply reply;
    reply.status = static_cast<int>(response.getStatus());
    char buffer[4096];
    while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
      reply.body.append(buffer, static_cast<size_t>(in.gcount()));
    }
    // A server that closes after this reply (Connection: close) makes the session reconnect on
    // its next request by itself.
    Put(std::move(session));
    return reply;
  } catch (const Poco::Exception& e) {
    Put(nullptr);
    return Status::Unavailable(method + " " + address() + std::string(path) + ": " +
                               e.displayText());
  } catch (const std::exception& e) {
    Put(nullptr);
    return Status::Unavailable(method + " " + address() + std::string(path) + ": " + e.what());
  }
}

Result<HttpReply> ConnectionPool::Post(std::string_view path, std::string_view body,
                                       std::string_view gtid) {
  return Exchange(Poco::Net::HTTPRequest::HTTP_POST, path, body, gtid);
}

Result<HttpReply> ConnectionPool::Get(std::string_view path) {
  return Exchange(Poco::Net::HTTPRequest::HTTP_GET, path, {}, {});
}

std::string_view TopLevelState(std::string_view record) {
  constexpr std::string_view kKey = "\"state\"";
  size_t at = record.find(kKey);
  if (at == std::string_view::npos) return {};
  at = record.find_first_not_of(" \t\r\n", at + kKey.size());
  if (at == std::string_view::npos || record[at] != ':') return {};
  at = record.find_first_not_of(" \t\r\n", at + 1);
  if (at == std::string_view::npos || record[at] != '"') return {};
  const size_t end = record.find('"', at + 1);
  if (end == std::string_view::npos) return {};
  return record.substr(at + 1, end - at - 1);
}

}  // namespace txcoord::bench
