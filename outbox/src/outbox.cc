#include "txcoord/outbox/outbox.h"

#include <Poco/JSON/Object.h>
#include <sys/random.h>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <pqxx/pqxx>
#include <sstream>

#include "txcoord/outbox/row.h"
#include "txcoord/schemas/ids.h"

namespace txcoord::outbox {
namespace {

// The contract's tables, verbatim, plus a partial index the relay scans for unpublished rows, and
// the replay log: one row per `txctl outbox replay` (admin.h), whose highest id the relay reads
// with every batch of rows to notice that published rows became unpublished again.
// Every statement is idempotent, so running the script again migrates an older or a hand-made
// table (one created from the contract alone) to what the relay expects.
constexpr const char* kSqliteSchema = R"sql(
CREATE TABLE IF NOT EXISTS txcoord_outbox (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id       TEXT    NOT NULL UNIQUE,
  aggregate_type TEXT    NOT NULL,
  aggregate_id   TEXT    NOT NULL,
  event_type     TEXT    NOT NULL,
  payload        BLOB    NOT NULL,
  headers        TEXT    NOT NULL DEFAULT '{}',
  created_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  published_at   TEXT
);
CREATE INDEX IF NOT EXISTS txcoord_outbox_unpublished ON txcoord_outbox (id)
  WHERE published_at IS NULL;
CREATE TABLE IF NOT EXISTS txcoord_inbox (
  consumer   TEXT NOT NULL,
  event_id   TEXT NOT NULL,
  applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  PRIMARY KEY (consumer, event_id)
);
CREATE TABLE IF NOT EXISTS txcoord_outbox_replays (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  from_id       INTEGER NOT NULL,
  to_id         INTEGER NOT NULL,
  rows_replayed INTEGER NOT NULL,
  requested_by  TEXT    NOT NULL DEFAULT '',
  requested_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
)sql";

// PostgreSQL also gets the relay's wake-up: a statement-level trigger that notifies channel
// txcoord_outbox. Notifications are delivered at commit, and identical ones of one transaction are
// folded into one, so a transaction costs one notification however many rows it inserts.
constexpr const char* kPostgresSchema = R"sql(
CREATE TABLE IF NOT EXISTS txcoord_outbox (
  id             BIGSERIAL   PRIMARY KEY,
  event_id       TEXT        NOT NULL UNIQUE,
  aggregate_type TEXT        NOT NULL,
  aggregate_id   TEXT        NOT NULL,
  event_type     TEXT        NOT NULL,
  payload        BYTEA       NOT NULL,
  headers        JSONB       NOT NULL DEFAULT '{}',
  created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
  published_at   TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS txcoord_inbox (
  consumer   TEXT        NOT NULL,
  event_id   TEXT        NOT NULL,
  applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, event_id)
);
CREATE TABLE IF NOT EXISTS txcoord_outbox_replays (
  id            BIGSERIAL   PRIMARY KEY,
  from_id       BIGINT      NOT NULL,
  to_id         BIGINT      NOT NULL,
  rows_replayed BIGINT      NOT NULL,
  requested_by  TEXT        NOT NULL DEFAULT '',
  requested_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION txcoord_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM pg_notify('txcoord_outbox', '');
  RETURN NULL;
END
$fn$;
-- The index and the trigger are created only when missing: creating them (even with IF NOT
-- EXISTS or OR REPLACE) locks the table against the service's writers, at every relay start.
DO $do$
BEGIN
  IF to_regclass('txcoord_outbox_unpublished') IS NULL THEN
    CREATE INDEX txcoord_outbox_unpublished ON txcoord_outbox (id) WHERE published_at IS NULL;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'txcoord_outbox_notify'
                 AND tgrelid = 'txcoord_outbox'::regclass) THEN
    CREATE TRIGGER txcoord_outbox_notify AFTER INSERT ON txcoord_outbox
      FOR EACH STATEMENT EXECUTE FUNCTION txcoord_outbox_notify();
  END IF;
END
$do$;
)sql";

// Serializes concurrent EnsureSchema calls of several connections or processes on one database.
constexpr int64_t kSchemaLockKey = 0x7478626f78;  // "txbox"

std::string HeadersJson(const v1::OutboxEvent& event) {
  Poco::JSON::Object object;
  for (const auto& [k, v] : event.headers()) object.set(k, v);
  std::ostringstream out;
  object.stringify(out);
  return out.str();
}

Status SqliteStatus(sqlite3* db, int rc, std::string_view what) {
  const std::string msg = std::string(what) + ": " + sqlite3_errmsg(db);
  if ((rc & 0xff) == SQLITE_CONSTRAINT) return Status::AlreadyExists(msg);
  if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_FULL || (rc & 0xff) == SQLITE_IOERR) {
    return Status::Unavailable(msg);
  }
  return Status::Internal(msg);
}

}  // namespace

