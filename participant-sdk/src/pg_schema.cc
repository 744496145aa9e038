#include "pg_schema.h"

#include <cstdint>
#include <pqxx/pqxx>

namespace txcoord::participant::internal {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS txcoord_barrier (
  gtid       TEXT        NOT NULL,
  branch_id  TEXT        NOT NULL,
  op         TEXT        NOT NULL,
  origin     TEXT        NOT NULL,
  outcome    TEXT        NOT NULL,
  reason     TEXT        NOT NULL DEFAULT '',
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (gtid, branch_id, op)
)
)sql";

// Serializes concurrent creation of the table (CREATE TABLE IF NOT EXISTS alone can fail with a
// unique violation in pg_type when two sessions race).
constexpr int64_t kSchemaLockKey = 0x7478626172;  // "txbar"

}  // namespace

void EnsureBarrierTable(pqxx::transaction_base& tx) {
  pqxx::result exists = tx.exec("SELECT to_regclass('txcoord_barrier') IS NOT NULL");
  if (exists[0][0].as<bool>()) return;
  tx.exec_params("SELECT pg_advisory_xact_lock($1)", kSchemaLockKey);
  tx.exec(kSchema);
}

}  // namespace txcoord::participant::internal
