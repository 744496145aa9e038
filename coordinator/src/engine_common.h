// What the 2pc/tcc engine (engine.cc) and the 3pc engine (engine_3pc.cc) share: both drive a
// fixed set of branches through protocol-specific first rounds to a decision, and then through
// the same phase 2 (commit or abort to every branch until each acknowledges). Internal to the
// coordinator; the saga engine is built differently and does not use it.
//
// Only what means the same in both engines lives here. The first rounds, the deadlines, when a
// decision is taken and what recovery concludes stay in each engine.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "txcoord/coordinator/engine.h"

namespace txcoord::coordinator::internal {

// tx_state values common to 2pc, tcc and 3pc (the first-phase states are each engine's own).
inline constexpr std::string_view kCommitting = "committing";
inline constexpr std::string_view kAborting = "aborting";
inline constexpr std::string_view kCommitted = "committed";
inline constexpr std::string_view kAborted = "aborted";

// Phase 2's callbacks.
inline constexpr std::string_view kCommit = "commit";
inline constexpr std::string_view kAbort = "abort";

// A branch's state in the public record before anything was heard from it.
inline constexpr std::string_view kRegistered = "registered";

inline bool IsPowerOfTwo(int n) { return n > 0 && (n & (n - 1)) == 0; }

// A failed reply in words, for a branch's last_error.
std::string Describe(const CallbackReply& reply);

// Copies what defines a branch (branch_id, url, payload), not what the engine learned of it.
void CopyBranchDefinition(const v1::Branch& from, v1::Branch* to);

// A branch as an engine drives it.
struct BranchRuntime {
  v1::Branch def;  // branch_id, url, payload as given
  std::string state = std::string(kRegistered);
  std::string phase;  // the phase being driven; empty: none yet
  int attempts = 0;   // attempts of `phase`
  int failures = 0;   // transient failures in a row in `phase`: the backoff exponent
  std::string last_error;
  bool in_flight = false;
  // `phase` answered for good: a vote, a pre-commit reply, an acknowledgement of phase 2.
  bool done = false;
  std::optional<Timestamp> retry_at;  // due to be sent at; unset while in flight or done
  uint64_t registered_seq = 0;        // the record that registered it (0: begin or recovered)
};

// The state and the steps a branch-driving engine shares: the log records and their sequence
// numbers, the branches and their callbacks, retries, phase 2, resolving by hand and the public
// record. A subclass runs its protocol's first rounds and decides when and what to decide.
//
// Invariants kept here: records are numbered in the order emitted (seq, engine.h); no callback
// is sent unless MaySend() (the subclass's durability rule) allows it; a reply counts only for
// the attempt in flight; the `end` record follows the outcomes of all branches, once every
// branch acknowledged phase 2.
//
// Thread-safety: none, like every Engine.
class BranchPhaseEngine : public Engine {
 public:
  v1::Transaction View() const override;
  const std::string& gtid() const override { return gtid_; }
  const std::string& state() const override { return state_; }
  const std::string& request_digest() const override { return digest_; }
  const std::string& traceparent() const override { return traceparent_; }
  const v1::Branch* FindBranch(const std::string& branch_id) const override;
  bool decided() const override {
    return decision_ != v1::OUTCOME_UNSPECIFIED && decision_seq_ <= durable_;
  }
  bool finished() const override { return finished_; }
  bool settled() const override { return finished_ || (end_seq_ != 0 && decided()); }
  uint64_t emitted() const override { return emitted_; }
  uint64_t durable() const override { return durable_; }
  void RetryNow(Timestamp now, Effects& out) override;

 protected:
  BranchPhaseEngine(const EngineOptions& options, uint64_t seed) : options_(options), rng_(seed) {}

  // Whether a callback may be sent now: the records its phase depends on are durable and the
  // phase is still the current one.
  virtual bool MaySend() const = 0;
  // Whether the callbacks sent now carry Tx-One-Phase.
  virtual bool SendsOnePhase() const { return false; }

  BranchRuntime* FindRuntime(const std::string& id);
  void AddBranch(const v1::Branch& from, uint64_t registered_seq);
  bool AllDone() const;

  // Stamps `record` with the gtid and `now`, queues it and returns its seq.
  uint64_t Emit(Timestamp now, v1::LogRecord record, Effects& out);
  void EmitOutcome(Timestamp now, const BranchRuntime& b, Effects& out);
  // A begin record of `protocol` for `request`, with deadline_, traceparent_ and digest_; not
  // emitted, so that the caller may add to it.
  v1::LogRecord MakeBeginRecord(const v1::BeginRequest& request, std::string_view protocol,
                                int timeout_ms) const;

