// The PostgreSQL backend of the transaction log: for production and for several coordinator
// instances sharing one store.
//
// Durability: a COMMIT returns after PostgreSQL flushed its WAL (synchronous_commit is forced
// on for the log's sessions when the server default is off). Group commit: appends share one
// transaction, built as a handful of statements whatever the group's size (one SELECT ... FOR
// UPDATE of the touched summaries, one multi-row INSERT of records, one statement per summary
// change), so a group costs about four round trips and one WAL flush.
// Several instances: the summaries are locked in gtid order before the rules run, so appends to
// one transaction from different instances serialize; two instances racing to begin the same
// gtid collide on the primary key, and the loser retries its group, now seeing the winner's row
// and answering kAlreadyExists for that one append.
// Connections: one writer (under write_mu_), a pool of readers; a broken connection is dropped
// and a new one made on the next call, so the log works again once the server is back.
#include <cctype>
#include <pqxx/pqxx>

#include "log_internal.h"

namespace txcoord::coordinator::internal {
namespace {

constexpr const char* kPostgresMigrations[] = {
    // 0 -> 1
    R"sql(
    CREATE TABLE txcoord_tx (
      gtid           TEXT COLLATE "C" PRIMARY KEY,
      protocol       TEXT    NOT NULL,
      state          TEXT    NOT NULL,
      decision       INTEGER NOT NULL DEFAULT 0,
      created_at_ms  BIGINT  NOT NULL,
      updated_at_ms  BIGINT  NOT NULL,
      deadline_ms    BIGINT,
      finished_at_ms BIGINT,
      record_count   BIGINT  NOT NULL
    );
    CREATE TABLE txcoord_tx_record (
      gtid  TEXT COLLATE "C" NOT NULL,
      seq   BIGINT NOT NULL,
      kind  TEXT   NOT NULL,
      body  BYTEA  NOT NULL,
      crc   BIGINT NOT NULL,
      PRIMARY KEY (gtid, seq)
    );
    )sql",
    // 1 -> 2: the same in both backends.
    kIndexMigrationSql,
    // 2 -> 3: nothing here. Version 3 re-keys SQLite's records by an increasing internal id for
    // page locality; PostgreSQL already appends every new row version at the end of its heap,
    // and its group commit is bound by round trips, not by pages written.
    "SELECT 1",
};
static_assert(std::size(kPostgresMigrations) == kLogSchemaVersion);

// Any fixed key: serializes schema migration among instances opening the same database.
constexpr int64_t kMigrationLockKey = 0x7478636f6f7264;  // "txcoord"

// Who uses the store: a session-level advisory lock on the writer's session, for as long as the
// session lives. Every txcoord instance holds it shared; an offline tool (txctl --store) holds
// it exclusive. So txctl offline refuses while any txcoord runs on the store, and a txcoord
// cannot start, or write again after a reconnect, while txctl works offline.
constexpr int64_t kPresenceLockKey = 0x7478636f6f7265;  // "txcoore"

// The presence lock is held the other way (see kPresenceLockKey).
class StoreInUse : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Reads see one snapshot: a summary and the records read after it agree. (libpqxx 6's
// read_transaction is only READ COMMITTED.)
using SnapshotRead = pqxx::transaction<pqxx::repeatable_read, pqxx::read_only>;

constexpr const char* kSummaryColumns =
    "gtid, protocol, state, decision, created_at_ms, updated_at_ms, deadline_ms, finished_at_ms, "
    "record_count";

std::string PercentDecoded(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// The password a libpq connection string carries, in URI form (user:PASSWORD@host, or
// ?password=) or key=value form (password=PASSWORD or password='...'); empty when none.
std::string PasswordOf(std::string_view conninfo) {
  const size_t scheme = conninfo.find("://");
  if (scheme != std::string_view::npos) {
    const size_t start = scheme + 3;
    const size_t end = conninfo.find_first_of("/?", start);
    const std::string_view authority = conninfo.substr(start, end - start);
    const size_t at = authority.rfind('@');
    if (at != std::string_view::npos) {
      const std::string_view userinfo = authority.substr(0, at);
      const size_t colon = userinfo.find(':');
      if (colon != std::string_view::npos) return std::string(userinfo.substr(colon + 1));
    }
  }
  const size_t key = conninfo.find("password=");
  if (key == std::string_view::npos) return "";
  std::string_view value = conninfo.substr(key + 9);
  if (value.starts_with('\'')) {
    value.remove_prefix(1);
    return std::string(value.substr(0, value.find('\'')));
  }
  return std::string(value.substr(0, value.find_first_of(" &")));
}

// Error texts from libpq may quote the connection string, or a piece of it.
std::string Redacted(std::string message, std::string_view conninfo) {
  const std::string password = PasswordOf(conninfo);
  for (const std::string& secret : {password, PercentDecoded(password)}) {
    if (secret.empty()) continue;
    for (size_t at = message.find(secret); at != std::string::npos;
         at = message.find(secret, at + 3)) {
      message.replace(at, secret.size(), "***");
    }
  }
  return message;
}

// Turns what libpqxx threw into a Status, by what the caller may assume.
Status FromException(const std::exception& e, std::string_view what, std::string_view conninfo) {
  const std::string msg = Redacted(std::string(what) + ": " + e.what(), conninfo);
  if (dynamic_cast<const StoreInUse*>(&e) != nullptr) return Status::Unavailable(msg);
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
    return Status::UnknownOutcome(msg + " (the connection broke during commit)");
  }
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) {
    return Status::Unavailable("PostgreSQL store unreachable: " + msg);
  }
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
    const std::string& state = sql->sqlstate();
    // 08: connection exception; 57: operator intervention (shutdown, statement timeout);
    // 53: out of resources; 40: serialization failure or deadlock; 55P03: lock timeout.
    if (state.starts_with("08") || state.starts_with("57") || state.starts_with("53") ||
        state.starts_with("40") || state == "55P03") {
      return Status::Unavailable(msg);
    }
  }
  return Status::Internal(msg);
}

