// The participant's side of 3pc timeouts (contract section 4; docs/3pc.md):
//
//   voted yes on can-commit, then heard nothing before can_commit_timeout  -> abort on its own
//   acknowledged pre-commit, then heard nothing before pre_commit_timeout  -> commit on its own
//
// and, before acting on either, the termination query: GET /v1/transactions/{gtid}. When the
// coordinator answers, its answer wins (committed, committing, pre-committing: commit; aborted,
// aborting, 404: abort; can-committing: it is alive and will decide, so wait and ask again).
// Only when it cannot be asked does the participant act on the timeout rule above — unless
// `termination_query_required` is set, and then it waits until the coordinator can be asked.
//
// Why that option exists. A participant cut off from the coordinator cannot tell a crashed
// coordinator from a partition. With the rule alone, a branch that voted yes and then lost its
// link aborts while the coordinator, past its pre-commit deadline, commits the others: the
// inconsistent outcome 3PC is known for (tests/integration/three_phase_partition_test.cc shows
// it). Requiring the termination query removes it, at the price of blocking while the
// coordinator is unreachable, which is what 2pc does anyway.
//
// The pieces:
//   ThreePhaseKeeper   the timers of the branches that voted yes here, and what to do when one
//                      fires; an injected clock for tests, a background thread for services.
//   ThreePhaseHandler  a BranchHandler that forwards to the application's handler and tells the
//                      keeper about each successful phase. The keeper's own commit and abort go
//                      to the application's handler directly, behind the same barrier.
//   TerminationQuery   how the keeper asks; CoordinatorTerminationQuery asks over
//                      CoordinatorClient::Get.
//
// After a restart the timers are gone: hand the branches still in doubt to Resume
// (ListThreePhaseInDoubt in barrier.h, PgPreparedAdapter::ListThreePhaseInDoubt). Their timers
// start again from the time of Resume, and their context has no payload (a null Value), so the
// application's Commit and Abort of a 3pc branch must work from what its can-commit stored (the
// bank example reads its `holds` row).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "txcoord/participant/barrier.h"
#include "txcoord/participant/client.h"
#include "txcoord/participant/handler.h"
#include "txcoord/status.h"

namespace txcoord::participant {

// The coordinator's answer to the termination query.
enum class TerminationAnswer {
  kCommit,     // committed, committing, or pre-committing (all voted yes: the outcome is commit)
  kAbort,      // aborted, aborting, or not found (404: presumed abort)
  kUndecided,  // can-committing (or any other state): the coordinator will decide; wait
};
std::string_view TerminationAnswerName(TerminationAnswer answer);

// The answer a transaction state gives.
TerminationAnswer AnswerForState(std::string_view state);

class TerminationQuery {
 public:
  virtual ~TerminationQuery() = default;
  // The coordinator's answer, or an error when it could not be asked (unreachable, 5xx, 401).
  virtual Result<TerminationAnswer> Ask(const std::string& gtid) = 0;
};

// GET /v1/transactions/{gtid} through `client` (which must outlive it). Thread-safe.
class CoordinatorTerminationQuery final : public TerminationQuery {
 public:
  explicit CoordinatorTerminationQuery(CoordinatorClient& client,
                                       std::chrono::milliseconds timeout = std::chrono::seconds(2))
      : client_(client), timeout_(timeout) {}
  Result<TerminationAnswer> Ask(const std::string& gtid) override;

