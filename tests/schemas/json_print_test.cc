// MessageToJson's own printer against protobuf's json_util, which defined the contract's JSON
// until the printer replaced it on the hot path: wherever the printer prints, it must write the
// same bytes; wherever it declines, MessageToJson must still answer what json_util answers.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/message.h>
#include <google/protobuf/reflection.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/timestamp.pb.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "random_message.h"
#include "txcoord/schemas/json.h"
#include "txcoord/v1/api.pb.h"
#include "txcoord/v1/log.pb.h"
#include "txcoord/v1/outbox.pb.h"

namespace txcoord::testing {
namespace {

std::string Util(const Message& m, bool print_defaults) {
  return internal::MessageToJsonThroughUtil(m, {.print_defaults = print_defaults});
}

TEST(JsonPrintTest, EveryCodePointIsWrittenAsJsonUtilWritesIt) {
  // One list of single-character strings per block of code points: a block that differs is
  // then searched for the first code point that does.
  for (unsigned block = 0; block < 0x110000; block += 0x1000) {
    google::protobuf::Value list;
    std::vector<unsigned> points;
    for (unsigned cp = block; cp < block + 0x1000; ++cp) {
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;  // surrogates are not characters
      list.mutable_list_value()->add_values()->set_string_value("a" + Utf8(cp) + "z");
      points.push_back(cp);
    }
    std::string fast;
    ASSERT_TRUE(internal::PrintJson(list, true, &fast)) << "block " << std::hex << block;
    if (fast == Util(list, true)) continue;
    for (unsigned cp : points) {
      google::protobuf::Value one;
      one.set_string_value(Utf8(cp));
      std::string printed;
      ASSERT_TRUE(internal::PrintJson(one, true, &printed));
      ASSERT_EQ(printed, Util(one, true)) << "code point U+" << std::hex << cp;
    }
    FAIL() << "block " << std::hex << block << " differs, no single code point does";
  }
}

TEST(JsonPrintTest, NumbersAndTimestampsAreWrittenAsJsonUtilWritesThem) {
  const double doubles[] = {0.0,
                            -0.0,
                            1.0,
                            -1.0,
                            0.1,
                            1.5e-7,
                            3.141592653589793,
                            1e15,
                            1e16,
                            1e21,
                            123456789012345678.0,
                            5e-324,
                            std::numeric_limits<double>::max(),
                            std::numeric_limits<double>::min(),
                            9007199254740993.0,
                            100.0};
  for (double d : doubles) {
    google::protobuf::Value v;
    v.set_number_value(d);
    std::string fast;
    ASSERT_TRUE(internal::PrintJson(v, true, &fast)) << d;
    EXPECT_EQ(fast, Util(v, true)) << d;
  }
  const std::int64_t seconds[] = {0,          1,          -1,           86399,        86400,
                                  951782400,  1709164800, -62135596800, 253402300799, -2208988800,
                                  4102444800, 1798000000, -86401};
  const std::int32_t nanos[] = {0, 1, 1000, 1000000, 120000000, 999999999, 123456789, 5000};
  for (std::int64_t s : seconds) {
    for (std::int32_t n : nanos) {
      google::protobuf::Timestamp ts;
      ts.set_seconds(s);
      ts.set_nanos(n);
      std::string fast;
      ASSERT_TRUE(internal::PrintJson(ts, true, &fast)) << s << "." << n;
      EXPECT_EQ(fast, Util(ts, true)) << s << "." << n;
    }
  }
}

TEST(JsonPrintTest, RandomMessagesOfEverySchemaTypeAreWrittenAsJsonUtilWritesThem) {
  const std::uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  RandomFiller filler(seed);
  const auto types = SchemaMessages();
  ASSERT_GT(types.size(), 20u);
  int printed = 0;
  for (const Descriptor* type : types) {
    const Message* prototype =
        google::protobuf::MessageFactory::generated_factory()->GetPrototype(type);
    ASSERT_NE(prototype, nullptr) << type->full_name();
    for (int round = 0; round < 60; ++round) {
      std::unique_ptr<Message> m(prototype->New());
      if (round > 0) filler.Fill(m.get(), 0);  // round 0: the empty message
      for (bool defaults : {true, false}) {
        std::string fast;
        const bool ok = internal::PrintJson(*m, defaults, &fast);
        const std::string util = Util(*m, defaults);
        if (HasPlainMap(type)) {
          EXPECT_EQ(MessageToJson(*m, {.print_defaults = defaults}), util) << type->full_name();
          continue;
        }
        ASSERT_TRUE(ok) << type->full_name() << " was declined: " << m->ShortDebugString();
        ASSERT_EQ(fast, util) << type->full_name() << " defaults " << defaults;
        EXPECT_EQ(MessageToJson(*m, {.print_defaults = defaults}), util);
        ++printed;
      }
    }
  }
  EXPECT_GT(printed, 1000);
}

TEST(JsonPrintTest, WhatThePrinterDeclinesIsAnsweredByJsonUtil) {
  // Bytes that are not UTF-8: json_util drops them (and logs); the printer must not guess.
  v1::Branch branch;
  branch.set_branch_id(
      std::string("a\xff"
                  "b"));
  std::string fast;
  EXPECT_FALSE(internal::PrintJson(branch, true, &fast));
  EXPECT_EQ(MessageToJson(branch), Util(branch, true));

  // A timestamp json_util refuses: the contract's error body, never a partial object.
  v1::Transaction t;
  t.mutable_created_at()->set_seconds(253402300800);
  EXPECT_FALSE(internal::PrintJson(t, true, &fast));
  const std::string refused = MessageToJson(t);
  EXPECT_EQ(refused, Util(t, true));
  EXPECT_NE(refused.find("\"code\":\"UNAVAILABLE\""), std::string::npos) << refused;

  // NaN and a Value with no kind.
  google::protobuf::Value nan;
  nan.set_number_value(std::nan(""));
  EXPECT_FALSE(internal::PrintJson(nan, true, &fast));
  EXPECT_EQ(MessageToJson(nan), Util(nan, true));
  v1::Step step;
  step.mutable_payload();
  EXPECT_FALSE(internal::PrintJson(step, true, &fast));
  EXPECT_EQ(MessageToJson(step), Util(step, true));

  // Pretty printing goes through json_util as a whole.
  branch.set_branch_id("debit");
  EXPECT_EQ(MessageToJson(branch, {.pretty = true}),
            internal::MessageToJsonThroughUtil(branch, {.pretty = true}));
}

}  // namespace
}  // namespace txcoord::testing
