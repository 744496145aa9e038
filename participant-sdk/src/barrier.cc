// The barrier's algorithm (barrier.h's table), written once for both databases.
#include <string>
#include <utility>

#include "barrier_store.h"
#include "txcoord/schemas/ids.h"

namespace txcoord::participant {

std::string_view BarrierPathName(BarrierResult::Path path) {
  switch (path) {
    case BarrierResult::Path::kRan:
      return "ran";
    case BarrierResult::Path::kRefused:
      return "refused";
    case BarrierResult::Path::kRepeated:
      return "repeated";
    case BarrierResult::Path::kNullCompensation:
      return "null-compensation";
    case BarrierResult::Path::kBlocked:
      return "blocked";
    case BarrierResult::Path::kProtocolViolation:
      return "protocol-violation";
    case BarrierResult::Path::kFailed:
      return "failed";
  }
  return "unknown";
}

namespace internal {

CallbackContext TryContext(std::string_view gtid, std::string_view branch_id) {
  CallbackContext ctx;
  ctx.gtid = std::string(gtid);
  ctx.branch_id = std::string(branch_id);
  ctx.phase = Phase::kTry;
  return ctx;
}

bool KeepsTransaction(const BarrierResult& result) {
  const PhaseResult::Kind kind = result.reply.kind();
  return kind == PhaseResult::Kind::kDone || kind == PhaseResult::Kind::kRefused;
}

std::string_view OpName(Op op) {
  switch (op) {
    case Op::kFirst:
      return "first";
    case Op::kFinish:
      return "finish";
    case Op::kUndo:
      return "undo";
    case Op::kPreCommit:
      return "pre";
  }
  return "unknown";
}

namespace {

using Path = BarrierResult::Path;

constexpr std::string_view kOuter = "txcoord_barrier";
constexpr std::string_view kBusiness = "txcoord_barrier_business";

bool IsRefusal(const Status& status) {
  return status.code() == StatusCode::kConflict || status.code() == StatusCode::kAlreadyExists;
}

// One Run: the phase's category and the steps of barrier.h's table. Every step that fails in
// storage ends in Abandon, which rolls back to before Run.
class BarrierRun {
 public:
  BarrierRun(BarrierStore& store, const CallbackContext& ctx)
      : s_(store),
        ctx_(ctx),
        what_(std::string(PhaseName(ctx.phase)) + (ctx.one_phase ? " (one-phase)" : "") +
              " of branch " + ctx.branch_id + " of " + ctx.gtid) {}

  BarrierResult Go() {
    if (Status st = ValidateId("gtid", ctx_.gtid); !st.ok()) return Invalid(st);
    if (Status st = ValidateId("branch_id", ctx_.branch_id); !st.ok()) return Invalid(st);
    if (ctx_.one_phase && ctx_.phase != Phase::kCommit) {
      return Invalid(Status::InvalidArgument("one_phase is set on a phase other than commit"));
    }
    if (Status st = s_.CheckTransaction(); !st.ok()) return Invalid(st);
    if (Status st = s_.Savepoint(kOuter); !st.ok()) return StorageFailure(st, /*rollback=*/false);

    switch (ctx_.phase) {
      case Phase::kPrepare:
      case Phase::kTry:
      case Phase::kAction:
      case Phase::kCanCommit:
        return First(PhaseName(ctx_.phase));
      case Phase::kCommit:
        return ctx_.one_phase ? First(kOnePhaseOrigin) : Finish();
      case Phase::kAbort:
      case Phase::kCompensate:
        return Undo();
      case Phase::kPreCommit:
        return PreCommit();
    }
    (void)s_.RollbackTo(kOuter);
    return Invalid(Status::InvalidArgument("unknown phase"));
  }

