// The transactional outbox (contract section 5): a service publishes an event by inserting a row
// into its outbox table in the same local transaction as its business change; the relay
// (txrelay, see relay.h and docs/outbox-relay.md) publishes the rows to NATS JetStream.
//
// These functions never begin or commit: they run inside the caller's transaction, which is what
// makes the event and the business change commit or roll back together.
//
// Thread-safety: NewEventId is thread-safe; the others use the caller's connection, which the
// caller must not share between threads.
#pragma once

#include <sqlite3.h>

#include <pqxx/transaction_base>
#include <string>
#include <string_view>

#include "txcoord/status.h"
#include "txcoord/v1/outbox.pb.h"

namespace txcoord::outbox {

// A new event id: a UUID version 7 (RFC 9562) in its 36-character text form. Ids made by one
// process sort in creation order, also within one millisecond; ids of different processes sort
// by their millisecond. 74 random bits make collisions negligible.
std::string NewEventId();

// Checks an event before it is stored: aggregate_type and event_type become NATS subject tokens
// ({prefix}.{aggregate_type}.{event_type}), so they are 1 to 64 characters of [A-Za-z0-9_-];
// aggregate_id is 1 to 256 characters without control characters; event_id, when given, is 1 to
// 128 characters of [A-Za-z0-9._:-]; header names are HTTP tokens, values have no control
// character but tab, and names the relay or the broker own (Nats-*, Tx-*) are refused; a payload
// under a content-type header that declares JSON must be JSON. Everything the relay would refuse
// (row.h, ToMessage) is refused here, since a stored bad row holds back its aggregate.
Status ValidateEvent(const v1::OutboxEvent& event);

// Creates the contract's outbox and inbox tables when absent, plus an index of unpublished rows
// for the relay, the replay log txcoord_outbox_replays (written by ReplayOutbox in admin.h, read
// by the relay) and, in PostgreSQL, the trigger that wakes the relay (NOTIFY txcoord_outbox on
// every committed insert). Idempotent: on an existing table (an older one, or one made from the
// contract by hand) it adds what is missing. Safe to call at every start, from several processes.
Status EnsureSchema(sqlite3* db);
Status EnsureSchema(pqxx::transaction_base& tx);

// Inserts `event` into txcoord_outbox inside the caller's open transaction and returns its
// event_id (generated when the event has none). id, created_at and published_at are the table's.
Result<std::string> Append(sqlite3* db, const v1::OutboxEvent& event);
Result<std::string> Append(pqxx::transaction_base& tx, const v1::OutboxEvent& event);

}  // namespace txcoord::outbox
