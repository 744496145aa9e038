// JsonToMessage and MessageToJson: what the coordinator must refuse, and what it must pass
// through untouched. Section 1 of the contract answers a malformed, unknown or wrong-typed field
// with 400 INVALID_ARGUMENT, so each of these is a request a client may really send.
#include "txcoord/schemas/json.h"

#include <Poco/Dynamic/Var.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "json_compare.h"
#include "printers.h"
#include "txcoord/v1/api.pb.h"
#include "txcoord/v1/outbox.pb.h"
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

// The shape rules above are checked straight off the text, and through a parsed Value where the
// text is unusual (escaped names, deep nesting, malformed JSON): the answer must not depend on
// which path a text takes. Each case names the field the error must name.
struct ShapeCase {
  const char* name;
  const char* json;
  const char* error;  // a part of the message
};

void PrintTo(const ShapeCase& c, std::ostream* out) { *out << c.json; }

class ShapeErrorTest : public ::testing::TestWithParam<ShapeCase> {};

TEST_P(ShapeErrorTest, NamesTheFieldWhicheverWayTheTextIsChecked) {
  v1::BeginRequest begin;
  const Status status = JsonToMessage(GetParam().json, &begin);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << MessageToJson(begin);
  EXPECT_NE(status.message().find(GetParam().error), std::string::npos) << status.message();
}

INSTANTIATE_TEST_SUITE_P(
    BeginRequest, ShapeErrorTest,
    ::testing::Values(
        ShapeCase{"NestedElement", R"({"branches": [{"branch_id": "a"}, "b"]})",
                  "branches[1] must be a JSON object"},
        ShapeCase{"AfterAPayload",
                  R"({"branches": [{"payload": {"deep": [[{"x": "]}"}]]}, "branch_id": "a"}],
                      "wait": "yes"})",
                  "wait must be true or false"},
        ShapeCase{"CamelCaseName", R"({"timeoutMs": 5, "wait": 0})", "wait must be true or false"},
        ShapeCase{"Whitespace", " \n{ \"steps\" :\t[ { \"depends_on\" : \"s\" } ] }\r\n",
                  "steps[0].depends_on must be a JSON array"},
        // An escaped name is checked through the Value path, with the same answer.
        ShapeCase{"EscapedName", R"({"w\u0061it": "yes"})", "wait must be true or false"},
        // Text that does not parse gets the parser's error, not a shape error in it.
        ShapeCase{"MalformedAfterAShapeError", R"({"wait": "yes", "gtid": })",
                  "invalid BeginRequest JSON"},
        ShapeCase{"TrailingTextAfterAShapeError", R"({"wait": "yes"} x)",
                  "invalid BeginRequest JSON"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(JsonToMessageTest, AShapeErrorInTextThatDoesNotParseIsTheParsersError) {
  v1::BeginRequest begin;
  const Status status = JsonToMessage(R"({"wait": "yes", "gtid": })", &begin);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message().find("must be true or false"), std::string::npos) << status.message();
}

TEST(JsonToMessageTest, AMapNeedsAJsonObject) {
  v1::OutboxEvent event;
  Status status = JsonToMessage(R"({"headers": ["a"]})", &event);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("headers must be a JSON object"), std::string::npos)
      << status.message();
  status = JsonToMessage(R"({"headers": {"a": "1", "b": null}})", &event);
  EXPECT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(event.headers().at("a"), "1");
}

// A payload nested `depth` arrays deep. protobuf parses about 48 (each level is two messages,
// a Value and its ListValue, against its limit of 100); the scanner gives up past 64 levels.
std::string DeepArray(int depth) {
  return std::string(depth, '[') + R"("x\u005d")" + std::string(depth, ']');
}

TEST(JsonToMessageTest, DeepPayloadsAndEscapesInValuesParse) {
  const std::string deep = R"({"branches": [{"branch_id": "a\"]}\\", "payload": )" + DeepArray(45) +
                           R"(}], "wait": true})";
  v1::BeginRequest begin;
  const Status status = JsonToMessage(deep, &begin);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(begin.branches(0).branch_id(), "a\"]}\\");
  EXPECT_TRUE(begin.wait());
}

TEST(JsonToMessageTest, AShapeErrorAfterADeepPayloadIsFound) {
  const std::string deep =
      R"({"branches": [{"payload": )" + DeepArray(45) + R"(}], "wait": "yes"})";
  v1::BeginRequest begin;
  const Status status = JsonToMessage(deep, &begin);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("wait must be true or false"), std::string::npos)
      << status.message();
}

TEST(JsonToMessageTest, ATooDeepPayloadIsRefused) {
  for (int depth : {60, 70, 5000}) {
    const std::string deep =
        R"({"branches": [{"payload": )" + DeepArray(depth) + R"(}], "wait": "yes"})";
    v1::BeginRequest begin;
    EXPECT_EQ(JsonToMessage(deep, &begin).code(), StatusCode::kInvalidArgument) << depth;
  }
}

// Random BeginRequest texts for the comparison below: each field gets a value of the right or
// of a wrong shape, members come in random order, with random spacing, sometimes camelCase names,
// an unknown field, or a few random bytes edited away or in.
class RequestGenerator {
 public:
  explicit RequestGenerator(uint32_t seed) : random_(seed) {}

