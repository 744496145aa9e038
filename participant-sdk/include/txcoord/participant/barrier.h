// The barrier: makes a participant's phases idempotent, turns an abort for a branch that never
// ran into a no-op (null compensation) and refuses a prepare that arrives after its branch's
// abort (no hanging), as contract section 4 demands. It lives in the participant's own database
// and runs in the SAME local transaction as the business change, so "the phase ran" and "its
// effect is there" commit or roll back together.
//
// The table, created on demand (SQLite types shown; PostgreSQL uses TIMESTAMPTZ for created_at):
//
//   CREATE TABLE txcoord_barrier (
//     gtid       TEXT NOT NULL,
//     branch_id  TEXT NOT NULL,
//     op         TEXT NOT NULL,  -- 'first' | 'finish' | 'undo' | 'pre'
//     origin     TEXT NOT NULL,  -- the phase that wrote the row: prepare, try, action,
//                                --   can-commit, one-phase-commit, commit, abort, compensate,
//                                --   pre-commit
//     outcome    TEXT NOT NULL,  -- first: done | refused | blocked; finish: done; undo: done |
//     null reason     TEXT NOT NULL DEFAULT '',  -- the refusal's message, for outcome 'refused'
//     created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
//     PRIMARY KEY (gtid, branch_id, op));
//
// Phases map to ops: prepare | try | action | can-commit are the "first" phase; commit (= tcc
// Confirm) is "finish"; abort (= tcc Cancel) | compensate are "undo"; a one-phase commit is
// first + finish; the 3pc pre-commit is "pre".
// One row per (branch, op) is the whole mechanism: the primary key makes the second delivery of a
// phase find its row instead of running again, and an undo also claims the branch's "first" key
// (outcome 'blocked'), so that whichever of a first phase and its undo commits first decides:
//
//   delivered               rows before                 does                       answers
//   first phase             none                        business; first=done       200
//                                                       (business refused: first=refused,
//                                                        its changes rolled back)  409
//   first phase             first=done                  nothing (repeat)           200
//   first phase             first=done, undo=done       nothing (aborted since)    409
//   first phase             first=refused               nothing                    409, same
//   first phase             first=blocked (undo ran)    nothing (anti-hanging)     409
//   commit                  first=done                  business; finish=done      200
//   commit                  finish=done                 nothing (repeat)           200
//   commit                  no first=done, or undo      nothing recorded           409 (bug)
//   one-phase commit        none                        business; first+finish     200
//                                                       (refused: first=refused)   409
//   one-phase commit        first+finish                nothing (repeat)           200
//   one-phase commit        first=refused | blocked     nothing                    409
//   undo                    first=done                  business; undo=done        200
//   undo                    none | first=refused        nothing; first=blocked,    200
//                                                       undo=null (null compensation)
//   undo                    undo=*                      nothing (repeat)           200
//   undo                    finish=done                 nothing recorded           409 (bug)
//   undo                    pre=done (3pc)              nothing recorded           409 (bug)
//   pre-commit              first=done from can-commit  business; pre=done         200
//   pre-commit              pre=done, or finish=done    nothing (repeat, or late)  200
//   pre-commit              undo=* (aborted, perhaps    nothing recorded           409
//                           on its own timeout)
//   pre-commit              no can-commit yes vote      nothing recorded           409 (bug)
//
// 3pc. can-commit is a first phase like prepare (its yes vote holds the work, so that commit
// cannot fail); commit needs only that vote, since the coordinator commits without every
// pre-commit acknowledgement once its pre-commit deadline passes. A 409 to a pre-commit tells the
// coordinator that this branch aborted before it could be pre-committed (three_phase.h: a
// participant that voted yes and heard nothing aborts on its own); it is not a vote. Pre-commit,
// commit and abort take a per-branch lock first (PostgreSQL: pg_advisory_xact_lock), because
// they write different keys and a participant's own timeout may race the coordinator's callback.
//
// "409 (bug)": the coordinator never sends these (commit without a yes vote, commit after abort,
// abort after commit); the contract has it log a 409 to commit/abort and retry, so the
// inconsistency shows in the transaction's last_error instead of being papered over.
//
// Business functions. The business runs inside a savepoint after the barrier's row was written:
//   - OK: its changes stay; the phase is recorded as done.
//   - kConflict or kAlreadyExists (a business refusal, e.g. insufficient funds): its changes are
//     rolled back to the savepoint. In a first phase the refusal is recorded (later deliveries get
//     the same 409); in other phases nothing is recorded.
//   - any other code, or an exception: everything Run wrote is rolled back (the transaction is as
//     it was before Run) and the answer is 503 (500 for kInternal or an exception), so the
//     coordinator retries. The business must not commit, roll back or release savepoints it did
//     not create.
//
// Concurrency. Two deliveries of the same callback at once run the business once:
//   - PostgreSQL: INSERT ... ON CONFLICT DO NOTHING waits for the other transaction's row and then
//     sees it (READ COMMITTED, the default of pqxx::work). Under REPEATABLE READ or SERIALIZABLE
//     the loser gets a serialization failure instead, answered 503 and retried.
//   - SQLite: writers are serialized by the database lock. Begin the caller's transaction with
//     BEGIN IMMEDIATE and set a busy timeout (sqlite3_busy_timeout); the RunInTransaction forms
//     do the former. A deferred transaction that read first may fail with SQLITE_BUSY: 503.
//
// Retention. Rows are needed as long as a callback for their branch may still arrive. Purge
// deletes a branch's rows only when all of them are older than `older_than`, and never deletes a
// branch still awaiting its outcome (a prepare, try or can-commit that is done, with neither
// commit nor abort yet). The rule that makes it safe: `older_than` must exceed the longest time
// between a branch's first callback and its last, that is the transaction timeout plus the longest
// coordinator or network outage you intend to survive (commit, abort and compensate are retried
// until they succeed). Choose days, not minutes. A purged 'blocked' marker no longer stops a late
// prepare, and a purged 'done' row no longer stops a repeat from running again.
//
// Thread-safety: every function is stateless and thread-safe; the connection or transaction
// passed in belongs to the caller and must not be used by another thread meanwhile.
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <pqxx/connection_base>
#include <pqxx/dbtransaction>
#include <pqxx/transaction_base>
#include <string>
#include <string_view>
#include <vector>

