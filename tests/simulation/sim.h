// The seeded simulation of the protocol engines (tests/simulation/README.md).
//
// One run is one seed: a few transactions of one protocol, driven by the REAL engines
// (coordinator::BeginEngine / RecoverEngine) through the Engine interface, against N simulated
// participants, a simulated store (a MemoryLog that records reach only when the simulated fsync
// completes), a simulated clock and a simulated network that drops, duplicates, delays and
// reorders callbacks and replies. The coordinator crashes and restarts from its durable log,
// participants crash and restart, fsyncs fail; then a quiet phase without faults lets every
// transaction finish. Invariants are checked after every event and at the end.
//
// Everything comes from one std::mt19937_64 seeded with the seed: no wall clock, no threads, no
// unordered iteration, so a seed replays exactly. The first violation stops the run.
//
// Thread-safety: Simulate is reentrant (no globals); one run is single-threaded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace txcoord::simulation {

// Who drives the first phase of a protocol.
enum class Flow {
  kCoordinatorDriven,  // 2pc, 3pc: the coordinator calls the vote phases, then commit/abort
  kApplicationDriven,  // tcc: the application registers branches, calls Try, then commit/abort
  kSaga,               // saga: the coordinator runs actions, then compensations on failure
};

// A protocol the simulation runs. Adding one (3pc) is one entry in Protocols() once
// BeginEngine accepts it.
struct ProtocolSpec {
  std::string name = {};  // as in BeginRequest.protocol
  Flow flow = Flow::kCoordinatorDriven;
  // kCoordinatorDriven: the phases called on every branch before the decision, in order
  // ({"prepare"}; 3pc {"can-commit", "pre-commit"}). Their sends need a durable begin and no
  // durable decision.
  std::vector<std::string> vote_phases = {};
  // 3pc (contract 4): a participant that voted yes / acknowledged pre-commit and then hears
  // nothing asks the coordinator, and when it cannot reach it aborts / commits by itself. A
  // transaction whose branches then disagree is the documented partition case: counted in
  // SimResult::partition_cases, not a violation.
  bool participant_timeouts = false;
  // A single-branch transaction may commit in one phase (Tx-One-Phase); 2pc only.
  bool one_phase = false;
  // A commit is decided no later than the deadline (2pc; 3pc may commit after the pre-commit
  // deadline).
  bool commit_within_deadline = false;
};

// Every protocol the simulation runs, in a fixed order.
const std::vector<ProtocolSpec>& Protocols();
// nullptr when the simulation does not run `name`.
const ProtocolSpec* FindProtocol(const std::string& name);

struct SimConfig {
  uint64_t seed = 0;
  std::string protocol = "2pc";
  // Keep the event trace in SimResult::trace (slower; the runner re-runs a failing seed with
  // it on, which also shows that the failure reproduces).
  bool trace = false;
};

struct SimStats {
  int64_t events = 0;
  int transactions = 0;
  int committed = 0;
  int aborted = 0;
  int callbacks = 0;
  int dropped = 0;     // requests and replies lost by the network
  int duplicated = 0;  // requests delivered twice, replies delivered again
  int timeouts = 0;    // callbacks that got "no reply within the budget"
  int coordinator_crashes = 0;
  int participant_crashes = 0;
  int partitions = 0;
  int fsync_failures = 0;
  int recoveries = 0;  // engines resumed from the log (restarts and parked transactions)
  int64_t sim_time_ms = 0;
};

struct SimResult {
  uint64_t seed = 0;
  std::string protocol;
  // What went wrong, first violation first; empty when every invariant held. The run stops at
  // the first one.
  std::vector<std::string> violations = {};
  // 3pc: transactions whose branches reached different outcomes because a participant decided
  // on its own timeout while the coordinator was unreachable (the documented partition case).
  int partition_cases = 0;
  SimStats stats = {};
  std::vector<std::string> trace = {};  // with SimConfig::trace: one line per event
  bool ok() const { return violations.empty(); }
};

SimResult Simulate(const SimConfig& config);
// With a protocol description of the caller's (config.protocol is ignored): the tests run the
// 2pc engine with 3pc's participant timeouts to check that partition cases are counted.
SimResult Simulate(const SimConfig& config, const ProtocolSpec& spec);

// Seeds [first, first + count) of one protocol.
struct SweepResult {
  std::string protocol;
  uint64_t first = 0;
  uint64_t count = 0;
  int64_t runs = 0;
  std::vector<uint64_t> failing_seeds;
  int64_t partition_cases = 0;
  SimStats totals;  // summed over the runs (sim_time_ms too)
  // The first failing seed run again with its trace; `reproduced` says whether the re-run
  // failed with the same violations (it must: a seed replays exactly).
  SimResult first_failure;
  bool reproduced = true;
  bool ok() const { return failing_seeds.empty(); }
};

// Stops after the first failing seed when `stop_at_first`.
SweepResult Sweep(const std::string& protocol, uint64_t first, uint64_t count, bool stop_at_first);

// Turns off the engines' own logging (spdlog: e.g. the saga adapter's warning for a 409 to a
// compensate), which the simulation provokes on purpose thousands of times.
void SilenceEngineLogs();

// A failing run for a person: the seed, how to replay it, the violations and the trace.
std::string Report(const SimResult& result);
// One line of totals.
std::string Summary(const SweepResult& sweep);

}  // namespace txcoord::simulation
