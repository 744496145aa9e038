// The SQLite backend of the transaction log: the embedded default.
//
// Durability: WAL journal with synchronous=FULL, so every COMMIT fsyncs the WAL before it
// returns; both pragmas are read back at open and the open fails if SQLite did not take them.
// Group commit: appends share one write transaction (GroupCommitter), hence one fsync.
//
// The write path is the throughput limit (one writer, the group leader's thread), so it is kept
// short: statements are prepared once per connection; the summaries of unfinished transactions
// stay in memory on the writer (exact, because the store's flock makes this process its only
// writer, and updated only after a successful COMMIT, each with its internal id); summaries
// and records are keyed by an id given in creation order, not by the client's gtid, so the rows
// one group writes share a few pages at the right edge of each b-tree (schema version 3); and
// checkpoints run on a background connection instead of inside a leader's COMMIT.
//
// Concurrency: one writer connection, used only under write_mu_ (by the group-commit leader or
// by Purge); a pool of reader connections, each read in its own snapshot (WAL readers never block
// the writer); one checkpointer thread with its own connection. One process per store: an
// exclusive flock on the database file (StoreLock).
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <unordered_map>

#include "log_internal.h"
#include "sqlite_util.h"
#include "txcoord/participant/wal_batch_vfs.h"

namespace txcoord::coordinator::internal {
namespace {

// Schema migrations, applied in order; entry i moves the store from version i to i + 1.
// Never edit a released entry: add a new one and bump kLogSchemaVersion.
constexpr const char* kSqliteMigrations[] = {
    // 0 -> 1: per-transaction summaries and records.
    R"sql(
    CREATE TABLE txcoord_tx (
      gtid           TEXT    PRIMARY KEY,
      protocol       TEXT    NOT NULL,
      state          TEXT    NOT NULL,
      decision       INTEGER NOT NULL DEFAULT 0,
      created_at_ms  INTEGER NOT NULL,
      updated_at_ms  INTEGER NOT NULL,
      deadline_ms    INTEGER,
      finished_at_ms INTEGER,
      record_count   INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE txcoord_tx_record (
      gtid  TEXT    NOT NULL,
      seq   INTEGER NOT NULL,
      kind  TEXT    NOT NULL,
      body  BLOB    NOT NULL,
      crc   INTEGER NOT NULL,
      PRIMARY KEY (gtid, seq)
    ) WITHOUT ROWID;
    )sql",
    // 1 -> 2: the same in both backends.
    kIndexMigrationSql,
    // 2 -> 3: summaries get an increasing internal id and records are keyed by it, so that the
    // rows a group commit writes share a few pages at the right edge of each b-tree instead of
    // one random page per append (docs/transaction-log.md, "Page locality"). The indexes of
    // version 2 go with the old table and are made again on the new one.
    R"sql(
    CREATE TABLE txcoord_tx_v3 (
      id             INTEGER PRIMARY KEY,
      gtid           TEXT    NOT NULL UNIQUE,
      protocol       TEXT    NOT NULL,
      state          TEXT    NOT NULL,
      decision       INTEGER NOT NULL DEFAULT 0,
      created_at_ms  INTEGER NOT NULL,
      updated_at_ms  INTEGER NOT NULL,
      deadline_ms    INTEGER,
      finished_at_ms INTEGER,
      record_count   INTEGER NOT NULL
    );
    INSERT INTO txcoord_tx_v3 (gtid, protocol, state, decision, created_at_ms, updated_at_ms,
                               deadline_ms, finished_at_ms, record_count)
      SELECT gtid, protocol, state, decision, created_at_ms, updated_at_ms, deadline_ms,
             finished_at_ms, record_count
      FROM txcoord_tx ORDER BY created_at_ms, gtid;
    CREATE TABLE txcoord_tx_record_v3 (
      tx_id INTEGER NOT NULL,
      seq   INTEGER NOT NULL,
      kind  TEXT    NOT NULL,
      body  BLOB    NOT NULL,
      crc   INTEGER NOT NULL,
      PRIMARY KEY (tx_id, seq)
    ) WITHOUT ROWID;
    INSERT INTO txcoord_tx_record_v3 (tx_id, seq, kind, body, crc)
      SELECT t.id, r.seq, r.kind, r.body, r.crc
      FROM txcoord_tx_record r JOIN txcoord_tx_v3 t ON t.gtid = r.gtid ORDER BY t.id, r.seq;
    DROP TABLE txcoord_tx_record;
    DROP TABLE txcoord_tx;
    ALTER TABLE txcoord_tx_v3 RENAME TO txcoord_tx;
    ALTER TABLE txcoord_tx_record_v3 RENAME TO txcoord_tx_record;
    )sql" TXCOORD_INDEX_MIGRATION_SQL,
};
static_assert(std::size(kSqliteMigrations) == kLogSchemaVersion);

#define TXCOORD_SUMMARY_COLUMNS                                                                  \
  "gtid, protocol, state, decision, created_at_ms, updated_at_ms, deadline_ms, finished_at_ms, " \
  "record_count"

// The summary columns, then the internal id (column 9).
constexpr const char* kSelectSummary =
    "SELECT " TXCOORD_SUMMARY_COLUMNS ", id FROM txcoord_tx WHERE gtid = ?1";
constexpr const char* kSelectRecords =
    "SELECT seq, body, crc FROM txcoord_tx_record WHERE tx_id = ?1 ORDER BY seq";
constexpr const char* kInsertRecord =
    "INSERT INTO txcoord_tx_record (tx_id, seq, kind, body, crc) VALUES (?1, ?2, ?3, ?4, ?5)";
// A new transaction's id is the rowid SQLite picks: one above the largest, so the right edge.
constexpr const char* kInsertSummary = "INSERT INTO txcoord_tx (" TXCOORD_SUMMARY_COLUMNS
                                       ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
// Two forms: naming finished_at_ms in SET makes SQLite rewrite the row's entries in the partial
// indexes that test it (one random page each), so only the update that finishes names it.
constexpr const char* kUpdateSummary =
    "UPDATE txcoord_tx SET state = ?2, decision = ?3, updated_at_ms = ?4, record_count = ?5 "
    "WHERE id = ?1";
constexpr const char* kFinishSummary =
    "UPDATE txcoord_tx SET state = ?2, decision = ?3, updated_at_ms = ?4, record_count = ?5, "
    "finished_at_ms = ?6 WHERE id = ?1";
constexpr const char* kSelectUnfinished =
    "SELECT gtid FROM txcoord_tx WHERE finished_at_ms IS NULL AND gtid > ?1 ORDER BY gtid "
    "LIMIT ?2";
constexpr const char* kSelectCreatedAt = "SELECT created_at_ms FROM txcoord_tx WHERE gtid = ?1";
constexpr const char* kSelectPage =
    "SELECT " TXCOORD_SUMMARY_COLUMNS
    " FROM txcoord_tx WHERE (?1 = '' OR state = ?1)"
    " AND (?2 IS NULL OR created_at_ms < ?2)"
    " AND (?3 IS NULL OR created_at_ms < ?3 OR (created_at_ms = ?3 AND gtid < ?4))"
    " ORDER BY created_at_ms DESC, gtid DESC LIMIT ?5";
constexpr const char* kSelectPurgeable =
    "SELECT id FROM txcoord_tx WHERE finished_at_ms IS NOT NULL AND finished_at_ms < ?1 "
    "LIMIT ?2";
constexpr const char* kCountPurgeable =
    "SELECT count(*) FROM txcoord_tx WHERE finished_at_ms IS NOT NULL AND finished_at_ms < ?1";
constexpr const char* kDeleteRecords = "DELETE FROM txcoord_tx_record WHERE tx_id = ?1";
constexpr const char* kDeleteSummary = "DELETE FROM txcoord_tx WHERE id = ?1";

TransactionSummary SummaryFromRow(const Stmt& s) {
  TransactionSummary t;
  t.gtid = std::string(s.Text(0));
  t.protocol = std::string(s.Text(1));
  t.state = std::string(s.Text(2));
  t.decision = static_cast<v1::Outcome>(s.Int(3));
  t.created_at = FromMillis(s.Int(4));
  t.updated_at = FromMillis(s.Int(5));
  if (auto d = s.OptInt(6)) t.deadline = FromMillis(*d);
  if (auto f = s.OptInt(7)) t.finished_at = FromMillis(*f);
  t.record_count = s.Int(8);
  return t;
}

// One log per store: an exclusive flock on the database file itself, so that every spelling of
// its path (relative, symlinked, hard-linked) finds the same lock. flock and SQLite's own POSIX
// locks do not interact on Linux, but closing any descriptor of the file drops the process's
// POSIX locks, so the lock is released only after every SQLite connection of the store closed:
// whoever holds a StoreLock must declare it before (destroy it after) its connections.
class StoreLock {
 public:
  static Result<StoreLock> Acquire(const std::string& path) {
    const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      return Status::Unavailable("cannot open sqlite store " + path + ": " + strerror(errno));
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      close(fd);
      return Status::Unavailable("sqlite store " + path +
                                 " is in use by another txcoord; stop it first or use another "
                                 "--store");
    }
    return StoreLock(fd);
  }
  StoreLock(StoreLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  StoreLock& operator=(StoreLock&&) = delete;
  ~StoreLock() {
    if (fd_ >= 0) close(fd_);
  }

 private:
  explicit StoreLock(int fd) : fd_(fd) {}
  int fd_;
};

// Owns a sqlite3 handle.
struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;

// Through the WAL-batching shim (txcoord/participant/wal_batch_vfs.h), stacked on config.vfs:
// a commit's frames reach the file in a few writes instead of two per frame.
Result<DbPtr> OpenHandle(const SqliteLogConfig& config) {
  auto vfs = participant::WalBatchingVfs(config.vfs);
  if (!vfs.ok()) return vfs.status();
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(config.path.c_str(), &raw,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 vfs->c_str());
  DbPtr db(raw);
  if (rc != SQLITE_OK) return SqliteError(raw, rc, "open sqlite store " + config.path);
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, 10'000);
  // On every connection, not only the writer: whichever connection checkpoints (the
  // checkpointer, or the last one to close) must fsync the database before the WAL is reused.
  if (const int sync_rc = sqlite3_exec(raw, "PRAGMA synchronous=FULL", nullptr, nullptr, nullptr);
      sync_rc != SQLITE_OK) {
    return SqliteError(raw, sync_rc, "set synchronous=FULL");
  }
  return db;
}

// A connection and its prepared statements. Not thread-safe: one user at a time.
class Connection {
 public:
  explicit Connection(DbPtr db) : db_(std::move(db)) {}
  sqlite3* db() const { return db_.get(); }

