// Logging of the txcoord executable: spdlog to stderr, one line per event, as text or JSON.
#pragma once

#include "settings.h"

namespace txcoord::service {

// Makes the default spdlog logger write to stderr in `format`, with UTC timestamps:
//   text: 2024-05-01T10:00:00.123Z info serving on 127.0.0.1:8470 ...
//   json: {"time":"2024-05-01T10:00:00.123Z","level":"info","msg":"serving on ..."}
// Call once, before any thread logs.
void InitLogging(LogFormat format);

}  // namespace txcoord::service
