/* Three-phase commit as txcoord runs it: the coordinator of coordinator/src/engine_3pc.cc and the
 * participant timeouts of participant-sdk's ThreePhaseKeeper (docs/3pc.md), with a lossy,
 * reordering network and coordinator crashes. Checked by docs/model/check with spin.
 *
 * What is modelled
 *   - N participants with durable state (see 2pc.pml: a participant crash is lost messages).
 *     Sends may be dropped (at most MAX_DROPS) and are received out of order (`??`).
 *   - The coordinator's durable log: begin, pre_commit, the decision, end. The rest of its state
 *     is volatile and lost at a crash (at most MAX_CRASHES, at the CRASH_POINTs).
 *   - Coordinator: can-commit to all; all yes: the pre_commit record, then pre-commit to all;
 *     every pre-commit answered (acknowledged or refused), or the pre-commit deadline: commit.
 *     A no vote or the can-commit deadline: abort. Phase 2 is retried until acknowledged.
 *     Recovery (Skeen's rule): a decision is resent; a pre_commit record resumes pre-committing
 *     (so the outcome is commit); a begin alone aborts.
 *   - The termination query (GET /v1/transactions/{gtid}): answered from the durable log,
 *     commit once pre_commit or a commit decision is logged, abort after an abort decision,
 *     nothing while the transaction is still voting.
 *   - Participant timeouts, two configurations:
 *       default: the coordinator may be unreachable at any moment (a partition, or a crash as
 *         the participant sees it); a participant that voted yes may then abort on its own, and
 *         one that is pre-committed may commit on its own (contract section 4).
 *       -DQUERY_REQUIRED (termination_query_required in ThreePhaseKeeper): a participant never
 *         acts on a timeout alone; it asks the coordinator (when nothing else happens) and does
 *         what the answer says.
 *
 * What is checked
 *   - no_split (ltl): never one participant committed while another aborted.
 *   - no_abort_after_pre_commit (ltl): once the pre_commit record is durable the decision is
 *     never abort; decision_stable (ltl): a durable decision never changes.
 *   - termination (spin's end-state check) with the faults bounded.
 *
 * Expected results (docs/model/check asserts them):
 *   default             no_split is VIOLATED: the partition case docs/3pc.md describes, a
 *                       counterexample by design.
 *   -DQUERY_REQUIRED    every property holds: 3pc then blocks like 2pc, and never splits.
 *   -DQUERY_REQUIRED -DRECOVER_BY_ABORT (a mutation: recovery ignores the pre_commit record and
 *                       presumes abort, as 2pc would): violated.
 */

#ifndef N
#define N 2
#endif
#define MAX_CRASHES 2
#define MAX_DROPS 2

mtype = { CANCOMMIT, PRECOMMIT, COMMIT, ABORT, ANS_COMMIT, ANS_ABORT,
          YES, NO, PC_ACK, PC_REFUSED, DONE, REFUSED, QUERY };

#define WORKING      0
#define VOTED        1
#define PRECOMMITTED 2
#define COMMITTED    3
#define ABORTED      4

#define NONE 0
#define D_COMMIT 1
#define D_ABORT 2

byte pstate[N];

/* the coordinator's durable log */
bool log_begun = false;
bool log_pre_commit = false;
byte log_decision = NONE;
bool log_end = false;

byte crashes = 0;
byte drops = 0;

chan to_p[N] = [3] of { mtype };
chan to_c = [4] of { mtype, byte };

#define SEND(ch, m) \
  if \
  :: drops < MAX_DROPS -> drops++ \
  :: nfull(ch) -> ch!m \
  :: full(ch) -> skip \
  fi

#define REPLY(m, id) \
  if \
  :: drops < MAX_DROPS -> drops++ \
  :: nfull(to_c) -> to_c!m,id \
  :: full(to_c) -> skip \
  fi

#define CRASH_POINT \
  if \
  :: crashes < MAX_CRASHES -> crashes++; goto restart \
  :: true -> skip \
  fi

