// A real txcoord (or bank, saga participant...) process for integration tests: the rig's
// ChildProcess with its stderr file started afresh, so that each start reads only its own.
//
// A class of its own rather than an alias, since bench/processes.h declares it forward.
#pragma once

#include <string>
#include <vector>

#include "txcoord/testing/child_process.h"

namespace txcoord::integration {

class TxcoordProcess : public testing::ChildProcess {
 public:
  TxcoordProcess(const std::string& binary, const std::vector<std::string>& args,
                 const std::string& stderr_path);
};

}  // namespace txcoord::integration
