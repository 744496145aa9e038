// Every JSON example of docs/contract.md, read at run time, goes through the schema message it
// shows and must come back as the same JSON: the contract says the .proto files are the source of
// truth and their snake_case proto3 JSON is the JSON on the page, so an example the messages
// cannot represent (a renamed field, a wrong type, a missing field) is a contract break.
#include <google/protobuf/message.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <set>
#include <sstream>

#include "contract_examples.h"
#include "json_compare.h"
#include "txcoord/schemas/json.h"
#include "txcoord/v1/api.pb.h"

namespace txcoord::testing {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::Message;
using google::protobuf::util::MessageDifferencer;

// The examples in the contract today. Fewer means the extractor lost some (or the contract did);
// more is fine as long as each new one is in kExampleTypes.
constexpr std::size_t kExamplesInContract = 7;

// Which message each example is, keyed by the heading it sits under and its first key. An example
// missing from this table fails the test: add its row when the contract gains an example.
struct ExampleType {
  std::string_view section;
  std::string_view first_key;
  const Descriptor* type;
};

const std::vector<ExampleType>& ExampleTypes() {
  static const std::vector<ExampleType> kTypes = {
      {"1. General", "error", v1::ErrorReply::descriptor()},
      {"`POST /v1/transactions` — begin, or begin and run", "gtid", v1::BeginRequest::descriptor()},
      {"`POST /v1/transactions/{gtid}/branches` — register a TCC branch", "branch_id",
       v1::Branch::descriptor()},
      {"`POST /v1/transactions/{gtid}/commit` and `/abort`", "wait",
       v1::CompleteRequest::descriptor()},
      {"`GET /v1/transactions/{gtid}`", "gtid", v1::Transaction::descriptor()},
      {"`GET /v1/transactions?state=<state>&older_than_ms=<n>&limit=<n>&after=<gtid>`",
       "transactions", v1::TransactionList::descriptor()},
      {"4. Callbacks to participants", "gtid", v1::Callback::descriptor()},
  };
  return kTypes;
}

const ExampleType* FindType(const ContractExample& example) {
  const std::string key = FirstKey(example.json);
  for (const auto& row : ExampleTypes()) {
    if (row.section == example.section && row.first_key == key) return &row;
  }
  return nullptr;
}

std::unique_ptr<Message> NewMessage(const Descriptor* type) {
  return std::unique_ptr<Message>(
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(type)->New());
}

std::string ReadContract() {
  std::ifstream in(TXCOORD_CONTRACT_MD);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

class ContractExamplesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string markdown = ReadContract();
    ASSERT_FALSE(markdown.empty()) << "cannot read " << TXCOORD_CONTRACT_MD;
    scan_ = ScanContract(markdown);
  }

  static std::string Where(const ContractExample& example) {
    return std::string("contract.md line ") + std::to_string(example.line) + " (" +
           example.section + "): " + example.json;
  }

  ContractScan scan_;
};

TEST_F(ContractExamplesTest, FindsEveryExample) {
  EXPECT_GE(scan_.examples.size(), kExamplesInContract);
  RecordProperty("examples_found", static_cast<int>(scan_.examples.size()));
  for (const auto& text : scan_.unclassified) {
    ADD_FAILURE() << "contract.md has a '{' block or span that is neither a JSON example nor a "
                     "URL template; label it ```json or teach contract_examples.cc: "
                  << text;
  }
}

TEST_F(ContractExamplesTest, EveryExampleHasAMessageType) {
  std::set<const ExampleType*> used;
  for (const auto& example : scan_.examples) {
    const ExampleType* row = FindType(example);
    if (row == nullptr) {
      ADD_FAILURE() << "no message type for the example at " << Where(example)
                    << "\nadd a row (section, first key \"" << FirstKey(example.json)
                    << "\", message) to ExampleTypes()";
      continue;
    }
    used.insert(row);
  }
  // A row that matches nothing means its example was renamed, moved or dropped from the contract.
  for (const auto& row : ExampleTypes()) {
    EXPECT_TRUE(used.count(&row)) << "no example in section \"" << row.section
                                  << "\" starts with key \"" << row.first_key << "\"";
  }
}

TEST_F(ContractExamplesTest, EveryExampleRoundTripsThroughItsMessage) {
  std::size_t checked = 0;
  for (const auto& example : scan_.examples) {
    SCOPED_TRACE(Where(example));
    const ExampleType* row = FindType(example);
    if (row == nullptr) continue;  // reported by EveryExampleHasAMessageType

    const auto written = ResolvePlaceholders(example.json);
    ASSERT_TRUE(written.ok()) << written.status().ToString();
    SCOPED_TRACE("as sent: " + *written);

    auto message = NewMessage(row->type);
    const Status parsed = JsonToMessage(*written, message.get());
    ASSERT_TRUE(parsed.ok()) << parsed.ToString();

    // The same JSON back: every written key with its value, and only defaults added.
    const std::string printed = MessageToJson(*message);
    for (const auto& diff : JsonDifferences(*written, printed, row->type)) {
      ADD_FAILURE() << diff << "\nprinted: " << printed;
    }

    // The printed forms, with and without defaults, read back as the same message.
    for (const bool print_defaults : {true, false}) {
      auto reread = NewMessage(row->type);
      const std::string json = MessageToJson(*message, {.print_defaults = print_defaults});
      ASSERT_TRUE(JsonToMessage(json, reread.get()).ok()) << json;
      EXPECT_TRUE(MessageDifferencer::Equals(*message, *reread))
          << "print_defaults=" << print_defaults << ": " << json;
    }

    // Clients may send and ask for binary protobuf instead (section 1).
    std::string wire;
    ASSERT_TRUE(message->SerializeToString(&wire));
    auto decoded = NewMessage(row->type);
    ASSERT_TRUE(decoded->ParseFromString(wire));
    EXPECT_TRUE(MessageDifferencer::Equals(*message, *decoded))
        << "binary round trip changed " << message->ShortDebugString() << " into "
        << decoded->ShortDebugString();
    ++checked;
  }
  EXPECT_GE(checked, kExamplesInContract);
  RecordProperty("examples_round_tripped", static_cast<int>(checked));
}

