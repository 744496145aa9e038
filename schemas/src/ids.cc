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

std::string PrintableForMessage(std::string_view text, std::size_t max_chars) {
  std::string shown;
  std::size_t i = 0;
  for (; i < text.size() && shown.size() < max_chars; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
      shown += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789ABCDEF";
      shown += "\\x";
      shown += kHex[c >> 4];
      shown += kHex[c & 0xF];
    }
  }
  if (i < text.size()) shown += "...";
  return shown;
}

Status ValidateId(std::string_view what, std::string_view id) {
  if (IsValidId(id)) return Status::Ok();
  // The id may be any bytes (a percent-decoded URL path); a valid id is printable ASCII, so the
  // escaped form is unambiguous.
  return Status::InvalidArgument(std::string(what) + " \"" + PrintableForMessage(id, 40) +
                                 "\" is not 1 to 128 characters of [A-Za-z0-9._:-]");
}

bool IsKnownProtocol(std::string_view p) {
  return p == "2pc" || p == "3pc" || p == "tcc" || p == "saga";
}

bool IsTerminalState(std::string_view s) { return s == "committed" || s == "aborted"; }

}  // namespace txcoord
