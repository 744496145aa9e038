// The benchmark programs' --json output: one JSON object per line on stdout.
//
//   JsonLine("txn").Str("kind", "floor").Num("p50_us", 87.4).Int("ops", 3000).Print();
//
// Not thread-safe; print from one thread.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace txcoord::bench {

// One JSON object on one line; keys in insertion order.
class JsonLine {
 public:
  // Every line starts with {"bench": <the program's name>.
  explicit JsonLine(std::string_view bench) { Str("bench", bench); }
  JsonLine& Str(std::string_view key, std::string_view value) {
    Key(key);
    Quote(value);
    return *this;
  }
  JsonLine& Int(std::string_view key, int64_t value) {
    Key(key);
    out_ += std::to_string(value);
    return *this;
  }
  // NaN or infinity (a zero floor) is written as null: JSON has no number for it.
  JsonLine& Num(std::string_view key, double value, int decimals = 1) {
    Key(key);
    if (!std::isfinite(value)) {
      out_ += "null";
    } else {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
      out_ += buf;
    }
    return *this;
  }
  JsonLine& Bool(std::string_view key, bool value) {
    Key(key);
    out_ += value ? "true" : "false";
    return *this;
  }
  void Print() {
    out_ += "}\n";
    std::fputs(out_.c_str(), stdout);
    std::fflush(stdout);
  }

 private:
  void Key(std::string_view key) {
    out_ += out_.size() > 1 ? "," : "";
    Quote(key);
    out_ += ':';
  }
  void Quote(std::string_view s) {
    out_ += '"';
    for (const char c : s) {
      if (c == '"' || c == '\\') {
        out_ += '\\';
        out_ += c;
      } else if (static_cast<unsigned char>(c) < 0x20) {
        char esc[8];
        std::snprintf(esc, sizeof esc, "\\u%04x", c);
        out_ += esc;
      } else {
        out_ += c;
      }
    }
    out_ += '"';
  }
  std::string out_ = "{";
};

}  // namespace txcoord::bench
