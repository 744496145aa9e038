// Relay: publishes the rows of one or more outboxes to NATS JetStream (contract section 5).
//
// One pump per source, each on its own thread with its own source connection and bus connection,
// so a slow or broken source never holds up another. A pump's life:
//
//   connecting --Connect ok--> standby --TryLead true--> leader --stop--> draining --> stopped
//       ^                         |  ^                     |
//       +---- source error -------+  +---- (never: a leader stays leader until its source
//       +---- source error ------------------------------- +        connection breaks)
//
//   connecting: no connection to the database; retried with backoff.
//   standby:    connected, another relay holds this outbox; TryLead every leader_retry.
//   leader:     reads, publishes, marks. A broken bus connection drops every row held in memory
//               and reconnects with backoff; the rows are read again (publish order is kept,
//               see below). A source error returns to connecting.
//   draining:   after Stop: no new reads or publishes; waits for the acks of what is in flight
//               (up to drain_timeout), marks them, closes.
//
// Order: events of one aggregate are published one at a time, each only after the broker
// acknowledged the one before, so no failure or retry lets a later event of an aggregate reach
// the stream before an earlier one; different aggregates are in flight together, up to `window`.
// published_at is set only for acknowledged rows, in batches. See docs/outbox-relay.md.
//
// Thread-safety: Start, Stop and the destructor from one thread; Statuses() from any thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "txcoord/outbox/event_bus.h"
#include "txcoord/outbox/source.h"

namespace txcoord::outbox {

struct RelayOptions {
  int window = 4096;              // messages in flight per source
  int max_buffered_rows = 16384;  // rows read but not yet acknowledged, per source
  // ...and their payloads' bytes: with large events the rows' count alone would let memory grow
  // to max_buffered_rows times the largest payload. A read stops at the row that reaches it (one
  // row always fits, however large).
  int64_t max_buffered_bytes = int64_t{64} << 20;
  int read_batch = 4000;                        // rows per read
  int mark_batch = 4000;                        // a batch of acked rows is marked when this full...
  std::chrono::milliseconds mark_interval{20};  // ...or this old
  // An ack that does not come within this is taken for a dead connection: the bus is dropped
  // and reconnected, and the rows in flight are published again.
  std::chrono::milliseconds publish_timeout{10000};
  // How often unpublished rows at or below the watermark are read again: rows of held
  // aggregates (a bad row fixed by an operator) and rows that became visible late.
  std::chrono::milliseconds sweep_interval{5000};
  std::chrono::milliseconds leader_retry{1000};    // a standby's attempts to take over
  std::chrono::milliseconds change_check{1000};    // fallback when no change is signalled
  std::chrono::milliseconds stats_interval{1000};  // pending rows and lag for /metrics
  std::chrono::milliseconds reconnect_min{100};    // backoff for a source or the bus
  std::chrono::milliseconds reconnect_max{5000};
  std::chrono::milliseconds retry_min{50};  // backoff for one row the broker refused
  std::chrono::milliseconds retry_max{10000};
  // Published rows older than this are deleted (or archived); zero keeps them.
  std::chrono::seconds retention{std::chrono::hours(24 * 7)};
  RetentionMode retention_mode = RetentionMode::kDelete;
  std::chrono::milliseconds retention_interval{60000};
  std::chrono::milliseconds drain_timeout{10000};
};

// What a pump is doing, for /healthz and /metrics. Counters are since the relay started.
struct SourceStatus {
  enum class Role { kConnecting, kStandby, kLeader, kStopped };
  std::string name;
  Role role = Role::kConnecting;
  bool bus_connected = false;
  std::string last_error;    // the latest failure, empty once things work again
  bool stats_known = false;  // the two below were read from the database
  int64_t pending_rows = 0;
  double oldest_unpublished_age_s = 0;
  int64_t published_total = 0;   // acked, duplicates included
  int64_t duplicates_total = 0;  // acked as duplicates: the stream already had them
  int64_t publish_errors_total = 0;
  int64_t bus_reconnects_total = 0;
  int64_t source_reconnects_total = 0;
  int64_t marked_total = 0;
  int64_t marks_put_off_total = 0;  // marks deferred because writers held the lock (SQLite)
  int64_t retention_removed_total = 0;
  int64_t replays_total = 0;  // replays seen in the replay log (the pump read again from them)
  int64_t bad_rows = 0;       // rows currently held as unpublishable
  int64_t in_flight = 0;
  int64_t buffered = 0;
  int64_t buffered_bytes = 0;     // their payloads
  double publish_rate_per_s = 0;  // over the last ~10 s
};

std::string_view RoleName(SourceStatus::Role role);

struct RelayHooks {
  // On the pump's thread, after the broker acknowledged a row (before it is marked).
  std::function<void(size_t source_index, int64_t row_id, const std::string& event_id,
                     bool duplicate)>
      on_published;
};

class Relay {
 public:
  // How each source's parts are made; tests wrap them (OutboxSourceWrapper, EventBusWrapper).
  struct Parts {
    std::function<std::unique_ptr<OutboxSource>(size_t index)> make_source;
    std::function<std::unique_ptr<EventBus>(size_t index, EventBus::Sink sink)> make_bus;
  };
  // The real parts: MakeSource for each config (named by `names`), MakeJetStreamBus(bus).
  static Parts DefaultParts(std::vector<SourceConfig> sources, std::vector<std::string> names,
                            JetStreamConfig bus);

  Relay(size_t source_count, Parts parts, std::string subject_prefix, RelayOptions options,
        RelayHooks hooks = {});
  ~Relay();  // Stop() if still running

  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  void Start();
  // Drains and stops every pump. True if every pump drained within drain_timeout (or had
  // nothing in flight).
  bool Stop();

  std::vector<SourceStatus> Statuses() const;

 private:
  class Pump;
  std::vector<std::unique_ptr<Pump>> pumps_;
  bool started_ = false;
  bool stopped_ = false;
};

// The Prometheus text exposition of `statuses` (metrics named txrelay_*, one series per source
// labelled source="<redacted uri>").
std::string PrometheusText(const std::vector<SourceStatus>& statuses);

// Healthy when every source is connected (as leader or standby) and every leader's bus is
// connected. `detail` gets a JSON object describing each source.
bool Healthy(const std::vector<SourceStatus>& statuses, std::string* detail);

}  // namespace txcoord::outbox
