#include "txcoord/participant/saga.h"

#include <cstdint>
#include <optional>
#include <pqxx/pqxx>
#include <set>
#include <utility>

#include "pg_errors.h"
#include "pg_pool.h"
#include "txcoord/schemas/ids.h"
#include "txcoord/schemas/json.h"

namespace txcoord::participant {
namespace {

// nullopt when ctx.phase is one a saga step serves; otherwise the answer to the caller's bug.
std::optional<BarrierResult> WrongPhase(const CallbackContext& ctx, Phase expected) {
  if (ctx.phase == expected) return std::nullopt;
  return BarrierResult{
      BarrierResult::Path::kFailed,
      PhaseResult::Failed("saga step called for phase " + std::string(PhaseName(ctx.phase)) +
                          " as its " + std::string(PhaseName(expected)))};
}

bool IsStepPhase(Phase phase) { return phase == Phase::kAction || phase == Phase::kCompensate; }

BarrierResult NotAStepPhase(const CallbackContext& ctx) {
  return {BarrierResult::Path::kFailed,
          PhaseResult::Failed("a saga step has no phase " + std::string(PhaseName(ctx.phase)))};
}

}  // namespace

// ---- SqliteSagaStep

SqliteSagaStep::SqliteSagaStep(sqlite3* db, SqliteStepWork action, SqliteStepWork compensate,
                               std::mutex* db_mutex)
    : db_(db),
      action_(std::move(action)),
      compensate_(std::move(compensate)),
      mutex_(db_mutex != nullptr ? db_mutex : &own_mutex_) {}

SqliteSagaStep::SqliteSagaStep(SqliteCommitGroup& group, SqliteStepWork action,
                               SqliteStepWork compensate)
    : db_(nullptr),
      group_(&group),
      action_(std::move(action)),
      compensate_(std::move(compensate)),
      mutex_(&own_mutex_) {}

BarrierResult SqliteSagaStep::Run(const CallbackContext& ctx) {
  if (!IsStepPhase(ctx.phase)) return NotAStepPhase(ctx);
  const SqliteStepWork& work = ctx.phase == Phase::kAction ? action_ : compensate_;
  if (!work) {
    return {
        BarrierResult::Path::kFailed,
        PhaseResult::Failed("saga step has no " + std::string(PhaseName(ctx.phase)) + " function")};
  }
  const SqliteBusiness business = [&](sqlite3* db) { return work(db, ctx); };
  if (group_ != nullptr) return group_->Run(ctx, business);
  std::lock_guard lock(*mutex_);
  return Barrier::RunInTransaction(db_, ctx, business);
}

PhaseResult SqliteSagaStep::Action(const CallbackContext& ctx) {
  if (auto wrong = WrongPhase(ctx, Phase::kAction)) return *wrong;
  return Run(ctx);
}

PhaseResult SqliteSagaStep::Compensate(const CallbackContext& ctx) {
  if (auto wrong = WrongPhase(ctx, Phase::kCompensate)) return *wrong;
  return Run(ctx);
}

// ---- PgSagaStep

Result<std::unique_ptr<PgSagaStep>> PgSagaStep::Open(PgSagaStepOptions options, PgStepWork action,
                                                     PgStepWork compensate) {
  if (!action || !compensate) {
    return Status::InvalidArgument("PgSagaStep needs both an action and a compensate function");
  }
  std::unique_ptr<PgSagaStep> step(
      new PgSagaStep(std::move(options), std::move(action), std::move(compensate)));
  Result<std::unique_ptr<pqxx::connection>> conn = step->pool_->Connect();
  if (!conn.ok()) return conn.status();
  try {
    pqxx::work tx(**conn);
    TXCOORD_RETURN_IF_ERROR(Barrier::EnsureSchema(tx));
    tx.commit();
  } catch (const std::exception& e) {
    return internal::PgStatus("create the saga step's barrier table", e);
  }
  step->pool_->Put(std::move(*conn));
  return step;
}

PgSagaStep::PgSagaStep(PgSagaStepOptions options, PgStepWork action, PgStepWork compensate)
    : action_(std::move(action)),
      compensate_(std::move(compensate)),
      pool_(std::make_unique<internal::PgPool>(
          internal::PgPoolOptions{.conninfo = std::move(options.conninfo),
                                  .lock_timeout = options.lock_timeout,
                                  .statement_timeout = options.statement_timeout,
                                  .max_idle_connections = options.max_idle_connections,
                                  .what = "the saga step's PostgreSQL database"})) {}

PgSagaStep::~PgSagaStep() = default;

BarrierResult PgSagaStep::Run(const CallbackContext& ctx) {
  if (!IsStepPhase(ctx.phase)) return NotAStepPhase(ctx);
  const PgStepWork& work = ctx.phase == Phase::kAction ? action_ : compensate_;
  Result<std::unique_ptr<pqxx::connection>> conn = pool_->Take();
  if (!conn.ok()) {
    return {BarrierResult::Path::kFailed,
            PhaseResult::FromStatus(conn.status().WithContext(std::string(PhaseName(ctx.phase)) +
                                                              " of step " + ctx.branch_id))};
  }
  BarrierResult result = Barrier::RunInTransaction(
      **conn, ctx, [&](pqxx::transaction_base& tx) { return work(tx, ctx); });
  // RunInTransaction leaves no transaction open; a connection that broke is not reused.
  if ((*conn)->is_open()) pool_->Put(std::move(*conn));
  return result;
}

PhaseResult PgSagaStep::Action(const CallbackContext& ctx) {
  if (auto wrong = WrongPhase(ctx, Phase::kAction)) return *wrong;
  return Run(ctx);
}

PhaseResult PgSagaStep::Compensate(const CallbackContext& ctx) {
  if (auto wrong = WrongPhase(ctx, Phase::kCompensate)) return *wrong;
  return Run(ctx);
}

// ---- Saga

Saga::Saga(CoordinatorClient& client, std::string gtid) : client_(client) {
  request_.set_protocol("saga");
  if (!gtid.empty()) {
    if (Status st = ValidateId("gtid", gtid); !st.ok()) error_ = st.WithContext("saga");
  }
  request_.set_gtid(std::move(gtid));
}

Saga& Saga::Step(std::string step_id, std::string action_url, std::string compensate_url,
                 google::protobuf::Value payload, std::vector<std::string> depends_on) {
  if (error_.ok()) {
    const std::string what = "saga step \"" + PrintableForMessage(step_id, 130) + "\"";
    if (Status st = ValidateId("step_id", step_id); !st.ok()) {
      error_ = st.WithContext(what);
    } else if (action_url.empty() || compensate_url.empty()) {
      error_ = Status::InvalidArgument(what + ": action and compensate urls must not be empty");
    } else {
      for (const v1::Step& step : request_.steps()) {
        if (step.step_id() == step_id) {
          error_ = Status::InvalidArgument(what + " is added twice");
          break;
        }
      }
    }
  }
  v1::Step* step = request_.add_steps();
  step->set_step_id(std::move(step_id));
  step->set_action(std::move(action_url));
  step->set_compensate(std::move(compensate_url));
  *step->mutable_payload() = std::move(payload);
  for (std::string& dependency : depends_on) step->add_depends_on(std::move(dependency));
  return *this;
}

Saga& Saga::Step(std::string step_id, std::string action_url, std::string compensate_url,
                 std::string_view payload_json, std::vector<std::string> depends_on) {
  google::protobuf::Value payload;
  if (Status st = JsonToMessage(payload_json, &payload); !st.ok() && error_.ok()) {
    error_ = Status::InvalidArgument("saga step \"" + PrintableForMessage(step_id, 130) +
                                     "\": the payload is not JSON: " + st.message());
  }
  return Step(std::move(step_id), std::move(action_url), std::move(compensate_url),
              std::move(payload), std::move(depends_on));
}

Saga& Saga::Timeout(std::chrono::milliseconds timeout) {
  if (timeout.count() < 0 || timeout.count() > INT32_MAX) {
    if (error_.ok()) {
      error_ = Status::InvalidArgument("saga timeout must be 0 to 2^31-1 ms, not " +
                                       std::to_string(timeout.count()));
    }
  } else {
    request_.set_timeout_ms(static_cast<int32_t>(timeout.count()));
  }
  return *this;
}

namespace {

// A duration in the int32 milliseconds of the contract, or nullopt when outside 0..2^31-1.
std::optional<int32_t> ContractMs(std::chrono::milliseconds ms) {
  if (ms.count() < 0 || ms.count() > INT32_MAX) return std::nullopt;
  return static_cast<int32_t>(ms.count());
}

}  // namespace

v1::Step* Saga::FindStep(std::string_view step_id, std::string_view option) {
  for (v1::Step& step : *request_.mutable_steps()) {
    if (step.step_id() == step_id) return &step;
  }
  if (error_.ok()) {
    error_ = Status::InvalidArgument(std::string(option) + " for an unknown saga step \"" +
                                     PrintableForMessage(step_id, 130) + "\"; add the step first");
  }
  return nullptr;
}

Saga& Saga::StepTimeout(std::string_view step_id, std::chrono::milliseconds timeout) {
  v1::Step* step = FindStep(step_id, "a timeout");
  if (step == nullptr) return *this;
  const std::optional<int32_t> ms = ContractMs(timeout);
  if (!ms && error_.ok()) {
    error_ = Status::InvalidArgument("saga step \"" + step->step_id() +
                                     "\": timeout must be 0 to 2^31-1 ms");
  }
  if (ms) step->set_timeout_ms(*ms);
  return *this;
}

Saga& Saga::StepRetry(std::string_view step_id, std::chrono::milliseconds initial,
                      std::chrono::milliseconds max, int max_attempts) {
  v1::Step* step = FindStep(step_id, "a retry policy");
  if (step == nullptr) return *this;
  const std::optional<int32_t> initial_ms = ContractMs(initial);
  const std::optional<int32_t> max_ms = ContractMs(max);
  if ((!initial_ms || !max_ms || max_attempts < 0) && error_.ok()) {
    error_ = Status::InvalidArgument("saga step \"" + step->step_id() +
                                     "\": retry delays must be 0 to 2^31-1 ms and max_attempts "
                                     "not negative");
  }
  if (initial_ms && max_ms && max_attempts >= 0) {
    step->mutable_retry()->set_initial_ms(*initial_ms);
    step->mutable_retry()->set_max_ms(*max_ms);
    step->mutable_retry()->set_max_attempts(max_attempts);
  }
  return *this;
}

Result<v1::BeginRequest> Saga::Build() const {
  TXCOORD_RETURN_IF_ERROR(error_);
  if (request_.steps().empty()) return Status::InvalidArgument("a saga needs at least one step");
  std::set<std::string> ids;
  for (const v1::Step& step : request_.steps()) ids.insert(step.step_id());
  for (const v1::Step& step : request_.steps()) {
    for (const std::string& dependency : step.depends_on()) {
      if (!ids.contains(dependency)) {
        return Status::InvalidArgument("saga step \"" + step.step_id() +
                                       "\" depends on an unknown step \"" +
                                       PrintableForMessage(dependency, 130) + "\"");
      }
    }
  }
  return request_;
}

Result<TransactionReply> Saga::Submit(bool wait, const CallOptions& call) const {
  Result<v1::BeginRequest> request = Build();
  if (!request.ok()) return request.status();
  request->set_wait(wait);
  return client_.Begin(*request, call);
}

}  // namespace txcoord::participant
