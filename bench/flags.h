// Command-line helpers shared by the benchmark programs: "--flag", "--flag value" and
// "--flag=value", and the values they take. Errors are kInvalidArgument with a message that names
// the flag and what it wants; the programs print it and exit 2.
#pragma once

#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "txcoord/status.h"

namespace txcoord::bench {

// Walks argv[1..] flag by flag: "--flag value" or "--flag=value" for a flag with a value,
// "--flag" for a switch. Every program takes "--help" (also "-h"); those that print figures also
// take "--json". The reader notes both and does not return them.
//
//   FlagReader flags(argc, argv, {"--seconds", "--dir"}, /*json=*/true);
//   while (flags.Next()) {
//     if (flags.name() == "--seconds") Use(flags.value());
//   }
//   if (!flags.status().ok()) return flags.status();  // an unknown flag, a missing value
class FlagReader {
 public:
  FlagReader(int argc, char** argv, std::vector<std::string_view> valued, bool json)
      : argc_(argc), argv_(argv), valued_(std::move(valued)), takes_json_(json) {}

  // Moves to the next flag with a value and reads the value. False at the end, and on an error
  // (see status()).
  bool Next();
  std::string_view name() const { return name_; }
  std::string_view value() const { return value_; }

  const Status& status() const { return status_; }
  bool help() const { return help_; }
  bool json() const { return json_; }

 private:
  const int argc_;
  char** const argv_;
  const std::vector<std::string_view> valued_;
  const bool takes_json_;
  int i_ = 0;
  std::string_view name_;
  std::string_view value_;
  Status status_;
  bool help_ = false;
  bool json_ = false;
};

// A number of seconds from `min` to 3600.
Result<double> ParseSeconds(std::string_view flag, std::string_view text, double min);

// A whole number from `min` to `max`.
Result<int> ParseCount(std::string_view flag, std::string_view text, int min, int max);

// A comma-separated list of counts from 1 to `max`, e.g. "1,16,64"; at least one.
Result<std::vector<int>> ParseCounts(std::string_view flag, std::string_view text, int max);

// "a", "b" or "both" -> the list.
template <typename T>
Result<std::vector<T>> ParseChoice(std::string_view flag, std::string_view value,
                                   std::string_view a_name, T a, std::string_view b_name, T b) {
  if (value == a_name) return std::vector<T>{a};
  if (value == b_name) return std::vector<T>{b};
  if (value == "both") return std::vector<T>{a, b};
  return Status::InvalidArgument(std::string(flag) + " wants " + std::string(a_name) + ", " +
                                 std::string(b_name) + " or both, got \"" + std::string(value) +
                                 "\"");
}

// The flags of the programs that drive txcoord with closed-loop clients (txn, saga_bench), which
// must mean the same in both so that their figures can be set side by side.
struct LoadFlags {
  std::vector<int> concurrency = {1, 16, 64};
  double seconds = 3;
  double warmup_s = 0.5;
  std::string dir;
};
// `own` (a program's other flags with a value) and the load flags, for FlagReader.
std::vector<std::string_view> WithLoadFlags(std::vector<std::string_view> own);
// True when `name` is a load flag, its value parsed into `flags`; false for any other flag.
Result<bool> ParseLoadFlag(std::string_view name, std::string_view value, LoadFlags& flags);

// The main() of a benchmark program, after its flags were parsed into `options` (which has a
// `help` member): a bad command line prints "<program>: <message>; see --help" and returns 2;
// --help prints `usage` and returns 0; otherwise returns run(*options).
template <typename Options, typename RunFn>
int BenchMain(const char* program, const char* usage, const Result<Options>& options, RunFn&& run) {
  if (!options.ok()) {
    std::fprintf(stderr, "%s: %s; see --help\n", program, options.status().message().c_str());
    return 2;
  }
  if (options->help) {
    std::fputs(usage, stdout);
    return 0;
  }
  return run(*options);
}

}  // namespace txcoord::bench
