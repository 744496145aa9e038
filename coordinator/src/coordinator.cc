// The driver: wires engines to the log, the transport and time (coordinator.h).
#include "txcoord/coordinator/coordinator.h"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <queue>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>

#include "txcoord/schemas/ids.h"
#include "txcoord/schemas/json.h"

namespace txcoord::coordinator {
namespace {

using std::chrono::milliseconds;
using SteadyTime = std::chrono::steady_clock::time_point;

class SystemClockImpl final : public Clock {
 public:
  Timestamp Now() override {
    return std::chrono::time_point_cast<milliseconds>(std::chrono::system_clock::now());
  }
};

// A fixed pool of threads running posted tasks in FIFO order. Tasks posted after Stop are
// dropped: everything they would do is durable already or resumed by the next start.
class Executor {
 public:
  explicit Executor(int threads) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
  }
  ~Executor() { Stop(); }

  void Post(std::function<void()> task) {
    {
      std::lock_guard lock(mu_);
      if (stopped_) return;
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
  }

  // Drops queued tasks and waits for the running ones.
  void Stop() {
    {
      std::lock_guard lock(mu_);
      if (stopped_ && threads_.empty()) return;
      stopped_ = true;
      tasks_.clear();
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }

 private:
  void Run() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return stopped_ || !tasks_.empty(); });
        if (stopped_) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      try {
        task();
      } catch (const std::exception& e) {
        spdlog::error("coordinator task failed: {}", e.what());
      }
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;  // GUARDED_BY(mu_)
  bool stopped_ = false;                     // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;
};

std::string Sha256(const std::string& data) {
  // Fetched once: EVP_sha256() makes OpenSSL 3 look the implementation up on every digest
  // (locks and hash tables: ~5% of a begin's CPU at one client). Never freed, like the library.
  static EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  const EVP_MD* md = sha256 != nullptr ? sha256 : EVP_sha256();
  if (EVP_Digest(data.data(), data.size(), digest, &size, md, nullptr) != 1) {
    return data;  // cannot happen with the default provider; the raw bytes still compare right
  }
  return std::string(reinterpret_cast<const char*>(digest), size);
}

// The fingerprint of a begin request for idempotent begin: everything but `wait`, which changes
// how the reply is given, not the transaction.
std::string RequestDigest(v1::BeginRequest request) {
  request.set_wait(false);
  std::string bytes;
  google::protobuf::io::StringOutputStream stream(&bytes);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  request.SerializeToCodedStream(&coded);
  coded.Trim();
  return Sha256(bytes);
}

std::string NewGtid() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const auto ms =
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  char text[48];
  std::snprintf(text, sizeof text, "tx-%012llx-%016llx", static_cast<unsigned long long>(ms),
                static_cast<unsigned long long>(rng()));
  return text;
}

// The Callback message as the contract's JSON, assembled by hand: this runs for every callback,
// and protobuf's JSON printer was a tenth of the coordinator's CPU. Ids and phases need no
// escaping (ids are [A-Za-z0-9._:-], checked at the API); `payload_json` is printed JSON, empty
// when the branch has no payload (the member is then omitted, as the printer did).
std::string CallbackBody(const std::string& gtid, const std::string& branch_id,
                         const std::string& phase, const std::string& payload_json) {
  std::string body;
  body.reserve(64 + gtid.size() + branch_id.size() + phase.size() + payload_json.size());
  body += "{\"gtid\":\"";
  body += gtid;
  body += "\",\"branch_id\":\"";
  body += branch_id;
  body += "\",\"phase\":\"";
  body += phase;
  body += '"';
  if (!payload_json.empty()) {
    body += ",\"payload\":";
    body += payload_json;
  }
  body += '}';
  return body;
}

std::string JoinUrl(const std::string& base, const std::string& phase) {
  if (!base.empty() && base.back() == '/') return base + phase;
  return base + "/" + phase;
}

Status CheckUrl(std::string_view what, const std::string& url, const saga::UrlPolicy& policy) {
  const saga::UrlCheck check = saga::CheckParticipantUrl(what, url, policy);
  switch (check.verdict) {
    case saga::UrlVerdict::kOk:
      return Status::Ok();
    case saga::UrlVerdict::kMalformed:
      return Status::InvalidArgument(check.message);
    case saga::UrlVerdict::kForbidden:
      return Status::PermissionDenied(check.message);
  }
  return Status::InvalidArgument(check.message);
}

// One live transaction: its engine and the driver's bookkeeping around it.
struct Live {
  std::mutex mu;
  std::condition_variable cv;          // durable progress, finish, park, stop
  int durable_waiters = 0;             // GUARDED_BY(mu): threads in WaitDurable
  std::unique_ptr<Engine> engine;      // GUARDED_BY(mu)
  std::vector<v1::LogRecord> pending;  // GUARDED_BY(mu): emitted, not yet handed to the log
  bool appending = false;              // GUARDED_BY(mu): a thread is appending for it
  bool parked = false;                 // GUARDED_BY(mu): dropped after a failed append
  // GUARDED_BY(mu): begun here and its begin record not yet durable. The log may still refuse
  // it (a gtid it already holds, from before a restart): until then the record is not the
  // transaction's, and others who find it wait (Settle).
  bool tentative = false;
  bool forgotten = false;                   // GUARDED_BY(mu): finished and out of the map
  bool settle_announced = false;            // GUARDED_BY(mu): waiters woken for settled()
  Status park_status;                       // GUARDED_BY(mu)
  std::optional<Timestamp> scheduled_wake;  // GUARDED_BY(mu)
  // Each branch's payload as JSON, printed once: every callback of the branch carries it.
  std::unordered_map<std::string, std::string> payload_json;  // GUARDED_BY(mu)
  SteadyTime wait_until{};  // deadline + grace, for `wait` replies
  // When this process began it; unset for a recovered transaction (its duration is unknown).
  std::optional<SteadyTime> begun_at;
  size_t protocol = 0;  // index into Coordinator::Counters::kProtocols (size(): another)
  // The state the by-state gauges count it in ("" when not counted: finished or parked).
  std::string counted_state;  // GUARDED_BY(mu)
};

// Index of a protocol or phase name in `names`; names.size() when absent.
template <size_t N>
size_t IndexOf(const std::array<std::string_view, N>& names, std::string_view name) {
  for (size_t i = 0; i < N; ++i) {
    if (names[i] == name) return i;
  }
  return N;
}