// The extractor itself, on a page small enough to know every answer, so that a contract that
// yields the right count by accident is not the only evidence that it works.
TEST(ScanContractTest, FindsFencedAndInlineExamplesAndSkipsTemplates) {
  const ContractScan scan = ScanContract(
      "## A\n"
      "Body `{\"wait\": true}` and `{url}/{phase}` and `{prefix}.{type}`, `x`.\n"
      "\n"
      "### B\n"
      "```json\n"
      "{\"gtid\": \"g\"}\n"
      "```\n"
      "A span that crosses a line: `{\"branch_id\":\n"
      "\"b\"}`; ``{\"a\": \"`\"}`` has a backtick inside; `{}` is empty.\n"
      "```sql\n"
      "SELECT '{}';\n"
      "```\n"
      "```\n"
      "{\"unlabelled\": 1}\n"
      "```\n"
      "Odd: `{not json}`.\n");

  ASSERT_EQ(scan.examples.size(), 5u);
  EXPECT_EQ(scan.examples[0].section, "A");
  EXPECT_EQ(scan.examples[0].json, "{\"wait\": true}");
  EXPECT_EQ(scan.examples[0].line, 2);
  EXPECT_EQ(scan.examples[1].section, "B");
  EXPECT_EQ(scan.examples[1].json, "{\"gtid\": \"g\"}\n");
  EXPECT_EQ(scan.examples[1].line, 6);
  EXPECT_EQ(scan.examples[2].json, "{\"branch_id\": \"b\"}");
  EXPECT_EQ(scan.examples[2].line, 8);
  EXPECT_EQ(scan.examples[3].json, "{\"a\": \"`\"}");
  EXPECT_EQ(scan.examples[4].json, "{}");
  ASSERT_EQ(scan.unclassified.size(), 2u);
  EXPECT_NE(scan.unclassified[0].find("line 13"), std::string::npos) << scan.unclassified[0];
  EXPECT_NE(scan.unclassified[1].find("{not json}"), std::string::npos) << scan.unclassified[1];
}

TEST(ResolvePlaceholdersTest, ReplacesEachKindOfPlaceholder) {
  const auto resolved = ResolvePlaceholders(
      R"({"created_at": "...", "deadline": "...", "url": "...", "payload": {...},)"
      R"( "transactions": [...], "code": "<CODE>", "next": "<gtid or empty>"})");
  ASSERT_TRUE(resolved.ok()) << resolved.status().ToString();
  const auto diffs = JsonDifferences(
      R"({"created_at": "2026-11-21T10:00:00.123Z", "deadline": "2026-11-21T10:00:00.123Z",)"
      R"( "url": "...", "payload": {"k": "v"}, "transactions": [], "code": "NOT_FOUND",)"
      R"( "next": "order-41"})",
      *resolved, nullptr);
  EXPECT_TRUE(diffs.empty()) << *resolved;
}

TEST(ResolvePlaceholdersTest, AnUnknownPlaceholderIsAnError) {
  const auto resolved = ResolvePlaceholders(R"({"state": "<state>"})");
  ASSERT_FALSE(resolved.ok());
  EXPECT_NE(resolved.status().message().find("\"state\""), std::string::npos)
      << resolved.status().message();
}

// The comparison must catch what a wrong schema or printer would do.
TEST(JsonDifferencesTest, CatchesChangedMissingAndAddedValues) {
  const Descriptor* branch = v1::Branch::descriptor();
  EXPECT_TRUE(JsonDifferences(R"({"attempts": 1, "url": "u"})",
                              R"({"url": "u", "attempts": 1.0, "branch_id": ""})", branch)
                  .empty());
  EXPECT_FALSE(JsonDifferences(R"({"attempts": 1})", R"({"attempts": "1"})", branch).empty());
  EXPECT_FALSE(JsonDifferences(R"({"attempts": 1})", R"({"attempts": true})", branch).empty());
  EXPECT_FALSE(JsonDifferences(R"({"attempts": 0})", R"({"attempts": false})", branch).empty());
  EXPECT_FALSE(JsonDifferences(R"({"url": "u"})", R"({})", branch).empty());
  EXPECT_FALSE(JsonDifferences(R"({"url": "u"})", R"({"url": "u", "state": "x"})", branch).empty());
  // Free-form payloads come back exactly: no added keys, integers compared exactly.
  EXPECT_FALSE(
      JsonDifferences(R"({"payload": {"a": 1}})", R"({"payload": {"a": 1, "b": 0}})", branch)
          .empty());
  EXPECT_FALSE(JsonDifferences(R"({"payload": 9007199254740993})",
                               R"({"payload": 9007199254740992})", branch)
                   .empty());
  EXPECT_FALSE(JsonDifferences(R"({"payload": [1, 2]})", R"({"payload": [2, 1]})", branch).empty());
}

}  // namespace
}  // namespace txcoord::testing