bool IsRetryableConflict(const std::exception& e) {
  return dynamic_cast<const pqxx::unique_violation*>(&e) != nullptr ||
         dynamic_cast<const pqxx::transaction_rollback*>(&e) != nullptr;
}

bool IsConnectionLoss(const std::exception& e) {
  return dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr ||
         dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr;
}

std::optional<int64_t> OptMillis(const std::optional<Timestamp>& t) {
  return t ? std::optional<int64_t>(ToMillis(*t)) : std::nullopt;
}

TransactionSummary SummaryFromRow(const pqxx::row& row) {
  TransactionSummary t;
  t.gtid = row[0].as<std::string>();
  t.protocol = row[1].as<std::string>();
  t.state = row[2].as<std::string>();
  t.decision = static_cast<v1::Outcome>(row[3].as<int>());
  t.created_at = FromMillis(row[4].as<int64_t>());
  t.updated_at = FromMillis(row[5].as<int64_t>());
  if (!row[6].is_null()) t.deadline = FromMillis(row[6].as<int64_t>());
  if (!row[7].is_null()) t.finished_at = FromMillis(row[7].as<int64_t>());
  t.record_count = row[8].as<int64_t>();
  return t;
}

std::string SqlOptInt(const std::optional<int64_t>& v) {
  return v ? std::to_string(*v) : std::string("NULL");
}

// Adds libpq settings the log relies on unless the operator set them: a bounded connect time,
// TCP keepalives (an idle connection to a vanished server) and a TCP user timeout (unacknowledged
// data to one), so that an append against a vanished server fails instead of hanging.
std::string WithDefaults(const std::string& conninfo) {
  static constexpr std::pair<const char*, const char*> kDefaults[] = {
      {"connect_timeout", "5"},
      {"keepalives_idle", "10"},
      {"keepalives_interval", "5"},
      {"keepalives_count", "3"},
      {"tcp_user_timeout", "30000"}};
  const bool uri = conninfo.starts_with("postgresql://") || conninfo.starts_with("postgres://");
  std::string out = conninfo;
  for (const auto& [key, value] : kDefaults) {
    if (conninfo.find(key) != std::string::npos) continue;
    if (uri) {
      out += out.find('?') == std::string::npos ? '?' : '&';
    } else {
      out += ' ';
    }
    out += std::string(key) + "=" + value;
  }
  return out;
}

