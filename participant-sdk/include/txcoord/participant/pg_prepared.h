// PgPreparedAdapter: a 2pc branch whose prepare is a real PostgreSQL prepared transaction.
//
//   prepare  the branch's work runs in a transaction of its own (own connection) that ends with
//            PREPARE TRANSACTION '<xid>': its changes and locks survive a crash of the participant
//            and of PostgreSQL, and commit can no longer fail.
//   commit   COMMIT PREPARED '<xid>'.         abort   ROLLBACK PREPARED '<xid>'.
//   one-phase commit (Tx-One-Phase): the work and a plain COMMIT in one transaction.
//
// The xid. "txc/<prefix>/<gtid>/<branch_id>", where prefix names this participant (1 to 32
// characters of [A-Za-z0-9._:-]) and must be unique among the participants that share the
// PostgreSQL cluster (prepared-transaction ids are cluster-wide). Ids never contain '/', so the
// parts cannot run into each other. PostgreSQL allows 199 bytes; when the full form is longer,
// the branch part becomes "<as much of the branch_id as fits>#<32 hex digits of
// SHA-256(branch_id)>" ('#' cannot occur in an id, so the two forms cannot collide). The gtid is
// always kept whole and readable, because ResolveInDoubt asks the coordinator by gtid.
//
// How each phase stays correct when repeated, reordered or raced. The adapter keeps its markers
// in txcoord_barrier (barrier.h's table) in the same database, and the key trick is that the
// prepare's own "first=done" row is written INSIDE the prepared transaction: it becomes visible
// exactly when COMMIT PREPARED commits the work, and vanishes with ROLLBACK PREPARED. So:
//
//   a committed "first=done" row   <=>  the branch's work is committed (by COMMIT PREPARED or a
//                                       one-phase commit)
//   xid in pg_prepared_xacts       <=>  prepared, outcome not applied yet
//   neither                        <=>  never prepared, refused, or rolled back
//
//   prepare   committed first=done: already committed, 200. first=refused: 409 with the original
//             message. Aborted before (first=blocked or an undo row): 409 (no hanging). xid
//             already prepared: 200 without running the work again. Otherwise the work runs; a
//             refusal (kConflict/kAlreadyExists) rolls it back and commits first=refused instead
//             (409, and 409 again for every repeat); another error rolls back: 503/500.
//   commit    COMMIT PREPARED. If no such prepared transaction: a committed first=done row means
//             it was committed before (a repeat): 200. No such row means it was never prepared
//             here: 409, a coordinator bug, logged and retried by the coordinator.
//   abort     A committed first=done row: already committed, 409 (a coordinator bug). Otherwise
//             ROLLBACK PREPARED when prepared, and commit the markers first=blocked and
//             undo=done|null, so that a late prepare or one-phase commit is refused: 200.
//
// 3pc. can-commit is a prepare (its first row has origin "can-commit"), after which a committed
// row op='pre' outcome='voted' marks the branch as a 3pc yes vote; pre-commit sets that row to
// 'done' (and answers 409 once the branch was aborted, e.g. on its own can-commit timeout);
// commit and abort are as for 2pc, except that an abort after an acknowledged pre-commit is
// refused (409): a pre-committed branch can only commit. ListThreePhaseInDoubt lists the
// prepared branches with such a row, for ThreePhaseKeeper::Resume (three_phase.h).
//
// Prepare, commit and abort of one branch are serialized by a session-level advisory lock (key:
// from SHA-256 of the xid), taken before and released after PREPARE TRANSACTION. A session lock,
// unlike a transaction-level one, is not handed over to the prepared transaction, so it never
// blocks the commit or abort that follows. Waiting for it, and for row locks held by other
// prepared branches, is bounded by lock_timeout: 503, and the coordinator retries.
//
// Thread-safety: all methods may be called from any thread concurrently; each call uses a
// pooled connection of its own.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <pqxx/connection>
#include <pqxx/transaction_base>
#include <string>
#include <string_view>
#include <vector>

#include "txcoord/participant/barrier.h"
#include "txcoord/participant/client.h"
#include "txcoord/participant/handler.h"
#include "txcoord/status.h"

namespace txcoord::participant {

namespace internal {
class PgPool;  // src/pg_pool.h
}  // namespace internal

struct PgPreparedOptions {
  // libpq connection string of the participant's own database. PostgreSQL must allow prepared
  // transactions (max_prepared_transactions > 0; Open checks).
  std::string conninfo = {};
  // Names this participant in its xids; unique per PostgreSQL cluster. [A-Za-z0-9._:-]{1,32}.
  std::string xid_prefix = {};
  // Bounds every wait for a lock: the branch's advisory lock and the rows the work touches (which
  // another prepared branch may hold until its outcome arrives). Past it: 503.
  std::chrono::milliseconds lock_timeout{5000};
  // Bounds every statement, the work's included.
  std::chrono::milliseconds statement_timeout{30000};
  // Connections kept open for reuse.
  size_t max_idle_connections = 8;
};

// What one ResolveInDoubt pass did with this participant's prepared transactions.
struct InDoubtReport {
  int committed = 0;    // the coordinator said committed/committing
  int rolled_back = 0;  // aborted/aborting, or 404 (presumed abort)
  int left = 0;         // still undecided, or the coordinator could not be asked: try again later
  std::vector<std::string> errors;  // one line per xid left because of an error
};

class PgPreparedAdapter {
 public:
  // Connects once to check the server (max_prepared_transactions) and creates txcoord_barrier.
  // kInvalidArgument for a bad prefix or a server without prepared transactions; kUnavailable
  // when the database cannot be reached.
  static Result<std::unique_ptr<PgPreparedAdapter>> Open(PgPreparedOptions options);
  ~PgPreparedAdapter();

