// NewPlainServerSocket (server_socket.h): its connections poll with poll(2) and keep Poco's
// meaning of poll, and a Poco HTTPServer on it serves kept-alive connections as on Poco's own
// socket, closing them when idle and when the server stops. Real sockets on loopback.
#include "txcoord/participant/server_socket.h"

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Net/StreamSocketImpl.h>
#include <Poco/StreamCopier.h>
#include <Poco/ThreadPool.h>
#include <fcntl.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <typeinfo>

#include "txcoord/testing/poll.h"

namespace txcoord::participant {
namespace {

using namespace std::chrono_literals;
using Poco::Net::Socket;

Poco::Timespan Ms(int ms) {
  return Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(ms) * 1000);
}

struct Accepted {
  Poco::Net::ServerSocket listener = NewPlainServerSocket();
  Poco::Net::StreamSocket client;
  Poco::Net::StreamSocket server;

  Accepted() {
    listener.bind(Poco::Net::SocketAddress("127.0.0.1", 0), true);
    listener.listen(8);
    client.connect(listener.address());
    server = listener.acceptConnection();
  }
};

TEST(PlainServerSocket, AcceptedConnectionsAreItsOwnCloseOnExecSockets) {
  Accepted a;
  // Poco's accept would hand out a plain StreamSocketImpl, whose poll is the epoll one.
  EXPECT_NE(typeid(*a.server.impl()), typeid(Poco::Net::StreamSocketImpl));
  const int flags = ::fcntl(a.server.impl()->sockfd(), F_GETFD);
  ASSERT_GE(flags, 0);
  EXPECT_NE(flags & FD_CLOEXEC, 0);
  EXPECT_EQ(a.server.peerAddress().port(), a.client.address().port());
}

TEST(PlainServerSocket, PollKeepsPocosMeaning) {
  Accepted a;
  EXPECT_FALSE(a.server.poll(Ms(50), Socket::SELECT_READ)) << "nothing was sent";
  EXPECT_FALSE(a.server.poll(Ms(0), Socket::SELECT_READ));
  EXPECT_TRUE(a.server.poll(Ms(1000), Socket::SELECT_WRITE)) << "an idle socket can be written";

  a.client.sendBytes("x", 1);
  EXPECT_TRUE(a.server.poll(Ms(5000), Socket::SELECT_READ));
  char byte = 0;
  ASSERT_EQ(a.server.receiveBytes(&byte, 1), 1);
  EXPECT_EQ(byte, 'x');
  EXPECT_FALSE(a.server.poll(Ms(20), Socket::SELECT_READ)) << "the byte was read";

  a.client.close();
  EXPECT_TRUE(a.server.poll(Ms(5000), Socket::SELECT_READ)) << "end of stream is readable";
  EXPECT_EQ(a.server.receiveBytes(&byte, 1), 0);

  a.server.close();
  EXPECT_THROW(a.server.poll(Ms(10), Socket::SELECT_READ), Poco::Net::InvalidSocketException);
}

TEST(PlainServerSocket, TheListenerPollsForConnections) {
  Poco::Net::ServerSocket listener = NewPlainServerSocket();
  listener.bind(Poco::Net::SocketAddress("127.0.0.1", 0), true);
  listener.listen(8);
  EXPECT_FALSE(listener.poll(Ms(30), Socket::SELECT_READ)) << "nobody connected";
  Poco::Net::StreamSocket client(listener.address());
  EXPECT_TRUE(listener.poll(Ms(5000), Socket::SELECT_READ));
}

// ---------------------------------------------------------------------------------------------
// Poco's HTTPServer on it.

class Hello final : public Poco::Net::HTTPRequestHandler {
 public:
  void handleRequest(Poco::Net::HTTPServerRequest& request,
                     Poco::Net::HTTPServerResponse& response) override {
    std::string body;
    Poco::StreamCopier::copyToString(request.stream(), body);
    response.setContentType("text/plain");
    response.sendBuffer(("hello " + body).data(), 6 + body.size());
  }
};

class HelloFactory final : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  Poco::Net::HTTPRequestHandler* createRequestHandler(
      const Poco::Net::HTTPServerRequest&) override {
    return new Hello;
  }
};

