// The log of txcoord's executables (txcoord, txrelay): spdlog to stderr, one line per event, as
// text or as JSON objects, UTC times. One shape for both, so one log pipeline reads them all.
#pragma once

#include <string>
#include <string_view>

namespace txcoord {

enum class LogFormat { kText, kJson };

// Makes the default spdlog logger, named `name`, write to stderr in `format`:
//   text: 2024-05-01T10:00:00.123Z info serving on 127.0.0.1:8470 ...
//   json: {"time":"2024-05-01T10:00:00.123Z","level":"info","msg":"serving on ..."}
// Each line is flushed at once. Call once, before any thread logs.
void InitProcessLog(const std::string& name, LogFormat format);

namespace internal {
// The JSON form of one event, as InitProcessLog's JSON lines carry it (for tests).
std::string JsonLogLine(std::string_view time, std::string_view level, std::string_view msg);
}  // namespace internal

}  // namespace txcoord
