#include "txcoord/outbox/relay.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <queue>
#include <random>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "fault_points.h"

namespace txcoord::outbox {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

milliseconds Jittered(milliseconds base) {
  thread_local std::mt19937_64 engine{std::random_device{}()};
  const auto spread = std::max<int64_t>(1, base.count() / 4);
  return base + milliseconds(std::uniform_int_distribution<int64_t>(0, spread)(engine));
}

milliseconds ExponentialBackoff(int attempts, milliseconds min, milliseconds max) {
  milliseconds delay = min;
  for (int i = 1; i < attempts && delay < max; ++i) delay *= 2;
  return Jittered(std::min(delay, max));
}

}  // namespace

std::string_view RoleName(SourceStatus::Role role) {
  switch (role) {
    case SourceStatus::Role::kConnecting:
      return "connecting";
    case SourceStatus::Role::kStandby:
      return "standby";
    case SourceStatus::Role::kLeader:
      return "leader";
    case SourceStatus::Role::kStopped:
      return "stopped";
  }
  return "unknown";
}

// One source, its bus connection and its thread. Everything but the members marked otherwise
// is touched only by the pump's thread.
class Relay::Pump {
 public:
  Pump(size_t index, std::unique_ptr<OutboxSource> source,
       std::function<std::unique_ptr<EventBus>(size_t, EventBus::Sink)> make_bus,
       std::string subject_prefix, RelayOptions options, RelayHooks hooks)
      : index_(index),
        source_(std::move(source)),
        make_bus_(std::move(make_bus)),
        subject_prefix_(std::move(subject_prefix)),
        options_(std::move(options)),
        hooks_(std::move(hooks)),
        wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    status_.name = source_->name();
  }

  ~Pump() {
    if (thread_.joinable()) {
      RequestStop();
      thread_.join();
    }
    if (wake_fd_ >= 0) close(wake_fd_);
  }

  void Start() {
    thread_ = std::thread([this] { Run(); });
  }

  void RequestStop() {
    stop_requested_.store(true);
    Wake();
  }

  bool Join() {
    if (thread_.joinable()) thread_.join();
    return drained_;
  }

  SourceStatus Snapshot() const {
    std::lock_guard lock(status_mu_);
    return status_;
  }

 private:
  // A row read and turned into a message (or found bad), waiting for its turn.
  struct Entry {
    int64_t id = 0;
    int64_t bytes = 0;  // the payload's, counted in buffered_bytes_
    std::string event_id;
    Result<BusMessage> message = Status::Internal("unset");
  };
  // The rows of one aggregate (type and id) held here. Known by a handle, never reused, so that
  // the queues and maps below name it with an integer: a handle whose aggregate is gone finds
  // nothing.
  struct Aggregate {
    std::string key;          // AggregateKey of its rows
    std::deque<Entry> queue;  // in id order; the front is in flight when in_flight
    bool in_flight = false;
    bool retry_pending = false;  // waiting in retry_timers_ after a refused publish
    int attempts = 0;            // failed publishes of the front entry
    bool blocked = false;        // the front entry is a bad row; nothing of it is queued
  };
  struct InFlight {
    uint64_t aggregate;  // handle
    Clock::time_point sent_at;
  };

  // ---- the loop ---------------------------------------------------------------------------

  void Run() {
    int source_failures = 0;
    int bus_failures = 0;
    Clock::time_point retry_source_at{};
    Clock::time_point retry_bus_at{};
    while (true) {
      const auto now = Clock::now();
      if (stop_requested_.load() && !draining_) {
        if (role_ != SourceStatus::Role::kLeader || bus_ == nullptr || !bus_connected_) break;
        draining_ = true;
        drain_deadline_ = now + options_.drain_timeout;
        spdlog::info("{}: draining {} messages in flight", source_->name(), in_flight_.size());
      }
      if (draining_ && (in_flight_.empty() || now >= drain_deadline_)) break;

      if (!source_->connected()) {
        SetRole(SourceStatus::Role::kConnecting);
        if (now >= retry_source_at) {
          if (Status s = source_->Connect(); s.ok()) {
            if (source_connects_++ > 0) ++source_reconnects_;
            source_failures = 0;
            spdlog::info("{}: connected (watermark {})", source_->name(), source_->watermark());
            ClearError();
            want_read_ = true;
            next_stats_ = now;
          } else {
            ++source_failures;
            retry_source_at = now + ExponentialBackoff(source_failures, options_.reconnect_min,
                                                       options_.reconnect_max);
            ReportError(s);
          }
        }
        if (!source_->connected()) {
          PublishStatus();
          WaitUntil(retry_source_at, false);
          continue;
        }
      }

      if (!source_->leading()) {
        SetRole(SourceStatus::Role::kStandby);
        auto lead = source_->TryLead();
        if (!lead.ok()) {
          OnSourceFailure(lead.status());
          continue;
        }
        if (!*lead) {
          MaybeStats(now);
          PublishStatus();
          WaitUntil(now + options_.leader_retry, false);
          continue;
        }
      }
      if (role_ != SourceStatus::Role::kLeader) {
        // Leading now: just took the lock, or kept it across a reconnect (SQLite's flock
        // outlives the database connection).
        spdlog::info("{}: leading: this relay now publishes this outbox", source_->name());
        SetRole(SourceStatus::Role::kLeader);
        want_read_ = true;
        next_sweep_ = now + options_.sweep_interval;
        next_retention_ = now;
      }

      if (bus_ == nullptr || !bus_connected_) {
        if (now < retry_bus_at) {
          PublishStatus();
          WaitUntil(retry_bus_at, false);
          continue;
        }
        if (bus_ == nullptr) {
          bus_ = make_bus_(index_, [this](const BusEvent& event) { OnBusEvent(event); });
        }
        if (Status s = bus_->Connect(); !s.ok()) {
          ++bus_failures;
          retry_bus_at = now + ExponentialBackoff(bus_failures, options_.reconnect_min,
                                                  options_.reconnect_max);
          ReportError(s);
          PublishStatus();
          continue;
        }
        if (bus_failures > 0 || bus_connects_ > 0) ++bus_reconnects_;
        ++bus_connects_;
        bus_failures = 0;
        bus_connected_ = true;
        ClearError();
        spdlog::info("{}: publishing to {}", source_->name(), bus_->Describe());
        want_read_ = true;
      }

      // The leader's work. Each step may find the source or the bus broken; then the loop
      // starts over from the top.
      if (!TakeBusEvents()) continue;
      if (!CheckTimeouts(now)) continue;
      ReleaseRetries(now);
      if (!draining_) {
        if (!Dispatch()) continue;
        if (!ReadMore(now)) continue;
        if (!Dispatch()) continue;
      }
      if (!MaybeMark(now, draining_)) continue;
      if (!draining_) {
        if (!MaybeSweep(now)) continue;
        if (!MaybeRetention(now)) continue;
        if (!MaybeStats(now)) continue;
      }
      PublishStatus();
      WaitForWork(now);
    }

    // Stopping: what was acked is marked (a failure here costs duplicates, never loss).
    if (source_->connected() && source_->leading()) (void)MaybeMark(Clock::now(), true);
    drained_ = in_flight_.empty() && !drain_failed_;
    if (!drained_) {
      spdlog::warn("{}: {} messages still in flight after {} ms; they will be published again",
                   source_->name(), in_flight_.size(), options_.drain_timeout.count());
    }
    if (bus_ != nullptr) bus_->Disconnect();
    source_->Close();
    SetRole(SourceStatus::Role::kStopped);
    PublishStatus();
  }

  // ---- bus events ---------------------------------------------------------------------------

  void OnBusEvent(const BusEvent& event) {  // any bus thread
    bool first;
    {
      std::lock_guard lock(events_mu_);
      first = events_.empty();
      events_.push_back(event);
    }
    // The pump takes all events at once; one wake-up per batch, not one system call per ack.
    if (first) Wake();
  }

  // False when the bus broke (its state was dropped).
  bool TakeBusEvents() {
    // Two buffers swapped back and forth keep their capacity: no allocation per batch of acks.
    taken_events_.clear();
    {
      std::lock_guard lock(events_mu_);
      taken_events_.swap(events_);
    }
    bool broken = false;
    Status why;
    for (const BusEvent& event : taken_events_) {
      if (event.kind == BusEvent::Kind::kDisconnected) {
        broken = true;
        why = event.status;
        continue;
      }
      OnAck(event);
    }
    if (broken) {
      OnBusFailure(why);
      return false;
    }
    return true;
  }

  void OnAck(const BusEvent& event) {
    const int64_t id = static_cast<int64_t>(event.token);
    auto it = in_flight_.find(id);
    if (it == in_flight_.end()) return;  // from before a reset: the row is read again anyway
    const uint64_t handle = it->second.aggregate;
    in_flight_.erase(it);
    auto agg_it = aggregates_.find(handle);
    if (agg_it == aggregates_.end()) return;
    Aggregate& agg = agg_it->second;
    agg.in_flight = false;
    if (event.status.ok()) {
      Entry& entry = agg.queue.front();
      if (hooks_.on_published) hooks_.on_published(index_, id, entry.event_id, event.duplicate);
      ++published_;
      if (event.duplicate) ++duplicates_;
      if (to_mark_.empty()) oldest_unmarked_ = Clock::now();
      to_mark_.push_back(id);
      buffered_bytes_ -= agg.queue.front().bytes;
      agg.queue.pop_front();
      agg.attempts = 0;
      --buffered_;
      if (!agg.queue.empty()) {
        ready_.push_back(handle);
      } else {
        handles_.erase(agg.key);
        aggregates_.erase(agg_it);
      }
      return;
    }
    // Refused: publish it again later, first of its aggregate, so nothing overtakes it.
    ++publish_errors_;
    ++agg.attempts;
    agg.retry_pending = true;
    const milliseconds delay =
        ExponentialBackoff(agg.attempts, options_.retry_min, options_.retry_max);
    retry_timers_.push({Clock::now() + delay, handle});
    ReportError(event.status.WithContext("row id " + std::to_string(id) + " (attempt " +
                                         std::to_string(agg.attempts) + ", again in " +
                                         std::to_string(delay.count()) + " ms)"));
  }

  bool CheckTimeouts(Clock::time_point now) {
    while (!sent_order_.empty()) {
      const auto& [sent_at, id] = sent_order_.front();
      auto it = in_flight_.find(id);
      if (it == in_flight_.end() || it->second.sent_at != sent_at) {
        sent_order_.pop_front();  // acked, or sent again since
        continue;
      }
      if (now - sent_at < options_.publish_timeout) return true;
      OnBusFailure(Status::Unavailable("no acknowledgement for row id " + std::to_string(id) +
                                       " within " +
                                       std::to_string(options_.publish_timeout.count()) + " ms"));
      return false;
    }
    return true;
  }

  void ReleaseRetries(Clock::time_point now) {
    while (!retry_timers_.empty() && retry_timers_.top().first <= now) {
      const uint64_t handle = retry_timers_.top().second;
      retry_timers_.pop();
      auto it = aggregates_.find(handle);
      if (it == aggregates_.end() || !it->second.retry_pending) continue;
      it->second.retry_pending = false;
      ready_.push_back(handle);
    }
  }

  // ---- publishing -----------------------------------------------------------------------------

  // Sends the front entry of ready aggregates while the window has room. False if the bus broke.
  bool Dispatch() {
    const int64_t max_payload = bus_->max_payload();
    while (static_cast<int>(in_flight_.size()) < options_.window && !ready_.empty()) {
      const uint64_t handle = ready_.front();
      ready_.pop_front();
      auto it = aggregates_.find(handle);
      if (it == aggregates_.end()) continue;
      Aggregate& agg = it->second;
      if (agg.in_flight || agg.retry_pending || agg.blocked || agg.queue.empty()) continue;
      Entry& entry = agg.queue.front();
      if (entry.message.ok() && max_payload > 0 &&
          static_cast<int64_t>(WireSize(*entry.message)) > max_payload) {
        entry.message = Status::InvalidArgument(
            "outbox row id " + std::to_string(entry.id) + ": the message takes " +
            std::to_string(WireSize(*entry.message)) + " bytes, above the broker's max_payload " +
            std::to_string(max_payload));
      }
      if (!entry.message.ok()) {
        Block(agg);
        continue;
      }
      const int64_t id = entry.id;
      if (Status s = bus_->PublishAsync(*entry.message, static_cast<uint64_t>(id)); !s.ok()) {
        ready_.push_front(handle);
        OnBusFailure(s);
        return false;
      }
      FaultPoint("relay.after_publish");
      agg.in_flight = true;
      const auto now = Clock::now();
      in_flight_[id] = InFlight{handle, now};
      sent_order_.emplace_back(now, id);
    }
    return true;
  }

  // The front of `agg` is a bad row: hold the aggregate. Its queued rows go back to the
  // database (forgotten here); a later sweep reads them again, the bad row first.
  void Block(Aggregate& agg) {
    const std::string& key = agg.key;
    const Entry& bad = agg.queue.front();
    const std::string& reason = bad.message.status().message();
    seen_bad_in_sweep_.insert(bad.id);
    auto [it, inserted] = bad_rows_.try_emplace(bad.id, reason);
    if (inserted || it->second != reason) {
      it->second = reason;
      spdlog::error(
          "{}: {}; the row stays unpublished and later events of aggregate {}/{} wait "
          "behind it: fix or delete the row",
          source_->name(), reason, key.substr(0, key.find('\0')), key.substr(key.find('\0') + 1));
    }
    {
      std::lock_guard lock(status_mu_);
      status_.last_error = reason;
    }
    for (const Entry& e : agg.queue) {
      known_.erase(e.id);
      buffered_bytes_ -= e.bytes;
    }
    buffered_ -= static_cast<int64_t>(agg.queue.size());
    agg.queue.clear();
    agg.blocked = true;
  }

  // ---- reading --------------------------------------------------------------------------------

  // Takes a row read from the source into its aggregate's queue.
  void Accept(OutboxRow row) {
    if (known_.contains(row.id)) return;
    std::string key = AggregateKey(row);
    auto [handle_it, created] = handles_.try_emplace(key, next_handle_);
    const uint64_t handle = handle_it->second;
    Aggregate& agg = aggregates_[handle];
    if (created) {
      ++next_handle_;
      agg.key = std::move(key);
    }
    if (agg.blocked) return;  // waits in the database for the sweep
    Entry entry;
    entry.id = row.id;
    entry.bytes = static_cast<int64_t>(row.payload.size());
    entry.message = ToMessage(row, subject_prefix_);
    entry.event_id = std::move(row.event_id);
    if (entry.message.ok()) {
      bad_rows_.erase(row.id);
    } else {
      seen_bad_in_sweep_.insert(row.id);
    }
    const int64_t entry_bytes = entry.bytes;
    const bool was_idle = agg.queue.empty() && !agg.in_flight && !agg.retry_pending;
    if (!agg.queue.empty() && agg.queue.back().id > row.id) {
      // Visible only now although a later row of the aggregate was read first (a transaction
      // that committed late, or a row skipped and found by a sweep). Keep id order among what
      // has not been sent; what was sent already cannot be called back.
      auto pos = std::upper_bound(agg.queue.begin() + (agg.in_flight || agg.retry_pending ? 1 : 0),
                                  agg.queue.end(), row.id,
                                  [](int64_t id, const Entry& e) { return id < e.id; });
      agg.queue.insert(pos, std::move(entry));
    } else {
      agg.queue.push_back(std::move(entry));
    }
    known_.insert(row.id);
    ++buffered_;
    buffered_bytes_ += entry_bytes;
    if (was_idle) ready_.push_back(handle);
  }

  // Whether rows may be read now: below both bounds, or nothing held at all (so that one row
  // larger than max_buffered_bytes still goes out).
  bool CanRead() const {
    return buffered_ < options_.max_buffered_rows &&
           (buffered_ == 0 || buffered_bytes_ < options_.max_buffered_bytes);
  }
  // What one read may bring in: `rows`, and the bytes left below max_buffered_bytes.
  ReadLimit Room(int rows) const {
    return ReadLimit(rows, std::max<int64_t>(1, options_.max_buffered_bytes - buffered_bytes_));
  }

  // False when the source broke.
  bool ReadMore(Clock::time_point now) {
    if (sweeping_) {
      if (!CanRead()) return true;
      const ReadLimit limit = Room(options_.read_batch);
      auto rows = source_->ReadUnpublished(sweep_after_, sweep_up_to_, limit);
      if (!rows.ok()) {
        OnSourceFailure(rows.status());
        return false;
      }
      for (OutboxRow& row : *rows) {
        sweep_after_ = row.id;
        Accept(std::move(row));
      }
      if (!ReadMayHaveMore(*rows, limit)) {
        sweeping_ = false;
        // Bad rows below the sweep's end that it did not meet again were fixed or deleted.
        std::erase_if(bad_rows_, [&](const auto& entry) {
          return entry.first <= sweep_up_to_ && !seen_bad_in_sweep_.contains(entry.first);
        });
      }
      return true;
    }
    if (recheck_at_ && now >= *recheck_at_) {
      recheck_at_.reset();
      want_read_ = true;
    }
    if (!want_read_ || !CanRead()) return true;
    const int room = static_cast<int>(
        std::min<int64_t>(options_.read_batch, options_.max_buffered_rows - buffered_));
    auto read = source_->ReadNext(Room(room));
    if (!read.ok()) {
      OnSourceFailure(read.status());
      return false;
    }
    if (read->rewound) {
      // An operator replayed rows (txctl outbox replay). Rows queued here could otherwise go out
      // before replayed rows of their aggregate; so everything not yet acknowledged is dropped
      // and read again with the replayed rows, in id order. Acks still outstanding are ignored
      // (their rows come again, as duplicates); acked rows keep their place in the next mark.
      spdlog::info("{}: rows were replayed: publishing again from id {}", source_->name(),
                   source_->watermark() + 1);
      ++replays_;
      DropPipeline(/*keep_acked=*/true);
      want_read_ = true;
      return true;
    }
    for (OutboxRow& row : read->rows) Accept(std::move(row));
    want_read_ = read->more;
    if (read->recheck_after.count() > 0) recheck_at_ = now + read->recheck_after;
    return true;
  }

  bool MaybeSweep(Clock::time_point now) {
    if (sweeping_ || now < next_sweep_) return true;
    next_sweep_ = now + options_.sweep_interval;
    StartSweep();
    return true;
  }

  void StartSweep() {
    // Held aggregates get another look: their bad row is read again (and held again if still
    // bad), their other rows follow it.
    std::erase_if(aggregates_, [this](const auto& entry) {
      if (!entry.second.blocked) return false;
      handles_.erase(entry.second.key);
      return true;
    });
    seen_bad_in_sweep_.clear();
    sweeping_ = true;
    sweep_after_ = 0;
    sweep_up_to_ = source_->watermark();
  }

  // ---- marking, retention, stats --------------------------------------------------------------

  bool MaybeMark(Clock::time_point now, bool force) {
    if (to_mark_.empty()) return true;
    if (!force && static_cast<int>(to_mark_.size()) < options_.mark_batch &&
        now - oldest_unmarked_ < options_.mark_interval) {
      return true;
    }
    FaultPoint("relay.after_ack_before_mark");
    if (Status s = source_->MarkPublished(to_mark_); !s.ok()) {
      if (s.code() == StatusCode::kConflict && !force) {
        // Busy writers: try again after another mark_interval. The source decides when waiting
        // is worth it (SQLite: once the batch is large); then it blocks instead.
        oldest_unmarked_ = now;
        ++marks_put_off_;
        return true;
      }
      OnSourceFailure(s);
      return false;
    }
    marked_ += static_cast<int64_t>(to_mark_.size());
    for (const int64_t id : to_mark_) known_.erase(id);
    to_mark_.clear();
    return true;
  }

  bool MaybeRetention(Clock::time_point now) {
    if (now < next_retention_) return true;
    next_retention_ = now + options_.retention_interval;
    if (options_.retention.count() <= 0) return true;
    constexpr int kBatch = 1000;
    constexpr int kMaxBatches = 20;  // the rest next time: the relay's work comes first
    for (int i = 0; i < kMaxBatches; ++i) {
      auto removed = source_->ApplyRetention(options_.retention, options_.retention_mode, kBatch);
      if (!removed.ok()) {
        if (!source_->connected()) {  // the connection broke: reconnect as after any failure
          OnSourceFailure(removed.status());
          return false;
        }
        // The statement failed on a working connection (no DELETE right, an archive table
        // that no longer matches, a timeout): publishing must go on, or the relay would drop
        // its window, reconnect and republish the same rows for ever. Tried again next interval.
        spdlog::warn(
            "{}: retention failed, tried again in {} s; publishing goes on: {}", source_->name(),
            std::chrono::duration_cast<std::chrono::seconds>(options_.retention_interval).count(),
            removed.status().ToString());
        break;
      }
      retention_removed_ += *removed;
      if (*removed < kBatch) break;
    }
    return true;
  }

  bool MaybeStats(Clock::time_point now) {
    if (now < next_stats_) return true;
    next_stats_ = now + options_.stats_interval;
    auto stats = source_->Stats();
    if (!stats.ok()) {
      OnSourceFailure(stats.status());
      return false;
    }
    stats_ = *stats;
    stats_known_ = true;
    rate_samples_.emplace_back(now, published_);
    while (rate_samples_.size() > 2 &&
           now - rate_samples_.front().first > std::chrono::seconds(10)) {
      rate_samples_.pop_front();
    }
    return true;
  }

  // ---- failures -------------------------------------------------------------------------------

  // Forget every row held in memory; they are all still unpublished in the database (acked
  // ones too, unless marked) and are read again, oldest first.
  void DropPipeline(bool keep_acked) {
    aggregates_.clear();
    handles_.clear();
    ready_.clear();
    in_flight_.clear();
    sent_order_.clear();
    retry_timers_ = {};
    known_.clear();
    buffered_ = 0;
    buffered_bytes_ = 0;
    if (keep_acked) {
      known_.insert(to_mark_.begin(), to_mark_.end());
    } else {
      to_mark_.clear();
    }
  }

  void OnBusFailure(const Status& why) {
    ReportError(why.WithContext("bus " + (bus_ ? bus_->Describe() : std::string("?"))));
    bus_connected_ = false;
    if (bus_ != nullptr) bus_->Disconnect();
    {
      std::lock_guard lock(events_mu_);
      events_.clear();  // outcomes of the dropped connection
    }
    if (!in_flight_.empty() && draining_) drain_failed_ = true;
    DropPipeline(/*keep_acked=*/true);
    if (draining_) return;  // nothing more will be published; the loop ends
    if (source_->connected()) StartSweep();
  }

  void OnSourceFailure(const Status& why) {
    ReportError(why);
    source_->Close();
    DropPipeline(/*keep_acked=*/false);
    sweeping_ = false;
    stats_known_ = false;
    SetRole(SourceStatus::Role::kConnecting);
  }

  void ReportError(const Status& s) {
    const auto now = Clock::now();
    // The same failure again within 5 s is not logged again: a dead database is retried often.
    if (s.message() != last_logged_error_ || now - last_logged_at_ > std::chrono::seconds(5)) {
      spdlog::warn("{}: {}", source_->name(), s.message());
      last_logged_error_ = s.message();
      last_logged_at_ = now;
    }
    std::lock_guard lock(status_mu_);
    status_.last_error = s.message();
  }

  void ClearError() {
    std::lock_guard lock(status_mu_);
    status_.last_error.clear();
  }

  void SetRole(SourceStatus::Role role) {
    if (role_ == role) return;
    role_ = role;
    if (role != SourceStatus::Role::kLeader && role != SourceStatus::Role::kStopped) {
      if (bus_ != nullptr) bus_->Disconnect();
      bus_connected_ = false;
    }
  }

  void PublishStatus() {
    std::lock_guard lock(status_mu_);
    status_.role = role_;
    status_.bus_connected = bus_connected_ && role_ == SourceStatus::Role::kLeader;
    status_.stats_known = stats_known_;
    status_.pending_rows = stats_.pending_rows;
    status_.oldest_unpublished_age_s = stats_.oldest_unpublished_age_s;
    status_.published_total = published_;
    status_.duplicates_total = duplicates_;
    status_.publish_errors_total = publish_errors_;
    status_.bus_reconnects_total = bus_reconnects_;
    status_.source_reconnects_total = source_reconnects_;
    status_.marked_total = marked_;
    status_.marks_put_off_total = marks_put_off_;
    status_.retention_removed_total = retention_removed_;
    status_.replays_total = replays_;
    status_.bad_rows = static_cast<int64_t>(bad_rows_.size());
    status_.in_flight = static_cast<int64_t>(in_flight_.size());
    status_.buffered = buffered_;
    status_.buffered_bytes = buffered_bytes_;
    if (rate_samples_.size() >= 2) {
      const auto& [t0, n0] = rate_samples_.front();
      const auto& [t1, n1] = rate_samples_.back();
      const double seconds = std::chrono::duration<double>(t1 - t0).count();
      status_.publish_rate_per_s = seconds > 0 ? static_cast<double>(n1 - n0) / seconds : 0;
    }
  }

  // ---- waiting --------------------------------------------------------------------------------

  void Wake() {
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
  }

  // Sleeps until `deadline`, a wake-up (bus event, stop) or, when `watch_source`, a change
  // signal from the source.
  void WaitUntil(Clock::time_point deadline, bool watch_source) {
    const auto now = Clock::now();
    const int timeout_ms =
        deadline <= now ? 0
                        : static_cast<int>(std::min<int64_t>(
                              std::chrono::ceil<milliseconds>(deadline - now).count(), 60000));
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {-1, POLLIN, 0}};
    if (watch_source && source_->connected()) fds[1].fd = source_->change_fd();
    poll(fds, fds[1].fd >= 0 ? 2 : 1, timeout_ms);
    if (fds[0].revents & POLLIN) {
      uint64_t count;
      (void)!read(wake_fd_, &count, sizeof count);
    }
    if (fds[1].fd >= 0 && (fds[1].revents & (POLLIN | POLLERR | POLLHUP))) check_source_ = true;
  }

  void WaitForWork(Clock::time_point now) {
    const bool can_read = CanRead();
    const bool can_send = static_cast<int>(in_flight_.size()) < options_.window;
    // Work that needs no waiting.
    bool busy =
        !draining_ && ((can_read && (want_read_ || sweeping_)) || (can_send && !ready_.empty()));
    if (!events_empty()) busy = true;
    Clock::time_point deadline = now + options_.change_check;
    if (!busy && !draining_) {
      // Before sleeping: a change signal may already sit in a client library's buffer, where
      // poll() cannot see it (libpq reads a NOTIFY that arrives with a query's reply).
      if (!CheckSource(now)) return;
      if (want_read_ && can_read) return;
    }
    if (!busy) {
      if (!to_mark_.empty())
        deadline = std::min(deadline, oldest_unmarked_ + options_.mark_interval);
      if (!retry_timers_.empty()) deadline = std::min(deadline, retry_timers_.top().first);
      if (recheck_at_) deadline = std::min(deadline, *recheck_at_);
      if (!sent_order_.empty()) {
        deadline = std::min(deadline, sent_order_.front().first + options_.publish_timeout);
      }
      deadline =
          std::min({deadline, next_sweep_, next_stats_, next_retention_, next_change_check_});
      if (draining_) deadline = std::min(deadline, drain_deadline_);
      WaitUntil(deadline, true);
    } else if (source_->change_fd() >= 0) {
      // Still look at the change signal, without sleeping, so it never stays readable.
      WaitUntil(now, true);
    }
    const auto after = Clock::now();
    if (check_source_ || after >= next_change_check_) (void)CheckSource(after);
  }

  // Asks the source whether rows may have arrived. False when the source broke.
  bool CheckSource(Clock::time_point now) {
    check_source_ = false;
    next_change_check_ = now + options_.change_check;
    auto changed = source_->CheckChanged();
    if (!changed.ok()) {
      OnSourceFailure(changed.status());
      return false;
    }
    if (changed->changed) want_read_ = true;
    if (changed->recheck_after.count() > 0) next_change_check_ = now + changed->recheck_after;
    return true;
  }

  bool events_empty() {
    std::lock_guard lock(events_mu_);
    return events_.empty();
  }

  const size_t index_;
  const std::unique_ptr<OutboxSource> source_;
  const std::function<std::unique_ptr<EventBus>(size_t, EventBus::Sink)> make_bus_;
  const std::string subject_prefix_;
  const RelayOptions options_;
  const RelayHooks hooks_;
  const int wake_fd_;
  std::thread thread_;
  std::atomic<bool> stop_requested_{false};
  bool drained_ = true;  // read by Join after the thread ended

  std::unique_ptr<EventBus> bus_;
  bool bus_connected_ = false;
  int64_t bus_connects_ = 0;
  SourceStatus::Role role_ = SourceStatus::Role::kConnecting;
  bool draining_ = false;
  bool drain_failed_ = false;
  Clock::time_point drain_deadline_{};

  std::mutex events_mu_;
  std::vector<BusEvent> events_;        // GUARDED_BY(events_mu_)
  std::vector<BusEvent> taken_events_;  // what TakeBusEvents works through

  std::unordered_map<std::string, uint64_t> handles_;  // AggregateKey -> handle
  std::unordered_map<uint64_t, Aggregate> aggregates_;
  uint64_t next_handle_ = 1;
  std::deque<uint64_t> ready_;  // aggregates whose front may be sent (checked when taken)
  std::unordered_map<int64_t, InFlight> in_flight_;
  std::deque<std::pair<Clock::time_point, int64_t>> sent_order_;
  using Timer = std::pair<Clock::time_point, uint64_t>;  // when, aggregate handle
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> retry_timers_;
  std::unordered_set<int64_t> known_;  // ids queued, in flight, or acked and not yet marked
  int64_t buffered_ = 0;               // rows queued or in flight
  int64_t buffered_bytes_ = 0;         // their payloads
  std::vector<int64_t> to_mark_;
  Clock::time_point oldest_unmarked_{};
  std::map<int64_t, std::string> bad_rows_;  // id -> why, as last logged
  std::unordered_set<int64_t> seen_bad_in_sweep_;

  bool want_read_ = true;
  std::optional<Clock::time_point> recheck_at_;
  bool check_source_ = false;
  Clock::time_point next_change_check_{};
  bool sweeping_ = false;
  int64_t sweep_after_ = 0;
  int64_t sweep_up_to_ = 0;
  Clock::time_point next_sweep_{};
  Clock::time_point next_stats_{};
  Clock::time_point next_retention_{};

  SourceStats stats_;
  bool stats_known_ = false;
  int64_t published_ = 0;
  int64_t duplicates_ = 0;
  int64_t publish_errors_ = 0;
  int64_t bus_reconnects_ = 0;
  int64_t source_reconnects_ = 0;
  int64_t source_connects_ = 0;
  int64_t marked_ = 0;
  int64_t marks_put_off_ = 0;
  int64_t retention_removed_ = 0;
  int64_t replays_ = 0;
  std::deque<std::pair<Clock::time_point, int64_t>> rate_samples_;
  std::string last_logged_error_;
  Clock::time_point last_logged_at_{};

  mutable std::mutex status_mu_;
  SourceStatus status_;  // GUARDED_BY(status_mu_)
};

