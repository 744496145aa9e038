// One strict UTF-8 decoder for the JSON helpers (RFC 3629: no overlong forms, no surrogates,
// nothing above U+10FFFF). Private to txcoord_schemas.
#pragma once

#include <cstddef>
#include <string_view>

namespace txcoord::internal {

// Decodes the sequence at text[i] into *cp and returns its length, or 0 when the bytes there
// are not valid UTF-8.
inline std::size_t DecodeUtf8(std::string_view text, std::size_t i, unsigned* cp) {
  const auto b = static_cast<unsigned char>(text[i]);
  const std::size_t len = b < 0x80           ? 1
                          : (b >> 5) == 0x6  ? 2
                          : (b >> 4) == 0xE  ? 3
                          : (b >> 3) == 0x1E ? 4
                                             : 0;
  if (len == 0 || i + len > text.size()) return 0;
  unsigned v = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
  for (std::size_t k = 1; k < len; ++k) {
    const auto c = static_cast<unsigned char>(text[i + k]);
    if ((c & 0xC0) != 0x80) return 0;
    v = (v << 6) | (c & 0x3F);
  }
  static constexpr unsigned kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (v < kMin[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

}  // namespace txcoord::internal
