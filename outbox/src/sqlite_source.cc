// The SQLite outbox source. See source.h for the rules every source follows.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "source_internal.h"
#include "txcoord/outbox/outbox.h"

namespace txcoord::outbox {
namespace {

constexpr int kBusyTimeoutUs = 5'000'000;
// A mark waits at most this long for the write lock, then is put off (kConflict): a service
// committing back to back holds SQLite's write lock nearly all the time, and a pump blocked on
// it would stop publishing. Past kForcedMarkRows waiting ids it waits the full timeout instead.
constexpr int kMarkBusyUs = 1'000;
constexpr size_t kForcedMarkRows = 50'000;
constexpr int kBusySleepUs = 200;

// SQLite's own busy handler (sqlite3_busy_timeout) sleeps 1, 2, 5, 10, ... up to 100 ms between
// tries; short, even sleeps catch the gaps between a service's transactions instead.
int ShortSleepBusyHandler(void* limit_us, int tries) {
  if (tries * kBusySleepUs >= *static_cast<int*>(limit_us)) return 0;
  usleep(kBusySleepUs);
  return 1;
}
// How long after a file event a commit may take to become visible (its sync included).
constexpr std::chrono::milliseconds kCommitSettle{100};

class Statement {
 public:
  Statement() = default;
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  int Prepare(sqlite3* db, const char* sql) {
    sqlite3_finalize(stmt_);
    stmt_ = nullptr;
    return sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
  }
  sqlite3_stmt* get() { return stmt_; }
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  void Finalize() {
    sqlite3_finalize(stmt_);
    stmt_ = nullptr;
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

std::string Text(sqlite3_stmt* s, int column) {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(s, column));
  return text == nullptr ? std::string()
                         : std::string(text, static_cast<size_t>(sqlite3_column_bytes(s, column)));
}

std::string Blob(sqlite3_stmt* s, int column) {
  const void* blob = sqlite3_column_blob(s, column);
  return blob == nullptr ? std::string()
                         : std::string(static_cast<const char*>(blob),
                                       static_cast<size_t>(sqlite3_column_bytes(s, column)));
}

OutboxRow ReadRow(sqlite3_stmt* s) {
  OutboxRow row;
  row.id = sqlite3_column_int64(s, 0);
  row.event_id = Text(s, 1);
  row.aggregate_type = Text(s, 2);
  row.aggregate_id = Text(s, 3);
  row.event_type = Text(s, 4);
  row.payload = Blob(s, 5);
  row.headers_json = Text(s, 6);
  return row;
}

class SqliteSource final : public OutboxSource {
 public:
  SqliteSource(SqliteSourceConfig config, std::string name)
      : config_(std::move(config)), name_(std::move(name)) {}
  ~SqliteSource() override {
    Close();
    if (lock_fd_ >= 0) close(lock_fd_);
  }

  const std::string& name() const override { return name_; }
  bool connected() const override { return db_ != nullptr; }
  bool leading() const override { return leading_; }
  int64_t watermark() const override { return watermark_; }
  int change_fd() const override { return inotify_fd_; }

