// Test helpers for JetStream streams: adding one of a test's own, what ended up in it, and
// checking that against what the outboxes held: exactly once by Nats-Msg-Id, every aggregate's
// events in outbox id order.
#pragma once

#include <nats/nats.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "txcoord/status.h"

namespace txcoord::outbox::testing {

struct StreamMessage {
  uint64_t sequence = 0;
  std::string subject;
  std::map<std::string, std::string> headers;
  std::string body;

  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// Adds file-stored stream `name` on subjects "<name>.>": stream subjects must not overlap, so a
// unique name (NatsServer::UniqueStreamName) doubles as the subject prefix. A `duplicate_window`
// of zero keeps the server's default. A positive `max_msgs` makes the stream refuse every
// message once it holds that many.
natsStatus AddStream(jsCtx* js, const std::string& name,
                     std::chrono::nanoseconds duplicate_window = std::chrono::nanoseconds(0),
                     int64_t max_msgs = 0);

// Every message of `stream`, in stream order, read through a temporary pull consumer.
Result<std::vector<StreamMessage>> ReadStream(const std::string& nats_url,
                                              const std::string& stream);

// What the outbox held: per aggregate ("type/id"), its event ids in outbox id order.
using ExpectedEvents = std::map<std::string, std::vector<std::string>>;

// Problems found in `messages` against `expected`, worded for a failure message: an event
// missing or stored twice, an unexpected event, an aggregate's events out of order. Empty when
// the stream holds each expected event exactly once, in order per aggregate. At most `limit`.
std::vector<std::string> CheckExactlyOnceInOrder(const std::vector<StreamMessage>& messages,
                                                 const ExpectedEvents& expected, size_t limit = 20);

}  // namespace txcoord::outbox::testing