  // Recovery: the fields of a begin record every engine reads (deadline, traceparent, digest,
  // branches), and the records that say what a branch did.
  void RestoreBegin(const v1::BeginRecord& begin);
  Status RestoreOutcome(const v1::BranchOutcomeRecord& outcome);
  // Checks only that the branch is known and resolved to committed or aborted; whether the
  // resolve may come where it does is the engine's to check.
  Status RestoreResolved(const v1::ResolvedRecord& resolved);

  // Begins driving `phase` on `b`: due at once, counters reset.
  static void StartPhase(BranchRuntime& b, std::string_view phase);
  // Phase 2 of the decision to every branch that has not acknowledged it. After a restart one
  // resolved by hand has, and keeps the attempts and error its record gives.
  void StartPhase2(bool commit);
  // Sends every branch whose next attempt is due, if MaySend().
  void SendDue(Timestamp now, Effects& out);
  // The earliest of `deadline` and the retries due, for WakeAt(); retries do not count while
  // MaySend() is false, since nothing could be sent then and the engine would wake at once again.
  std::optional<Timestamp> NextWake(std::optional<Timestamp> deadline) const;

  // Records seq and what came before it as durable. False when there is nothing more to do:
  // nothing new, or the `end` is durable (the engine is finished now).
  bool NoteDurable(uint64_t seq);
  // The branch whose attempt `sent` is, no longer in flight; nullptr for a stale reply (an
  // earlier attempt or phase, a reply from before a restart, after the end).
  BranchRuntime* TakeReply(Timestamp now, const Send& sent);
  // A failed attempt that is not final: schedules the next one (after the 425 interval or a
  // full-jitter backoff, which draws from rng_) and logs every power-of-two attempt if asked.
  // last_error is already set. A 409 that reaches here is not a vote (the engines take those
  // first) but a participant bug, and is retried like a transient error.
  void RetryLater(Timestamp now, BranchRuntime& b, const CallbackReply& reply, Effects& out);

  // Emits the decision record and the outcomes of the branches heard from so far; state_ says
  // committing or aborting. Phase 2 is the engine's to start once the decision is durable.
  void EmitDecision(Timestamp now, v1::Outcome outcome, std::string reason, Effects& out);
  // Once phase 2 has started and every branch acknowledged it, emits the outcomes and the `end`
  // record. state_ shows the final state only once the end is durable (NoteDurable).
  void MaybeFinish(Timestamp now, Effects& out);
  // Why an undecided transaction aborted at its deadline, naming the first branch still owing a
  // reply. `state_` must still be the first phase's.
  std::string DeadlineReason() const;

  // The application's commit or abort once an outcome is decided: the decision's seq when it is
  // `command`'s (a retry), a refusal when it is the other. nullopt while undecided.
  std::optional<Result<uint64_t>> AnswerDecided(v1::Outcome command) const;

  // Resolving by hand. FindResolvable: the branch named in `request`, when `as` is valid and
  // the transaction is not finished. ResolveDecided: the operator did `b`'s phase 2 of the
  // durable decision; `mismatch_note` ends the refusal when `as` disagrees with it.
  Result<BranchRuntime*> FindResolvable(const v1::ResolvedRecord& request);
  Result<uint64_t> ResolveDecided(Timestamp now, BranchRuntime& b,
                                  const v1::ResolvedRecord& request, std::string_view mismatch_note,
                                  Effects& out);
  uint64_t EmitResolved(Timestamp now, const BranchRuntime& b, const v1::ResolvedRecord& request,
                        Effects& out);
  // The branch acknowledged its phase: replies to an attempt still in flight are stale now.
  static void MarkResolved(BranchRuntime& b, const std::string& state);

  const EngineOptions options_;
  std::mt19937_64 rng_;

  std::string gtid_;
  std::string protocol_;
  std::string state_;
  std::string reason_;
  std::string traceparent_;
  std::string digest_;
  Timestamp created_at_{};
  Timestamp updated_at_{};
  Timestamp deadline_{};  // of the first phase
  std::vector<BranchRuntime> branches_;

  v1::Outcome decision_ = v1::OUTCOME_UNSPECIFIED;
  uint64_t emitted_ = 0;
  uint64_t durable_ = 0;
  uint64_t begin_seq_ = 0;     // 0 after recovery: durable already
  uint64_t decision_seq_ = 0;  // 0: not emitted by this engine (or durable before it)
  uint64_t end_seq_ = 0;
  bool phase2_started_ = false;
  bool finished_ = false;
};

}  // namespace txcoord::coordinator::internal
