#include "sqlite_util.h"

namespace txcoord::participant::internal {

Status SqliteStatus(sqlite3* db, int rc, std::string_view what) {
  std::string message = std::string(what) + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status::Unavailable(message + " (another writer holds the database; retry)");
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
      return Status::Unavailable(message);
    case SQLITE_CONSTRAINT:
      return Status::AlreadyExists(message);
    default:
      return Status::Internal(message);
  }
}

namespace {
thread_local StatementCache* active_cache = nullptr;
}  // namespace

StatementCache::~StatementCache() {
  for (const Entry& e : entries_) sqlite3_finalize(e.stmt);
}

StatementCache::Scope::Scope(StatementCache* cache) : previous_(active_cache) {
  active_cache = cache;
}

StatementCache::Scope::~Scope() { active_cache = previous_; }

StatementCache* StatementCache::For(sqlite3* db) {
  return active_cache != nullptr && active_cache->db_ == db ? active_cache : nullptr;
}

int StatementCache::Take(const char* sql, sqlite3_stmt** stmt) {
  for (Entry& e : entries_) {
    if (!e.in_use && e.sql == sql) {
      e.in_use = true;
      *stmt = e.stmt;
      return SQLITE_OK;
    }
  }
  *stmt = nullptr;
  const int rc = sqlite3_prepare_v2(db_, sql, -1, stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(*stmt);
    *stmt = nullptr;
    return rc;
  }
  entries_.push_back({sql, *stmt, true});
  return SQLITE_OK;
}

void StatementCache::Give(sqlite3_stmt* stmt) {
  for (Entry& e : entries_) {
    if (e.stmt == stmt) {
      sqlite3_reset(stmt);
      sqlite3_clear_bindings(stmt);
      e.in_use = false;
      return;
    }
  }
}

}  // namespace txcoord::participant::internal

namespace txcoord::participant {

SqliteStatement::~SqliteStatement() {
  if (cache_ != nullptr) {
    cache_->Give(stmt_);
  } else {
    sqlite3_finalize(stmt_);
  }
}

int SqliteStatement::Prepare(const char* sql) {
  using internal::StatementCache;
  if (StatementCache* cache = StatementCache::For(db_); cache != nullptr && !cache->full()) {
    const int rc = cache->Take(sql, &stmt_);
    if (rc == SQLITE_OK) cache_ = cache;
    return rc;
  }
  return sqlite3_prepare_v2(db_, sql, -1, &stmt_, nullptr);
}

}  // namespace txcoord::participant
