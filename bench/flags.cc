// Command-line helpers (flags.h).
#include "flags.h"

#include <charconv>
#include <cstdio>
#include <string>

namespace txcoord::bench {

bool FlagReader::Next() {
  if (++i_ >= argc_) return false;
  arg_ = argv_[i_];
  name_ = arg_;
  inline_value_.reset();
  if (const size_t eq = arg_.find('='); arg_.starts_with("--") && eq != std::string_view::npos) {
    name_ = arg_.substr(0, eq);
    inline_value_ = arg_.substr(eq + 1);
  }
  return true;
}

Result<std::string_view> FlagReader::Value() {
  if (inline_value_) return *inline_value_;
  if (i_ + 1 >= argc_) return Status::InvalidArgument(std::string(name_) + " needs a value");
  return std::string_view(argv_[++i_]);
}

Result<double> ParseSeconds(std::string_view flag, std::string_view text, double min) {
  double v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !(v >= min) || v > 3600) {
    char range[64];
    std::snprintf(range, sizeof range, " wants seconds from %g to 3600, got \"", min);
    return Status::InvalidArgument(std::string(flag) + range + std::string(text) + "\"");
  }
  return v;
}

Result<std::vector<int>> ParseCounts(std::string_view flag, std::string_view text, int max) {
  std::vector<int> out;
  while (!text.empty()) {
    const size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    int n = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), n);
    if (ec != std::errc() || end != item.data() + item.size() || n < 1 || n > max) {
      return Status::InvalidArgument(std::string(flag) +
                                     " wants comma-separated counts from 1 to " +
                                     std::to_string(max) + ", got \"" + std::string(item) + "\"");
    }
    out.push_back(n);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
  }
  if (out.empty()) return Status::InvalidArgument(std::string(flag) + " needs at least one count");
  return out;
}

}  // namespace txcoord::bench
