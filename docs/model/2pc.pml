/* Two-phase commit as txcoord's 2pc engine runs it (coordinator/src/engine.cc), presumed abort,
 * with a lossy network and coordinator crashes. Checked by docs/model/check with spin.
 *
 * What is modelled
 *   - N participants (2 by default; -DN=3 works too, slowly). A participant's state is durable (its barrier row and its prepared work
 *     survive a restart), so a participant crash is indistinguishable from lost messages, which
 *     the network models: every send may be dropped (at most MAX_DROPS in a run), and messages
 *     are taken out of order (random receive, `??`); retries make duplicates.
 *   - The coordinator's log: the begin record and the decision. A log write is durable when the
 *     statement that makes it has run; everything else the coordinator holds is volatile and lost
 *     at a crash (at most MAX_CRASHES, at the points marked CRASH_POINT).
 *   - Retries: when nothing else can happen (spin's `timeout`), the coordinator resends its
 *     current phase to every branch that has not answered, or, in phase 1, finds the deadline
 *     passed and aborts. (A participant's refusal covers an abort decided while other votes are
 *     still in flight.)
 *   - Recovery: an end record: nothing to do; a decision: resend it; a begin only: abort
 *     (presumed abort); nothing: the transaction never began.
 *
 * What is checked
 *   - no_split (ltl): never one participant committed while another aborted.
 *   - decision_stable (ltl): a durable decision never changes.
 *   - assertions: a participant commits only when prepared; the coordinator writes its end
 *     record only when every participant finished as decided.
 *   - termination: spin's end-state check. With the faults bounded, every run stops with the
 *     coordinator finished and every participant waiting at an `end` label.
 *
 * Mutation (-DEARLY_COMMIT): phase 2 starts before the commit decision is durable. The checker
 * must find a split (a crash between the commit going out and the decision being written makes
 * recovery presume abort).
 */

#ifndef N
#define N 2
#endif
#define MAX_CRASHES 2
#define MAX_DROPS 2

mtype = { PREPARE, COMMIT, ABORT, YES, NO, ACK };

#define WORKING   0
#define PREPARED  1
#define COMMITTED 2
#define ABORTED   3

#define NONE 0
#define D_COMMIT 1
#define D_ABORT 2

byte pstate[N];

/* the coordinator's durable log */
bool log_begun = false;
byte log_decision = NONE;
bool log_end = false;

byte crashes = 0;
byte drops = 0;

chan to_p[N] = [2] of { mtype };
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

#define committed_any (pstate[0] == COMMITTED || pstate[1] == COMMITTED || pstate[N-1] == COMMITTED)
#define aborted_any (pstate[0] == ABORTED || pstate[1] == ABORTED || pstate[N-1] == ABORTED)

ltl no_split { [] !(committed_any && aborted_any) }
ltl decision_stable { [] ((log_decision == D_COMMIT -> [] (log_decision == D_COMMIT)) &&
                          (log_decision == D_ABORT -> [] (log_decision == D_ABORT))) }

proctype Participant(byte id) {
end:
  do
  :: to_p[id]??PREPARE ->  /* ?? takes the first PREPARE anywhere in the channel: reordering */
     if
     :: pstate[id] == WORKING ->
        if
        :: pstate[id] = PREPARED; REPLY(YES, id)  /* the work is held, prepared */
        :: pstate[id] = ABORTED; REPLY(NO, id)    /* business refusal: 409 */
        fi
     :: pstate[id] == PREPARED || pstate[id] == COMMITTED ->
        REPLY(YES, id)                            /* a repeat: the barrier's original answer */
     :: pstate[id] == ABORTED -> REPLY(NO, id)    /* a prepare after its abort: refused */
     fi
  :: to_p[id]??COMMIT ->
     assert(pstate[id] == PREPARED || pstate[id] == COMMITTED);
     pstate[id] = COMMITTED; REPLY(ACK, id)
  :: to_p[id]??ABORT ->
     assert(pstate[id] != COMMITTED);
     pstate[id] = ABORTED; REPLY(ACK, id)  /* unprepared: a null abort that blocks a late prepare */
  od
}

active proctype Coordinator() {
  bool answered[N];
  byte i, yes, acks, from;
  mtype m;

restart:
  /* whatever was volatile is gone */
  i = 0; do :: i < N -> answered[i] = false; i++ :: else -> break od;
  yes = 0; acks = 0;
  if
  :: log_end -> goto finished
  :: !log_end && log_decision != NONE -> goto phase2
  :: !log_end && log_decision == NONE && log_begun -> log_decision = D_ABORT; goto phase2
  :: !log_begun -> skip
  fi;

  log_begun = true;
  CRASH_POINT;
  i = 0; do :: i < N -> SEND(to_p[i], PREPARE); i++ :: else -> break od;
  CRASH_POINT;

  do
  :: yes == N ->
#ifdef EARLY_COMMIT
     i = 0; do :: i < N -> SEND(to_p[i], COMMIT); i++ :: else -> break od;
     CRASH_POINT;
#endif
     log_decision = D_COMMIT; break
  :: to_c??NO,from -> log_decision = D_ABORT; break
  :: to_c??YES,from ->
     if
     :: !answered[from] -> answered[from] = true; yes++
     :: else -> skip
     fi;
     CRASH_POINT
  :: to_c??ACK,from -> skip  /* stale */
  :: timeout ->
     if
     :: i = 0; do :: i < N -> if :: !answered[i] -> SEND(to_p[i], PREPARE) :: else fi; i++
                  :: else -> break od
     :: log_decision = D_ABORT; break  /* the deadline passed (or the application aborted) */
     fi
  od;
  CRASH_POINT;

phase2:
  i = 0; do :: i < N -> answered[i] = false; i++ :: else -> break od;
  acks = 0;
  i = 0;
  do
  :: i < N -> if :: log_decision == D_COMMIT -> SEND(to_p[i], COMMIT)
                 :: else -> SEND(to_p[i], ABORT) fi; i++
  :: else -> break
  od;
  CRASH_POINT;
  do
  :: acks == N -> break
  :: to_c??ACK,from ->
     if
     :: !answered[from] -> answered[from] = true; acks++
     :: else -> skip
     fi;
     CRASH_POINT
  :: to_c??YES,from -> skip  /* stale votes */
  :: to_c??NO,from -> skip
  :: timeout ->
     i = 0;
     do
     :: i < N -> if :: !answered[i] && log_decision == D_COMMIT -> SEND(to_p[i], COMMIT)
                    :: !answered[i] && log_decision == D_ABORT -> SEND(to_p[i], ABORT)
                    :: else -> skip fi; i++
     :: else -> break
     od
  od;
  i = 0;
  do
  :: i < N ->
     assert(pstate[i] == (log_decision == D_COMMIT -> COMMITTED : ABORTED)); i++
  :: else -> break
  od;
  log_end = true;

finished:
end:
  do
  :: to_c?m,from -> skip  /* late replies */
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
