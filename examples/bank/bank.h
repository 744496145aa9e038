// The bank participant of the example: accounts with balances, moved by 2pc, 3pc and tcc
// branches.
//
// A branch's payload is {"account": "A", "delta": -30}: a debit when delta < 0, a credit when
// delta > 0. The same money rule everywhere: a debit is refused (409, the branch votes no) when
// the account's balance minus what other unfinished debits hold would go below zero.
//
// Two storage flavours, one per process (bank_main.cc picks):
//   - SqliteBank: the barrier (participant/barrier.h) and a `holds` table. prepare, can-commit
//     and Try hold the amount; commit applies what the hold says; abort releases it; pre-commit
//     only records itself behind the barrier. Used for 2pc, 3pc and tcc.
//   - PgBank: 2pc and 3pc through PostgreSQL prepared transactions (participant/pg_prepared.h):
//     the work (update the balance, write the ledger) runs in a transaction ended by PREPARE
//     TRANSACTION (on prepare, or on the 3pc can-commit), its row lock held until COMMIT
//     PREPARED. tcc through the barrier and holds, as for SQLite.
//
// 3pc branches are served through participant::ThreePhaseHandler (bank_main.cc), whose keeper
// commits or aborts a branch on its own timeouts; after a restart it knows a branch only from
// the barrier, without its payload, which is why a 3pc commit here never needs the payload.
// Every applied change is also written to a `ledger` table (gtid, branch, account, delta), in the
// same local transaction, so tests can check all-or-nothing per transaction.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "txcoord/participant/barrier.h"
#include "txcoord/participant/client.h"
#include "txcoord/participant/handler.h"
#include "txcoord/status.h"

namespace txcoord::examples::bank {

struct Movement {
  std::string account;
  int64_t delta = 0;
};
// Reads {"account": "...", "delta": <integer>} out of a branch payload.
Result<Movement> ParseMovement(const google::protobuf::Value& payload);

struct LedgerEntry {
  std::string gtid;
  std::string branch_id;
  std::string account;
  int64_t delta = 0;
};

struct Snapshot {
  std::map<std::string, int64_t> balances;
  int64_t held = 0;  // rows in `holds`: tcc/2pc branches tried or prepared, not finished
  std::vector<LedgerEntry> ledger;
};

// One bank: the handlers the callback server routes to, and the Try the application calls.
//
// Thread-safety: every method may be called concurrently.
class Bank {
 public:
  virtual ~Bank() = default;
  // The handler for 2pc branches (base path /2pc), 3pc branches (/3pc, wrapped in a
  // ThreePhaseHandler by bank_main.cc) and tcc branches (/tcc).
  virtual participant::BranchHandler& TwoPhase() = 0;
  virtual participant::BranchHandler& ThreePhase() = 0;
  virtual participant::BranchHandler& Tcc() = 0;
  // The 3pc branches that voted yes here and have no outcome yet, for the keeper after a restart.
  virtual Result<std::vector<participant::ThreePhaseInDoubt>> ThreePhaseInDoubt() = 0;
  // The tcc Try of a branch, called by the application (POST /app/try).
  virtual participant::PhaseResult Try(const std::string& gtid, const std::string& branch_id,
                                       const google::protobuf::Value& payload) = 0;
  virtual Result<Snapshot> Read(bool with_ledger) = 0;
  // Resolves branches left in doubt by a crash (PostgreSQL prepared transactions); a no-op for
  // SQLite, whose holds wait for the coordinator's phase 2.
  virtual Status ResolveInDoubt(participant::CoordinatorClient& coordinator) = 0;
  // Deletes barrier rows older than `retention` (participant/barrier.h, "Retention"); returns
  // how many.
  virtual Result<int64_t> PurgeBarrier(std::chrono::seconds retention) = 0;
};

// Creates the tables and the accounts in `seed` that do not exist yet (an existing account keeps
// its balance, so a restarted bank continues where it was).
Result<std::unique_ptr<Bank>> OpenSqliteBank(const std::string& path,
                                             const std::map<std::string, int64_t>& seed);
// `name` makes the prepared-transaction ids unique to this bank.
Result<std::unique_ptr<Bank>> OpenPgBank(const std::string& conninfo, const std::string& name,
                                         const std::map<std::string, int64_t>& seed);

}  // namespace txcoord::examples::bank
