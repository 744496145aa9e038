// The text layer of JSON that the hand-written readers and printers share: strict UTF-8 (RFC
// 3629: no overlong forms, no surrogates, nothing above U+10FFFF) and JSON string literals.
// Used by the JSON helpers of txcoord_schemas and by the outbox's row checks.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace txcoord::json_text {

// Decodes the UTF-8 sequence at text[i] into *cp and returns its length, or 0 when the bytes
// there are not valid UTF-8.
std::size_t DecodeUtf8(std::string_view text, std::size_t i, unsigned* cp);

// Appends code point `cp` (at most U+10FFFF, not a surrogate) as UTF-8.
void AppendUtf8(unsigned cp, std::string* out);

// Reads the JSON string literal whose opening quote is at text[*pos]. On success, *pos is just
// past its closing quote and `out`, unless null, holds the decoded text. Refuses (false, *pos
// unspecified) raw control characters, bytes that are not UTF-8, unknown escapes and \u escapes
// of a lone surrogate.
bool ReadString(std::string_view text, std::size_t* pos, std::string* out);

}  // namespace txcoord::json_text
