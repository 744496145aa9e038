// Service-side outboxes for the relay tests: a SQLite file in a temp dir and a PostgreSQL
// database on the rig's shared server, each written the way a service writes it (Append in its
// own transactions), and a record of what was written, per aggregate, for the stream checks.
#pragma once

#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <map>
#include <mutex>
#include <pqxx/pqxx>
#include <stdexcept>
#include <string>
#include <vector>

#include "stream_reader.h"
#include "txcoord/outbox/outbox.h"
#include "txcoord/outbox/source.h"
#include "txcoord/testing/postgres_server.h"

namespace txcoord::outbox::testing {

inline v1::OutboxEvent MakeEvent(const std::string& aggregate_type, const std::string& aggregate_id,
                                 int n) {
  v1::OutboxEvent e;
  e.set_aggregate_type(aggregate_type);
  e.set_aggregate_id(aggregate_id);
  e.set_event_type("Changed");
  e.set_payload(R"({"aggregate":")" + aggregate_id + R"(","n":)" + std::to_string(n) + "}");
  (*e.mutable_headers())["content-type"] = "application/json";
  return e;
}

// Thread-safe record of appended events: aggregate "type/id" -> event ids in append order.
class Written {
 public:
  void Add(const v1::OutboxEvent& e, const std::string& event_id) {
    std::lock_guard lock(mu_);
    events_[e.aggregate_type() + "/" + e.aggregate_id()].push_back(event_id);
    ++count_;
  }
  ExpectedEvents Snapshot() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  size_t count() const {
    std::lock_guard lock(mu_);
    return count_;
  }

 private:
  mutable std::mutex mu_;
  ExpectedEvents events_;
  size_t count_ = 0;
};

class SqliteOutbox {
 public:
  SqliteOutbox() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "relay-sqlite-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp");
    dir_ = tmpl;
    path_ = dir_ + "/service.db";
    sqlite3* db = Open();
    Exec(db, "PRAGMA journal_mode=WAL");
    if (!EnsureSchema(db).ok()) throw std::runtime_error("EnsureSchema");
    sqlite3_close(db);
  }
  ~SqliteOutbox() { std::filesystem::remove_all(dir_); }

  const std::string& path() const { return path_; }
  std::string Uri() const { return "sqlite://" + path_; }
  SourceConfig Config() const { return SqliteSourceConfig{path_}; }

  // A connection of the service's own; each writer thread opens one.
  sqlite3* Open() const {
    sqlite3* db = nullptr;
    if (sqlite3_open(path_.c_str(), &db) != SQLITE_OK) throw std::runtime_error("sqlite3_open");
    sqlite3_busy_timeout(db, 10000);
    return db;
  }

  // Appends `events` in one transaction on `db`, recording them in `written` after COMMIT.
  void Write(sqlite3* db, const std::vector<v1::OutboxEvent>& events, Written* written) const {
    Exec(db, "BEGIN IMMEDIATE");
    std::vector<std::string> ids;
    for (const auto& e : events) {
      auto id = Append(db, e);
      if (!id.ok()) throw std::runtime_error(id.status().ToString());
      ids.push_back(*id);
    }
    Exec(db, "COMMIT");
    if (written != nullptr) {
      for (size_t i = 0; i < events.size(); ++i) written->Add(events[i], ids[i]);
    }
  }

  int64_t Count(const std::string& sql) const {
    sqlite3* db = Open();
    sqlite3_stmt* s = nullptr;
    int64_t n = -1;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
      n = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
  }
  int64_t Unpublished() const {
    return Count("SELECT count(*) FROM txcoord_outbox WHERE published_at IS NULL");
  }
  // The table's own account of each aggregate's events, in id order: the order the relay must
  // keep. (With several writers per aggregate, the order writers saw their commits end in can
  // differ from id order.)
  void AddExpected(ExpectedEvents& expected) const {
    sqlite3* db = Open();
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db,
                       "SELECT aggregate_type || '/' || aggregate_id, event_id FROM txcoord_outbox "
                       "ORDER BY id",
                       -1, &s, nullptr);
    while (sqlite3_step(s) == SQLITE_ROW) {
      expected[reinterpret_cast<const char*>(sqlite3_column_text(s, 0))].push_back(
          reinterpret_cast<const char*>(sqlite3_column_text(s, 1)));
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
  }
  void Run(const std::string& sql) const {
    sqlite3* db = Open();
    Exec(db, sql);
    sqlite3_close(db);
  }

  static void Exec(sqlite3* db, const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      const std::string why = err != nullptr ? err : "?";
      sqlite3_free(err);
      throw std::runtime_error(sql + ": " + why);
    }
  }

 private:
  std::string dir_;
  std::string path_;
};

class PostgresOutbox {
 public:
  explicit PostgresOutbox(
      txcoord::testing::PostgresServer& server = txcoord::testing::SharedPostgres())
      : server_(server), db_(server.CreateDatabase("relay").value()) {
    pqxx::connection c(ConnInfo());
    pqxx::work w(c);
    if (!EnsureSchema(w).ok()) throw std::runtime_error("EnsureSchema");
    w.commit();
  }
  std::string ConnInfo() const { return server_.ConnInfo(db_); }
  std::string Uri() const { return server_.Uri(db_); }
  SourceConfig Config() const { return PostgresSourceConfig{ConnInfo()}; }

  void Write(pqxx::connection& c, const std::vector<v1::OutboxEvent>& events,
             Written* written) const {
    pqxx::work w(c);
    std::vector<std::string> ids;
    for (const auto& e : events) {
      auto id = Append(w, e);
      if (!id.ok()) throw std::runtime_error(id.status().ToString());
      ids.push_back(*id);
    }
    w.commit();
    if (written != nullptr) {
      for (size_t i = 0; i < events.size(); ++i) written->Add(events[i], ids[i]);
    }
  }
  int64_t Count(const std::string& sql) const {
    pqxx::connection c(ConnInfo());
    pqxx::nontransaction n(c);
    return n.exec1(sql)[0].as<int64_t>();
  }
  int64_t Unpublished() const {
    return Count("SELECT count(*) FROM txcoord_outbox WHERE published_at IS NULL");
  }
  // As SqliteOutbox::AddExpected.
  void AddExpected(ExpectedEvents& expected) const {
    pqxx::connection c(ConnInfo());
    pqxx::nontransaction n(c);
    for (const auto& row : n.exec("SELECT aggregate_type || '/' || aggregate_id, event_id FROM "
                                  "txcoord_outbox ORDER BY id")) {
      expected[row[0].as<std::string>()].push_back(row[1].as<std::string>());
    }
  }
  void Run(const std::string& sql) const {
    pqxx::connection c(ConnInfo());
    pqxx::nontransaction n(c);
    n.exec(sql);
  }

 private:
  txcoord::testing::PostgresServer& server_;
  std::string db_;
};

}  // namespace txcoord::outbox::testing
