// OutboxSource: the relay's one interface to a service's outbox table (contract section 5).
// Backends are a closed list, SQLite and PostgreSQL, picked by the URI given to --source.
//
// A source reads unpublished rows in `id` order above its *watermark* (every id at or below it is
// settled: its row is visible or will never be), marks rows published, applies retention, holds
// the relay's leadership of this outbox, and offers a file descriptor that becomes readable when
// the outbox may have changed, so an idle relay sleeps in poll() and wakes within milliseconds.
//
//   PostgreSQL: ids are taken at insert and transactions commit in any order, so a read that
//     finds a missing id stops there until the row appears or every transaction that was
//     inserting into the outbox at the read has ended (then it was rolled back; see
//     docs/outbox-relay.md). Wake-up is
//     LISTEN txcoord_outbox (the trigger EnsureSchema installs). Leadership is a session advisory
//     lock, lost with the session.
//   SQLite: writers are serialized, so ids become visible in order and the watermark is the last
//     id read. Wake-up is inotify on the database's directory, filtered by PRAGMA data_version.
//     Leadership is an flock on "<path>.txrelay-lock".
//
// Errors: kUnavailable when the database cannot be reached or a statement fails; the source then
// counts as disconnected (and not leading) until Connect succeeds again. kInvalidArgument from
// Connect when the database does not exist or is not an outbox the relay can use.
//
// Thread-safety: none; one thread (the relay's pump of this source) uses a source.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "txcoord/outbox/row.h"
#include "txcoord/status.h"

namespace txcoord::outbox {

struct SqliteSourceConfig {
  std::string path;
};
struct PostgresSourceConfig {
  std::string conninfo;  // libpq URI or key=value string
};
using SourceConfig = std::variant<SqliteSourceConfig, PostgresSourceConfig>;

// sqlite:///abs/path.db, sqlite://relative/path.db, postgresql://... or postgres://...
// kInvalidArgument, naming the accepted forms, for anything else.
Result<SourceConfig> ParseSourceUri(std::string_view uri);

// The URI with any password replaced by "***", for logs, metrics labels and errors.
std::string RedactUri(std::string_view uri);

// How much one read may bring into memory: at most `rows` rows and, counting their payloads,
// about `payload_bytes`: a read stops after the row that reaches it, so it returns at least one
// row when there is one, however large. A bare number is a row count with no byte bound.
struct ReadLimit {
  static constexpr int64_t kNoByteLimit = std::numeric_limits<int64_t>::max();
  ReadLimit(int row_limit, int64_t byte_limit = kNoByteLimit)  // NOLINT: implicit from a count
      : rows(row_limit), payload_bytes(byte_limit) {}
  int rows;
  int64_t payload_bytes;
};

// Whether a read that returned `rows` may have stopped at `limit`: it was full by count, or the
// payloads it brought reached the byte bound (the next row, if any, would have passed it).
bool ReadMayHaveMore(const std::vector<OutboxRow>& rows, const ReadLimit& limit);

struct ReadResult {
  std::vector<OutboxRow> rows;  // unpublished rows above the old watermark, in id order
  bool more = false;            // the batch was full: read again at once
  // A replay (ReplayOutbox, admin.h) made published rows unpublished again: the watermark moved
  // back to just below the lowest unpublished row, `rows` is empty, and the caller drops every
  // row it holds that is not yet acknowledged and reads again, so that the replayed rows go out
  // in id order with everything after them.
  bool rewound = false;
  // Nonzero when rows wait behind a missing id (PostgreSQL): read again after this long even if
  // no change is signalled.
  std::chrono::milliseconds recheck_after{0};
};

struct SourceStats {
  int64_t pending_rows = 0;               // rows with published_at NULL
  double oldest_unpublished_age_s = 0.0;  // age of the lowest unpublished id; 0 when none
};

enum class RetentionMode { kDelete, kArchive };

struct ChangeCheck {
  bool changed = false;  // rows may have been committed since the last check
  // Nonzero: something stirred but no commit shows yet (SQLite: the -wal file was written,
  // the commit's index update is not visible yet); check again after this long.
  std::chrono::milliseconds recheck_after{0};
};

class OutboxSource {
 public:
  virtual ~OutboxSource() = default;

  // The redacted URI, for logs and metric labels.
  virtual const std::string& name() const = 0;

