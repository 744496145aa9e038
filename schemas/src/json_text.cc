#include "txcoord/json_text.h"

namespace txcoord::json_text {
namespace {

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Four hex digits at text[*pos] into *unit.
bool Unit(std::string_view text, std::size_t* pos, unsigned* unit) {
  if (*pos + 4 > text.size()) return false;
  unsigned v = 0;
  for (std::size_t k = 0; k < 4; ++k) {
    const int h = Hex(text[*pos + k]);
    if (h < 0) return false;
    v = (v << 4) | static_cast<unsigned>(h);
  }
  *pos += 4;
  *unit = v;
  return true;
}

}  // namespace

std::size_t DecodeUtf8(std::string_view text, std::size_t i, unsigned* cp) {
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

void AppendUtf8(unsigned cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool ReadString(std::string_view text, std::size_t* pos, std::string* out) {
  std::size_t i = *pos;
  if (i >= text.size() || text[i] != '"') return false;
  ++i;
  if (out != nullptr) out->clear();
  while (i < text.size()) {
    // Plain printable ASCII is most of every string: copy runs of it at once.
    std::size_t run = i;
    while (run < text.size()) {
      const auto c = static_cast<unsigned char>(text[run]);
      if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
      ++run;
    }
    if (out != nullptr) out->append(text.data() + i, run - i);
    i = run;
    if (i == text.size()) return false;
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '"') {
      *pos = i + 1;
      return true;
    }
    if (c < 0x20) return false;
    if (c >= 0x80) {
      unsigned cp = 0;
      const std::size_t len = DecodeUtf8(text, i, &cp);
      if (len == 0) return false;
      if (out != nullptr) out->append(text.data() + i, len);
      i += len;
      continue;
    }
    if (++i == text.size()) return false;  // past the backslash
    const char e = text[i++];
    unsigned cp = 0;
    switch (e) {
      case '"':
      case '\\':
      case '/':
        cp = static_cast<unsigned char>(e);
        break;
      case 'b':
        cp = '\b';
        break;
      case 'f':
        cp = '\f';
        break;
      case 'n':
        cp = '\n';
        break;
      case 'r':
        cp = '\r';
        break;
      case 't':
        cp = '\t';
        break;
      case 'u': {
        if (!Unit(text, &i, &cp) || (cp >= 0xDC00 && cp <= 0xDFFF)) return false;
        if (cp >= 0xD800 && cp <= 0xDBFF) {  // a surrogate pair
          unsigned low = 0;
          if (text.substr(i, 2) != "\\u") return false;
          i += 2;
          if (!Unit(text, &i, &low) || low < 0xDC00 || low > 0xDFFF) return false;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        break;
      }
      default:
        return false;
    }
    if (out != nullptr) AppendUtf8(cp, out);
  }
  return false;
}

}  // namespace txcoord::json_text
