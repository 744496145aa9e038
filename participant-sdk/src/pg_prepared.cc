#include "txcoord/participant/pg_prepared.h"

#include <openssl/sha.h>

#include <array>
#include <cstring>
#include <optional>
#include <pqxx/pqxx>
#include <set>
#include <utility>

#include "barrier_store.h"
#include "pg_errors.h"
#include "pg_pool.h"
#include "pg_schema.h"
#include "txcoord/schemas/ids.h"

namespace txcoord::participant {
namespace {

using internal::kBlocked;
using internal::kDone;
using internal::kNull;
using internal::kOnePhaseOrigin;
using internal::kRefusedOutcome;
using internal::PgStatus;
using internal::SqlState;

constexpr std::string_view kXidTag = "txc/";
constexpr size_t kMaxXidBytes = 199;  // PostgreSQL's GIDSIZE is 200, with the terminating NUL
constexpr size_t kMaxPrefixChars = 32;
constexpr size_t kHashHexDigits = 32;
constexpr const char* kUndefinedObject = "42704";  // "prepared transaction ... does not exist"
constexpr const char* kWorkSavepoint = "txcoord_work";

std::array<unsigned char, SHA256_DIGEST_LENGTH> Sha256(std::string_view text) {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest;
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest.data());
  return digest;
}

std::string HexPrefix(std::string_view text, size_t digits) {
  static constexpr char kHex[] = "0123456789abcdef";
  const auto digest = Sha256(text);
  std::string hex;
  for (size_t i = 0; hex.size() < digits && i < digest.size(); ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0x0f]);
  }
  hex.resize(digits);
  return hex;
}

// The advisory lock key of a branch: 64 bits of SHA-256 of its xid. A collision only makes two
// branches wait for each other.
int64_t LockKey(const std::string& xid) {
  const auto digest = Sha256(xid);
  int64_t key;
  std::memcpy(&key, digest.data(), sizeof key);
  return key;
}

Status ValidatePrefix(std::string_view prefix) {
  if (!IsValidId(prefix) || prefix.size() > kMaxPrefixChars) {
    return Status::InvalidArgument("xid_prefix \"" + PrintableForMessage(prefix, 40) +
                                   "\" must be 1 to 32 characters of [A-Za-z0-9._:-]");
  }
  return Status::Ok();
}

struct ParsedXid {
  std::string gtid;
  std::optional<std::string> branch_id;  // nullopt when the branch part was hashed
};

std::optional<ParsedXid> ParseXid(std::string_view prefix, std::string_view xid) {
  const std::string head = std::string(kXidTag) + std::string(prefix) + "/";
  if (!xid.starts_with(head)) return std::nullopt;
  std::string_view rest = xid.substr(head.size());
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  ParsedXid parsed{std::string(rest.substr(0, slash)), std::nullopt};
  std::string_view branch = rest.substr(slash + 1);
  if (!IsValidId(parsed.gtid)) return std::nullopt;
  if (branch.find('#') == std::string_view::npos) {
    if (!IsValidId(branch)) return std::nullopt;
    parsed.branch_id = std::string(branch);
  }
  return parsed;
}

bool IsRefusal(const Status& status) {
  return status.code() == StatusCode::kConflict || status.code() == StatusCode::kAlreadyExists;
}

std::string Describe(std::string_view phase, const CallbackContext& ctx) {
  return std::string(phase) + " of branch " + ctx.branch_id + " of " + ctx.gtid;
}

// The committed barrier rows of a branch.
struct Markers {
  std::optional<internal::BarrierRow> first;
  std::optional<internal::BarrierRow> finish;
  std::optional<internal::BarrierRow> undo;
  std::optional<internal::BarrierRow> pre;  // 3pc: voted (can-commit) or done (pre-commit)
};

Markers ReadMarkers(pqxx::transaction_base& tx, const std::string& gtid,
                    const std::string& branch_id) {
  Markers m;
  pqxx::result r = tx.exec_params(
      "SELECT op, origin, outcome, reason FROM txcoord_barrier "
      "WHERE gtid = $1 AND branch_id = $2",
      gtid, branch_id);
  for (const auto& row : r) {
    internal::BarrierRow b{row[1].as<std::string>(), row[2].as<std::string>(),
                           row[3].as<std::string>()};
    const std::string op = row[0].as<std::string>();
    if (op == internal::OpName(internal::Op::kFirst)) m.first = std::move(b);
    if (op == internal::OpName(internal::Op::kFinish)) m.finish = std::move(b);
    if (op == internal::OpName(internal::Op::kUndo)) m.undo = std::move(b);
    if (op == internal::OpName(internal::Op::kPreCommit)) m.pre = std::move(b);
  }
  return m;
}

