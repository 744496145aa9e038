#include "txcoord/schemas/ids.h"

#include <string>

namespace txcoord {

bool IsValidId(std::string_view id) {
  if (id.empty() || id.size() > kMaxIdLength) return false;
  for (char c : id) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Status ValidateId(std::string_view what, std::string_view id) {
  if (IsValidId(id)) return Status::Ok();
  std::string shown(id.substr(0, 40));
  if (id.size() > 40) shown += "...";
  return Status::InvalidArgument(std::string(what) + " \"" + shown +
                                 "\" is not 1 to 128 characters of [A-Za-z0-9._:-]");
}

bool IsKnownProtocol(std::string_view p) {
  return p == "2pc" || p == "3pc" || p == "tcc" || p == "saga";
}

bool IsTerminalState(std::string_view s) { return s == "committed" || s == "aborted"; }

}  // namespace txcoord
