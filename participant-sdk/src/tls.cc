#include "txcoord/participant/tls.h"

#include <Poco/Net/RejectCertificateHandler.h>
#include <Poco/Net/SSLException.h>
#include <Poco/Net/SSLManager.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <mutex>

namespace txcoord::participant {
namespace {

constexpr const char* kCiphers = "HIGH:!aNULL:!eNULL:!MD5:!RC4:!3DES:@STRENGTH";

// Poco asks SSLManager's "invalid certificate handler" what to do with a certificate that failed
// verification; without one it would try to build one from an application configuration. Ours
// always rejects. Set once, before the first context is used.
void InstallRejectingHandlers(const Poco::Net::Context::Ptr& context, bool server) {
  static std::once_flag client_once;
  static std::once_flag server_once;
  std::call_once(server ? server_once : client_once, [&] {
    Poco::Net::SSLManager::InvalidCertificateHandlerPtr reject(
        new Poco::Net::RejectCertificateHandler(server));
    if (server) {
      Poco::Net::SSLManager::instance().initializeServer(nullptr, reject, context);
    } else {
      Poco::Net::SSLManager::instance().initializeClient(nullptr, reject, context);
    }
  });
}

Status CheckReadable(const char* what, const std::string& path) {
  if (path.empty()) return Status::InvalidArgument(std::string(what) + " is required for TLS");
  if (access(path.c_str(), R_OK) != 0) {
    return Status::InvalidArgument(std::string(what) + " " + path +
                                   " cannot be read; check the path and its permissions");
  }
  return Status::Ok();
}

Result<Poco::Net::Context::Ptr> Make(Poco::Net::Context::Usage usage,
                                     const Poco::Net::Context::Params& params, const char* what) {
  try {
    Poco::Net::Context::Ptr context = new Poco::Net::Context(usage, params);
    context->requireMinimumProtocol(Poco::Net::Context::PROTO_TLSV1_2);
    if (usage == Poco::Net::Context::TLS_SERVER_USE) {
      // Poco's "extended" check compares a certificate with the peer's host name. A client
      // certificate names a client, not the address it connects from: it is verified by its
      // chain to the client CA only, as mutual TLS means.
      context->enableExtendedCertificateVerification(false);
    }
    if (!params.certificateFile.empty() && SSL_CTX_check_private_key(context->sslContext()) != 1) {
      return Status::InvalidArgument(
          std::string("cannot set up TLS ") + what + ": the key " + params.privateKeyFile +
          " does not belong to the certificate " + params.certificateFile);
    }
    return context;
  } catch (const Poco::Exception& e) {
    return Status::InvalidArgument(std::string("cannot set up TLS ") + what + ": " +
                                   e.displayText() +
                                   " (are the files PEM, and does the key match the certificate?)");
  }
}

}  // namespace

Result<Poco::Net::Context::Ptr> NewServerContext(const TlsServerFiles& files) {
  TXCOORD_RETURN_IF_ERROR(CheckReadable("the TLS certificate file", files.cert_file));
  TXCOORD_RETURN_IF_ERROR(CheckReadable("the TLS key file", files.key_file));
  if (!files.client_ca_file.empty()) {
    TXCOORD_RETURN_IF_ERROR(CheckReadable("the TLS client CA file", files.client_ca_file));
  }
  Poco::Net::Context::Params params;
  params.certificateFile = files.cert_file;
  params.privateKeyFile = files.key_file;
  params.caLocation = files.client_ca_file;
  params.verificationMode = files.client_ca_file.empty() ? Poco::Net::Context::VERIFY_NONE
                                                         : Poco::Net::Context::VERIFY_STRICT;
  params.loadDefaultCAs = false;
  params.cipherList = kCiphers;
  auto context = Make(Poco::Net::Context::TLS_SERVER_USE, params, "for serving");
  if (!context.ok()) return context;
  InstallRejectingHandlers(*context, /*server=*/true);
  return context;
}

Result<Poco::Net::Context::Ptr> NewClientContext(const TlsClientFiles& files) {
  if (!files.ca_file.empty()) {
    TXCOORD_RETURN_IF_ERROR(CheckReadable("the TLS CA file", files.ca_file));
  }
  if (files.cert_file.empty() != files.key_file.empty()) {
    return Status::InvalidArgument(
        "a TLS client certificate needs both its certificate and its key file");
  }
  if (!files.cert_file.empty()) {
    TXCOORD_RETURN_IF_ERROR(CheckReadable("the TLS client certificate file", files.cert_file));
    TXCOORD_RETURN_IF_ERROR(CheckReadable("the TLS client key file", files.key_file));
  }
  Poco::Net::Context::Params params;
  params.certificateFile = files.cert_file;
  params.privateKeyFile = files.key_file;
  params.caLocation = files.ca_file;
  params.verificationMode = Poco::Net::Context::VERIFY_RELAXED;  // the server's cert must verify
  params.loadDefaultCAs = files.ca_file.empty();
  params.cipherList = kCiphers;
  auto context = Make(Poco::Net::Context::TLS_CLIENT_USE, params, "as a client");
  if (!context.ok()) return context;
  InstallRejectingHandlers(*context, /*server=*/false);
  return context;
}

}  // namespace txcoord::participant
