// JsonToMessage's own reader against protobuf's json_util behind the shape check, which was
// JsonToMessage until the reader went in front of it: whatever the reader accepts it must read
// exactly as json_util does, and JsonToMessage as a whole must answer every text, good or bad,
// as before (same status, same message).
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>

#include "random_message.h"
#include "txcoord/schemas/json.h"

namespace txcoord::testing {
namespace {

using google::protobuf::util::MessageDifferencer;

// A type the reader must read whole: no field of a kind it leaves to json_util.
bool Readable(const Descriptor* type, int depth = 0) {
  if (depth > 8) return true;
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* f = type->field(i);
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT64:
      case FieldDescriptor::CPPTYPE_UINT64:
      case FieldDescriptor::CPPTYPE_ENUM:
      case FieldDescriptor::CPPTYPE_FLOAT:
      case FieldDescriptor::CPPTYPE_DOUBLE:
        return false;
      case FieldDescriptor::CPPTYPE_STRING:
        if (f->type() == FieldDescriptor::TYPE_BYTES) return false;
        break;
      case FieldDescriptor::CPPTYPE_MESSAGE:
        if (f->is_map()) return false;
        if (f->message_type()->file()->package() == "google.protobuf") {
          const auto kind = f->message_type()->well_known_type();
          if (kind != Descriptor::WELLKNOWNTYPE_VALUE &&
              kind != Descriptor::WELLKNOWNTYPE_TIMESTAMP) {
            return false;
          }
        } else if (!Readable(f->message_type(), depth + 1)) {
          return false;
        }
        break;
      default:
        break;
    }
  }
  return true;
}

// One text through both: whatever ReadJson accepts, json_util reads the same; JsonToMessage
// answers as json_util does. Returns whether ReadJson accepted it.
bool ExpectSameReading(const Message& prototype, const std::string& text) {
  std::unique_ptr<Message> fast(prototype.New());
  std::unique_ptr<Message> util(prototype.New());
  std::unique_ptr<Message> public_api(prototype.New());
  const bool accepted = internal::ReadJson(text, fast.get());
  const Status util_status = internal::JsonToMessageThroughUtil(text, util.get());
  const Status status = JsonToMessage(text, public_api.get());
  EXPECT_EQ(status.code(), util_status.code()) << text;
  EXPECT_EQ(status.message(), util_status.message()) << text;
  EXPECT_TRUE(MessageDifferencer::Equals(*public_api, *util)) << text;
  if (accepted) {
    EXPECT_TRUE(util_status.ok()) << "the reader accepted what json_util refuses: " << text << "\n"
                                  << util_status.message();
    EXPECT_TRUE(MessageDifferencer::Equals(*fast, *util))
        << text << "\nreader: " << fast->ShortDebugString()
        << "\njson_util: " << util->ShortDebugString();
  }
  return accepted;
}

// Small edits of a valid text: most break it, some keep it valid in another spelling.
std::string Mutate(std::string text, std::mt19937& rng) {
  auto pick = [&](std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
  };
  static const std::string kBytes = "{}[],:\"\\ \t\n0123456789-+.eEtrufalsn\x01\x7f\xc3\xa9";
  static const char* const kInserts[] = {
      " ",       "\n ", "null", "\"\"",     "[]",  "{}", ",", "\\u0041", "\\ud834\\udd1e",
      "\\ud834", "-0",  "1e2",  "\"x\":1,", "true"};
  const int edits = 1 + static_cast<int>(pick(3));
  for (int e = 0; e < edits && !text.empty(); ++e) {
    const std::size_t at = pick(text.size());
    switch (pick(5)) {
      case 0:
        text[at] = kBytes[pick(kBytes.size())];
        break;
      case 1:
        text.erase(at, 1 + pick(3));
        break;
      case 2:
        text.insert(at, kInserts[pick(std::size(kInserts))]);
        break;
      case 3: {  // a member twice: copy the text from one quote to the next comma
        const std::size_t q = text.find('"', at);
        const std::size_t comma = q == std::string::npos ? q : text.find(',', q);
        if (comma != std::string::npos) text.insert(q, text.substr(q, comma - q + 1));
        break;
      }
      default: {  // an ASCII letter inside the text written as an escape
        if (std::isalpha(static_cast<unsigned char>(text[at]))) {
          char esc[7];
          std::snprintf(esc, sizeof esc, "\\u%04x", static_cast<unsigned char>(text[at]));
          text.replace(at, 1, esc);
        }
      }
    }
  }
  return text;
}

