#include "txcoord/testing/test_pki.h"

#include <cstdlib>
#include <fstream>
#include <stdexcept>

namespace txcoord::testing {
namespace {

void Shell(const std::string& command) {
  if (std::system(command.c_str()) != 0) throw std::runtime_error("failed: " + command);
}

}  // namespace

TestPki::TestPki(std::string dir) : dir_(std::move(dir)) {
  MakeCa("ca");
  MakeCa("other-ca");
  Sign("ca", "server", "localhost", true);
  Sign("ca", "txcoord-client", "txcoord-client", false);
  Sign("ca", "app-client", "app-client", false);
  Sign("other-ca", "rogue-server", "localhost", true);
}

void TestPki::MakeCa(const std::string& name) {
  Shell(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
      "-subj /CN=txcoord-test-" +
      name + " -keyout " + Key(name) + " -out " + Pem(name) + " 2>/dev/null");
}

void TestPki::Sign(const std::string& ca, const std::string& name, const std::string& cn,
                   bool server) {
  const std::string ext = dir_ + "/" + name + ".ext";
  std::ofstream(ext) << (server ? "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                : "extendedKeyUsage=clientAuth\n");
  const std::string csr = dir_ + "/" + name + ".csr";
  Shell("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=" + cn +
        " -keyout " + Key(name) + " -out " + csr + " 2>/dev/null");
  Shell("openssl x509 -req -in " + csr + " -CA " + Pem(ca) + " -CAkey " + Key(ca) +
        " -CAcreateserial -days 2 -extfile " + ext + " -out " + Pem(name) + " 2>/dev/null");
}

}  // namespace txcoord::testing
