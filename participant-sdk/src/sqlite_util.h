// Small SQLite helpers of the library: a statement that finalizes itself, and SQLite result
// codes to Status.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "txcoord/status.h"

namespace txcoord::participant::internal {

// SQLITE_BUSY / LOCKED (another writer), FULL, IOERR, CANTOPEN -> kUnavailable (retry may
// succeed); SQLITE_CONSTRAINT -> kAlreadyExists; the rest -> kInternal. The message is
// "<what>: <sqlite3_errmsg>".
Status SqliteStatus(sqlite3* db, int rc, std::string_view what);

class Statement {
 public:
  explicit Statement(sqlite3* db) : db_(db) {}
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  int Prepare(const char* sql) { return sqlite3_prepare_v2(db_, sql, -1, &stmt_, nullptr); }
  // Binds a copy of `text` (SQLITE_TRANSIENT), so temporaries are fine.
  void Bind(int index, std::string_view text) {
    sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  }
  int Step() { return sqlite3_step(stmt_); }
  int64_t Int(int column) const { return sqlite3_column_int64(stmt_, column); }
  std::string Text(int column) const {
    const auto* text = sqlite3_column_text(stmt_, column);
    return text == nullptr ? std::string()
                           : std::string(reinterpret_cast<const char*>(text),
                                         static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
  }

 private:
  sqlite3* const db_;
  sqlite3_stmt* stmt_ = nullptr;
};

}  // namespace txcoord::participant::internal
