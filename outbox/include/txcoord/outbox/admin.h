// Operations on outboxes and dead letters, for operators (txctl outbox ..., txctl deadletters ...;
// docs/outbox-relay.md, "Operations"):
//
//   ReadOutboxStatus   what an outbox holds and how far behind its relay is
//   ReplayOutbox       makes published rows unpublished again, so the relay publishes them again
//   DeadLetterQueue    lists the messages inbox consumers gave up on, and re-drives them
//
// A replay is one local transaction: it sets published_at back to NULL on every row from a
// starting id (or the first row created at or after a time) to the end of the table, and records
// itself in txcoord_outbox_replays. A running relay reads that log with every batch
// (source.h, ReadNext) and starts reading again below the replayed rows, so they go out in id
// order, each aggregate's with its later events after them. Within the stream's duplicate window
// (2 minutes by default) the broker drops a replayed event it still holds (same Nats-Msg-Id), so
// a replay only fills what the stream lost; beyond it the event is stored again and consumers'
// inboxes skip it (same event id).
//
// Re-driving a dead letter publishes its payload and original headers back to the subject it was
// consumed from (the Tx-Dead-Letter-Subject header the inbox consumer records), with Tx-Event-Id
// set to the event id the consumer's inbox keys on and a Nats-Msg-Id of its own
// ("redrive:{stream}:{sequence}"): the broker would otherwise drop it as a duplicate of the
// original within the window, and consumers that applied the original skip it by their inbox.
// Only once the broker acknowledged it is the dead letter deleted; a failure in between leaves it
// there, and re-driving it again is safe (the broker drops the repeat within the window).
//
// Thread-safety: the functions are thread-safe; a DeadLetterQueue is used by one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "txcoord/status.h"