  // A cached statement, ready to bind; reset when the returned lease ends, so that no statement
  // keeps a read snapshot open between uses.
  class Lease {
   public:
    explicit Lease(Stmt* stmt) : stmt_(stmt) {}
    Lease(Lease&& o) noexcept : stmt_(std::exchange(o.stmt_, nullptr)) {}
    ~Lease() {
      if (stmt_ != nullptr) stmt_->Reset();
    }
    Stmt* operator->() const { return stmt_; }
    Stmt& operator*() const { return *stmt_; }

   private:
    Stmt* stmt_;
  };

  Result<Lease> Get(const char* sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
      auto stmt = Prepare(db_.get(), sql);
      if (!stmt.ok()) return stmt.status();
      it = cache_.emplace(sql, std::move(stmt).value()).first;
    }
    return Lease(&it->second);
  }

 private:
  DbPtr db_;
  // Keyed by the address of the SQL constants above. Declared after db_: finalized first.
  std::unordered_map<const char*, Stmt> cache_;
};

// Reads one pragma's single value as text.
Result<std::string> PragmaValue(sqlite3* db, const std::string& pragma) {
  auto stmt = Prepare(db, "PRAGMA " + pragma);
  if (!stmt.ok()) return stmt.status();
  Status status;
  std::string value;
  if (stmt->Step(&status)) value = std::string(stmt->Text(0));
  if (!status.ok()) return status;
  return value;
}