 private:
  CoordinatorClient& client_;
  const std::chrono::milliseconds timeout_;
};

struct ThreePhaseOptions {
  // How long a branch that voted yes waits for pre-commit (or an outcome) before it acts. Make
  // it longer than the transactions' timeout_ms, which bounds the coordinator's can-commit
  // round, or branches will ask (or abort) while the others are still voting.
  std::chrono::milliseconds can_commit_timeout{30'000};
  // How long a branch that acknowledged pre-commit waits for the outcome before it acts. The
  // coordinator decides commit at the latest timeout_ms after its pre_commit record.
  std::chrono::milliseconds pre_commit_timeout{30'000};
  // The wait before asking again after the coordinator said "undecided", could not be asked
  // while the query is required, or the local commit/abort failed transiently.
  std::chrono::milliseconds recheck_interval{1'000};
  // Never act on a timeout without the coordinator's answer: blocks while it is unreachable,
  // and avoids 3PC's inconsistent outcome under a partition (see above).
  bool termination_query_required = false;
};

// What the keeper did when a timer fired.
struct TimeoutEvent {
  enum class Stage { kVotedYes, kPreCommitted };
  enum class Action {
    kCommitted,  // ran the application's Commit: Done
    kAborted,    // ran the application's Abort: Done
    kWaiting,    // asked again later (undecided, or unreachable with the query required)
    kRetrying,   // the local commit/abort failed transiently; tried again later
    kDropped,    // the local commit/abort was refused (409): the branch already has another
                 // state here (finished, or moved on meanwhile); the keeper forgets it
  };
  std::string gtid;
  std::string branch_id;
  Stage stage = Stage::kVotedYes;
  Action action = Action::kWaiting;
  bool asked = false;  // the coordinator answered the termination query
  std::string why;     // one line for a log: what was asked, what came back, what was done
};
std::string_view TimeoutActionName(TimeoutEvent::Action action);

using ThreePhaseClock = std::function<std::chrono::steady_clock::time_point()>;

// Thread-safe. The handler's Commit/Abort run without the keeper's lock held, so they may call
// back into the keeper (ThreePhaseHandler does).
class ThreePhaseKeeper {
 public:
  // `handler` does the local commit and abort (behind its barrier) and `query` asks the
  // coordinator; both must outlive the keeper. `query` may be null: then every timeout acts on
  // the rule alone, or, with termination_query_required, waits forever. `clock` defaults to
  // std::chrono::steady_clock::now.
  ThreePhaseKeeper(BranchHandler& handler, TerminationQuery* query, ThreePhaseOptions options,
                   ThreePhaseClock clock = nullptr);
  ~ThreePhaseKeeper();  // stops the thread

  ThreePhaseKeeper(const ThreePhaseKeeper&) = delete;
  ThreePhaseKeeper& operator=(const ThreePhaseKeeper&) = delete;

  // The branch voted yes (its can-commit answered 2xx): arms the can-commit timer, unless the
  // branch is known to be pre-committed already (a duplicate can-commit changes nothing).
  void VotedYes(const CallbackContext& ctx);
  // The branch acknowledged pre-commit: (re-)arms the pre-commit timer.
  void PreCommitted(const CallbackContext& ctx);
  // Commit or abort ran for the branch: its timer is gone.
  void Resolved(const std::string& gtid, const std::string& branch_id);
  // After a restart: a branch still in doubt, its timer counted from now.
  void Resume(const ThreePhaseInDoubt& branch);

  // Acts on every timer that is due by the clock, one branch at a time, and returns what it did.
  std::vector<TimeoutEvent> RunDue();
  // When the next timer is due; nullopt when none is armed.
  std::optional<std::chrono::steady_clock::time_point> NextDue() const;
  // Branches with an armed timer.
  size_t pending() const;
  bool Pending(const std::string& gtid, const std::string& branch_id) const;

  // Called with every event RunDue produces (from the thread that ran it). Set before Start.
  void SetObserver(std::function<void(const TimeoutEvent&)> observer);
  // A background thread that runs RunDue when a timer is due (and at least every `poll`).
  // Idempotent; Stop joins it.
  void Start(std::chrono::milliseconds poll = std::chrono::milliseconds(200));
  void Stop();

 private:
  struct Entry {
    CallbackContext ctx;  // as the can-commit or pre-commit came (phase aside); payload kept
    TimeoutEvent::Stage stage = TimeoutEvent::Stage::kVotedYes;
    std::chrono::steady_clock::time_point due;
    uint64_t generation = 0;  // bumped by every hook, so RunDue sees a change made meanwhile
    bool acting = false;      // RunDue is working on it outside the lock
  };
  using Key = std::pair<std::string, std::string>;  // gtid, branch_id

  void Arm(const CallbackContext& ctx, TimeoutEvent::Stage stage, bool keep_pre_committed);
  TimeoutEvent Act(const Entry& entry);
  void RememberResolved(const Key& key);  // REQUIRES(mu_)

  // How many recently resolved branches are remembered, so that a can-commit or pre-commit
  // repeated after the branch's commit or abort (a duplicate delivery) arms no timer: the
  // timer would ask about a transaction the coordinator may have forgotten by then.
  static constexpr size_t kRememberedResolved = 4096;

  BranchHandler& handler_;
  TerminationQuery* const query_;
  const ThreePhaseOptions options_;
  const ThreePhaseClock clock_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::map<Key, Entry> entries_;    // GUARDED_BY(mu_)
  std::set<Key> resolved_;          // GUARDED_BY(mu_)
  std::deque<Key> resolved_order_;  // GUARDED_BY(mu_); oldest first
  uint64_t next_generation_ = 1;    // GUARDED_BY(mu_)
  std::function<void(const TimeoutEvent&)> observer_;
  bool stopping_ = false;  // GUARDED_BY(mu_)
  std::thread thread_;
};

// Forwards every phase to `inner` and reports each success to `keeper`: can-commit (a yes vote),
// pre-commit, commit and abort. Serve this at the 3pc base path; give the keeper `inner`.
class ThreePhaseHandler final : public BranchHandler {
 public:
  ThreePhaseHandler(BranchHandler& inner, ThreePhaseKeeper& keeper)
      : inner_(inner), keeper_(keeper) {}

  PhaseResult Prepare(const CallbackContext& ctx) override { return inner_.Prepare(ctx); }
  PhaseResult Commit(const CallbackContext& ctx) override;
  PhaseResult Abort(const CallbackContext& ctx) override;
  PhaseResult CanCommit(const CallbackContext& ctx) override;
  PhaseResult PreCommit(const CallbackContext& ctx) override;

 private:
  BranchHandler& inner_;
  ThreePhaseKeeper& keeper_;
};

}  // namespace txcoord::participant
