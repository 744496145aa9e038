// An outbox row as the relay reads it, and the JetStream message it becomes (contract section 5).
//
// Rows may be written by services in any language, so nothing in a row is trusted: ToMessage
// checks every field and refuses a row that would make a wrong or dangerous message (a "bad
// row"), saying which field is wrong and how.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "txcoord/status.h"

namespace txcoord::outbox {

// One unpublished row of txcoord_outbox, as read by a source.
struct OutboxRow {
  int64_t id = 0;
  std::string event_id;
  std::string aggregate_type;
  std::string aggregate_id;
  std::string event_type;
  std::string payload;       // bytes, published as the body untouched
  std::string headers_json;  // the `headers` column as stored
};

// A message for the bus. `msg_id` goes out as Nats-Msg-Id (JetStream's deduplication key).
struct BusMessage {
  std::string subject;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // Nats-Msg-Id included
  std::string msg_id;
};

// The aggregate a row belongs to, as one string key: "<aggregate_type>\0<aggregate_id>".
std::string AggregateKey(const OutboxRow& row);

// Builds the message of `row`: subject `{subject_prefix}.{aggregate_type}.{event_type}`, body =
// payload, headers Nats-Msg-Id, Tx-Event-Id, Tx-Event-Type, Tx-Aggregate-Type, Tx-Aggregate-Id,
// Tx-Outbox-Id, then every entry of the row's headers.
//
// kInvalidArgument (a bad row; the message names the field) when:
//   - headers is not a JSON object whose values are all strings, a header name is not an HTTP
//     token, a value has a control character, or a name is one the relay or NATS owns
//     (Nats-*, Tx-*: a row's "Nats-Rollup" would otherwise purge the stream);
//   - a content-type header declares JSON (application/json, anything +json) and the payload is
//     not valid JSON;
//   - aggregate_type or event_type is not a subject token (1 to 64 of [A-Za-z0-9_-]), event_id
//     is empty, longer than 256, has a control character or a leading or trailing space (it goes
//     out as a header value), aggregate_id is empty, longer than 256 or has a control character.
// A header value may hold tabs.
Result<BusMessage> ToMessage(const OutboxRow& row, std::string_view subject_prefix);

// ToMessage's checks alone: OK exactly when ToMessage would succeed (the row's id is not looked
// at, and the message does not name the row). outbox::Append uses it, so that a service cannot
// store an event the relay would refuse.
Status ValidateRow(const OutboxRow& row);

// The bytes of `message` that the server counts against its max_payload: the header block
// ("NATS/1.0\r\n", one "name: value\r\n" per header, "\r\n") plus the body. The subject is not
// part of the payload.
size_t WireSize(const BusMessage& message);

// True if `text` is one complete JSON value (RFC 8259), surrounding whitespace allowed.
// Allocation-free; nesting deeper than 512 is refused.
bool IsValidJson(std::string_view text);

// Parses a JSON object whose values are all strings into (name, value) pairs, in document order.
// kInvalidArgument saying what is wrong otherwise.
Result<std::vector<std::pair<std::string, std::string>>> ParseStringObject(std::string_view json);

}  // namespace txcoord::outbox
