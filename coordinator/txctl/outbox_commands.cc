// The outbox and dead-letter commands. A placeholder until the txctl-outbox branch replaces
// this file with `outbox status`, `outbox replay` and `deadletters`.
#include "command.h"

namespace txcoord::txctl {

int RunOutbox(Context& ctx, const std::vector<std::string>& /*args*/) {
  return Fail(ctx, ExitCode::kUsage, "outbox commands are not built yet");
}

int RunDeadletters(Context& ctx, const std::vector<std::string>& /*args*/) {
  return Fail(ctx, ExitCode::kUsage, "outbox commands are not built yet");
}

}  // namespace txcoord::txctl
