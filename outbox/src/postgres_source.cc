// The PostgreSQL outbox source. See source.h for the rules every source follows, and
// docs/outbox-relay.md for why a missing id holds back the rows after it.
#include <algorithm>
#include <optional>
#include <pqxx/pqxx>

#include "source_internal.h"
#include "txcoord/outbox/outbox.h"

namespace txcoord::outbox {
namespace {

// How often a read waiting behind a missing id looks again when nothing else wakes it.
constexpr std::chrono::milliseconds kGapRecheck{20};

// One advisory lock key per database: a database holds one txcoord_outbox table.
constexpr int64_t kLeaderLockKey = 0x7478726c6179;  // "txrlay"

// Session settings for the relay's connection: TCP keepalives so that a partitioned leader's
// session (and with it its advisory lock) ends within seconds, not hours; a bound on every
// statement and every wait for a lock.
std::string WithRelaySettings(const std::string& conninfo) {
  const bool uri = conninfo.starts_with("postgresql://") || conninfo.starts_with("postgres://");
  const char* kSettings[][2] = {
      {"application_name", "txrelay"}, {"connect_timeout", "5"},     {"keepalives", "1"},
      {"keepalives_idle", "5"},        {"keepalives_interval", "2"}, {"keepalives_count", "3"},
      {"tcp_user_timeout", "10000"}};
  std::string out = conninfo;
  for (const auto& [key, value] : kSettings) {
    if (conninfo.find(std::string(key) + "=") != std::string::npos) continue;  // given: keep it
    if (uri) {
      out += (out.find('?') == std::string::npos ? "?" : "&");
    } else {
      out += ' ';
    }
    out += std::string(key) + "=" + value;
  }
  return out;
}

class WakeReceiver final : public pqxx::notification_receiver {
 public:
  WakeReceiver(pqxx::connection_base& c, bool& flag)
      : pqxx::notification_receiver(c, "txcoord_outbox"), flag_(flag) {}
  void operator()(const std::string&, int) override { flag_ = true; }

 private:
  bool& flag_;
};

OutboxRow RowFrom(const pqxx::row& r, int first) {
  OutboxRow row;
  row.id = r[first].as<int64_t>();
  row.event_id = r[first + 1].as<std::string>();
  row.aggregate_type = r[first + 2].as<std::string>();
  row.aggregate_id = r[first + 3].as<std::string>();
  row.event_type = r[first + 4].as<std::string>();
  const pqxx::binarystring payload(r[first + 5]);
  row.payload = payload.str();
  row.headers_json = r[first + 6].as<std::string>();
  return row;
}

// Where reading starts after a replay: just below the lowest unpublished row. Every id below it
// is settled: this process settled ids up to its watermark (settled_up_to_ keeps that).
constexpr const char* kStartSql =
    "SELECT coalesce((SELECT min(id) - 1 FROM txcoord_outbox WHERE published_at IS NULL), "
    "(SELECT max(id) FROM txcoord_outbox), 0)";

// What a connect knows is settled: the highest published id. A relay published an id only after
// settling every id below it, so nothing below that can still arrive; above it, an invisible id
// may belong to a transaction still in flight (the relay before this one may have been waiting
// for it). Retention never removes that row (ApplyRetention), so that the fact survives; with no
// published row, 0.
constexpr const char* kSettledSql =
    "SELECT coalesce((SELECT max(id) FROM txcoord_outbox WHERE published_at IS NOT NULL), 0)";

// Missing ids above the watermark, as first seen by a read.
//
// Why the holders' locks settle a gap: INSERT takes ROW EXCLUSIVE on the table before it
// evaluates nextval(), and keeps it until its transaction ends. A missing id below `up_to` was
// taken before `up_to` was, so before the read that saw `up_to`; its transaction therefore held
// that lock then, and is among `holders` (captured after the read) unless it had already ended.
// Once none of `holders` holds a lock any more, every such transaction has ended, and a snapshot
// taken after that check shows each missing id's row if it committed: ids still missing in it
// were rolled back (or skipped by the sequence after a crash) and never will be.
struct Gap {
  int64_t first_missing = 0;
  int64_t up_to = 0;    // the highest id the gap's read saw
  std::string holders;  // virtual transaction ids then holding ROW EXCLUSIVE, as a text[] literal
};

class PostgresSource final : public OutboxSource {
 public:
  PostgresSource(PostgresSourceConfig config, std::string name)
      : config_(std::move(config)), name_(std::move(name)) {}
  ~PostgresSource() override { Close(); }

