// The coordinator: the driver that runs protocol engines (engine.h) against the durable log
// (log.h), the participants (transport.h) and time (Clock). The HTTP API (coordinator/service)
// is a thin layer over this class: one method per endpoint of contract section 3.
//
// Ownership. Every live transaction this process drives is in memory, in a map keyed by gtid,
// from before its begin record is appended until its `end` record is durable. The log is the
// truth; memory is a cache of the transactions this process owns. When an append fails (store
// down), the transaction is dropped from memory ("parked") and waiting clients get UNAVAILABLE;
// the periodic recovery pass reloads every unfinished transaction that is not in memory and
// resumes it from what is durable. With several coordinators on one PostgreSQL store, each
// would recover the others' transactions too; running several instances needs leases and is
// not supported yet.
//
// Appends of one transaction go to the log in the order its engine emitted them, one Append at
// a time (records emitted meanwhile are coalesced into the next one); appends of different
// transactions run concurrently and share commits through the log's group commit.
//
// Thread-safety: every public method may be called from any thread concurrently.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "txcoord/coordinator/engine.h"
#include "txcoord/coordinator/log.h"
#include "txcoord/coordinator/transport.h"
#include "txcoord/saga/definition.h"
#include "txcoord/status.h"
#include "txcoord/v1/api.pb.h"

namespace txcoord::coordinator {

// The only source of time for the coordinator and its engines.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual Timestamp Now() = 0;
};
// The system clock, in milliseconds.
Clock& SystemClock();

