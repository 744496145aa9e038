// Command-line helpers shared by the benchmark programs: "--flag", "--flag value" and
// "--flag=value", and the values they take. Errors are kInvalidArgument with a message that names
// the flag and what it wants; the programs print it and exit 2.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "txcoord/status.h"

namespace txcoord::bench {

// Walks argv[1..]: for each argument its flag name, and on request its value (after '=', else the
// next argument).
//
//   FlagReader flags(argc, argv);
//   while (flags.Next()) {
//     if (flags.name() == "--json") { ... continue; }
//     auto value = flags.Value();  // consumes the next argument when there was no '='
//   }
class FlagReader {
 public:
  FlagReader(int argc, char** argv) : argc_(argc), argv_(argv) {}

  // Moves to the next argument; false when there is none.
  bool Next();
  // "--seconds" for "--seconds=3" and for "--seconds 3".
  std::string_view name() const { return name_; }
  // The argument as given.
  std::string_view arg() const { return arg_; }
  // The flag's value; kInvalidArgument "--seconds needs a value" when there is none.
  Result<std::string_view> Value();

 private:
  const int argc_;
  char** const argv_;
  int i_ = 0;
  std::string_view arg_;
  std::string_view name_;
  std::optional<std::string_view> inline_value_;  // after '='
};

// A number of seconds from `min` to 3600.
Result<double> ParseSeconds(std::string_view flag, std::string_view text, double min);

// A comma-separated list of counts from 1 to `max`, e.g. "1,16,64"; at least one.
Result<std::vector<int>> ParseCounts(std::string_view flag, std::string_view text, int max);

}  // namespace txcoord::bench