// A histogram updated from many threads with relaxed atomics; sum kept in microseconds.
class AtomicHistogram {
 public:
  using Snapshot = Coordinator::Histogram;
  void Observe(std::chrono::nanoseconds elapsed) {
    const int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count();
    size_t i = 0;
    while (i < Snapshot::kBoundsMs.size() && us > Snapshot::kBoundsMs[i] * 1000) ++i;
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    sum_us_.fetch_add(us, std::memory_order_relaxed);
  }
  Snapshot Read() const {
    Snapshot h;
    for (size_t i = 0; i < buckets_.size(); ++i) {
      h.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
      h.count += h.buckets[i];
    }
    h.sum_seconds = static_cast<double>(sum_us_.load(std::memory_order_relaxed)) / 1e6;
    return h;
  }

 private:
  std::array<std::atomic<int64_t>, Snapshot::kBoundsMs.size() + 1> buckets_{};
  std::atomic<int64_t> sum_us_{0};
};

// States in which participants may hold prepared work waiting for an outcome (in doubt).
bool InDoubtState(std::string_view state) {
  return state == "preparing" || state == "can-committing" || state == "pre-committing" ||
         state == "committing" || state == "aborting" || state == "compensating";
}

struct TimerEntry {
  Timestamp at;
  std::weak_ptr<Live> live;
  bool operator>(const TimerEntry& o) const { return at > o.at; }
};

}  // namespace

Clock& SystemClock() {
  static SystemClockImpl clock;
  return clock;
}

class Coordinator::Impl {
 public:
  Impl(TransactionLog& log, CallbackTransport& transport, Clock& clock, CoordinatorOptions options)
      : log_(log), transport_(transport), clock_(clock), options_(std::move(options)) {}

  ~Impl() {
    Stop();
    // An end record handed to AppendSoon calls back into this object once durable: wait for the
    // last one (the log commits them within a few ms, or when it closes).
    std::unique_lock lock(soon_mu_);
    soon_cv_.wait(lock, [&] { return soon_outstanding_ == 0; });
  }

  Status Start() {
    // The executor runs timer events only; it exists before the first pass so that nothing the
    // pass starts can find it missing.
    executor_ = std::make_unique<Executor>(std::max(1, options_.event_threads));
    auto recovered = RecoverNow();
    if (!recovered.ok()) return recovered.status();
    spdlog::info("recovery: resumed {} unfinished transactions", *recovered);
    timer_thread_ = std::thread([this] { TimerLoop(); });
    recovery_thread_ = std::thread([this] { RecoveryLoop(); });
    return Status::Ok();
  }

  void Stop() {
    if (stopping_.exchange(true)) return;
    { std::lock_guard lock(timer_mu_); }
    timer_cv_.notify_all();
    recovery_cv_.notify_all();
    if (timer_thread_.joinable()) timer_thread_.join();
    if (recovery_thread_.joinable()) recovery_thread_.join();
    // Wake every waiting client: they answer with the state as it is (202), all durable.
    std::vector<std::shared_ptr<Live>> lives;
    {
      std::lock_guard lock(map_mu_);
      for (auto& [gtid, live] : live_) lives.push_back(live);
    }
    for (auto& live : lives) {
      std::lock_guard lock(live->mu);
      live->cv.notify_all();
    }
    if (executor_) executor_->Stop();
  }

  // ---- API

  Result<TransactionReply> Begin(v1::BeginRequest request, std::string traceparent) {
    TXCOORD_RETURN_IF_ERROR(CheckRunning());
    std::optional<saga::SagaPlan> saga_plan;
    TXCOORD_RETURN_IF_ERROR(CheckBegin(request, &saga_plan));
    const bool wait = request.wait();
    const bool client_gtid = !request.gtid().empty();
    if (!client_gtid) request.set_gtid(NewGtid());
    BeginArgs args;
    args.timeout_ms =
        request.timeout_ms() == 0 ? options_.default_timeout_ms : request.timeout_ms();
    args.request_digest = client_gtid ? RequestDigest(request) : std::string();
    args.traceparent = std::move(traceparent);
    args.saga_plan = std::move(saga_plan);
    const std::string gtid = request.gtid();
    args.request = std::move(request);

    std::shared_ptr<Live> live;
    Effects fx;
    {
      std::lock_guard lock(map_mu_);
      if (auto it = live_.find(gtid); it != live_.end()) {
        live = it->second;
      } else {
        if (static_cast<int>(live_.size()) >= options_.max_live_transactions) {
          return Status::Unavailable("the coordinator holds " + std::to_string(live_.size()) +
                                     " transactions in flight, its limit; retry shortly");
        }
        live = std::make_shared<Live>();
        live->engine = BeginEngine(clock_.Now(), args, options_.engine, NextSeed(), fx);
        if (live->engine == nullptr) {
          return Status::Internal("the coordinator could not start transaction " + gtid +
                                  " although its request passed the checks; nothing was "
                                  "logged (a bug: see the coordinator's log)");
        }
        live->wait_until =
            std::chrono::steady_clock::now() + milliseconds(args.timeout_ms) + options_.wait_grace;
        live->begun_at = std::chrono::steady_clock::now();
        live->protocol = IndexOf(Counters::kProtocols, args.request.protocol());
        live->tentative = true;
        live_.emplace(gtid, live);
        ++begun_;
      }
    }
    if (fx.append.empty()) return RepeatedBegin(live, args, wait);

    std::unique_lock lock(live->mu);
    Process(live, lock, fx);
    const uint64_t seq = 1;
    TXCOORD_RETURN_IF_ERROR(WaitDurable(live, lock, seq));
    if (live->parked) {
      const Status s = live->park_status;
      lock.unlock();
      if (s.code() == StatusCode::kAlreadyExists) return BeginOfLogged(gtid, args, wait);
      return s;
    }
    return ReplyWhen(live, lock, wait);
  }

  Result<TransactionReply> RegisterBranch(std::string_view gtid, v1::Branch branch) {
    TXCOORD_RETURN_IF_ERROR(CheckRunning());
    TXCOORD_RETURN_IF_ERROR(ValidateId("gtid", gtid));
    TXCOORD_RETURN_IF_ERROR(ValidateId("branch_id", branch.branch_id()));
    TXCOORD_RETURN_IF_ERROR(
        CheckUrl("branch \"" + branch.branch_id() + "\" url", branch.url(), options_.url_policy));
    branch.clear_state();
    branch.clear_attempts();
    branch.clear_last_error();
    return Command(
        gtid, /*wait=*/false,
        [&](Engine& e, Effects& fx) { return e.RegisterBranch(clock_.Now(), branch, fx); },
        /*logged_ok_state=*/"");
  }

