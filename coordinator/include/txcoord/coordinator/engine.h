// The protocol engines: pure state machines, one object per live transaction.
//
// An engine takes events — a client command, a callback's reply, a timer, "your records are
// durable" — and answers with Effects: records to append, callbacks to send, when to wake it
// next. It does no I/O, reads time only from the `now` it is given and draws jitter from its own
// seeded generator, so the same events always give the same effects (tests drive it with a fake
// clock; the simulation replays seeds). The driver (coordinator.h) wires effects to the log, the
// transport and a timer, and feeds the results back as events.
//
// Durability rule: an engine never emits a callback whose meaning depends on a record before
// that record is durable. In particular no `commit` or `abort` is sent before the decision is
// durable, and no `prepare` before the begin is. The driver appends each engine's records in
// the order emitted and reports progress with OnDurable(seq), seq counting the records this
// engine emitted since it was created (1-based), so "seq ≤ durable" is the whole test.
//
// 2pc (presumed abort; Tx-One-Phase when there is exactly one branch):
//
//   (begin durable)                                               durable / who moves it on
//   preparing ──all prepares 2xx──────────▶ committing ─all acks─▶ committed
//     │  │                        (decision commit durable)        begin; engine on replies
//     │  └─a 409, the deadline, abort()─▶ aborting ────all acks─▶ aborted
//     │                         (decision abort durable)           decision; engine retries forever
//     └─one branch: commit with Tx-One-Phase; 2xx ─▶ committed, 409 ─▶ aborting
//
//   preparing:  begin durable; prepares in flight or retried with backoff until the deadline.
//               After a crash, recovery decides abort (presumed abort) — except a one-phase
//               transaction, whose outcome is the participant's: its commit is sent again.
//   committing: decision commit durable; commit sent to every branch until each acknowledges.
//   aborting:   decision abort durable; abort sent to every branch (also those that refused or
//               never answered: the barrier makes that a no-op that blocks a late prepare).
//   committed / aborted: the `end` record is durable; the engine is done and may be dropped.
//               Once the decision is durable and every branch acknowledged, the outcome is
//               settled(): View() shows the final state while the end is being appended, and a
//               `wait` reply does not wait for that append (the "2 fsyncs" path).
//
// tcc (the application calls each Try itself, after registering the branch):
//
//   active ──commit()──▶ committing ──all confirms──▶ committed
//     └──abort(), the deadline──▶ aborting ──all cancels──▶ aborted
//
//   active:     begin (and each branch registration) durable; waits for the application.
//               After a crash it stays active until its deadline: a restart does not abort
//               transactions the application is still working on.
//   committing / aborting / committed / aborted: as for 2pc, with the phases `commit` (Confirm)
//               and `abort` (Cancel).
//
// 3pc (coordinator/src/engine_3pc.cc; guarantees and limits in docs/3pc.md):
//
//   (begin durable)
//   can-committing ─all can-commits 2xx─▶ pre-committing ─all pre-commits answered,──▶ committing
//     │  (pre_commit record durable before any pre-commit is sent)  or its deadline    │ all acks
//     └─a 409, the deadline, abort()─▶ aborting ─all acks─▶ aborted           committed ◀┘
//
//   can-committing: begin durable; can-commit (a yes vote holds the work, like prepare) in
//                   flight or retried with backoff until the deadline. After a crash: abort (no
//                   pre-commit was sent, so no branch is pre-committed).
//   pre-committing: the votes and the pre_commit record durable; pre-commit sent to every branch
//                   and retried until it answers (2xx, or 409: it cannot be pre-committed any
//                   more) or the pre-commit deadline (timeout_ms again, from the record) passes;
//                   then the engine decides commit. abort() is refused: a branch may be
//                   pre-committed and commit on its own. After a crash: commit (Skeen's rule).
//   committing / aborting / committed / aborted: as for 2pc.
//
// Replies (contract section 4): 2xx success; 409 a no vote (first phase) or a participant bug
// (phase 2, logged and retried like a transient error); 425 retried at the initial interval
// without backoff growth; anything else transient: retried after a delay drawn uniformly from
// [0, min(cap, initial * 2^n)] ("full jitter"). First phases are retried until the deadline;
// phase 2 is never given up.
//
// Thread-safety: none; the driver serializes all calls on one engine.
#pragma once