// A file that exists but is not a SQLite database is refused before SQLite touches it.
Status CheckFileHeader(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return Status::Ok();
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return Status::Unavailable("cannot stat sqlite store " + path + ": " + ec.message());
  if (size == 0) return Status::Ok();  // created but never written: SQLite treats it as empty
  char header[16] = {};
  std::ifstream in(path, std::ios::binary);
  in.read(header, sizeof header);
  if (in.gcount() < static_cast<std::streamsize>(sizeof header) ||
      std::memcmp(header, "SQLite format 3", 16) != 0) {
    return Status::Corruption("sqlite store " + path +
                              " is not a SQLite database (bad header); restore it from a backup "
                              "or point --store at a new file");
  }
  return Status::Ok();
}

// A summary as stored, with the internal id its records are keyed by.
struct StoredSummary {
  TransactionSummary summary;
  int64_t id = 0;
};
std::optional<int64_t> OptMillis(const std::optional<Timestamp>& t) {
  if (!t) return std::nullopt;
  return ToMillis(*t);
}

// gtid -> internal id, for the transactions one group commit touches.
using IdMap = std::unordered_map<std::string, int64_t>;

Result<std::optional<StoredSummary>> ReadSummary(Connection& c, std::string_view gtid) {
  auto stmt = c.Get(kSelectSummary);
  if (!stmt.ok()) return stmt.status();
  (*stmt)->Bind(1, gtid);
  Status status;
  std::optional<StoredSummary> out;
  if ((*stmt)->Step(&status)) out = StoredSummary{SummaryFromRow(**stmt), (*stmt)->Int(9)};
  if (!status.ok()) return status;
  return out;
}

// Runs PASSIVE checkpoints on its own connection, so that the group-commit leader never copies
// WAL pages into the database inside its COMMIT. The writer's WAL hook wakes it.
//
// Each checkpoint is finished with the writer held off: SQLite starts the WAL over at its
// beginning only when a checkpoint has copied every frame, and a writer that never pauses keeps
// a purely passive checkpoint a few frames short forever. The WAL then grows without end, and
// on ext4 a sync that grows a file costs about twice one that overwrites (fdatasync_append
// against fdatasync in bench/log_append): every commit paid it.
class Checkpointer {
 public:
  // WAL frames (pages) after which a checkpoint is started in the background.
  static constexpr int kBackgroundFrames = 1000;

