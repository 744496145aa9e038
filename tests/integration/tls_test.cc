// TLS of txcoord, with a CA made by the test (the openssl command line): the API served over
// HTTPS with client certificates required, callbacks to an https participant that requires the
// coordinator's client certificate, and the refusals that make it worth having: a client without
// a certificate, a client that does not trust the server, a participant whose certificate does
// not chain to --callback-ca, and bad TLS flags.
#include "txcoord/participant/tls.h"

#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerRequestImpl.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/SecureServerSocket.h>
#include <Poco/Net/SecureStreamSocket.h>
#include <Poco/StreamCopier.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "txcoord/participant/client.h"
#include "txcoord/participant/endpoint.h"
#include "txcoord/participant/handler.h"
#include "txcoord/testing/test_pki.h"
#include "txcoord_process.h"

namespace txcoord::integration {
namespace {

using std::chrono::seconds;

using testing::TestPki;

// An https participant that requires a client certificate signed by `client_ca` and answers 200
// to every callback, remembering each path and the client certificate's CN.
class HttpsParticipant {
 public:
  struct Call {
    std::string path;
    std::string client_cn;
  };

  HttpsParticipant(const TestPki& pki, const std::string& cert, const std::string& client_ca) {
    auto context = participant::NewServerContext(
        {.cert_file = pki.Pem(cert), .key_file = pki.Key(cert), .client_ca_file = client_ca});
    if (!context.ok()) throw std::runtime_error(context.status().message());
    Poco::Net::SecureServerSocket socket(Poco::Net::SocketAddress("127.0.0.1", 0), 64, *context);
    port_ = socket.address().port();
    auto* params = new Poco::Net::HTTPServerParams;
    params->setMaxThreads(8);
    server_ = std::make_unique<Poco::Net::HTTPServer>(new Factory(this), socket, params);
    server_->start();
  }
  ~HttpsParticipant() { server_->stopAll(true); }

  std::string Url(const std::string& base) const {
    return "https://localhost:" + std::to_string(port_) + "/" + base;
  }
  std::vector<Call> Calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }

 private:
  class Handler final : public Poco::Net::HTTPRequestHandler {
   public:
    explicit Handler(HttpsParticipant* owner) : owner_(owner) {}
    void handleRequest(Poco::Net::HTTPServerRequest& request,
                       Poco::Net::HTTPServerResponse& response) override {
      std::string body;
      Poco::StreamCopier::copyToString(request.stream(), body);
      Call call{request.getURI(), ""};
      Poco::Net::SecureStreamSocket secure(
          static_cast<Poco::Net::HTTPServerRequestImpl&>(request).socket());
      if (secure.havePeerCertificate()) call.client_cn = secure.peerCertificate().commonName();
      {
        std::lock_guard lock(owner_->mu_);
        owner_->calls_.push_back(std::move(call));
      }
      response.setContentType("application/json");
      response.send() << R"({"result":"done"})";
    }

   private:
    HttpsParticipant* owner_;
  };
  class Factory final : public Poco::Net::HTTPRequestHandlerFactory {
   public:
    explicit Factory(HttpsParticipant* owner) : owner_(owner) {}
    Poco::Net::HTTPRequestHandler* createRequestHandler(
        const Poco::Net::HTTPServerRequest&) override {
      return new Handler(owner_);
    }

   private:
    HttpsParticipant* owner_;
  };

  int port_ = 0;
  std::unique_ptr<Poco::Net::HTTPServer> server_;
  std::mutex mu_;
  std::vector<Call> calls_;
};

struct Reply {
  int status = 0;
  std::string body;
};

// One HTTPS request to txcoord with `client` as the TLS context. Throws what Poco throws
// (handshake and verification failures).
Reply Request(int port, const Poco::Net::Context::Ptr& client, const std::string& method,
              const std::string& path, const std::string& body = "") {
  Poco::Net::HTTPSClientSession session("localhost", static_cast<Poco::UInt16>(port), client);
  session.setTimeout(Poco::Timespan(10, 0));
  Poco::Net::HTTPRequest request(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
  if (!body.empty()) {
    request.setContentType("application/json");
    request.setContentLength(static_cast<std::streamsize>(body.size()));
  }
  session.sendRequest(request) << body;
  Poco::Net::HTTPResponse response;
  std::istream& in = session.receiveResponse(response);
  Reply reply{static_cast<int>(response.getStatus()), ""};
  Poco::StreamCopier::copyToString(in, reply.body);
  return reply;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "txcoord_tls_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    pki_ = std::make_unique<TestPki>(dir_);
  }
  void TearDown() override {
    txcoord_.reset();
    std::filesystem::remove_all(dir_);
  }

  // txcoord serving HTTPS that requires client certificates from the test CA, calling https
  // participants with its own client certificate.
  void StartTxcoord(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--listen",
                                     "127.0.0.1:0",
                                     "--store",
                                     "sqlite://" + dir_ + "/txcoord.db",
                                     "--tls-cert",
                                     pki_->Pem("server"),
                                     "--tls-key",
                                     pki_->Key("server"),
                                     "--tls-client-ca",
                                     pki_->Pem("ca"),
                                     "--callback-ca",
                                     pki_->Pem("ca"),
                                     "--callback-cert",
                                     pki_->Pem("txcoord-client"),
                                     "--callback-key",
                                     pki_->Key("txcoord-client"),
                                     "--default-timeout-ms",
                                     "1500"};
    args.insert(args.end(), extra.begin(), extra.end());
    txcoord_ = std::make_unique<TxcoordProcess>(TXCOORD_BIN, args, dir_ + "/stderr");
    const std::optional<int> port = txcoord_->WaitForListening(seconds(10));
    ASSERT_TRUE(port.has_value()) << txcoord_->Stderr();
    port_ = *port;
  }

