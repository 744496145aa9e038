// Identifier and URL rules of the contract, section 1.
#pragma once

#include <string_view>

#include "txcoord/status.h"

namespace txcoord {

// gtid, branch_id and step_id: 1 to 128 characters of [A-Za-z0-9._:-].
inline constexpr std::size_t kMaxIdLength = 128;
bool IsValidId(std::string_view id);
// OK, or InvalidArgument naming `what` ("gtid", "branch_id", ...) and the rule.
Status ValidateId(std::string_view what, std::string_view id);

// The contract's protocol names.
bool IsKnownProtocol(std::string_view protocol);
// "committed" and "aborted".
bool IsTerminalState(std::string_view state);

}  // namespace txcoord
