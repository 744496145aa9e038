// EventBus: the relay's one interface to the broker. One backend: NATS JetStream.
//
// Publishing is asynchronous: PublishAsync returns once the message is handed to the client
// library, and its outcome (the broker's ack, a duplicate ack, or an error) arrives later on a
// bus thread through the sink given at construction, tagged with the caller's token. The sink
// also hears when the connection is lost. An outcome may still arrive after Disconnect or for a
// token the caller has given up on; callers ignore tokens they do not know.
//
// The bus does not reconnect by itself: when the connection drops, messages in flight have an
// unknown fate, and only the caller knows what to publish again and in which order. It calls
// Connect again (with backoff).
//
// Thread-safety: every call comes from one thread (the relay's pump of one source), except
// max_payload(), which any thread may read.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "txcoord/outbox/row.h"
#include "txcoord/status.h"

namespace txcoord::outbox {

struct JetStreamConfig {
  std::string url = "nats://127.0.0.1:4222";  // or several, comma-separated
  std::string stream = "EVENTS";
  std::string subject_prefix = "events";
  // The stream's duplicate window when the bus creates it: a message with an event id the
  // stream saw within it is acknowledged as a duplicate and not stored again.
  std::chrono::milliseconds duplicate_window{std::chrono::minutes(2)};
  std::chrono::milliseconds connect_timeout{2000};
  std::string client_name = "txrelay";
  // Create the stream when it is absent (file storage, subjects "{subject_prefix}.>").
  bool create_stream = true;
};

struct BusEvent {
  enum class Kind { kAck, kDisconnected };
  Kind kind = Kind::kAck;
  uint64_t token = 0;
  Status status;           // kAck: OK, or why the broker refused the message
  bool duplicate = false;  // kAck: the stream already held a message with this Nats-Msg-Id
  uint64_t stream_sequence = 0;
};

class EventBus {
 public:
  using Sink = std::function<void(const BusEvent&)>;  // called on a bus thread
  virtual ~EventBus() = default;

  // Connects (dropping any earlier connection) and makes sure the stream exists.
  // kUnavailable when the broker cannot be reached; kInvalidArgument when the stream exists but
  // does not take the subjects {subject_prefix}.>.
  virtual Status Connect() = 0;
  virtual void Disconnect() = 0;
  virtual bool connected() const = 0;
  // The largest message (headers and body) the broker accepts; 0 when not connected.
  virtual int64_t max_payload() const = 0;

  // Hands `message` to the client library. An error means it was not sent (kUnavailable: not
  // connected or the connection broke).
  virtual Status PublishAsync(const BusMessage& message, uint64_t token) = 0;

  // "nats://127.0.0.1:4222 stream EVENTS", for logs.
  virtual std::string Describe() const = 0;
};

std::unique_ptr<EventBus> MakeJetStreamBus(JetStreamConfig config, EventBus::Sink sink);

// Reads JetStream's reply to one publish into `event`: a PubAck sets stream_sequence and
// duplicate; an error reply or anything unreadable sets status to kUnavailable with the broker's
// reason. The bus's own reply handling, public for its tests.
void ReadPubAck(std::string_view body, BusEvent& event);

// Forwards every call, so that a test fake overrides just the call it breaks.
class EventBusWrapper : public EventBus {
 public:
  explicit EventBusWrapper(std::unique_ptr<EventBus> target) : target_(std::move(target)) {}
  Status Connect() override { return target_->Connect(); }
  void Disconnect() override { target_->Disconnect(); }
  bool connected() const override { return target_->connected(); }
  int64_t max_payload() const override { return target_->max_payload(); }
  Status PublishAsync(const BusMessage& message, uint64_t token) override {
    return target_->PublishAsync(message, token);
  }
  std::string Describe() const override { return target_->Describe(); }

 protected:
  EventBus& target() { return *target_; }

 private:
  std::unique_ptr<EventBus> target_;
};

}  // namespace txcoord::outbox