  Poco::Net::Context::Ptr AppClient(const std::string& ca = "ca", bool with_cert = true) {
    participant::TlsClientFiles files{.ca_file = pki_->Pem(ca)};
    if (with_cert) {
      files.cert_file = pki_->Pem("app-client");
      files.key_file = pki_->Key("app-client");
    }
    auto context = participant::NewClientContext(files);
    EXPECT_TRUE(context.ok()) << context.status().ToString();
    return context.ok() ? *context : nullptr;
  }

  std::string dir_;
  std::unique_ptr<TestPki> pki_;
  std::unique_ptr<TxcoordProcess> txcoord_;
  int port_ = 0;
};

std::string Begin(const std::string& gtid, const std::string& url) {
  return R"({"gtid":")" + gtid +
         R"(","protocol":"2pc","timeout_ms":1500,"wait":true,)"
         R"("branches":[{"branch_id":"a","url":")" +
         url + R"(/a"},{"branch_id":"b","url":")" + url + R"(/b"}]})";
}

TEST_F(TlsTest, TwoPhaseCommitOverHttpsBothWaysWithClientCertificates) {
  HttpsParticipant bank(*pki_, "server", pki_->Pem("ca"));
  StartTxcoord();

  const Reply healthz = Request(port_, AppClient(), "GET", "/healthz");
  EXPECT_EQ(healthz.status, 200) << healthz.body;
  const Reply begun =
      Request(port_, AppClient(), "POST", "/v1/transactions", Begin("tls-1", bank.Url("bank")));
  ASSERT_EQ(begun.status, 200) << begun.body;
  EXPECT_NE(begun.body.find(R"("state":"committed")"), std::string::npos) << begun.body;

  std::multiset<std::string> paths;
  for (const HttpsParticipant::Call& call : bank.Calls()) {
    paths.insert(call.path);
    EXPECT_EQ(call.client_cn, "txcoord-client") << call.path;
  }
  EXPECT_EQ(paths, (std::multiset<std::string>{"/bank/a/prepare", "/bank/b/prepare",
                                               "/bank/a/commit", "/bank/b/commit"}));
  EXPECT_NE(txcoord_->Stderr().find("HTTPS with client certificates"), std::string::npos);
}

TEST_F(TlsTest, ClientsWithoutACertificateOrTrustAreRefused) {
  StartTxcoord();
  // No client certificate: the server ends the handshake.
  EXPECT_ANY_THROW(Request(port_, AppClient("ca", /*with_cert=*/false), "GET", "/healthz"));
  // A client that trusts another CA refuses the server's certificate.
  EXPECT_ANY_THROW(Request(port_, AppClient("other-ca"), "GET", "/healthz"));
  // And the service still serves a proper client afterwards.
  EXPECT_EQ(Request(port_, AppClient(), "GET", "/healthz").status, 200);
}

TEST_F(TlsTest, AParticipantWhoseCertificateDoesNotChainToCallbackCaIsNeverTrusted) {
  HttpsParticipant rogue(*pki_, "rogue-server", /*client_ca=*/"");
  StartTxcoord();
  const Reply begun = Request(port_, AppClient(), "POST", "/v1/transactions",
                              Begin("tls-rogue", rogue.Url("bank")));
  // The prepares never reach it: the deadline aborts the transaction; its aborts are retried
  // (phase 2 is never given up), and the record says why.
  ASSERT_EQ(begun.status, 202) << begun.body;
  EXPECT_NE(begun.body.find(R"("state":"aborting")"), std::string::npos) << begun.body;
  EXPECT_NE(begun.body.find("ertificate"), std::string::npos) << begun.body;
  EXPECT_TRUE(rogue.Calls().empty());
}

