// Outbox status and replay (admin.h) for SQLite and PostgreSQL outboxes. Dead letters are in
// deadletters.cc.
#include "txcoord/outbox/admin.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <pqxx/pqxx>
#include <variant>

#include "txcoord/outbox/outbox.h"
#include "txcoord/outbox/source.h"

namespace txcoord::outbox {
namespace {

// Rows made unpublished per UPDATE statement: the progress callback's granularity.
constexpr int64_t kReplayBatch = 10'000;

// Orders replays of one PostgreSQL database: each takes its replay-log id only after the replay
// before it committed, so the relay never sees a later id before an earlier replay's rows.
constexpr int64_t kReplayLockKey = 0x747872706c79;  // "txrply"

// The relay's leadership lock (postgres_source.cc), a bigint advisory lock, as pg_locks shows it:
// classid = high 32 bits, objid = low 32 bits, objsubid = 1.
constexpr int64_t kRelayLockKey = 0x7478726c6179;  // "txrlay"

constexpr int kBusyTimeoutMs = 10'000;

// ---- SQLite -----------------------------------------------------------------------------------

class Statement {
 public:
  Statement(sqlite3* db, const char* sql) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  bool prepared() const { return rc_ == SQLITE_OK; }
  Statement& Bind(int index, int64_t value) {
    sqlite3_bind_int64(stmt_, index, value);
    return *this;
  }
  Statement& Bind(int index, const std::string& value) {
    sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()),
                      SQLITE_TRANSIENT);
    return *this;
  }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return prepared() ? sqlite3_step(stmt_) : rc_; }
  bool IsNull(int column) { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }
  int64_t Int(int column) { return sqlite3_column_int64(stmt_, column); }
  double Double(int column) { return sqlite3_column_double(stmt_, column); }
  std::string Text(int column) {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
    return text == nullptr ? std::string() : std::string(text);
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

// One connection to a service's SQLite outbox; never creates the file.
class SqliteOutboxDb {
 public:
  explicit SqliteOutboxDb(std::string path) : path_(std::move(path)) {}
  ~SqliteOutboxDb() {
    if (db_ != nullptr) sqlite3_close(db_);
  }

  Status Open() {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path_, ec)) {
      return Status::InvalidArgument("sqlite outbox " + path_ + " is not an existing database file");
    }
    const int rc = sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr);
    if (rc != SQLITE_OK) return Error("open");
    sqlite3_busy_timeout(db_, kBusyTimeoutMs);
    TXCOORD_RETURN_IF_ERROR(Exec("PRAGMA synchronous=FULL"));  // a replay's COMMIT is synced
    auto has_outbox = HasTable("txcoord_outbox");
    if (!has_outbox.ok()) return has_outbox.status();
    if (!*has_outbox) {
      return Status::InvalidArgument("sqlite outbox " + path_ +
                                     " has no txcoord_outbox table: is it the service's database?");
    }
    return Status::Ok();
  }

  sqlite3* db() { return db_; }
  const std::string& path() const { return path_; }

  Status Error(std::string_view what) const {
    return Status::Unavailable("sqlite outbox " + path_ + ": " + std::string(what) + ": " +
                               (db_ != nullptr ? sqlite3_errmsg(db_) : "cannot open"));
  }

  Status Exec(const char* sql) {
    if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return Error(sql);
    return Status::Ok();
  }

  Result<bool> HasTable(const std::string& name) {
    Statement s(db_, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1");
    s.Bind(1, name);
    if (s.Step() != SQLITE_ROW) return Error("read the schema");
    return s.Int(0) > 0;
  }

  // The one integer `sql` yields (NULL as `if_null`).
  Result<int64_t> QueryInt(const char* sql, std::optional<int64_t> bind1 = std::nullopt,
                           int64_t if_null = 0) {
    Statement s(db_, sql);
    if (bind1) s.Bind(1, *bind1);
    if (s.Step() != SQLITE_ROW) return Error("query");
    return s.IsNull(0) ? if_null : s.Int(0);
  }

 private:
  const std::string path_;
  sqlite3* db_ = nullptr;
};

