// TLS for every HTTP endpoint and client of txcoord: the coordinator's API and its callbacks,
// the SDK's callback server and coordinator client, txrelay's HTTP endpoint and txctl. One place
// turns certificate, key and CA files into Poco NetSSL contexts, with the same rules everywhere:
//   - TLS 1.2 or later, strong ciphers only;
//   - a server presents `cert_file`/`key_file` (PEM); with `client_ca_file` it requires every
//     client to present a certificate signed by that CA (mutual TLS), otherwise it asks none;
//   - a client verifies the server's certificate against `ca_file` (or the system's CAs when
//     empty) and the host name it connected to; it presents `cert_file`/`key_file` when given.
// A certificate that fails verification ends the handshake with an error; nothing prompts or
// falls back to accepting it.
//
// Lives in the SDK, which every program links, so that each side uses one implementation.
// Thread-safety: the functions are thread-safe; a Context is shared by many connections.
#pragma once

#include <Poco/Net/Context.h>

#include <string>

#include "txcoord/status.h"

namespace txcoord::participant {

struct TlsServerFiles {
  std::string cert_file = {};  // PEM certificate (chain) the server presents; required
  std::string key_file = {};   // PEM private key of cert_file; required
  std::string client_ca_file =
      {};  // PEM CA(s); when set, clients must present a certificate it signed
};

struct TlsClientFiles {
  std::string ca_file = {};  // PEM CA(s) the server's certificate must chain to; empty: system CAs
  std::string cert_file = {};  // the client's own certificate, for servers that require one
  std::string key_file = {};   // its private key; set both or neither
};

// kInvalidArgument naming the file and what is wrong (missing, unreadable, not PEM, key that does
// not match the certificate).
Result<Poco::Net::Context::Ptr> NewServerContext(const TlsServerFiles& files);
Result<Poco::Net::Context::Ptr> NewClientContext(const TlsClientFiles& files);

}  // namespace txcoord::participant