  const std::string& name() const override { return name_; }
  bool connected() const override { return conn_ != nullptr; }
  bool leading() const override { return leading_; }
  int64_t watermark() const override { return watermark_; }
  int change_fd() const override { return conn_ != nullptr ? conn_->sock() : -1; }

  Status Connect() override {
    Close();
    try {
      conn_ = std::make_unique<pqxx::connection>(WithRelaySettings(config_.conninfo));
      // Marks go over a second session, so that the server updates rows while this one reads.
      mark_conn_ = std::make_unique<pqxx::connection>(WithRelaySettings(config_.conninfo));
      for (pqxx::connection* c : {conn_.get(), mark_conn_.get()}) {
        pqxx::nontransaction n(*c);
        n.exec("SET statement_timeout = '30s'");
        n.exec("SET lock_timeout = '10s'");
      }
      {
        pqxx::work w(*conn_);
        if (Status s = EnsureSchema(w); !s.ok()) {
          Close();
          return s.WithContext("postgresql source " + name_);
        }
        w.commit();
      }
      receiver_ = std::make_unique<WakeReceiver>(*conn_, notified_);
      pqxx::nontransaction n(*conn_);
      // The generation first: a replay committed in between only rewinds once more.
      replay_generation_ =
          n.exec1("SELECT coalesce(max(id), 0) FROM txcoord_outbox_replays")[0].as<int64_t>();
      // Reading starts below the lowest unpublished row, or at the highest settled id when that
      // is lower; ids up to it are settled, above it the gap tracking decides.
      settled_up_to_ = n.exec1(kSettledSql)[0].as<int64_t>();
      watermark_ = std::min(n.exec1(kStartSql)[0].as<int64_t>(), settled_up_to_);
      gap_.reset();
      return Status::Ok();
    } catch (const std::exception& e) {
      Close();
      return Status::Unavailable("cannot connect to postgresql source " + name_ + ": " +
                                 OneLine(e.what()));
    }
  }

  void Close() override {
    // A mark still on its way is waited for: at a stop it is the last one.
    if (pending_mark_ != nullptr) {
      try {
        FinishMark();
      } catch (const std::exception&) {
        // Not marked: those rows are published again after the next connect.
      }
      pending_mark_.reset();
    }
    receiver_.reset();
    mark_conn_.reset();
    conn_.reset();
    leading_ = false;  // the advisory lock ended with the session
  }

  Result<bool> TryLead() override {
    if (conn_ == nullptr) return NotConnected();
    if (leading_) return true;
    return Guard("take the relay's advisory lock", [&]() -> Result<bool> {
      pqxx::nontransaction n(*conn_);
      leading_ = n.exec_params1("SELECT pg_try_advisory_lock($1)", kLeaderLockKey)[0].as<bool>();
      return leading_;
    });
  }

