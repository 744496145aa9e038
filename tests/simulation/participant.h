// The participant side of the contract (section 4) as the simulation plays it: one branch (or
// saga step) of one transaction at a participant, and what a callback does to it.
//
// A participant keeps one durable BranchState per (gtid, branch_id). Every phase is idempotent;
// an `abort`/`compensate` for a branch it never prepared/ran is done (null compensation) and
// leaves a barrier that makes a later `prepare`/`action` answer 409 (no hanging). What a branch
// votes is the participant's business, decided once per branch (`refuses`), so that retries of
// the same phase agree with each other.
//
// Anomalies are what a correct coordinator never causes: a commit of a branch that never voted
// yes, a commit after an abort or an abort after a commit, a pre-commit of a branch that did
// not vote. The simulator turns them into violations (or, for 3pc, into counted partition cases
// when the branch decided by its own timeout).
#pragma once

#include <string>
#include <string_view>

namespace txcoord::simulation {

// What a phase asks of the participant, whatever its name in the protocol.
enum class Role {
  kVote,        // prepare, can-commit: vote yes (2xx) or no (409)
  kPreCommit,   // 3pc pre-commit: acknowledge that the outcome will be commit
  kCommit,      // commit (tcc: Confirm); with one_phase, commit without a prepare
  kAbort,       // abort (tcc: Cancel)
  kTry,         // tcc Try, called by the application itself
  kAction,      // a saga step's action
  kCompensate,  // a saga step's compensation
};

// The role of a callback phase; false for a phase the participant does not know.
bool RoleOfPhase(std::string_view phase, Role* role);
const char* RoleName(Role role);

enum class BranchState {
  kNone,             // nothing durable: never heard of it
  kRefused,          // voted no (409) / the action failed for business reasons
  kPrepared,         // voted yes (prepare, can-commit) or tcc Try done: resources held
  kPreCommitted,     // 3pc: acknowledged pre-commit
  kCommitted,        // committed: the effect is kept
  kAborted,          // aborted (also a null abort: the barrier for a late prepare)
  kApplied,          // saga: the action's effect is applied
  kCompensated,      // saga: the action was applied, then undone
  kNullCompensated,  // saga: compensated before the action ran; the barrier for a late action
};

const char* StateName(BranchState s);

// The outcome of one callback at the participant.
struct PhaseResult {
  int http_status = 200;
  BranchState next = BranchState::kNone;
  // Non-empty when the request shows a coordinator bug (see above).
  std::string anomaly;
};

// Applies one callback to a branch in state `current`. `refuses`: the participant's business
// answer for this branch (a no vote, a failed action). Pure.
PhaseResult ApplyPhase(Role role, bool one_phase, bool refuses, BranchState current);

// 3pc participant timeouts (contract 4): what a branch left waiting in `s` decides by itself
// when it hears nothing and cannot ask the coordinator. kPrepared (voted yes) aborts,
// kPreCommitted commits; any other state has nothing to decide (returns `s`).
BranchState TimeoutDecision(BranchState s);

}  // namespace txcoord::simulation