  // write_mu is the mutex the writer connection is used under; it must outlive this.
  Checkpointer(std::unique_ptr<Connection> conn, std::mutex& write_mu)
      : conn_(std::move(conn)), write_mu_(write_mu), thread_([this] { Run(); }) {}
  ~Checkpointer() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

  void Wake() {
    {
      std::lock_guard lock(mu_);
      wanted_ = true;
    }
    cv_.notify_one();
  }

 private:
  void Run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || wanted_; });
      if (stop_) return;
      wanted_ = false;
      lock.unlock();
      // A failure (busy, I/O) is left for the next wake-up or the writer's own fallback.
      // First the bulk, while the writer goes on; then the frames it added meanwhile, few, with
      // the writer waiting (about one sync of the database file).
      sqlite3_wal_checkpoint_v2(conn_->db(), "main", SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
      {
        std::lock_guard writer(write_mu_);
        sqlite3_wal_checkpoint_v2(conn_->db(), "main", SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
      }
      lock.lock();
    }
  }

  std::unique_ptr<Connection> conn_;
  std::mutex& write_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool wanted_ = false;  // GUARDED_BY(mu_)
  bool stop_ = false;    // GUARDED_BY(mu_)
  std::thread thread_;
};

class SqliteLog final : public TransactionLog {
 public:
  SqliteLog(SqliteLogConfig config, StoreLock lock, std::unique_ptr<Connection> writer,
            std::unique_ptr<Connection> checkpoint_conn)
      : lock_(std::move(lock)),
        config_(std::move(config)),
        writer_(std::move(writer)),
        checkpointer_(std::move(checkpoint_conn), write_mu_),
        committer_(config_.max_batch, [this](auto batch) { CommitBatch(batch); }) {
    sqlite3_wal_autocheckpoint(writer_->db(), 0);
    sqlite3_wal_hook(writer_->db(), &SqliteLog::OnWalCommit, this);
  }

  // Members go in reverse order: the committer, the checkpointer (joined, then its connection
  // closed), the readers, the writer, and last the store lock.
  ~SqliteLog() override = default;

  Status Append(std::vector<v1::LogRecord> records) override {
    return committer_.Submit(std::move(records));
  }

  void AppendSoon(std::vector<v1::LogRecord> records, std::function<void(Status)> done) override {
    committer_.SubmitSoon(std::move(records), std::move(done));
  }

  Result<LoggedTransaction> Read(std::string_view gtid) override {
    auto reader = AcquireReader();
    if (!reader.ok()) return reader.status();
    ReaderLease lease(this, std::move(reader).value());
    TXCOORD_RETURN_IF_ERROR(Exec(lease->db(), "BEGIN"));
    auto result = ReadIn(*lease, gtid);
    (void)Exec(lease->db(), "COMMIT");
    return result;
  }

  Result<std::vector<LoggedTransaction>> ScanUnfinished(std::string_view after,
                                                        int limit) override {
    TXCOORD_RETURN_IF_ERROR(CheckLimit(limit));
    auto reader = AcquireReader();
    if (!reader.ok()) return reader.status();
    ReaderLease lease(this, std::move(reader).value());
    std::vector<std::string> gtids;
    {
      auto stmt = lease->Get(kSelectUnfinished);
      if (!stmt.ok()) return stmt.status();
      (*stmt)->Bind(1, after).Bind(2, int64_t{limit});
      Status status;
      while ((*stmt)->Step(&status)) gtids.emplace_back((*stmt)->Text(0));
      if (!status.ok()) return status;
    }
    std::vector<LoggedTransaction> out;
    for (const auto& g : gtids) {
      TXCOORD_RETURN_IF_ERROR(Exec(lease->db(), "BEGIN"));
      auto tx = ReadIn(*lease, g);
      (void)Exec(lease->db(), "COMMIT");
      if (!tx.ok()) {
        if (tx.status().code() == StatusCode::kNotFound) continue;  // purged meanwhile
        return tx.status();
      }
      out.push_back(std::move(tx).value());
    }
    return out;
  }

  Result<SummaryPage> List(const ListQuery& q) override {
    TXCOORD_RETURN_IF_ERROR(CheckLimit(q.limit));
    auto reader = AcquireReader();
    if (!reader.ok()) return reader.status();
    ReaderLease lease(this, std::move(reader).value());
    TXCOORD_RETURN_IF_ERROR(Exec(lease->db(), "BEGIN"));
    auto page = ListIn(*lease, q);
    (void)Exec(lease->db(), "COMMIT");
    return page;
  }