  Status Connect() override {
    Close();
    std::error_code ec;
    if (!std::filesystem::is_regular_file(config_.path, ec)) {
      // The relay never creates a service's database: a typo must not publish from an empty one.
      return Status::InvalidArgument("sqlite source " + config_.path +
                                     " is not an existing database file");
    }
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(config_.path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                             nullptr);
    if (rc != SQLITE_OK) {
      const std::string why = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
      sqlite3_close(db);
      return Status::Unavailable("cannot open sqlite source " + config_.path + ": " + why);
    }
    db_ = db;
    sqlite3_busy_handler(db_, ShortSleepBusyHandler, &busy_limit_us_);
    // Marking rows published need not be synced: a lost mark only means a duplicate publish,
    // which the broker's duplicate window drops. (The service's own connections keep theirs.)
    Exec("PRAGMA synchronous=NORMAL");
    // Checkpoints are the service's business (its connections run them as they commit); one run
    // by the relay's connection would stall the pump for the time of a database sync.
    Exec("PRAGMA wal_autocheckpoint=0");
    if (Status s = EnsureSchema(db_); !s.ok()) {
      Close();
      return s.WithContext("sqlite source " + config_.path);
    }
    const char* statements[] = {
        // 0: next unpublished rows above the watermark
        "SELECT id, event_id, aggregate_type, aggregate_id, event_type, payload, headers "
        "FROM txcoord_outbox WHERE published_at IS NULL AND id > ?1 ORDER BY id LIMIT ?2",
        // 1: the sweep
        "SELECT id, event_id, aggregate_type, aggregate_id, event_type, payload, headers "
        "FROM txcoord_outbox WHERE published_at IS NULL AND id > ?1 AND id <= ?2 "
        "ORDER BY id LIMIT ?3",
        // 2: mark
        "UPDATE txcoord_outbox SET published_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') "
        "WHERE id IN (SELECT value FROM json_each(?1)) AND published_at IS NULL",
        // 3: data_version
        "PRAGMA data_version",
        // 4: the replay generation (see ReadNext)
        "SELECT coalesce(max(id), 0) FROM txcoord_outbox_replays",
        // 5: where reading starts: just below the lowest unpublished row
        "SELECT coalesce((SELECT min(id) - 1 FROM txcoord_outbox WHERE published_at IS NULL), "
        "(SELECT max(id) FROM txcoord_outbox), 0)",
    };
    static_assert(sizeof(statements) / sizeof(statements[0]) == kStatementCount);
    for (int i = 0; i < kStatementCount; ++i) {
      if (statements_[i].Prepare(db_, statements[i]) != SQLITE_OK) {
        Status s = Error("prepare");
        Close();
        return s;
      }
    }
    // The generation before the start: a replay committed in between only rewinds once more.
    auto generation = StepInt(statements_[kGeneration], "read the replay log");
    auto start = generation.ok() ? StepInt(statements_[kStart], "find the first unpublished row")
                                 : generation.status();
    if (!start.ok()) {
      Close();
      return start.status();
    }
    replay_generation_ = *generation;
    watermark_ = *start;
    auto version = DataVersion();
    if (!version.ok()) {
      Close();
      return version.status();
    }
    data_version_ = *version;

    inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (inotify_fd_ >= 0) {
      const std::string dir = std::filesystem::absolute(config_.path, ec).parent_path().string();
      // Every commit writes the database or its -wal/-journal file in this directory.
      if (inotify_add_watch(inotify_fd_, dir.c_str(),
                            IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE) < 0) {
        close(inotify_fd_);
        inotify_fd_ = -1;  // the pump falls back to its timer
      }
    }
    return Status::Ok();
  }

  void Close() override {
    for (auto& s : statements_) s.Finalize();
    if (db_ != nullptr) sqlite3_close(db_);
    db_ = nullptr;
    if (inotify_fd_ >= 0) close(inotify_fd_);
    inotify_fd_ = -1;
    // The file lock stays: leadership of a SQLite outbox ends with the process, or at
    // destruction, not with a database error.
  }

  Result<bool> TryLead() override {
    if (leading_) return true;
    if (lock_fd_ < 0) {
      const std::string lock_path = config_.path + ".txrelay-lock";
      lock_fd_ = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      if (lock_fd_ < 0) {
        return Status::Unavailable("cannot open the relay lock file " + lock_path + ": " +
                                   std::strerror(errno));
      }
    }
    if (flock(lock_fd_, LOCK_EX | LOCK_NB) == 0) {
      leading_ = true;
      return true;
    }
    if (errno == EWOULDBLOCK) return false;
    return Status::Unavailable(std::string("flock of the relay lock file: ") +
                               std::strerror(errno));
  }

  Result<ReadResult> ReadNext(ReadLimit limit) override {
    if (db_ == nullptr) return NotConnected();
    Statement& s = statements_[kNext];
    sqlite3_bind_int64(s.get(), 1, watermark_);
    sqlite3_bind_int(s.get(), 2, limit.rows);
    ReadResult result;
    auto rows = Collect(s, limit.payload_bytes);
    if (!rows.ok()) return rows.status();
    // After the rows, in a later snapshot: a replay these rows may come after (its commit was
    // before theirs) is in the log by now. Then the rows are dropped, to be read again in id
    // order together with the rows the replay made unpublished.
    auto generation = StepInt(statements_[kGeneration], "read the replay log");
    if (!generation.ok()) return generation.status();
    if (*generation != replay_generation_) {
      auto start = StepInt(statements_[kStart], "find the first unpublished row");
      if (!start.ok()) return start.status();
      replay_generation_ = *generation;
      watermark_ = std::min(watermark_, *start);
      result.rewound = true;
      result.more = true;
      return result;
    }
    result.rows = std::move(rows).value();
    if (!result.rows.empty()) watermark_ = result.rows.back().id;
    result.more = ReadMayHaveMore(result.rows, limit);
    return result;
  }

