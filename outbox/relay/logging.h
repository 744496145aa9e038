// txrelay's log: spdlog to stderr, one line per event, as text or as JSON objects, UTC times.
// The same shape as txcoord's (coordinator/service/logging.h), so one log pipeline reads both.
#pragma once

#include "settings.h"

namespace txcoord::relay {

// Call once, before any thread logs.
void InitLogging(LogFormat format);

}  // namespace txcoord::relay