namespace txcoord::outbox {

// ---- Outbox status ---------------------------------------------------------------------------

struct OutboxStatus {
  std::string source;  // the URI, password redacted
  int64_t total_rows = 0;
  int64_t pending_rows = 0;       // published_at NULL
  int64_t oldest_pending_id = 0;  // the lowest unpublished id; 0 when none
  std::string oldest_pending_created_at;  // RFC 3339, UTC; empty when none
  double lag_s = 0;                       // age of the oldest pending row; 0 when none
  int64_t last_published_id = 0;          // the highest published id; 0 when none
  std::string last_published_at;          // its published_at, RFC 3339, UTC
  int64_t replays = 0;                    // rows in the replay log
  std::string last_replay_at;             // RFC 3339, UTC; empty when none
  // Whether a relay holds this outbox's leadership (PostgreSQL: the advisory lock; SQLite: the
  // lock file); nullopt when it cannot be told.
  std::optional<bool> relay_leading;
};

// The status of the outbox at `source_uri` (sqlite://PATH, postgresql://...). Reads only: creates
// no table and no file. kInvalidArgument for a bad URI, a missing SQLite file, or a database
// without txcoord_outbox; kUnavailable when the database cannot be reached.
Result<OutboxStatus> ReadOutboxStatus(std::string_view source_uri);

// ---- Replay -----------------------------------------------------------------------------------

struct ReplayRequest {
  // Where the replay starts, exactly one of: the first row with id >= from_id; the lowest id of
  // the rows created at or after from_time (RFC 3339, e.g. 2024-05-01T12:00:00Z or with an
  // offset). Either way every row from there to the end is replayed: a suffix of the outbox, so
  // that no aggregate's replayed event comes after a later one that was not replayed.
  std::optional<int64_t> from_id;
  std::optional<std::string> from_time;
  std::string requested_by;  // recorded in the replay log
  bool dry_run = false;      // count only, change nothing
  // Called inside the transaction between batches of rows, with rows made unpublished so far
  // and in all; on the calling thread.
  std::function<void(int64_t done, int64_t total)> progress;
};

struct ReplayResult {
  int64_t from_id = 0;        // the first row replayed; 0 when no row is at or after the start
  int64_t to_id = 0;          // the last row when the replay ran
  int64_t rows_replayed = 0;  // published rows made unpublished (dry run: that would be)
  int64_t rows_pending = 0;   // rows in the range not published yet: the relay sends them anyway
  // The lowest id in the table. Rows below it were deleted (or archived) by retention and cannot
  // be replayed: a from_id below it starts here.
  int64_t first_row_id = 0;
  int64_t replay_id = 0;  // its row in txcoord_outbox_replays; 0 for a dry run or no rows
};

// Replays the outbox at `source_uri` as `request` says, in one transaction (SQLite: BEGIN
// IMMEDIATE, which holds the service's writers off for its length; PostgreSQL: row locks, and
// an advisory lock that orders concurrent replays). kInvalidArgument for a bad request, URI,
// file or table; kUnavailable when the database cannot be reached or the transaction fails
// (nothing was replayed); kUnknownOutcome when the connection broke during COMMIT.
Result<ReplayResult> ReplayOutbox(std::string_view source_uri, const ReplayRequest& request);

// `text` (RFC 3339: date, 'T' or a space, time with optional fraction, 'Z' or +HH:MM/-HH:MM) as
// UTC "YYYY-MM-DDTHH:MM:SS.mmmZ", the form the outbox's created_at has. kInvalidArgument saying
// what is wrong otherwise.
Result<std::string> NormalizeRfc3339(std::string_view text);

// ---- Dead letters -----------------------------------------------------------------------------

struct DeadLetterConfig {
  std::string nats_url = "nats://127.0.0.1:4222";
  // The inbox consumers' dead-letter stream (InboxConsumerOptions::dead_letter_stream).
  std::string stream = "DEADLETTER";
  std::chrono::milliseconds timeout{5000};  // connecting, and each request
};

// One message of the dead-letter stream, as the inbox consumer wrote it (inbox.h).
struct DeadLetter {
  uint64_t sequence = 0;          // in the dead-letter stream
  std::string subject;            // "{dead_letter_prefix}.{consumer}"
  std::string dead_lettered_at;   // RFC 3339, UTC
  std::string consumer;           // Tx-Dead-Letter-Consumer
  std::string event_id;           // the id the consumer's inbox keys the event on
  std::string original_subject;   // Tx-Dead-Letter-Subject: where it is re-driven to
  uint64_t original_sequence = 0;  // Tx-Dead-Letter-Stream-Sequence
  int attempts = 0;               // Tx-Dead-Letter-Attempts
  std::string reason;             // Tx-Dead-Letter-Reason
  std::string payload;
  std::vector<std::pair<std::string, std::string>> headers;  // every header, as stored
};

struct RedriveResult {
  uint64_t dead_letter_sequence = 0;
  std::string event_id;
  std::string consumer;
  std::string subject;  // where it was published
  std::string stream;   // the stream that took it
  uint64_t stream_sequence = 0;
  // The stream already held this re-drive (an earlier attempt got as far as the broker's ack).
  bool duplicate = false;
};

class DeadLetterQueue {
 public:
  // Connects to NATS. kUnavailable when it cannot be reached.
  static Result<std::unique_ptr<DeadLetterQueue>> Connect(DeadLetterConfig config);
  ~DeadLetterQueue();

  DeadLetterQueue(const DeadLetterQueue&) = delete;
  DeadLetterQueue& operator=(const DeadLetterQueue&) = delete;

  // The dead letters in stream order, at most `limit` (0: all). kNotFound when the stream does
  // not exist (no consumer has dead-lettered anything yet, or a wrong --stream).
  Result<std::vector<DeadLetter>> List(size_t limit = 0);

  // Publishes `letter` back to its original subject, waits for the broker's ack, then deletes it
  // from the dead-letter stream. kInvalidArgument when it names no original subject (or one the
  // dead-letter stream itself takes); kUnavailable when the publish or the delete failed (then
  // it stays in the dead-letter stream: see the header comment on repeats).
  Result<RedriveResult> Redrive(const DeadLetter& letter);

  class Impl;

 private:
  explicit DeadLetterQueue(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace txcoord::outbox
