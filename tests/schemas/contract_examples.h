// Finds the JSON examples of docs/contract.md and turns their placeholders into real values, so
// that a test can check each example against the schema messages.
//
// What counts as an example (so that a new one cannot go unchecked):
//   - every ```json fenced block;
//   - every inline code span whose text is a JSON object: it starts with `{` followed by `"` or
//   `}`.
// Inline spans that start with `{` but are URL or subject templates (`{url}/{phase}`,
// `{prefix}.{aggregate_type}.{event_type}`) are not examples. Anything else that starts with `{`
// (an unlabelled fenced block, an odd inline span) is reported as unclassified, and the test fails
// on it: the contract's author has to label it or the extractor has to learn it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "txcoord/status.h"

namespace txcoord::testing {

struct ContractExample {
  std::string section;  // the nearest heading above the example, without its '#'s
  int line = 0;         // 1-based line of the contract where the example starts
  std::string json;     // exactly as written in the contract, placeholders included
};

struct ContractScan {
  std::vector<ContractExample> examples;
  // "line N: text" of each brace-led block or span that is neither JSON nor a template.
  std::vector<std::string> unclassified;
};

ContractScan ScanContract(std::string_view markdown);

// The first key of a JSON object as written ("" when there is none); with the section it
// identifies which message an example is.
std::string FirstKey(std::string_view json);

// The contract writes placeholders that are not valid values. They are replaced mechanically:
//   {...}                                  -> {"k": "v"}       (an elided JSON object)
//   [...]                                  -> []               (an elided list)
//   "..." in a field ending _at, deadline  -> kExampleTime     (an elided RFC 3339 time)
//   "<...>" in field code / message / next -> a real value from a small table
// Any other "..." is a valid string and stays. An angle-bracket placeholder in a field the table
// does not know is an error, so a new kind of placeholder needs a rule here.
inline constexpr std::string_view kExampleTime = "2026-11-21T10:00:00.123Z";
Result<std::string> ResolvePlaceholders(std::string_view json);

}  // namespace txcoord::testing