/* The termination query's answer, from the durable log only. */
#define ANSWER(id) \
  if \
  :: log_decision == D_COMMIT || (log_decision == NONE && log_pre_commit) -> \
     SEND(to_p[id], ANS_COMMIT) \
  :: log_decision == D_ABORT -> SEND(to_p[id], ANS_ABORT) \
  :: else -> skip /* still voting: ask again later */ \
  fi

#define committed_any (pstate[0] == COMMITTED || pstate[1] == COMMITTED || pstate[N-1] == COMMITTED)
#define aborted_any (pstate[0] == ABORTED || pstate[1] == ABORTED || pstate[N-1] == ABORTED)

ltl no_split { [] !(committed_any && aborted_any) }
ltl no_abort_after_pre_commit { [] (log_pre_commit -> log_decision != D_ABORT) }
ltl decision_stable { [] ((log_decision == D_COMMIT -> [] (log_decision == D_COMMIT)) &&
                          (log_decision == D_ABORT -> [] (log_decision == D_ABORT))) }

proctype Participant(byte id) {
end:
  do
  :: to_p[id]??CANCOMMIT ->
     if
     :: pstate[id] == WORKING ->
        if
        :: pstate[id] = VOTED; REPLY(YES, id)   /* holds the work; its timer starts */
        :: pstate[id] = ABORTED; REPLY(NO, id)  /* 409 */
        fi
     :: pstate[id] == VOTED || pstate[id] == PRECOMMITTED || pstate[id] == COMMITTED ->
        REPLY(YES, id)
     :: pstate[id] == ABORTED -> REPLY(NO, id)
     fi
  :: to_p[id]??PRECOMMIT ->
     assert(pstate[id] != WORKING);  /* pre-commit only after every yes */
     if
     :: pstate[id] == VOTED -> pstate[id] = PRECOMMITTED; REPLY(PC_ACK, id)
     :: pstate[id] == PRECOMMITTED || pstate[id] == COMMITTED -> REPLY(PC_ACK, id)
     :: pstate[id] == ABORTED -> REPLY(PC_REFUSED, id)  /* aborted on its own timeout */
     fi
  :: to_p[id]??COMMIT ->
     assert(pstate[id] != WORKING);
     if
     :: pstate[id] != ABORTED -> pstate[id] = COMMITTED; REPLY(DONE, id)
     :: else -> REPLY(REFUSED, id)  /* the split, visible to the coordinator */
     fi
  :: to_p[id]??ABORT ->
     if
     :: pstate[id] != COMMITTED -> pstate[id] = ABORTED; REPLY(DONE, id)
     :: else -> REPLY(REFUSED, id)
     fi
  :: to_p[id]??ANS_COMMIT ->
     if
     :: pstate[id] == VOTED || pstate[id] == PRECOMMITTED -> pstate[id] = COMMITTED
     :: else -> skip
     fi
  :: to_p[id]??ANS_ABORT ->
     if
     :: pstate[id] == VOTED || pstate[id] == PRECOMMITTED -> pstate[id] = ABORTED
     :: else -> skip
     fi
#ifdef QUERY_REQUIRED
  :: timeout && (pstate[id] == VOTED || pstate[id] == PRECOMMITTED) -> REPLY(QUERY, id)
#else
  :: pstate[id] == VOTED -> pstate[id] = ABORTED          /* timeout, coordinator unreachable */
  :: pstate[id] == PRECOMMITTED -> pstate[id] = COMMITTED /* timeout, coordinator unreachable */
  :: timeout && (pstate[id] == VOTED || pstate[id] == PRECOMMITTED) -> REPLY(QUERY, id)
#endif
  od
}