std::unique_ptr<pqxx::connection> Connect(const std::string& conninfo) {
  auto c = std::make_unique<pqxx::connection>(WithDefaults(conninfo));
  // The log is only durable if commits wait for the WAL flush.
  pqxx::nontransaction n(*c);
  const auto mode = n.exec1("SHOW synchronous_commit")[0].as<std::string>();
  if (mode == "off") n.exec0("SET synchronous_commit TO on");
  // A lock held elsewhere (another instance, an operator's session) must not block the group
  // leader, and with it every append of this process, without bound: fail and let callers retry.
  n.exec0("SET statement_timeout TO '30s'");
  n.exec0("SET lock_timeout TO '10s'");
  return c;
}

// Takes the presence lock on `c` (kPresenceLockKey); throws StoreInUse when it is held the other
// way. A try, never a wait: neither a txcoord nor txctl should hang behind the other.
void TakePresence(pqxx::connection& c, bool exclusive) {
  pqxx::nontransaction n(c);
  const bool taken = n.exec_params(exclusive ? "SELECT pg_try_advisory_lock($1)"
                                             : "SELECT pg_try_advisory_lock_shared($1)",
                                   kPresenceLockKey)[0][0]
                         .as<bool>();
  if (taken) return;
  if (exclusive) {
    throw StoreInUse(
        "the PostgreSQL store is in use by another txcoord (a txcoord instance holds its "
        "presence lock); stop every txcoord on it first");
  }
  throw StoreInUse(
      "the PostgreSQL store is held by an offline txctl (txctl --store holds its presence "
      "lock); wait until it has finished");
}

// The writer's session: set up as Connect does, holding the presence lock.
std::unique_ptr<pqxx::connection> ConnectWriter(const PostgresLogConfig& config) {
  auto c = Connect(config.conninfo);
  TakePresence(*c, config.exclusive);
  return c;
}

class PostgresLog final : public TransactionLog {
 public:
  PostgresLog(PostgresLogConfig config, std::unique_ptr<pqxx::connection> writer)
      : config_(std::move(config)),
        writer_(std::move(writer)),
        committer_(config_.max_batch, [this](auto batch) { CommitBatch(batch); }) {}

  // The presence lock would go with the session, but the server ends a closed session in its
  // own time: whoever opens the store right after this returns could still find it taken. So
  // the held appends are committed first, then the lock is let go explicitly.
  ~PostgresLog() override {
    committer_.Close();
    std::lock_guard lock(write_mu_);
    if (writer_ == nullptr) return;
    try {
      pqxx::nontransaction n(*writer_);
      n.exec("SELECT pg_advisory_unlock_all()");
    } catch (const std::exception&) {
      // The session is gone already, and its locks with it.
    }
  }

  Status Append(std::vector<v1::LogRecord> records) override {
    return committer_.Submit(std::move(records));
  }

  void AppendSoon(std::vector<v1::LogRecord> records, std::function<void(Status)> done) override {
    committer_.SubmitSoon(std::move(records), std::move(done));
  }

  Result<LoggedTransaction> Read(std::string_view gtid) override {
    return WithReader<LoggedTransaction>("read " + std::string(gtid),
                                         [&](SnapshotRead& t) { return ReadIn(t, gtid); });
  }

  Result<std::vector<LoggedTransaction>> ScanUnfinished(std::string_view after,
                                                        int limit) override {
    TXCOORD_RETURN_IF_ERROR(CheckLimit(limit));
    using Out = std::vector<LoggedTransaction>;
    return WithReader<Out>("scan unfinished", [&](SnapshotRead& t) -> Result<Out> {
      const pqxx::result rows = t.exec_params(
          "SELECT gtid FROM txcoord_tx WHERE finished_at_ms IS NULL AND gtid > $1 "
          "ORDER BY gtid LIMIT $2",
          std::string(after), limit);
      Out out;
      for (const auto& row : rows) {
        auto tx = ReadIn(t, row[0].as<std::string>());
        if (!tx.ok()) return tx.status();
        out.push_back(std::move(tx).value());
      }
      return out;
    });
  }

