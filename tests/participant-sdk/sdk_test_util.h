// Small helpers shared by the participant SDK's tests.
#pragma once

#include <sqlite3.h>
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "txcoord/participant/handler.h"

namespace txcoord::participant::testing {

// A fresh directory under $TMPDIR, removed with everything in it when the object goes away.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "txcoord-sdk-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline CallbackContext Ctx(std::string gtid, std::string branch_id, Phase phase,
                           bool one_phase = false) {
  CallbackContext ctx;
  ctx.gtid = std::move(gtid);
  ctx.branch_id = std::move(branch_id);
  ctx.phase = phase;
  ctx.one_phase = one_phase;
  ctx.payload_json = "null";
  ctx.payload.set_null_value(google::protobuf::NULL_VALUE);
  return ctx;
}

// Runs `sql` on `db`; throws with SQLite's message when it fails.
inline void SqliteExec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  const std::string message = err ? err : "";
  sqlite3_free(err);
  if (rc != SQLITE_OK) throw std::runtime_error(sql + ": " + message);
}

// The first column of the first row of `sql` (a count), -1 when there is no row.
inline int64_t SqliteCount(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    throw std::runtime_error(sql + ": " + sqlite3_errmsg(db));
  }
  int64_t n = -1;
  if (sqlite3_step(stmt) == SQLITE_ROW) n = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  return n;
}

}  // namespace txcoord::participant::testing
