// Group commit for a participant on SQLite: concurrent callbacks behind the barrier share one
// local transaction, hence one COMMIT and one fsync of the WAL.
//
// A participant that answers each callback with its own durable transaction
// (Barrier::RunInTransaction on a connection behind a mutex) is bound by its disk's sync rate,
// shared with everything else on that disk. SqliteCommitGroup keeps the same per-callback answer
// and the same durability: callbacks that arrive while a transaction commits queue up; the first
// in the queue runs them all (txcoord/leader_group.h) in one BEGIN IMMEDIATE ... COMMIT, each
// through Barrier::Run with the barrier's own savepoint, and every caller returns only after the
// COMMIT that holds its change (so a 200 is never sent for a change that is not durable yet).
//
// One member never fails another:
//   - A member whose business refuses or fails is rolled back to its savepoint by the barrier
//     (barrier.h): the rest of the group commits without it, and its own answer stands (409,
//     503 or 500, exactly as alone).
//   - When the group's COMMIT fails (a deferred constraint one member broke, a full disk, an I/O
//     error), the transaction is rolled back and every member that had succeeded runs again
//     alone, in a transaction of its own; only a member whose own commit fails is answered 503.
//   - When the transaction ends under a member (its business ran COMMIT or ROLLBACK, which it
//     must not, or SQLite rolled back on its own after an error), that member's answer stands
//     and the members before it run again alone; the ones after it start a new group transaction.
// A member that runs again is safe because of the barrier: if its change committed after all,
// the second run finds its row and repeats the answer. So a business function may be called
// more than once for one callback; as for any retried callback, only its database changes count,
// and it must do nothing outside the transaction that it could not do twice.
//
// The barrier's statements are prepared once and kept while the group lives, so destroy the
// group before closing the connection (sqlite3_close refuses a connection with statements), or
// close it with sqlite3_close_v2, which closes it once the group has finalized them.
//
// Durability is the connection's: open it with journal_mode=WAL and synchronous=FULL (or NORMAL
// for a group that may lose its last commits on power loss, never for a participant). Set a busy
// timeout when other connections write to the same file.
//
// Thread-safety: every method may be called from any number of threads. The connection belongs
// to the group from construction on: use it only through Exclusive while the group lives (every
// group holds it while it runs).
#pragma once

#include <sqlite3.h>

#include <cstddef>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "txcoord/leader_group.h"
#include "txcoord/participant/barrier.h"
#include "txcoord/participant/handler.h"

namespace txcoord::participant {
namespace internal {
class StatementCache;
}  // namespace internal

struct SqliteCommitGroupOptions {
  // Callbacks sharing one transaction at most (at least 1). A larger group holds SQLite's write
  // lock longer and delays its first member more; 64 covers a callback server's usual threads.
  int max_group = 64;
};

class SqliteCommitGroup {
 public:
  // Borrows `db`, which must outlive the group and is closed by the caller.
  explicit SqliteCommitGroup(sqlite3* db, SqliteCommitGroupOptions options = {});
  // Finalizes the barrier's statements it kept prepared; call it before closing the connection.
  ~SqliteCommitGroup();
  SqliteCommitGroup(const SqliteCommitGroup&) = delete;
  SqliteCommitGroup& operator=(const SqliteCommitGroup&) = delete;

  // Barrier::RunInTransaction, grouped: runs `business` for ctx.phase behind the barrier and
  // returns once the outcome is durable (or failed). The same answers as alone.
  BarrierResult Run(const CallbackContext& ctx, const SqliteBusiness& business);
  // Barrier::TryInTransaction, grouped: the TCC Try the application calls.
  BarrierResult Try(std::string_view gtid, std::string_view branch_id,
                    const SqliteBusiness& business);

  // Runs fn(db) with the connection to itself: no group runs meanwhile. For reads, schema
  // changes, PurgeBarrier and ListThreePhaseInDoubt. fn must leave no transaction open.
  template <typename Fn>
  auto Exclusive(Fn&& fn) {
    std::lock_guard lock(connection_mu_);
    return fn(db_);
  }

  // groups: runs of a leader, each one transaction unless a member lost it (see above);
  // members: callbacks that went through them.
  GroupStats stats() const { return group_.stats(); }
  // Callbacks waiting or running now; lets a test see that a group has formed.
  size_t queued() const { return group_.queued(); }

 private:
  struct Member {
    const CallbackContext* ctx;
    const SqliteBusiness* business;
    BarrierResult result;
  };

  void RunGroup(std::span<Member* const> members);
  // Runs each member alone, in its own transaction.
  void RunAlone(const std::vector<Member*>& members);

  sqlite3* const db_;
  std::mutex connection_mu_;  // held by a running group and by Exclusive
  // The barrier's statements, prepared once: GUARDED_BY(connection_mu_).
  const std::unique_ptr<internal::StatementCache> statements_;
  LeaderGroup<Member> group_;
};

}  // namespace txcoord::participant