  Result<TransactionReply> Commit(std::string_view gtid, bool wait) {
    TXCOORD_RETURN_IF_ERROR(CheckRunning());
    TXCOORD_RETURN_IF_ERROR(ValidateId("gtid", gtid));
    return Command(
        gtid, wait, [&](Engine& e, Effects& fx) { return e.Commit(clock_.Now(), fx); },
        "committed");
  }

  Result<TransactionReply> Abort(std::string_view gtid, bool wait) {
    TXCOORD_RETURN_IF_ERROR(CheckRunning());
    TXCOORD_RETURN_IF_ERROR(ValidateId("gtid", gtid));
    return Command(
        gtid, wait, [&](Engine& e, Effects& fx) { return e.Abort(clock_.Now(), "", fx); },
        "aborted");
  }

  Result<v1::Transaction> Get(std::string_view gtid) {
    TXCOORD_RETURN_IF_ERROR(ValidateId("gtid", gtid));
    if (std::shared_ptr<Live> live = Find(gtid)) {
      std::unique_lock lock(live->mu);
      if (Settle(live, lock) && !live->parked) return live->engine->View();
    }
    auto logged = log_.Read(gtid);
    if (!logged.ok()) return ForClient(logged.status(), gtid);
    return FoldRecord(*logged);
  }

  Result<v1::TransactionList> List(const ListQuery& query) {
    auto page = log_.List(query);
    if (!page.ok()) return ForClient(page.status(), "");
    v1::TransactionList list;
    for (const TransactionSummary& s : page->transactions) {
      auto tx = Get(s.gtid);
      if (tx.ok()) {
        *list.add_transactions() = std::move(*tx);
      } else if (tx.status().code() != StatusCode::kNotFound) {  // purged meanwhile: skip
        return tx.status();
      }
    }
    list.set_next(page->next);
    return list;
  }

  Result<TransactionReply> Retry(std::string_view gtid) {
    TXCOORD_RETURN_IF_ERROR(CheckRunning());
    TXCOORD_RETURN_IF_ERROR(ValidateId("gtid", gtid));
    if (std::shared_ptr<Live> live = Find(gtid)) {
      std::unique_lock lock(live->mu);
      if (!live->parked && live->engine->settled()) return Finished(gtid, PublicState(*live));
    }
    auto reply = Command(
        gtid, /*wait=*/false,
        [&](Engine& e, Effects& fx) -> Result<uint64_t> {
          e.RetryNow(clock_.Now(), fx);
          return uint64_t{0};
        },
        /*logged_ok_state=*/"");
    if (reply.ok() && reply->http_status == 200 && IsTerminalName(reply->transaction.state())) {
      return Finished(gtid, reply->transaction.state());  // finished while we looked
    }
    if (reply.ok()) reply->http_status = 200;
    return reply;
  }

  Result<TransactionReply> Resolve(std::string_view gtid, std::string_view branch_id,
                                   const v1::ResolveRequest& request) {
    TXCOORD_RETURN_IF_ERROR(CheckRunning());
    TXCOORD_RETURN_IF_ERROR(ValidateId("gtid", gtid));
    TXCOORD_RETURN_IF_ERROR(ValidateId("branch_id", branch_id));
    TXCOORD_RETURN_IF_ERROR(CheckResolveRequest(request));
    v1::ResolvedRecord resolve;
    resolve.set_branch_id(std::string(branch_id));
    resolve.set_as(request.as());
    resolve.set_operator_(request.operator_());
    resolve.set_reason(request.reason());
    if (std::shared_ptr<Live> live = Find(gtid)) {
      std::unique_lock lock(live->mu);
      if (!live->parked && live->engine->settled()) return Finished(gtid, PublicState(*live));
    }
    auto reply = Command(
        gtid, /*wait=*/false,
        [&](Engine& e, Effects& fx) { return e.Resolve(clock_.Now(), resolve, fx); },
        /*logged_ok_state=*/"");
    if (reply.ok()) {
      reply->http_status = 200;
      spdlog::info("{}: branch {} resolved by hand as {} by {}", gtid, branch_id, request.as(),
                   request.operator_());
    }
    return reply;
  }

  Result<v1::TransactionHistory> History(std::string_view gtid) {
    TXCOORD_RETURN_IF_ERROR(ValidateId("gtid", gtid));
    auto logged = log_.Read(gtid);
    if (!logged.ok()) return ForClient(logged.status(), gtid);
    return HistoryOf(*logged);
  }

  Result<Coordinator::PurgeResult> Purge(Timestamp finished_before, int64_t max_count) {
    if (max_count < 0) return Status::InvalidArgument("a purge needs a limit of at least 0");
    Result<int64_t> purged = int64_t{0};  // max_count 0: count only
    if (max_count > 0) purged = log_.Purge(finished_before, max_count);
    if (!purged.ok()) return purged.status();
    auto remaining = log_.CountPurgeable(finished_before);
    if (!remaining.ok()) return remaining.status();
    if (*purged > 0) spdlog::info("purged {} finished transactions", *purged);
    return Coordinator::PurgeResult{*purged, *remaining};
  }

  Status Ping() { return log_.Ping(); }

  Coordinator::Counters counters() const {
    Coordinator::Counters c;
    {
      std::lock_guard lock(map_mu_);
      c.live = static_cast<int64_t>(live_.size());
    }
    c.begun = begun_;
    c.committed = committed_;
    c.aborted = aborted_;
    c.recovered = recovered_;
    c.parked = parked_;
    c.callbacks = callbacks_;
    c.callback_failures = callback_failures_;
    for (size_t p = 0; p < c.finished.size(); ++p) {
      for (size_t o = 0; o < 2; ++o) c.finished[p][o] = finished_[p][o];
      c.duration[p] = duration_[p].Read();
    }
    for (size_t i = 0; i < c.callback_latency.size(); ++i) {
      c.callback_latency[i] = callback_latency_[i].Read();
      c.retries[i] = retries_[i];
    }
    {
      std::lock_guard lock(state_mu_);
      for (const auto& [state, n] : live_by_state_) {
        if (n == 0) continue;
        c.by_state.emplace_back(state, n);
        if (InDoubtState(state)) c.in_doubt += n;
      }
    }
    return c;
  }

