// Rows to messages: the contract's subject and headers, and the refusal of bad rows.
#include "txcoord/outbox/row.h"

#include <gtest/gtest.h>

namespace txcoord::outbox {
namespace {

OutboxRow GoodRow() {
  OutboxRow row;
  row.id = 42;
  row.event_id = "018f2b6c-7a00-7000-8000-000000000001";
  row.aggregate_type = "customer";
  row.aggregate_id = "c-17";
  row.event_type = "CreditLimitChanged";
  row.payload = R"({"customer":"c-17","limit":100})";
  row.headers_json = R"({"content-type":"application/json","traceparent":"00-ab-cd-01"})";
  return row;
}

std::string HeaderOf(const BusMessage& m, const std::string& name) {
  for (const auto& [k, v] : m.headers) {
    if (k == name) return v;
  }
  return "<absent>";
}

TEST(ToMessage, UsesTheContractsSubjectBodyAndHeaders) {
  auto m = ToMessage(GoodRow(), "events");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->subject, "events.customer.CreditLimitChanged");
  EXPECT_EQ(m->body, R"({"customer":"c-17","limit":100})");
  EXPECT_EQ(m->msg_id, "018f2b6c-7a00-7000-8000-000000000001");
  EXPECT_EQ(HeaderOf(*m, "Nats-Msg-Id"), "018f2b6c-7a00-7000-8000-000000000001");
  EXPECT_EQ(HeaderOf(*m, "Tx-Event-Id"), "018f2b6c-7a00-7000-8000-000000000001");
  EXPECT_EQ(HeaderOf(*m, "Tx-Event-Type"), "CreditLimitChanged");
  EXPECT_EQ(HeaderOf(*m, "Tx-Aggregate-Type"), "customer");
  EXPECT_EQ(HeaderOf(*m, "Tx-Aggregate-Id"), "c-17");
  EXPECT_EQ(HeaderOf(*m, "Tx-Outbox-Id"), "42");
  EXPECT_EQ(HeaderOf(*m, "content-type"), "application/json");
  EXPECT_EQ(HeaderOf(*m, "traceparent"), "00-ab-cd-01");
  EXPECT_EQ(m->headers.size(), 8u);

