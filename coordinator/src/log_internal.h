// Internals shared by the log backends: record rules, checksums, group commit.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "txcoord/coordinator/log.h"
#include "txcoord/leader_group.h"

namespace txcoord::coordinator::internal {

// Schema version 1 -> 2 of both durable backends: the indexes for recovery scans (unfinished, by
// gtid), operator listing (by creation time) and purge (finished, by end time). The statements are
// the same in SQLite and PostgreSQL. A macro as well, so that SQLite's version 3, which rebuilds
// the table, can make them again in the same migration.
#define TXCOORD_INDEX_MIGRATION_SQL                                                         \
  "CREATE INDEX txcoord_tx_unfinished ON txcoord_tx (gtid) WHERE finished_at_ms IS NULL;\n" \
  "CREATE INDEX txcoord_tx_by_created ON txcoord_tx (created_at_ms, gtid);\n"               \
  "CREATE INDEX txcoord_tx_by_finished ON txcoord_tx (finished_at_ms) "                     \
  "WHERE finished_at_ms IS NOT NULL;\n"
inline constexpr const char* kIndexMigrationSql = TXCOORD_INDEX_MIGRATION_SQL;

// ---- Record rules (log_rules.cc) ----------------------------------------------------------

// Checks one record's shape on its own: ids, a body, the tx_state rules. Pure.
Status CheckRecord(const v1::LogRecord& record);

// Applies `record` to the summary of its transaction (`summary` is empty when the log has none).
// On error the summary is unchanged. Pure: both backends run it inside their write transaction,
// on summaries read in that same transaction, so the rules hold whatever the backend.
Status ApplyRecord(const v1::LogRecord& record, std::optional<TransactionSummary>* summary);

// Summaries of the transactions touched by one group commit, as the batch proceeds.
using SummaryMap = std::map<std::string, std::optional<TransactionSummary>, std::less<>>;

// One append waiting in a group commit.
struct PendingAppend {
  std::vector<v1::LogRecord> records;
  Status status;                     // set by the committer
  std::function<void(Status)> done;  // AppendSoon's: called once committed or failed
};

// What the backend writes for an accepted append: each record serialized with its checksum.
struct EncodedRecord {
  std::string gtid;
  int64_t seq = 0;   // 1, 2, ... within the transaction: append order
  std::string kind;  // "begin", "decision", ... for operators reading the table by hand
  std::string body;  // v1::LogRecord, protobuf binary
  uint32_t crc = 0;
};

// Runs the rules over a batch in order. `summaries` must hold, for every gtid the batch touches,
// the summary as currently stored (or nullopt). Each append either passes as a whole — its
// records are added to `out` and its effect to `summaries` — or gets its error in `status` and
// leaves both untouched. Returns the gtids whose summary changed.
std::vector<std::string> ApplyBatch(std::span<PendingAppend* const> batch, SummaryMap* summaries,
                                    std::vector<EncodedRecord>* out);

// Every gtid the batch touches, sorted and unique (backends lock rows in this order).
std::vector<std::string> BatchGtids(std::span<PendingAppend* const> batch);

std::string_view RecordKind(const v1::LogRecord& record);
uint32_t Checksum(std::string_view bytes);
// Parses a stored record after checking its checksum; kCorruption on any mismatch.
Result<v1::LogRecord> DecodeRecord(std::string_view gtid, int64_t id, std::string_view body,
                                   uint32_t crc);

int64_t ToMillis(Timestamp t);
Timestamp FromMillis(int64_t ms);

// ---- Group commit (group_commit.cc) -----------------------------------------------------------

// Groups concurrent appends into one commit (txcoord/leader_group.h): appends that arrive while
// a commit is in flight share the next commit and its one fsync; a lone writer pays no thread
// hand-off.
//
// Thread-safety: Submit may be called from any number of threads. commit_fn is only ever run by
// one thread at a time, so the backend's write connection needs no lock of its own.
class GroupCommitter {
 public:
  // Commits a batch: must set `status` of every append in it. If it throws, every append of the
  // batch fails with kInternal.
  using CommitFn = std::function<void(std::span<PendingAppend* const>)>;

  // Records submitted with SubmitSoon wait at most this long for another append to share its
  // commit; then the committer's own thread commits them.
  static constexpr std::chrono::microseconds kSoonDelay{2000};

  GroupCommitter(int max_batch, CommitFn commit_fn);
  // Commits what SubmitSoon still holds, then stops its thread. Close is for a backend that must
  // know the committer is done before it lets go of something (a lock); idempotent, and the
  // destructor does it too. Nothing may be submitted after it.
  void Close();
  ~GroupCommitter();
  GroupCommitter(const GroupCommitter&) = delete;
  GroupCommitter& operator=(const GroupCommitter&) = delete;

  // Blocks until the append is committed (durable) or failed.
  Status Submit(std::vector<v1::LogRecord> records);
  // Returns at once; the records ride in the next group commit that any Submit leads, or after
  // kSoonDelay in one of their own, and `done` gets the status Submit would have returned, on
  // the thread that led that commit. `done` must not append (it runs inside the group commit).
  void SubmitSoon(std::vector<v1::LogRecord> records, std::function<void(Status)> done);

  LogStats stats() const;
  // Appends waiting or committing now; lets a test see that a group has formed.
  size_t queued() const;

 private:
  void FlushLoop();

  std::atomic<int64_t> commits_{0};  // groups that committed something
  std::atomic<int64_t> appends_{0};
  std::atomic<int64_t> largest_{0};
  LeaderGroup<PendingAppend> group_;
  std::mutex soon_mu_;
  std::condition_variable soon_cv_;
  int64_t soon_pending_ = 0;                          // GUARDED_BY(soon_mu_)
  std::chrono::steady_clock::time_point soon_since_;  // GUARDED_BY(soon_mu_)
  bool flusher_idle_ = false;                         // GUARDED_BY(soon_mu_)
  bool stopping_ = false;                             // GUARDED_BY(soon_mu_)
  std::thread flusher_;                               // started last
};

// ---- Backends -----------------------------------------------------------------------------
Result<std::unique_ptr<TransactionLog>> OpenSqliteLog(const SqliteLogConfig& config);
Result<std::unique_ptr<TransactionLog>> OpenPostgresLog(const PostgresLogConfig& config);

// Page size rules shared by List and ScanUnfinished.
Status CheckLimit(int limit);

}  // namespace txcoord::coordinator::internal

struct sqlite3;
namespace txcoord::coordinator::internal {
// Creates or migrates the log's SQLite schema up to `target_version`. Exposed for the migration
// test, which builds an old store.
Status MigrateSqliteSchema(sqlite3* db, int target_version);
}  // namespace txcoord::coordinator::internal
