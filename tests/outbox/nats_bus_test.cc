// The JetStream EventBus on a real nats-server: what each publish's outcome says. The bus
// publishes core NATS messages with a reply subject of its own and reads JetStream's answers
// itself, so these tests pin down every kind of answer: a stored message with its sequence, a
// duplicate, a refusal with the broker's reason, and a subject no stream takes.
#include <gtest/gtest.h>
#include <nats/nats.h>

#include <condition_variable>
#include <map>
#include <mutex>

#include "stream_reader.h"
#include "txcoord/outbox/event_bus.h"
#include "txcoord/testing/nats_server.h"

namespace txcoord::outbox {
namespace {

using txcoord::testing::NatsServer;
using txcoord::testing::SharedNats;

// What the bus reported, by token.
class Outcomes {
 public:
  EventBus::Sink Sink() {
    return [this](const BusEvent& event) {
      if (event.kind == BusEvent::Kind::kDisconnected) return;  // then outcomes are missing
      std::lock_guard lock(mu_);
      events_[event.token] = event;
      changed_.notify_all();
    };
  }

  // The outcomes of `tokens`, once all arrived (within 10 s); fails the test otherwise.
  std::map<uint64_t, BusEvent> WaitFor(const std::vector<uint64_t>& tokens) {
    std::unique_lock lock(mu_);
    const bool all = changed_.wait_for(lock, std::chrono::seconds(10), [&] {
      for (const uint64_t t : tokens) {
        if (!events_.contains(t)) return false;
      }
      return true;
    });
    EXPECT_TRUE(all) << "only " << events_.size() << " of " << tokens.size() << " outcomes came";
    return events_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::map<uint64_t, BusEvent> events_;  // GUARDED_BY(mu_)
};

BusMessage Message(const std::string& prefix, const std::string& event_id) {
  BusMessage m;
  m.subject = prefix + ".customer.CreditLimitChanged";
  m.body = R"({"limit":100})";
  m.msg_id = event_id;
  m.headers = {{"Nats-Msg-Id", event_id}, {"Tx-Event-Id", event_id}};
  return m;
}

JetStreamConfig Config(const std::string& stream) {
  JetStreamConfig c;
  c.url = SharedNats().Url();
  c.stream = stream;
  c.subject_prefix = stream;
  return c;
}

// A JetStream context of a connection of the test's own, for streams the bus did not make.
class Admin {
 public:
  Admin() {
    EXPECT_EQ(natsConnection_ConnectTo(&nc_, SharedNats().Url().c_str()), NATS_OK);
    EXPECT_EQ(natsConnection_JetStream(&js_, nc_, nullptr), NATS_OK);
  }
  ~Admin() {
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
  }
  jsCtx* js() { return js_; }

 private:
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
};

BusEvent Read(std::string_view body) {
  BusEvent event;
  ReadPubAck(body, event);
  return event;
}

TEST(PubAckTest, TheShapesJetStreamSendsAreRead) {
  struct Case {
    std::string_view body;
    uint64_t sequence;
    bool duplicate;
  };
  const Case cases[] = {
      // As nats-server 2.9 writes them.
      {R"({"stream":"EVENTS", "seq":7})", 7, false},
      {R"({"stream":"EVENTS", "seq":7, "duplicate": true})", 7, true},
      // Compact, the largest sequence, a domain.
      {R"({"stream":"EVENTS","seq":42})", 42, false},
      {R"({"stream":"EVENTS","seq":18446744073709551615,"duplicate":true})",
       18446744073709551615u, true},
      {R"({"stream":"EVENTS","seq":3,"domain":"hub","duplicate":true})", 3, true},
      // Other key orders and spacing: still a PubAck.
      {R"( { "duplicate" : true , "seq" : 9, "stream" : "EVENTS" } )", 9, true},
  };
  for (const Case& c : cases) {
    const BusEvent event = Read(c.body);
    EXPECT_TRUE(event.status.ok()) << c.body << ": " << event.status.ToString();
    EXPECT_EQ(event.stream_sequence, c.sequence) << c.body;
    EXPECT_EQ(event.duplicate, c.duplicate) << c.body;
  }
}

TEST(PubAckTest, AnErrorReplyOrAnythingElseIsARefusalThatSaysWhy) {
  BusEvent error = Read(
      R"({"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},)"
      R"("stream":"EVENTS","seq":0})");
  ASSERT_FALSE(error.status.ok());
  EXPECT_EQ(error.status.code(), StatusCode::kUnavailable);
  EXPECT_EQ(error.status.message(),
            "JetStream refused the message: maximum messages exceeded (JetStream error 10077)");

