#include "txcoord/participant/inbox.h"

#include <nats/nats.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <pqxx/pqxx>
#include <random>
#include <thread>

namespace txcoord::participant {
namespace {

using std::chrono::milliseconds;

constexpr const char* kSqliteInbox = R"sql(
CREATE TABLE IF NOT EXISTS txcoord_inbox (
  consumer   TEXT NOT NULL,
  event_id   TEXT NOT NULL,
  applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  PRIMARY KEY (consumer, event_id)
);
)sql";

constexpr const char* kPostgresInbox = R"sql(
CREATE TABLE IF NOT EXISTS txcoord_inbox (
  consumer   TEXT        NOT NULL,
  event_id   TEXT        NOT NULL,
  applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, event_id)
);
)sql";

// Named fault point (see outbox/src/fault_points.h, same variable): the process exits at once
// with that probability. "inbox.after_commit_before_ack": the effect is durable, the ack unsent.
void FaultPoint(const char* name) {
  static const std::string config = [] {
    const char* env = std::getenv("TXCOORD_FAULT_POINTS");
    return std::string(env != nullptr ? env : "");
  }();
  if (config.empty()) return;
  const std::string key = std::string(name) + "=";
  const size_t at = config.find(key);
  if (at == std::string::npos) return;
  const double probability = std::strtod(config.c_str() + at + key.size(), nullptr);
  thread_local std::mt19937_64 engine{std::random_device{}()};
  if (std::uniform_real_distribution<double>(0, 1)(engine) < probability) {
    static const char kMessage[] = "inbox: fault point reached, exiting\n";
    (void)!write(2, kMessage, sizeof kMessage - 1);
    _exit(86);
  }
}

std::string NatsError(natsStatus s, int js_error = 0) {
  std::string text = natsStatus_GetText(s);
  const char* last = nats_GetLastError(nullptr);
  if (last != nullptr && last[0] != '\0' && text.find(last) == std::string::npos) {
    text += std::string(" (") + last + ")";
  }
  if (js_error != 0) text += " (JetStream error " + std::to_string(js_error) + ")";
  return text;
}

bool IsName(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (const char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_')) {
      return false;
    }
  }
  return true;
}

// The outcome of one apply attempt. A failure is the handler's (it counts toward max_failures)
// or the database's (the connection, BEGIN, the inbox row, COMMIT: retried until the database is
// back, never dead-lettered, since the event itself is not at fault).
struct Attempt {
  enum class Kind { kApplied, kDuplicate, kHandlerFailed, kStoreFailed };
  Kind kind = Kind::kStoreFailed;
  Status status;

  static Attempt Handler(Status status) { return {Kind::kHandlerFailed, std::move(status)}; }
  static Attempt Store(Status status) { return {Kind::kStoreFailed, std::move(status)}; }
};

// The local database, where the effect and the inbox row commit together.
class LocalStore {
 public:
  virtual ~LocalStore() = default;
  virtual Status EnsureInbox() = 0;
  virtual Attempt Apply(const std::string& consumer, const InboxEvent& event) = 0;
};

class SqliteStore final : public LocalStore {
 public:
  SqliteStore(sqlite3* db, SqliteHandler handler) : db_(db), handler_(std::move(handler)) {}

  Status EnsureInbox() override {
    if (sqlite3_exec(db_, kSqliteInbox, nullptr, nullptr, nullptr) != SQLITE_OK) {
      return Status::Unavailable(std::string("create txcoord_inbox: ") + sqlite3_errmsg(db_));
    }
    return Status::Ok();
  }

