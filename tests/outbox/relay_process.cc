#include "relay_process.h"

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/StreamCopier.h>

namespace txcoord::outbox::testing {

RelayProcess::RelayProcess(const std::string& binary, const std::vector<std::string>& args,
                           const std::string& stderr_path,
                           const std::vector<std::string>& extra_env)
    : ChildProcess(binary, args, stderr_path, StderrFile::kAppend, extra_env) {}

HttpReply HttpGet(int port, const std::string& path) {
  HttpReply reply;
  try {
    Poco::Net::HTTPClientSession session("127.0.0.1", static_cast<Poco::UInt16>(port));
    session.setTimeout(Poco::Timespan(5, 0));
    Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_GET, path,
                                   Poco::Net::HTTPMessage::HTTP_1_1);
    session.sendRequest(request);
    Poco::Net::HTTPResponse response;
    std::istream& body = session.receiveResponse(response);
    Poco::StreamCopier::copyToString(body, reply.body);
    reply.status = static_cast<int>(response.getStatus());
  } catch (const std::exception&) {
    reply.status = 0;
  }
  return reply;
}

}  // namespace txcoord::outbox::testing
