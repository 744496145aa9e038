// Structural JSON comparison for the schema tests: two texts are compared as JSON values (key
// order does not matter, numbers compare by value), not as strings, because the proto3 printer is
// free to reorder keys and reformat numbers.
#pragma once

#include <google/protobuf/descriptor.h>

#include <string>
#include <string_view>
#include <vector>

namespace txcoord::testing {

// The "same JSON back" rule of the contract round trip. `written` is what a client sends,
// `printed` what the message prints with print_defaults. Returns one line per difference
// ("$.branches[0].attempts: 1 became \"1\""); empty means the same JSON came back:
//   - every key of `written` is in `printed`, with the same value, recursively;
//   - a key that `printed` adds must hold a proto3 default: 0, "", false, [], {} or null.
// `type` is the message `written` is read as. Free-form JSON (a google.protobuf.Value, Struct or
// ListValue field such as `payload`) must come back exactly, with no added key; passing a null
// `type` compares the whole text that way.
std::vector<std::string> JsonDifferences(std::string_view written, std::string_view printed,
                                         const google::protobuf::Descriptor* type);

}  // namespace txcoord::testing