  for (const std::string_view bad :
       {"", "not json", R"({"stream":"EVENTS"})", R"({"stream":"EVENTS","seq":-1})", "[1,2]",
        R"({"stream":"EVENTS","seq":12)", R"({"stream":"EVENTS","seq":12,"duplicate":maybe})",
        R"({"stream":"EVENTS", "seq":12} trailing)"}) {
    BusEvent event = Read(bad);
    ASSERT_FALSE(event.status.ok()) << "'" << bad << "'";
    EXPECT_NE(event.status.message().find("an unreadable acknowledgement"), std::string::npos)
        << event.status.message();
    EXPECT_EQ(event.stream_sequence, 0u);
  }
}

TEST(NatsBusTest, AcksCarryTheStreamSequenceAndARepeatedIdIsFlaggedDuplicate) {
  const std::string stream = NatsServer::UniqueStreamName("bus");
  Outcomes outcomes;
  auto bus = MakeJetStreamBus(Config(stream), outcomes.Sink());
  ASSERT_TRUE(bus->Connect().ok());
  // Tokens as the relay uses them (outbox ids), one far above 32 bits.
  const uint64_t big = uint64_t{1} << 40;
  ASSERT_TRUE(bus->PublishAsync(Message(stream, "e-1"), 7).ok());
  ASSERT_TRUE(bus->PublishAsync(Message(stream, "e-2"), big).ok());
  ASSERT_TRUE(bus->PublishAsync(Message(stream, "e-1"), 9).ok());  // e-1 again

  const auto got = outcomes.WaitFor({7, big, 9});
  ASSERT_EQ(got.size(), 3u);
  const BusEvent& first = got.at(7);
  const BusEvent& second = got.at(big);
  const BusEvent& repeat = got.at(9);
  EXPECT_TRUE(first.status.ok()) << first.status.ToString();
  EXPECT_TRUE(second.status.ok()) << second.status.ToString();
  EXPECT_TRUE(repeat.status.ok()) << repeat.status.ToString();
  EXPECT_FALSE(first.duplicate);
  EXPECT_FALSE(second.duplicate);
  EXPECT_TRUE(repeat.duplicate);
  EXPECT_EQ(first.stream_sequence, 1u);
  EXPECT_EQ(second.stream_sequence, 2u);
  EXPECT_EQ(repeat.stream_sequence, 1u) << "a duplicate names the message already stored";

  auto stored = testing::ReadStream(SharedNats().Url(), stream);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  ASSERT_EQ(stored->size(), 2u);
  EXPECT_EQ((*stored)[0].Header("Nats-Msg-Id"), "e-1");
  EXPECT_EQ((*stored)[1].Header("Tx-Event-Id"), "e-2");
  EXPECT_EQ((*stored)[1].body, R"({"limit":100})");
}

TEST(NatsBusTest, ABrokerRefusalIsReportedWithTheBrokersReason) {
  const std::string stream = NatsServer::UniqueStreamName("bus");
  {
    Admin admin;  // a stream that takes one message and refuses the next
    ASSERT_EQ(testing::AddStream(admin.js(), stream, std::chrono::nanoseconds(0), 1), NATS_OK);
  }
  Outcomes outcomes;
  auto bus = MakeJetStreamBus(Config(stream), outcomes.Sink());
  ASSERT_TRUE(bus->Connect().ok());
  ASSERT_TRUE(bus->PublishAsync(Message(stream, "e-1"), 1).ok());
  ASSERT_TRUE(bus->PublishAsync(Message(stream, "e-2"), 2).ok());

  const auto got = outcomes.WaitFor({1, 2});
  EXPECT_TRUE(got.at(1).status.ok()) << got.at(1).status.ToString();
  const Status& refused = got.at(2).status;
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.code(), StatusCode::kUnavailable);
  EXPECT_NE(refused.message().find("JetStream refused the message: maximum messages exceeded"),
            std::string::npos)
      << refused.message();
  EXPECT_NE(refused.message().find("(JetStream error "), std::string::npos) << refused.message();
}

TEST(NatsBusTest, AMessageNoStreamTakesIsRefusedAsNoResponders) {
  const std::string stream = NatsServer::UniqueStreamName("bus");
  Outcomes outcomes;
  auto bus = MakeJetStreamBus(Config(stream), outcomes.Sink());
  ASSERT_TRUE(bus->Connect().ok());
  {
    Admin admin;  // the stream goes away under the connected bus
    ASSERT_EQ(js_DeleteStream(admin.js(), stream.c_str(), nullptr, nullptr), NATS_OK);
  }
  ASSERT_TRUE(bus->PublishAsync(Message(stream, "e-1"), 5).ok());

  const auto got = outcomes.WaitFor({5});
  const Status& refused = got.at(5).status;
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("no stream takes its subject"), std::string::npos)
      << refused.message();
}

}  // namespace
}  // namespace txcoord::outbox