#include <google/protobuf/struct.pb.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "txcoord/coordinator/log.h"
#include "txcoord/coordinator/transport.h"
#include "txcoord/saga/definition.h"
#include "txcoord/status.h"
#include "txcoord/v1/api.pb.h"
#include "txcoord/v1/log.pb.h"

namespace txcoord::coordinator {

struct RetryPolicy {
  std::chrono::milliseconds initial{100};     // first retry delay ceiling, and the 425 interval
  std::chrono::milliseconds max{5'000};       // the cap of the backoff
  std::chrono::milliseconds callback{5'000};  // one callback's whole budget
};

struct EngineOptions {
  RetryPolicy retry;
  // Skip prepare for a single-branch 2pc transaction (Tx-One-Phase).
  bool one_phase = true;
  // A failed attempt is also appended to the log (attempts and last_error) when its number is
  // a power of two, so the stored record shows a stuck branch without growing per retry.
  bool log_failed_attempts = true;
  // Branches per transaction at most (begin and tcc registrations together).
  int max_branches = 100;
  // Saga steps whose action or compensation is in progress at once, per saga.
  int max_parallel_steps = 16;
};

// A callback the driver should send now.
struct Send {
  std::string branch_id;  // for saga steps, the step_id
  std::string phase;      // "prepare", "commit", "abort"; "can-commit", "pre-commit" for 3pc;
                          // "action", "compensate" for sagas
  int attempt = 1;        // Tx-Attempt
  bool one_phase = false;
  // The target, when the engine names it (sagas): POST exactly this absolute URL, with this
  // payload (nullptr: none; owned by the engine, valid until its next call) and this per-call
  // budget (0: EngineOptions::retry.callback). Empty: POST {FindBranch(branch_id)->url}/{phase}
  // with the branch's payload (2pc, tcc).
  std::string url = {};
  const google::protobuf::Value* payload = nullptr;
  std::chrono::milliseconds timeout{0};
};

// What an engine asks of the driver after an event.
struct Effects {
  std::vector<v1::LogRecord> append;  // append in this order, after everything emitted before
  std::vector<Send> send;
  void Clear() {
    append.clear();
    send.clear();
  }
};

// The begin request as the API checked it (ids, URLs, protocol) plus what the driver adds.
struct BeginArgs {
  v1::BeginRequest request;  // gtid filled in
  std::string traceparent;
  std::string request_digest;  // fingerprint of the request for idempotent begin
  int timeout_ms = 0;          // the effective first-phase timeout
  // A saga: saga::ValidateSaga's plan of request.steps(), made by the API's checks, so that the
  // engine does not validate the same steps again. Absent: the engine validates them itself.
  std::optional<saga::SagaPlan> saga_plan;
};

class Engine {
 public:
  virtual ~Engine() = default;

  // ---- commands from the application; each may emit effects. The returned seq is the record
  // the command's reply must wait for (0: none). Errors: kConflict when the state does not allow
  // it, with a message for the client.
  virtual Result<uint64_t> RegisterBranch(Timestamp now, const v1::Branch& branch,
                                          Effects& out) = 0;
  virtual Result<uint64_t> Commit(Timestamp now, Effects& out) = 0;
  virtual Result<uint64_t> Abort(Timestamp now, std::string reason, Effects& out) = 0;

  // ---- operator commands (POST .../resolve and .../retry; `txctl resolve`, `txctl retry`).
  // An operator did the outstanding call of branch (or saga step) `request.branch_id()` by hand:
  // the engine emits a ResolvedRecord (log.proto) with `request`'s as, operator and reason, and
  // goes on as if that call had answered 2xx. Allowed only while the call is outstanding and
  // `as` agrees with the decision (see each engine); otherwise kConflict saying why, kNotFound
  // for an unknown branch. The seq is the resolved record's. Engines that do not support it
  // refuse with kConflict.
  virtual Result<uint64_t> Resolve(Timestamp /*now*/, const v1::ResolvedRecord& /*request*/,
                                   Effects& /*out*/) {
    return Status::Conflict("transaction " + gtid() + " (" + state() +
                            ") does not support resolving a branch by hand");
  }
  // Callbacks waiting out a retry delay are sent now and their backoff starts over. Calls in
  // flight are left to finish. The default only runs the timer, which sends what is due.
  virtual void RetryNow(Timestamp now, Effects& out) { OnTimer(now, out); }

  // ---- events from the driver
  // Records up to `seq` (counted as described above) are durable.
  virtual void OnDurable(Timestamp now, uint64_t seq, Effects& out) = 0;
  // A callback this engine asked for was answered. Replies to anything but the attempt in
  // flight for that branch and phase are ignored (a reply from before a crash, a duplicate).
  virtual void OnReply(Timestamp now, const Send& sent, const CallbackReply& reply,
                       Effects& out) = 0;
  // The time from WakeAt() has come (the driver may also call it early or late; it is safe).
  virtual void OnTimer(Timestamp now, Effects& out) = 0;

  // ---- reading
  // When the engine next wants OnTimer, if ever.
  virtual std::optional<Timestamp> WakeAt() const = 0;
  // The public record, live: states, attempts and last errors as the engine knows them now.
  virtual v1::Transaction View() const = 0;
  virtual const std::string& gtid() const = 0;
  virtual const std::string& state() const = 0;
  virtual const std::string& request_digest() const = 0;
  virtual const std::string& traceparent() const = 0;
  // The branch's definition (url, payload) for building a callback; nullptr when unknown.
  virtual const v1::Branch* FindBranch(const std::string& branch_id) const = 0;
  // The outcome is decided and durable.
  virtual bool decided() const = 0;
  // The `end` record is durable: the transaction is terminal and the engine may be dropped.
  virtual bool finished() const = 0;
  // The outcome is final and nothing a crash can lose would change it: the decision is durable
  // and every branch acknowledged phase 2; at most the `end` record is still on its way to the
  // log (after a crash, recovery sends phase 2 again, which the barrier answers, and ends it).
  // View() shows the final state from here on, and a `wait` reply may answer with it. True once
  // finished(). An engine that cannot tell (a saga) answers finished().
  virtual bool settled() const { return finished(); }
  // Records emitted so far, and how many of them are durable.
  virtual uint64_t emitted() const = 0;
  virtual uint64_t durable() const = 0;
};

// Starts a new transaction: emits its begin record. `args` must have passed the API's checks.
// The protocol must be "2pc", "3pc", "tcc" or "saga" (3pc in coordinator/src/engine_3pc.cc;
// saga::SagaEngine behind the same interface, coordinator/src/saga_engine.cc).
std::unique_ptr<Engine> BeginEngine(Timestamp now, const BeginArgs& args,
                                    const EngineOptions& options, uint64_t seed, Effects& out);

// Resumes a transaction read from the log after a restart (or after the driver dropped it when
// an append failed): undecided 2pc is aborted (presumed abort) unless it is one-phase, tcc stays
// active until its deadline, undecided 3pc commits when its pre_commit record is durable and
// aborts otherwise, decided ones resend phase 2 to every branch; a saga continues
// forward from its durable step states, or backward once its abort is decided. Emits what it
// must.
// kCorruption when the records do not make a transaction this engine can drive; kInvalidArgument
// for a protocol it does not run.
Result<std::unique_ptr<Engine>> RecoverEngine(Timestamp now, const LoggedTransaction& logged,
                                              const EngineOptions& options, uint64_t seed,
                                              Effects& out);

// The delay before retry number `failures` (1-based) after a transient failure: uniform in
// [0, min(max, initial * 2^(failures-1))], at least 1 ms.
std::chrono::milliseconds BackoffDelay(const RetryPolicy& policy, int failures,
                                       std::mt19937_64& rng);

}  // namespace txcoord::coordinator
