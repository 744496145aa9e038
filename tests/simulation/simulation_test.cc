// The simulator's own tests: the participant rules, reproducibility, that faults really happen,
// and a short sweep of every protocol (the ctest entries simulation.sweep.* run the full CI
// seed count).
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "participant.h"
#include "sim.h"

namespace txcoord::simulation {
namespace {

using S = BranchState;

// The engines' warnings are provoked on purpose; they would drown the test output.
const bool kEngineLogsSilenced = (SilenceEngineLogs(), true);

PhaseResult Apply(Role role, S s, bool refuses = false, bool one_phase = false) {
  return ApplyPhase(role, one_phase, refuses, s);
}

TEST(Participant, RolesOfEveryPhaseOfTheContract) {
  Role r;
  for (const char* phase :
       {"prepare", "can-commit", "pre-commit", "commit", "abort", "action", "compensate"}) {
    EXPECT_TRUE(RoleOfPhase(phase, &r)) << phase;
  }
  EXPECT_FALSE(RoleOfPhase("precommit", &r));
  EXPECT_FALSE(RoleOfPhase("", &r));
}

TEST(Participant, VotesAreIdempotentAndFollowTheBusinessAnswer) {
  EXPECT_EQ(Apply(Role::kVote, S::kNone).next, S::kPrepared);
  EXPECT_EQ(Apply(Role::kVote, S::kNone).http_status, 200);
  const PhaseResult no = Apply(Role::kVote, S::kNone, /*refuses=*/true);
  EXPECT_EQ(no.http_status, 409);
  EXPECT_EQ(no.next, S::kRefused);
  EXPECT_EQ(Apply(Role::kVote, S::kPrepared).http_status, 200);
  EXPECT_EQ(Apply(Role::kVote, S::kRefused).http_status, 409);
  EXPECT_EQ(Apply(Role::kVote, S::kCommitted).http_status, 200);
}

TEST(Participant, NullAbortLeavesABarrierAgainstALatePrepare) {
  const PhaseResult abort = Apply(Role::kAbort, S::kNone);
  EXPECT_EQ(abort.http_status, 200);
  EXPECT_EQ(abort.next, S::kAborted);
  EXPECT_TRUE(abort.anomaly.empty());
  const PhaseResult late = Apply(Role::kVote, S::kAborted);
  EXPECT_EQ(late.http_status, 409);
  EXPECT_EQ(late.next, S::kAborted);
  EXPECT_EQ(Apply(Role::kTry, S::kAborted).http_status, 409);
}

TEST(Participant, PhaseTwoIsIdempotent) {
  EXPECT_EQ(Apply(Role::kCommit, S::kPrepared).next, S::kCommitted);
  EXPECT_EQ(Apply(Role::kCommit, S::kCommitted).http_status, 200);
  EXPECT_EQ(Apply(Role::kAbort, S::kPrepared).next, S::kAborted);
  EXPECT_EQ(Apply(Role::kAbort, S::kAborted).http_status, 200);
  EXPECT_EQ(Apply(Role::kAbort, S::kRefused).next, S::kAborted);
}

TEST(Participant, CoordinatorBugsAreAnomalies) {
  EXPECT_FALSE(Apply(Role::kCommit, S::kNone).anomaly.empty());
  EXPECT_FALSE(Apply(Role::kCommit, S::kRefused).anomaly.empty());
  EXPECT_FALSE(Apply(Role::kCommit, S::kAborted).anomaly.empty());
  EXPECT_FALSE(Apply(Role::kAbort, S::kCommitted).anomaly.empty());
  EXPECT_FALSE(Apply(Role::kPreCommit, S::kNone).anomaly.empty());
  EXPECT_FALSE(Apply(Role::kPreCommit, S::kRefused).anomaly.empty());
  // A phase of another kind of transaction.
  EXPECT_FALSE(Apply(Role::kAction, S::kPrepared).anomaly.empty());
  EXPECT_FALSE(Apply(Role::kCommit, S::kApplied).anomaly.empty());
}

TEST(Participant, OnePhaseCommitDecidesAtTheParticipant) {
  EXPECT_EQ(Apply(Role::kCommit, S::kNone, false, /*one_phase=*/true).next, S::kCommitted);
  const PhaseResult no = Apply(Role::kCommit, S::kNone, /*refuses=*/true, /*one_phase=*/true);
  EXPECT_EQ(no.http_status, 409);
  EXPECT_EQ(no.next, S::kRefused);
  EXPECT_TRUE(no.anomaly.empty());
  const PhaseResult again = Apply(Role::kCommit, S::kRefused, true, /*one_phase=*/true);
  EXPECT_EQ(again.http_status, 409);
  EXPECT_TRUE(again.anomaly.empty());
  // A late copy of the one-phase commit after the abort meets the barrier.
  const PhaseResult late = Apply(Role::kCommit, S::kAborted, false, /*one_phase=*/true);
  EXPECT_EQ(late.http_status, 409);
  EXPECT_EQ(late.next, S::kAborted);
  EXPECT_TRUE(late.anomaly.empty());
}

TEST(Participant, SagaStepsHaveABarrierAndNullCompensation) {
  EXPECT_EQ(Apply(Role::kAction, S::kNone).next, S::kApplied);
  EXPECT_EQ(Apply(Role::kAction, S::kApplied).http_status, 200);
  EXPECT_EQ(Apply(Role::kAction, S::kNone, /*refuses=*/true).http_status, 409);
  EXPECT_EQ(Apply(Role::kCompensate, S::kApplied).next, S::kCompensated);
  EXPECT_EQ(Apply(Role::kCompensate, S::kNone).next, S::kNullCompensated);
  EXPECT_EQ(Apply(Role::kCompensate, S::kRefused).next, S::kNullCompensated);
  EXPECT_EQ(Apply(Role::kCompensate, S::kCompensated).http_status, 200);
  // A late action after a null compensation is refused; a duplicate of an action that ran and
  // was compensated gets its original 200 and no effect.
  const PhaseResult late = Apply(Role::kAction, S::kNullCompensated);
  EXPECT_EQ(late.http_status, 409);
  EXPECT_EQ(late.next, S::kNullCompensated);
  const PhaseResult dup = Apply(Role::kAction, S::kCompensated);
  EXPECT_EQ(dup.http_status, 200);
  EXPECT_EQ(dup.next, S::kCompensated);
}

TEST(Participant, ThreePcTimeoutsAbortAVoteAndCommitAPreCommit) {
  EXPECT_EQ(TimeoutDecision(S::kPrepared), S::kAborted);
  EXPECT_EQ(TimeoutDecision(S::kPreCommitted), S::kCommitted);
  EXPECT_EQ(TimeoutDecision(S::kCommitted), S::kCommitted);
  EXPECT_EQ(TimeoutDecision(S::kNone), S::kNone);
  EXPECT_EQ(Apply(Role::kPreCommit, S::kPrepared).next, S::kPreCommitted);
  EXPECT_EQ(Apply(Role::kCommit, S::kPreCommitted).next, S::kCommitted);
}

TEST(Simulation, ListsTheProtocolsItRuns) {
  std::set<std::string> names;
  for (const ProtocolSpec& p : Protocols()) names.insert(p.name);
  EXPECT_TRUE(names.count("2pc") && names.count("tcc") && names.count("saga"));
  EXPECT_EQ(FindProtocol("nope"), nullptr);
  const SimResult r = Simulate({.seed = 1, .protocol = "nope"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.violations.front().find("does not run protocol"), std::string::npos);
}

TEST(Simulation, ASeedReplaysExactly) {
  for (const ProtocolSpec& p : Protocols()) {
    for (uint64_t seed : {3u, 17u, 4242u}) {
      const SimResult a = Simulate({.seed = seed, .protocol = p.name, .trace = true});
      const SimResult b = Simulate({.seed = seed, .protocol = p.name, .trace = true});
      ASSERT_FALSE(a.trace.empty());
      EXPECT_EQ(a.trace, b.trace) << p.name << " seed " << seed;
      EXPECT_EQ(a.violations, b.violations);
      EXPECT_EQ(a.stats.events, b.stats.events);
      // Tracing observes the run; it does not change it.
      const SimResult quiet = Simulate({.seed = seed, .protocol = p.name});
      EXPECT_EQ(quiet.stats.events, a.stats.events) << p.name << " seed " << seed;
      EXPECT_TRUE(quiet.trace.empty());
    }
    const SimResult x = Simulate({.seed = 1, .protocol = p.name, .trace = true});
    const SimResult y = Simulate({.seed = 2, .protocol = p.name, .trace = true});
    EXPECT_NE(x.trace, y.trace) << "different seeds ran the same " << p.name << " simulation";
  }
}

// A short sweep per protocol: every invariant holds, and the faults the simulation claims to
// inject do happen (a simulator whose faults silently stopped would pass everything).
TEST(Simulation, ShortSweepPassesAndExercisesEveryFault) {
  for (const ProtocolSpec& p : Protocols()) {
    const SweepResult s = Sweep(p.name, 100'000, 300, /*stop_at_first=*/true);
    ASSERT_TRUE(s.ok()) << Report(s.first_failure);
    const SimStats& t = s.totals;
    SCOPED_TRACE(Summary(s));
    EXPECT_GT(t.committed, 0);
    EXPECT_GT(t.aborted, 0);
    EXPECT_GT(t.dropped, 0);
    EXPECT_GT(t.duplicated, 0);
    EXPECT_GT(t.timeouts, 0);
    EXPECT_GT(t.coordinator_crashes, 0);
    EXPECT_GT(t.participant_crashes, 0);
    EXPECT_GT(t.partitions, 0);
    EXPECT_GT(t.fsync_failures, 0);
    EXPECT_GT(t.recoveries, 0);
    if (!p.participant_timeouts) {
      EXPECT_EQ(s.partition_cases, 0) << "only a protocol whose participants decide on their "
                                         "own timeouts (3pc) has partition cases";
    }
  }
}

// 3pc's participant timeouts on the 2pc engine: a prepared participant that cannot reach the
// coordinator aborts by itself, and the coordinator may still commit. Those runs must show up as
// partition cases — counted, not failures, not hidden — while every other check still holds.
TEST(Simulation, PartitionCasesAreCountedNotHidden) {
  ProtocolSpec spec = *FindProtocol("2pc");
  spec.participant_timeouts = true;
  int cases = 0;
  for (uint64_t seed = 0; seed < 2000; ++seed) {
    const SimResult r = Simulate({.seed = seed}, spec);
    ASSERT_TRUE(r.ok()) << Report(Simulate({.seed = seed, .trace = true}, spec));
    cases += r.partition_cases;
  }
  EXPECT_GT(cases, 0);
}

TEST(Simulation, AReportNamesTheSeedAndHowToReplayIt) {
  SimResult r;
  r.seed = 77;
  r.protocol = "saga";
  r.violations.push_back("t=5ms: something broke");
  r.trace.push_back("t=0ms  seed 77");
  const std::string report = Report(r);
  EXPECT_NE(report.find("seed 77"), std::string::npos);
  EXPECT_NE(report.find("tests/simulation/run --seed 77 --protocol saga"), std::string::npos);
  EXPECT_NE(report.find("something broke"), std::string::npos);
  EXPECT_NE(report.find("t=0ms  seed 77"), std::string::npos);
}

}  // namespace
}  // namespace txcoord::simulation