  auto nested = ToMessage(GoodRow(), "prod.events");
  ASSERT_TRUE(nested.ok());
  EXPECT_EQ(nested->subject, "prod.events.customer.CreditLimitChanged");
}

TEST(ToMessage, APayloadIsCheckedAsJsonOnlyWhenDeclaredSo) {
  OutboxRow row = GoodRow();
  row.payload = "\x01\x02 not json";
  row.headers_json = "{}";
  EXPECT_TRUE(ToMessage(row, "events").ok()) << "bytes are fine without a JSON content-type";
  row.headers_json = R"({"content-type":"application/octet-stream"})";
  EXPECT_TRUE(ToMessage(row, "events").ok());
  for (const char* declared : {R"({"content-type":"application/json"})",
                               R"({"Content-Type":"application/json; charset=utf-8"})",
                               R"({"content-type":"application/cloudevents+json"})"}) {
    row.headers_json = declared;
    auto m = ToMessage(row, "events");
    ASSERT_FALSE(m.ok()) << declared;
    EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(m.status().message().find("payload is not valid JSON"), std::string::npos)
        << m.status().message();
    EXPECT_NE(m.status().message().find("row id 42"), std::string::npos);
  }
}

TEST(ToMessage, RefusesBadHeaders) {
  const auto refused = [](const std::string& headers) {
    OutboxRow row = GoodRow();
    row.headers_json = headers;
    auto m = ToMessage(row, "events");
    return m.ok() ? std::string("<accepted>") : m.status().message();
  };
  EXPECT_NE(refused("[1,2]").find("headers is not a JSON object"), std::string::npos);
  EXPECT_NE(refused("\"text\"").find("headers is not a JSON object"), std::string::npos);
  EXPECT_NE(refused("{").find("not valid JSON"), std::string::npos);
  EXPECT_NE(refused(R"({"x-count": 3})").find("is not a string"), std::string::npos);
  EXPECT_NE(refused(R"({"a":"b"} trailing)").find("after the object"), std::string::npos);
  EXPECT_NE(refused(R"({"bad name":"x"})").find("not an HTTP token"), std::string::npos);
  EXPECT_NE(refused(R"({"Nats-Rollup":"all"})").find("reserved"), std::string::npos);
  EXPECT_NE(refused(R"({"nats-msg-id":"x"})").find("reserved"), std::string::npos);
  EXPECT_NE(refused(R"({"TX-EVENT-ID":"x"})").find("reserved"), std::string::npos);
  EXPECT_NE(refused(R"({"x-inject":"a\r\nNats-Rollup: all"})").find("control character"),
            std::string::npos);
  EXPECT_EQ(refused(R"({"x-unicode":"caf\u00e9 \ud83d\ude00"})"), "<accepted>");
  EXPECT_EQ(refused(R"({"x-tabbed":"a\tb"})"), "<accepted>") << "RFC 9110 values may hold tabs";
  EXPECT_NE(refused(R"({"x-bell":"a\u0007b"})").find("control character"), std::string::npos);
}

TEST(ToMessage, RefusesFieldsThatWouldBreakTheSubjectOrTheIds) {
  const auto code = [](auto mutate) {
    OutboxRow row = GoodRow();
    mutate(row);
    return ToMessage(row, "events").status().code();
  };
  EXPECT_EQ(code([](OutboxRow& r) { r.aggregate_type = "cust.omer"; }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](OutboxRow& r) { r.aggregate_type = "*"; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](OutboxRow& r) { r.event_type = "Changed>"; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](OutboxRow& r) { r.event_type = ""; }), StatusCode::kInvalidArgument);
  // event_id becomes a header value: any text a header value keeps intact.
  EXPECT_EQ(code([](OutboxRow& r) { r.event_id = ""; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](OutboxRow& r) { r.event_id = " leading"; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](OutboxRow& r) { r.event_id = "trailing "; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](OutboxRow& r) { r.event_id = "a\r\nNats-Rollup: all"; }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](OutboxRow& r) { r.event_id = std::string(257, 'e'); }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](OutboxRow& r) { r.event_id = std::string(256, 'e'); }), StatusCode::kOk);
  EXPECT_EQ(code([](OutboxRow& r) { r.event_id = "order/42#1 v2"; }), StatusCode::kOk)
      << "the contract puts no rule on event ids written by other services";
  EXPECT_EQ(code([](OutboxRow& r) { r.aggregate_id = ""; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](OutboxRow& r) { r.aggregate_id = "c\n17"; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code([](OutboxRow& r) { r.aggregate_id = "c 17/ü"; }), StatusCode::kOk)
      << "aggregate ids are header values, not subject tokens";
}

TEST(WireSize, CountsTheHeaderBlockAndTheBodyNotTheSubject) {
  BusMessage m;
  m.subject = "outbox.customer.CreditLimitChanged";
  m.body = "12345";
  m.headers = {{"Nats-Msg-Id", "e-1"}, {"Tx-Event-Type", "X"}};
  // "NATS/1.0\r\n" (10) + "Nats-Msg-Id: e-1\r\n" (18) + "Tx-Event-Type: X\r\n" (18) + "\r\n" (2)
  EXPECT_EQ(WireSize(m), 10u + 18u + 18u + 2u + 5u);
  m.subject += ".a.much.longer.subject";
  EXPECT_EQ(WireSize(m), 53u) << "the subject does not count against max_payload";
}

TEST(IsValidJson, AcceptsRfc8259AndRefusesTheRest) {
  for (const char* ok : {"{}", "[]", "0", "-0.5e+10", "\"x\"", "true", "null", " {\"a\": [1, {}]} ",
                         R"("\u00e9\n")", "\"caf\xc3\xa9\""}) {
    EXPECT_TRUE(IsValidJson(ok)) << ok;
  }
  for (const char* bad : {"", "{", "{\"a\":}", "[1,]", "01", "1.", "tru", "{'a':1}", "\"\x01\"",
                          "\"\\x\"", "\"\\ud800\"", "\"\xff\"", "\"\xc0\x80\"", "{} {}", "nan"}) {
    EXPECT_FALSE(IsValidJson(bad)) << bad;
  }
  EXPECT_FALSE(IsValidJson(std::string(600, '[') + std::string(600, ']'))) << "nesting bound";
  EXPECT_TRUE(IsValidJson(std::string(100, '[') + std::string(100, ']')));
}

TEST(ParseStringObject, DecodesEscapesAndKeepsOrder) {
  auto pairs = ParseStringObject(R"({"b":"1","a":"x\"y\\z\/\u0041\t"})");
  ASSERT_TRUE(pairs.ok()) << pairs.status().ToString();
  ASSERT_EQ(pairs->size(), 2u);
  EXPECT_EQ((*pairs)[0], (std::pair<std::string, std::string>("b", "1")));
  EXPECT_EQ((*pairs)[1].second, "x\"y\\z/A\t");
  EXPECT_TRUE(ParseStringObject("  { }  ").ok());
}

}  // namespace
}  // namespace txcoord::outbox