std::string NewEventId() {
  // 48 bits of Unix milliseconds, then a 12-bit counter (rand_a) that keeps ids of one process
  // ordered within a millisecond, then 62 random bits (rand_b).
  static std::mutex mu;
  static int64_t last_ms = 0;
  static uint16_t counter = 0;
  int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  uint16_t seq;
  {
    std::lock_guard lock(mu);
    if (ms <= last_ms) {
      ms = last_ms;  // the clock went back or stood still: stay ordered
      if (++counter > 0xfff) {
        counter = 0;
        ++ms;  // borrow from the next millisecond rather than repeat
      }
    } else {
      counter = 0;
    }
    last_ms = ms;
    seq = counter;
  }
  uint64_t random = 0;
  if (getrandom(&random, sizeof random, 0) != static_cast<ssize_t>(sizeof random)) {
    // getrandom on Linux only fails before the pool is seeded at boot; fall back to the clock.
    random = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  const uint64_t hi = (static_cast<uint64_t>(ms) << 16) | 0x7000 | seq;          // version 7
  const uint64_t lo = (random & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 10
  char text[37];
  std::snprintf(text, sizeof text, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xffff), static_cast<unsigned>(hi & 0xffff),
                static_cast<unsigned>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xffffffffffffULL));
  return text;
}

namespace {

// ValidateEvent with the headers column already made.
Status ValidateEvent(const v1::OutboxEvent& e, std::string headers_json) {
  if (!e.event_id().empty()) TXCOORD_RETURN_IF_ERROR(ValidateId("event_id", e.event_id()));
  // Whatever the relay would refuse is refused here, where the service can still act on it: a
  // stored bad row would hold back every later event of its aggregate.
  OutboxRow row;
  row.event_id = e.event_id().empty() ? std::string("generated") : e.event_id();
  row.aggregate_type = e.aggregate_type();
  row.aggregate_id = e.aggregate_id();
  row.event_type = e.event_type();
  row.payload = e.payload();
  row.headers_json = std::move(headers_json);
  return ValidateRow(row);
}

}  // namespace

Status ValidateEvent(const v1::OutboxEvent& e) { return ValidateEvent(e, HeadersJson(e)); }

Status EnsureSchema(sqlite3* db) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db, kSqliteSchema, nullptr, nullptr, &err);
  sqlite3_free(err);
  if (rc != SQLITE_OK) return SqliteStatus(db, rc, "create outbox tables");
  return Status::Ok();
}

Status EnsureSchema(pqxx::transaction_base& tx) {
  try {
    tx.exec_params("SELECT pg_advisory_xact_lock($1)", kSchemaLockKey);
    tx.exec(kPostgresSchema);
    return Status::Ok();
  } catch (const std::exception& e) {
    return Status::Unavailable(std::string("create outbox tables: ") + e.what());
  }
}

Result<std::string> Append(sqlite3* db, const v1::OutboxEvent& event) {
  const std::string headers = HeadersJson(event);
  TXCOORD_RETURN_IF_ERROR(ValidateEvent(event, headers));
  const std::string event_id = event.event_id().empty() ? NewEventId() : event.event_id();
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db,
                              "INSERT INTO txcoord_outbox (event_id, aggregate_type, aggregate_id, "
                              "event_type, payload, headers) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                              -1, &stmt, nullptr);
  if (rc != SQLITE_OK) return SqliteStatus(db, rc, "append to outbox");
  sqlite3_bind_text(stmt, 1, event_id.data(), static_cast<int>(event_id.size()), SQLITE_STATIC);
  sqlite3_bind_text(stmt, 2, event.aggregate_type().data(),
                    static_cast<int>(event.aggregate_type().size()), SQLITE_STATIC);
  sqlite3_bind_text(stmt, 3, event.aggregate_id().data(),
                    static_cast<int>(event.aggregate_id().size()), SQLITE_STATIC);
  sqlite3_bind_text(stmt, 4, event.event_type().data(), static_cast<int>(event.event_type().size()),
                    SQLITE_STATIC);
  // A zero-length blob must still be a blob, not NULL (payload is NOT NULL).
  sqlite3_bind_blob(stmt, 5, event.payload().empty() ? "" : event.payload().data(),
                    static_cast<int>(event.payload().size()), SQLITE_STATIC);
  sqlite3_bind_text(stmt, 6, headers.data(), static_cast<int>(headers.size()), SQLITE_STATIC);
  rc = sqlite3_step(stmt);
  sqlite3_finalize(stmt);
  if (rc != SQLITE_DONE) return SqliteStatus(db, rc, "append event " + event_id + " to outbox");
  return event_id;
}

Result<std::string> Append(pqxx::transaction_base& tx, const v1::OutboxEvent& event) {
  const std::string headers = HeadersJson(event);
  TXCOORD_RETURN_IF_ERROR(ValidateEvent(event, headers));
  const std::string event_id = event.event_id().empty() ? NewEventId() : event.event_id();
  try {
    tx.exec_params(
        "INSERT INTO txcoord_outbox (event_id, aggregate_type, aggregate_id, event_type, payload, "
        "headers) VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
        event_id, event.aggregate_type(), event.aggregate_id(), event.event_type(),
        pqxx::binarystring(event.payload()), headers);
    return event_id;
  } catch (const pqxx::unique_violation& e) {
    return Status::AlreadyExists("event " + event_id + " is already in the outbox");
  } catch (const std::exception& e) {
    return Status::Unavailable("append event " + event_id + " to outbox: " + e.what());
  }
}

}  // namespace txcoord::outbox
