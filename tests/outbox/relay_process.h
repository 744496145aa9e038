// A real txrelay process for tests: the rig's ChildProcess with stderr appended, since the crash
// test restarts the relay many times into one log and reads it whole.
#pragma once

#include <string>
#include <vector>

#include "txcoord/testing/child_process.h"

namespace txcoord::outbox::testing {

class RelayProcess : public txcoord::testing::ChildProcess {
 public:
  RelayProcess(const std::string& binary, const std::vector<std::string>& args,
               const std::string& stderr_path, const std::vector<std::string>& extra_env = {});
};

// GET http://127.0.0.1:port/path; returns status and body, or status 0 when nothing answered.
struct HttpReply {
  int status = 0;
  std::string body;
};
HttpReply HttpGet(int port, const std::string& path);

}  // namespace txcoord::outbox::testing