  Attempt Apply(const std::string& consumer, const InboxEvent& event) override {
    if (Status s = Exec("BEGIN IMMEDIATE"); !s.ok()) return Attempt::Store(s);
    sqlite3_stmt* insert = nullptr;
    int rc = sqlite3_prepare_v2(db_,
                                "INSERT INTO txcoord_inbox (consumer, event_id) VALUES (?1, ?2) "
                                "ON CONFLICT DO NOTHING",
                                -1, &insert, nullptr);
    if (rc == SQLITE_OK) {
      sqlite3_bind_text(insert, 1, consumer.data(), static_cast<int>(consumer.size()),
                        SQLITE_STATIC);
      sqlite3_bind_text(insert, 2, event.event_id.data(), static_cast<int>(event.event_id.size()),
                        SQLITE_STATIC);
      rc = sqlite3_step(insert);
    }
    sqlite3_finalize(insert);
    if (rc != SQLITE_DONE) {
      const std::string why = sqlite3_errmsg(db_);
      Rollback();
      return Attempt::Store(
          Status::Unavailable("record event " + event.event_id + " in txcoord_inbox: " + why));
    }
    if (sqlite3_changes(db_) == 0) {
      Rollback();
      return {Attempt::Kind::kDuplicate, Status::Ok()};
    }
    Status handled;
    try {
      handled = handler_(db_, event);
    } catch (const std::exception& e) {
      handled = Status::Internal(std::string("the handler threw: ") + e.what());
    }
    if (!handled.ok()) {
      Rollback();
      return Attempt::Handler(handled);
    }
    if (Status s = Exec("COMMIT"); !s.ok()) {
      Rollback();
      return Attempt::Store(s);
    }
    return {Attempt::Kind::kApplied, Status::Ok()};
  }

 private:
  Status Exec(const char* sql) {
    char* err = nullptr;
    const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
    const std::string why = err != nullptr ? err : "";
    sqlite3_free(err);
    if (rc != SQLITE_OK) return Status::Unavailable(std::string(sql) + ": " + why);
    return Status::Ok();
  }
  void Rollback() {
    if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }

  sqlite3* const db_;
  const SqliteHandler handler_;
};

class PostgresStore final : public LocalStore {
 public:
  PostgresStore(std::string conninfo, PostgresHandler handler)
      : conninfo_(std::move(conninfo)), handler_(std::move(handler)) {}

  Status EnsureInbox() override {
    try {
      pqxx::work w(Connection());
      w.exec(kPostgresInbox);
      w.commit();
      return Status::Ok();
    } catch (const std::exception& e) {
      conn_.reset();
      return Status::Unavailable(std::string("create txcoord_inbox: ") + e.what());
    }
  }

  Attempt Apply(const std::string& consumer, const InboxEvent& event) override {
    try {
      pqxx::work w(Connection());
      const pqxx::result inserted = w.exec_params(
          "INSERT INTO txcoord_inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
          consumer, event.event_id);
      if (inserted.affected_rows() == 0) {
        w.abort();
        return {Attempt::Kind::kDuplicate, Status::Ok()};
      }
      Status handled;
      try {
        handled = handler_(w, event);
      } catch (const pqxx::broken_connection&) {
        throw;
      } catch (const std::exception& e) {
        handled = Status::Internal(std::string("the handler threw: ") + e.what());
      }
      if (!handled.ok()) {
        // A handler that caught the error of a lost connection: the database's failure.
        const bool lost = !conn_->is_open();
        w.abort();
        return lost ? Attempt::Store(handled) : Attempt::Handler(handled);
      }
      w.commit();
      return {Attempt::Kind::kApplied, Status::Ok()};
    } catch (const pqxx::in_doubt_error& e) {
      conn_.reset();
      // The inbox row makes a retry safe: if the commit happened, the retry is a duplicate.
      return Attempt::Store(Status::UnknownOutcome(std::string("commit of event ") +
                                                   event.event_id + " in doubt: " + e.what()));
    } catch (const std::exception& e) {
      conn_.reset();
      return Attempt::Store(Status::Unavailable("apply event " + event.event_id + ": " + e.what()));
    }
  }

 private:
  pqxx::connection& Connection() {
    if (conn_ == nullptr || !conn_->is_open()) {
      conn_ = std::make_unique<pqxx::connection>(conninfo_);
    }
    return *conn_;
  }