  Result<int> RecoverNow() {
    int resumed = 0;
    std::string after;
    for (;;) {
      if (stopping_) break;
      auto batch = log_.ScanUnfinished(after, 100);
      if (!batch.ok()) return batch.status().WithContext("recovery scan");
      if (batch->empty()) break;
      after = batch->back().summary.gtid;
      for (const LoggedTransaction& logged : *batch) {
        if (Resume(logged)) ++resumed;
      }
    }
    return resumed;
  }

 private:
  Status CheckRunning() const {
    if (stopping_) return Status::Unavailable("the coordinator is stopping; retry on another");
    return Status::Ok();
  }

  uint64_t NextSeed() {
    std::lock_guard lock(seed_mu_);
    return seed_rng_();
  }

  std::shared_ptr<Live> Find(std::string_view gtid) {
    std::lock_guard lock(map_mu_);
    auto it = live_.find(std::string(gtid));
    return it == live_.end() ? nullptr : it->second;
  }

  // Waits while `live` is tentative (its begin may still be refused by the log); false when
  // the log refused it for a gtid it already holds: then `live` is not the transaction, and the
  // answer comes from the log, as if it had never been in memory. REQUIRES: lock holds live->mu.
  bool Settle(const std::shared_ptr<Live>& live, std::unique_lock<std::mutex>& lock) {
    if (live->tentative) {
      ++live->durable_waiters;
      live->cv.wait(lock, [&] { return !live->tentative || stopping_; });
      --live->durable_waiters;
    }
    return !(live->parked && live->park_status.code() == StatusCode::kAlreadyExists);
  }

  void Forget(const std::shared_ptr<Live>& live, const std::string& gtid) {
    std::lock_guard lock(map_mu_);
    auto it = live_.find(gtid);
    if (it != live_.end() && it->second == live) live_.erase(it);
  }

  static bool IsTerminalName(const std::string& state) {
    return state == "committed" || state == "aborted";
  }

  // A command that a finished transaction does not allow: "transaction X is aborted (why)".
  static Status FinishedConflict(std::string_view gtid, const v1::Transaction& record) {
    return Status::Conflict("transaction " + std::string(gtid) + " is " + record.state() +
                            (record.state() == "aborted" && !record.reason().empty()
                                 ? " (" + record.reason() + ")"
                                 : std::string()));
  }

  static Status Finished(std::string_view gtid, const std::string& state) {
    return Status::Conflict("transaction " + std::string(gtid) + " is " + state +
                            ", finished: nothing is outstanding");
  }

  // Operators' words end up in the log and in replies: short, one line, printable.
  static Status CheckResolveRequest(const v1::ResolveRequest& r) {
    if (r.as() != "committed" && r.as() != "aborted") {
      return Status::InvalidArgument("\"as\" must be \"committed\" or \"aborted\"; got \"" +
                                     PrintableForMessage(r.as(), 40) + "\"");
    }
    const auto printable = [](const std::string& text) {
      return std::all_of(text.begin(), text.end(),
                         [](char c) { return static_cast<unsigned char>(c) >= 0x20 && c != 0x7f; });
    };
    if (r.operator_().empty() || r.operator_().size() > 128 || !printable(r.operator_())) {
      return Status::InvalidArgument(
          "\"operator\" must name who resolves it: 1 to 128 printable characters");
    }
    if (r.reason().size() > 1024 || !printable(r.reason())) {
      return Status::InvalidArgument(
          "\"reason\" must be at most 1024 printable characters on one line");
    }
    return Status::Ok();
  }

  static Status ForClient(const Status& s, std::string_view gtid) {
    if (s.code() == StatusCode::kNotFound) {
      return Status::NotFound("transaction " + std::string(gtid) +
                              " does not exist (never "
                              "begun, aborted before it was logged, or purged)");
    }
    return s;
  }

  // `saga_plan` gets a valid saga's plan (for the engine, which then need not plan it again).
  Status CheckBegin(const v1::BeginRequest& r, std::optional<saga::SagaPlan>* saga_plan) {
    if (!r.gtid().empty()) TXCOORD_RETURN_IF_ERROR(ValidateId("gtid", r.gtid()));
    if (!IsKnownProtocol(r.protocol())) {
      return Status::InvalidArgument("protocol must be one of 2pc, 3pc, tcc, saga; got \"" +
                                     PrintableForMessage(r.protocol()) + "\"");
    }
    if (r.timeout_ms() < 0 || r.timeout_ms() > options_.max_timeout_ms) {
      return Status::InvalidArgument(
          "timeout_ms must be between 1 and " + std::to_string(options_.max_timeout_ms) +
          " (0 or absent: the default " + std::to_string(options_.default_timeout_ms) + ")");
    }
    if (r.protocol() == "saga") return CheckSaga(r, saga_plan);
    if (r.steps_size() > 0) {
      return Status::InvalidArgument("steps are for sagas; a " + r.protocol() +
                                     " transaction has branches");
    }
    if ((r.protocol() == "2pc" || r.protocol() == "3pc") && r.branches_size() == 0) {
      return Status::InvalidArgument("a " + r.protocol() +
                                     " transaction needs at least one branch");
    }
    if (r.branches_size() > options_.engine.max_branches) {
      return Status::InvalidArgument("at most " + std::to_string(options_.engine.max_branches) +
                                     " branches per transaction; got " +
                                     std::to_string(r.branches_size()));
    }
    std::set<std::string_view> seen;
    for (int i = 0; i < r.branches_size(); ++i) {
      const v1::Branch& b = r.branches(i);
      TXCOORD_RETURN_IF_ERROR(
          ValidateId("branches[" + std::to_string(i) + "].branch_id", b.branch_id()));
      if (!seen.insert(b.branch_id()).second) {
        return Status::InvalidArgument("branch_id \"" + b.branch_id() + "\" appears twice");
      }
      if (b.has_state() || b.has_attempts() || b.has_last_error()) {
        return Status::InvalidArgument("branch \"" + b.branch_id() +
                                       "\": state, attempts and last_error are set by the "
                                       "coordinator, not in a request");
      }
    }
    // URLs last, so that a request that is wrong is 400 even if it also names a forbidden URL.
    for (const v1::Branch& b : r.branches()) {
      TXCOORD_RETURN_IF_ERROR(
          CheckUrl("branch \"" + b.branch_id() + "\" url", b.url(), options_.url_policy));
    }
    return Status::Ok();
  }

