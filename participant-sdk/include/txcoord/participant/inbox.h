// The inbox consumer (contract section 5): applies events from a JetStream stream to a service's
// local database exactly once in effect, whatever the broker redelivers.
//
// For each message of a durable pull consumer, in one local transaction:
//
//   INSERT INTO txcoord_inbox (consumer, event_id)   -- ON CONFLICT DO NOTHING
//     row existed  -> the event was applied before: roll back, ack, done (a redelivery)
//     row is new   -> run the handler in the same transaction, COMMIT, then ack
//
// So the effect and the record of it commit together, and the ack comes only after both are
// durable: a crash before COMMIT applies nothing (the event comes again), a crash after COMMIT and
// before the ack gets the event again and skips it.
//
// A handler that fails is retried in place, with exponential backoff, keeping the message in
// progress at the broker (so no later message overtakes it). A failure of the database itself
// (connecting, BEGIN, the inbox row, COMMIT, or a connection lost under the handler) is not the
// event's fault: it is retried the same way for as long as the database is away, counted in
// store_failures, and never dead-lettered. After `max_failures` failed handler attempts
// the message is published to the dead-letter subject "{dead_letter_prefix}.{consumer}" (stream
// `dead_letter_stream`, created when absent) with the original headers plus Tx-Dead-Letter-*
// headers saying why (Consumer, Event-Id, Reason, Attempts, Subject: where it came from,
// Stream-Sequence), logged at error level, counted in Stats(), and terminated at the broker
// (not redelivered); while the dead-letter publish fails, it is retried, the message still in
// progress. An operator may fix the cause and re-drive it (`txctl deadletters redrive`,
// outbox/include/txcoord/outbox/admin.h), which publishes it again to its subject.
//
// The inbox keys an event on its Tx-Event-Id header (the outbox's event_id), else on Nats-Msg-Id,
// else on its stream sequence.
//
// Order: one message at a time, in stream order. After a consumer crash, messages it had fetched
// but not acked come back after `ack_wait`, possibly after newer ones; handlers that care about
// order should check a version (as the credit-limit example does), or set max_ack_pending = 1.
//
// Thread-safety: Start/Stop from one thread; Stats() from any. The handler runs on the consumer's
// thread; a SQLite connection given to the consumer must not be used elsewhere meanwhile.
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <pqxx/transaction>
#include <string>

#include "txcoord/status.h"

namespace txcoord::participant {

// One event as the handler sees it.
struct InboxEvent {
  std::string event_id;  // Tx-Event-Id (the outbox's event_id), else Nats-Msg-Id
  std::string event_type;
  std::string aggregate_type;
  std::string aggregate_id;
  std::string subject;
  std::string payload;
  std::map<std::string, std::string> headers;
  uint64_t stream_sequence = 0;
  uint64_t delivery_count = 0;  // 1 on the first delivery
  int attempt = 0;              // 1 on the first apply of this delivery
};

// Runs inside the open local transaction. OK commits; an error rolls back (and is retried).
// The handler must not begin, commit or roll back the transaction itself.
using SqliteHandler = std::function<Status(sqlite3* db, const InboxEvent& event)>;
using PostgresHandler = std::function<Status(pqxx::transaction_base& tx, const InboxEvent& event)>;

struct InboxConsumerOptions {
  std::string nats_url = "nats://127.0.0.1:4222";
  std::string stream = "EVENTS";
  // The durable consumer's name at the broker, and the `consumer` column of txcoord_inbox:
  // [A-Za-z0-9_-], 1 to 64 characters.
  std::string consumer;
  // Only these subjects (wildcards allowed), e.g. "events.customer.CreditLimitChanged".
  // Empty: the whole stream.
  std::string filter_subject;
  int max_failures = 5;  // failed handler attempts on one event before it is dead-lettered
  std::chrono::milliseconds retry_min{100};
  std::chrono::milliseconds retry_max{5000};
  // How long the broker waits for an ack before redelivering (to this or another instance).
  std::chrono::milliseconds ack_wait{30000};
  int max_ack_pending = 1000;
  int fetch_batch = 64;
  std::string dead_letter_prefix = "deadletter";
  std::string dead_letter_stream = "DEADLETTER";
};

struct InboxStats {
  int64_t applied = 0;             // committed with their inbox row
  int64_t duplicates_skipped = 0;  // redeliveries of events already applied
  int64_t handler_failures = 0;    // failed handler attempts (each retried or dead-lettered)
  int64_t store_failures = 0;      // attempts the database failed (each retried)
  int64_t dead_lettered = 0;
  bool connected = false;
  std::string last_error;
};

class InboxConsumer {
 public:
  // Creates the inbox table when absent, connects to NATS, creates the durable consumer when
  // absent (and the dead-letter stream). kUnavailable when NATS or the database cannot be
  // reached; kInvalidArgument for bad options. The SQLite connection `db` stays the caller's; it
  // must outlive the consumer.
  static Result<std::unique_ptr<InboxConsumer>> Create(InboxConsumerOptions options, sqlite3* db,
                                                       SqliteHandler handler);
  static Result<std::unique_ptr<InboxConsumer>> Create(InboxConsumerOptions options,
                                                       std::string postgres_conninfo,
                                                       PostgresHandler handler);
  ~InboxConsumer();  // Stop()

  InboxConsumer(const InboxConsumer&) = delete;
  InboxConsumer& operator=(const InboxConsumer&) = delete;

  // Runs the fetch-and-apply loop on a thread of its own.
  void Start();
  // Ends the loop after the event being applied; an event waiting for a retry is left unacked
  // (the broker redelivers it).
  void Stop();

  // One round on the caller's thread instead: fetches up to fetch_batch messages (waiting up to
  // `wait` for the first) and handles them. Returns how many were handled.
  Result<int> PollOnce(std::chrono::milliseconds wait);

  InboxStats Stats() const;

  class Impl;

 private:
  explicit InboxConsumer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace txcoord::participant
