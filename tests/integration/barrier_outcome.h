// What a participant's barrier table says became of a branch: the way the 3pc tests check a
// participant's side of an outcome without trusting the coordinator's record.
#pragma once

#include <sqlite3.h>

#include <string>

namespace txcoord::integration {

// "committed" (a finish row), "aborted" (an undo row), "committed and aborted" (both: the split
// 3pc must never allow), or "in doubt" (neither, or no barrier table yet). REQUIRES: no other
// thread uses `db` meanwhile.
inline std::string BarrierOutcome(sqlite3* db, const std::string& gtid,
                                  const std::string& branch_id) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db,
                         "SELECT op FROM txcoord_barrier WHERE gtid = ?1 AND branch_id = ?2 "
                         "AND op IN ('finish', 'undo')",
                         -1, &stmt, nullptr) != SQLITE_OK) {
    return "in doubt";
  }
  sqlite3_bind_text(stmt, 1, gtid.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(stmt, 2, branch_id.c_str(), -1, SQLITE_TRANSIENT);
  std::string outcome = "in doubt";
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    const std::string op = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    const std::string here = op == "finish" ? "committed" : "aborted";
    outcome = outcome == "in doubt" ? here : "committed and aborted";
  }
  sqlite3_finalize(stmt);
  return outcome;
}

}  // namespace txcoord::integration
