// The SQLite backend of the transaction log: the embedded default.
//
// Durability: WAL journal with synchronous=FULL, so every COMMIT fsyncs the WAL before it
// returns; both pragmas are read back at open and the open fails if SQLite did not take them.
// Group commit: appends share one write transaction (GroupCommitter), hence one fsync.
// Concurrency: one writer connection, used only under write_mu_ (by the group-commit leader or
// by Purge); a small pool of reader connections, each read in its own snapshot (WAL readers
// never block the writer). One process per store: an exclusive flock on PATH.lock.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "log_internal.h"
#include "sqlite_util.h"

namespace txcoord::coordinator::internal {
namespace {

// Schema migrations, applied in order; entry i moves the store from version i to i + 1.
// Never edit a released entry: add a new one and bump kLogSchemaVersion.
constexpr const char* kSqliteMigrations[] = {
    // 0 -> 1: records and per-transaction summaries.
    R"sql(
    CREATE TABLE txcoord_tx (
      gtid           TEXT    PRIMARY KEY,
      protocol       TEXT    NOT NULL,
      state          TEXT    NOT NULL,
      decision       INTEGER NOT NULL DEFAULT 0,
      created_at_ms  INTEGER NOT NULL,
      updated_at_ms  INTEGER NOT NULL,
      deadline_ms    INTEGER,
      finished_at_ms INTEGER
    );
    CREATE TABLE txcoord_tx_record (
      id    INTEGER PRIMARY KEY AUTOINCREMENT,
      gtid  TEXT    NOT NULL,
      kind  TEXT    NOT NULL,
      body  BLOB    NOT NULL,
      crc   INTEGER NOT NULL
    );
    CREATE INDEX txcoord_tx_record_by_gtid ON txcoord_tx_record (gtid, id);
    )sql",
    // 1 -> 2: indexes for recovery scans, operator listing and purge.
    R"sql(
    CREATE INDEX txcoord_tx_unfinished ON txcoord_tx (gtid) WHERE finished_at_ms IS NULL;
    CREATE INDEX txcoord_tx_by_created ON txcoord_tx (created_at_ms, gtid);
    CREATE INDEX txcoord_tx_by_finished ON txcoord_tx (finished_at_ms)
      WHERE finished_at_ms IS NOT NULL;
    )sql",
};
static_assert(std::size(kSqliteMigrations) == kLogSchemaVersion);

constexpr const char* kSummaryColumns =
    "gtid, protocol, state, decision, created_at_ms, updated_at_ms, deadline_ms, finished_at_ms";

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
  return t;
}

// Owns a sqlite3 handle.
struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;

Result<DbPtr> OpenConnection(const SqliteLogConfig& config) {
  sqlite3* raw = nullptr;
  const int rc =
      sqlite3_open_v2(config.path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      config.vfs.empty() ? nullptr : config.vfs.c_str());
  DbPtr db(raw);
  if (rc != SQLITE_OK) return SqliteError(raw, rc, "open sqlite store " + config.path);
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, 10'000);
  return db;
}

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

class SqliteLog final : public TransactionLog {
 public:
  SqliteLog(SqliteLogConfig config, DbPtr writer, int lock_fd)
      : config_(std::move(config)),
        writer_(std::move(writer)),
        lock_fd_(lock_fd),
        committer_(config_.max_batch, [this](auto batch) { CommitBatch(batch); }) {}

  ~SqliteLog() override {
    for (sqlite3* r : idle_readers_) sqlite3_close_v2(r);
    writer_.reset();
    if (lock_fd_ >= 0) close(lock_fd_);  // releases the flock
  }

  Status Append(std::vector<v1::LogRecord> records) override {
    return committer_.Submit(std::move(records));
  }

  Result<LoggedTransaction> Read(std::string_view gtid) override {
    auto reader = AcquireReader();
    if (!reader.ok()) return reader.status();
    ReaderLease lease(this, *reader);
    TXCOORD_RETURN_IF_ERROR(Exec(lease.db, "BEGIN"));
    auto result = ReadIn(lease.db, gtid);
    (void)Exec(lease.db, "COMMIT");
    return result;
  }