  Result<ReadResult> ReadNext(ReadLimit limit) override {
    if (conn_ == nullptr) return NotConnected();
    return Guard("read outbox rows", [&]() -> Result<ReadResult> {
      // Before the snapshot below: whether the transactions that could fill the gap have ended.
      bool gap_settled = false;
      if (gap_) {
        pqxx::nontransaction n(*conn_);
        gap_settled = n.exec_params1(
                           "SELECT count(*) = 0 FROM pg_locks WHERE "
                           "virtualtransaction = ANY($1::text[])",
                           gap_->holders)[0]
                          .as<bool>();
      }
      pqxx::result rows;
      {
        // One statement, so one snapshot, taken after the check above; in autocommit, one round
        // trip. Published rows too: only a row that is there tells a settled id from a missing
        // one. And the replay log's generation, in the same snapshot (so a replay these rows
        // come after is seen with them), on a row of its own when no outbox row is there. Rows
        // stop once the unpublished ones' payloads reach the byte bound (the row that reaches
        // it still comes); a published row comes without its payload, which nobody reads.
        pqxx::nontransaction n(*conn_);
        rows = n.exec_params(
            "SELECT g.generation, o.unpublished, o.id, o.event_id, o.aggregate_type, "
            "o.aggregate_id, o.event_type, o.payload, o.headers FROM (SELECT coalesce(max(id), 0) "
            "AS generation FROM txcoord_outbox_replays) g LEFT JOIN LATERAL (SELECT * FROM "
            "(SELECT published_at IS NULL AS unpublished, id, event_id, aggregate_type, "
            "aggregate_id, event_type, CASE WHEN published_at IS NULL THEN payload END AS payload, "
            "headers::text AS headers, coalesce(sum(CASE WHEN published_at IS NULL THEN "
            "octet_length(payload) END) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 "
            "PRECEDING), 0) AS bytes_before FROM txcoord_outbox WHERE id > $1 ORDER BY id "
            "LIMIT $2) w WHERE w.bytes_before < $3) o ON true ORDER BY o.id",
            watermark_, limit.rows, limit.payload_bytes);
      }
      ReadResult result;
      if (const int64_t generation = rows[0][0].as<int64_t>(); generation != replay_generation_) {
        // A replay made published rows unpublished: start again below the lowest of them. The
        // ids up to the old watermark stay settled; a missing one there never comes.
        pqxx::nontransaction n(*conn_);
        const int64_t start = n.exec1(kStartSql)[0].as<int64_t>();
        replay_generation_ = generation;
        settled_up_to_ = std::max(settled_up_to_, watermark_);
        watermark_ = std::min(watermark_, start);
        gap_.reset();
        result.rewound = true;
        result.more = true;
        return result;
      }
      const size_t row_count = rows[0][2].is_null() ? 0 : rows.size();
      bool new_gap = false;
      for (size_t i = 0; i < row_count; ++i) {
        const pqxx::row r = rows[static_cast<pqxx::result::size_type>(i)];
        const int64_t id = r[2].as<int64_t>();
        if (id > watermark_ + 1 && watermark_ < settled_up_to_) {
          watermark_ = std::min(id - 1, settled_up_to_);  // settled before a replay: void
        }
        if (id != watermark_ + 1) {
          const bool void_ids = gap_settled && id - 1 <= gap_->up_to;
          if (!void_ids) {
            if (!gap_ || gap_->first_missing != watermark_ + 1 || gap_settled) {
              gap_ = Gap{watermark_ + 1,
                         rows[static_cast<pqxx::result::size_type>(row_count - 1)][2].as<int64_t>(),
                         ""};
              new_gap = true;
            }
            break;
          }
        }
        watermark_ = id;
        if (r[1].as<bool>()) result.rows.push_back(RowFrom(r, 2));
      }
      if (gap_ && watermark_ >= gap_->first_missing) gap_.reset();
      if (new_gap && gap_) {
        pqxx::nontransaction n(*conn_);
        gap_->holders = n.exec1(
                             "SELECT coalesce(array_agg(DISTINCT virtualtransaction), '{}')::text "
                             "FROM pg_locks WHERE locktype = 'relation' AND relation = "
                             "'txcoord_outbox'::regclass AND mode = 'RowExclusiveLock' AND "
                             "pid IS DISTINCT FROM pg_backend_pid()")[0]
                            .as<std::string>();
      }
      // A commit that fills the gap also notifies; a rollback does not, hence the timer.
      if (gap_) result.recheck_after = kGapRecheck;
      result.more = !gap_ && (static_cast<int>(row_count) == limit.rows ||
                              ReadMayHaveMore(result.rows, limit));
      return result;
    });
  }

