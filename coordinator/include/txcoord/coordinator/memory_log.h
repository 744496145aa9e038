// A transaction log in memory, for unit tests and the simulator: the same rules and the same
// group commit as the durable backends (it passes the same conformance suite), but nothing is
// durable. Never offered by OpenLog or --store.
//
// The records live in a MemoryLogStore that outlives the logs opened on it, the way a disk
// outlives a process: a test "restarts" by dropping the log and opening a new one on the store.
#pragma once

#include <memory>

#include "txcoord/coordinator/log.h"

namespace txcoord::coordinator {

class MemoryLogStore;

// A new, empty store. Thread-safe; shared by every log opened on it.
std::shared_ptr<MemoryLogStore> NewMemoryLogStore();
std::unique_ptr<TransactionLog> OpenMemoryLog(std::shared_ptr<MemoryLogStore> store);

// Damages every stored record of `gtid` (cuts two bytes off), as a torn write would.
void TearMemoryRecords(MemoryLogStore& store, const std::string& gtid);
// Loses the last stored record of `gtid`, as a lost write would.
void DropLastMemoryRecord(MemoryLogStore& store, const std::string& gtid);

// Forwards every call to another log; a test fake derives from it and overrides just the call it
// needs (LevelDB's EnvWrapper pattern), e.g. an Append that fails the next N times.
class ForwardingLog : public TransactionLog {
 public:
  explicit ForwardingLog(TransactionLog* target) : target_(target) {}

  Status Append(std::vector<v1::LogRecord> records) override {
    return target_->Append(std::move(records));
  }
  Result<LoggedTransaction> Read(std::string_view gtid) override { return target_->Read(gtid); }
  Result<std::vector<LoggedTransaction>> ScanUnfinished(std::string_view after,
                                                        int limit) override {
    return target_->ScanUnfinished(after, limit);
  }
  Result<SummaryPage> List(const ListQuery& query) override { return target_->List(query); }
  using TransactionLog::Purge;
  Result<int64_t> Purge(Timestamp finished_before, int64_t max_count) override {
    return target_->Purge(finished_before, max_count);
  }
  Result<int64_t> CountPurgeable(Timestamp finished_before) override {
    return target_->CountPurgeable(finished_before);
  }
  Status Ping() override { return target_->Ping(); }
  LogStats Stats() const override { return target_->Stats(); }

 protected:
  TransactionLog* target() const { return target_; }

 private:
  TransactionLog* target_;
};

}  // namespace txcoord::coordinator
