// The callback model of a participant (contract section 4): what a callback carries
// (CallbackContext), what a participant answers (PhaseResult), and the interface an application
// implements, one virtual per phase (BranchHandler). CallbackServer (endpoint.h) turns HTTP into
// these and back; the barrier (barrier.h) and the PostgreSQL adapter (pg_prepared.h) return
// PhaseResults so that a handler can simply return what they return.
//
// Which phases a branch receives, by protocol:
//
//   2pc   prepare, then commit or abort. A transaction with a single branch skips prepare: the
//         coordinator sends commit with `Tx-One-Phase: true` (CallbackContext::one_phase); the
//         participant does the prepare work and the commit in one local transaction.
//   tcc   the application calls its own Try (not a callback; see Barrier::Try), then the
//         coordinator sends commit (= Confirm) or abort (= Cancel).
//   3pc   can-commit (a vote: hold the work like prepare), pre-commit, then commit or abort.
//         The barrier and PgPreparedHandler serve all four; ThreePhaseHandler (three_phase.h)
//         adds the participant's own timeouts of contract section 4.
//   saga  each step's action, and on failure its compensate (SagaStepHandler below), each
//         POSTed to the step's own URL exactly as given in the begin request.
#pragma once

#include <google/protobuf/struct.pb.h>

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "txcoord/status.h"

namespace txcoord::participant {

// A phase, as the barrier and the handlers see it. All but kTry are callbacks on the wire
// (contract sections 2 and 4); kTry is the TCC Try, which the application calls itself.
enum class Phase {
  kPrepare,
  kCommit,
  kAbort,
  kCanCommit,
  kPreCommit,
  kAction,
  kCompensate,
  kTry,
};

// The wire name: "prepare", "commit", "abort", "can-commit", "pre-commit", "action",
// "compensate", "try".
std::string_view PhaseName(Phase phase);
// The inverse of PhaseName; nullopt for anything else (names are case-sensitive).
std::optional<Phase> ParsePhase(std::string_view name);

// One callback, as delivered. Plain data; copyable.
struct CallbackContext {
  std::string gtid;
  std::string branch_id;  // for saga steps, the step_id
  Phase phase = Phase::kPrepare;
  int attempt = 1;  // Tx-Attempt: 1 on the first delivery, 2, 3, ... on retries
  // The branch's payload from the begin request or the registration, passed untouched by the
  // coordinator; a null Value when the callback had none.
  google::protobuf::Value payload;
  // The same payload as JSON text, exactly the bytes of the callback body's "payload" member
  // (so that numbers beyond 2^53, which a protobuf Value holds as a double, can be read exactly
  // with any JSON library); "null" when absent.
  std::string payload_json;
  std::string traceparent;  // W3C trace context from the `traceparent` header; may be empty
  // True only on a commit sent with `Tx-One-Phase: true`: the branch was never prepared and must
  // now do its prepare work and commit it in one local transaction (see BranchHandler::Commit).
  bool one_phase = false;
};

// What a participant answers to a callback: one of the contract's reply classes.
//
//   kind         HTTP  meaning for the coordinator
//   kDone        200   vote yes / the phase is done
//   kRefused     409   definite no: vote no, business failure. Never retried for prepare; for
//                      commit and abort a 409 is a participant bug, logged and retried forever
//   kInProgress  425   still working: retried at the normal interval
//   kTransient   503   could not do it now (database down, lock timeout): retried with backoff
//   kFailed      500   a bug or an unexpected exception: retried with backoff, like 503
//
// The message goes into the error body and so into the coordinator's `last_error`: one line, for
// a person, no secrets.
class PhaseResult {
 public:
  enum class Kind { kDone, kRefused, kInProgress, kTransient, kFailed };

  static PhaseResult Done() { return PhaseResult(Kind::kDone, ""); }
  static PhaseResult Refused(std::string message) {
    return PhaseResult(Kind::kRefused, std::move(message));
  }
  static PhaseResult InProgress(std::string message = "still in progress") {
    return PhaseResult(Kind::kInProgress, std::move(message));
  }
  static PhaseResult Transient(std::string message) {
    return PhaseResult(Kind::kTransient, std::move(message));
  }
  static PhaseResult Failed(std::string message) {
    return PhaseResult(Kind::kFailed, std::move(message));
  }

