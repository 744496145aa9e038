#include "api_client.h"

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/StreamCopier.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <ostream>
#include <thread>

#include "txcoord/schemas/json.h"

namespace txcoord::integration {

ApiReply Send(int port, const ApiRequest& request, std::chrono::milliseconds timeout) {
  Poco::Net::HTTPClientSession session("127.0.0.1", static_cast<Poco::UInt16>(port));
  session.setTimeout(Poco::Timespan(static_cast<long>(timeout.count() / 1000),
                                    static_cast<long>(timeout.count() % 1000) * 1000));
  Poco::Net::HTTPRequest http(request.method, request.path, Poco::Net::HTTPMessage::HTTP_1_1);
  if (!request.accept.empty()) http.set("Accept", request.accept);
  if (!request.token.empty()) http.set("Authorization", "Bearer " + request.token);
  for (const auto& [name, value] : request.headers) http.set(name, value);
  if (!request.body.empty()) {
    http.setContentType(request.content_type);
    if (request.chunked) {
      http.setChunkedTransferEncoding(true);
    } else {
      http.setContentLength64(static_cast<Poco::Int64>(request.body.size()));
    }
  }
  std::ostream& out = session.sendRequest(http);
  out << request.body;
  Poco::Net::HTTPResponse response;
  std::istream& in = session.receiveResponse(response);
  ApiReply reply;
  reply.status = response.getStatus();
  reply.content_type = response.getContentType();
  for (const auto& [name, value] : response) reply.headers.add(name, value);
  Poco::StreamCopier::copyToString(in, reply.body);
  return reply;
}

std::string ExpectError(const ApiReply& reply, int status, const std::string& code,
                        const std::string& context) {
  EXPECT_EQ(reply.status, status) << context << "\nbody: " << reply.body;
  EXPECT_EQ(reply.content_type, "application/json") << context;
  // The shape, key by key: an object with only "error", holding only "code" and "message".
  google::protobuf::Struct object;
  if (!google::protobuf::util::JsonStringToMessage(reply.body, &object).ok()) {
    ADD_FAILURE() << context << ": the body is not a JSON object: " << reply.body;
    return "";
  }
  EXPECT_EQ(object.fields().size(), 1u) << context << ": " << reply.body;
  auto error = object.fields().find("error");
  if (error == object.fields().end() || !error->second.has_struct_value()) {
    ADD_FAILURE() << context << ": no \"error\" object in " << reply.body;
    return "";
  }
  const auto& fields = error->second.struct_value().fields();
  EXPECT_EQ(fields.size(), 2u) << context << ": " << reply.body;
  auto code_field = fields.find("code");
  auto message_field = fields.find("message");
  if (code_field == fields.end() || message_field == fields.end() ||
      !code_field->second.has_string_value() || !message_field->second.has_string_value()) {
    ADD_FAILURE() << context << ": error needs string code and message: " << reply.body;
    return "";
  }
  EXPECT_EQ(code_field->second.string_value(), code) << context << ": " << reply.body;
  EXPECT_FALSE(message_field->second.string_value().empty()) << context;
  return message_field->second.string_value();
}

v1::Transaction ParseTransaction(const ApiReply& reply) {
  v1::Transaction transaction;
  const Status status = JsonToMessage(reply.body, &transaction);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\nbody: " << reply.body;
  return transaction;
}

namespace {

class ParticipantHandler final : public Poco::Net::HTTPRequestHandler {
 public:
  explicit ParticipantHandler(FakeParticipant& participant) : participant_(participant) {}

  void handleRequest(Poco::Net::HTTPServerRequest& request,
                     Poco::Net::HTTPServerResponse& response) override {
    ++participant_.in_progress();
    FakeParticipant::Call call;
    call.path = request.getURI();
    call.phase = request.get("Tx-Phase", "");
    call.gtid = request.get("Tx-Gtid", "");
    call.traceparent = request.get("traceparent", "");
    call.timestamp = request.get("Tx-Timestamp", "");
    call.signature = request.get("Tx-Signature", "");
    Poco::StreamCopier::copyToString(request.stream(), call.body);
    if (participant_.delay().count() > 0) std::this_thread::sleep_for(participant_.delay());
    participant_.Record(std::move(call));
    --participant_.in_progress();
    response.setStatus(Poco::Net::HTTPResponse::HTTP_OK);
    response.setContentType("application/json");
    response.setContentLength(2);
    response.send() << "{}";
  }

 private:
  FakeParticipant& participant_;
};

class ParticipantFactory final : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  explicit ParticipantFactory(FakeParticipant& participant) : participant_(participant) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(
      const Poco::Net::HTTPServerRequest&) override {
    return new ParticipantHandler(participant_);
  }

 private:
  FakeParticipant& participant_;
};

}  // namespace

FakeParticipant::FakeParticipant(std::chrono::milliseconds delay) : delay_(delay) {
  Poco::Net::ServerSocket socket(Poco::Net::SocketAddress("127.0.0.1", 0));
  port_ = socket.address().port();
  Poco::Net::HTTPServerParams::Ptr params = new Poco::Net::HTTPServerParams;
  params->setMaxThreads(64);
  params->setMaxQueued(256);
  params->setKeepAlive(true);
  server_ =
      std::make_unique<Poco::Net::HTTPServer>(new ParticipantFactory(*this), pool_, socket, params);
  server_->start();
}

FakeParticipant::~FakeParticipant() { server_->stopAll(true); }

std::string FakeParticipant::Url(const std::string& name) const {
  return "http://127.0.0.1:" + std::to_string(port_) + "/" + name;
}

std::vector<FakeParticipant::Call> FakeParticipant::Calls() const {
  std::lock_guard lock(mu_);
  return calls_;
}

void FakeParticipant::Record(Call call) {
  std::lock_guard lock(mu_);
  calls_.push_back(std::move(call));
}

}  // namespace txcoord::integration
