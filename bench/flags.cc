// Command-line helpers (flags.h).
#include "flags.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <string>

namespace txcoord::bench {

bool FlagReader::Next() {
  while (status_.ok() && ++i_ < argc_) {
    const std::string_view arg = argv_[i_];
    name_ = arg;
    value_ = {};
    std::optional<std::string_view> inline_value;
    if (const size_t eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      name_ = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    const bool is_help = arg == "-h" || name_ == "--help";
    const bool is_json = takes_json_ && name_ == "--json";
    if (is_help || is_json) {
      if (inline_value) {
        status_ = Status::InvalidArgument(std::string(name_) + " takes no value");
      } else {
        (is_help ? help_ : json_) = true;
      }
      continue;
    }
    if (std::find(valued_.begin(), valued_.end(), name_) == valued_.end()) {
      status_ = Status::InvalidArgument("unknown flag " + std::string(arg));
    } else if (inline_value) {
      value_ = *inline_value;
      return true;
    } else if (i_ + 1 < argc_) {
      value_ = argv_[++i_];
      return true;
    } else {
      status_ = Status::InvalidArgument(std::string(name_) + " needs a value");
    }
  }
  return false;
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

Result<int> ParseCount(std::string_view flag, std::string_view text, int min, int max) {
  int n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || n < min || n > max) {
    return Status::InvalidArgument(std::string(flag) + " wants a whole number from " +
                                   std::to_string(min) + " to " + std::to_string(max) + ", got \"" +
                                   std::string(text) + "\"");
  }
  return n;
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

std::vector<std::string_view> WithLoadFlags(std::vector<std::string_view> own) {
  own.insert(own.end(), {"--concurrency", "--seconds", "--warmup", "--dir"});
  return own;
}

Result<bool> ParseLoadFlag(std::string_view name, std::string_view value, LoadFlags& flags) {
  if (name == "--concurrency") {
    // txcoord serves at most 1024 connections at once (--max-threads), 2 per client here.
    auto v = ParseCounts(name, value, 512);
    if (!v.ok()) return v.status();
    flags.concurrency = *v;
  } else if (name == "--seconds" || name == "--warmup") {
    auto s = ParseSeconds(name, value, name == "--seconds" ? 0.1 : 0.0);
    if (!s.ok()) return s.status();
    (name == "--seconds" ? flags.seconds : flags.warmup_s) = *s;
  } else if (name == "--dir") {
    if (value.empty()) return Status::InvalidArgument("--dir needs a directory");
    flags.dir = std::string(value);
  } else {
    return false;
  }
  return true;
}

}  // namespace txcoord::bench
