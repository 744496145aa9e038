// JsonToMessage and MessageToJson: what the coordinator must refuse, and what it must pass
// through untouched. Section 1 of the contract answers a malformed, unknown or wrong-typed field
// with 400 INVALID_ARGUMENT, so each of these is a request a client may really send.
#include "txcoord/schemas/json.h"

#include <Poco/Dynamic/Var.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "json_compare.h"
#include "printers.h"
#include "txcoord/v1/api.pb.h"
#include "utf8.h"

namespace txcoord::testing {
namespace {

using google::protobuf::util::MessageDifferencer;

TEST(JsonToMessageTest, AnUnknownFieldIsRejectedAndNamed) {
  // A misspelled field must not be dropped: "protcol" would silently begin a transaction with
  // no protocol, and "wiat" would answer at once instead of waiting.
  v1::BeginRequest begin;
  Status status = JsonToMessage(R"({"gtid": "order-42", "protcol": "2pc"})", &begin);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("protcol"), std::string::npos) << status.message();

  status = JsonToMessage(R"({"branches": [{"branch_id": "debit", "uri": "http://h/"}]})", &begin);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("uri"), std::string::npos) << status.message();

  v1::CompleteRequest complete;
  status = JsonToMessage(R"({"wiat": true})", &complete);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("wiat"), std::string::npos) << status.message();
}

// A JSON text with a name for the test's name.
struct NamedJson {
  const char* name;
  const char* json;
};

void PrintTo(const NamedJson& c, std::ostream* out) { *out << c.json; }

class WrongTypedFieldTest : public ::testing::TestWithParam<NamedJson> {};

TEST_P(WrongTypedFieldTest, IsRejectedAsInvalidArgument) {
  v1::BeginRequest begin;
  const Status status = JsonToMessage(GetParam().json, &begin);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument)
      << GetParam().json << " was accepted as " << MessageToJson(begin);
  EXPECT_TRUE(IsValidUtf8(status.message()));
}

INSTANTIATE_TEST_SUITE_P(
    BeginRequest, WrongTypedFieldTest,
    ::testing::Values(
        NamedJson{"TimeoutNotANumber", R"({"timeout_ms": "abc"})"},
        NamedJson{"TimeoutFraction", R"({"timeout_ms": 1.5})"},
        NamedJson{"TimeoutAboveInt32", R"({"timeout_ms": 3000000000})"},
        NamedJson{"TimeoutBool", R"({"timeout_ms": true})"},
        NamedJson{"GtidNumber", R"({"gtid": 42})"}, NamedJson{"GtidObject", R"({"gtid": {}})"},
        NamedJson{"WaitNumber", R"({"wait": 1})"},
        // protobuf 3.21 reads "yes", "y", "t" and "1" as true: a typo'd flag must not decide.
        NamedJson{"WaitYesString", R"({"wait": "yes"})"},
        NamedJson{"WaitOneString", R"({"wait": "1"})"},
        // A repeated field needs a JSON array. protobuf 3.21 reads a lone object or scalar as a
        // one-element list, which would begin a transaction with a branch nobody wrote.
        NamedJson{"BranchesObject", R"({"branches": {}})"},
        NamedJson{"BranchesString", R"({"branches": "debit"})"},
        NamedJson{"BranchElementNumber", R"({"branches": [1]})"},
        NamedJson{"DependsOnString", R"({"steps": [{"step_id": "s", "depends_on": "reserve"}]})"},
        NamedJson{"DependsOnObject", R"({"steps": [{"step_id": "s", "depends_on": {}}]})"}),
    [](const auto& info) { return std::string(info.param.name); });