  Result<std::vector<OutboxRow>> ReadUnpublished(int64_t after_id, int64_t up_to_id,
                                                 ReadLimit limit) override {
    if (db_ == nullptr) return NotConnected();
    Statement& s = statements_[kSweep];
    sqlite3_bind_int64(s.get(), 1, after_id);
    sqlite3_bind_int64(s.get(), 2, up_to_id);
    sqlite3_bind_int(s.get(), 3, limit.rows);
    return Collect(s, limit.payload_bytes);
  }

  Status MarkPublished(const std::vector<int64_t>& ids) override {
    if (db_ == nullptr) return NotConnected();
    if (ids.empty()) return Status::Ok();
    std::string array = "[";
    for (const int64_t id : ids) {
      if (array.size() > 1) array += ',';
      array += std::to_string(id);
    }
    array += ']';
    Statement& s = statements_[kMark];
    sqlite3_bind_text(s.get(), 1, array.data(), static_cast<int>(array.size()), SQLITE_STATIC);
    if (ids.size() < kForcedMarkRows) busy_limit_us_ = kMarkBusyUs;
    const int rc = sqlite3_step(s.get());
    busy_limit_us_ = kBusyTimeoutUs;
    s.Reset();
    if ((rc & 0xff) == SQLITE_BUSY) {
      return Status::Conflict("sqlite source " + config_.path +
                              ": the service's writers hold the lock; marks put off");
    }
    if (rc != SQLITE_DONE) return Error("mark rows published");
    return Status::Ok();
  }

  Result<int64_t> ApplyRetention(std::chrono::seconds older_than, RetentionMode mode,
                                 int max_rows) override {
    if (db_ == nullptr) return NotConnected();
    const std::string cutoff = "strftime('%Y-%m-%dT%H:%M:%fZ','now','-" +
                               std::to_string(older_than.count()) + " seconds')";
    const std::string victims =
        "SELECT id FROM txcoord_outbox WHERE published_at IS NOT NULL AND published_at < " +
        cutoff + " ORDER BY id LIMIT " + std::to_string(max_rows);
    std::string sql = "BEGIN IMMEDIATE;";
    if (mode == RetentionMode::kArchive) {
      sql +=
          "CREATE TABLE IF NOT EXISTS txcoord_outbox_archive ("
          " id INTEGER PRIMARY KEY, event_id TEXT NOT NULL, aggregate_type TEXT NOT NULL,"
          " aggregate_id TEXT NOT NULL, event_type TEXT NOT NULL, payload BLOB NOT NULL,"
          " headers TEXT NOT NULL, created_at TEXT NOT NULL, published_at TEXT);"
          "CREATE TEMP TABLE IF NOT EXISTS txcoord_retention_ids (id INTEGER PRIMARY KEY);"
          "DELETE FROM txcoord_retention_ids;"
          "INSERT INTO txcoord_retention_ids " +
          victims +
          ";"
          "INSERT OR IGNORE INTO txcoord_outbox_archive SELECT id, event_id, aggregate_type,"
          " aggregate_id, event_type, payload, headers, created_at, published_at"
          " FROM txcoord_outbox WHERE id IN (SELECT id FROM txcoord_retention_ids);"
          "DELETE FROM txcoord_outbox WHERE id IN (SELECT id FROM txcoord_retention_ids);";
    } else {
      sql += "DELETE FROM txcoord_outbox WHERE id IN (" + victims + ");";
    }
    sql += "COMMIT;";
    char* err = nullptr;
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    const std::string why = err != nullptr ? err : "";
    sqlite3_free(err);
    const int64_t changed = sqlite3_changes64(db_);
    if (rc != SQLITE_OK) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return Status::Unavailable("retention in sqlite source " + config_.path + ": " + why);
    }
    return changed;
  }