#include "txcoord/participant/handler.h"
#include "txcoord/status.h"

namespace txcoord::participant {

// The business change of a phase. Write lambdas against pqxx::transaction_base& so that one
// function fits both the barrier and PgPreparedBranches (pg_prepared.h).
using SqliteBusiness = std::function<Status(sqlite3* db)>;
using PgBusiness = std::function<Status(pqxx::transaction_base& tx)>;

// What the barrier did, and the reply to give. Converts to PhaseResult, so a handler can write
// `return Barrier::RunInTransaction(db_, ctx, business);`.
struct BarrierResult {
  enum class Path {
    kRan,                // the business ran and its change is in the transaction: reply 200
    kRefused,            // the business refused; first phase: the refusal is recorded. 409
    kRepeated,           // ran before: nothing ran, the original answer (200, or 409 + message)
    kNullCompensation,   // undo with no first phase done: nothing ran, markers recorded. 200
    kBlocked,            // first phase after its undo: nothing ran or recorded. 409
    kProtocolViolation,  // commit without prepare, commit after abort, abort after commit:
                         // nothing ran or recorded. 409
    kFailed,             // storage or business failed: rolled back to before Run. 503 or 500
  };

  Path path = Path::kFailed;
  PhaseResult reply = PhaseResult::Failed("not run");

  // Whether the business function was called and its outcome kept (kRan, kRefused).
  bool business_ran() const { return path == Path::kRan || path == Path::kRefused; }
  operator PhaseResult() const { return reply; }  // NOLINT: implicit on purpose, see above.
};

std::string_view BarrierPathName(BarrierResult::Path path);

class Barrier {
 public:
  Barrier() = delete;

  // Creates txcoord_barrier when absent. Idempotent. Run calls it when the table is missing,
  // so calling it is optional; a service may call it at start to fail early.
  static Status EnsureSchema(sqlite3* db);
  static Status EnsureSchema(pqxx::dbtransaction& tx);

  // Runs `business` for ctx.phase behind the barrier, inside the caller's open transaction
  // (REQUIRES: for SQLite, a transaction is open, ideally BEGIN IMMEDIATE; otherwise
  // kFailed/500 "no open transaction"). The caller commits when the reply is Done or Refused and
  // may commit or roll back otherwise (nothing of Run's is left in the transaction then). A
  // commit that fails leaves the phase not done; the coordinator's retry does it again.
  static BarrierResult Run(sqlite3* db, const CallbackContext& ctx, const SqliteBusiness& business);
  static BarrierResult Run(pqxx::dbtransaction& tx, const CallbackContext& ctx,
                           const PgBusiness& business);

  // The same in a transaction of their own: BEGIN IMMEDIATE (SQLite) or a pqxx::work, then
  // Run, then COMMIT when the reply is Done or Refused and ROLLBACK otherwise. A failed commit
  // is answered 503.
  static BarrierResult RunInTransaction(sqlite3* db, const CallbackContext& ctx,
                                        const SqliteBusiness& business);
  static BarrierResult RunInTransaction(pqxx::connection_base& conn, const CallbackContext& ctx,
                                        const PgBusiness& business);

  // The TCC Try, which the application calls itself after registering the branch (client.h).
  // The same as Run with phase kTry: idempotent, and refused (409, kBlocked) once the branch's
  // Cancel (an abort callback) has run, so a Try delayed past its Cancel cannot hang.
  static BarrierResult Try(sqlite3* db, std::string_view gtid, std::string_view branch_id,
                           const SqliteBusiness& business);
  static BarrierResult Try(pqxx::dbtransaction& tx, std::string_view gtid,
                           std::string_view branch_id, const PgBusiness& business);
  static BarrierResult TryInTransaction(sqlite3* db, std::string_view gtid,
                                        std::string_view branch_id, const SqliteBusiness& business);
  static BarrierResult TryInTransaction(pqxx::connection_base& conn, std::string_view gtid,
                                        std::string_view branch_id, const PgBusiness& business);
};

// A 3pc branch that voted yes here and has heard no outcome (neither commit nor abort ran):
// what a restarted participant hands to ThreePhaseKeeper::Resume (three_phase.h).
struct ThreePhaseInDoubt {
  std::string gtid;
  std::string branch_id;
  bool pre_committed = false;  // its pre-commit was acknowledged
};

// The 3pc branches in doubt in this database's barrier, oldest first; none when the table does
// not exist yet. PostgreSQL: in the caller's transaction.
Result<std::vector<ThreePhaseInDoubt>> ListThreePhaseInDoubt(sqlite3* db);
Result<std::vector<ThreePhaseInDoubt>> ListThreePhaseInDoubt(pqxx::dbtransaction& tx);

// Deletes old barrier rows (see "Retention" above) and returns how many. SQLite: one statement,
// in the caller's transaction if one is open. PostgreSQL: in the caller's transaction, which the
// caller commits. older_than must be positive (kInvalidArgument otherwise).
Result<int64_t> PurgeBarrier(sqlite3* db, std::chrono::seconds older_than);
Result<int64_t> PurgeBarrier(pqxx::dbtransaction& tx, std::chrono::seconds older_than);

}  // namespace txcoord::participant