  // ok -> Done; kConflict and kAlreadyExists (nothing happened: the state does not allow it) ->
  // Refused; kInternal -> Failed; every other code (unavailable, unknown outcome, ...) ->
  // Transient, since a retry may succeed. The message is the status's.
  static PhaseResult FromStatus(const Status& status);

  Kind kind() const { return kind_; }
  bool done() const { return kind_ == Kind::kDone; }
  const std::string& message() const { return message_; }
  // 200, 409, 425, 503 or 500 as in the table above.
  int http_status() const;
  // "done", "refused: <message>", ... for logs and test failures.
  std::string ToString() const;

  friend bool operator==(const PhaseResult&, const PhaseResult&) = default;

 private:
  PhaseResult(Kind kind, std::string message) : kind_(kind), message_(std::move(message)) {}

  Kind kind_;
  std::string message_;
};

// The application's side of a branch: one virtual per phase.
//
// Every method may be called many times for the same branch (retries, duplicates), out of order
// across phases, and concurrently from several server threads, also for the same branch: an
// implementation must be thread-safe and each phase idempotent. The barrier (barrier.h) or the
// PostgreSQL adapter (pg_prepared.h) give exactly that; a handler usually wraps its business
// change in one of them and returns its result.
//
// An exception escaping a method is answered 500 with a one-line message (the coordinator
// retries); it never reaches the server's threads.
class BranchHandler {
 public:
  virtual ~BranchHandler() = default;

  // 2pc first phase: do the work and hold it so that commit cannot fail; Done is a yes vote,
  // Refused a no. The default refuses: a participant that only takes part in tcc never gets one.
  virtual PhaseResult Prepare(const CallbackContext& ctx);

  // 2pc commit, tcc Confirm. Must succeed eventually once prepared (or tried). When
  // ctx.one_phase is set (2pc with a single branch, prepare skipped), do the prepare work and
  // commit it in one local transaction: Done means committed, Refused means refused and nothing
  // done, and the coordinator then sends abort, which must be a no-op that also refuses any late
  // duplicate of this one-phase commit (the barrier does both).
  virtual PhaseResult Commit(const CallbackContext& ctx) = 0;

  // 2pc abort, tcc Cancel. Must succeed eventually; for a branch never prepared (or tried), it is
  // done at once (null compensation) and a later prepare (or try) must be refused (no hanging).
  virtual PhaseResult Abort(const CallbackContext& ctx) = 0;

  // 3pc: CanCommit votes (Done: yes, holding the work so that commit cannot fail; Refused: no),
  // PreCommit acknowledges that every branch voted yes. Commit and Abort above finish a 3pc
  // branch too. The defaults answer 409 "3pc not supported by this participant", so a 3pc
  // transaction that includes a participant without them aborts instead of waiting.
  virtual PhaseResult CanCommit(const CallbackContext& ctx);
  virtual PhaseResult PreCommit(const CallbackContext& ctx);
};

// The application's side of a saga step (contract sections 2 and 4): the coordinator POSTs the
// step's `action` URL to run it and, when the saga turns to compensation, its `compensate` URL.
// ctx.branch_id is the step_id; ctx.phase is kAction or kCompensate.
//
// The same rules as for BranchHandler: each method may be called many times, out of order
// (a compensate may overtake its action, or come for a step whose action never arrived) and
// concurrently, also for the same step, so an implementation must be thread-safe and each phase
// idempotent. Action: Done means the step succeeded; Refused (409) is a business failure that
// turns the saga to compensation and is never retried; anything else is retried until the
// saga's deadline. Compensate must succeed eventually: it is retried until it does, and for a
// step whose action never ran it is done at once (null compensation), after which a late
// action must be refused (no hanging). SqliteSagaStep and PgSagaStep (saga.h) give all of this
// from two business functions.
//
// An exception escaping a method is answered 500, as for BranchHandler.
class SagaStepHandler {
 public:
  virtual ~SagaStepHandler() = default;
  virtual PhaseResult Action(const CallbackContext& ctx) = 0;
  virtual PhaseResult Compensate(const CallbackContext& ctx) = 0;
};

}  // namespace txcoord::participant
