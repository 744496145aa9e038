// The barrier's algorithm is written once (barrier.cc) against this small interface; SQLite and
// PostgreSQL implement it over the caller's transaction. Internal to the library.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "txcoord/participant/barrier.h"
#include "txcoord/status.h"

namespace txcoord::participant::internal {

// kPreCommit: the 3pc pre-commit acknowledgement (PgPreparedAdapter also writes it, outcome
// kVoted, right after a can-commit's PREPARE TRANSACTION).
enum class Op { kFirst, kFinish, kUndo, kPreCommit };
std::string_view OpName(Op op);

// Outcomes stored in the table (see barrier.h).
inline constexpr std::string_view kDone = "done";
inline constexpr std::string_view kRefusedOutcome = "refused";
inline constexpr std::string_view kBlocked = "blocked";
inline constexpr std::string_view kNull = "null";
inline constexpr std::string_view kVoted = "voted";
// The origin of a 3pc yes vote's first row.
inline constexpr std::string_view kCanCommitOrigin = "can-commit";
// The origin of both rows a one-phase commit writes.
inline constexpr std::string_view kOnePhaseOrigin = "one-phase-commit";

// The context of a TCC Try, which arrives from the application, not as a callback.
CallbackContext TryContext(std::string_view gtid, std::string_view branch_id);

// Whether the caller commits the transaction Run worked in: the reply is Done or Refused (a
// first phase's refusal is recorded). Otherwise nothing of Run's is left in it.
bool KeepsTransaction(const BarrierResult& result);

struct BarrierRow {
  std::string origin;
  std::string outcome;
  std::string reason;
};

// One branch's rows in one open transaction. Not thread-safe (neither is the transaction).
class BarrierStore {
 public:
  virtual ~BarrierStore() = default;

  // OK when a transaction is open that the barrier can write in.
  virtual Status CheckTransaction() = 0;
  virtual Status Savepoint(std::string_view name) = 0;
  // ROLLBACK TO and then RELEASE: the savepoint is gone afterwards.
  virtual Status RollbackTo(std::string_view name) = 0;
  virtual Status Release(std::string_view name) = 0;
  // True when the row was inserted, false when a row with the key existed.
  virtual Result<bool> InsertIfAbsent(Op op, std::string_view origin, std::string_view outcome) = 0;
  virtual Result<std::optional<BarrierRow>> Read(Op op) = 0;
  virtual Status SetOutcome(Op op, std::string_view outcome, std::string_view reason) = 0;
  // Holds off every other LockBranch of this branch until the transaction ends, so that two
  // phases that write different keys (a pre-commit and an abort, a commit and an abort) see
  // each other's rows. SQLite: a no-op, its writers are serialized already.
  virtual Status LockBranch() = 0;
  virtual Status EnsureSchema() = 0;
  // Whether the last failed statement failed because txcoord_barrier does not exist.
  virtual bool TableMissing() const = 0;
  // Calls the business function; exceptions become a Status.
  virtual Status CallBusiness() = 0;
};

// The algorithm of barrier.h's table, for ctx's phase, on `store`.
BarrierResult RunBarrier(BarrierStore& store, const CallbackContext& ctx);

}  // namespace txcoord::participant::internal