// ---- Relay --------------------------------------------------------------------------------------

Relay::Parts Relay::DefaultParts(std::vector<SourceConfig> sources, std::vector<std::string> names,
                                 JetStreamConfig bus) {
  Parts parts;
  parts.make_source = [sources = std::move(sources), names = std::move(names)](size_t i) {
    return MakeSource(sources[i], names[i]);
  };
  parts.make_bus = [bus = std::move(bus)](size_t, EventBus::Sink sink) {
    return MakeJetStreamBus(bus, std::move(sink));
  };
  return parts;
}

Relay::Relay(size_t source_count, Parts parts, std::string subject_prefix, RelayOptions options,
             RelayHooks hooks) {
  for (size_t i = 0; i < source_count; ++i) {
    pumps_.push_back(std::make_unique<Pump>(i, parts.make_source(i), parts.make_bus, subject_prefix,
                                            options, hooks));
  }
}

Relay::~Relay() {
  if (started_ && !stopped_) Stop();
}

void Relay::Start() {
  started_ = true;
  for (auto& pump : pumps_) pump->Start();
}

bool Relay::Stop() {
  stopped_ = true;
  for (auto& pump : pumps_) pump->RequestStop();
  bool drained = true;
  for (auto& pump : pumps_) drained = pump->Join() && drained;
  return drained;
}

std::vector<SourceStatus> Relay::Statuses() const {
  std::vector<SourceStatus> out;
  out.reserve(pumps_.size());
  for (const auto& pump : pumps_) out.push_back(pump->Snapshot());
  return out;
}

}  // namespace txcoord::outbox
