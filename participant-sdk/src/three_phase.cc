#include "txcoord/participant/three_phase.h"

#include <set>

namespace txcoord::participant {
namespace {

using Clock = std::chrono::steady_clock;

std::string Ms(std::chrono::milliseconds d) { return std::to_string(d.count()) + " ms"; }

PhaseResult Call(BranchHandler& handler, const CallbackContext& ctx) {
  try {
    return ctx.phase == Phase::kCommit ? handler.Commit(ctx) : handler.Abort(ctx);
  } catch (const std::exception& e) {
    return PhaseResult::Failed(std::string("handler threw: ") + e.what());
  } catch (...) {
    return PhaseResult::Failed("handler threw a non-standard exception");
  }
}

}  // namespace

std::string_view TerminationAnswerName(TerminationAnswer answer) {
  switch (answer) {
    case TerminationAnswer::kCommit:
      return "commit";
    case TerminationAnswer::kAbort:
      return "abort";
    case TerminationAnswer::kUndecided:
      return "undecided";
  }
  return "unknown";
}

TerminationAnswer AnswerForState(std::string_view state) {
  if (state == "committed" || state == "committing" || state == "pre-committing") {
    return TerminationAnswer::kCommit;
  }
  if (state == "aborted" || state == "aborting") return TerminationAnswer::kAbort;
  return TerminationAnswer::kUndecided;
}

std::string_view TimeoutActionName(TimeoutEvent::Action action) {
  switch (action) {
    case TimeoutEvent::Action::kCommitted:
      return "committed";
    case TimeoutEvent::Action::kAborted:
      return "aborted";
    case TimeoutEvent::Action::kWaiting:
      return "waiting";
    case TimeoutEvent::Action::kRetrying:
      return "retrying";
    case TimeoutEvent::Action::kDropped:
      return "dropped";
  }
  return "unknown";
}

Result<TerminationAnswer> CoordinatorTerminationQuery::Ask(const std::string& gtid) {
  CallOptions call;
  call.timeout = timeout_;
  Result<v1::Transaction> tx = client_.Get(gtid, call);
  if (tx.ok()) return AnswerForState(tx->state());
  // The coordinator forgets a transaction only once every branch acknowledged its outcome, so a
  // branch in doubt that it does not know was never committed: presumed abort (contract 4).
  if (tx.status().code() == StatusCode::kNotFound) return TerminationAnswer::kAbort;
  return tx.status();
}

ThreePhaseKeeper::ThreePhaseKeeper(BranchHandler& handler, TerminationQuery* query,
                                   ThreePhaseOptions options, ThreePhaseClock clock)
    : handler_(handler),
      query_(query),
      options_(options),
      clock_(clock ? std::move(clock) : ThreePhaseClock([] { return Clock::now(); })) {}

ThreePhaseKeeper::~ThreePhaseKeeper() { Stop(); }

void ThreePhaseKeeper::VotedYes(const CallbackContext& ctx) {
  Arm(ctx, TimeoutEvent::Stage::kVotedYes, /*keep_pre_committed=*/true);
}

void ThreePhaseKeeper::PreCommitted(const CallbackContext& ctx) {
  Arm(ctx, TimeoutEvent::Stage::kPreCommitted, /*keep_pre_committed=*/false);
}

void ThreePhaseKeeper::Arm(const CallbackContext& ctx, TimeoutEvent::Stage stage,
                           bool keep_pre_committed) {
  const auto now = clock_();
  {
    std::lock_guard lock(mu_);
    const Key key(ctx.gtid, ctx.branch_id);
    if (resolved_.count(key) != 0) return;  // a duplicate delivered after the outcome
    Entry& e = entries_[key];
    if (keep_pre_committed && e.generation != 0 && e.stage == TimeoutEvent::Stage::kPreCommitted) {
      return;  // a duplicate can-commit after the pre-commit: the later stage stands
    }
    e.ctx = ctx;
    e.ctx.one_phase = false;
    e.stage = stage;
    e.due = now + (stage == TimeoutEvent::Stage::kVotedYes ? options_.can_commit_timeout
                                                           : options_.pre_commit_timeout);
    e.generation = next_generation_++;
  }
  wake_.notify_all();
}

void ThreePhaseKeeper::Resolved(const std::string& gtid, const std::string& branch_id) {
  std::lock_guard lock(mu_);
  const Key key(gtid, branch_id);
  entries_.erase(key);
  RememberResolved(key);
}

void ThreePhaseKeeper::RememberResolved(const Key& key) {
  if (!resolved_.insert(key).second) return;
  resolved_order_.push_back(key);
  if (resolved_order_.size() > kRememberedResolved) {
    resolved_.erase(resolved_order_.front());
    resolved_order_.pop_front();
  }
}

void ThreePhaseKeeper::Resume(const ThreePhaseInDoubt& branch) {
  CallbackContext ctx;
  ctx.gtid = branch.gtid;
  ctx.branch_id = branch.branch_id;
  ctx.payload.set_null_value(google::protobuf::NULL_VALUE);
  ctx.payload_json = "null";
  {
    std::lock_guard lock(mu_);
    if (entries_.count(Key(branch.gtid, branch.branch_id)) != 0) return;  // a callback was first
  }
  Arm(ctx,
      branch.pre_committed ? TimeoutEvent::Stage::kPreCommitted : TimeoutEvent::Stage::kVotedYes,
      /*keep_pre_committed=*/true);
}

TimeoutEvent ThreePhaseKeeper::Act(const Entry& entry) {
  TimeoutEvent ev;
  ev.gtid = entry.ctx.gtid;
  ev.branch_id = entry.ctx.branch_id;
  ev.stage = entry.stage;
  const bool pre_committed = entry.stage == TimeoutEvent::Stage::kPreCommitted;
  ev.why = pre_committed
               ? "acknowledged pre-commit and heard nothing for " + Ms(options_.pre_commit_timeout)
               : "voted yes and heard nothing for " + Ms(options_.can_commit_timeout);

  bool commit = pre_committed;  // the contract's timeout rule
  Result<TerminationAnswer> answer =
      query_ != nullptr ? query_->Ask(ev.gtid)
                        : Result<TerminationAnswer>(Status::Unavailable("no termination query"));
  if (answer.ok()) {
    ev.asked = true;
    if (*answer == TerminationAnswer::kUndecided) {
      ev.action = TimeoutEvent::Action::kWaiting;
      ev.why += "; the coordinator has not decided yet: asking again later";
      return ev;
    }
    commit = *answer == TerminationAnswer::kCommit;
    ev.why += "; the coordinator says " + std::string(TerminationAnswerName(*answer));
  } else if (options_.termination_query_required) {
    ev.action = TimeoutEvent::Action::kWaiting;
    ev.why += "; the coordinator cannot be asked (" + answer.status().message() +
              ") and the termination query is required: waiting";
    return ev;
  } else {
    ev.why += "; the coordinator cannot be asked (" + answer.status().message() +
              "): " + (commit ? "commit" : "abort") + " by the timeout rule";
  }

  CallbackContext ctx = entry.ctx;
  ctx.phase = commit ? Phase::kCommit : Phase::kAbort;
  ctx.attempt = 1;
  ctx.one_phase = false;
  const PhaseResult result = Call(handler_, ctx);
  if (result.done()) {
    ev.action = commit ? TimeoutEvent::Action::kCommitted : TimeoutEvent::Action::kAborted;
  } else if (result.kind() == PhaseResult::Kind::kRefused) {
    ev.action = TimeoutEvent::Action::kDropped;
    ev.why += "; the local " + std::string(commit ? "commit" : "abort") +
              " was refused: " + result.message();
  } else {
    ev.action = TimeoutEvent::Action::kRetrying;
    ev.why +=
        "; the local " + std::string(commit ? "commit" : "abort") + " failed: " + result.ToString();
  }
  return ev;
}

std::vector<TimeoutEvent> ThreePhaseKeeper::RunDue() {
  std::vector<TimeoutEvent> events;
  std::set<Key> visited;  // each branch once per call, whatever its next due time
  for (;;) {
    const auto now = clock_();
    Entry entry;
    Key key;
    {
      std::lock_guard lock(mu_);
      auto it = entries_.begin();
      for (; it != entries_.end(); ++it) {
        if (!it->second.acting && it->second.due <= now && visited.count(it->first) == 0) break;
      }
      if (it == entries_.end()) break;
      it->second.acting = true;
      key = it->first;
      entry = it->second;
    }
    visited.insert(key);
    TimeoutEvent ev = Act(entry);
    {
      std::lock_guard lock(mu_);
      auto it = entries_.find(key);
      if (it != entries_.end()) {
        const bool changed = it->second.generation != entry.generation;
        const bool finished = ev.action == TimeoutEvent::Action::kCommitted ||
                              ev.action == TimeoutEvent::Action::kAborted;
        if (finished || (ev.action == TimeoutEvent::Action::kDropped && !changed)) {
          entries_.erase(it);
          if (finished) RememberResolved(key);
        } else {
          it->second.acting = false;
          if (!changed) it->second.due = clock_() + options_.recheck_interval;
        }
      }
    }
    if (observer_) observer_(ev);
    events.push_back(std::move(ev));
  }
  return events;
}

std::optional<std::chrono::steady_clock::time_point> ThreePhaseKeeper::NextDue() const {
  std::lock_guard lock(mu_);
  std::optional<Clock::time_point> next;
  for (const auto& [key, e] : entries_) {
    if (!next || e.due < *next) next = e.due;
  }
  return next;
}

size_t ThreePhaseKeeper::pending() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

bool ThreePhaseKeeper::Pending(const std::string& gtid, const std::string& branch_id) const {
  std::lock_guard lock(mu_);
  return entries_.count(Key(gtid, branch_id)) != 0;
}

void ThreePhaseKeeper::SetObserver(std::function<void(const TimeoutEvent&)> observer) {
  observer_ = std::move(observer);
}

void ThreePhaseKeeper::Start(std::chrono::milliseconds poll) {
  std::lock_guard lock(mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this, poll] {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      std::optional<Clock::time_point> next;
      for (const auto& [key, e] : entries_) {
        if (!e.acting && (!next || e.due < *next)) next = e.due;
      }
      const auto now = clock_();
      if (!next || *next > now) {
        const auto wait =
            next ? std::min<Clock::duration>(*next - now, poll) : Clock::duration(poll);
        wake_.wait_for(lock, wait);
        continue;
      }
      lock.unlock();
      RunDue();
      lock.lock();
    }
  });
}

void ThreePhaseKeeper::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

PhaseResult ThreePhaseHandler::CanCommit(const CallbackContext& ctx) {
  PhaseResult result = inner_.CanCommit(ctx);
  if (result.done()) keeper_.VotedYes(ctx);
  return result;
}

PhaseResult ThreePhaseHandler::PreCommit(const CallbackContext& ctx) {
  PhaseResult result = inner_.PreCommit(ctx);
  if (result.done()) keeper_.PreCommitted(ctx);
  return result;
}

PhaseResult ThreePhaseHandler::Commit(const CallbackContext& ctx) {
  PhaseResult result = inner_.Commit(ctx);
  if (result.done()) keeper_.Resolved(ctx.gtid, ctx.branch_id);
  return result;
}

PhaseResult ThreePhaseHandler::Abort(const CallbackContext& ctx) {
  PhaseResult result = inner_.Abort(ctx);
  if (result.done()) keeper_.Resolved(ctx.gtid, ctx.branch_id);
  return result;
}

}  // namespace txcoord::participant