active proctype Coordinator() {
  bool answered[N];
  byte i, count, from;
  mtype m;

restart:
  i = 0; do :: i < N -> answered[i] = false; i++ :: else -> break od;
  count = 0;
  if
  :: log_end -> goto finished
  :: !log_end && log_decision != NONE -> goto phase2
  :: !log_end && log_decision == NONE && log_pre_commit -> goto pre_commit
#ifdef RECOVER_BY_ABORT
  :: !log_end && log_decision == NONE && log_pre_commit -> log_decision = D_ABORT; goto phase2
#endif
  :: !log_end && log_decision == NONE && !log_pre_commit && log_begun ->
     log_decision = D_ABORT; goto phase2
  :: !log_begun -> skip
  fi;

  log_begun = true;
  CRASH_POINT;
  i = 0; do :: i < N -> SEND(to_p[i], CANCOMMIT); i++ :: else -> break od;
  CRASH_POINT;
  do
  :: count == N -> break
  :: to_c??NO,from -> log_decision = D_ABORT; goto phase2
  :: to_c??YES,from ->
     if
     :: !answered[from] -> answered[from] = true; count++
     :: else -> skip
     fi;
     CRASH_POINT
  :: to_c??QUERY,from -> ANSWER(from)
  :: to_c??PC_ACK,from -> skip  /* stale, from before a crash */
  :: to_c??PC_REFUSED,from -> skip
  :: to_c??DONE,from -> skip
  :: to_c??REFUSED,from -> skip
  :: timeout ->
     if
     :: i = 0; do :: i < N -> if :: !answered[i] -> SEND(to_p[i], CANCOMMIT) :: else fi; i++
                  :: else -> break od
     :: log_decision = D_ABORT; goto phase2  /* the can-commit deadline */
     fi
  od;
  log_pre_commit = true;
  CRASH_POINT;

pre_commit:
  i = 0; do :: i < N -> answered[i] = false; i++ :: else -> break od;
  count = 0;
  i = 0; do :: i < N -> SEND(to_p[i], PRECOMMIT); i++ :: else -> break od;
  CRASH_POINT;
  do
  :: count == N -> break
  :: to_c??PC_ACK,from ->
     if
     :: !answered[from] -> answered[from] = true; count++
     :: else -> skip
     fi;
     CRASH_POINT
  :: to_c??PC_REFUSED,from ->  /* answered: it cannot be pre-committed, not a vote */
     if
     :: !answered[from] -> answered[from] = true; count++
     :: else -> skip
     fi
  :: to_c??QUERY,from -> ANSWER(from)
  :: to_c??YES,from -> skip
  :: to_c??NO,from -> skip  /* a stale refusal from before a crash: the votes are in the log */
  :: to_c??DONE,from -> skip
  :: to_c??REFUSED,from -> skip
  :: timeout ->
     if
     :: i = 0; do :: i < N -> if :: !answered[i] -> SEND(to_p[i], PRECOMMIT) :: else fi; i++
                  :: else -> break od
     :: break  /* the pre-commit deadline: commit without every answer */
     fi
  od;
  log_decision = D_COMMIT;
  CRASH_POINT;

phase2:
  i = 0; do :: i < N -> answered[i] = false; i++ :: else -> break od;
  count = 0;
  i = 0;
  do
  :: i < N -> if :: log_decision == D_COMMIT -> SEND(to_p[i], COMMIT)
                 :: else -> SEND(to_p[i], ABORT) fi; i++
  :: else -> break
  od;
  CRASH_POINT;
  do
  :: count == N -> break
  :: to_c??DONE,from ->
     if
     :: !answered[from] -> answered[from] = true; count++
     :: else -> skip
     fi;
     CRASH_POINT
  :: to_c??QUERY,from -> ANSWER(from)
  :: to_c??REFUSED,from -> skip  /* retried forever, shown in last_error */
  :: to_c??YES,from -> skip
  :: to_c??NO,from -> skip
  :: to_c??PC_ACK,from -> skip
  :: to_c??PC_REFUSED,from -> skip
  :: timeout ->
     i = 0;
     do
     :: i < N -> if :: !answered[i] && log_decision == D_COMMIT -> SEND(to_p[i], COMMIT)
                    :: !answered[i] && log_decision == D_ABORT -> SEND(to_p[i], ABORT)
                    :: else -> skip fi; i++
     :: else -> break
     od
  od;
  log_end = true;

finished:
end:
  do
  :: to_c??QUERY,from -> ANSWER(from)
  :: to_c??m,from -> skip  /* late replies */
  od
}

init {
  byte k = 0;
  atomic {
    do
    :: k < N -> run Participant(k); k++
    :: else -> break
    od
  }
}