// The answer a first phase (prepare, one-phase commit) gets from the committed markers alone,
// or nullopt when the branch is free to run.
std::optional<PhaseResult> FirstPhaseAnswer(const Markers& m, const CallbackContext& ctx,
                                            std::string_view phase) {
  if (m.first && m.first->outcome == kDone) return PhaseResult::Done();  // already committed
  if (m.first && m.first->outcome == kRefusedOutcome) {
    return PhaseResult::Refused(m.first->reason);
  }
  if (m.first || m.undo) {
    return PhaseResult::Refused("branch " + ctx.branch_id + " of " + ctx.gtid +
                                " was already aborted before this " + std::string(phase) +
                                " arrived; refusing it so that it cannot hang");
  }
  return std::nullopt;
}

bool InsertRow(pqxx::transaction_base& tx, const std::string& gtid, const std::string& branch_id,
               internal::Op op, std::string_view origin, std::string_view outcome) {
  pqxx::result r = tx.exec_params(
      "INSERT INTO txcoord_barrier (gtid, branch_id, op, origin, outcome) "
      "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (gtid, branch_id, op) DO NOTHING",
      gtid, branch_id, std::string(internal::OpName(op)), std::string(origin),
      std::string(outcome));
  return r.affected_rows() == 1;
}

bool IsPrepared(pqxx::transaction_base& tx, const std::string& xid) {
  return !tx.exec_params(
                "SELECT 1 FROM pg_prepared_xacts WHERE gid = $1 AND database = "
                "current_database()",
                xid)
              .empty();
}

Status CallWork(const PgBusiness& work, pqxx::transaction_base& tx) {
  if (!work) return Status::InvalidArgument("no work function given");
  try {
    return work(tx);
  } catch (const std::exception& e) {
    return PgStatus("work function threw", e);
  } catch (...) {
    return Status::Internal("work function threw a non-standard exception");
  }
}

}  // namespace

// One pooled connection for one call, with the branch's advisory lock and an explicit
// transaction driven through a nontransaction (PREPARE TRANSACTION ends a transaction in a way
// pqxx::work does not know). Invariant: the connection goes back to the pool only when no
// transaction is open and no lock is held; otherwise it is closed, which makes PostgreSQL roll
// back and release both. Every method throws what libpqxx throws.
class PgPreparedAdapter::Session {
 public:
  Session(PgPreparedAdapter& adapter, std::unique_ptr<pqxx::connection> conn)
      : adapter_(adapter), conn_(std::move(conn)), tx_(std::in_place, *conn_) {}

  ~Session() {
    tx_.reset();
    if (clean() && conn_->is_open()) adapter_.pool_->Put(std::move(conn_));
  }

  pqxx::nontransaction& tx() { return *tx_; }

  void Lock(int64_t key) {
    tx_->exec_params("SELECT pg_advisory_lock($1)", key);
    locked_key_ = key;
  }
  void Unlock() {
    if (!locked_key_) return;
    tx_->exec_params("SELECT pg_advisory_unlock($1)", *locked_key_);
    locked_key_.reset();
  }
  void Begin() {
    tx_->exec("BEGIN");
    in_transaction_ = true;
  }
  void Commit() {
    tx_->exec("COMMIT");
    in_transaction_ = false;
  }
  void Rollback() {
    tx_->exec("ROLLBACK");
    in_transaction_ = false;
  }
  void PrepareTransaction(const std::string& xid) {
    tx_->exec("PREPARE TRANSACTION " + tx_->quote(xid));
    in_transaction_ = false;
  }
  void Exec(const std::string& sql) { tx_->exec(sql); }
  std::string Quote(const std::string& text) { return tx_->quote(text); }

  // After an exception: the state of the session is unknown, so it is closed, not reused.
  void Discard() { broken_ = true; }

 private:
  bool clean() const { return !broken_ && !in_transaction_ && !locked_key_; }

  PgPreparedAdapter& adapter_;
  std::unique_ptr<pqxx::connection> conn_;
  std::optional<pqxx::nontransaction> tx_;
  std::optional<int64_t> locked_key_;
  bool in_transaction_ = false;
  bool broken_ = false;
};