class HelloServer {
 public:
  explicit HelloServer(int keep_alive_s) : pool_(2, 8), socket_(NewPlainServerSocket()) {
    socket_.bind(Poco::Net::SocketAddress("127.0.0.1", 0), true);
    socket_.listen(16);
    Poco::Net::HTTPServerParams::Ptr params = new Poco::Net::HTTPServerParams;
    params->setKeepAlive(true);
    params->setKeepAliveTimeout(Poco::Timespan(keep_alive_s, 0));
    params->setMaxThreads(8);
    server_ = std::make_unique<Poco::Net::HTTPServer>(new HelloFactory, pool_, socket_, params);
    server_->start();
  }
  ~HelloServer() {
    if (server_) server_->stopAll(true);
    pool_.joinAll();
  }
  uint16_t port() const { return socket_.address().port(); }
  int current_connections() const { return server_->currentConnections(); }
  void StopAll() { server_->stopAll(true); }

 private:
  Poco::ThreadPool pool_;
  Poco::Net::ServerSocket socket_;
  std::unique_ptr<Poco::Net::HTTPServer> server_;
};

std::string Post(Poco::Net::HTTPClientSession& session, const std::string& body) {
  Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_POST, "/",
                                 Poco::Net::HTTPMessage::HTTP_1_1);
  request.setContentLength(static_cast<std::streamsize>(body.size()));
  session.sendRequest(request) << body;
  Poco::Net::HTTPResponse response;
  std::string reply;
  Poco::StreamCopier::copyToString(session.receiveResponse(response), reply);
  return std::to_string(response.getStatus()) + " " + reply;
}

TEST(PlainServerSocket, AnHttpServerServesManyRequestsOnOneKeptAliveConnection) {
  HelloServer server(/*keep_alive_s=*/10);
  Poco::Net::HTTPClientSession session("127.0.0.1", server.port());
  session.setKeepAlive(true);
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(Post(session, std::to_string(i)), "200 hello " + std::to_string(i));
  }
  EXPECT_EQ(server.current_connections(), 1);
}

TEST(PlainServerSocket, AnIdleKeptAliveConnectionIsClosedAfterTheKeepAliveTimeout) {
  HelloServer server(/*keep_alive_s=*/1);
  Poco::Net::HTTPClientSession session("127.0.0.1", server.port());
  session.setKeepAlive(true);
  ASSERT_EQ(Post(session, "a"), "200 hello a");
  // The server's wait for the next request times out and it closes its end.
  Poco::Net::StreamSocket& socket = session.socket();
  ASSERT_TRUE(socket.poll(Poco::Timespan(30, 0), Socket::SELECT_READ)) << "never closed";
  char byte;
  EXPECT_EQ(socket.receiveBytes(&byte, 1), 0) << "the server sent something instead of closing";
  EXPECT_TRUE(
      txcoord::testing::PollUntil(30s, 10ms, [&] { return server.current_connections() == 0; }));
}

TEST(PlainServerSocket, StoppingTheServerClosesConnectionsWaitingForARequest) {
  HelloServer server(/*keep_alive_s=*/60);
  Poco::Net::HTTPClientSession session("127.0.0.1", server.port());
  session.setKeepAlive(true);
  ASSERT_EQ(Post(session, "b"), "200 hello b");
  server.StopAll();
  Poco::Net::StreamSocket& socket = session.socket();
  ASSERT_TRUE(socket.poll(Poco::Timespan(30, 0), Socket::SELECT_READ))
      << "the idle connection outlived the server";
  char byte;
  EXPECT_EQ(socket.receiveBytes(&byte, 1), 0);
}

}  // namespace
}  // namespace txcoord::participant
