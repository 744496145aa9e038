// The executables' JSON log lines: valid JSON whatever the message holds.
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <gtest/gtest.h>

#include <string>

#include "txcoord/process_log.h"

namespace txcoord {
namespace {

Poco::JSON::Object::Ptr ParseLine(const std::string& line) {
  EXPECT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n') << "one event per line";
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "no line break inside an event: " << line;
  Poco::JSON::Parser parser;
  return parser.parse(line).extract<Poco::JSON::Object::Ptr>();
}

TEST(ProcessLogTest, AJsonLineCarriesTimeLevelAndMessage) {
  const auto o = ParseLine(internal::JsonLogLine("2026-12-06T10:00:00.123Z", "info", "serving"));
  EXPECT_EQ(o->getValue<std::string>("time"), "2026-12-06T10:00:00.123Z");
  EXPECT_EQ(o->getValue<std::string>("level"), "info");
  EXPECT_EQ(o->getValue<std::string>("msg"), "serving");
  EXPECT_EQ(o->size(), 3u);
}

TEST(ProcessLogTest, QuotesBackslashesAndControlCharactersAreEscaped) {
  const std::string msg = std::string("a \"quoted\" C:\\path\nsecond line\ttab\x01 bell\x7f end") +
                          "\xc3\xa9";  // é passes through as UTF-8
  const std::string line = internal::JsonLogLine("t", "warning", msg);
  EXPECT_NE(line.find("\\u000a"), std::string::npos) << line;
  EXPECT_NE(line.find("\\u0001"), std::string::npos) << line;
  EXPECT_EQ(ParseLine(line)->getValue<std::string>("msg"), msg);
}

TEST(ProcessLogTest, AnEmptyMessageIsAnEmptyString) {
  EXPECT_EQ(ParseLine(internal::JsonLogLine("t", "error", ""))->getValue<std::string>("msg"), "");
}

}  // namespace
}  // namespace txcoord