  using TransactionLog::Purge;
  Result<int64_t> Purge(Timestamp finished_before, int64_t max_count) override {
    int64_t purged = 0;
    // Small chunks, each its own transaction, so appends are never held up for long.
    while (purged < max_count) {
      const int64_t want = std::min(kPurgeChunk, max_count - purged);
      std::lock_guard lock(write_mu_);
      sqlite3* db = writer_->db();
      TXCOORD_RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE"));
      auto chunk = PurgeChunk(finished_before, want);
      Status s = chunk.ok() ? Exec(db, "COMMIT") : chunk.status();
      if (!s.ok()) {
        if (!sqlite3_get_autocommit(db)) (void)Exec(db, "ROLLBACK");
        return s.WithContext("purge");
      }
      purged += *chunk;
      if (*chunk < want) break;
    }
    return purged;
  }

  Result<int64_t> CountPurgeable(Timestamp finished_before) override {
    auto reader = AcquireReader();
    if (!reader.ok()) return reader.status();
    ReaderLease lease(this, std::move(reader).value());
    auto count = lease->Get(kCountPurgeable);
    if (!count.ok()) return count.status().WithContext("count purgeable");
    (*count)->Bind(1, ToMillis(finished_before));
    Status status;
    if (!(*count)->Step(&status)) {
      return status.ok() ? Status::Internal("count purgeable: no row") : status;
    }
    return (*count)->Int(0);
  }

  Status Ping() override {
    auto reader = AcquireReader();
    if (!reader.ok()) return reader.status();
    ReaderLease lease(this, std::move(reader).value());
    auto v = PragmaValue(lease->db(), "user_version");
    return v.ok() ? Status::Ok() : v.status();
  }

  LogStats Stats() const override { return committer_.stats(); }

 private:
  static constexpr int64_t kPurgeChunk = 500;
  static constexpr size_t kMaxIdleReaders = 8;
  static constexpr size_t kMaxHotSummaries = 100'000;
  // Beyond this many WAL frames the writer checkpoints inline: the background checkpointer can
  // fall behind a writer that never pauses, and the WAL must not grow without bound.
  static constexpr int kInlineCheckpointFrames = 20 * Checkpointer::kBackgroundFrames;