  Result<SourceStats> Stats() override {
    if (db_ == nullptr) return NotConnected();
    SourceStats stats;
    auto count = QueryInt("SELECT count(*) FROM txcoord_outbox WHERE published_at IS NULL");
    if (!count.ok()) return count.status();
    stats.pending_rows = *count;
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_,
                           "SELECT (julianday('now') - julianday(created_at)) * 86400.0 FROM "
                           "txcoord_outbox WHERE published_at IS NULL ORDER BY id LIMIT 1",
                           -1, &s, nullptr) != SQLITE_OK) {
      return Error("stats");
    }
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) stats.oldest_unpublished_age_s = sqlite3_column_double(s, 0);
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("stats");
    return stats;
  }

  Result<ChangeCheck> CheckChanged() override {
    if (db_ == nullptr) return NotConnected();
    const auto now = std::chrono::steady_clock::now();
    if (inotify_fd_ >= 0) {
      char buffer[4096];
      while (read(inotify_fd_, buffer, sizeof buffer) > 0) last_file_event_ = now;
    }
    auto version = DataVersion();
    if (!version.ok()) return version.status();
    ChangeCheck check;
    check.changed = *version != data_version_;
    data_version_ = *version;
    // A commit writes the -wal file first and makes itself visible afterwards, through the
    // shared-memory index (no file event), after a sync that may take milliseconds. So after a
    // file event without a visible commit, look again for a little while.
    if (!check.changed && now - last_file_event_ < kCommitSettle) {
      check.recheck_after = std::chrono::milliseconds(2);
    }
    return check;
  }

 private:
  enum { kNext, kSweep, kMark, kDataVersion, kGeneration, kStart, kStatementCount };

  Status NotConnected() const {
    return Status::Unavailable("sqlite source " + config_.path + " is not connected");
  }

  Status Error(std::string_view what) {
    const std::string message = "sqlite source " + config_.path + ": " + std::string(what) + ": " +
                                (db_ != nullptr ? sqlite3_errmsg(db_) : "not open");
    return Status::Unavailable(message);
  }

  void Exec(const char* sql) { sqlite3_exec(db_, sql, nullptr, nullptr, nullptr); }

  Result<int64_t> QueryInt(const char* sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) != SQLITE_OK) return Error("query");
    const int rc = sqlite3_step(s);
    const int64_t value = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW) return Error("query");
    return value;
  }

  Result<int64_t> DataVersion() {
    return StepInt(statements_[kDataVersion], "PRAGMA data_version");
  }

  // The one integer a prepared statement yields.
  Result<int64_t> StepInt(Statement& s, std::string_view what) {
    const int rc = sqlite3_step(s.get());
    const int64_t value = rc == SQLITE_ROW ? sqlite3_column_int64(s.get(), 0) : 0;
    s.Reset();
    if (rc != SQLITE_ROW) return Error(what);
    return value;
  }

  // The statement's rows, stepping no further once their payloads reach `payload_bytes`: SQLite
  // hands rows over one at a time, so nothing beyond that is ever read into memory.
  Result<std::vector<OutboxRow>> Collect(Statement& s, int64_t payload_bytes) {
    std::vector<OutboxRow> rows;
    int64_t bytes = 0;
    int rc = SQLITE_DONE;
    while (bytes < payload_bytes && (rc = sqlite3_step(s.get())) == SQLITE_ROW) {
      rows.push_back(ReadRow(s.get()));
      bytes += static_cast<int64_t>(rows.back().payload.size());
    }
    s.Reset();
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return Error("read outbox rows");
    return rows;
  }

  const SqliteSourceConfig config_;
  const std::string name_;
  sqlite3* db_ = nullptr;
  Statement statements_[kStatementCount];
  int inotify_fd_ = -1;
  int lock_fd_ = -1;
  bool leading_ = false;
  int64_t watermark_ = 0;
  int64_t replay_generation_ = 0;  // the replay log's highest id when last read
  int64_t data_version_ = 0;
  std::chrono::steady_clock::time_point last_file_event_{};
  int busy_limit_us_ = kBusyTimeoutUs;  // read by the busy handler
};

}  // namespace

std::unique_ptr<OutboxSource> MakeSqliteSource(const SqliteSourceConfig& config, std::string name) {
  return std::make_unique<SqliteSource>(config, std::move(name));
}

}  // namespace txcoord::outbox
