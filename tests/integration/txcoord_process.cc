#include "txcoord_process.h"

namespace txcoord::integration {

TxcoordProcess::TxcoordProcess(const std::string& binary, const std::vector<std::string>& args,
                               const std::string& stderr_path)
    : ChildProcess(binary, args, stderr_path, StderrFile::kTruncate) {}

}  // namespace txcoord::integration