Result<std::string> PgPreparedAdapter::MakeXid(std::string_view prefix, std::string_view gtid,
                                               std::string_view branch_id) {
  TXCOORD_RETURN_IF_ERROR(ValidatePrefix(prefix));
  TXCOORD_RETURN_IF_ERROR(ValidateId("gtid", gtid));
  TXCOORD_RETURN_IF_ERROR(ValidateId("branch_id", branch_id));
  const std::string base =
      std::string(kXidTag) + std::string(prefix) + "/" + std::string(gtid) + "/";
  if (base.size() + branch_id.size() <= kMaxXidBytes) return base + std::string(branch_id);
  // base is at most 4 + 32 + 1 + 128 + 1 = 166 bytes, so "#" + 32 digits always fit.
  const size_t room = kMaxXidBytes - base.size() - 1 - kHashHexDigits;
  return base + std::string(branch_id.substr(0, room)) + "#" + HexPrefix(branch_id, kHashHexDigits);
}

std::string PgPreparedAdapter::Xid(std::string_view gtid, std::string_view branch_id) const {
  Result<std::string> xid = MakeXid(options_.xid_prefix, gtid, branch_id);
  return xid.ok() ? *xid : std::string();
}

Result<std::unique_ptr<PgPreparedAdapter>> PgPreparedAdapter::Open(PgPreparedOptions options) {
  TXCOORD_RETURN_IF_ERROR(ValidatePrefix(options.xid_prefix));
  std::unique_ptr<PgPreparedAdapter> adapter(new PgPreparedAdapter(std::move(options)));
  Result<std::unique_ptr<pqxx::connection>> conn = adapter->pool_->Connect();
  if (!conn.ok()) return conn.status();
  try {
    pqxx::work tx(**conn);
    const int max_prepared =
        tx.exec("SELECT current_setting('max_prepared_transactions')::int")[0][0].as<int>();
    if (max_prepared <= 0) {
      return Status::InvalidArgument(
          "the PostgreSQL server does not allow prepared transactions "
          "(max_prepared_transactions = 0); set it to at least the number of branches that may "
          "be prepared at once, and restart PostgreSQL");
    }
    internal::EnsureBarrierTable(tx);
    tx.commit();
  } catch (const std::exception& e) {
    return PgStatus("open the prepared-transaction adapter", e);
  }
  adapter->pool_->Put(std::move(*conn));
  return adapter;
}

PgPreparedAdapter::PgPreparedAdapter(PgPreparedOptions options)
    : options_(std::move(options)),
      pool_(std::make_unique<internal::PgPool>(
          internal::PgPoolOptions{.conninfo = options_.conninfo,
                                  .lock_timeout = options_.lock_timeout,
                                  .statement_timeout = options_.statement_timeout,
                                  .max_idle_connections = options_.max_idle_connections,
                                  .what = "the participant's PostgreSQL database"})) {}

PgPreparedAdapter::~PgPreparedAdapter() = default;

Result<std::unique_ptr<PgPreparedAdapter::Session>> PgPreparedAdapter::NewSession() {
  Result<std::unique_ptr<pqxx::connection>> conn = pool_->Take();
  if (!conn.ok()) return conn.status();
  try {
    return std::make_unique<Session>(*this, std::move(*conn));
  } catch (const std::exception& e) {
    return PgStatus("start a database session", e);
  }
}

PhaseResult PgPreparedAdapter::Prepare(const CallbackContext& ctx, const PgBusiness& work) {
  return PrepareAs(ctx, work, "prepare");
}

PhaseResult PgPreparedAdapter::CanCommit(const CallbackContext& ctx, const PgBusiness& work) {
  PhaseResult result = PrepareAs(ctx, work, internal::kCanCommitOrigin);
  if (!result.done()) return result;
  // The hint ListThreePhaseInDoubt reads: committed on its own, after PREPARE TRANSACTION (whose
  // first row stays invisible until COMMIT PREPARED). A crash before it leaves a prepared branch
  // without the hint, which a restart treats like a 2pc one: it waits for the coordinator.
  return MarkPreCommit(ctx, internal::kVoted, /*only_if_prepared=*/true);
}

PhaseResult PgPreparedAdapter::PreCommit(const CallbackContext& ctx) {
  return MarkPreCommit(ctx, kDone, /*only_if_prepared=*/false);
}