 private:
  // prepare | try | action, and the first half of a one-phase commit.
  BarrierResult First(std::string_view origin) {
    Result<bool> inserted = Insert(Op::kFirst, origin, kDone);
    if (!inserted.ok()) return StorageFailure(inserted.status());
    if (!*inserted) {
      Result<BarrierRow> row = ReadExisting(Op::kFirst);
      if (!row.ok()) return StorageFailure(row.status());
      if (row->outcome == kDone) {
        if (ctx_.one_phase) {
          Result<std::optional<BarrierRow>> finish = s_.Read(Op::kFinish);
          if (!finish.ok()) return StorageFailure(finish.status());
          if (!finish->has_value()) {
            return Violation(
                "one-phase commit of a branch that was prepared and not committed; the "
                "coordinator must send a plain commit");
          }
        }
        // The branch was aborted or compensated since: the vote it once gave no longer holds,
        // so a repeat is refused like a late first phase (contract section 4). Under the
        // branch lock, so that an undo racing this repeat is seen once it has committed.
        if (Status st = Lock(); !st.ok()) return StorageFailure(st);
        Result<std::optional<BarrierRow>> undo = s_.Read(Op::kUndo);
        if (!undo.ok()) return StorageFailure(undo.status());
        if (undo->has_value()) return Keep(Path::kBlocked, AlreadyUndone((*undo)->origin));
        return Keep(Path::kRepeated, PhaseResult::Done());
      }
      if (row->outcome == kRefusedOutcome) {
        return Keep(Path::kRepeated, PhaseResult::Refused(row->reason));
      }
      if (row->outcome == kBlocked) return Keep(Path::kBlocked, AlreadyUndone(row->origin));
      return Corrupt(*row);
    }

    if (Status st = s_.Savepoint(kBusiness); !st.ok()) return StorageFailure(st);
    Status business = s_.CallBusiness();
    if (business.ok()) {
      if (Status st = s_.Release(kBusiness); !st.ok()) return StorageFailure(st);
      if (ctx_.one_phase) {
        Result<bool> finish = s_.InsertIfAbsent(Op::kFinish, kOnePhaseOrigin, kDone);
        if (!finish.ok()) return StorageFailure(finish.status());
        // A finish row without a first row is never written, so the key was free.
        if (!*finish) return StorageFailure(Status::Corruption("finish row exists without first"));
      }
      return Keep(Path::kRan, PhaseResult::Done());
    }
    if (IsRefusal(business)) {
      if (Status st = s_.RollbackTo(kBusiness); !st.ok()) return StorageFailure(st);
      if (Status st = s_.SetOutcome(Op::kFirst, kRefusedOutcome, business.message()); !st.ok()) {
        return StorageFailure(st);
      }
      return Keep(Path::kRefused, PhaseResult::Refused(business.message()));
    }
    return BusinessFailure(business);
  }

  // commit (tcc Confirm), not one-phase.
  BarrierResult Finish() {
    if (Status st = Lock(); !st.ok()) return StorageFailure(st);
    Result<bool> inserted = Insert(Op::kFinish, "commit", kDone);
    if (!inserted.ok()) return StorageFailure(inserted.status());
    if (!*inserted) return Keep(Path::kRepeated, PhaseResult::Done());

    Result<std::optional<BarrierRow>> undo = s_.Read(Op::kUndo);
    if (!undo.ok()) return StorageFailure(undo.status());
    if (undo->has_value()) {
      return Violation("commit of a branch that was already aborted (" + (*undo)->origin +
                       "); the coordinator must not commit it");
    }
    Result<std::optional<BarrierRow>> first = s_.Read(Op::kFirst);
    if (!first.ok()) return StorageFailure(first.status());
    if (!first->has_value() || (*first)->outcome != kDone) {
      return Violation("commit of a branch that was never prepared here" +
                       (first->has_value() ? " (its first phase was " + (*first)->outcome + ")"
                                           : std::string()) +
                       "; the coordinator must not commit it");
    }

    if (Status st = s_.Savepoint(kBusiness); !st.ok()) return StorageFailure(st);
    Status business = s_.CallBusiness();
    if (!business.ok()) return BusinessFailure(business);
    if (Status st = s_.Release(kBusiness); !st.ok()) return StorageFailure(st);
    return Keep(Path::kRan, PhaseResult::Done());
  }