TEST(JsonParseTest, RandomMessagesAndTheirMutationsAreReadAsJsonUtilReadsThem) {
  const std::uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  RandomFiller filler(seed);
  std::mt19937 rng(seed);
  int readable_types = 0;
  int accepted_mutations = 0;
  int declined_mutations = 0;
  for (const Descriptor* type : SchemaMessages()) {
    const Message* prototype =
        google::protobuf::MessageFactory::generated_factory()->GetPrototype(type);
    ASSERT_NE(prototype, nullptr);
    const bool readable = Readable(type);
    readable_types += readable ? 1 : 0;
    for (int round = 0; round < 40; ++round) {
      std::unique_ptr<Message> m(prototype->New());
      if (round > 0) filler.Fill(m.get(), 0);
      const std::string text = MessageToJson(*m, {.print_defaults = round % 2 == 0});
      const bool accepted = ExpectSameReading(*prototype, text);
      if (readable) {
        ASSERT_TRUE(accepted) << type->full_name() << " was declined: " << text;
      }
      for (int k = 0; k < 6; ++k) {
        (ExpectSameReading(*prototype, Mutate(text, rng)) ? accepted_mutations
                                                          : declined_mutations)++;
      }
      if (::testing::Test::HasFailure()) return;
    }
  }
  // The hot path's requests are all readable; and the mutations reach both sides.
  EXPECT_TRUE(Readable(v1::BeginRequest::descriptor()));
  EXPECT_TRUE(Readable(v1::Callback::descriptor()));
  EXPECT_TRUE(Readable(v1::CompleteRequest::descriptor()));
  EXPECT_TRUE(Readable(v1::Transaction::descriptor()));  // the reply a client waits for
  EXPECT_GT(readable_types, 10);
  EXPECT_GT(accepted_mutations, 100);
  EXPECT_GT(declined_mutations, 1000);
}

TEST(JsonParseTest, WhatTheReaderDeclinesStillGetsJsonUtilsAnswer) {
  const char* const texts[] = {
      R"({"gtid": "a", "gtid": "b"})",        // a repeated member
      R"({"gtid": "\ud834"})",                // a lone surrogate
      R"({"timeoutMs": 5})",                  // the JSON name, not the .proto one
      R"({"timeout_ms": "5"})",               // a number as a string
      R"({"timeout_ms": 5.0})",               // an integer written as a decimal
      R"({"timeout_ms": 2147483648})",        // out of range
      R"({"wait": "yes"})",                   // a string for a bool
      R"({"branches": {"branch_id": "x"}})",  // a lone object for a repeated field
      R"({"gtid": null})",                    // null outside a Value
      R"({"steps": [{"payload": -0}]})",      // -0 in a Value
      R"({"steps": [{"payload": {"a": 1, "a": 2}}]})",
      R"({"gtid": "a"} x)",     // trailing text
      "{\"gtid\": \"a\x01\"}",  // a raw control character
      "{\"gtid\": \"\xff\"}",   // not UTF-8
  };
  for (const char* text : texts) {
    v1::BeginRequest fast;
    EXPECT_FALSE(internal::ReadJson(text, &fast)) << text;
    ExpectSameReading(v1::BeginRequest::default_instance(), text);
  }
  const char* const timestamps[] = {
      "2026-01-01T00:00:00+01:00", "2026-02-29T00:00:00Z", "2024-02-30T00:00:00Z",
      "2026-01-01T00:00:00.12Z",   "2026-01-01t00:00:00Z", "2026-01-01T00:00:60Z",
      "0000-01-01T00:00:00Z",      "2026-13-01T00:00:00Z", "2026-01-01T00:00:00.1234567890Z",
  };
  for (const char* ts : timestamps) {
    const std::string text = std::string(R"({"gtid": "a", "created_at": ")") + ts + "\"}";
    v1::Transaction fast;
    EXPECT_FALSE(internal::ReadJson(text, &fast)) << text;
    ExpectSameReading(v1::Transaction::default_instance(), text);
  }
  v1::Transaction t;
  ASSERT_TRUE(internal::ReadJson(R"({"created_at": "2024-02-29T23:59:59.000001Z"})", &t));
  EXPECT_EQ(t.created_at().seconds(), 1709251199);
  EXPECT_EQ(t.created_at().nanos(), 1000);

  v1::BeginRequest begin;
  ASSERT_TRUE(internal::ReadJson(
      R"( { "gtid" : "order-42" , "protocol":"saga", "steps":[{"step_id":"s1",)"
      R"("payload":{"amount":1.5e3,"note":"\u00e9\ud83d\ude00\n","tags":[true,null,-2]}}]} )",
      &begin));
  EXPECT_EQ(begin.gtid(), "order-42");
  ASSERT_EQ(begin.steps_size(), 1);
  const auto& payload = begin.steps(0).payload().struct_value().fields();
  EXPECT_EQ(payload.at("amount").number_value(), 1500.0);
  EXPECT_EQ(payload.at("note").string_value(), "\xc3\xa9\xf0\x9f\x98\x80\n");
  EXPECT_EQ(payload.at("tags").list_value().values(2).number_value(), -2.0);
}

}  // namespace
}  // namespace txcoord::testing