  Result<SummaryPage> List(const ListQuery& q) override {
    TXCOORD_RETURN_IF_ERROR(CheckLimit(q.limit));
    return WithReader<SummaryPage>("list", [&](SnapshotRead& t) -> Result<SummaryPage> {
      std::optional<int64_t> cursor_ms;
      if (!q.after.empty()) {
        const pqxx::result at =
            t.exec_params("SELECT created_at_ms FROM txcoord_tx WHERE gtid = $1", q.after);
        if (at.empty()) {
          return Status::InvalidArgument("cursor `after` names transaction " + q.after +
                                         ", which does not exist (purged?); start from the top");
        }
        cursor_ms = at[0][0].as<int64_t>();
      }
      std::optional<int64_t> before;
      if (q.created_before) before = ToMillis(*q.created_before);
      const pqxx::result rows =
          t.exec_params(std::string("SELECT ") + kSummaryColumns +
                            " FROM txcoord_tx WHERE ($1 = '' OR state = $1)"
                            " AND ($2::bigint IS NULL OR created_at_ms < $2::bigint)"
                            " AND ($3::bigint IS NULL OR created_at_ms < $3::bigint"
                            "      OR (created_at_ms = $3::bigint AND gtid < $4))"
                            " ORDER BY created_at_ms DESC, gtid DESC LIMIT $5",
                        q.state, before, cursor_ms, q.after, q.limit + 1);
      SummaryPage page;
      for (const auto& row : rows) page.transactions.push_back(SummaryFromRow(row));
      if (static_cast<int>(page.transactions.size()) > q.limit) {
        page.transactions.pop_back();
        page.next = page.transactions.back().gtid;
      }
      return page;
    });
  }

  using TransactionLog::Purge;
  Result<int64_t> Purge(Timestamp finished_before, int64_t max_count) override {
    int64_t purged = 0;
    while (purged < max_count) {
      const int64_t want = std::min(kPurgeChunk, max_count - purged);
      std::lock_guard lock(write_mu_);
      try {
        if (!writer_) writer_ = ConnectWriter(config_);
        pqxx::work w(*writer_);
        const pqxx::result r = w.exec_params(
            "WITH doomed AS (SELECT gtid FROM txcoord_tx WHERE finished_at_ms IS NOT NULL AND "
            "  finished_at_ms < $1 LIMIT $2 FOR UPDATE SKIP LOCKED), "
            "gone AS (DELETE FROM txcoord_tx_record WHERE gtid IN (SELECT gtid FROM doomed)) "
            "DELETE FROM txcoord_tx WHERE gtid IN (SELECT gtid FROM doomed) RETURNING gtid",
            ToMillis(finished_before), want);
        w.commit();
        purged += static_cast<int64_t>(r.size());
        if (static_cast<int64_t>(r.size()) < want) break;
      } catch (const std::exception& e) {
        if (IsConnectionLoss(e)) writer_.reset();
        return FromException(e, "purge", config_.conninfo);
      }
    }
    return purged;
  }

  Result<int64_t> CountPurgeable(Timestamp finished_before) override {
    const int64_t before = ToMillis(finished_before);
    return WithReader<int64_t>("count purgeable", [before](SnapshotRead& t) -> Result<int64_t> {
      const pqxx::result r = t.exec_params(
          "SELECT count(*) FROM txcoord_tx WHERE finished_at_ms IS NOT NULL AND "
          "finished_at_ms < $1",
          before);
      return r[0][0].as<int64_t>();
    });
  }

  Status Ping() override {
    auto r = WithReader<bool>("ping", [](SnapshotRead& t) -> Result<bool> {
      t.exec("SELECT 1");
      return true;
    });
    return r.ok() ? Status::Ok() : r.status();
  }

  LogStats Stats() const override { return committer_.stats(); }

 private:
  static constexpr int64_t kPurgeChunk = 500;
  static constexpr size_t kMaxIdleReaders = 8;
  static constexpr int kMaxConflictRetries = 5;