INSTANTIATE_TEST_SUITE_P(Malformed, WrongTypedFieldTest,
                         ::testing::Values(NamedJson{"Empty", ""},
                                           NamedJson{"Unclosed", R"({"gtid": "a")"},
                                           NamedJson{"TrailingText", R"({"gtid": "a"} x)"},
                                           NamedJson{"RootArray", "[]"},
                                           NamedJson{"RootString", R"("a")"},
                                           NamedJson{"InvalidUtf8", "{\"gtid\": \"\xff\"}"}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(JsonToMessageTest, ParsingReplacesWhatTheMessageHeld) {
  // A reused message must not keep fields of the previous request (a stale "wait": true, or a
  // branch of another transaction).
  v1::BeginRequest begin;
  begin.set_protocol("saga");
  begin.set_wait(true);
  begin.add_branches()->set_branch_id("stale");
  ASSERT_TRUE(JsonToMessage(R"({"gtid": "order-43"})", &begin).ok());
  v1::BeginRequest expected;
  expected.set_gtid("order-43");
  EXPECT_TRUE(MessageDifferencer::Equals(begin, expected)) << begin.ShortDebugString();
}

// "payload is any JSON value and is passed to the participant untouched" (section 3).
class PayloadKindTest : public ::testing::TestWithParam<NamedJson> {};

TEST_P(PayloadKindTest, ComesBackUnchanged) {
  const std::string payload = GetParam().json;
  for (const auto* type : {v1::Branch::descriptor(), v1::Callback::descriptor()}) {
    SCOPED_TRACE(type->name());
    const std::string written = R"({"branch_id": "debit", "payload": )" + payload + "}";
    std::unique_ptr<google::protobuf::Message> message(
        google::protobuf::MessageFactory::generated_factory()->GetPrototype(type)->New());
    const Status status = JsonToMessage(written, message.get());
    ASSERT_TRUE(status.ok()) << status.ToString();
    const std::string printed = MessageToJson(*message);
    // The payload is compared exactly (no added keys, same numbers); see json_compare.h.
    for (const auto& diff : JsonDifferences(written, printed, type)) {
      ADD_FAILURE() << diff << "\nprinted: " << printed;
    }
    // The payload must be present even when null: null is a value the participant receives.
    Poco::JSON::Parser parser;
    const auto object = parser.parse(printed).extract<Poco::JSON::Object::Ptr>();
    EXPECT_TRUE(object->has("payload")) << printed;
  }
}

INSTANTIATE_TEST_SUITE_P(
    EveryJsonKind, PayloadKindTest,
    ::testing::Values(
        NamedJson{"Object", R"({"account": "A", "amount": 30, "tags": ["x"], "meta": {}})"},
        NamedJson{"EmptyObject", "{}"},
        NamedJson{"Array", R"([1, "two", true, null, {"k": [false]}, []])"},
        NamedJson{"EmptyArray", "[]"}, NamedJson{"String", R"("ACME \"quoted\" é ✓")"},
        NamedJson{"EmptyString", R"("")"}, NamedJson{"Integer", "30"}, NamedJson{"Negative", "-17"},
        NamedJson{"Fraction", "0.125"}, NamedJson{"Exponent", "1e300"},
        // The largest integer a double holds exactly; the limit of google.protobuf.Value.
        NamedJson{"MaxSafeInteger", "9007199254740991"}, NamedJson{"True", "true"},
        NamedJson{"False", "false"}, NamedJson{"Null", "null"}),
    [](const auto& info) { return std::string(info.param.name); });

// Durations and counters must be JSON numbers, as the contract writes them; proto3 JSON prints
// 64-bit integers as strings, which is why the schema uses int32 for them.
TEST(MessageToJsonTest, IntegersPrintAsJsonNumbers) {
  v1::Transaction transaction;
  auto* branch = transaction.add_branches();
  branch->set_attempts(3);
  auto* step = transaction.add_steps();
  step->set_attempts(4);
  v1::BeginRequest begin;
  begin.set_timeout_ms(10000);

  Poco::JSON::Parser parser;
  const auto b = parser.parse(MessageToJson(begin)).extract<Poco::JSON::Object::Ptr>();
  ASSERT_TRUE(b->has("timeout_ms"));
  EXPECT_FALSE(b->get("timeout_ms").isString());
  EXPECT_TRUE(b->get("timeout_ms").isInteger());
  EXPECT_EQ(b->get("timeout_ms").convert<int>(), 10000);

  parser.reset();
  const auto t = parser.parse(MessageToJson(transaction)).extract<Poco::JSON::Object::Ptr>();
  const auto attempts = t->getArray("branches")->getObject(0)->get("attempts");
  EXPECT_TRUE(attempts.isInteger() && !attempts.isString());
  EXPECT_EQ(attempts.convert<int>(), 3);
  EXPECT_EQ(t->getArray("steps")->getObject(0)->get("attempts").convert<int>(), 4);
}

// The same rule as a guard on the schema: a 64-bit integer added to a public API message would
// print as a string and break every client that reads a number.
TEST(MessageToJsonTest, ThePublicApiHasNo64BitIntegers) {
  const auto* file = v1::Transaction::descriptor()->file();
  for (int m = 0; m < file->message_type_count(); ++m) {
    const auto* message = file->message_type(m);
    for (int f = 0; f < message->field_count(); ++f) {
      const auto* field = message->field(f);
      const auto cpp_type = field->cpp_type();
      EXPECT_TRUE(cpp_type != google::protobuf::FieldDescriptor::CPPTYPE_INT64 &&
                  cpp_type != google::protobuf::FieldDescriptor::CPPTYPE_UINT64)
          << field->full_name() << " would print as a JSON string";
    }
  }
}

// Compared as JSON values, exactly: key order is the printer's business, extra keys are not.
void ExpectJson(std::string_view expected, const std::string& printed) {
  for (const auto& diff : JsonDifferences(expected, printed, nullptr)) {
    ADD_FAILURE() << diff << "\nprinted: " << printed;
  }
}

TEST(MessageToJsonTest, PrintDefaultsShowsEveryFieldAndCompactFormOmitsThem) {
  v1::Branch branch;
  branch.set_branch_id("debit");
  ExpectJson(R"({"branch_id": "debit", "url": ""})", MessageToJson(branch));
  ExpectJson(R"({"branch_id": "debit"})", MessageToJson(branch, {.print_defaults = false}));

  // Fields with presence (state, attempts, last_error of a record) print when set, even to
  // their default, so a record can say "attempts": 0 and "last_error": "".
  branch.set_attempts(0);
  branch.set_last_error("");
  ExpectJson(R"({"branch_id": "debit", "attempts": 0, "last_error": ""})",
             MessageToJson(branch, {.print_defaults = false}));

  v1::CompleteRequest complete;
  ExpectJson(R"({"wait": false})", MessageToJson(complete));
  ExpectJson("{}", MessageToJson(complete, {.print_defaults = false}));
  EXPECT_NE(MessageToJson(branch, {.pretty = true}).find('\n'), std::string::npos);
  EXPECT_EQ(MessageToJson(branch).find('\n'), std::string::npos);
}

// The coordinator puts a parse error's message into an ErrorReply. proto3 strings must be UTF-8:
// an invalid byte there makes the binary reply unparseable and is dropped from the JSON one.
TEST(JsonToMessageTest, ErrorMessagesAreValidUtf8EvenForInvalidInput) {
  v1::BeginRequest begin;
  const Status status = JsonToMessage("{\"gtid\": \"order-\xc3\"}", &begin);
  ASSERT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(IsValidUtf8(status.message())) << status.message();
}

}  // namespace
}  // namespace txcoord::testing