// Whether a relay holds `<path>.txrelay-lock` (sqlite_source.cc). A shared lock taken and dropped
// at once: a relay trying to take over in that instant tries again a second later.
std::optional<bool> SqliteRelayLeading(const std::string& path) {
  const std::string lock_path = path + ".txrelay-lock";
  const int fd = open(lock_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? std::optional<bool>(false) : std::nullopt;
  std::optional<bool> leading;
  if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
    flock(fd, LOCK_UN);
    leading = false;
  } else if (errno == EWOULDBLOCK) {
    leading = true;
  }
  close(fd);
  return leading;
}

// A time column as RFC 3339 UTC, whatever form of SQLite time the writer used.
std::string SqliteTime(const std::string& column) {
  return "coalesce(strftime('%Y-%m-%dT%H:%M:%fZ', " + column + "), " + column + ")";
}

Result<OutboxStatus> SqliteStatus(const SqliteSourceConfig& config, std::string name) {
  SqliteOutboxDb db(config.path);
  TXCOORD_RETURN_IF_ERROR(db.Open());
  OutboxStatus status;
  status.source = std::move(name);
  // One read transaction: every number from one snapshot.
  TXCOORD_RETURN_IF_ERROR(db.Exec("BEGIN"));
  const auto read = [&]() -> Status {
    {
      Statement s(db.db(),
                  "SELECT count(*), (SELECT count(*) FROM txcoord_outbox WHERE published_at IS "
                  "NULL) FROM txcoord_outbox");
      if (s.Step() != SQLITE_ROW) return db.Error("count rows");
      status.total_rows = s.Int(0);
      status.pending_rows = s.Int(1);
    }
    {
      const std::string sql = "SELECT id, " + SqliteTime("created_at") +
                              ", (julianday('now') - julianday(created_at)) * 86400.0 FROM "
                              "txcoord_outbox WHERE published_at IS NULL ORDER BY id LIMIT 1";
      Statement s(db.db(), sql.c_str());
      const int rc = s.Step();
      if (rc == SQLITE_ROW) {
        status.oldest_pending_id = s.Int(0);
        status.oldest_pending_created_at = s.Text(1);
        status.lag_s = s.IsNull(2) ? 0 : std::max(0.0, s.Double(2));
      } else if (rc != SQLITE_DONE) {
        return db.Error("read the oldest pending row");
      }
    }
    {
      const std::string sql = "SELECT id, " + SqliteTime("published_at") +
                              " FROM txcoord_outbox WHERE published_at IS NOT NULL ORDER BY id "
                              "DESC LIMIT 1";
      Statement s(db.db(), sql.c_str());
      const int rc = s.Step();
      if (rc == SQLITE_ROW) {
        status.last_published_id = s.Int(0);
        status.last_published_at = s.Text(1);
      } else if (rc != SQLITE_DONE) {
        return db.Error("read the last published row");
      }
    }
    auto has_log = db.HasTable("txcoord_outbox_replays");
    if (!has_log.ok()) return has_log.status();
    if (*has_log) {
      const std::string sql =
          "SELECT count(*), max(" + SqliteTime("requested_at") + ") FROM txcoord_outbox_replays";
      Statement s(db.db(), sql.c_str());
      if (s.Step() != SQLITE_ROW) return db.Error("read the replay log");
      status.replays = s.Int(0);
      status.last_replay_at = s.Text(1);
    }
    return Status::Ok();
  };
  const Status s = read();
  (void)db.Exec("COMMIT");
  TXCOORD_RETURN_IF_ERROR(s);
  status.relay_leading = SqliteRelayLeading(config.path);
  return status;
}

