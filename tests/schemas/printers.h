// gtest printers for the schema types, so a failed EXPECT_EQ says "NOT_FOUND", not "4-byte object".
#pragma once

#include <ostream>

#include "txcoord/status.h"

namespace txcoord {

// Found by argument-dependent lookup, hence in txcoord and not in a testing namespace.
inline void PrintTo(StatusCode code, std::ostream* out) { *out << StatusCodeName(code); }

}  // namespace txcoord
