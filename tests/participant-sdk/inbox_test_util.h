// Helpers for the inbox consumer's tests: a stream of their own on a nats-server, events
// published the way txrelay publishes them, and a SQLite replica the handler keeps.
#pragma once

#include <nats/nats.h>
#include <sqlite3.h>

#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>

#include "stream_reader.h"
#include "txcoord/participant/inbox.h"

namespace txcoord::participant::testing {

// An event of the test workload: set `key` to `value`, as of `version` (which grows per key).
struct KeyValue {
  std::string key;
  int64_t value = 0;
  int64_t version = 0;
};

inline std::string Payload(const KeyValue& kv) {
  return kv.key + " " + std::to_string(kv.value) + " " + std::to_string(kv.version);
}

inline bool ParsePayload(const std::string& payload, KeyValue& kv) {
  char key[128];
  long long value = 0, version = 0;
  if (std::sscanf(payload.c_str(), "%127s %lld %lld", key, &value, &version) != 3) return false;
  kv = {key, value, version};
  return true;
}

// A connection to NATS with a JetStream context, for publishing test events.
class Publisher {
 public:
  explicit Publisher(const std::string& url) {
    if (natsConnection_ConnectTo(&nc_, url.c_str()) != NATS_OK ||
        natsConnection_JetStream(&js_, nc_, nullptr) != NATS_OK) {
      throw std::runtime_error("connect to NATS at " + url);
    }
  }
  ~Publisher() {
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
  }
  void CreateStream(const std::string& name) {
    if (outbox::testing::AddStream(js_, name) != NATS_OK) {
      throw std::runtime_error("create stream " + name);
    }
  }
  // Publishes as txrelay would: subject {stream}.item.Set, Nats-Msg-Id and Tx-* headers.
  void Publish(const std::string& stream, const std::string& event_id, const KeyValue& kv) {
    const std::string subject = stream + ".item.Set";
    const std::string body = Payload(kv);
    natsMsg* msg = nullptr;
    natsMsg_Create(&msg, subject.c_str(), nullptr, body.data(), static_cast<int>(body.size()));
    natsMsgHeader_Set(msg, "Nats-Msg-Id", event_id.c_str());
    natsMsgHeader_Set(msg, "Tx-Event-Id", event_id.c_str());
    natsMsgHeader_Set(msg, "Tx-Event-Type", "Set");
    natsMsgHeader_Set(msg, "Tx-Aggregate-Type", "item");
    natsMsgHeader_Set(msg, "Tx-Aggregate-Id", kv.key.c_str());
    const natsStatus s = js_PublishMsg(nullptr, js_, msg, nullptr, nullptr);
    natsMsg_Destroy(msg);
    if (s != NATS_OK) throw std::runtime_error("publish " + event_id);
  }
  jsCtx* js() { return js_; }

 private:
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
};

// The replica: `replica` keeps each key's value of the highest version seen (older versions are
// stale and ignored), `applied` counts how often each event's effect was committed.
inline void CreateReplicaTables(sqlite3* db) {
  const char* sql =
      "PRAGMA journal_mode=WAL;"
      "CREATE TABLE IF NOT EXISTS replica (key TEXT PRIMARY KEY, value INTEGER NOT NULL, "
      "version INTEGER NOT NULL);"
      "CREATE TABLE IF NOT EXISTS applied (event_id TEXT PRIMARY KEY, times INTEGER NOT NULL);";
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
    throw std::runtime_error(sqlite3_errmsg(db));
  }
}

inline Status ApplyToReplica(sqlite3* db, const InboxEvent& event) {
  KeyValue kv;
  if (!ParsePayload(event.payload, kv)) {
    return Status::InvalidArgument("payload \"" + event.payload + "\" is not KEY VALUE VERSION");
  }
  const std::string sql =
      "INSERT INTO applied (event_id, times) VALUES ('" + event.event_id +
      "', 1) ON CONFLICT (event_id) DO UPDATE SET times = times + 1;"
      "INSERT INTO replica (key, value, version) VALUES ('" +
      kv.key + "', " + std::to_string(kv.value) + ", " + std::to_string(kv.version) +
      ") ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version "
      "WHERE excluded.version > replica.version;";
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    const std::string why = err != nullptr ? err : "?";
    sqlite3_free(err);
    return Status::Unavailable(why);
  }
  return Status::Ok();
}

inline std::map<std::string, int64_t> Replica(sqlite3* db) {
  std::map<std::string, int64_t> out;
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(db, "SELECT key, value FROM replica", -1, &s, nullptr);
  while (sqlite3_step(s) == SQLITE_ROW) {
    out[reinterpret_cast<const char*>(sqlite3_column_text(s, 0))] = sqlite3_column_int64(s, 1);
  }
  sqlite3_finalize(s);
  return out;
}

inline int64_t QueryInt(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  int64_t n = -1;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK &&
      sqlite3_step(s) == SQLITE_ROW) {
    n = sqlite3_column_int64(s, 0);
  }
  sqlite3_finalize(s);
  return n;
}

}  // namespace txcoord::participant::testing
