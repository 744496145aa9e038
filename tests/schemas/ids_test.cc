// The id rule of contract section 1: gtid, branch_id and step_id are 1 to 128 characters of
// [A-Za-z0-9._:-]. Ids go into URL paths, log keys and headers, so a character outside the set
// (a '/', a space, a byte of UTF-8) must be refused, not escaped somewhere and not elsewhere.
#include "txcoord/schemas/ids.h"

#include <gtest/gtest.h>

#include <string>

#include "printers.h"
#include "utf8.h"

namespace txcoord {
namespace {

using testing::IsValidUtf8;

TEST(IdsTest, LengthIsOneTo128) {
  EXPECT_FALSE(IsValidId(""));
  EXPECT_TRUE(IsValidId("a"));
  EXPECT_TRUE(IsValidId(std::string(kMaxIdLength, 'a')));
  EXPECT_EQ(kMaxIdLength, 128u);
  EXPECT_FALSE(IsValidId(std::string(kMaxIdLength + 1, 'a')));
}

TEST(IdsTest, AcceptsEveryAllowedCharacter) {
  EXPECT_TRUE(IsValidId("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"));
  for (const char* id : {".", "_", ":", "-", "order-42", "tx_1.2:3", "-leading", "trailing."}) {
    EXPECT_TRUE(IsValidId(id)) << id;
  }
}

TEST(IdsTest, RejectsEveryOtherCharacter) {
  // Each byte outside the set, alone and inside an otherwise valid id.
  for (int c = 0; c < 256; ++c) {
    const char ch = static_cast<char>(c);
    const bool allowed = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                         (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == ':' ||
                         ch == '-';
    if (allowed) continue;
    const std::string inside = std::string("order") + ch + "42";
    EXPECT_FALSE(IsValidId(std::string(1, ch))) << "byte " << c;
    EXPECT_FALSE(IsValidId(inside)) << "byte " << c;
  }
  // The ones a client is most likely to try, by name.
  EXPECT_FALSE(IsValidId("order 42"));
  EXPECT_FALSE(IsValidId("orders/42"));
  EXPECT_FALSE(IsValidId("order%2F42"));
  EXPECT_FALSE(IsValidId("ordér-42"));  // UTF-8: two bytes, neither allowed
  EXPECT_FALSE(IsValidId("заказ-42"));
  std::string with_nul = "order";
  with_nul += '\0';
  with_nul += "42";
  EXPECT_FALSE(IsValidId(with_nul));  // a NUL must not end the check
}

TEST(IdsTest, ValidateIdNamesTheFieldAndTheRule) {
  EXPECT_TRUE(ValidateId("gtid", "order-42").ok());

  const Status status = ValidateId("branch_id", "bad id");
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("branch_id"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("bad id"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("1 to 128"), std::string::npos) << status.message();

  EXPECT_EQ(ValidateId("step_id", "").code(), StatusCode::kInvalidArgument);

  // A long id is shown shortened: the message reaches a person and a log line.
  const Status long_id = ValidateId("gtid", std::string(1000, 'x'));
  EXPECT_EQ(long_id.code(), StatusCode::kInvalidArgument);
  EXPECT_LT(long_id.message().size(), 200u) << long_id.message();
}

// The message goes into ErrorReply.message, a proto3 string, which must be UTF-8: invalid bytes
// make the binary reply unparseable and are dropped from the JSON one. An id comes from a URL path
// (any bytes once percent-decoded) or is cut at 40 bytes, possibly inside a character.
TEST(IdsTest, ValidateIdMessageIsValidUtf8ForAnyInput) {
  const std::string cut_inside_a_character = std::string(39, 'a') + "é-and-more";
  for (const std::string& id : {std::string("\xff\xfe"), std::string("order-\xc3"),
                                cut_inside_a_character, std::string("заказ-42")}) {
    const Status status = ValidateId("gtid", id);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(IsValidUtf8(status.message())) << status.message();
  }
}

TEST(IdsTest, KnownProtocolsAreExactlyTheContractsFour) {
  for (const char* p : {"2pc", "3pc", "tcc", "saga"}) EXPECT_TRUE(IsKnownProtocol(p)) << p;
  for (const char* p : {"", "2PC", "Saga", "xa", "2pc ", "1pc"}) {
    EXPECT_FALSE(IsKnownProtocol(p)) << p;
  }
}

TEST(IdsTest, TerminalStatesAreCommittedAndAborted) {
  EXPECT_TRUE(IsTerminalState("committed"));
  EXPECT_TRUE(IsTerminalState("aborted"));
  for (const char* s : {"", "active", "preparing", "committing", "aborting", "Committed",
                        "compensated", "succeeded", "failed"}) {
    EXPECT_FALSE(IsTerminalState(s)) << s;
  }
}

}  // namespace
}  // namespace txcoord
