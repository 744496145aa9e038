// Small SQLite helpers of the library: the statement cache behind SqliteStatement, and SQLite
// result codes to Status.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "txcoord/participant/sqlite_statement.h"
#include "txcoord/status.h"

namespace txcoord::participant::internal {

// SQLITE_BUSY / LOCKED (another writer), FULL, IOERR, CANTOPEN -> kUnavailable (retry may
// succeed); SQLITE_CONSTRAINT -> kAlreadyExists; the rest -> kInternal. The message is
// "<what>: <sqlite3_errmsg>".
Status SqliteStatus(sqlite3* db, int rc, std::string_view what);

// Prepared statements of one connection, kept while a SqliteCommitGroup's leader runs on this
// thread (Scope): the barrier's few statements are then prepared once per connection instead of
// once per callback. SqliteStatement (sqlite_statement.h) uses the cache of its connection when
// one is in scope.
//
// Thread-safety: none needed; a cache is used only by the thread holding its connection (the
// group's leader), and its scope is that thread's.
class StatementCache {
 public:
  explicit StatementCache(sqlite3* db) : db_(db) {}
  ~StatementCache();  // finalizes every statement: before the connection closes
  StatementCache(const StatementCache&) = delete;
  StatementCache& operator=(const StatementCache&) = delete;

  // Makes `cache` the one Statement uses for its connection on this thread until destroyed.
  class Scope {
   public:
    explicit Scope(StatementCache* cache);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    StatementCache* const previous_;
  };

  // The cache in scope for `db` on this thread, or null.
  static StatementCache* For(sqlite3* db);

  // A statement for `sql` not in use: a kept one (reset), or a newly prepared one that is then
  // kept. SQLITE_OK, or the prepare's error code with *stmt null.
  int Take(const char* sql, sqlite3_stmt** stmt);
  // Gives back a statement Take handed out: reset, bindings cleared, kept for the next Take.
  void Give(sqlite3_stmt* stmt);
  // Holding as many statements as it keeps (the library's fixed SQL needs far fewer): further
  // ones are prepared and finalized as without a cache.
  bool full() const { return entries_.size() >= kMaxStatements; }

 private:
  static constexpr size_t kMaxStatements = 32;
  struct Entry {
    std::string sql;
    sqlite3_stmt* stmt;
    bool in_use;
  };
  sqlite3* const db_;
  std::vector<Entry> entries_;
};

}  // namespace txcoord::participant::internal