  PgPreparedAdapter(const PgPreparedAdapter&) = delete;
  PgPreparedAdapter& operator=(const PgPreparedAdapter&) = delete;

  // The phases, as described above. `work` gets the prepared-to-be transaction; it must not
  // commit, roll back or prepare it, and should only touch this database through `tx`.
  PhaseResult Prepare(const CallbackContext& ctx, const PgBusiness& work);
  PhaseResult Commit(const CallbackContext& ctx);
  PhaseResult Abort(const CallbackContext& ctx);
  // For a commit with ctx.one_phase: `work` (the prepare's work) and the commit in one local
  // transaction. Repeats answer as the first time; after an abort: 409.
  PhaseResult CommitOnePhase(const CallbackContext& ctx, const PgBusiness& work);

  // One pass over this participant's prepared transactions (pg_prepared_xacts, own prefix, own
  // database): asks the coordinator (GET /v1/transactions/{gtid}) and commits those it reports
  // committed or committing, rolls back those it reports aborted or aborting or does not know
  // (404: presumed abort, contract section 4), and leaves the rest. Call it at start, before the
  // callback server accepts (or at any time: it takes each branch's lock), and then now and then
  // while `left` > 0. A rollback of a branch whose id was hashed and that the coordinator no
  // longer knows cannot write the anti-hanging markers (the branch_id is unknown); that is safe
  // because a forgotten transaction gets no more prepares.
  Result<InDoubtReport> ResolveInDoubt(CoordinatorClient& coordinator);

  // 3pc: can-commit prepares like Prepare; pre-commit records the acknowledgement (see above).
  // Commit and Abort serve 3pc branches too.
  PhaseResult CanCommit(const CallbackContext& ctx, const PgBusiness& work);
  PhaseResult PreCommit(const CallbackContext& ctx);
  // This participant's prepared 3pc branches (a can-commit yes vote, no outcome yet).
  Result<std::vector<ThreePhaseInDoubt>> ListThreePhaseInDoubt();

  // The xid of a branch of this participant (see above).
  std::string Xid(std::string_view gtid, std::string_view branch_id) const;
  // The same for any prefix; kInvalidArgument for a bad prefix, gtid or branch_id.
  static Result<std::string> MakeXid(std::string_view prefix, std::string_view gtid,
                                     std::string_view branch_id);

 private:
  class Session;
  explicit PgPreparedAdapter(PgPreparedOptions options);

  Result<std::unique_ptr<Session>> NewSession();
  PhaseResult PrepareAs(const CallbackContext& ctx, const PgBusiness& work,
                        std::string_view origin);
  PhaseResult MarkPreCommit(const CallbackContext& ctx, std::string_view outcome,
                            bool only_if_prepared);
  PhaseResult RollbackXid(const std::string& xid, const std::string& gtid,
                          const std::string* branch_id);
  PhaseResult CommitXid(const std::string& xid, const std::string& gtid,
                        const std::string* branch_id);
  static PhaseResult CommitRefusal(Session& s, const CallbackContext& ctx, const Status& refusal);

  const PgPreparedOptions options_;
  const std::unique_ptr<internal::PgPool> pool_;
};

// A ready-made BranchHandler over a PgPreparedAdapter, for a participant whose whole branch is
// "do this work in my database, prepared": Prepare (and the 3pc CanCommit) runs `work` and
// prepares it, Commit and Abort finish it, PreCommit records the 3pc acknowledgement, and a
// one-phase commit runs `work` and commits. Thread-safe; `adapter` must outlive
// the handler.
class PgPreparedHandler : public BranchHandler {
 public:
  using Work = std::function<Status(pqxx::transaction_base& tx, const CallbackContext& ctx)>;
  PgPreparedHandler(PgPreparedAdapter& adapter, Work work)
      : adapter_(adapter), work_(std::move(work)) {}

  PhaseResult Prepare(const CallbackContext& ctx) override;
  PhaseResult Commit(const CallbackContext& ctx) override;
  PhaseResult Abort(const CallbackContext& ctx) override;
  PhaseResult CanCommit(const CallbackContext& ctx) override;
  PhaseResult PreCommit(const CallbackContext& ctx) override;

 private:
  PgPreparedAdapter& adapter_;
  const Work work_;
};

}  // namespace txcoord::participant