  // Runs fn in a read-only snapshot on a pooled connection; a connection that failed is dropped.
  template <typename T, typename Fn>
  Result<T> WithReader(const std::string& what, Fn&& fn) {
    std::unique_ptr<pqxx::connection> conn;
    {
      std::lock_guard lock(readers_mu_);
      if (!idle_readers_.empty()) {
        conn = std::move(idle_readers_.back());
        idle_readers_.pop_back();
      }
    }
    try {
      if (!conn) conn = Connect(config_.conninfo);
      Result<T> out = [&] {
        SnapshotRead t(*conn);
        return fn(t);
      }();
      std::lock_guard lock(readers_mu_);
      if (idle_readers_.size() < kMaxIdleReaders) idle_readers_.push_back(std::move(conn));
      return out;
    } catch (const std::exception& e) {
      return FromException(e, what, config_.conninfo);  // conn is dropped: it may be broken
    }
  }

  static Result<LoggedTransaction> ReadIn(pqxx::transaction_base& t, std::string_view gtid) {
    const std::string g(gtid);
    const pqxx::result s = t.exec_params(
        std::string("SELECT ") + kSummaryColumns + " FROM txcoord_tx WHERE gtid = $1", g);
    if (s.empty()) return Status::NotFound("transaction " + g + " does not exist");
    LoggedTransaction tx;
    tx.summary = SummaryFromRow(s[0]);
    const pqxx::result rows = t.exec_params(
        "SELECT seq, body, crc FROM txcoord_tx_record WHERE gtid = $1 ORDER BY seq", g);
    for (const auto& row : rows) {
      const pqxx::binarystring body(row[1]);
      auto record =
          DecodeRecord(g, row[0].as<int64_t>(),
                       std::string_view(reinterpret_cast<const char*>(body.data()), body.size()),
                       static_cast<uint32_t>(row[2].as<int64_t>()));
      if (!record.ok()) return record.status();
      tx.records.push_back(std::move(record).value());
    }
    if (tx.records.empty() || !tx.records.front().has_begin() ||
        static_cast<int64_t>(tx.records.size()) != tx.summary.record_count) {
      return Status::Corruption("transaction " + g + " has " + std::to_string(tx.records.size()) +
                                " records, its summary " + std::to_string(tx.summary.record_count));
    }
    return tx;
  }

  // Runs on the group-commit leader's thread; see GroupCommitter.
  void CommitBatch(std::span<PendingAppend* const> batch) {
    std::lock_guard lock(write_mu_);
    const std::vector<std::string> gtids = BatchGtids(batch);
    for (int attempt = 1;; ++attempt) {
      for (PendingAppend* p : batch) p->status = Status::Ok();
      try {
        if (!writer_) writer_ = ConnectWriter(config_);
        pqxx::work w(*writer_);
        TryCommitBatch(w, batch, gtids);
        return;
      } catch (const std::exception& e) {
        if (IsConnectionLoss(e)) writer_.reset();
        if (IsRetryableConflict(e) && attempt < kMaxConflictRetries) continue;
        const Status s = FromException(e, "append", config_.conninfo);
        for (PendingAppend* p : batch) {
          if (p->status.ok()) p->status = s;
        }
        return;
      }
    }
  }