  std::string Request() {
    std::vector<std::string> members;
    Maybe(members, "gtid", {R"("g1")", "1", "null", "{}"});
    Maybe(members, Pick({"timeout_ms", "timeoutMs"}), {"5", R"("5")", "true", "null"});
    Maybe(members, "wait", {"true", "false", R"("yes")", "1", "null", "[]", "{}"});
    if (Chance(3)) members.push_back(Quote("branches") + ": " + Repeated([&] { return Branch(); }));
    if (Chance(3)) members.push_back(Quote("steps") + ": " + Repeated([&] { return Step(); }));
    if (Chance(10)) members.push_back(R"("bogus": 1)");
    std::string text = Object(members);
    if (Chance(5)) Edit(text);
    return text;
  }

 private:
  bool Chance(int one_in) { return random_() % one_in == 0; }
  std::string Pick(std::initializer_list<const char*> options) {
    return *(options.begin() + random_() % options.size());
  }
  std::string Space() { return Pick({"", " ", "\n  ", "\t"}); }
  std::string Quote(const std::string& name) { return Space() + "\"" + name + "\"" + Space(); }
  void Maybe(std::vector<std::string>& members, const std::string& name,
             std::initializer_list<const char*> values) {
    if (Chance(2)) members.push_back(Quote(name) + ":" + Space() + Pick(values));
  }
  std::string Object(std::vector<std::string> members) {
    std::shuffle(members.begin(), members.end(), random_);
    std::string out = "{" + Space();
    for (size_t i = 0; i < members.size(); ++i) out += (i ? "," : "") + members[i];
    return out + Space() + "}";
  }
  std::string Payload() {
    return Pick({"{}", "[1, [2, {}]]", "null", R"("s")", R"({"wait": "yes", "k": [true]})"});
  }
  template <typename Fn>
  std::string Repeated(Fn element) {
    switch (random_() % 6) {
      case 0:
        return "[]";
      case 1:
        return "[" + element() + "]";
      case 2:
        return "[" + element() + "," + Space() + element() + "]";
      case 3:
        return element();  // a lone element where a list belongs
      case 4:
        return Pick({R"("x")", "1", "null", "[1]", "[null]", R"(["x"])"});
      default:
        return "{}";
    }
  }
  std::string Branch() {
    std::vector<std::string> members;
    Maybe(members, Pick({"branch_id", "branchId"}), {R"("a")", "7", "null"});
    Maybe(members, "url", {R"("http://h:1/x")", "[]"});
    if (Chance(2)) members.push_back(Quote("payload") + ": " + Payload());
    return Object(members);
  }
  std::string Step() {
    std::vector<std::string> members;
    Maybe(members, "step_id", {R"("s1")", "{}"});
    Maybe(members, Pick({"depends_on", "dependsOn"}),
          {"[]", R"(["s0"])", R"("s0")", "{}", "null", "[1]"});
    if (Chance(2)) members.push_back(Quote("payload") + ": " + Payload());
    return Object(members);
  }
  void Edit(std::string& text) {
    const size_t at = random_() % (text.size() + 1);
    if (Chance(2) && at < text.size()) {
      text.erase(at, 1 + random_() % 3);
    } else {
      text.insert(at, Pick({"{", "}", "[", "]", "\"", ",", ":", "\\", "x"}));
    }
  }

  std::mt19937 random_;
};

// The scanner against the Value path (seeded; the seed, round and text are printed on a
// difference): both accept the same texts into the same message, and refuse the others for a
// shape error (a field of the wrong JSON type) or for a parse error alike. Parse errors may be
// worded differently (the scanner leaves some malformed texts to the message's parser rather
// than the Value's); the cases above pin the shape errors' words.
TEST(JsonToMessageTest, TheScannerAnswersAsTheValuePathOnRandomRequests) {
  const uint32_t seed = 20261206;
  RequestGenerator generator(seed);
  int accepted = 0, shape_errors = 0;
  for (int round = 0; round < 20000; ++round) {
    const std::string text = generator.Request();
    v1::BeginRequest scanned, reference;
    const Status a = JsonToMessage(text, &scanned);
    const Status b = internal::JsonToMessageThroughValue(text, &reference);
    ASSERT_EQ(a.ok(), b.ok()) << "seed " << seed << " round " << round << ": " << text << "\n"
                              << a.ToString() << "\n"
                              << b.ToString();
    if (a.ok()) {
      ++accepted;
      ASSERT_TRUE(MessageDifferencer::Equals(scanned, reference)) << text;
    } else {
      // With several wrong fields each may name another one first: the Value path walks a
      // hash map, the scanner the text.
      const bool a_shape = a.message().find(" must be ") != std::string::npos;
      const bool b_shape = b.message().find(" must be ") != std::string::npos;
      ASSERT_EQ(a_shape, b_shape) << "seed " << seed << " round " << round << ": " << text << "\n"
                                  << a.ToString() << "\n"
                                  << b.ToString();
      shape_errors += a_shape;
    }
  }
  // The generator reached both outcomes often enough to mean something.
  EXPECT_GT(accepted, 500);
  EXPECT_GT(shape_errors, 500);
}

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
