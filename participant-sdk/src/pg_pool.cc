#include "pg_pool.h"

#include "pg_errors.h"

namespace txcoord::participant::internal {

Result<std::unique_ptr<pqxx::connection>> PgPool::Connect() const {
  try {
    auto conn = std::make_unique<pqxx::connection>(options_.conninfo);
    conn->set_variable("lock_timeout", std::to_string(options_.lock_timeout.count()));
    conn->set_variable("statement_timeout", std::to_string(options_.statement_timeout.count()));
    return conn;
  } catch (const std::exception& e) {
    return PgStatus("connect to " + options_.what, e);
  }
}

Result<std::unique_ptr<pqxx::connection>> PgPool::Take() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      return conn;
    }
  }
  return Connect();
}

void PgPool::Put(std::unique_ptr<pqxx::connection> conn) {
  std::lock_guard lock(mu_);
  if (idle_.size() < options_.max_idle_connections) idle_.push_back(std::move(conn));
}

}  // namespace txcoord::participant::internal
