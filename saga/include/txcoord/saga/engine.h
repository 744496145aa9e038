// The saga engine: one saga as a pure state machine (docs/saga.md).
//
// It takes events — "your records up to seq are durable", a step's reply, a timer, a client
// command — and answers with Effects: log records to append and callbacks to send. It does no
// I/O, reads time only from the `now` it is given and draws jitter from its own seeded
// generator, so the same events always give the same effects. The coordinator adapts it to its
// `coordinator::Engine` interface (coordinator/src/saga_engine.cc); this library does not know
// the coordinator.
//
// Durability rule: every step transition is durable before anything acts on it. In fact
// stricter: no callback is sent while any record this engine emitted is not yet durable. A step's
// `running` record is durable before its action is sent; its `succeeded` record is durable
// before the actions it enables are sent (they are one append); the abort decision and a step's
// `compensating` record are durable before its compensate is sent. Seqs count the records this
// engine emitted since it was created (1-based); "seq <= durable" is the whole test.
//
// Transaction states:
//
//   (begin + running(first ready steps) durable)               durable / who moves it on
//   running ──every step succeeded──▶ (decision commit + end) ─▶ committed
//      │                                                         begin, step outcomes;
//      │                                                         the engine, on replies
//      └─a 409, max_attempts, the deadline, Abort()─▶ compensating ─every step compensated─▶
//      aborted
//                                                   (decision abort durable; the engine, on
//                                                    replies, retrying compensations forever)
//
//   running:      begin durable; actions of ready steps in flight or retried until the deadline.
//                 After a crash: forward from the last durable step states (running actions
//                 sent again, ready pending steps started); past the deadline: turn.
//   compensating: decision abort durable, with its reason; compensations in reverse dependency
//                 order. After a crash: backward, `compensated` steps stay.
//   committed / aborted: the `end` record is durable; the engine is done. A commit decision
//                 without `end` (a crash between them cannot happen, they are one append; a
//                 log written otherwise) is finished by appending `end`.
//
// Step states (public Step.state):
//
//   pending ──deps succeeded──▶ running ──2xx──▶ succeeded
//                                  └──409 / max_attempts / turn──▶ failed (409 or max_attempts)
//   any but compensated ──all dependents compensated, decision durable──▶ compensating ──2xx──▶
//   compensated
//
//   pending:      nothing logged but the begin; no callback sent. Moved by the engine when every
//                 dependency succeeded and a parallel slot is free.
//   running:      its `running` outcome is durable; its action may be in flight (any attempt).
//   succeeded:    durable; stays until the saga turns.
//   failed:       durable with the abort decision; the step's action refused or gave up.
//   compensating: durable; its compensate is in flight or retried, forever.
//   compensated:  durable; final.
//
// Replies (contract section 4): 2xx done; 409 to an action fails the step and turns the saga;
// 409 to a compensate is a participant bug, logged in last_error and retried; 425 retried at the
// initial interval without backoff growth; anything else retried after a delay drawn uniformly
// from [0, min(max, initial * 2^(n-1))] ("full jitter"). Actions are retried until the deadline
// or the step's max_attempts, compensations forever. A failed attempt is logged at attempts 1,
// 2, 4, 8, ... Replies to anything but the attempt in flight for that step and phase are ignored.
//
// Thread-safety: none; the caller serializes all calls on one engine.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "txcoord/saga/definition.h"
#include "txcoord/status.h"
#include "txcoord/v1/api.pb.h"
#include "txcoord/v1/log.pb.h"