struct CoordinatorOptions {
  EngineOptions engine;
  saga::UrlPolicy url_policy;  // participant URLs allowed (403 otherwise)
  int default_timeout_ms = 10'000;
  int max_timeout_ms = 24 * 3600 * 1000;
  int max_branches = 100;
  // A `wait: true` request answers at the deadline plus this grace, with 202 if not terminal.
  std::chrono::milliseconds wait_grace{2'000};
  // How often unfinished transactions not in memory are looked for in the log.
  std::chrono::milliseconds recovery_interval{5'000};
  // Live transactions held in memory at most; a begin beyond it is refused with UNAVAILABLE,
  // so memory stays bounded under any load.
  int max_live_transactions = 100'000;
  // Threads that process timer events (each may block on an append). Replies are processed on
  // the transport thread that received them.
  int event_threads = 16;
};

// A reply to the client: the record and whether it is terminal (200) or not (202).
struct TransactionReply {
  v1::Transaction transaction;
  int http_status = 200;
};

// Errors of the API methods map to the contract's statuses: kInvalidArgument 400,
// kPermissionDenied 403, kNotFound 404, kConflict / kAlreadyExists 409, kUnavailable and the
// rest 503. Messages are for the client and name what was wrong.
class Coordinator {
 public:
  // `log`, `transport` and `clock` must outlive the coordinator.
  Coordinator(TransactionLog& log, CallbackTransport& transport, Clock& clock,
              CoordinatorOptions options);
  ~Coordinator();  // Stop()s if running.

  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  // Recovers every unfinished transaction from the log, then starts the timer, event and
  // periodic recovery threads. Errors when the log cannot be scanned (the caller exits).
  Status Start();

  // Stops driving transactions: no new commands (UNAVAILABLE), timers and the recovery pass
  // stop, the transport is not called any more, appends in progress finish. Everything a client
  // was told is durable already; unfinished transactions are resumed by the next start.
  void Stop();

  // POST /v1/transactions. Checks the request (ids, protocol, URLs, sizes), makes the begin
  // durable, starts the protocol; with `wait` answers when terminal or at deadline + grace.
  Result<TransactionReply> Begin(v1::BeginRequest request, std::string traceparent);
  // POST /v1/transactions/{gtid}/branches (tcc). Answers once the registration is durable.
  Result<TransactionReply> RegisterBranch(std::string_view gtid, v1::Branch branch);
  // POST /v1/transactions/{gtid}/commit and /abort. Without `wait`, answer once the decision is
  // durable (202 unless already terminal).
  Result<TransactionReply> Commit(std::string_view gtid, bool wait);
  Result<TransactionReply> Abort(std::string_view gtid, bool wait);
  // GET /v1/transactions/{gtid}: the live view when in memory, else folded from the log.
  Result<v1::Transaction> Get(std::string_view gtid);
  // GET /v1/transactions?...
  Result<v1::TransactionList> List(const ListQuery& query);

  // ---- operator endpoints (docs/contract-additions.md section 4; txctl)
  // POST /v1/transactions/{gtid}/retry: callbacks waiting out a retry delay are sent now, their
  // backoff reset (Engine::RetryNow). kConflict when the transaction is terminal; kUnavailable
  // while it is being recovered (the recovery pass resends everything anyway).
  Result<TransactionReply> Retry(std::string_view gtid);
  // POST /v1/transactions/{gtid}/branches/{branch_id}/resolve: an operator did the branch's (or
  // saga step's) outstanding call by hand (Engine::Resolve). Answers once the resolved record is
  // durable. kInvalidArgument for a bad `as` or a missing operator; kConflict with why, when the
  // state does not allow it.
  Result<TransactionReply> Resolve(std::string_view gtid, std::string_view branch_id,
                                   const v1::ResolveRequest& request);
  // GET /v1/transactions/{gtid}/history: every durable record, oldest first (HistoryOf).
  Result<v1::TransactionHistory> History(std::string_view gtid);
  // DELETE /v1/transactions?older_than_ms=N: deletes at most `max_count` finished transactions
  // whose end is older than `finished_before` (0: none, only count); `remaining` counts those
  // still eligible after.
  struct PurgeResult {
    int64_t purged = 0;
    int64_t remaining = 0;
  };
  Result<PurgeResult> Purge(Timestamp finished_before, int64_t max_count);

  // For /healthz.
  Status Ping();

  // A latency histogram: counts per upper bound (kBoundsMs, then +Inf), not cumulative.
  struct Histogram {
    static constexpr std::array<int64_t, 13> kBoundsMs{1,   2,   5,    10,   25,   50,   100,
                                                       250, 500, 1000, 2500, 5000, 10000};
    std::array<int64_t, kBoundsMs.size() + 1> buckets{};
    int64_t count = 0;
    double sum_seconds = 0;
  };
  struct Counters {
    int64_t live = 0;               // transactions in memory
    int64_t begun = 0;              // begins accepted since start
    int64_t committed = 0;          // reached `committed` since start
    int64_t aborted = 0;            // reached `aborted` since start
    int64_t recovered = 0;          // resumed from the log
    int64_t parked = 0;             // dropped from memory after a failed append
    int64_t callbacks = 0;          // callbacks sent
    int64_t callback_failures = 0;  // replies other than 2xx

    // By protocol (index into kProtocols) and outcome (0 committed, 1 aborted), since start.
    static constexpr std::array<std::string_view, 4> kProtocols{"2pc", "3pc", "tcc", "saga"};
    std::array<std::array<int64_t, 2>, kProtocols.size()> finished{};
    // Begin to terminal, by protocol, for transactions begun by this process (a recovered one's
    // start is not known here).
    std::array<Histogram, kProtocols.size()> duration{};
    // Callback round trips (sent to reply or timeout), by phase (index into kPhases), and
    // callbacks that were retries (Tx-Attempt > 1).
    static constexpr std::array<std::string_view, 7> kPhases{
        "prepare", "can-commit", "pre-commit", "commit", "abort", "action", "compensate"};
    std::array<Histogram, kPhases.size()> callback_latency{};
    std::array<int64_t, kPhases.size()> retries{};
    // Live transactions by their current, non-terminal state ("preparing", "committing", ...).
    std::vector<std::pair<std::string, int64_t>> by_state;
    // Live transactions whose participants may hold prepared work waiting for an outcome they
    // have not all acknowledged: states preparing, can-committing (a 3pc participant may hold
    // its vote's work), pre-committing, committing, aborting, compensating.
    int64_t in_doubt = 0;
  };
  Counters counters() const;

  // One recovery pass now (tests; the periodic pass calls it too). Returns how many
  // transactions were resumed.
  Result<int> RecoverNow();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace txcoord::coordinator