  Result<std::vector<LoggedTransaction>> ScanUnfinished(std::string_view after,
                                                        int limit) override {
    TXCOORD_RETURN_IF_ERROR(CheckLimit(limit));
    std::vector<std::string> gtids;
    {
      auto reader = AcquireReader();
      if (!reader.ok()) return reader.status();
      ReaderLease lease(this, *reader);
      auto stmt = Prepare(lease.db,
                          "SELECT gtid FROM txcoord_tx WHERE finished_at_ms IS NULL AND gtid > ?1 "
                          "ORDER BY gtid LIMIT ?2");
      if (!stmt.ok()) return stmt.status();
      stmt->Bind(1, after).Bind(2, int64_t{limit});
      Status status;
      while (stmt->Step(&status)) gtids.emplace_back(stmt->Text(0));
      if (!status.ok()) return status;
    }
    std::vector<LoggedTransaction> out;
    for (const auto& g : gtids) {
      auto tx = Read(g);
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
    ReaderLease lease(this, *reader);
    TXCOORD_RETURN_IF_ERROR(Exec(lease.db, "BEGIN"));
    auto page = ListIn(lease.db, q);
    (void)Exec(lease.db, "COMMIT");
    return page;
  }

  Result<int64_t> Purge(Timestamp finished_before) override {
    int64_t purged = 0;
    // Small chunks, each its own transaction, so appends are never held up for long.
    for (;;) {
      std::lock_guard lock(write_mu_);
      TXCOORD_RETURN_IF_ERROR(Exec(writer_.get(), "BEGIN IMMEDIATE"));
      auto chunk = PurgeChunk(finished_before);
      if (!chunk.ok()) {
        (void)Exec(writer_.get(), "ROLLBACK");
        return chunk.status();
      }
      Status commit = Exec(writer_.get(), "COMMIT");
      if (!commit.ok()) {
        (void)Exec(writer_.get(), "ROLLBACK");
        return commit;
      }
      purged += *chunk;
      if (*chunk < kPurgeChunk) return purged;
    }
  }

  Status Ping() override {
    auto reader = AcquireReader();
    if (!reader.ok()) return reader.status();
    ReaderLease lease(this, *reader);
    auto v = PragmaValue(lease.db, "user_version");
    return v.ok() ? Status::Ok() : v.status();
  }

  LogStats Stats() const override { return committer_.stats(); }

 private:
  static constexpr int64_t kPurgeChunk = 500;
  static constexpr size_t kMaxIdleReaders = 8;

  struct ReaderLease {
    ReaderLease(SqliteLog* log, sqlite3* db) : log(log), db(db) {}
    ~ReaderLease() { log->ReleaseReader(db); }
    SqliteLog* log;
    sqlite3* db;
  };

  Result<sqlite3*> AcquireReader() {
    {
      std::lock_guard lock(readers_mu_);
      if (!idle_readers_.empty()) {
        sqlite3* db = idle_readers_.back();
        idle_readers_.pop_back();
        return db;
      }
    }
    auto db = OpenConnection(config_);
    if (!db.ok()) return db.status();
    return db->release();
  }

  void ReleaseReader(sqlite3* db) {
    // A reader left inside a transaction by an error is rolled back before reuse.
    if (!sqlite3_get_autocommit(db)) (void)Exec(db, "ROLLBACK");
    std::lock_guard lock(readers_mu_);
    if (idle_readers_.size() < kMaxIdleReaders) {
      idle_readers_.push_back(db);
    } else {
      sqlite3_close_v2(db);
    }
  }

  static Result<std::optional<TransactionSummary>> ReadSummary(sqlite3* db,
                                                               std::string_view gtid) {
    auto stmt = Prepare(db, std::string("SELECT ") + kSummaryColumns +
                                " FROM txcoord_tx WHERE gtid = ?1");
    if (!stmt.ok()) return stmt.status();
    stmt->Bind(1, gtid);
    Status status;
    std::optional<TransactionSummary> out;
    if (stmt->Step(&status)) out = SummaryFromRow(*stmt);
    if (!status.ok()) return status;
    return out;
  }

  static Result<LoggedTransaction> ReadIn(sqlite3* db, std::string_view gtid) {
    auto summary = ReadSummary(db, gtid);
    if (!summary.ok()) return summary.status();
    if (!summary->has_value()) {
      return Status::NotFound("transaction " + std::string(gtid) + " does not exist");
    }
    LoggedTransaction tx;
    tx.summary = std::move(**summary);
    auto stmt = Prepare(db, "SELECT id, body, crc FROM txcoord_tx_record WHERE gtid = ?1 "
                            "ORDER BY id");
    if (!stmt.ok()) return stmt.status();
    stmt->Bind(1, gtid);
    Status status;
    while (stmt->Step(&status)) {
      auto record = DecodeRecord(gtid, stmt->Int(0), stmt->Blob(1),
                                 static_cast<uint32_t>(stmt->Int(2)));
      if (!record.ok()) return record.status();
      tx.records.push_back(std::move(record).value());
    }
    if (!status.ok()) return status;
    if (tx.records.empty() || !tx.records.front().has_begin()) {
      return Status::Corruption("transaction " + std::string(gtid) +
                                " has a summary but no begin record");
    }
    return tx;
  }

  static Result<SummaryPage> ListIn(sqlite3* db, const ListQuery& q) {
    std::optional<int64_t> cursor_ms;
    if (!q.after.empty()) {
      auto at = ReadSummary(db, q.after);
      if (!at.ok()) return at.status();
      if (!at->has_value()) {
        return Status::InvalidArgument("cursor `after` names transaction " + q.after +
                                       ", which does not exist (purged?); start from the top");
      }
      cursor_ms = ToMillis((*at)->created_at);
    }
    auto stmt = Prepare(
        db, std::string("SELECT ") + kSummaryColumns +
                " FROM txcoord_tx WHERE (?1 = '' OR state = ?1)"
                " AND (?2 IS NULL OR created_at_ms < ?2)"
                " AND (?3 IS NULL OR created_at_ms < ?3 OR (created_at_ms = ?3 AND gtid < ?4))"
                " ORDER BY created_at_ms DESC, gtid DESC LIMIT ?5");
    if (!stmt.ok()) return stmt.status();
    std::optional<int64_t> before;
    if (q.created_before) before = ToMillis(*q.created_before);
    stmt->Bind(1, q.state).Bind(2, before).Bind(3, cursor_ms).Bind(4, q.after);
    stmt->Bind(5, int64_t{q.limit} + 1);
    SummaryPage page;
    Status status;
    while (stmt->Step(&status)) page.transactions.push_back(SummaryFromRow(*stmt));
    if (!status.ok()) return status;
    if (static_cast<int>(page.transactions.size()) > q.limit) {
      page.transactions.pop_back();
      page.next = page.transactions.back().gtid;
    }
    return page;
  }

  // REQUIRES: write_mu_ held, inside a write transaction.
  Result<int64_t> PurgeChunk(Timestamp finished_before) {
    auto select = Prepare(writer_.get(),
                          "SELECT gtid FROM txcoord_tx WHERE finished_at_ms IS NOT NULL AND "
                          "finished_at_ms < ?1 LIMIT ?2");
    if (!select.ok()) return select.status();
    select->Bind(1, ToMillis(finished_before)).Bind(2, kPurgeChunk);
    std::vector<std::string> gtids;
    Status status;
    while (select->Step(&status)) gtids.emplace_back(select->Text(0));
    if (!status.ok()) return status;
    auto del_records = Prepare(writer_.get(), "DELETE FROM txcoord_tx_record WHERE gtid = ?1");
    auto del_tx = Prepare(writer_.get(), "DELETE FROM txcoord_tx WHERE gtid = ?1");
    if (!del_records.ok()) return del_records.status();
    if (!del_tx.ok()) return del_tx.status();
    for (const auto& g : gtids) {
      TXCOORD_RETURN_IF_ERROR(del_records->Bind(1, g).Run());
      TXCOORD_RETURN_IF_ERROR(del_tx->Bind(1, g).Run());
    }
    return static_cast<int64_t>(gtids.size());
  }

  // Runs on the group-commit leader's thread; see GroupCommitter.
  void CommitBatch(std::span<PendingAppend* const> batch) {
    std::lock_guard lock(write_mu_);
    sqlite3* db = writer_.get();
    auto fail_accepted = [&](const Status& s) {
      for (PendingAppend* p : batch) {
        if (p->status.ok()) p->status = s;
      }
    };
    for (PendingAppend* p : batch) p->status = Status::Ok();

    Status s = Exec(db, "BEGIN IMMEDIATE");
    if (!s.ok()) return fail_accepted(s.WithContext("append"));

    SummaryMap summaries;
    for (const auto& gtid : BatchGtids(batch)) {
      auto summary = ReadSummary(db, gtid);
      if (!summary.ok()) {
        (void)Exec(db, "ROLLBACK");
        return fail_accepted(summary.status().WithContext("append"));
      }
      summaries[gtid] = std::move(summary).value();
    }
    std::vector<EncodedRecord> encoded;
    const std::vector<std::string> changed = ApplyBatch(batch, &summaries, &encoded);
    s = WriteBatch(db, encoded, changed, summaries);
    if (!s.ok()) {
      (void)Exec(db, "ROLLBACK");
      return fail_accepted(s.WithContext("append"));
    }
    const int rc = sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) {
      Status commit = SqliteError(db, rc, "append: commit");
      // An I/O error during COMMIT may come after the WAL frames were written: the outcome
      // is unknown until the log is read back.
      if ((rc & 0xff) == SQLITE_IOERR) commit = Status::UnknownOutcome(commit.message());
      if (!sqlite3_get_autocommit(db)) (void)Exec(db, "ROLLBACK");
      fail_accepted(commit);
    }
  }

