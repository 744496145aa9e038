// Connections to a participant's own PostgreSQL database, shared by the handlers that run their
// work there (PgPreparedAdapter, PgSagaStep): every connection gets the session settings the
// handlers rely on, and a few idle ones are kept for the next call.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "txcoord/status.h"

namespace txcoord::participant::internal {

struct PgPoolOptions {
  std::string conninfo;  // may hold a password: never shown
  // Bound every wait for a row lock and every statement, the business's included.
  std::chrono::milliseconds lock_timeout{5000};
  std::chrono::milliseconds statement_timeout{30000};
  size_t max_idle_connections = 8;
  // Names the database in errors: "connect to WHAT".
  std::string what = "the participant's PostgreSQL database";
};

// Thread-safe. A connection is used by one caller at a time, between Take and Put.
class PgPool {
 public:
  explicit PgPool(PgPoolOptions options) : options_(std::move(options)) {}

  PgPool(const PgPool&) = delete;
  PgPool& operator=(const PgPool&) = delete;

  // A new connection with the session settings, which libpqxx restores when it reconnects.
  // Errors as PgStatus's (kUnavailable when the server cannot be reached), without the
  // conninfo.
  Result<std::unique_ptr<pqxx::connection>> Connect() const;

  // An idle connection, else a new one.
  Result<std::unique_ptr<pqxx::connection>> Take();

  // Keeps `conn` for a later Take while fewer than max_idle_connections are kept, else closes
  // it. Only a connection at a transaction boundary, in a known state, may come back.
  void Put(std::unique_ptr<pqxx::connection> conn);

 private:
  const PgPoolOptions options_;
  std::mutex mu_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;  // GUARDED_BY(mu_)
};

}  // namespace txcoord::participant::internal