  // Throws whatever libpqxx throws; the caller classifies it.
  static void TryCommitBatch(pqxx::work& w, std::span<PendingAppend* const> batch,
                             const std::vector<std::string>& gtids) {
    std::string in_list;
    for (const auto& g : gtids) {
      if (!in_list.empty()) in_list += ',';
      in_list += w.quote(g);
    }
    SummaryMap summaries;
    for (const auto& g : gtids) summaries[g] = std::nullopt;
    const pqxx::result rows =
        w.exec(std::string("SELECT ") + kSummaryColumns + " FROM txcoord_tx WHERE gtid IN (" +
               in_list + ") ORDER BY gtid FOR UPDATE");
    for (const auto& row : rows) {
      TransactionSummary s = SummaryFromRow(row);
      summaries[s.gtid] = std::move(s);
    }
    const SummaryMap before = summaries;

    std::vector<EncodedRecord> encoded;
    const std::vector<std::string> changed = ApplyBatch(batch, &summaries, &encoded);
    if (encoded.empty()) return;  // every append was refused: nothing to write

    // One statement for all records, one per summary change; values are quoted by libpq.
    std::string sql = "INSERT INTO txcoord_tx_record (gtid, seq, kind, body, crc) VALUES ";
    for (size_t i = 0; i < encoded.size(); ++i) {
      const EncodedRecord& e = encoded[i];
      if (i > 0) sql += ',';
      sql += '(' + w.quote(e.gtid) + ',' + std::to_string(e.seq) + ',' + w.quote(e.kind) + ',' +
             w.quote_raw(reinterpret_cast<const unsigned char*>(e.body.data()), e.body.size()) +
             ',' + std::to_string(e.crc) + ')';
    }
    sql += ";\n";
    for (const auto& g : changed) {
      const TransactionSummary& t = *summaries.at(g);
      if (!before.at(g).has_value()) {
        // A plain INSERT: if another instance began this gtid meanwhile, the primary key
        // refuses it and the group is retried.
        sql += std::string("INSERT INTO txcoord_tx (") + kSummaryColumns + ") VALUES (" +
               w.quote(t.gtid) + ',' + w.quote(t.protocol) + ',' + w.quote(t.state) + ',' +
               std::to_string(t.decision) + ',' + std::to_string(ToMillis(t.created_at)) + ',' +
               std::to_string(ToMillis(t.updated_at)) + ',' + SqlOptInt(OptMillis(t.deadline)) +
               ',' + SqlOptInt(OptMillis(t.finished_at)) + ',' + std::to_string(t.record_count) +
               ");\n";
      } else {
        sql += "UPDATE txcoord_tx SET state = " + w.quote(t.state) +
               ", decision = " + std::to_string(t.decision) +
               ", updated_at_ms = " + std::to_string(ToMillis(t.updated_at)) +
               ", finished_at_ms = " + SqlOptInt(OptMillis(t.finished_at)) +
               ", record_count = " + std::to_string(t.record_count) +
               " WHERE gtid = " + w.quote(t.gtid) + ";\n";
      }
    }
    w.exec(sql);
    w.commit();
  }

  const PostgresLogConfig config_;
  std::mutex write_mu_;
  std::unique_ptr<pqxx::connection> writer_;  // GUARDED_BY(write_mu_); null after a failure
  std::mutex readers_mu_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_readers_;  // GUARDED_BY(readers_mu_)
  GroupCommitter committer_;
};

Status Migrate(pqxx::connection& c) {
  pqxx::work w(c);
  w.exec_params("SELECT pg_advisory_xact_lock($1)", kMigrationLockKey);
  w.exec0("CREATE TABLE IF NOT EXISTS txcoord_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
  const pqxx::result r = w.exec("SELECT value FROM txcoord_meta WHERE key = 'schema_version'");
  const int version = r.empty() ? 0 : std::stoi(r[0][0].as<std::string>());
  if (version > kLogSchemaVersion) {
    return Status::Conflict("store schema version " + std::to_string(version) +
                            " is newer than this txcoord supports (" +
                            std::to_string(kLogSchemaVersion) + "); upgrade txcoord");
  }
  for (int v = version; v < kLogSchemaVersion; ++v) {
    w.exec(kPostgresMigrations[v]);
    w.exec_params(
        "INSERT INTO txcoord_meta (key, value) VALUES ('schema_version', $1) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        std::to_string(v + 1));
  }
  w.commit();
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<TransactionLog>> OpenPostgresLog(const PostgresLogConfig& config) {
  try {
    auto conn = ConnectWriter(config);
    TXCOORD_RETURN_IF_ERROR(Migrate(*conn));
    return std::unique_ptr<TransactionLog>(std::make_unique<PostgresLog>(config, std::move(conn)));
  } catch (const std::exception& e) {
    return FromException(e, "open PostgreSQL store", config.conninfo);
  }
}

}  // namespace txcoord::coordinator::internal