Result<ReplayResult> SqliteReplay(const SqliteSourceConfig& config, const ReplayRequest& request,
                                  const std::optional<std::string>& from_time) {
  SqliteOutboxDb db(config.path);
  TXCOORD_RETURN_IF_ERROR(db.Open());
  // IMMEDIATE: the write lock from the start, so the range cannot grow while it is replayed.
  TXCOORD_RETURN_IF_ERROR(db.Exec(request.dry_run ? "BEGIN" : "BEGIN IMMEDIATE"));
  ReplayResult result;
  const auto run = [&]() -> Status {
    if (!request.dry_run) {
      // The replay log, on an outbox no relay of this version has connected to yet.
      TXCOORD_RETURN_IF_ERROR(EnsureSchema(db.db()));
    }
    auto first = db.QueryInt("SELECT min(id) FROM txcoord_outbox");
    auto last = db.QueryInt("SELECT max(id) FROM txcoord_outbox");
    if (!first.ok()) return first.status();
    if (!last.ok()) return last.status();
    result.first_row_id = *first;
    result.to_id = *last;
    Result<int64_t> from = Status::Internal("unset");
    if (from_time) {
      Statement s(db.db(),
                  "SELECT min(id) FROM txcoord_outbox WHERE julianday(created_at) >= julianday(?1)");
      s.Bind(1, *from_time);
      if (s.Step() != SQLITE_ROW) return db.Error("find the first row created at " + *from_time);
      from = s.IsNull(0) ? 0 : s.Int(0);
    } else {
      from = db.QueryInt("SELECT min(id) FROM txcoord_outbox WHERE id >= ?1", *request.from_id);
    }
    if (!from.ok()) return from.status();
    result.from_id = *from;
    if (result.from_id == 0) return Status::Ok();  // nothing at or after the start
    {
      Statement s(db.db(),
                  "SELECT count(*) FILTER (WHERE published_at IS NULL), count(*) FILTER (WHERE "
                  "published_at IS NOT NULL) FROM txcoord_outbox WHERE id >= ?1");
      s.Bind(1, result.from_id);
      if (s.Step() != SQLITE_ROW) return db.Error("count the rows to replay");
      result.rows_pending = s.Int(0);
      result.rows_replayed = s.Int(1);
    }
    if (request.dry_run || result.rows_replayed == 0) return Status::Ok();
    const int64_t total = result.rows_replayed;
    int64_t done = 0;
    for (int64_t low = result.from_id; low <= result.to_id; low += kReplayBatch) {
      Statement s(db.db(),
                  "UPDATE txcoord_outbox SET published_at = NULL WHERE id >= ?1 AND id < ?2 AND "
                  "published_at IS NOT NULL");
      s.Bind(1, low).Bind(2, low + kReplayBatch);
      if (s.Step() != SQLITE_DONE) return db.Error("clear published_at");
      done += sqlite3_changes64(db.db());
      if (request.progress) request.progress(done, total);
    }
    if (done != total) {
      return Status::Internal("sqlite outbox " + config.path + ": cleared " +
                              std::to_string(done) + " rows of " + std::to_string(total) +
                              " counted under the same write lock");
    }
    Statement log(db.db(),
                  "INSERT INTO txcoord_outbox_replays (from_id, to_id, rows_replayed, "
                  "requested_by) VALUES (?1, ?2, ?3, ?4)");
    log.Bind(1, result.from_id).Bind(2, result.to_id).Bind(3, total).Bind(4, request.requested_by);
    if (log.Step() != SQLITE_DONE) return db.Error("record the replay");
    result.replay_id = sqlite3_last_insert_rowid(db.db());
    return Status::Ok();
  };
  if (Status s = run(); !s.ok()) {
    (void)db.Exec("ROLLBACK");
    return s;
  }
  if (request.dry_run || result.replay_id == 0) {
    (void)db.Exec("ROLLBACK");
    return result;
  }
  if (sqlite3_exec(db.db(), "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    // A failed COMMIT leaves SQLite's transaction open (busy) or rolls it back (I/O errors):
    // either way roll back, and nothing was replayed.
    Status s = db.Error("COMMIT");
    (void)db.Exec("ROLLBACK");
    return s;
  }
  return result;
}

// ---- PostgreSQL -------------------------------------------------------------------------------

// The operator's URI, with a connect timeout and a name that shows in pg_stat_activity.
std::string AdminConnInfo(const std::string& conninfo) {
  const bool uri = conninfo.starts_with("postgresql://") || conninfo.starts_with("postgres://");
  const char* kSettings[][2] = {{"application_name", "txctl"}, {"connect_timeout", "5"}};
  std::string out = conninfo;
  for (const auto& [key, value] : kSettings) {
    if (conninfo.find(std::string(key) + "=") != std::string::npos) continue;
    out += uri ? (out.find('?') == std::string::npos ? "?" : "&") : " ";
    out += std::string(key) + "=" + value;
  }
  return out;
}

std::string OneLine(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

constexpr const char* kPgTime = "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'";

std::string PgTime(const std::string& column) {
  return "to_char(" + column + " AT TIME ZONE 'UTC', " + kPgTime + ")";
}

Status PgNoOutbox(const std::string& name) {
  return Status::InvalidArgument("postgresql outbox " + name +
                                 " has no txcoord_outbox table: is it the service's database?");
}

Result<OutboxStatus> PostgresStatus(const PostgresSourceConfig& config, std::string name) {
  try {
    pqxx::connection c(AdminConnInfo(config.conninfo));
    pqxx::read_transaction t(c);
    t.exec("SET LOCAL statement_timeout = '60s'");
    if (t.exec1("SELECT to_regclass('txcoord_outbox') IS NULL")[0].as<bool>()) {
      return PgNoOutbox(name);
    }
    OutboxStatus status;
    status.source = std::move(name);
    const pqxx::row counts = t.exec1(
        "SELECT count(*), count(*) FILTER (WHERE published_at IS NULL) FROM txcoord_outbox");
    status.total_rows = counts[0].as<int64_t>();
    status.pending_rows = counts[1].as<int64_t>();
    const pqxx::result oldest =
        t.exec("SELECT id, " + PgTime("created_at") +
               ", greatest(extract(epoch FROM now() - created_at), 0)::float8 FROM "
               "txcoord_outbox WHERE published_at IS NULL ORDER BY id LIMIT 1");
    if (!oldest.empty()) {
      status.oldest_pending_id = oldest[0][0].as<int64_t>();
      status.oldest_pending_created_at = oldest[0][1].as<std::string>();
      status.lag_s = oldest[0][2].as<double>();
    }
    const pqxx::result last = t.exec("SELECT id, " + PgTime("published_at") +
                                     " FROM txcoord_outbox WHERE published_at IS NOT NULL ORDER "
                                     "BY id DESC LIMIT 1");
    if (!last.empty()) {
      status.last_published_id = last[0][0].as<int64_t>();
      status.last_published_at = last[0][1].as<std::string>();
    }
    if (t.exec1("SELECT to_regclass('txcoord_outbox_replays') IS NOT NULL")[0].as<bool>()) {
      const pqxx::row log = t.exec1("SELECT count(*), coalesce(" + PgTime("max(requested_at)") +
                                    ", '') FROM txcoord_outbox_replays");
      status.replays = log[0].as<int64_t>();
      status.last_replay_at = log[1].as<std::string>();
    }
    status.relay_leading =
        t.exec_params1(
             "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
             "database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND "
             "classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1)",
             kRelayLockKey >> 32, kRelayLockKey & 0xffffffff)[0]
            .as<bool>();
    return status;
  } catch (const std::exception& e) {
    return Status::Unavailable("postgresql outbox " + name + ": " + OneLine(e.what()));
  }
}

Result<ReplayResult> PostgresReplay(const PostgresSourceConfig& config, const std::string& name,
                                    const ReplayRequest& request,
                                    const std::optional<std::string>& from_time) {
  std::unique_ptr<pqxx::connection> c;
  try {
    c = std::make_unique<pqxx::connection>(AdminConnInfo(config.conninfo));
  } catch (const std::exception& e) {
    return Status::Unavailable("postgresql outbox " + name + ": " + OneLine(e.what()));
  }
  ReplayResult result;
  try {
    pqxx::work w(*c);
    w.exec("SET LOCAL lock_timeout = '30s'");
    if (w.exec1("SELECT to_regclass('txcoord_outbox') IS NULL")[0].as<bool>()) {
      return PgNoOutbox(name);
    }
    if (!request.dry_run) {
      if (Status s = EnsureSchema(w); !s.ok()) return s.WithContext("postgresql outbox " + name);
      w.exec_params("SELECT pg_advisory_xact_lock($1)", kReplayLockKey);
    }
    const pqxx::row bounds =
        w.exec1("SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM txcoord_outbox");
    result.first_row_id = bounds[0].as<int64_t>();
    result.to_id = bounds[1].as<int64_t>();
    const pqxx::row from =
        from_time ? w.exec_params1(
                        "SELECT coalesce(min(id), 0) FROM txcoord_outbox WHERE created_at >= "
                        "$1::timestamptz",
                        *from_time)
                  : w.exec_params1(
                        "SELECT coalesce(min(id), 0) FROM txcoord_outbox WHERE id >= $1",
                        *request.from_id);
    result.from_id = from[0].as<int64_t>();
    if (result.from_id == 0) return result;  // nothing at or after the start; rolls back
    const pqxx::row counts = w.exec_params1(
        "SELECT count(*) FILTER (WHERE published_at IS NULL), count(*) FILTER (WHERE "
        "published_at IS NOT NULL) FROM txcoord_outbox WHERE id >= $1 AND id <= $2",
        result.from_id, result.to_id);
    result.rows_pending = counts[0].as<int64_t>();
    result.rows_replayed = counts[1].as<int64_t>();
    if (request.dry_run || result.rows_replayed == 0) return result;
    // Each UPDATE sees rows marked since the count (READ COMMITTED), so `done` may exceed the
    // count by the relay's latest marks; it is what is reported.
    int64_t done = 0;
    for (int64_t low = result.from_id; low <= result.to_id; low += kReplayBatch) {
      const pqxx::result r = w.exec_params(
          "UPDATE txcoord_outbox SET published_at = NULL WHERE id >= $1 AND id < $2 AND id <= $3 "
          "AND published_at IS NOT NULL",
          low, low + kReplayBatch, result.to_id);
      done += static_cast<int64_t>(r.affected_rows());
      if (request.progress) request.progress(done, std::max(done, result.rows_replayed));
    }
    result.rows_replayed = done;
    result.replay_id = w.exec_params1(
                            "INSERT INTO txcoord_outbox_replays (from_id, to_id, rows_replayed, "
                            "requested_by) VALUES ($1, $2, $3, $4) RETURNING id",
                            result.from_id, result.to_id, done, request.requested_by)[0]
                           .as<int64_t>();
    // Wakes a relay that sleeps; the log is what makes it rewind (it reads it with its rows).
    w.exec("SELECT pg_notify('txcoord_outbox', 'replay')");
    try {
      w.commit();
    } catch (const pqxx::in_doubt_error& e) {
      return Status::UnknownOutcome("postgresql outbox " + name +
                                    ": the connection broke during COMMIT; see `txctl outbox "
                                    "status` (replays) whether the replay happened: " +
                                    OneLine(e.what()));
    }
    return result;
  } catch (const std::exception& e) {
    return Status::Unavailable("postgresql outbox " + name + ": replay: " + OneLine(e.what()));
  }
}

bool ReadDigits(std::string_view text, size_t& at, int count, int& out) {
  if (at + count > text.size()) return false;
  out = 0;
  for (int i = 0; i < count; ++i) {
    const char c = text[at + i];
    if (c < '0' || c > '9') return false;
    out = out * 10 + (c - '0');
  }
  at += count;
  return true;
}

bool Expect(std::string_view text, size_t& at, std::string_view any_of) {
  if (at >= text.size() || any_of.find(text[at]) == std::string_view::npos) return false;
  ++at;
  return true;
}

}  // namespace

Result<std::string> NormalizeRfc3339(std::string_view text) {
  const auto bad = [&](std::string_view why) {
    return Status::InvalidArgument("\"" + std::string(text.substr(0, 64)) +
                                   "\" is not an RFC 3339 time (" + std::string(why) +
                                   "); write e.g. 2024-05-01T12:00:00Z or "
                                   "2024-05-01T14:00:00.250+02:00");
  };
  size_t at = 0;
  int year, month, day, hour, minute, second;
  if (!ReadDigits(text, at, 4, year) || !Expect(text, at, "-") ||
      !ReadDigits(text, at, 2, month) || !Expect(text, at, "-") || !ReadDigits(text, at, 2, day)) {
    return bad("the date must be YYYY-MM-DD");
  }
  if (!Expect(text, at, "Tt ")) return bad("the date and the time are joined by T");
  if (!ReadDigits(text, at, 2, hour) || !Expect(text, at, ":") ||
      !ReadDigits(text, at, 2, minute) || !Expect(text, at, ":") ||
      !ReadDigits(text, at, 2, second)) {
    return bad("the time must be HH:MM:SS");
  }
  int millis = 0;
  if (at < text.size() && text[at] == '.') {
    ++at;
    int digits = 0;
    while (at < text.size() && text[at] >= '0' && text[at] <= '9') {
      if (digits < 3) millis = millis * 10 + (text[at] - '0');
      ++digits;
      ++at;
    }
    if (digits == 0) return bad("a fraction of a second needs digits after the point");
    for (int i = digits; i < 3; ++i) millis *= 10;
  }
  int offset_s = 0;
  if (Expect(text, at, "Zz")) {
  } else if (at < text.size() && (text[at] == '+' || text[at] == '-')) {
    const int sign = text[at] == '+' ? 1 : -1;
    ++at;
    int off_h, off_m;
    if (!ReadDigits(text, at, 2, off_h) || !Expect(text, at, ":") ||
        !ReadDigits(text, at, 2, off_m) || off_h > 23 || off_m > 59) {
      return bad("the offset must be +HH:MM or -HH:MM");
    }
    offset_s = sign * (off_h * 3600 + off_m * 60);
  } else {
    return bad("it needs a zone: Z or an offset such as +02:00");
  }
  if (at != text.size()) return bad("something follows the zone");
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (month < 1 || month > 12) return bad("the month is not 01 to 12");
  if (day < 1 || day > kDays[month - 1] || (month == 2 && day == 29 && !leap)) {
    return bad("that day does not exist");
  }
  if (hour > 23 || minute > 59 || second > 60) return bad("the time of day is out of range");
  if (second == 60) second = 59;  // a leap second: as its second's start, to the millisecond
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  const time_t utc = timegm(&tm) - offset_s;
  std::tm out{};
  if (gmtime_r(&utc, &out) == nullptr) return bad("out of range");
  char buffer[96];
  std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", out.tm_year + 1900,
                out.tm_mon + 1, out.tm_mday, out.tm_hour, out.tm_min, out.tm_sec, millis);
  return std::string(buffer);
}