  // Opens the database (a new connection after a failure), creates or migrates the outbox table,
  // starts watching for changes, and sets the watermark just below the lowest unpublished row.
  virtual Status Connect() = 0;
  virtual void Close() = 0;
  virtual bool connected() const = 0;

  // Tries once, without waiting, to become the one relay publishing this outbox. True when this
  // source holds the leadership (already or now).
  virtual Result<bool> TryLead() = 0;
  virtual bool leading() const = 0;

  // Unpublished rows above the watermark, at most `limit`, advancing the watermark. Each read
  // also looks at the replay log (txcoord_outbox_replays) in a snapshot no older than the rows':
  // a replay that committed since the last read rewinds the watermark (ReadResult::rewound).
  virtual Result<ReadResult> ReadNext(ReadLimit limit) = 0;
  // Unpublished rows with after_id < id <= up_to_id, in id order, at most `limit`; leaves the
  // watermark alone. The relay's periodic sweep: rows it skipped, or that became visible below
  // the watermark.
  virtual Result<std::vector<OutboxRow>> ReadUnpublished(int64_t after_id, int64_t up_to_id,
                                                         ReadLimit limit) = 0;
  virtual int64_t watermark() const = 0;

  // Sets published_at of these rows (those still NULL) in one transaction. kConflict when the
  // service's writers kept the database locked (SQLite): nothing was marked, try again later;
  // the source stays connected. A source may send the update and return before it is done
  // (PostgreSQL does, on a second session); it is done when the next MarkPublished,
  // ReadUnpublished, Stats or Close returns. Its failure is then that call's failure, and the
  // rows stay unpublished, to be published again (as duplicates) after the reconnect.
  virtual Status MarkPublished(const std::vector<int64_t>& ids) = 0;

  // Deletes (or moves to txcoord_outbox_archive) up to `max_rows` rows published more than
  // `older_than` ago, lowest ids first. Returns how many.
  virtual Result<int64_t> ApplyRetention(std::chrono::seconds older_than, RetentionMode mode,
                                         int max_rows) = 0;

  virtual Result<SourceStats> Stats() = 0;

  // Readable when the outbox may have changed; -1 when the source has none (poll on a timer).
  virtual int change_fd() const = 0;
  // Consumes what made change_fd readable and says whether rows may have been committed since
  // the last call (cheap: no table is read). Also called on a timer, as a fallback.
  virtual Result<ChangeCheck> CheckChanged() = 0;
};

// A new, unconnected source; `name` as RedactUri gives it.
std::unique_ptr<OutboxSource> MakeSource(const SourceConfig& config, std::string name);

// Forwards every call to another source, so that a test fake overrides just the call it breaks.
class OutboxSourceWrapper : public OutboxSource {
 public:
  explicit OutboxSourceWrapper(std::unique_ptr<OutboxSource> target) : target_(std::move(target)) {}
  const std::string& name() const override { return target_->name(); }
  Status Connect() override { return target_->Connect(); }
  void Close() override { target_->Close(); }
  bool connected() const override { return target_->connected(); }
  Result<bool> TryLead() override { return target_->TryLead(); }
  bool leading() const override { return target_->leading(); }
  Result<ReadResult> ReadNext(ReadLimit limit) override { return target_->ReadNext(limit); }
  Result<std::vector<OutboxRow>> ReadUnpublished(int64_t after_id, int64_t up_to_id,
                                                 ReadLimit limit) override {
    return target_->ReadUnpublished(after_id, up_to_id, limit);
  }
  int64_t watermark() const override { return target_->watermark(); }
  Status MarkPublished(const std::vector<int64_t>& ids) override {
    return target_->MarkPublished(ids);
  }
  Result<int64_t> ApplyRetention(std::chrono::seconds older_than, RetentionMode mode,
                                 int max_rows) override {
    return target_->ApplyRetention(older_than, mode, max_rows);
  }
  Result<SourceStats> Stats() override { return target_->Stats(); }
  int change_fd() const override { return target_->change_fd(); }
  Result<ChangeCheck> CheckChanged() override { return target_->CheckChanged(); }

 protected:
  OutboxSource& target() { return *target_; }

 private:
  std::unique_ptr<OutboxSource> target_;
};

}  // namespace txcoord::outbox