  // The steps of a saga begin: the options the engine reads, then saga::ValidateSaga (ids,
  // URLs, dependencies, cycles; 403 for a URL outside the allow-list).
  Status CheckSaga(const v1::BeginRequest& r, std::optional<saga::SagaPlan>* plan) {
    if (r.branches_size() > 0) {
      return Status::InvalidArgument("branches are for 2pc, 3pc and tcc; a saga has steps");
    }
    for (int i = 0; i < r.steps_size(); ++i) {
      const v1::Step& st = r.steps(i);
      const std::string name = "step \"" + PrintableForMessage(st.step_id()) + "\"";
      if (st.has_state() || st.has_attempts() || st.has_last_error()) {
        return Status::InvalidArgument(name +
                                       ": state, attempts and last_error are set by the "
                                       "coordinator, not in a request");
      }
      if (st.timeout_ms() < 0 || st.timeout_ms() > options_.max_timeout_ms) {
        return Status::InvalidArgument(name + ": timeout_ms must be between 1 and " +
                                       std::to_string(options_.max_timeout_ms) +
                                       " (0 or absent: the coordinator's default)");
      }
      const v1::StepRetry& retry = st.retry();
      if (retry.initial_ms() < 0 || retry.max_ms() < 0 || retry.max_attempts() < 0 ||
          retry.initial_ms() > options_.max_timeout_ms ||
          retry.max_ms() > options_.max_timeout_ms) {
        return Status::InvalidArgument(
            name + ": retry.initial_ms and retry.max_ms must be between 0 and " +
            std::to_string(options_.max_timeout_ms) +
            ", retry.max_attempts at least 0 (0: the defaults, until the deadline)");
      }
      if (retry.initial_ms() > 0 && retry.max_ms() > 0 && retry.max_ms() < retry.initial_ms()) {
        return Status::InvalidArgument(name + ": retry.max_ms (" + std::to_string(retry.max_ms()) +
                                       ") is below retry.initial_ms (" +
                                       std::to_string(retry.initial_ms()) + ")");
      }
    }
    saga::SagaValidation validation = saga::ValidateSaga(r.steps(), options_.url_policy);
    if (validation.ok()) {
      *plan = std::move(validation.plan);
      return Status::Ok();
    }
    if (validation.forbidden_url) return Status::PermissionDenied(validation.status.message());
    return validation.status;
  }

  // A begin for a gtid already in memory.
  Result<TransactionReply> RepeatedBegin(const std::shared_ptr<Live>& live, const BeginArgs& args,
                                         bool wait) {
    std::unique_lock lock(live->mu);
    if (!Settle(live, lock)) {
      lock.unlock();
      return BeginOfLogged(args.request.gtid(), args, wait);
    }
    if (args.request_digest.empty() || live->engine->request_digest() != args.request_digest) {
      return Status::Conflict("transaction " + args.request.gtid() +
                              " exists with a different request; a repeated begin must send "
                              "the same body");
    }
    TXCOORD_RETURN_IF_ERROR(WaitDurable(live, lock, 1));
    if (live->parked) return Status::Unavailable(live->park_status.message());
    return ReplyWhen(live, lock, wait);
  }

  // A begin for a gtid whose begin record is in the log but not in memory.
  Result<TransactionReply> BeginOfLogged(const std::string& gtid, const BeginArgs& args,
                                         bool wait) {
    auto logged = log_.Read(gtid);
    if (!logged.ok()) return logged.status();
    const v1::LogRecord* begin = nullptr;
    for (const auto& r : logged->records) {
      if (r.has_begin()) begin = &r;
    }
    if (begin == nullptr || args.request_digest.empty() ||
        begin->begin().request_digest() != args.request_digest) {
      return Status::Conflict("transaction " + gtid +
                              " exists with a different request; a repeated begin must send the "
                              "same body");
    }
    if (!logged->summary.finished()) {
      KickRecovery();
      if (std::shared_ptr<Live> live = Find(gtid)) return RepeatedBegin(live, args, wait);
    }
    TransactionReply reply;
    reply.transaction = FoldRecord(*logged);
    reply.http_status = logged->summary.finished() ? 200 : 202;
    return reply;
  }

  // Runs a client command on a live transaction, or answers from the log.
  template <typename Fn>
  Result<TransactionReply> Command(std::string_view gtid, bool wait, Fn&& command,
                                   std::string_view logged_ok_state) {
    std::shared_ptr<Live> live = Find(gtid);
    std::unique_lock<std::mutex> lock;
    if (live) {
      lock = std::unique_lock(live->mu);
      if (!Settle(live, lock)) {
        lock.unlock();
        live.reset();
      }
    }
    if (!live) {
      auto logged = log_.Read(gtid);
      if (!logged.ok()) return ForClient(logged.status(), gtid);
      const std::string& state = logged->summary.state;
      if (!logged->summary.finished()) {
        KickRecovery();
        return Status::Unavailable("transaction " + std::string(gtid) +
                                   " is being recovered; retry in a moment");
      }
      v1::Transaction record = FoldRecord(*logged);
      if (!logged_ok_state.empty() && state == logged_ok_state) {
        return TransactionReply{std::move(record), 200};
      }
      return FinishedConflict(gtid, record);
    }
    if (live->parked) return Status::Unavailable(live->park_status.message());
    if (live->engine->settled()) {
      // Finished (or settled, its end on its way) between Find and the lock: answered as from
      // the log, so that an abort of a committed transaction is a 409 whichever way the race
      // went.
      if (!logged_ok_state.empty() && PublicState(*live) == logged_ok_state) {
        return ReplyWhen(live, lock, wait);
      }
      return FinishedConflict(gtid, live->engine->View());
    }
    Effects fx;
    Result<uint64_t> seq = command(*live->engine, fx);
    Process(live, lock, fx);
    if (!seq.ok()) return seq.status();
    TXCOORD_RETURN_IF_ERROR(WaitDurable(live, lock, *seq));
    if (live->parked) return Status::Unavailable(live->park_status.message());
    return ReplyWhen(live, lock, wait);
  }

  // Waits until record `seq` of the engine is durable, the transaction parked, or stopping.
  // REQUIRES: lock holds live->mu.
  Status WaitDurable(const std::shared_ptr<Live>& live, std::unique_lock<std::mutex>& lock,
                     uint64_t seq) {
    ++live->durable_waiters;
    live->cv.wait(lock, [&] {
      return live->parked || live->engine->durable() >= seq || live->engine->finished() ||
             stopping_;
    });
    --live->durable_waiters;
    if (!live->parked && live->engine->durable() < seq && !live->engine->finished()) {
      return Status::Unavailable("the coordinator is stopping before the record was durable");
    }
    return Status::Ok();
  }

