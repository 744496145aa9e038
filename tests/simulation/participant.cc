// The participant rules of contract section 4, as a table over (role, state).
#include "participant.h"

namespace txcoord::simulation {

bool RoleOfPhase(std::string_view phase, Role* role) {
  if (phase == "prepare" || phase == "can-commit") {
    *role = Role::kVote;
  } else if (phase == "pre-commit") {
    *role = Role::kPreCommit;
  } else if (phase == "commit") {
    *role = Role::kCommit;
  } else if (phase == "abort") {
    *role = Role::kAbort;
  } else if (phase == "try") {
    *role = Role::kTry;
  } else if (phase == "action") {
    *role = Role::kAction;
  } else if (phase == "compensate") {
    *role = Role::kCompensate;
  } else {
    return false;
  }
  return true;
}

const char* RoleName(Role role) {
  switch (role) {
    case Role::kVote:
      return "vote";
    case Role::kPreCommit:
      return "pre-commit";
    case Role::kCommit:
      return "commit";
    case Role::kAbort:
      return "abort";
    case Role::kTry:
      return "try";
    case Role::kAction:
      return "action";
    case Role::kCompensate:
      return "compensate";
  }
  return "?";
}

const char* StateName(BranchState s) {
  switch (s) {
    case BranchState::kNone:
      return "none";
    case BranchState::kRefused:
      return "refused";
    case BranchState::kPrepared:
      return "prepared";
    case BranchState::kPreCommitted:
      return "pre-committed";
    case BranchState::kCommitted:
      return "committed";
    case BranchState::kAborted:
      return "aborted";
    case BranchState::kApplied:
      return "applied";
    case BranchState::kCompensated:
      return "compensated";
    case BranchState::kNullCompensated:
      return "null-compensated";
  }
  return "?";
}

namespace {

using S = BranchState;

PhaseResult Reply(int status, S next, std::string anomaly = {}) {
  return PhaseResult{status, next, std::move(anomaly)};
}

// A phase that belongs to another kind of transaction than the branch's state shows.
PhaseResult Mismatch(Role role, S s) {
  return Reply(409, s,
               std::string(RoleName(role)) + " to a branch in state " + StateName(s) +
                   ", which that phase never meets");
}

}  // namespace

PhaseResult ApplyPhase(Role role, bool one_phase, bool refuses, S s) {
  switch (role) {
    case Role::kVote:
    case Role::kTry:
      switch (s) {
        case S::kNone:
          return refuses ? Reply(409, S::kRefused) : Reply(200, S::kPrepared);
        case S::kRefused:
        case S::kAborted:  // the barrier: no prepare after the abort (anti-hanging)
          return Reply(409, s);
        case S::kPrepared:
        case S::kPreCommitted:
        case S::kCommitted:  // a late duplicate of the vote
          return Reply(200, s);
        default:
          return Mismatch(role, s);
      }
    case Role::kPreCommit:
      switch (s) {
        case S::kPrepared:
          return Reply(200, S::kPreCommitted);
        case S::kPreCommitted:
        case S::kCommitted:
          return Reply(200, s);
        case S::kAborted:  // it aborted on its own timeout, or a duplicate after the abort
          return Reply(409, s);
        case S::kNone:
        case S::kRefused:
          return Reply(
              409, s,
              std::string("pre-commit of a branch that did not vote yes (") + StateName(s) + ")");
        default:
          return Mismatch(role, s);
      }
    case Role::kCommit:
      switch (s) {
        case S::kNone:
          if (one_phase) return refuses ? Reply(409, S::kRefused) : Reply(200, S::kCommitted);
          return Reply(409, s, "commit of a branch that never voted yes");
        case S::kRefused:
          if (one_phase) return Reply(409, s);  // the same answer as the first time
          return Reply(409, s, "commit of a branch that voted no");
        case S::kPrepared:
        case S::kPreCommitted:
          return Reply(200, S::kCommitted);
        case S::kCommitted:
          return Reply(200, s);
        case S::kAborted:
          // A one-phase commit is the first phase: a late copy after the abort is refused.
          if (one_phase) return Reply(409, s);
          return Reply(409, s, "commit of a branch that was aborted");
        default:
          return Mismatch(role, s);
      }
    case Role::kAbort:
      switch (s) {
        case S::kNone:  // null abort: nothing to undo, and a late prepare is refused
        case S::kRefused:
        case S::kPrepared:
        case S::kPreCommitted:
          return Reply(200, S::kAborted);
        case S::kAborted:
          return Reply(200, s);
        case S::kCommitted:
          return Reply(409, s, "abort of a branch that was committed");
        default:
          return Mismatch(role, s);
      }
    case Role::kAction:
      switch (s) {
        case S::kNone:
          return refuses ? Reply(409, S::kRefused) : Reply(200, S::kApplied);
        case S::kRefused:
        case S::kNullCompensated:  // the barrier: no action after its compensation
          return Reply(409, s);
        case S::kApplied:
        case S::kCompensated:  // a duplicate gets its original 200, and no effect
          return Reply(200, s);
        default:
          return Mismatch(role, s);
      }
    case Role::kCompensate:
      switch (s) {
        case S::kNone:
        case S::kRefused:
          return Reply(200, S::kNullCompensated);
        case S::kApplied:
          return Reply(200, S::kCompensated);
        case S::kCompensated:
        case S::kNullCompensated:
          return Reply(200, s);
        default:
          return Mismatch(role, s);
      }
  }
  return Reply(500, s, "unknown role");
}

BranchState TimeoutDecision(BranchState s) {
  if (s == S::kPrepared) return S::kAborted;
  if (s == S::kPreCommitted) return S::kCommitted;
  return s;
}

}  // namespace txcoord::simulation
