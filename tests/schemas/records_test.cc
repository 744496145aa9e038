// Every message of the schemas, built with every field set to a non-default value, survives the
// JSON and the binary round trip. The log records are stored in binary and shown by txctl as JSON;
// the outbox rows travel between the relay and its tests as both. A field that one form cannot
// carry (an int64 printed as a number, bytes that are not base64, an out-of-range time) is caught.
//
// A reflection guard checks that the values below really set every field, recursively, and that
// every message type of the three .proto files is built: a field or message added to the schema
// fails this test until it is given a value here.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <set>

#include "txcoord/schemas/json.h"
#include "txcoord/v1/api.pb.h"
#include "txcoord/v1/log.pb.h"
#include "txcoord/v1/outbox.pb.h"

namespace txcoord::testing {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Timestamp;
using google::protobuf::util::MessageDifferencer;

// Nanoseconds set on purpose: the printer must keep all nine digits.
Timestamp At(int64_t seconds_after_example) {
  Timestamp t;
  t.set_seconds(1795255200 + seconds_after_example);  // 2026-11-21T10:00:00Z
  t.set_nanos(123456789);
  return t;
}

void FillPayload(google::protobuf::Value* payload) {
  auto& fields = *payload->mutable_struct_value()->mutable_fields();
  fields["account"].set_string_value("A");
  fields["amount"].set_number_value(30);
  fields["flags"].mutable_list_value()->add_values()->set_bool_value(true);
  fields["note"].set_null_value(google::protobuf::NULL_VALUE);
}

v1::Branch FullBranch() {
  v1::Branch branch;
  branch.set_branch_id("debit");
  branch.set_url("http://127.0.0.1:7001/bank");
  FillPayload(branch.mutable_payload());
  branch.set_state("prepared");
  branch.set_attempts(2);
  branch.set_last_error("HTTP 503 from http://127.0.0.1:7001/bank/prepare");
  return branch;
}

v1::Step FullStep() {
  v1::Step step;
  step.set_step_id("reserve");
  step.set_action("http://127.0.0.1:7003/credit/reserve");
  step.set_compensate("http://127.0.0.1:7003/credit/release");
  FillPayload(step.mutable_payload());
  step.add_depends_on("check");
  step.add_depends_on("price");
  step.set_state("compensated");
  step.set_attempts(3);
  step.set_last_error("timeout after 5000 ms");
  step.set_timeout_ms(3000);
  step.mutable_retry()->set_initial_ms(50);
  step.mutable_retry()->set_max_ms(2000);
  step.mutable_retry()->set_max_attempts(8);
  return step;
}

v1::Transaction FullTransaction() {
  v1::Transaction tx;
  tx.set_gtid("order-42");
  tx.set_protocol("2pc");
  tx.set_state("aborted");
  *tx.mutable_created_at() = At(0);
  *tx.mutable_updated_at() = At(2);
  *tx.mutable_deadline() = At(10);
  tx.set_reason("branch debit voted no: HTTP 409");
  *tx.add_branches() = FullBranch();
  *tx.add_steps() = FullStep();
  return tx;
}

// One message of each type, named for the failure message.
std::vector<std::pair<std::string, std::unique_ptr<Message>>> FullMessages() {
  std::vector<std::pair<std::string, std::unique_ptr<Message>>> all;
  auto add = [&all](std::string name, const Message& m) {
    all.emplace_back(std::move(name), std::unique_ptr<Message>(m.New()));
    all.back().second->CopyFrom(m);
  };

  // api.proto
  v1::BeginRequest begin;
  begin.set_gtid("order-42");
  begin.set_protocol("saga");
  begin.set_timeout_ms(10000);
  *begin.add_branches() = FullBranch();
  *begin.add_steps() = FullStep();
  begin.set_wait(true);
  add("BeginRequest", begin);
  v1::CompleteRequest complete;
  complete.set_wait(true);
  add("CompleteRequest", complete);
  v1::TransactionList list;
  *list.add_transactions() = FullTransaction();
  list.set_next("order-41");
  add("TransactionList", list);
  v1::Callback callback;
  callback.set_gtid("order-42");
  callback.set_branch_id("debit");
  callback.set_phase("can-commit");
  FillPayload(callback.mutable_payload());
  add("Callback", callback);
  v1::ErrorReply error;
  error.mutable_error()->set_code("CONFLICT");
  error.mutable_error()->set_message("transaction order-42 is committed; abort is too late");
  add("ErrorReply", error);
  v1::ResolveRequest resolve;
  resolve.set_as("committed");
  resolve.set_operator_("alice");
  resolve.set_reason("applied by hand after the bank's outage");
  add("ResolveRequest", resolve);
  v1::TransactionHistory history;
  history.set_gtid("order-42");
  history.set_protocol("2pc");
  history.set_state("committed");
  v1::HistoryEntry* entry = history.add_entries();
  entry->set_seq(3);
  *entry->mutable_at() = At(2);
  entry->set_kind("resolved");
  entry->set_tx_state("committing");
  entry->set_branch_id("debit");
  entry->set_phase("commit");
  entry->set_state("committed");
  entry->set_attempts(6);
  entry->set_last_error("HTTP 500");
  entry->set_outcome("commit");
  entry->set_reason("applied by hand");
  entry->set_operator_("alice");
  entry->set_resolved_as("committed");
  entry->set_detail("debit resolved as committed by alice: applied by hand");
  add("TransactionHistory", history);
  v1::PurgeReply purge;
  purge.set_purged(1000);
  purge.set_remaining(17);
  add("PurgeReply", purge);

  // log.proto: one LogRecord per member of the body oneof.
  auto record = [](const char* tx_state) {
    v1::LogRecord r;
    r.set_gtid("order-42");
    *r.mutable_at() = At(1);
    r.set_tx_state(tx_state);
    return r;
  };
  v1::LogRecord r = record("preparing");
  auto* b = r.mutable_begin();
  b->set_protocol("2pc");
  b->set_timeout_ms(10000);
  *b->mutable_deadline() = At(10);
  *b->add_branches() = FullBranch();
  *b->add_steps() = FullStep();
  b->set_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  // A digest is raw bytes: a zero byte and bytes that are not UTF-8 must survive (base64 in JSON).
  b->set_request_digest(std::string("\x00\xff\xfe\x80 digest", 11));
  b->set_one_phase(true);
  add("LogRecord.begin", r);

  r = record("active");
  *r.mutable_branch_registered()->mutable_branch() = FullBranch();
  add("LogRecord.branch_registered", r);

  r = record("aborting");
  r.mutable_decision()->set_outcome(v1::OUTCOME_ABORT);
  r.mutable_decision()->set_reason("branch credit voted no");
  add("LogRecord.decision", r);

  r = record("aborting");
  auto* bo = r.mutable_branch_outcome();
  bo->set_branch_id("credit");
  bo->set_phase("abort");
  bo->set_state("aborted");
  bo->set_attempts(4);
  bo->set_last_error("connection refused");
  add("LogRecord.branch_outcome", r);

  r = record("compensating");
  auto* so = r.mutable_step_outcome();
  so->set_step_id("reserve");
  so->set_phase("compensate");
  so->set_state("compensated");
  so->set_attempts(1);
  so->set_last_error("HTTP 500");
  add("LogRecord.step_outcome", r);

  r = record("committing");
  auto* rs = r.mutable_resolved();
  rs->set_branch_id("debit");
  rs->set_as("committed");
  rs->set_operator_("alice");
  rs->set_reason("applied by hand");
  rs->set_phase("commit");
  rs->set_state("committed");
  rs->set_attempts(6);
  rs->set_last_error("HTTP 500");
  add("LogRecord.resolved", r);

  r = record("pre-committing");
  *r.mutable_pre_commit()->mutable_deadline() = At(20);
  add("LogRecord.pre_commit", r);

  r = record("aborted");
  r.mutable_end()->set_final_state("aborted");
  add("LogRecord.end", r);

  // outbox.proto
  v1::OutboxEvent event;
  // Above 2^53 on purpose: int64 prints as a JSON string, so no precision may be lost.
  event.set_id(9007199254740993);
  event.set_event_id("evt-7f3a");
  event.set_aggregate_type("customer");
  event.set_aggregate_id("c-17");
  event.set_event_type("CreditLimitChanged");
  event.set_payload(std::string("\x00\x01{\"limit\":500}\xff", 16));
  (*event.mutable_headers())["traceparent"] =
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  (*event.mutable_headers())["Content-Type"] = "application/json";
  *event.mutable_created_at() = At(3);
  *event.mutable_published_at() = At(4);
  add("OutboxEvent", event);

  v1::InboxEntry inbox;
  inbox.set_consumer("billing");
  inbox.set_event_id("evt-7f3a");
  *inbox.mutable_applied_at() = At(5);
  add("InboxEntry", inbox);
  return all;
}

bool IsOurs(const Descriptor* type) { return type->file()->package() == "txcoord.v1"; }

// Checks that every field of `m` holds a non-default value, recursing into our own messages, and
// records the types it saw and the oneof members that were set.
void ExpectEveryFieldSet(const Message& m, const std::string& path, std::set<std::string>* seen) {
  const auto* type = m.GetDescriptor();
  const auto* reflection = m.GetReflection();
  seen->insert(type->full_name());
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* field = type->field(i);
    const std::string where = path + "." + field->name();
    if (const auto* oneof = field->real_containing_oneof()) {
      // Only one member of a oneof can be set; each member is covered by its own message.
      if (reflection->GetOneofFieldDescriptor(m, oneof) != field) continue;
      seen->insert(field->full_name());
    }
    if (field->is_repeated()) {
      EXPECT_GT(reflection->FieldSize(m, field), 0) << where << " is empty";
      if (field->is_map() || field->message_type() == nullptr || !IsOurs(field->message_type())) {
        continue;
      }
      for (int k = 0; k < reflection->FieldSize(m, field); ++k) {
        ExpectEveryFieldSet(reflection->GetRepeatedMessage(m, field, k),
                            where + "[" + std::to_string(k) + "]", seen);
      }
      continue;
    }
    // HasField on a proto3 field without presence is true only for a non-default value.
    EXPECT_TRUE(reflection->HasField(m, field)) << where << " is not set (or holds its default)";
    if (field->message_type() != nullptr && IsOurs(field->message_type()) &&
        reflection->HasField(m, field)) {
      ExpectEveryFieldSet(reflection->GetMessage(m, field), where, seen);
    }
  }
}