  Result<std::vector<OutboxRow>> ReadUnpublished(int64_t after_id, int64_t up_to_id,
                                                 ReadLimit limit) override {
    if (conn_ == nullptr) return NotConnected();
    // A sweep must not see rows as unpublished whose mark is on its way.
    if (Status s = SettleMark(); !s.ok()) return s;
    return Guard("sweep outbox rows", [&]() -> Result<std::vector<OutboxRow>> {
      pqxx::nontransaction n(*conn_);
      const pqxx::result rows = n.exec_params(
          "SELECT id, event_id, aggregate_type, aggregate_id, event_type, payload, headers FROM "
          "(SELECT id, event_id, aggregate_type, aggregate_id, event_type, payload, "
          "headers::text AS headers, coalesce(sum(octet_length(payload)) OVER (ORDER BY id ROWS "
          "BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS bytes_before FROM txcoord_outbox "
          "WHERE published_at IS NULL AND id > $1 AND id <= $2 ORDER BY id LIMIT $3) w "
          "WHERE w.bytes_before < $4 ORDER BY id",
          after_id, up_to_id, limit.rows, limit.payload_bytes);
      std::vector<OutboxRow> out;
      out.reserve(rows.size());
      for (const pqxx::row& r : rows) out.push_back(RowFrom(r, 0));
      return out;
    });
  }

  Status MarkPublished(const std::vector<int64_t>& ids) override {
    if (conn_ == nullptr) return NotConnected();
    if (ids.empty()) return Status::Ok();
    if (Status s = SettleMark(); !s.ok()) return s;
    std::string array = "{";
    for (const int64_t id : ids) {
      if (array.size() > 1) array += ',';
      array += std::to_string(id);
    }
    array += '}';
    auto done = Guard("mark rows published", [&]() -> Result<bool> {
      // One statement in autocommit: atomic. Sent on the marking session without waiting for
      // it: the relay reads and publishes meanwhile (waiting for the UPDATE of thousands of rows
      // took ~40% of a drain's time). The next mark, a sweep or Close collects its outcome. The
      // ids are numbers this process formatted, so the literal is safe.
      auto pending = std::make_unique<PendingMark>(*mark_conn_);
      pending->pipeline.insert("UPDATE txcoord_outbox SET published_at = now() WHERE id = ANY('" +
                               array + "'::bigint[]) AND published_at IS NULL");
      pending->pipeline.resume();
      pending_mark_ = std::move(pending);
      return true;
    });
    return done.ok() ? Status::Ok() : done.status();
  }

  Result<int64_t> ApplyRetention(std::chrono::seconds older_than, RetentionMode mode,
                                 int max_rows) override {
    if (conn_ == nullptr) return NotConnected();
    // This relay's own marks first, so that the highest published id below is current.
    if (Status s = SettleMark(); !s.ok()) return s;
    return Guard("apply retention", [&]() -> Result<int64_t> {
      pqxx::work w(*conn_);
      // The highest published row stays: it tells a relay that connects what is settled (see
      // kSettledSql).
      const std::string victims =
          "SELECT id FROM txcoord_outbox WHERE published_at < now() - make_interval(secs => $1) "
          "AND id < (SELECT max(id) FROM txcoord_outbox WHERE published_at IS NOT NULL) "
          "ORDER BY id LIMIT $2";
      pqxx::result r;
      if (mode == RetentionMode::kArchive) {
        w.exec(
            "CREATE TABLE IF NOT EXISTS txcoord_outbox_archive "
            "(LIKE txcoord_outbox, PRIMARY KEY (id))");
        r = w.exec_params(
            "WITH moved AS (DELETE FROM txcoord_outbox WHERE id IN (" + victims +
                ") RETURNING *) INSERT INTO txcoord_outbox_archive SELECT * FROM moved "
                "ON CONFLICT (id) DO NOTHING",
            static_cast<double>(older_than.count()), max_rows);
      } else {
        r = w.exec_params("DELETE FROM txcoord_outbox WHERE id IN (" + victims + ")",
                          static_cast<double>(older_than.count()), max_rows);
      }
      w.commit();
      return static_cast<int64_t>(r.affected_rows());
    });
  }

