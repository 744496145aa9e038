#include "pg_errors.h"

#include <pqxx/except>

namespace txcoord::participant::internal {

std::string SqlState(const std::exception& e) {
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) return sql->sqlstate();
  return "";
}

Status PgStatus(std::string_view what, const std::exception& e) {
  // libpq messages end in a newline and may span lines; keep the first one.
  std::string detail = e.what();
  if (auto nl = detail.find('\n'); nl != std::string::npos) detail.resize(nl);
  std::string message = std::string(what) + ": " + detail;
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
    return Status::UnknownOutcome(message);
  }
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr ||
      dynamic_cast<const pqxx::transaction_rollback*>(&e) != nullptr) {
    return Status::Unavailable(message);
  }
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
    if (!sql->sqlstate().empty()) message += " (SQLSTATE " + sql->sqlstate() + ")";
    return Status::Unavailable(message);
  }
  return Status::Internal(message);
}

}  // namespace txcoord::participant::internal
