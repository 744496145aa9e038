// The coordinator's durable transaction log: one interface, two backends.
//
// A transaction is the ordered list of its LogRecords (schemas/txcoord/v1/log.proto). The log
// keeps, beside the records, a summary row per transaction (current state, decision, times), so
// that recovery and operators can find transactions without reading every record.
//
// Durability: Append returns OK only once its records are on stable storage (fsync'd by SQLite
// with WAL + synchronous=FULL, or committed by PostgreSQL with synchronous_commit=on). Concurrent
// appends are grouped: one commit, one fsync for all of them (group commit).
//
// Rules checked on every append, before anything is written (a violating append fails alone;
// the others in its group commit are unaffected):
//   - a transaction starts with exactly one `begin` record, carrying a protocol and tx_state;
//   - no record follows `end`, whose tx_state is terminal ("committed" or "aborted");
//   - a `decision` never changes: the same outcome again is accepted (a retried append), the
//     other outcome is refused with kConflict;
//   - ids are valid per the contract.
// And on every read: each record's checksum is verified and the record parsed; a mismatch is
// kCorruption, never a crash or a silently wrong record.
//
// Thread-safety: every method may be called from any thread concurrently.
#pragma once

#include <google/protobuf/timestamp.pb.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "txcoord/status.h"
#include "txcoord/v1/api.pb.h"
#include "txcoord/v1/log.pb.h"

namespace txcoord::coordinator {

using Timestamp = std::chrono::time_point<std::chrono::system_clock, std::chrono::milliseconds>;

// What the log keeps about a transaction besides its records.
struct TransactionSummary {
  std::string gtid;
  std::string protocol;
  std::string state;  // tx_state of the latest record that set one
  v1::Outcome decision = v1::OUTCOME_UNSPECIFIED;
  Timestamp created_at{};
  Timestamp updated_at{};
  std::optional<Timestamp> deadline;
  std::optional<Timestamp> finished_at;  // set by the `end` record
  int64_t record_count = 0;              // records appended; the next one gets this + 1
  bool finished() const { return finished_at.has_value(); }
};

// A transaction as stored: its summary and every record, in append order.
struct LoggedTransaction {
  TransactionSummary summary;
  std::vector<v1::LogRecord> records;
};

// Counters of the group commit, for /metrics, tests and benchmarks.
struct LogStats {
  int64_t commits = 0;        // write transactions committed (one fsync or WAL flush each)
  int64_t appends = 0;        // appends that went through them
  int64_t largest_group = 0;  // most appends sharing one commit
};

struct ListQuery {
  std::string state;                        // empty: any state
  std::optional<Timestamp> created_before;  // only transactions created before this time
  int limit = 100;                          // 1..1000
  std::string after;                        // gtid cursor from the previous page; empty: first page
};

struct SummaryPage {
  std::vector<TransactionSummary> transactions;  // newest first (created_at, then gtid, desc)
  std::string next;                              // cursor for the next page; empty when done
};

class TransactionLog {
 public:
  virtual ~TransactionLog() = default;

  // Appends `records` atomically (all or none) and returns once they are durable. Records may
  // belong to several transactions. Errors: kInvalidArgument (malformed record), kNotFound (no
  // begin for a gtid), kAlreadyExists (a second begin), kConflict (after end, or a changed
  // decision), kUnavailable (store down; nothing written), kUnknownOutcome (the store went away
  // during commit: read back before deciding what happened).
  virtual Status Append(std::vector<v1::LogRecord> records) = 0;
  // Append without waiting, for records whose durability nobody waits for (the `end` record
  // after a `wait` reply went out): `done` gets what Append would have returned, once they are
  // durable or failed. The backend may hold them back a short while (~2 ms) so that they share
  // a later append's commit instead of paying a sync of their own; `done` then runs on the
  // thread that led that commit and must not append. The default appends at once, on the
  // calling thread.
  virtual void AppendSoon(std::vector<v1::LogRecord> records, std::function<void(Status)> done) {
    done(Append(std::move(records)));
  }

  // One transaction with all its records; kNotFound when absent (never begun, or purged).
  virtual Result<LoggedTransaction> Read(std::string_view gtid) = 0;

  // Unfinished transactions (no `end` record) in gtid order, starting after `after`, at most
  // `limit`. Recovery pages through all of them.
  virtual Result<std::vector<LoggedTransaction>> ScanUnfinished(std::string_view after,
                                                                int limit) = 0;

  // Summaries for operators, newest first, filtered by state and age, with paging.
  virtual Result<SummaryPage> List(const ListQuery& query) = 0;

  // Deletes finished transactions whose `end` was appended before `finished_before`, with all
  // their records, at most `max_count` of them (in small transactions, so appends are not held
  // up); returns how many. Unfinished ones are never purged. Which of the eligible ones go first
  // is the backend's choice. A caller that shows progress purges in slices of max_count.
  virtual Result<int64_t> Purge(Timestamp finished_before, int64_t max_count) = 0;
  // Every eligible one.
  Result<int64_t> Purge(Timestamp finished_before) {
    return Purge(finished_before, std::numeric_limits<int64_t>::max());
  }

  // How many finished transactions Purge(finished_before) would delete now.
  virtual Result<int64_t> CountPurgeable(Timestamp finished_before) = 0;

  // OK when the store answers; for /healthz.
  virtual Status Ping() = 0;

  virtual LogStats Stats() const = 0;
};

// Backends, picked from a closed list.
struct SqliteLogConfig {
  std::string path;  // created with its directory when absent
  std::string vfs;   // SQLite VFS name; empty for the default (tests use a power-loss VFS)
  // Run PRAGMA quick_check at open, so a damaged file is reported at start, not mid-recovery.
  bool check_on_open = true;
  int max_batch = 512;  // appends grouped into one commit at most
};
struct PostgresLogConfig {
  std::string conninfo;  // libpq connection string or postgresql:// URI
  int max_batch = 512;
  // Opened by an offline tool (txctl --store) rather than a coordinator. Several coordinators
  // share a store; an offline tool has it alone: its open fails while any coordinator uses the
  // store, and no coordinator can open the store or write to it while the tool has it open.
  // Both ends fail at once (kUnavailable, saying who holds the store), never wait.
  bool exclusive = false;
};
using LogConfig = std::variant<SqliteLogConfig, PostgresLogConfig>;

// Parses a --store URI: "sqlite://PATH" (sqlite://./dir/x.db, sqlite:///abs/x.db) or
// "postgresql://..." / "postgres://...".
Result<LogConfig> ParseStoreUri(std::string_view uri);

// Opens the log, creating or migrating its schema. Errors name the store and what to do.
Result<std::unique_ptr<TransactionLog>> OpenLog(const LogConfig& config);

// The schema version this build writes; a store with a newer version is refused at open.
inline constexpr int kLogSchemaVersion = 3;

// Conversions between the log's millisecond time and protobuf timestamps.
Timestamp FromProto(const google::protobuf::Timestamp& t);
google::protobuf::Timestamp ToProto(Timestamp t);

// The public record (GET /v1/transactions/{gtid}) folded from a transaction's records.
v1::Transaction FoldRecord(const LoggedTransaction& tx);

// The transaction's history (GET /v1/transactions/{gtid}/history, `txctl show`): one entry per
// record, in append order, with a one-line description each. Pure.
v1::TransactionHistory HistoryOf(const LoggedTransaction& tx);

}  // namespace txcoord::coordinator