  static Status WriteBatch(sqlite3* db, const std::vector<EncodedRecord>& encoded,
                           const std::vector<std::string>& changed, const SummaryMap& summaries) {
    auto insert = Prepare(db, "INSERT INTO txcoord_tx_record (gtid, kind, body, crc) "
                              "VALUES (?1, ?2, ?3, ?4)");
    if (!insert.ok()) return insert.status();
    for (const auto& e : encoded) {
      insert->Bind(1, e.gtid).Bind(2, e.kind).BindBlob(3, e.body).Bind(4, int64_t{e.crc});
      TXCOORD_RETURN_IF_ERROR(insert->Run());
    }
    auto upsert = Prepare(
        db, std::string("INSERT INTO txcoord_tx (") + kSummaryColumns +
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (gtid) DO UPDATE SET "
                "state = excluded.state, decision = excluded.decision, "
                "updated_at_ms = excluded.updated_at_ms, finished_at_ms = excluded.finished_at_ms");
    if (!upsert.ok()) return upsert.status();
    for (const auto& gtid : changed) {
      const TransactionSummary& t = *summaries.at(gtid);
      upsert->Bind(1, t.gtid).Bind(2, t.protocol).Bind(3, t.state);
      upsert->Bind(4, int64_t{t.decision}).Bind(5, ToMillis(t.created_at));
      upsert->Bind(6, ToMillis(t.updated_at));
      upsert->Bind(7, t.deadline ? std::optional<int64_t>(ToMillis(*t.deadline)) : std::nullopt);
      upsert->Bind(8, t.finished_at ? std::optional<int64_t>(ToMillis(*t.finished_at))
                                    : std::nullopt);
      TXCOORD_RETURN_IF_ERROR(upsert->Run());
    }
    return Status::Ok();
  }