  static int OnWalCommit(void* self, sqlite3* db, const char*, int frames) {
    if (frames >= kInlineCheckpointFrames) {
      sqlite3_wal_checkpoint_v2(db, "main", SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    } else if (frames >= Checkpointer::kBackgroundFrames) {
      static_cast<SqliteLog*>(self)->checkpointer_.Wake();
    }
    return SQLITE_OK;
  }

  class ReaderLease {
   public:
    ReaderLease(SqliteLog* log, std::unique_ptr<Connection> conn)
        : log_(log), conn_(std::move(conn)) {}
    ~ReaderLease() { log_->ReleaseReader(std::move(conn_)); }
    Connection* operator->() const { return conn_.get(); }
    Connection& operator*() const { return *conn_; }

   private:
    SqliteLog* log_;
    std::unique_ptr<Connection> conn_;
  };

  Result<std::unique_ptr<Connection>> AcquireReader() {
    {
      std::lock_guard lock(readers_mu_);
      if (!idle_readers_.empty()) {
        auto conn = std::move(idle_readers_.back());
        idle_readers_.pop_back();
        return conn;
      }
    }
    auto db = OpenHandle(config_);
    if (!db.ok()) return db.status();
    return std::make_unique<Connection>(std::move(db).value());
  }

  void ReleaseReader(std::unique_ptr<Connection> conn) {
    // A reader left inside a transaction by an error is rolled back before reuse.
    if (!sqlite3_get_autocommit(conn->db())) (void)Exec(conn->db(), "ROLLBACK");
    std::lock_guard lock(readers_mu_);
    if (idle_readers_.size() < kMaxIdleReaders) idle_readers_.push_back(std::move(conn));
  }

  static Result<LoggedTransaction> ReadIn(Connection& c, std::string_view gtid) {
    auto summary = ReadSummary(c, gtid);
    if (!summary.ok()) return summary.status();
    if (!summary->has_value()) {
      return Status::NotFound("transaction " + std::string(gtid) + " does not exist");
    }
    LoggedTransaction tx;
    tx.summary = std::move((*summary)->summary);
    auto stmt = c.Get(kSelectRecords);
    if (!stmt.ok()) return stmt.status();
    (*stmt)->Bind(1, (*summary)->id);
    Status status;
    while ((*stmt)->Step(&status)) {
      auto record = DecodeRecord(gtid, (*stmt)->Int(0), (*stmt)->Blob(1),
                                 static_cast<uint32_t>((*stmt)->Int(2)));
      if (!record.ok()) return record.status();
      tx.records.push_back(std::move(record).value());
    }
    if (!status.ok()) return status;
    if (tx.records.empty() || !tx.records.front().has_begin() ||
        static_cast<int64_t>(tx.records.size()) != tx.summary.record_count) {
      return Status::Corruption("transaction " + std::string(gtid) + " has " +
                                std::to_string(tx.records.size()) + " records, its summary " +
                                std::to_string(tx.summary.record_count));
    }
    return tx;
  }

  static Result<SummaryPage> ListIn(Connection& c, const ListQuery& q) {
    std::optional<int64_t> cursor_ms;
    if (!q.after.empty()) {
      auto at = c.Get(kSelectCreatedAt);
      if (!at.ok()) return at.status();
      (*at)->Bind(1, q.after);
      Status status;
      if ((*at)->Step(&status)) cursor_ms = (*at)->Int(0);
      TXCOORD_RETURN_IF_ERROR(status);
      if (!cursor_ms) {
        return Status::InvalidArgument("cursor `after` names transaction " + q.after +
                                       ", which does not exist (purged?); start from the top");
      }
    }
    auto stmt = c.Get(kSelectPage);
    if (!stmt.ok()) return stmt.status();
    std::optional<int64_t> before;
    if (q.created_before) before = ToMillis(*q.created_before);
    (*stmt)->Bind(1, q.state).Bind(2, before).Bind(3, cursor_ms).Bind(4, q.after);
    (*stmt)->Bind(5, int64_t{q.limit} + 1);
    SummaryPage page;
    Status status;
    while ((*stmt)->Step(&status)) page.transactions.push_back(SummaryFromRow(**stmt));
    if (!status.ok()) return status;
    if (static_cast<int>(page.transactions.size()) > q.limit) {
      page.transactions.pop_back();
      page.next = page.transactions.back().gtid;
    }
    return page;
  }

  // REQUIRES: write_mu_ held, inside a write transaction.
  Result<int64_t> PurgeChunk(Timestamp finished_before, int64_t limit) {
    std::vector<int64_t> ids;
    {
      auto select = writer_->Get(kSelectPurgeable);
      if (!select.ok()) return select.status();
      (*select)->Bind(1, ToMillis(finished_before)).Bind(2, limit);
      Status status;
      while ((*select)->Step(&status)) ids.push_back((*select)->Int(0));
      if (!status.ok()) return status;
    }
    for (const int64_t id : ids) {
      for (const char* sql : {kDeleteRecords, kDeleteSummary}) {
        auto del = writer_->Get(sql);
        if (!del.ok()) return del.status();
        TXCOORD_RETURN_IF_ERROR((*del)->Bind(1, id).Run());
      }
    }
    return static_cast<int64_t>(ids.size());
  }

  // Runs on the group-commit leader's thread; see GroupCommitter. If anything throws (an
  // allocation), the write transaction is rolled back and the in-memory summaries are dropped
  // before the exception reaches the committer, which fails the group.
  void CommitBatch(std::span<PendingAppend* const> batch) {
    std::lock_guard lock(write_mu_);
    try {
      CommitBatchLocked(batch);
    } catch (...) {
      sqlite3* db = writer_->db();
      if (!sqlite3_get_autocommit(db)) (void)Exec(db, "ROLLBACK");
      hot_.clear();
      throw;
    }
  }

  // REQUIRES: write_mu_ held.
  void CommitBatchLocked(std::span<PendingAppend* const> batch) {
    sqlite3* db = writer_->db();
    // A transaction left open by an earlier failure is not ours to continue.
    if (!sqlite3_get_autocommit(db)) (void)Exec(db, "ROLLBACK");
    auto fail_accepted = [&](const Status& s) {
      for (PendingAppend* p : batch) {
        if (p->status.ok()) p->status = s;
      }
    };
    for (PendingAppend* p : batch) p->status = Status::Ok();

    Status s = Exec(db, "BEGIN IMMEDIATE");
    if (!s.ok()) return fail_accepted(s.WithContext("append"));

    SummaryMap summaries;
    IdMap ids;  // of the transactions already stored
    for (const auto& gtid : BatchGtids(batch)) {
      if (auto hot = hot_.find(gtid); hot != hot_.end()) {
        summaries[gtid] = hot->second.summary;
        ids[gtid] = hot->second.id;
        continue;
      }
      auto stored = ReadSummary(*writer_, gtid);
      if (!stored.ok()) {
        (void)Exec(db, "ROLLBACK");
        return fail_accepted(stored.status().WithContext("append"));
      }
      if (stored->has_value()) {
        summaries[gtid] = std::move((*stored)->summary);
        ids[gtid] = (*stored)->id;
      } else {
        summaries[gtid] = std::nullopt;
      }
    }
    std::vector<EncodedRecord> encoded;
    const std::vector<std::string> changed = ApplyBatch(batch, &summaries, &encoded);
    if (encoded.empty()) {  // every append was refused
      (void)Exec(db, "ROLLBACK");
      return;
    }
    s = WriteBatch(encoded, changed, summaries, &ids);
    if (!s.ok()) {
      (void)Exec(db, "ROLLBACK");
      for (const auto& gtid : changed) hot_.erase(gtid);  // read them again next time
      return fail_accepted(s.WithContext("append"));
    }
    const int rc = sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) {
      Status commit = SqliteError(db, rc, "append: commit");
      // An I/O error during COMMIT may come after the WAL frames were written: the outcome
      // is unknown until the log is read back.
      if ((rc & 0xff) == SQLITE_IOERR) commit = Status::UnknownOutcome(commit.message());
      if (!sqlite3_get_autocommit(db)) (void)Exec(db, "ROLLBACK");
      hot_.clear();  // the store may or may not hold the group: read it again
      return fail_accepted(commit);
    }
    // A cache, not the truth: when many transactions stay unfinished (a participant down for
    // hours), start over rather than grow without bound; a miss costs one indexed read.
    if (hot_.size() > kMaxHotSummaries) hot_.clear();
    for (const auto& gtid : changed) {
      const TransactionSummary& t = *summaries.at(gtid);
      if (t.finished()) {
        hot_.erase(gtid);
      } else {
        hot_[gtid] = StoredSummary{t, ids.at(gtid)};
      }
    }
  }