  // abort (tcc Cancel) | compensate.
  BarrierResult Undo() {
    const std::string_view origin = PhaseName(ctx_.phase);
    if (Status st = Lock(); !st.ok()) return StorageFailure(st);
    Result<bool> inserted = Insert(Op::kUndo, origin, kDone);
    if (!inserted.ok()) return StorageFailure(inserted.status());
    if (!*inserted) return Keep(Path::kRepeated, PhaseResult::Done());

    // Claiming the first phase's key is what orders this undo against a concurrent first phase:
    // on PostgreSQL the insert waits for that transaction's row, on SQLite the lock does.
    Result<bool> claimed = s_.InsertIfAbsent(Op::kFirst, origin, kBlocked);
    if (!claimed.ok()) return StorageFailure(claimed.status());
    // Read after the claim: a one-phase commit that held the first key has committed by now.
    Result<std::optional<BarrierRow>> finish = s_.Read(Op::kFinish);
    if (!finish.ok()) return StorageFailure(finish.status());
    if (finish->has_value()) {
      return Violation(std::string(origin) + " of a branch that was already committed (" +
                       (*finish)->origin + "); the coordinator must not abort it");
    }
    Result<std::optional<BarrierRow>> pre = s_.Read(Op::kPreCommit);
    if (!pre.ok()) return StorageFailure(pre.status());
    if (pre->has_value() && (*pre)->outcome == kDone) {
      return Violation(std::string(origin) +
                       " of a branch that acknowledged pre-commit; a pre-committed 3pc branch "
                       "can only commit");
    }
    if (!*claimed) {
      Result<BarrierRow> first = ReadExisting(Op::kFirst);
      if (!first.ok()) return StorageFailure(first.status());
      if (first->outcome == kDone) {
        if (Status st = s_.Savepoint(kBusiness); !st.ok()) return StorageFailure(st);
        Status business = s_.CallBusiness();
        if (!business.ok()) return BusinessFailure(business);
        if (Status st = s_.Release(kBusiness); !st.ok()) return StorageFailure(st);
        return Keep(Path::kRan, PhaseResult::Done());
      }
      if (first->outcome != kRefusedOutcome && first->outcome != kBlocked) return Corrupt(*first);
    }
    // Nothing ran (or it was refused and rolled back): nothing to undo.
    if (Status st = s_.SetOutcome(Op::kUndo, kNull, ""); !st.ok()) return StorageFailure(st);
    return Keep(Path::kNullCompensation, PhaseResult::Done());
  }

  // 3pc pre-commit: only after this branch voted yes (can-commit done), never after its abort.
  BarrierResult PreCommit() {
    if (Status st = Lock(); !st.ok()) return StorageFailure(st);
    Result<bool> inserted = Insert(Op::kPreCommit, PhaseName(ctx_.phase), kDone);
    if (!inserted.ok()) return StorageFailure(inserted.status());
    if (!*inserted) return Keep(Path::kRepeated, PhaseResult::Done());

    Result<std::optional<BarrierRow>> undo = s_.Read(Op::kUndo);
    if (!undo.ok()) return StorageFailure(undo.status());
    if (undo->has_value()) {
      return Violation("pre-commit of a branch that was already aborted (" + (*undo)->origin +
                       ", perhaps on its own can-commit timeout); it cannot be pre-committed");
    }
    Result<std::optional<BarrierRow>> first = s_.Read(Op::kFirst);
    if (!first.ok()) return StorageFailure(first.status());
    if (!first->has_value() || (*first)->outcome != kDone || (*first)->origin != kCanCommitOrigin) {
      return Violation("pre-commit of a branch that never voted yes on can-commit here" +
                       (first->has_value() ? " (its first phase was " + (*first)->origin + " " +
                                                 (*first)->outcome + ")"
                                           : std::string()) +
                       "; the coordinator must not pre-commit it");
    }
    Result<std::optional<BarrierRow>> finish = s_.Read(Op::kFinish);
    if (!finish.ok()) return StorageFailure(finish.status());
    if (finish->has_value()) {
      // Committed already (a late pre-commit after the commit): nothing left to do.
      return Keep(Path::kRepeated, PhaseResult::Done());
    }
    if (Status st = s_.Savepoint(kBusiness); !st.ok()) return StorageFailure(st);
    Status business = s_.CallBusiness();
    if (!business.ok()) return BusinessFailure(business);
    if (Status st = s_.Release(kBusiness); !st.ok()) return StorageFailure(st);
    return Keep(Path::kRan, PhaseResult::Done());
  }