namespace txcoord::saga {

// The delay before retry number `failures` (1-based) after transient failures in a row, "full
// jitter": uniform in [0, min(max, initial * 2^(failures-1))], at least 1 ms. The one backoff
// rule of every engine (the coordinator's 2pc/tcc engine uses it too).
std::chrono::milliseconds FullJitterBackoff(std::chrono::milliseconds initial,
                                            std::chrono::milliseconds max, int failures,
                                            std::mt19937_64& rng);

// Milliseconds since the Unix epoch: the same type as coordinator::Timestamp.
using Timestamp = std::chrono::time_point<std::chrono::system_clock, std::chrono::milliseconds>;

// What a participant's reply to a step callback means (contract section 4).
enum class StepReply {
  kDone,        // any 2xx
  kRefused,     // 409: the action failed for business reasons (a bug for a compensate)
  kInProgress,  // 425: retried at the initial interval
  kTransient,   // anything else, no reply: retried with backoff
};

inline constexpr const char* kPhaseAction = "action";
inline constexpr const char* kPhaseCompensate = "compensate";

// A callback to send now: POST the step's `action` or `compensate` URL.
struct Send {
  int step = 0;         // index in the begin request's steps
  std::string step_id;  // sent as branch_id / Tx-Branch-Id
  std::string phase;    // kPhaseAction or kPhaseCompensate
  int attempt = 1;      // Tx-Attempt
};

struct Effects {
  std::vector<v1::LogRecord> append;  // append in this order, after everything emitted before
  std::vector<Send> send;
  void Clear() {
    append.clear();
    send.clear();
  }
};

struct SagaOptions {
  // Defaults for steps whose own retry fields are 0.
  std::chrono::milliseconds retry_initial{100};
  std::chrono::milliseconds retry_max{5'000};
  std::chrono::milliseconds callback_timeout{5'000};  // a step's timeout_ms when 0
  // Actions or compensations in progress at once per saga (started, not yet finished).
  int max_parallel_steps = 16;
  // Log a failed attempt (attempts, last_error) when its number is a power of two.
  bool log_failed_attempts = true;
};

// A begin request the API checked (saga::ValidateSaga passed), with what the driver adds.
struct SagaBegin {
  v1::BeginRequest request;  // gtid filled in, protocol "saga"
  std::string traceparent;
  std::string request_digest;
  int timeout_ms = 0;  // the effective forward timeout
  // ValidateSaga's plan of request.steps() when the caller ran it (the coordinator's API does);
  // absent, Begin validates the steps itself.
  std::optional<SagaPlan> plan;
};

class SagaEngine {
 public:
  // Starts a saga: emits its begin record and the `running` outcomes of the first ready steps.
  // kInvalidArgument when the steps are not a valid saga (the API should have refused them).
  static Result<std::unique_ptr<SagaEngine>> Begin(Timestamp now, const SagaBegin& begin,
                                                   const SagaOptions& options, uint64_t seed,
                                                   Effects& out);
  // Resumes a saga from its records (after a restart): forward without a decision, backward
  // with an abort decision, `end` appended after a commit decision. kCorruption when the
  // records do not make a saga.
  static Result<std::unique_ptr<SagaEngine>> Recover(Timestamp now,
                                                     const std::vector<v1::LogRecord>& records,
                                                     const SagaOptions& options, uint64_t seed,
                                                     Effects& out);

  // ---- client commands. The seq is the record the reply waits for (0: durable already).
  // Abort of an undecided saga turns it to compensation; kConflict once commit is decided.
  Result<uint64_t> Abort(Timestamp now, std::string reason, Effects& out);
  // A saga commits by itself: kConflict unless the commit is decided already.
  Result<uint64_t> Commit(Timestamp now, Effects& out);

  // ---- operator commands
  // An operator did a step's outstanding call by hand (log.proto ResolvedRecord): as
  // "committed", a `running` step's action, while the saga goes forward (no decision); as
  // "aborted", a `compensating` step's compensation, once the abort is decided. The step becomes
  // `succeeded` or `compensated` and the saga goes on as if the call had answered 2xx (replies
  // of attempts still in flight are stale from here on). Emits the resolved record first; the
  // seq is its. kNotFound for an unknown step; kConflict, saying why, for anything else.
  Result<uint64_t> Resolve(Timestamp now, const std::string& step_id, const std::string& as,
                           const std::string& operator_name, const std::string& reason,
                           Effects& out);
  // Every step waiting out a retry delay is due now, its backoff reset (`txctl retry`).
  void RetryNow(Timestamp now, Effects& out);

  // ---- events
  void OnDurable(Timestamp now, uint64_t seq, Effects& out);
  // `sent` is a Send this engine emitted; stale ones (another attempt or phase, a finished
  // saga, a reply from before a restart) are ignored.
  void OnReply(Timestamp now, const Send& sent, StepReply reply, const std::string& detail,
               Effects& out);
  void OnTimer(Timestamp now, Effects& out);

  // ---- reading
  std::optional<Timestamp> WakeAt() const;
  // The public record, live (the same fields FoldRecord shows from the log).
  v1::Transaction View() const;
  const std::string& gtid() const { return gtid_; }
  // "running", "compensating", "committed" or "aborted".
  const std::string& state() const { return state_; }
  const std::string& request_digest() const { return digest_; }
  const std::string& traceparent() const { return traceparent_; }
  int step_count() const { return static_cast<int>(steps_.size()); }
  // The step's definition as begun (action, compensate, payload, options); i in [0, count).
  const v1::Step& step(int i) const { return steps_[i].def; }
  // The index of a step_id, or -1.
  int FindStep(const std::string& step_id) const;
  // One callback's budget for step i.
  std::chrono::milliseconds CallbackTimeout(int i) const;
  v1::Outcome decision() const { return decision_; }
  bool decided() const { return decision_ != v1::OUTCOME_UNSPECIFIED && durable_ >= decision_seq_; }
  bool finished() const { return finished_; }
  uint64_t emitted() const { return emitted_; }
  uint64_t durable() const { return durable_; }

 private:
  struct StepRuntime {
    v1::Step def;
    std::string state = "pending";
    std::string phase;  // the phase being driven: empty (pending), action or compensate
    int attempts = 0;   // attempts of `phase`
    int failures = 0;   // transient failures in a row: the backoff exponent
    std::string last_error;
    bool in_flight = false;
    bool started = false;               // `phase` started (its record emitted), not yet finished
    std::optional<Timestamp> retry_at;  // next attempt due; none while in flight or done
    uint64_t ready_seq = 0;             // the record that must be durable before sending
  };

  SagaEngine(const SagaOptions& options, uint64_t seed) : options_(options), rng_(seed) {}

  // Validates and plans `steps`, or takes `plan` when given (ValidateSaga's plan of them).
  Status Init(const google::protobuf::RepeatedPtrField<v1::Step>& steps,
              const std::optional<SagaPlan>& plan = std::nullopt);
  uint64_t Emit(Timestamp now, v1::LogRecord record, Effects& out);
  uint64_t EmitOutcome(Timestamp now, const StepRuntime& s, Effects& out);
  int Active() const;
  void StartReadyActions(Timestamp now, Effects& out);
  void StartReadyCompensations(Timestamp now, Effects& out);
  void Turn(Timestamp now, std::string reason, int failed_step, Effects& out);
  void TurnIfPastDeadline(Timestamp now, Effects& out);
  void MaybeFinish(Timestamp now, Effects& out);
  void SendDue(Timestamp now, Effects& out);
  std::chrono::milliseconds Backoff(const StepRuntime& s);
  std::chrono::milliseconds Initial(const StepRuntime& s) const;
  std::string DeadlineReason() const;
  bool backward() const { return decision_ == v1::OUTCOME_ABORT; }

  const SagaOptions options_;
  std::mt19937_64 rng_;

  std::string gtid_;
  std::string state_;
  std::string reason_;
  std::string traceparent_;
  std::string digest_;
  Timestamp created_at_{};
  Timestamp updated_at_{};
  Timestamp deadline_{};
  std::vector<StepRuntime> steps_;
  SagaPlan plan_;

  v1::Outcome decision_ = v1::OUTCOME_UNSPECIFIED;
  uint64_t emitted_ = 0;
  uint64_t durable_ = 0;
  uint64_t decision_seq_ = 0;  // 0: none emitted by this engine (or durable before it)
  uint64_t end_seq_ = 0;
  bool ending_ = false;  // the end record is emitted
  bool finished_ = false;
};

}  // namespace txcoord::saga
