// The barrier table on PostgreSQL, shared by the barrier and the prepared-transaction adapter.
#pragma once

#include <pqxx/transaction_base>

namespace txcoord::participant::internal {

// CREATE TABLE IF NOT EXISTS txcoord_barrier, under a transaction-scoped advisory lock so that
// several connections or processes creating it at once do not collide. Throws what libpqxx throws.
void EnsureBarrierTable(pqxx::transaction_base& tx);

}  // namespace txcoord::participant::internal