PhaseResult PgPreparedAdapter::MarkPreCommit(const CallbackContext& ctx, std::string_view outcome,
                                             bool only_if_prepared) {
  const std::string what = Describe(outcome == kDone ? "pre-commit" : "can-commit", ctx);
  Result<std::string> xid = MakeXid(options_.xid_prefix, ctx.gtid, ctx.branch_id);
  if (!xid.ok()) return PhaseResult::Failed(xid.status().WithContext(what).message());
  Result<std::unique_ptr<Session>> session = NewSession();
  if (!session.ok()) return PhaseResult::FromStatus(session.status().WithContext(what));
  Session* const s = session->get();
  try {
    s->Lock(LockKey(*xid));
    const Markers m = ReadMarkers(s->tx(), ctx.gtid, ctx.branch_id);
    if (m.first && m.first->outcome == kDone) {
      s->Unlock();  // committed already (COMMIT PREPARED ran): a late pre-commit is done
      return PhaseResult::Done();
    }
    if (m.undo || m.first) {
      s->Unlock();
      return PhaseResult::Refused("pre-commit of branch " + ctx.branch_id + " of " + ctx.gtid +
                                  ", which was already aborted (perhaps on its own can-commit "
                                  "timeout); it cannot be pre-committed");
    }
    if (!IsPrepared(s->tx(), *xid)) {
      s->Unlock();
      if (only_if_prepared) return PhaseResult::Done();  // resolved meanwhile: no hint needed
      return PhaseResult::Refused("pre-commit of branch " + ctx.branch_id + " of " + ctx.gtid +
                                  ", which never voted yes on can-commit here; the coordinator "
                                  "must not pre-commit it");
    }
    s->Begin();
    s->tx().exec_params(
        "INSERT INTO txcoord_barrier (gtid, branch_id, op, origin, outcome) "
        "VALUES ($1, $2, 'pre', $3, $4) ON CONFLICT (gtid, branch_id, op) DO UPDATE "
        "SET outcome = excluded.outcome, origin = excluded.origin "
        "WHERE txcoord_barrier.outcome <> 'done'",
        ctx.gtid, ctx.branch_id, std::string(outcome == kDone ? "pre-commit" : "can-commit"),
        std::string(outcome));
    s->Commit();
    s->Unlock();
    return PhaseResult::Done();
  } catch (const std::exception& e) {
    s->Discard();
    return PhaseResult::FromStatus(PgStatus(what, e));
  }
}

Result<std::vector<ThreePhaseInDoubt>> PgPreparedAdapter::ListThreePhaseInDoubt() {
  Result<std::unique_ptr<pqxx::connection>> conn = pool_->Connect();
  if (!conn.ok()) return conn.status().WithContext("list 3pc branches in doubt");
  try {
    pqxx::nontransaction tx(**conn);
    std::set<std::string> prepared;
    for (const auto& row :
         tx.exec_params("SELECT gid FROM pg_prepared_xacts WHERE database = current_database() "
                        "AND starts_with(gid, $1)",
                        std::string(kXidTag) + options_.xid_prefix + "/")) {
      prepared.insert(row[0].as<std::string>());
    }
    std::vector<ThreePhaseInDoubt> out;
    for (const auto& row :
         tx.exec("SELECT gtid, branch_id, outcome FROM txcoord_barrier WHERE op = 'pre' "
                 "ORDER BY created_at, gtid, branch_id")) {
      ThreePhaseInDoubt b{row[0].as<std::string>(), row[1].as<std::string>(),
                          row[2].as<std::string>() == kDone};
      if (prepared.count(Xid(b.gtid, b.branch_id)) != 0) out.push_back(std::move(b));
    }
    return out;
  } catch (const std::exception& e) {
    return PgStatus("list 3pc branches in doubt", e);
  }
}

