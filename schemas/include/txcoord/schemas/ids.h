// Identifier and URL rules of the contract, section 1.
#pragma once

#include <string>
#include <string_view>

#include "txcoord/status.h"

namespace txcoord {

// gtid, branch_id and step_id: 1 to 128 characters of [A-Za-z0-9._:-].
inline constexpr std::size_t kMaxIdLength = 128;
bool IsValidId(std::string_view id);
// OK, or InvalidArgument naming `what` ("gtid", "branch_id", ...) and the rule.
Status ValidateId(std::string_view what, std::string_view id);

// Client text quoted into an error message: the message becomes JSON, so it must stay valid
// UTF-8 and readable whatever bytes the client sent. Printable ASCII is kept (but `"` and `\`),
// every other byte is shown as \xNN, and the result is cut after `max_chars` with "...".
std::string PrintableForMessage(std::string_view text, std::size_t max_chars = 200);

// The contract's protocol names.
bool IsKnownProtocol(std::string_view protocol);
// "committed" and "aborted".
bool IsTerminalState(std::string_view state);

}  // namespace txcoord