  // REQUIRES: write_mu_ held, inside a write transaction. The summaries first: a new
  // transaction's records are keyed by the id its summary row gets (added to `ids`). New
  // transactions are inserted in the order of their first record, so ids follow creation within
  // a group too.
  Status WriteBatch(const std::vector<EncodedRecord>& encoded,
                    const std::vector<std::string>& changed, const SummaryMap& summaries,
                    IdMap* ids) {
    for (const auto& gtid : changed) {
      auto id = ids->find(gtid);
      if (id == ids->end()) continue;  // new: inserted below
      const TransactionSummary& t = *summaries.at(gtid);
      auto update = writer_->Get(t.finished_at ? kFinishSummary : kUpdateSummary);
      if (!update.ok()) return update.status();
      Stmt& u = **update;
      u.Bind(1, id->second).Bind(2, t.state).Bind(3, int64_t{t.decision});
      u.Bind(4, ToMillis(t.updated_at)).Bind(5, t.record_count);
      if (t.finished_at) u.Bind(6, ToMillis(*t.finished_at));
      TXCOORD_RETURN_IF_ERROR(u.Run());
    }
    for (const auto& e : encoded) {
      if (ids->contains(e.gtid)) continue;
      const TransactionSummary& t = *summaries.at(e.gtid);
      auto insert = writer_->Get(kInsertSummary);
      if (!insert.ok()) return insert.status();
      Stmt& i = **insert;
      i.Bind(1, t.gtid).Bind(2, t.protocol).Bind(3, t.state);
      i.Bind(4, int64_t{t.decision}).Bind(5, ToMillis(t.created_at));
      i.Bind(6, ToMillis(t.updated_at));
      i.Bind(7, OptMillis(t.deadline)).Bind(8, OptMillis(t.finished_at));
      i.Bind(9, t.record_count);
      TXCOORD_RETURN_IF_ERROR(i.Run());
      ids->emplace(e.gtid, sqlite3_last_insert_rowid(writer_->db()));
    }
    auto insert = writer_->Get(kInsertRecord);
    if (!insert.ok()) return insert.status();
    for (const auto& e : encoded) {
      (*insert)->Bind(1, ids->at(e.gtid)).Bind(2, e.seq).Bind(3, e.kind).BindBlob(4, e.body);
      (*insert)->Bind(5, int64_t{e.crc});
      TXCOORD_RETURN_IF_ERROR((*insert)->Run());
    }
    return Status::Ok();
  }

  StoreLock lock_;  // first member: released after every connection closed
  const SqliteLogConfig config_;
  std::mutex write_mu_;
  std::unique_ptr<Connection> writer_;  // GUARDED_BY(write_mu_)
  // Summaries of the unfinished transactions this writer committed. GUARDED_BY(write_mu_)
  std::unordered_map<std::string, StoredSummary> hot_;
  std::mutex readers_mu_;
  std::vector<std::unique_ptr<Connection>> idle_readers_;  // GUARDED_BY(readers_mu_)
  Checkpointer checkpointer_;
  GroupCommitter committer_;
};

}  // namespace