  Result<SourceStats> Stats() override {
    if (conn_ == nullptr) return NotConnected();
    if (Status s = SettleMark(); !s.ok()) return s;
    return Guard("read outbox stats", [&]() -> Result<SourceStats> {
      pqxx::nontransaction n(*conn_);
      const pqxx::row r = n.exec1(
          "SELECT count(*), coalesce(extract(epoch FROM now() - (SELECT created_at FROM "
          "txcoord_outbox WHERE published_at IS NULL ORDER BY id LIMIT 1)), 0)::float8 "
          "FROM txcoord_outbox WHERE published_at IS NULL");
      SourceStats stats;
      stats.pending_rows = r[0].as<int64_t>();
      stats.oldest_unpublished_age_s = r[1].as<double>();
      return stats;
    });
  }

  Result<ChangeCheck> CheckChanged() override {
    if (conn_ == nullptr) return NotConnected();
    return Guard("receive notifications", [&]() -> Result<ChangeCheck> {
      conn_->get_notifs();
      ChangeCheck check;
      check.changed = notified_;
      notified_ = false;
      return check;
    });
  }

 private:
  Status NotConnected() const {
    return Status::Unavailable("postgresql source " + name_ + " is not connected");
  }

  static std::string OneLine(std::string text) {
    for (char& c : text) {
      if (c == '\n' || c == '\r') c = ' ';
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    return text;
  }

  // Runs `body`; a libpqxx exception ends the connection (and with it the leadership), since
  // after a broken connection or a failed statement the session's state is not known.
  template <typename F>
  auto Guard(std::string_view what, F&& body) -> decltype(body()) {
    try {
      return body();
    } catch (const std::exception& e) {
      Close();
      return Status::Unavailable("postgresql source " + name_ + ": " + std::string(what) + ": " +
                                 OneLine(e.what()));
    }
  }

  // An UPDATE of published_at sent and not yet answered. Its transaction holds the connection
  // until FinishMark.
  struct PendingMark {
    explicit PendingMark(pqxx::connection& conn) : transaction(conn), pipeline(transaction) {}
    pqxx::nontransaction transaction;
    pqxx::pipeline pipeline;
  };

  // Waits for the pending mark's outcome; throws its error.
  void FinishMark() {
    std::unique_ptr<PendingMark> pending = std::move(pending_mark_);
    while (!pending->pipeline.empty()) pending->pipeline.retrieve();
  }

  // The pending mark's outcome, if one is pending; its failure closes the source.
  Status SettleMark() {
    if (pending_mark_ == nullptr) return Status::Ok();
    try {
      FinishMark();
      return Status::Ok();
    } catch (const std::exception& e) {
      Close();
      return Status::Unavailable("postgresql source " + name_ +
                                 ": mark rows published: " + OneLine(e.what()));
    }
  }

  const PostgresSourceConfig config_;
  const std::string name_;
  std::unique_ptr<pqxx::connection> conn_;
  std::unique_ptr<pqxx::connection> mark_conn_;  // MarkPublished's session
  std::unique_ptr<WakeReceiver> receiver_;       // destroyed before conn_
  std::unique_ptr<PendingMark> pending_mark_;    // destroyed before conn_
  bool notified_ = false;
  bool leading_ = false;
  int64_t watermark_ = 0;
  // Every id at or below this was settled before a replay moved the watermark back below it.
  int64_t settled_up_to_ = 0;
  int64_t replay_generation_ = 0;  // the replay log's highest id when last read
  std::optional<Gap> gap_;
};

}  // namespace

std::unique_ptr<OutboxSource> MakePostgresSource(const PostgresSourceConfig& config,
                                                 std::string name) {
  return std::make_unique<PostgresSource>(config, std::move(name));
}

}  // namespace txcoord::outbox
