// A thin RAII layer over SQLite's C API, for the log backend. Errors become Status values.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "txcoord/status.h"

namespace txcoord::coordinator::internal {

// Maps a SQLite result code to a Status code: damage is kCorruption, a lock or a full or failing
// disk is kUnavailable, anything else kInternal.
Status SqliteError(sqlite3* db, int rc, std::string_view what);

// A prepared statement; reset (not finalized) between uses when owned by a cache.
class Stmt {
 public:
  Stmt() = default;
  Stmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Stmt(Stmt&& o) noexcept : db_(o.db_), stmt_(o.stmt_) { o.stmt_ = nullptr; }
  Stmt& operator=(Stmt&& o) noexcept;
  ~Stmt();

  Stmt& Bind(int i, std::string_view v);
  Stmt& BindBlob(int i, std::string_view v);
  Stmt& Bind(int i, int64_t v);
  Stmt& BindNull(int i);
  Stmt& Bind(int i, std::optional<int64_t> v) { return v ? Bind(i, *v) : BindNull(i); }

  // Steps once: true with a row, false when done; errors in *status.
  bool Step(Status* status);
  // Steps to completion, for statements without rows.
  Status Run();
  void Reset();

  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::optional<int64_t> OptInt(int col) const {
    return IsNull(col) ? std::nullopt : std::optional<int64_t>(Int(col));
  }
  std::string_view Text(int col) const;
  std::string_view Blob(int col) const;

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

Result<Stmt> Prepare(sqlite3* db, std::string_view sql);
Status Exec(sqlite3* db, const char* sql);

}  // namespace txcoord::coordinator::internal