Result<OutboxStatus> ReadOutboxStatus(std::string_view source_uri) {
  auto config = ParseSourceUri(source_uri);
  if (!config.ok()) return config.status();
  std::string name = RedactUri(source_uri);
  if (const auto* sqlite = std::get_if<SqliteSourceConfig>(&*config)) {
    return SqliteStatus(*sqlite, std::move(name));
  }
  return PostgresStatus(std::get<PostgresSourceConfig>(*config), std::move(name));
}

Result<ReplayResult> ReplayOutbox(std::string_view source_uri, const ReplayRequest& request) {
  if (request.from_id.has_value() == request.from_time.has_value()) {
    return Status::InvalidArgument("a replay starts either at an id or at a time, not both or none");
  }
  if (request.from_id && *request.from_id < 0) {
    return Status::InvalidArgument("a replay's start id cannot be negative");
  }
  std::optional<std::string> from_time;
  if (request.from_time) {
    auto normalized = NormalizeRfc3339(*request.from_time);
    if (!normalized.ok()) return normalized.status();
    from_time = std::move(normalized).value();
  }
  auto config = ParseSourceUri(source_uri);
  if (!config.ok()) return config.status();
  const std::string name = RedactUri(source_uri);
  if (const auto* sqlite = std::get_if<SqliteSourceConfig>(&*config)) {
    return SqliteReplay(*sqlite, request, from_time);
  }
  return PostgresReplay(std::get<PostgresSourceConfig>(*config), name, request, from_time);
}

}  // namespace txcoord::outbox
