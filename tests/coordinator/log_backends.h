// The log backends as test fixtures: each gives a fresh, empty store per test and a way to damage
// a stored record behind the log's back. Used by the typed conformance suite and the benchmark.
#pragma once

#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <pqxx/pqxx>
#include <string>

#include "txcoord/coordinator/log.h"
#include "txcoord/coordinator/memory_log.h"
#include "txcoord/testing/postgres_server.h"

namespace txcoord::coordinator::testutil {

// Not durable: runs the same suite so that engine tests and the simulator can trust it.
class MemoryBackend {
 public:
  static constexpr const char* kName = "memory";
  static constexpr bool kDurable = false;
  Result<std::unique_ptr<TransactionLog>> Open() const { return OpenMemoryLog(store_); }
  void TearRecords(const std::string& gtid) const { TearMemoryRecords(*store_, gtid); }
  void DropLastRecord(const std::string& gtid) const { DropLastMemoryRecord(*store_, gtid); }

 private:
  std::shared_ptr<MemoryLogStore> store_ = NewMemoryLogStore();
};

class SqliteBackend {
 public:
  static constexpr const char* kName = "sqlite";
  static constexpr bool kDurable = true;

  SqliteBackend() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "txlog-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
  }
  ~SqliteBackend() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string path() const { return dir_ + "/log.db"; }
  LogConfig Config() const {
    SqliteLogConfig c;
    c.path = path();
    return c;
  }
  Result<std::unique_ptr<TransactionLog>> Open() const { return OpenLog(Config()); }

  // Cuts the last two bytes off every stored record of `gtid`: a torn write.
  void TearRecords(const std::string& gtid) const {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path().c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    const std::string sql =
        "UPDATE txcoord_tx_record SET body = substr(body, 1, length(body) - 2) WHERE tx_id = "
        "(SELECT id FROM txcoord_tx WHERE gtid = '" +
        gtid + "')";
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
  }

  void DropLastRecord(const std::string& gtid) const {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path().c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    const std::string id = "(SELECT id FROM txcoord_tx WHERE gtid = '" + gtid + "')";
    const std::string sql =
        "DELETE FROM txcoord_tx_record WHERE tx_id = " + id +
        " AND seq = (SELECT max(seq) FROM txcoord_tx_record WHERE tx_id = " + id + ")";
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
  }

 private:
  std::string dir_;
};

class PostgresBackend {
 public:
  static constexpr const char* kName = "postgresql";
  static constexpr bool kDurable = true;

  PostgresBackend() {
    auto db = testing::SharedPostgres().CreateDatabase("txlog");
    if (!db.ok()) {
      ADD_FAILURE() << db.status().ToString();
      return;
    }
    db_ = *db;
  }

  std::string conninfo() const { return testing::SharedPostgres().ConnInfo(db_); }
  std::string uri() const { return testing::SharedPostgres().Uri(db_); }
  LogConfig Config() const {
    PostgresLogConfig c;
    c.conninfo = conninfo();
    return c;
  }
  Result<std::unique_ptr<TransactionLog>> Open() const { return OpenLog(Config()); }

  void TearRecords(const std::string& gtid) const {
    pqxx::connection c(conninfo());
    pqxx::work w(c);
    w.exec_params(
        "UPDATE txcoord_tx_record SET body = substring(body from 1 for length(body) - 2) "
        "WHERE gtid = $1",
        gtid);
    w.commit();
  }

  void DropLastRecord(const std::string& gtid) const {
    pqxx::connection c(conninfo());
    pqxx::work w(c);
    w.exec_params(
        "DELETE FROM txcoord_tx_record WHERE gtid = $1 AND seq = "
        "(SELECT max(seq) FROM txcoord_tx_record WHERE gtid = $1)",
        gtid);
    w.commit();
  }

 private:
  std::string db_;
};

}  // namespace txcoord::coordinator::testutil