Status MigrateSqliteSchema(sqlite3* db, int target_version) {
  auto has_meta = PragmaValue(db, "table_info(txcoord_meta)");
  if (!has_meta.ok()) return has_meta.status();
  int version = 0;
  if (has_meta->empty()) {
    auto tables = PragmaValue(db, "schema_version");  // touches the file: catches damage early
    if (!tables.ok()) return tables.status();
    auto any = Prepare(db, "SELECT name FROM sqlite_schema WHERE type = 'table' LIMIT 1");
    if (!any.ok()) return any.status();
    Status status;
    if (any->Step(&status)) {
      return Status::InvalidArgument("sqlite file holds table \"" + std::string(any->Text(0)) +
                                     "\" but is not a txcoord store; use another --store");
    }
    TXCOORD_RETURN_IF_ERROR(status);
  } else {
    auto v = PragmaValue(db, "user_version");
    if (!v.ok()) return v.status();
    auto stmt = Prepare(db, "SELECT value FROM txcoord_meta WHERE key = 'schema_version'");
    if (!stmt.ok()) return stmt.status();
    Status status;
    if (stmt->Step(&status)) version = std::atoi(std::string(stmt->Text(0)).c_str());
    TXCOORD_RETURN_IF_ERROR(status);
  }
  if (version > kLogSchemaVersion) {
    return Status::Conflict("store schema version " + std::to_string(version) +
                            " is newer than this txcoord supports (" +
                            std::to_string(kLogSchemaVersion) + "); upgrade txcoord");
  }
  for (int v = version; v < target_version; ++v) {
    TXCOORD_RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE"));
    Status s = Exec(db,
                    "CREATE TABLE IF NOT EXISTS txcoord_meta (key TEXT PRIMARY KEY, "
                    "value TEXT NOT NULL)");
    if (s.ok()) s = Exec(db, kSqliteMigrations[v]);
    if (s.ok()) {
      const std::string bump = "INSERT INTO txcoord_meta (key, value) VALUES ('schema_version', '" +
                               std::to_string(v + 1) +
                               "') ON CONFLICT (key) DO UPDATE SET value = excluded.value";
      s = Exec(db, bump.c_str());
    }
    if (s.ok()) s = Exec(db, "COMMIT");
    if (!s.ok()) {
      (void)Exec(db, "ROLLBACK");
      return s.WithContext("migrate schema to version " + std::to_string(v + 1));
    }
  }
  // A migration that rebuilt tables left a WAL as big as the store; SQLite would keep the file
  // at that size while the log stays open. Best effort: the data is committed either way.
  if (version < target_version) {
    (void)sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr);
  }
  return Status::Ok();
}

Result<std::unique_ptr<TransactionLog>> OpenSqliteLog(const SqliteLogConfig& config) {
  const std::string where = "sqlite store " + config.path;
  std::error_code ec;
  const auto dir = std::filesystem::path(config.path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  if (ec)
    return Status::Unavailable("cannot create directory " + dir.string() + ": " + ec.message());

  // Before anything else opens the file; destroyed after the connections below (declared later).
  auto lock = StoreLock::Acquire(config.path);
  if (!lock.ok()) return lock.status();

  auto fail = [&](const Status& s) -> Status {
    if (s.code() == StatusCode::kCorruption) {
      return Status::Corruption(where + " is damaged (" + s.message() +
                                "); restore it from a backup or point --store at a new file");
    }
    return s.WithContext("open " + where);
  };

  if (Status s = CheckFileHeader(config.path); !s.ok()) return s;
  auto db = OpenHandle(config);
  if (!db.ok()) return fail(db.status());

  auto mode = PragmaValue(db->get(), "journal_mode=WAL");
  if (!mode.ok()) return fail(mode.status());
  if (*mode != "wal") return fail(Status::Unavailable("cannot switch to WAL (got " + *mode + ")"));
  if (config.check_on_open) {
    auto check = PragmaValue(db->get(), "quick_check");
    if (!check.ok()) return fail(check.status());
    if (*check != "ok") {
      std::string one_line = *check;  // SQLite's report spans lines; an error is one line
      std::replace(one_line.begin(), one_line.end(), '\n', ' ');
      return fail(Status::Corruption("quick_check: " + one_line));
    }
  }
  if (Status s = MigrateSqliteSchema(db->get(), kLogSchemaVersion); !s.ok()) return fail(s);
  // FULL: the WAL is fsync'd at every commit. Read back: a build or VFS that ignores it must not
  // pass for durable.
  if (Status s = Exec(db->get(), "PRAGMA synchronous=FULL"); !s.ok()) return fail(s);
  auto sync = PragmaValue(db->get(), "synchronous");
  if (!sync.ok()) return fail(sync.status());
  if (*sync != "2") return fail(Status::Unavailable("SQLite refused synchronous=FULL"));

  auto checkpoint_db = OpenHandle(config);
  if (!checkpoint_db.ok()) return fail(checkpoint_db.status());
  return std::unique_ptr<TransactionLog>(std::make_unique<SqliteLog>(
      config, std::move(lock).value(), std::make_unique<Connection>(std::move(db).value()),
      std::make_unique<Connection>(std::move(checkpoint_db).value())));
}

}  // namespace txcoord::coordinator::internal