  const std::string conninfo_;
  const PostgresHandler handler_;
  std::unique_ptr<pqxx::connection> conn_;
};

}  // namespace

class InboxConsumer::Impl {
 public:
  Impl(InboxConsumerOptions options, std::unique_ptr<LocalStore> store)
      : options_(std::move(options)), store_(std::move(store)) {}

  ~Impl() {
    Stop();
    natsSubscription_Destroy(sub_);
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
  }

  Status Init() {
    if (!IsName(options_.consumer)) {
      return Status::InvalidArgument("inbox consumer name \"" + options_.consumer +
                                     "\" is not 1 to 64 characters of [A-Za-z0-9_-]");
    }
    if (options_.max_failures < 1) {
      return Status::InvalidArgument("max_failures must be at least 1");
    }
    TXCOORD_RETURN_IF_ERROR(store_->EnsureInbox());
    natsOptions* nats_options = nullptr;
    natsStatus s = natsOptions_Create(&nats_options);
    if (s == NATS_OK) s = natsOptions_SetURL(nats_options, options_.nats_url.c_str());
    if (s == NATS_OK) s = natsOptions_SetName(nats_options, options_.consumer.c_str());
    // The client reconnects by itself; fetches fail meanwhile and are retried.
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(nats_options, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(nats_options, 250);
    if (s == NATS_OK) s = natsConnection_Connect(&nc_, nats_options);
    natsOptions_Destroy(nats_options);
    if (s != NATS_OK) {
      return Status::Unavailable("inbox " + options_.consumer + ": cannot connect to NATS at " +
                                 options_.nats_url + ": " + NatsError(s));
    }
    if ((s = natsConnection_JetStream(&js_, nc_, nullptr)) != NATS_OK) {
      return Status::Unavailable("JetStream context: " + NatsError(s));
    }
    TXCOORD_RETURN_IF_ERROR(EnsureDeadLetterStream());
    jsConsumerConfig config;
    jsConsumerConfig_Init(&config);
    config.Durable = options_.consumer.c_str();
    config.AckPolicy = js_AckExplicit;
    config.DeliverPolicy = js_DeliverAll;
    config.AckWait =
        std::chrono::duration_cast<std::chrono::nanoseconds>(options_.ack_wait).count();
    config.MaxDeliver = -1;  // failures are counted here, not by the broker's redeliveries
    config.MaxAckPending = options_.max_ack_pending;
    if (!options_.filter_subject.empty()) config.FilterSubject = options_.filter_subject.c_str();
    jsErrCode js_error = static_cast<jsErrCode>(0);
    s = js_AddConsumer(nullptr, js_, options_.stream.c_str(), &config, nullptr, &js_error);
    if (s != NATS_OK && js_error != JSConsumerNameExistErr) {
      return Status::Unavailable("create durable consumer " + options_.consumer + " on stream " +
                                 options_.stream + ": " + NatsError(s, js_error));
    }
    jsSubOptions sub_options;
    jsSubOptions_Init(&sub_options);
    sub_options.Stream = options_.stream.c_str();
    sub_options.Consumer = options_.consumer.c_str();
    const std::string subject =
        options_.filter_subject.empty() ? std::string(">") : options_.filter_subject;
    s = js_PullSubscribe(&sub_, js_, subject.c_str(), options_.consumer.c_str(), nullptr,
                         &sub_options, &js_error);
    if (s != NATS_OK) {
      return Status::Unavailable("bind to consumer " + options_.consumer + ": " +
                                 NatsError(s, js_error));
    }
    return Status::Ok();
  }

  void Start() {
    stop_ = false;
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        auto handled = PollOnce(milliseconds(500));
        if (!handled.ok()) Sleep(milliseconds(200));
      }
    });
  }

  void Stop() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    stop_cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  Result<int> PollOnce(milliseconds wait) {
    natsMsgList list{};
    jsErrCode js_error = static_cast<jsErrCode>(0);
    const natsStatus s = natsSubscription_Fetch(&list, sub_, options_.fetch_batch,
                                                std::max<int64_t>(1, wait.count()), &js_error);
    if (s == NATS_TIMEOUT) {
      SetConnected(true);
      return 0;
    }
    if (s != NATS_OK) {
      SetConnected(false);
      const Status error =
          Status::Unavailable("fetch from " + options_.stream + ": " + NatsError(s, js_error));
      Report(error);
      return error;
    }
    SetConnected(true);
    int handled = 0;
    for (int i = 0; i < list.Count; ++i) {
      // After a stop, the rest stay unacked: the broker redelivers them.
      if (!stop_.load()) {
        Handle(list.Msgs[i]);
        ++handled;
      }
    }
    natsMsgList_Destroy(&list);
    return handled;
  }

  InboxStats Stats() const {
    std::lock_guard lock(stats_mu_);
    return stats_;
  }

 private:
  Status EnsureDeadLetterStream() {
    jsStreamInfo* info = nullptr;
    jsErrCode js_error = static_cast<jsErrCode>(0);
    natsStatus s =
        js_GetStreamInfo(&info, js_, options_.dead_letter_stream.c_str(), nullptr, &js_error);
    jsStreamInfo_Destroy(info);
    if (s == NATS_OK) return Status::Ok();
    const std::string subjects = options_.dead_letter_prefix + ".>";
    jsStreamConfig config;
    jsStreamConfig_Init(&config);
    config.Name = options_.dead_letter_stream.c_str();
    const char* subject_list[] = {subjects.c_str()};
    config.Subjects = subject_list;
    config.SubjectsLen = 1;
    config.Storage = js_FileStorage;
    config.Duplicates =
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::minutes(2)).count();
    js_error = static_cast<jsErrCode>(0);
    s = js_AddStream(nullptr, js_, &config, nullptr, &js_error);
    if (s != NATS_OK && js_error != JSStreamNameExistErr) {
      return Status::Unavailable("create dead-letter stream " + options_.dead_letter_stream + ": " +
                                 NatsError(s, js_error));
    }
    return Status::Ok();
  }

  static InboxEvent EventOf(natsMsg* msg) {
    InboxEvent event;
    event.subject = natsMsg_GetSubject(msg);
    event.payload.assign(natsMsg_GetData(msg), static_cast<size_t>(natsMsg_GetDataLength(msg)));
    const char** keys = nullptr;
    int count = 0;
    if (natsMsgHeader_Keys(msg, &keys, &count) == NATS_OK) {
      for (int k = 0; k < count; ++k) {
        const char* value = nullptr;
        if (natsMsgHeader_Get(msg, keys[k], &value) == NATS_OK) event.headers[keys[k]] = value;
      }
      free(const_cast<char**>(keys));
    }
    const auto header = [&](const char* name) {
      auto it = event.headers.find(name);
      return it == event.headers.end() ? std::string() : it->second;
    };
    // The outbox's event id first: a re-driven dead letter (txctl deadletters redrive) carries it
    // with a Nats-Msg-Id of its own, and consumers that applied the original must skip it.
    event.event_id = header("Tx-Event-Id");
    if (event.event_id.empty()) event.event_id = header("Nats-Msg-Id");
    event.event_type = header("Tx-Event-Type");
    event.aggregate_type = header("Tx-Aggregate-Type");
    event.aggregate_id = header("Tx-Aggregate-Id");
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
      event.stream_sequence = meta->Sequence.Stream;
      event.delivery_count = meta->NumDelivered;
      jsMsgMetaData_Destroy(meta);
    }
    // A message published without an id (not through an outbox) is still applied once: by its
    // place in the stream.
    if (event.event_id.empty())
      event.event_id = "stream-seq:" + std::to_string(event.stream_sequence);
    return event;
  }

  // Applies one message, retrying in place (the message kept in progress, so that no later one
  // overtakes it) until it is applied, dead-lettered, or the consumer stops (then it is left
  // unacked, for the broker to redeliver).
  void Handle(natsMsg* msg) {
    InboxEvent event = EventOf(msg);
    int handler_failures = 0;
    int store_failures = 0;  // in a row
    for (int attempt = 1;; ++attempt) {
      event.attempt = attempt;
      const Attempt applied = store_->Apply(options_.consumer, event);
      if (applied.kind == Attempt::Kind::kApplied || applied.kind == Attempt::Kind::kDuplicate) {
        FaultPoint("inbox.after_commit_before_ack");
        // After COMMIT: a lost ack only brings the event back, and then it is a duplicate.
        natsMsg_Ack(msg, nullptr);
        std::lock_guard lock(stats_mu_);
        if (applied.kind == Attempt::Kind::kApplied) {
          ++stats_.applied;
        } else {
          ++stats_.duplicates_skipped;
        }
        return;
      }
      int backoff_step = 0;
      if (applied.kind == Attempt::Kind::kStoreFailed) {
        {
          std::lock_guard lock(stats_mu_);
          ++stats_.store_failures;
        }
        Report(applied.status.WithContext("event " + event.event_id + " (" + event.subject +
                                          "): the database failed; retrying until it is back"));
        backoff_step = ++store_failures;
      } else {
        store_failures = 0;
        {
          std::lock_guard lock(stats_mu_);
          ++stats_.handler_failures;
        }
        ++handler_failures;
        Report(applied.status.WithContext("event " + event.event_id + " (" + event.subject +
                                          "), failure " + std::to_string(handler_failures) +
                                          " of " + std::to_string(options_.max_failures)));
        if (handler_failures == options_.max_failures) {
          DeadLetter(msg, event, applied.status);
          return;
        }
        backoff_step = handler_failures;
      }
      natsMsg_InProgress(msg, nullptr);  // still ours: the broker must not redeliver it now
      if (!Sleep(Backoff(backoff_step))) return;  // stopping: left unacked
    }
  }

  // The delay before retry number `step` (1, 2, ...): retry_min doubling up to retry_max.
  milliseconds Backoff(int step) const {
    milliseconds delay = options_.retry_min;
    for (int i = 1; i < step && delay < options_.retry_max; ++i) delay *= 2;
    return std::min(delay, options_.retry_max);
  }

  void DeadLetter(natsMsg* msg, const InboxEvent& event, const Status& why) {
    const std::string subject = options_.dead_letter_prefix + "." + options_.consumer;
    natsMsg* copy = nullptr;
    natsStatus s = natsMsg_Create(&copy, subject.c_str(), nullptr, event.payload.data(),
                                  static_cast<int>(event.payload.size()));
    for (const auto& [name, value] : event.headers) {
      if (s != NATS_OK) break;
      if (name == "Nats-Msg-Id") continue;
      s = natsMsgHeader_Set(copy, name.c_str(), value.c_str());
    }
    std::string reason = why.ToString();
    for (char& c : reason) {
      if (c == '\r' || c == '\n') c = ' ';
    }
    const std::pair<const char*, std::string> extra[] = {
        // Per delivered message: a redelivery of this one (a crash before the Term below) is
        // dropped by the dead-letter stream, a re-driven copy that fails again is kept.
        {"Nats-Msg-Id", "dead:" + options_.consumer + ":" + event.event_id + ":" +
                            std::to_string(event.stream_sequence)},
        {"Tx-Dead-Letter-Consumer", options_.consumer},
        {"Tx-Dead-Letter-Event-Id", event.event_id},
        {"Tx-Dead-Letter-Reason", reason},
        {"Tx-Dead-Letter-Attempts", std::to_string(options_.max_failures)},
        {"Tx-Dead-Letter-Subject", event.subject},
        {"Tx-Dead-Letter-Stream-Sequence", std::to_string(event.stream_sequence)},
    };
    for (const auto& [name, value] : extra) {
      if (s != NATS_OK) break;
      s = natsMsgHeader_Set(copy, name, value.c_str());
    }
    if (s != NATS_OK) {
      // Only a header the broker's client refuses gets here; the message stays unacked.
      natsMsg_Destroy(copy);
      Report(Status::Internal("build the dead letter of event " + event.event_id + ": " +
                              NatsError(s)));
      return;
    }
    // Until the broker has it, the message stays ours, in progress, so that no later message
    // overtakes it (a nak would let it be redelivered after them).
    for (int failures = 1;; ++failures) {
      jsErrCode js_error = static_cast<jsErrCode>(0);
      s = js_PublishMsg(nullptr, js_, copy, nullptr, &js_error);
      if (s == NATS_OK) break;
      Report(Status::Unavailable("dead-letter event " + event.event_id + " to " + subject + ": " +
                                 NatsError(s, js_error) + "; retrying"));
      natsMsg_InProgress(msg, nullptr);
      if (!Sleep(Backoff(failures))) {  // stopping: left unacked, redelivered later
        natsMsg_Destroy(copy);
        return;
      }
    }
    natsMsg_Destroy(copy);
    natsMsg_Term(msg, nullptr);
    spdlog::error(
        "inbox {}: event {} ({}, stream sequence {}) failed {} times and was moved to the "
        "dead-letter subject {} (stream {}): {}",
        options_.consumer, event.event_id, event.subject, event.stream_sequence,
        options_.max_failures, subject, options_.dead_letter_stream, reason);
    std::lock_guard lock(stats_mu_);
    ++stats_.dead_lettered;
  }

  // False when a stop interrupted the sleep.
  bool Sleep(milliseconds delay) {
    std::unique_lock lock(mu_);
    return !stop_cv_.wait_for(lock, delay, [this] { return stop_.load(); });
  }

  void Report(const Status& s) {
    spdlog::warn("inbox {}: {}", options_.consumer, s.message());
    std::lock_guard lock(stats_mu_);
    stats_.last_error = s.message();
  }

  void SetConnected(bool connected) {
    std::lock_guard lock(stats_mu_);
    stats_.connected = connected;
  }

  const InboxConsumerOptions options_;
  const std::unique_ptr<LocalStore> store_;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  natsSubscription* sub_ = nullptr;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable stop_cv_;
  std::atomic<bool> stop_{false};
  mutable std::mutex stats_mu_;
  InboxStats stats_;  // GUARDED_BY(stats_mu_)
};

