#include "txcoord/process_log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>
#include <string_view>

namespace txcoord {
namespace {

constexpr const char* kTimePattern = "%Y-%m-%dT%H:%M:%S.%eZ";

// Control characters become \u00XX; other bytes pass through, so the line is valid JSON as long
// as the message is valid UTF-8.
void AppendJsonString(std::string_view text, spdlog::memory_buf_t& out) {
  out.push_back('"');
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (byte < 0x20) {
      char escaped[8];
      const int n = std::snprintf(escaped, sizeof escaped, "\\u%04x", byte);
      out.append(std::string_view(escaped, static_cast<size_t>(n)));
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

void AppendJsonLine(std::string_view time, std::string_view level, std::string_view msg,
                    spdlog::memory_buf_t& dest) {
  dest.append(std::string_view("{\"time\":\""));
  dest.append(time);
  dest.append(std::string_view("\",\"level\":"));
  AppendJsonString(level, dest);
  dest.append(std::string_view(",\"msg\":"));
  AppendJsonString(msg, dest);
  dest.append(std::string_view("}\n"));
}

// One JSON object per line. A hand-written formatter rather than a spdlog pattern, because a
// pattern cannot escape quotes or newlines inside the message.
class JsonLineFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    spdlog::memory_buf_t time;
    time_formatter_.format(msg, time);  // no end-of-line: it was given none
    const auto level = spdlog::level::to_string_view(msg.level);
    AppendJsonLine(std::string_view(time.data(), time.size()),
                   std::string_view(level.data(), level.size()),
                   std::string_view(msg.payload.data(), msg.payload.size()), dest);
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonLineFormatter>();
  }

 private:
  spdlog::pattern_formatter time_formatter_{kTimePattern, spdlog::pattern_time_type::utc, ""};
};

}  // namespace

void InitProcessLog(const std::string& name, LogFormat format) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  if (format == LogFormat::kJson) {
    sink->set_formatter(std::make_unique<JsonLineFormatter>());
  } else {
    sink->set_formatter(std::make_unique<spdlog::pattern_formatter>(
        std::string(kTimePattern) + " %l %v", spdlog::pattern_time_type::utc));
  }
  auto logger = std::make_shared<spdlog::logger>(name, std::move(sink));
  logger->set_level(spdlog::level::info);
  // Each line is a whole event; flush it at once so a crash or a pipe reader loses nothing.
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(std::move(logger));
}

namespace internal {
std::string JsonLogLine(std::string_view time, std::string_view level, std::string_view msg) {
  spdlog::memory_buf_t out;
  AppendJsonLine(time, level, msg, out);
  return std::string(out.data(), out.size());
}
}  // namespace internal

}  // namespace txcoord