  // The reply to a command: at once, or with `wait` once terminal or at deadline + grace.
  // Terminal here means settled (engine.h): the outcome is durable and every branch acknowledged
  // it; the `end` record's own append is not waited for (docs/coordinator.md, "The wait reply").
  Result<TransactionReply> ReplyWhen(const std::shared_ptr<Live>& live,
                                     std::unique_lock<std::mutex>& lock, bool wait) {
    if (wait) {
      live->cv.wait_until(lock, live->wait_until,
                          [&] { return live->engine->settled() || live->parked || stopping_; });
    }
    if (live->parked && !live->engine->settled()) {
      return Status::Unavailable(live->park_status.message());
    }
    TransactionReply reply;
    reply.transaction = live->engine->View();
    reply.http_status = live->engine->settled() ? 200 : 202;
    return reply;
  }

  // The state a client is told: the final one once settled. REQUIRES: live.mu held.
  static std::string PublicState(const Live& live) {
    const Engine& e = *live.engine;
    return e.settled() && !e.finished() ? e.View().state() : e.state();
  }

  // Hands an engine's effects to the world. REQUIRES: lock holds live->mu; returns with it held.
  void Process(const std::shared_ptr<Live>& live, std::unique_lock<std::mutex>& lock, Effects& fx) {
    std::vector<CallbackRequest> sends;
    std::vector<Send> sent;
    Collect(live, fx, sends, sent);
    const bool drain = !live->appending && !live->pending.empty();
    if (drain) live->appending = true;
    lock.unlock();
    Dispatch(live, std::move(sends), std::move(sent));
    if (drain) Drain(live);
    lock.lock();
  }

  // REQUIRES: live->mu held.
  void Collect(const std::shared_ptr<Live>& live, Effects& fx, std::vector<CallbackRequest>& sends,
               std::vector<Send>& sent) {
    Engine& e = *live->engine;
    for (v1::LogRecord& r : fx.append) live->pending.push_back(std::move(r));
    for (Send& s : fx.send) {
      // The engine names the target (saga steps), or it is the branch's url and phase.
      std::string url = s.url;
      const google::protobuf::Value* payload_value = s.payload;
      if (url.empty()) {
        const v1::Branch* b = e.FindBranch(s.branch_id);
        if (b == nullptr) continue;
        url = JoinUrl(b->url(), s.phase);
        payload_value = b->has_payload() ? &b->payload() : nullptr;
      }
      auto [payload, fresh] = live->payload_json.try_emplace(s.branch_id);
      if (fresh && payload_value != nullptr) payload->second = MessageToJson(*payload_value);
      CallbackRequest req;
      req.url = std::move(url);
      req.gtid = e.gtid();
      req.branch_id = s.branch_id;
      req.phase = s.phase;
      req.attempt = s.attempt;
      req.body = CallbackBody(e.gtid(), s.branch_id, s.phase, payload->second);
      req.traceparent = e.traceparent();
      if (s.one_phase) req.extra_headers.emplace_back("Tx-One-Phase", "true");
      req.timeout = s.timeout.count() > 0 ? s.timeout : options_.engine.retry.callback;
      sends.push_back(std::move(req));
      sent.push_back(std::move(s));
    }
    fx.Clear();
    if (!e.finished()) TrackState(*live, e.state());
    if (e.settled() && !e.finished() && !live->settle_announced) {
      // The outcome is final; only the end record is still to be appended (by this thread,
      // right after): a `wait` reply goes out meanwhile.
      live->settle_announced = true;
      live->cv.notify_all();
    }
    if (e.finished()) {
      if (!live->forgotten) {
        live->forgotten = true;  // nothing more to drive
        const bool committed = e.state() == "committed";
        (committed ? committed_ : aborted_)++;
        const size_t p = live->protocol;
        if (p < finished_.size()) {
          ++finished_[p][committed ? 0 : 1];
          if (live->begun_at)
            duration_[p].Observe(std::chrono::steady_clock::now() - *live->begun_at);
        }
        TrackState(*live, "");
        Forget(live, e.gtid());
      }
      live->cv.notify_all();
      return;
    }
    if (auto wake = e.WakeAt()) {
      if (!live->scheduled_wake || *wake < *live->scheduled_wake) {
        live->scheduled_wake = *wake;
        bool earlier;
        {
          std::lock_guard tl(timer_mu_);
          timers_.push(TimerEntry{*wake, live});
          earlier = *wake < timer_sleeps_until_;
        }
        // Most wake-ups (a deadline seconds away) come after the one the timer thread sleeps
        // for: waking it would cost two context switches per transaction for nothing.
        if (earlier) timer_cv_.notify_one();
      }
    }
  }

  // `last_goes_next`: the caller returns to the transport right after (see SendNext), so the
  // last call may run on the caller's own transport thread.
  void Dispatch(const std::shared_ptr<Live>& live, std::vector<CallbackRequest> sends,
                std::vector<Send> sent, bool last_goes_next = false) {
    for (size_t i = 0; i < sends.size(); ++i) {
      ++callbacks_;
      const size_t phase = IndexOf(Counters::kPhases, sent[i].phase);
      if (phase < retries_.size() && sent[i].attempt > 1) ++retries_[phase];
      const SteadyTime sent_at = std::chrono::steady_clock::now();
      std::weak_ptr<Live> weak = live;
      // The reply is handled on the transport's thread that received it, not posted to the
      // executor: one thread hand-off less per callback. That thread may then append (and wait
      // for the fsync); the transport has enough threads for that. After Stop nothing runs.
      auto done = [this, weak, phase, sent_at, s = std::move(sent[i])](CallbackReply reply) {
        if (reply.reply_class != ReplyClass::kSuccess) ++callback_failures_;
        if (phase < callback_latency_.size()) {
          callback_latency_[phase].Observe(std::chrono::steady_clock::now() - sent_at);
        }
        if (stopping_) return;
        std::shared_ptr<Live> live = weak.lock();
        if (!live) return;
        std::unique_lock lock(live->mu);
        if (live->parked) return;
        Effects fx;
        live->engine->OnReply(clock_.Now(), s, reply, fx);
        Process(live, lock, fx);
      };
      if (last_goes_next && i + 1 == sends.size()) {
        transport_.SendNext(std::move(sends[i]), std::move(done));
      } else {
        transport_.Send(std::move(sends[i]), std::move(done));
      }
    }
  }