InboxConsumer::InboxConsumer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
InboxConsumer::~InboxConsumer() = default;

Result<std::unique_ptr<InboxConsumer>> InboxConsumer::Create(InboxConsumerOptions options,
                                                             sqlite3* db, SqliteHandler handler) {
  sqlite3_busy_timeout(db, 10000);
  auto impl = std::make_unique<Impl>(std::move(options),
                                     std::make_unique<SqliteStore>(db, std::move(handler)));
  TXCOORD_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<InboxConsumer>(new InboxConsumer(std::move(impl)));
}

Result<std::unique_ptr<InboxConsumer>> InboxConsumer::Create(InboxConsumerOptions options,
                                                             std::string postgres_conninfo,
                                                             PostgresHandler handler) {
  auto impl = std::make_unique<Impl>(
      std::move(options),
      std::make_unique<PostgresStore>(std::move(postgres_conninfo), std::move(handler)));
  TXCOORD_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<InboxConsumer>(new InboxConsumer(std::move(impl)));
}

void InboxConsumer::Start() { impl_->Start(); }
void InboxConsumer::Stop() { impl_->Stop(); }
Result<int> InboxConsumer::PollOnce(std::chrono::milliseconds wait) {
  return impl_->PollOnce(wait);
}
InboxStats InboxConsumer::Stats() const { return impl_->Stats(); }

}  // namespace txcoord::participant
