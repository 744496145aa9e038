// A strict UTF-8 check for the tests: proto3 string fields must hold valid UTF-8, so every text
// that may end up in one (an error message, an id echoed back) is checked with it.
#pragma once

#include <cstdint>
#include <string_view>

namespace txcoord::testing {

// RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF.
inline bool IsValidUtf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto byte = static_cast<uint8_t>(text[i]);
    int extra = 0;
    uint32_t code = 0;
    uint32_t min = 0;
    if (byte < 0x80) {
      ++i;
      continue;
    } else if ((byte & 0xE0) == 0xC0) {
      extra = 1, code = byte & 0x1F, min = 0x80;
    } else if ((byte & 0xF0) == 0xE0) {
      extra = 2, code = byte & 0x0F, min = 0x800;
    } else if ((byte & 0xF8) == 0xF0) {
      extra = 3, code = byte & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (i + extra >= text.size()) return false;  // truncated sequence
    for (int k = 1; k <= extra; ++k) {
      const auto next = static_cast<uint8_t>(text[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      code = (code << 6) | (next & 0x3F);
    }
    if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

}  // namespace txcoord::testing
