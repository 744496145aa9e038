#include "json_scan.h"

#include <cstddef>

namespace txcoord::participant::internal {
namespace {

// A cursor over JSON text. Each Skip* moves past one token or value and returns false on
// malformed input, which the caller then reports as "not found".
class Scanner {
 public:
  explicit Scanner(std::string_view text) : text_(text) {}

  size_t pos() const { return pos_; }
  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek() const { return AtEnd() ? '\0' : text_[pos_]; }

  void SkipSpace() {
    while (!AtEnd() && (Peek() == ' ' || Peek() == '\t' || Peek() == '\n' || Peek() == '\r')) {
      ++pos_;
    }
  }

  bool Consume(char c) {
    SkipSpace();
    if (Peek() != c) return false;
    ++pos_;
    return true;
  }

  // A string; `raw` gets its contents between the quotes, escapes left as they are.
  bool SkipString(std::string_view* raw = nullptr) {
    SkipSpace();
    if (Peek() != '"') return false;
    const size_t start = ++pos_;
    while (!AtEnd()) {
      const char c = text_[pos_];
      if (c == '\\') {
        pos_ += 2;
        continue;
      }
      if (c == '"') {
        if (raw != nullptr) *raw = text_.substr(start, pos_ - start);
        ++pos_;
        return true;
      }
      ++pos_;
    }
    return false;
  }

  bool SkipValue(int depth = 0) {
    if (depth > 100) return false;
    SkipSpace();
    const char c = Peek();
    if (c == '"') return SkipString();
    if (c == '{' || c == '[') {
      const char close = c == '{' ? '}' : ']';
      ++pos_;
      if (Consume(close)) return true;
      do {
        if (c == '{') {
          if (!SkipString() || !Consume(':')) return false;
        }
        if (!SkipValue(depth + 1)) return false;
      } while (Consume(','));
      return Consume(close);
    }
    // A number, true, false or null: up to the next delimiter.
    const size_t start = pos_;
    while (!AtEnd() && std::string_view(",}] \t\r\n").find(Peek()) == std::string_view::npos) {
      ++pos_;
    }
    return pos_ > start;
  }

 private:
  std::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

std::optional<std::string_view> RawMember(std::string_view json, std::string_view key) {
  Scanner s(json);
  if (!s.Consume('{')) return std::nullopt;
  std::optional<std::string_view> found;
  if (s.Consume('}')) return std::nullopt;
  do {
    std::string_view name;
    if (!s.SkipString(&name) || !s.Consume(':')) return std::nullopt;
    s.SkipSpace();
    const size_t start = s.pos();
    if (!s.SkipValue()) return std::nullopt;
    if (name == key) found = json.substr(start, s.pos() - start);
  } while (s.Consume(','));
  if (!s.Consume('}')) return std::nullopt;
  return found;
}

bool IsValidUtf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const auto b = static_cast<unsigned char>(text[i]);
    const size_t len = b < 0x80           ? 1
                       : (b >> 5) == 0x6  ? 2
                       : (b >> 4) == 0xE  ? 3
                       : (b >> 3) == 0x1E ? 4
                                          : 0;
    if (len == 0 || i + len > text.size()) return false;
    unsigned cp = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
    for (size_t k = 1; k < len; ++k) {
      const auto c = static_cast<unsigned char>(text[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    static constexpr unsigned kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

}  // namespace txcoord::participant::internal