// The SDK's coordinator client speaks https with a client certificate; without one it is refused.
TEST_F(TlsTest, TheSdkClientTalksToAnHttpsCoordinator) {
  HttpsParticipant bank(*pki_, "server", pki_->Pem("ca"));
  StartTxcoord();
  const std::string url = "https://localhost:" + std::to_string(port_);
  auto client =
      participant::CoordinatorClient::Create({.url = url,
                                              .tls = {.ca_file = pki_->Pem("ca"),
                                                      .cert_file = pki_->Pem("app-client"),
                                                      .key_file = pki_->Key("app-client")}});
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  v1::BeginRequest begin;
  begin.set_gtid("tls-sdk");
  begin.set_protocol("2pc");
  begin.set_wait(true);
  v1::Branch* branch = begin.add_branches();
  branch->set_branch_id("a");
  branch->set_url(bank.Url("bank"));
  auto begun = (*client)->Begin(begin);
  ASSERT_TRUE(begun.ok()) << begun.status().ToString();
  EXPECT_EQ(begun->transaction.state(), "committed");
  auto read = (*client)->Get("tls-sdk");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->state(), "committed");

  auto anonymous =
      participant::CoordinatorClient::Create({.url = url, .tls = {.ca_file = pki_->Pem("ca")}});
  ASSERT_TRUE(anonymous.ok());
  EXPECT_FALSE((*anonymous)->Get("tls-sdk").ok());

  // Half a client certificate is a configuration error, said at once.
  auto half = participant::CoordinatorClient::Create(
      {.url = url, .tls = {.cert_file = pki_->Pem("app-client")}});
  EXPECT_EQ(half.status().code(), StatusCode::kInvalidArgument);
}

// The SDK's callback server over HTTPS, requiring txcoord's client certificate: a 2pc
// transaction commits through it, and the same server refuses a coordinator without one.
TEST_F(TlsTest, TheSdkCallbackServerServesHttpsToTheCoordinatorOnly) {
  class Counting final : public participant::BranchHandler {
   public:
    participant::PhaseResult Prepare(const participant::CallbackContext&) override {
      ++prepares;
      return participant::PhaseResult::Done();
    }
    participant::PhaseResult Commit(const participant::CallbackContext&) override {
      ++commits;
      return participant::PhaseResult::Done();
    }
    participant::PhaseResult Abort(const participant::CallbackContext&) override {
      return participant::PhaseResult::Done();
    }
    std::atomic<int> prepares{0}, commits{0};
  } bank;
  participant::CallbackServer server({.tls = {.cert_file = pki_->Pem("server"),
                                              .key_file = pki_->Key("server"),
                                              .client_ca_file = pki_->Pem("ca")}});
  ASSERT_TRUE(server.AddHandler("/bank/a", &bank).ok());
  ASSERT_TRUE(server.AddHandler("/bank/b", &bank).ok());
  auto port = server.Start("127.0.0.1:0");
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  const std::string url = "https://localhost:" + std::to_string(*port) + "/bank";

  StartTxcoord();
  const Reply begun =
      Request(port_, AppClient(), "POST", "/v1/transactions", Begin("tls-sdk-cb", url));
  ASSERT_EQ(begun.status, 200) << begun.body;
  EXPECT_NE(begun.body.find(R"("state":"committed")"), std::string::npos) << begun.body;
  EXPECT_EQ(bank.prepares.load(), 2);
  EXPECT_EQ(bank.commits.load(), 2);

  // A client without a certificate from the CA does not get through the handshake.
  Poco::Net::HTTPSClientSession session("localhost", static_cast<Poco::UInt16>(*port),
                                        AppClient("ca", /*with_cert=*/false));
  Poco::Net::HTTPRequest request("POST", "/bank/a/prepare", Poco::Net::HTTPMessage::HTTP_1_1);
  EXPECT_ANY_THROW({
    session.sendRequest(request);
    Poco::Net::HTTPResponse response;
    session.receiveResponse(response);
  });
  EXPECT_EQ(bank.prepares.load(), 2);
}

TEST_F(TlsTest, BadTlsFlagsExitWithOneLine) {
  const struct {
    std::vector<std::string> args;
    int exit_code;
    std::string says;
  } cases[] = {
      {{"--tls-cert", pki_->Pem("server")}, 2, "--tls-cert and --tls-key go together"},
      {{"--tls-client-ca", pki_->Pem("ca")}, 2, "--tls-client-ca needs --tls-cert"},
      {{"--callback-cert", pki_->Pem("txcoord-client")}, 2, "--callback-cert and --callback-key"},
      {{"--tls-cert", dir_ + "/missing.pem", "--tls-key", pki_->Key("server")},
       1,
       "cannot be read"},
      // A key that is not the certificate's.
      {{"--tls-cert", pki_->Pem("server"), "--tls-key", pki_->Key("app-client")},
       1,
       "does not belong to the certificate"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"--listen", "127.0.0.1:0", "--store",
                                     "sqlite://" + dir_ + "/bad.db"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    TxcoordProcess txcoord(TXCOORD_BIN, args, dir_ + "/stderr-bad");
    EXPECT_EQ(txcoord.WaitForExit(seconds(10)), c.exit_code) << c.says;
    const std::string err = txcoord.Stderr();
    EXPECT_NE(err.find(c.says), std::string::npos) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  }
}

}  // namespace
}  // namespace txcoord::integration
