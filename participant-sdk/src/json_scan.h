// Finds the raw text of a top-level member of a JSON object, for CallbackContext::payload_json:
// the exact bytes the coordinator sent, which a protobuf Value (numbers as doubles) cannot keep.
#pragma once

#include <optional>
#include <string_view>

namespace txcoord::participant::internal {

// The value of the last member named `key` (written without escapes) of the top-level object
// in `json`, from its first to its last character. nullopt when `json` is not an object, has no
// such member, or is malformed. The last one, because that is the one protobuf's parser keeps.
std::optional<std::string_view> RawMember(std::string_view json, std::string_view key);

// Whether `text` is valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool IsValidUtf8(std::string_view text);

}  // namespace txcoord::participant::internal