  const SqliteLogConfig config_;
  std::mutex write_mu_;
  DbPtr writer_;  // GUARDED_BY(write_mu_)
  int lock_fd_;
  std::mutex readers_mu_;
  std::vector<sqlite3*> idle_readers_;  // GUARDED_BY(readers_mu_)
  GroupCommitter committer_;
};

Result<int> LockStore(const std::string& path) {
  const std::string lock_path = path + ".lock";
  const int fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Status::Unavailable("cannot open lock file " + lock_path + ": " + strerror(errno));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    close(fd);
    return Status::Unavailable("sqlite store " + path +
                               " is in use by another process (lock " + lock_path +
                               "); stop it first or use another --store");
  }
  return fd;
}

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
    Status s = Exec(db, "CREATE TABLE IF NOT EXISTS txcoord_meta (key TEXT PRIMARY KEY, "
                        "value TEXT NOT NULL)");
    if (s.ok()) s = Exec(db, kSqliteMigrations[v]);
    if (s.ok()) {
      const std::string bump =
          "INSERT INTO txcoord_meta (key, value) VALUES ('schema_version', '" +
          std::to_string(v + 1) + "') ON CONFLICT (key) DO UPDATE SET value = excluded.value";
      s = Exec(db, bump.c_str());
    }
    if (s.ok()) s = Exec(db, "COMMIT");
    if (!s.ok()) {
      (void)Exec(db, "ROLLBACK");
      return s.WithContext("migrate schema to version " + std::to_string(v + 1));
    }
  }
  return Status::Ok();
}

Result<std::unique_ptr<TransactionLog>> OpenSqliteLog(const SqliteLogConfig& config) {
  const std::string where = "sqlite store " + config.path;
  std::error_code ec;
  const auto dir = std::filesystem::path(config.path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  if (ec) return Status::Unavailable("cannot create directory " + dir.string() + ": " + ec.message());

  auto lock_fd = LockStore(config.path);
  if (!lock_fd.ok()) return lock_fd.status();
  auto unlock = [fd = *lock_fd] { close(fd); };

  auto fail = [&](const Status& s) -> Status {
    unlock();
    if (s.code() == StatusCode::kCorruption) {
      return Status::Corruption(where + " is damaged (" + s.message() +
                                "); restore it from a backup or point --store at a new file");
    }
    return s.WithContext("open " + where);
  };

  if (Status s = CheckFileHeader(config.path); !s.ok()) {
    unlock();
    return s;
  }
  auto db = OpenConnection(config);
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

  return std::unique_ptr<TransactionLog>(
      std::make_unique<SqliteLog>(config, std::move(db).value(), *lock_fd));
}

}  // namespace txcoord::coordinator::internal