  void Post(std::function<void()> task) {
    if (!stopping_) executor_->Post(std::move(task));
  }

  // Appends the pending records of `live`, one Append at a time, until none are left.
  // REQUIRES: the caller set live->appending and does not hold live->mu.
  void Drain(const std::shared_ptr<Live>& live) {
    std::unique_lock lock(live->mu);
    while (!live->pending.empty() && !live->parked) {
      std::vector<v1::LogRecord> batch;
      batch.swap(live->pending);
      const uint64_t upto = live->engine->emitted() - live->pending.size();
      std::string gtid = live->engine->gtid();
      if (live->engine->settled()) {
        // Only the end (with the branches' outcomes) is left, and no reply waits for it: it may
        // share a later append's commit. `appending` stays set until AppendedSoon.
        lock.unlock();
        {
          std::lock_guard soon(soon_mu_);
          ++soon_outstanding_;
        }
        log_.AppendSoon(std::move(batch), [this, live, upto, gtid = std::move(gtid)](Status s) {
          AppendedSoon(live, upto, gtid, s);
        });
        return;
      }
      lock.unlock();
      const Status s = log_.Append(std::move(batch));
      lock.lock();
      if (!Appended(live, lock, upto, gtid, s)) break;
    }
    live->appending = false;
  }

  // After an append of `live`'s records up to `upto`: the engine hears of it, and what it emits
  // goes out. False when the transaction was parked. REQUIRES: lock holds live->mu.
  bool Appended(const std::shared_ptr<Live>& live, std::unique_lock<std::mutex>& lock,
                uint64_t upto, const std::string& gtid, const Status& s) {
    if (!s.ok()) {
      Park(live, gtid, s);
      return false;
    }
    live->tentative = false;
    Effects fx;
    live->engine->OnDurable(clock_.Now(), upto, fx);
    std::vector<CallbackRequest> sends;
    std::vector<Send> sent;
    Collect(live, fx, sends, sent);  // wakes `wait` replies when the transaction finished
    // Only WaitDurable waits for durable progress alone; a client waiting for the end would
    // wake for nothing at every record.
    if (live->durable_waiters > 0) live->cv.notify_all();
    if (!sends.empty()) {
      // Nothing left to append: this thread returns once the calls are out, so on a transport
      // thread the last call may run right here (the next step of a saga, the commit of a
      // one-branch transaction) instead of on another thread woken for it.
      const bool last = live->pending.empty();
      lock.unlock();
      Dispatch(live, std::move(sends), std::move(sent), last);
      lock.lock();
    }
    return true;
  }

  // AppendSoon's outcome, on the thread that led the commit (or the caller's, for a log that
  // appends at once). It must not append itself: anything emitted meanwhile goes to the
  // executor.
  void AppendedSoon(const std::shared_ptr<Live>& live, uint64_t upto, const std::string& gtid,
                    const Status& s) {
    {
      std::unique_lock lock(live->mu);
      if (Appended(live, lock, upto, gtid, s) && !live->pending.empty() && !stopping_) {
        lock.unlock();
        Post([this, live] { Drain(live); });  // `appending` passes on to that task
      } else {
        live->appending = false;
      }
    }
    std::lock_guard soon(soon_mu_);
    if (--soon_outstanding_ == 0) soon_cv_.notify_all();
  }

  // Drops a transaction whose append failed; recovery resumes it from what is durable.
  // REQUIRES: live->mu held.
  void Park(const std::shared_ptr<Live>& live, const std::string& gtid, const Status& s) {
    if (live->parked) return;
    live->parked = true;
    live->tentative = false;
    live->pending.clear();
    TrackState(*live, "");
    if (s.code() == StatusCode::kAlreadyExists) {
      live->park_status = s;  // a begin for a gtid in the log: Begin answers from the log
    } else {
      ++parked_;
      spdlog::warn("{}: append failed, transaction parked until the next recovery pass: {}", gtid,
                   s.ToString());
      live->park_status = Status::Unavailable("the transaction store failed (" + s.message() +
                                              "); the transaction is resumed from the log once "
                                              "it is back; retry, or GET it");
      KickRecovery();
    }
    Forget(live, gtid);
    live->cv.notify_all();
  }

  // Loads one unfinished transaction unless this process already drives it.
  bool Resume(const LoggedTransaction& logged) {
    const std::string& gtid = logged.summary.gtid;
    std::shared_ptr<Live> live;
    Effects fx;
    {
      std::lock_guard lock(map_mu_);
      if (live_.count(gtid) != 0) return false;
      auto engine = RecoverEngine(clock_.Now(), logged, options_.engine, NextSeed(), fx);
      if (!engine.ok()) {
        spdlog::error("{}: cannot resume: {}", gtid, engine.status().ToString());
        return false;
      }
      if ((*engine)->finished()) return false;
      live = std::make_shared<Live>();
      live->engine = std::move(*engine);
      live->protocol = IndexOf(Counters::kProtocols, live->engine->View().protocol());
      // A `wait` reply waits as it would have without the restart: until the deadline plus
      // the grace, and never less than the grace from now.
      live->wait_until = std::chrono::steady_clock::now() + options_.wait_grace;
      if (logged.summary.deadline) {
        const auto left = *logged.summary.deadline - clock_.Now();
        if (left > milliseconds(0)) live->wait_until += left;
      }
      live_.emplace(gtid, live);
    }
    ++recovered_;
    spdlog::info("{}: resumed from the log in state {}", gtid, live->engine->state());
    std::unique_lock lock(live->mu);
    Process(live, lock, fx);
    return true;
  }

  void KickRecovery() {
    {
      std::lock_guard lock(timer_mu_);
      recovery_kicked_ = true;
    }
    recovery_cv_.notify_all();
  }