TEST(SchemaMessagesTest, TheTestMessagesSetEveryFieldOfEveryMessageType) {
  std::set<std::string> seen;
  for (const auto& [name, message] : FullMessages()) {
    ExpectEveryFieldSet(*message, name, &seen);
  }
  for (const auto* file :
       {v1::Transaction::descriptor()->file(), v1::LogRecord::descriptor()->file(),
        v1::OutboxEvent::descriptor()->file()}) {
    for (int i = 0; i < file->message_type_count(); ++i) {
      const auto* type = file->message_type(i);
      EXPECT_TRUE(seen.count(type->full_name()))
          << type->full_name() << " (" << file->name() << ") has no test message";
      for (int o = 0; o < type->oneof_decl_count(); ++o) {
        const auto* oneof = type->oneof_decl(o);
        if (oneof->is_synthetic()) continue;  // a proto3 `optional`, not a real choice
        for (int f = 0; f < oneof->field_count(); ++f) {
          EXPECT_TRUE(seen.count(oneof->field(f)->full_name()))
              << "no test message sets " << oneof->field(f)->full_name();
        }
      }
    }
  }
}

TEST(SchemaMessagesTest, EveryMessageSurvivesJsonAndBinaryRoundTrips) {
  for (const auto& [name, message] : FullMessages()) {
    SCOPED_TRACE(name + ": " + message->ShortDebugString());

    for (const bool print_defaults : {true, false}) {
      const std::string json = MessageToJson(*message, {.print_defaults = print_defaults});
      std::unique_ptr<Message> reread(message->New());
      const Status status = JsonToMessage(json, reread.get());
      ASSERT_TRUE(status.ok()) << status.ToString() << "\nJSON: " << json;
      std::string diff;
      MessageDifferencer differencer;
      differencer.ReportDifferencesToString(&diff);
      EXPECT_TRUE(differencer.Compare(*message, *reread))
          << "JSON (print_defaults=" << print_defaults << ") lost: " << diff << "\nJSON: " << json;
    }

    std::string wire;
    ASSERT_TRUE(message->SerializeToString(&wire));
    std::unique_ptr<Message> decoded(message->New());
    ASSERT_TRUE(decoded->ParseFromString(wire));
    EXPECT_TRUE(MessageDifferencer::Equals(*message, *decoded)) << decoded->ShortDebugString();
  }
}

// The forms a reader of the log or the relay's output relies on.
TEST(SchemaMessagesTest, RecordFieldsHaveTheirDocumentedJsonForm) {
  v1::LogRecord decision;
  decision.mutable_decision()->set_outcome(v1::OUTCOME_COMMIT);
  EXPECT_NE(MessageToJson(decision).find(R"("outcome":"OUTCOME_COMMIT")"), std::string::npos)
      << MessageToJson(decision);

  v1::OutboxEvent event;
  event.set_id(9007199254740993);
  event.set_payload("hi");
  const std::string json = MessageToJson(event);
  EXPECT_NE(json.find(R"("id":"9007199254740993")"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("payload":"aGk=")"), std::string::npos) << json;

  v1::InboxEntry inbox;
  *inbox.mutable_applied_at() = At(0);
  EXPECT_NE(MessageToJson(inbox).find(R"("applied_at":"2026-11-21T10:00:00.123456789Z")"),
            std::string::npos)
      << MessageToJson(inbox);
}

}  // namespace
}  // namespace txcoord::testing