  // The answer to a first phase delivered after the branch's undo (`undo_origin`: abort or
  // compensate).
  PhaseResult AlreadyUndone(const std::string& undo_origin) const {
    return PhaseResult::Refused("branch " + ctx_.branch_id + " of " + ctx_.gtid + " was already " +
                                (undo_origin == "compensate" ? "compensated" : "aborted") +
                                " when this " + std::string(PhaseName(ctx_.phase)) +
                                " arrived; refusing it so that it cannot hang");
  }

  // The branch lock, taken before the first row is written; the table may be missing then,
  // which is not an error here (Insert creates it).
  Status Lock() { return s_.LockBranch(); }

  // The first statement of every path: creates the table when it is missing.
  Result<bool> Insert(Op op, std::string_view origin, std::string_view outcome) {
    Result<bool> inserted = s_.InsertIfAbsent(op, origin, outcome);
    if (inserted.ok() || !s_.TableMissing()) return inserted;
    if (Status st = s_.RollbackTo(kOuter); !st.ok()) return st;
    if (Status st = s_.EnsureSchema(); !st.ok()) return st;
    if (Status st = s_.Savepoint(kOuter); !st.ok()) return st;
    return s_.InsertIfAbsent(op, origin, outcome);
  }

  Result<BarrierRow> ReadExisting(Op op) {
    Result<std::optional<BarrierRow>> row = s_.Read(op);
    if (!row.ok()) return row.status();
    // The insert just found it; only a concurrent purge could have removed it since.
    if (!row->has_value()) {
      return Status::Unavailable(std::string("barrier row '") + std::string(OpName(op)) +
                                 "' vanished while it was read (concurrent purge?)");
    }
    return std::move(**row);
  }

  // Keeps what Run wrote and answers.
  BarrierResult Keep(Path path, PhaseResult reply) {
    if (Status st = s_.Release(kOuter); !st.ok()) return StorageFailure(st);
    return {path, std::move(reply)};
  }

  // Undoes the rows written for a phase the coordinator should not have sent; 409 so that it
  // shows in the transaction's last_error.
  BarrierResult Violation(const std::string& message) {
    if (Status st = s_.RollbackTo(kOuter); !st.ok()) return StorageFailure(st, false);
    return {Path::kProtocolViolation, PhaseResult::Refused(message)};
  }

  BarrierResult BusinessFailure(const Status& business) {
    return Abandon(PhaseResult::FromStatus(business.WithContext(what_)));
  }

  BarrierResult StorageFailure(const Status& status, bool rollback = true) {
    const Status context = status.WithContext("barrier for " + what_);
    if (!rollback) return {Path::kFailed, PhaseResult::FromStatus(context)};
    return Abandon(PhaseResult::FromStatus(context));
  }

  BarrierResult Abandon(PhaseResult reply) {
    if (Status st = s_.RollbackTo(kOuter); !st.ok()) {
      // The transaction is probably gone (connection lost, SQLite rolled it back): the caller's
      // commit fails too, and nothing of this phase is kept either way.
      reply = PhaseResult::FromStatus(
          Status(StatusCode::kUnavailable,
                 reply.message() + "; and rolling back failed: " + st.message()));
    }
    if (reply.done() || reply.kind() == PhaseResult::Kind::kInProgress) {
      reply = PhaseResult::Failed("barrier abandoned a successful phase");  // never happens
    }
    return {Path::kFailed, std::move(reply)};
  }

  BarrierResult Corrupt(const BarrierRow& row) {
    return StorageFailure(Status::Corruption("barrier row has unknown outcome '" + row.outcome +
                                             "' (origin '" + row.origin + "')"));
  }

  BarrierResult Invalid(const Status& status) {
    return {Path::kFailed, PhaseResult::Failed(status.WithContext(what_).message())};
  }

  BarrierStore& s_;
  const CallbackContext& ctx_;
  const std::string what_;
};

}  // namespace

BarrierResult RunBarrier(BarrierStore& store, const CallbackContext& ctx) {
  return BarrierRun(store, ctx).Go();
}

}  // namespace internal
}  // namespace txcoord::participant