  // Passes run every recovery_interval, and sooner when kicked after a failure, but never
  // closer together than a tenth of the interval: a store that stays down must not turn
  // park-resume-park into a busy loop.
  void RecoveryLoop() {
    const milliseconds min_gap = std::max(milliseconds(10), options_.recovery_interval / 10);
    std::unique_lock lock(timer_mu_);
    while (!stopping_) {
      recovery_cv_.wait_for(lock, options_.recovery_interval,
                            [this] { return stopping_.load() || recovery_kicked_; });
      if (stopping_) break;
      recovery_kicked_ = false;
      lock.unlock();
      auto resumed = RecoverNow();
      if (!resumed.ok()) {
        spdlog::warn("recovery pass failed, retried in {} ms: {}",
                     options_.recovery_interval.count(), resumed.status().ToString());
      } else if (*resumed > 0) {
        spdlog::info("recovery pass resumed {} transactions", *resumed);
      }
      lock.lock();
      recovery_cv_.wait_for(lock, min_gap, [this] { return stopping_.load(); });
    }
  }

  void TimerLoop() {
    std::unique_lock lock(timer_mu_);
    while (!stopping_) {
      if (timers_.empty()) {
        timer_sleeps_until_ = Timestamp::max();
        timer_cv_.wait(lock, [this] { return stopping_.load() || !timers_.empty(); });
        continue;
      }
      const Timestamp now = clock_.Now();
      const TimerEntry top = timers_.top();
      if (top.at > now) {
        const milliseconds nap = std::min<milliseconds>(top.at - now, milliseconds(1000));
        timer_sleeps_until_ = now + nap;
        timer_cv_.wait_for(lock, nap);
        continue;
      }
      timer_sleeps_until_ = Timestamp::min();  // awake: it looks at the heap again before sleeping
      timers_.pop();
      lock.unlock();
      if (std::shared_ptr<Live> live = top.live.lock()) {
        Post([this, live, at = top.at] {
          std::unique_lock l(live->mu);
          if (live->parked) return;
          if (live->scheduled_wake && *live->scheduled_wake <= at) live->scheduled_wake.reset();
          Effects fx;
          live->engine->OnTimer(clock_.Now(), fx);
          Process(live, l, fx);
        });
      }
      lock.lock();
    }
  }

  TransactionLog& log_;
  CallbackTransport& transport_;
  Clock& clock_;
  const CoordinatorOptions options_;

  std::atomic<bool> stopping_{false};
  std::unique_ptr<Executor> executor_;
  std::mutex soon_mu_;
  std::condition_variable soon_cv_;
  int soon_outstanding_ = 0;  // GUARDED_BY(soon_mu_): AppendSoon calls not yet called back

  mutable std::mutex map_mu_;
  std::unordered_map<std::string, std::shared_ptr<Live>> live_;  // GUARDED_BY(map_mu_)

  std::mutex seed_mu_;
  std::mt19937_64 seed_rng_{std::random_device{}()};  // GUARDED_BY(seed_mu_)

  std::mutex timer_mu_;
  std::condition_variable timer_cv_;
  // When the timer thread wakes up next by itself; min while it is awake.
  Timestamp timer_sleeps_until_ = Timestamp::min();  // GUARDED_BY(timer_mu_)
  std::condition_variable recovery_cv_;
  std::priority_queue<TimerEntry, std::vector<TimerEntry>, std::greater<>> timers_;
  bool recovery_kicked_ = false;  // GUARDED_BY(timer_mu_)
  std::thread timer_thread_;
  std::thread recovery_thread_;

  std::atomic<int64_t> begun_{0}, committed_{0}, aborted_{0}, recovered_{0}, parked_{0},
      callbacks_{0}, callback_failures_{0};
  std::array<std::array<std::atomic<int64_t>, 2>, Counters::kProtocols.size()> finished_{};
  std::array<AtomicHistogram, Counters::kProtocols.size()> duration_;
  std::array<AtomicHistogram, Counters::kPhases.size()> callback_latency_;
  std::array<std::atomic<int64_t>, Counters::kPhases.size()> retries_{};

  // Live transactions by state. A leaf lock: taken with a Live's mu held, never the reverse.
  mutable std::mutex state_mu_;
  std::map<std::string, int64_t, std::less<>> live_by_state_;  // GUARDED_BY(state_mu_)

  // Moves `live` from the state it is counted in to `state` ("": no longer counted).
  // REQUIRES: live.mu held.
  void TrackState(Live& live, std::string_view state) {
    if (live.counted_state == state) return;
    std::lock_guard lock(state_mu_);
    if (!live.counted_state.empty()) --live_by_state_[live.counted_state];
    if (!state.empty()) ++live_by_state_[std::string(state)];
    live.counted_state = std::string(state);
  }
};

Coordinator::Coordinator(TransactionLog& log, CallbackTransport& transport, Clock& clock,
                         CoordinatorOptions options)
    : impl_(std::make_unique<Impl>(log, transport, clock, std::move(options))) {}
Coordinator::~Coordinator() = default;
Status Coordinator::Start() { return impl_->Start(); }
void Coordinator::Stop() { impl_->Stop(); }
Result<TransactionReply> Coordinator::Begin(v1::BeginRequest request, std::string traceparent) {
  return impl_->Begin(std::move(request), std::move(traceparent));
}
Result<TransactionReply> Coordinator::RegisterBranch(std::string_view gtid, v1::Branch branch) {
  return impl_->RegisterBranch(gtid, std::move(branch));
}
Result<TransactionReply> Coordinator::Commit(std::string_view gtid, bool wait) {
  return impl_->Commit(gtid, wait);
}
Result<TransactionReply> Coordinator::Abort(std::string_view gtid, bool wait) {
  return impl_->Abort(gtid, wait);
}
Result<v1::Transaction> Coordinator::Get(std::string_view gtid) { return impl_->Get(gtid); }
Result<v1::TransactionList> Coordinator::List(const ListQuery& query) { return impl_->List(query); }
Result<TransactionReply> Coordinator::Retry(std::string_view gtid) { return impl_->Retry(gtid); }
Result<TransactionReply> Coordinator::Resolve(std::string_view gtid, std::string_view branch_id,
                                              const v1::ResolveRequest& request) {
  return impl_->Resolve(gtid, branch_id, request);
}
Result<v1::TransactionHistory> Coordinator::History(std::string_view gtid) {
  return impl_->History(gtid);
}
Result<Coordinator::PurgeResult> Coordinator::Purge(Timestamp finished_before, int64_t max_count) {
  return impl_->Purge(finished_before, max_count);
}
Status Coordinator::Ping() { return impl_->Ping(); }
Coordinator::Counters Coordinator::counters() const { return impl_->counters(); }
Result<int> Coordinator::RecoverNow() { return impl_->RecoverNow(); }

}  // namespace txcoord::coordinator
