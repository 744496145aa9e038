#include "txcoord/coordinator/memory_log.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <tuple>

#include "log_internal.h"

namespace txcoord::coordinator {

// Stored like the durable backends store: encoded records with checksums, so that reads go
// through the same decoding and damage checks.
class MemoryLogStore {
 public:
  std::mutex mu;
  std::map<std::string, TransactionSummary, std::less<>> summaries;  // GUARDED_BY(mu)
  std::map<std::string, std::vector<internal::EncodedRecord>, std::less<>>
      records;  // GUARDED_BY(mu)
};

namespace {

using internal::PendingAppend;

class MemoryLog final : public TransactionLog {
 public:
  explicit MemoryLog(std::shared_ptr<MemoryLogStore> store)
      : store_(std::move(store)),
        committer_(512, [this](std::span<PendingAppend* const> batch) { Commit(batch); }) {}

  Status Append(std::vector<v1::LogRecord> records) override {
    return committer_.Submit(std::move(records));
  }

  Result<LoggedTransaction> Read(std::string_view gtid) override {
    std::lock_guard lock(store_->mu);
    return ReadLocked(gtid);
  }

  Result<std::vector<LoggedTransaction>> ScanUnfinished(std::string_view after,
                                                        int limit) override {
    TXCOORD_RETURN_IF_ERROR(internal::CheckLimit(limit));
    std::lock_guard lock(store_->mu);
    std::vector<LoggedTransaction> out;
    for (auto it = store_->summaries.upper_bound(after);
         it != store_->summaries.end() && static_cast<int>(out.size()) < limit; ++it) {
      if (it->second.finished()) continue;
      auto tx = ReadLocked(it->first);
      if (!tx.ok()) return tx.status();
      out.push_back(std::move(tx).value());
    }
    return out;
  }

  Result<SummaryPage> List(const ListQuery& q) override {
    TXCOORD_RETURN_IF_ERROR(internal::CheckLimit(q.limit));
    std::lock_guard lock(store_->mu);
    std::optional<std::tuple<Timestamp, std::string>> cursor;
    if (!q.after.empty()) {
      auto it = store_->summaries.find(q.after);
      if (it == store_->summaries.end()) {
        return Status::InvalidArgument("cursor `after` names transaction " + q.after +
                                       ", which does not exist (purged?); start from the top");
      }
      cursor = std::make_tuple(it->second.created_at, it->first);
    }
    std::vector<const TransactionSummary*> match;
    for (const auto& [gtid, s] : store_->summaries) {
      if (!q.state.empty() && s.state != q.state) continue;
      if (q.created_before && !(s.created_at < *q.created_before)) continue;
      if (cursor && !(std::make_tuple(s.created_at, gtid) < *cursor)) continue;
      match.push_back(&s);
    }
    std::sort(match.begin(), match.end(), [](const auto* a, const auto* b) {
      return std::tie(a->created_at, a->gtid) > std::tie(b->created_at, b->gtid);
    });
    SummaryPage page;
    for (const auto* s : match) {
      if (static_cast<int>(page.transactions.size()) == q.limit) {
        page.next = page.transactions.back().gtid;
        break;
      }
      page.transactions.push_back(*s);
    }
    return page;
  }

  using TransactionLog::Purge;
  Result<int64_t> Purge(Timestamp finished_before, int64_t max_count) override {
    std::lock_guard lock(store_->mu);
    int64_t purged = 0;
    for (auto it = store_->summaries.begin();
         it != store_->summaries.end() && purged < max_count;) {
      if (it->second.finished_at && *it->second.finished_at < finished_before) {
        store_->records.erase(it->first);
        it = store_->summaries.erase(it);
        ++purged;
      } else {
        ++it;
      }
    }
    return purged;
  }

  Result<int64_t> CountPurgeable(Timestamp finished_before) override {
    std::lock_guard lock(store_->mu);
    int64_t count = 0;
    for (const auto& [gtid, summary] : store_->summaries) {
      if (summary.finished_at && *summary.finished_at < finished_before) ++count;
    }
    return count;
  }

  Status Ping() override { return Status::Ok(); }
  LogStats Stats() const override { return committer_.stats(); }

 private:
  // REQUIRES: store_->mu held.
  Result<LoggedTransaction> ReadLocked(std::string_view gtid) {
    auto s = store_->summaries.find(gtid);
    if (s == store_->summaries.end()) {
      return Status::NotFound("transaction " + std::string(gtid) + " does not exist");
    }
    LoggedTransaction tx;
    tx.summary = s->second;
    for (const auto& e : store_->records[std::string(gtid)]) {
      auto r = internal::DecodeRecord(gtid, e.seq, e.body, e.crc);
      if (!r.ok()) return r.status();
      tx.records.push_back(std::move(r).value());
    }
    if (static_cast<int64_t>(tx.records.size()) != tx.summary.record_count) {
      return Status::Corruption("transaction " + std::string(gtid) + " has " +
                                std::to_string(tx.records.size()) + " records, its summary " +
                                std::to_string(tx.summary.record_count));
    }
    return tx;
  }

  void Commit(std::span<PendingAppend* const> batch) {
    std::lock_guard lock(store_->mu);
    internal::SummaryMap summaries;
    for (const auto& gtid : internal::BatchGtids(batch)) {
      auto it = store_->summaries.find(gtid);
      summaries[gtid] = it == store_->summaries.end() ? std::nullopt : std::optional(it->second);
    }
    for (PendingAppend* p : batch) p->status = Status::Ok();
    std::vector<internal::EncodedRecord> encoded;
    for (const auto& gtid : internal::ApplyBatch(batch, &summaries, &encoded)) {
      store_->summaries[gtid] = *summaries.at(gtid);
    }
    for (auto& e : encoded) store_->records[e.gtid].push_back(std::move(e));
  }

  std::shared_ptr<MemoryLogStore> store_;
  internal::GroupCommitter committer_;
};

}  // namespace

std::shared_ptr<MemoryLogStore> NewMemoryLogStore() { return std::make_shared<MemoryLogStore>(); }

std::unique_ptr<TransactionLog> OpenMemoryLog(std::shared_ptr<MemoryLogStore> store) {
  return std::make_unique<MemoryLog>(std::move(store));
}

void TearMemoryRecords(MemoryLogStore& store, const std::string& gtid) {
  std::lock_guard lock(store.mu);
  for (auto& e : store.records[gtid]) e.body.resize(e.body.size() - 2);
}

}  // namespace txcoord::coordinator

namespace txcoord::coordinator {

void DropLastMemoryRecord(MemoryLogStore& store, const std::string& gtid) {
  std::lock_guard lock(store.mu);
  auto& records = store.records[gtid];
  if (!records.empty()) records.pop_back();
}

}  // namespace txcoord::coordinator
