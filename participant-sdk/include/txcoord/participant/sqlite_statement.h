// A SQLite prepared statement that cleans up after itself, for the barrier and for a
// participant's own business functions.
//
// Inside a SqliteCommitGroup (commit_group.h), while the group's leader runs the business
// functions of a group on its connection, statements are kept prepared: Prepare takes the
// connection's kept statement for that SQL text, and the destructor resets it, clears its
// bindings and gives it back, so each text is prepared once per connection instead of once per
// callback. Anywhere else Prepare prepares and the destructor finalizes.
//
// Thread-safety: none; a statement belongs to the thread that uses its connection.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace txcoord::participant {
namespace internal {
class StatementCache;
}  // namespace internal

class SqliteStatement {
 public:
  explicit SqliteStatement(sqlite3* db) : db_(db) {}
  ~SqliteStatement();
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;

  // SQLITE_OK, or the prepare's error code (sqlite3_errmsg(db) says why). Once per statement.
  int Prepare(const char* sql);
  // Binds a copy of `text` (SQLITE_TRANSIENT), so temporaries are fine.
  void Bind(int index, std::string_view text) {
    sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  }
  void Bind(int index, int64_t value) { sqlite3_bind_int64(stmt_, index, value); }
  // SQLITE_ROW, SQLITE_DONE or an error code; SQLITE_MISUSE when Prepare failed.
  int Step() { return stmt_ == nullptr ? SQLITE_MISUSE : sqlite3_step(stmt_); }
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
  internal::StatementCache* cache_ = nullptr;  // where stmt_ goes back to, when it came from one
};

}  // namespace txcoord::participant