PhaseResult PgPreparedAdapter::PrepareAs(const CallbackContext& ctx, const PgBusiness& work,
                                         std::string_view origin) {
  const std::string what = Describe(origin, ctx);
  Result<std::string> xid = MakeXid(options_.xid_prefix, ctx.gtid, ctx.branch_id);
  if (!xid.ok()) return PhaseResult::Failed(xid.status().WithContext(what).message());
  Result<std::unique_ptr<Session>> session = NewSession();
  if (!session.ok()) return PhaseResult::FromStatus(session.status().WithContext(what));
  Session* const s = session->get();
  try {
    s->Lock(LockKey(*xid));
    // Twice at most: an insert that finds a row makes us read the markers again; under the lock
    // only a COMMIT PREPARED finishing just then can cause that.
    for (int round = 0; round < 2; ++round) {
      const Markers m = ReadMarkers(s->tx(), ctx.gtid, ctx.branch_id);
      if (auto answer = FirstPhaseAnswer(m, ctx, origin)) {
        s->Unlock();
        return *answer;
      }
      if (IsPrepared(s->tx(), *xid)) {
        s->Unlock();
        return PhaseResult::Done();  // a repeat: prepared before, the work is not done again
      }
      s->Begin();
      // This row is part of the prepared transaction: visible once COMMIT PREPARED commits.
      if (!InsertRow(s->tx(), ctx.gtid, ctx.branch_id, internal::Op::kFirst, origin, kDone)) {
        s->Rollback();
        continue;
      }
      s->Exec(std::string("SAVEPOINT ") + kWorkSavepoint);
      const Status status = CallWork(work, s->tx());
      if (status.ok()) {
        // A work that caught an SQL error and returned Ok left the transaction aborted, and
        // PostgreSQL turns PREPARE TRANSACTION in an aborted transaction into a silent
        // ROLLBACK: a yes vote with nothing held. RELEASE fails there instead (the catch below
        // answers the failure), as it does for the generic barrier.
        s->Exec(std::string("RELEASE SAVEPOINT ") + kWorkSavepoint);
        s->PrepareTransaction(*xid);
        s->Unlock();
        return PhaseResult::Done();
      }
      if (IsRefusal(status)) return CommitRefusal(*s, ctx, status);
      s->Rollback();
      s->Unlock();
      return PhaseResult::FromStatus(status.WithContext(what));
    }
    s->Unlock();
    return PhaseResult::Transient(what + ": its barrier row kept changing; retry");
  } catch (const std::exception& e) {
    s->Discard();
    return PhaseResult::FromStatus(PgStatus(what, e));
  }
}

// The business work refused (its changes are undone to the savepoint): the barrier row records
// the refusal, committed, so that a repeated call gets the same answer.
PhaseResult PgPreparedAdapter::CommitRefusal(Session& s, const CallbackContext& ctx,
                                             const Status& refusal) {
  s.Exec(std::string("ROLLBACK TO SAVEPOINT ") + kWorkSavepoint);
  s.tx().exec_params(
      "UPDATE txcoord_barrier SET outcome = $3, reason = $4 "
      "WHERE gtid = $1 AND branch_id = $2 AND op = 'first'",
      ctx.gtid, ctx.branch_id, std::string(kRefusedOutcome), refusal.message());
  s.Commit();
  s.Unlock();
  return PhaseResult::Refused(refusal.message());
}

PhaseResult PgPreparedAdapter::Commit(const CallbackContext& ctx) {
  Result<std::string> xid = MakeXid(options_.xid_prefix, ctx.gtid, ctx.branch_id);
  if (!xid.ok()) return PhaseResult::Failed(xid.status().WithContext("commit").message());
  return CommitXid(*xid, ctx.gtid, &ctx.branch_id);
}

PhaseResult PgPreparedAdapter::CommitXid(const std::string& xid, const std::string& gtid,
                                         const std::string* branch_id) {
  const std::string what = "commit of " + xid;
  Result<std::unique_ptr<Session>> session = NewSession();
  if (!session.ok()) return PhaseResult::FromStatus(session.status().WithContext(what));
  Session* const s = session->get();
  try {
    s->Lock(LockKey(xid));
    bool committed_now = true;
    try {
      s->Exec("COMMIT PREPARED " + s->Quote(xid));
    } catch (const pqxx::sql_error& e) {
      if (e.sqlstate() != kUndefinedObject) throw;
      committed_now = false;
    }
    if (branch_id == nullptr) {  // a hashed xid from ResolveInDoubt: no markers to read or write
      s->Unlock();
      return PhaseResult::Done();
    }
    if (!committed_now) {
      const Markers m = ReadMarkers(s->tx(), gtid, *branch_id);
      if (!m.first || m.first->outcome != kDone) {
        s->Unlock();
        const std::string state =
            !m.first ? "never prepared here" : "its prepare was " + m.first->outcome;
        return PhaseResult::Refused("commit of branch " + *branch_id + " of " + gtid +
                                    ", which is not prepared (" + state +
                                    "); the coordinator must not commit it");
      }
    }
    // Bookkeeping for PurgeBarrier: the branch has its outcome. Written after the commit, so a
    // crash in between leaves it out; the coordinator's retry (the reply was not sent yet) adds it.
    InsertRow(s->tx(), gtid, *branch_id, internal::Op::kFinish, "commit", kDone);
    s->Unlock();
    return PhaseResult::Done();
  } catch (const std::exception& e) {
    s->Discard();
    return PhaseResult::FromStatus(PgStatus(what, e));
  }
}

