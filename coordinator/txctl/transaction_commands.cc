// The transaction commands: list, show, retry, abort, resolve, purge.
#include "command.h"

namespace txcoord::txctl {

int RunList(Context& ctx, const std::vector<std::string>&) {
  return Fail(ctx, ExitCode::kUsage, "list is not built yet");
}
int RunShow(Context& ctx, const std::vector<std::string>&) {
  return Fail(ctx, ExitCode::kUsage, "show is not built yet");
}
int RunRetry(Context& ctx, const std::vector<std::string>&) {
  return Fail(ctx, ExitCode::kUsage, "retry is not built yet");
}
int RunAbort(Context& ctx, const std::vector<std::string>&) {
  return Fail(ctx, ExitCode::kUsage, "abort is not built yet");
}
int RunResolve(Context& ctx, const std::vector<std::string>&) {
  return Fail(ctx, ExitCode::kUsage, "resolve is not built yet");
}
int RunPurge(Context& ctx, const std::vector<std::string>&) {
  return Fail(ctx, ExitCode::kUsage, "purge is not built yet");
}

}  // namespace txcoord::txctl
