// A throwaway PKI for TLS tests, made with the openssl command line in a directory the test
// owns: a CA ("ca") that signs a server certificate ("server": CN and SAN localhost, SAN IP
// 127.0.0.1) and two client certificates ("txcoord-client", "app-client"); and a second CA
// ("other-ca") whose "rogue-server" certificate nothing should trust. P-256 keys, valid 2 days.
#pragma once

#include <string>

namespace txcoord::testing {

class TestPki {
 public:
  // Throws std::runtime_error when openssl fails.
  explicit TestPki(std::string dir);

  std::string Pem(const std::string& name) const { return dir_ + "/" + name + ".pem"; }
  std::string Key(const std::string& name) const { return dir_ + "/" + name + ".key"; }

 private:
  void MakeCa(const std::string& name);
  void Sign(const std::string& ca, const std::string& name, const std::string& cn, bool server);
  std::string dir_;
};

}  // namespace txcoord::testing