PhaseResult PgPreparedAdapter::Abort(const CallbackContext& ctx) {
  Result<std::string> xid = MakeXid(options_.xid_prefix, ctx.gtid, ctx.branch_id);
  if (!xid.ok()) return PhaseResult::Failed(xid.status().WithContext("abort").message());
  return RollbackXid(*xid, ctx.gtid, &ctx.branch_id);
}

PhaseResult PgPreparedAdapter::RollbackXid(const std::string& xid, const std::string& gtid,
                                           const std::string* branch_id) {
  const std::string what = "abort of " + xid;
  Result<std::unique_ptr<Session>> session = NewSession();
  if (!session.ok()) return PhaseResult::FromStatus(session.status().WithContext(what));
  Session* const s = session->get();
  try {
    s->Lock(LockKey(xid));
    if (branch_id != nullptr) {
      const Markers m = ReadMarkers(s->tx(), gtid, *branch_id);
      if (m.first && m.first->outcome == kDone) {
        s->Unlock();
        return PhaseResult::Refused("abort of branch " + *branch_id + " of " + gtid +
                                    ", which was already committed (" + m.first->origin +
                                    "); the coordinator must not abort it");
      }
      if (m.pre && m.pre->outcome == kDone) {
        s->Unlock();
        return PhaseResult::Refused("abort of branch " + *branch_id + " of " + gtid +
                                    ", which acknowledged pre-commit; a pre-committed 3pc branch "
                                    "can only commit");
      }
    }
    bool rolled_back = true;
    try {
      s->Exec("ROLLBACK PREPARED " + s->Quote(xid));
    } catch (const pqxx::sql_error& e) {
      if (e.sqlstate() != kUndefinedObject) throw;
      rolled_back = false;
    }
    if (branch_id != nullptr) {
      // The prepared row is gone, so the first key is free: claim it, so that a late prepare or
      // one-phase commit is refused.
      s->Begin();
      InsertRow(s->tx(), gtid, *branch_id, internal::Op::kFirst, "abort", kBlocked);
      InsertRow(s->tx(), gtid, *branch_id, internal::Op::kUndo, "abort",
                rolled_back ? kDone : kNull);
      s->Commit();
    }
    s->Unlock();
    return PhaseResult::Done();
  } catch (const std::exception& e) {
    s->Discard();
    return PhaseResult::FromStatus(PgStatus(what, e));
  }
}

PhaseResult PgPreparedAdapter::CommitOnePhase(const CallbackContext& ctx, const PgBusiness& work) {
  const std::string what = Describe("one-phase commit", ctx);
  Result<std::string> xid = MakeXid(options_.xid_prefix, ctx.gtid, ctx.branch_id);
  if (!xid.ok()) return PhaseResult::Failed(xid.status().WithContext(what).message());
  Result<std::unique_ptr<Session>> session = NewSession();
  if (!session.ok()) return PhaseResult::FromStatus(session.status().WithContext(what));
  Session* const s = session->get();
  try {
    s->Lock(LockKey(*xid));
    for (int round = 0; round < 2; ++round) {
      const Markers m = ReadMarkers(s->tx(), ctx.gtid, ctx.branch_id);
      if (auto answer = FirstPhaseAnswer(m, ctx, "one-phase commit")) {
        s->Unlock();
        return *answer;
      }
      if (IsPrepared(s->tx(), *xid)) {
        s->Unlock();
        return PhaseResult::Refused("one-phase commit of branch " + ctx.branch_id + " of " +
                                    ctx.gtid +
                                    ", which is prepared; the coordinator must send a plain "
                                    "commit");
      }
      s->Begin();
      if (!InsertRow(s->tx(), ctx.gtid, ctx.branch_id, internal::Op::kFirst, kOnePhaseOrigin,
                     kDone)) {
        s->Rollback();
        continue;
      }
      s->Exec(std::string("SAVEPOINT ") + kWorkSavepoint);
      const Status status = CallWork(work, s->tx());
      if (status.ok()) {
        InsertRow(s->tx(), ctx.gtid, ctx.branch_id, internal::Op::kFinish, kOnePhaseOrigin, kDone);
        s->Commit();  // a lost connection here: unknown, the retry reads the markers
        s->Unlock();
        return PhaseResult::Done();
      }
      if (IsRefusal(status)) return CommitRefusal(*s, ctx, status);
      s->Rollback();
      s->Unlock();
      return PhaseResult::FromStatus(status.WithContext(what));
    }
    s->Unlock();
    return PhaseResult::Transient(what + ": its barrier row kept changing; retry");
  } catch (const std::exception& e) {
    s->Discard();
    return PhaseResult::FromStatus(PgStatus(what, e));
  }
}

