// libpqxx exceptions to Status, shared by the barrier and the prepared-transaction adapter.
#pragma once

#include <exception>
#include <string>
#include <string_view>

#include "txcoord/status.h"

namespace txcoord::participant::internal {

// SQLSTATE of a pqxx::sql_error, "" for other exceptions.
std::string SqlState(const std::exception& e);

// A lost connection, a lock or statement timeout, a serialization failure, a deadlock, and any
// other SQL error are kUnavailable (the database refused or failed; a retry may succeed);
// a commit whose outcome is unknown is kUnknownOutcome; a libpqxx usage error or anything else
// is kInternal (a bug). The message starts with `what`.
Status PgStatus(std::string_view what, const std::exception& e);

}  // namespace txcoord::participant::internal