Result<InDoubtReport> PgPreparedAdapter::ResolveInDoubt(CoordinatorClient& coordinator) {
  const std::string head = std::string(kXidTag) + options_.xid_prefix + "/";
  std::vector<std::string> xids;
  {
    Result<std::unique_ptr<pqxx::connection>> conn = pool_->Connect();
    if (!conn.ok()) return conn.status().WithContext("resolve in-doubt branches");
    try {
      pqxx::nontransaction tx(**conn);
      pqxx::result r = tx.exec_params(
          "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() "
          "AND starts_with(gid, $1) ORDER BY prepared",
          head);
      for (const auto& row : r) xids.push_back(row[0].as<std::string>());
    } catch (const std::exception& e) {
      return PgStatus("list prepared transactions", e);
    }
  }

  InDoubtReport report;
  for (const std::string& xid : xids) {
    auto leave = [&](const std::string& why) {
      ++report.left;
      report.errors.push_back(xid + ": " + why);
    };
    std::optional<ParsedXid> parsed = ParseXid(options_.xid_prefix, xid);
    if (!parsed) {
      leave("not an xid of this adapter's form; resolve it by hand");
      continue;
    }
    Result<v1::Transaction> tx = coordinator.Get(parsed->gtid);
    bool commit = false;
    if (tx.ok()) {
      const std::string& state = tx->state();
      if (state == "committed" || state == "committing") {
        commit = true;
      } else if (state != "aborted" && state != "aborting") {
        ++report.left;  // undecided: the coordinator will send the outcome, or ask again later
        continue;
      }
      if (!parsed->branch_id) {
        for (const v1::Branch& branch : tx->branches()) {
          if (Xid(parsed->gtid, branch.branch_id()) == xid) parsed->branch_id = branch.branch_id();
        }
      }
    } else if (tx.status().code() != StatusCode::kNotFound) {
      leave(tx.status().ToString());
      continue;
    }
    const std::string* branch = parsed->branch_id ? &*parsed->branch_id : nullptr;
    PhaseResult result =
        commit ? CommitXid(xid, parsed->gtid, branch) : RollbackXid(xid, parsed->gtid, branch);
    if (!result.done()) {
      leave(result.ToString());
    } else if (commit) {
      ++report.committed;
    } else {
      ++report.rolled_back;
    }
  }
  return report;
}

PhaseResult PgPreparedHandler::Prepare(const CallbackContext& ctx) {
  return adapter_.Prepare(ctx, [&](pqxx::transaction_base& tx) { return work_(tx, ctx); });
}

PhaseResult PgPreparedHandler::Commit(const CallbackContext& ctx) {
  if (!ctx.one_phase) return adapter_.Commit(ctx);
  return adapter_.CommitOnePhase(ctx, [&](pqxx::transaction_base& tx) { return work_(tx, ctx); });
}

PhaseResult PgPreparedHandler::Abort(const CallbackContext& ctx) { return adapter_.Abort(ctx); }

PhaseResult PgPreparedHandler::CanCommit(const CallbackContext& ctx) {
  return adapter_.CanCommit(ctx, [&](pqxx::transaction_base& tx) { return work_(tx, ctx); });
}

PhaseResult PgPreparedHandler::PreCommit(const CallbackContext& ctx) {
  return adapter_.PreCommit(ctx);
}

}  // namespace txcoord::participant
