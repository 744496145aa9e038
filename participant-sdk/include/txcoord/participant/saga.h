// Sagas on the participant side (contract sections 2 to 4, protocol "saga"): step handlers whose
// business runs behind the barrier, and a builder that starts a saga through the coordinator.
//
// A step's two business functions, behind the barrier (barrier.h), each in one local transaction
// of the participant's own database together with the barrier's row:
//
//   delivered     before                       does                                  answers
//   action        nothing                      action(); recorded done               200
//                                              action() refused: its changes rolled
//                                              back, the refusal recorded            409
//   action        done / refused               nothing (repeat)                      200 / 409
//   action        null compensation (no action
//                 had run)                     nothing: a late action is refused     409
//   action        done, then compensated       nothing: the repeat is refused        409
//   compensate    action done                  compensate(); recorded                200
//   compensate    no action, or it refused     nothing; recorded as null, and the
//                                              late action is blocked                200
//   compensate    compensated                  nothing (repeat)                      200
//
// So the business functions see each step at most once per phase, compensate() runs only after
// a successful action() (never for a refused or missing one), and an action never runs after its
// compensation (a late first delivery is refused, and so is a duplicate of one that ran).
// A business function returns OK, or kConflict / kAlreadyExists for a business refusal (only
// meaningful from action(): the saga turns to compensation), or another code for "could not do it
// now" (503, rolled back, retried by the coordinator). compensate() should not refuse: a refused
// compensation is answered 409, which the coordinator logs as a participant bug and retries
// forever.
//
//   SqliteSagaStep reserve(db, ReserveCredit, ReleaseCredit, &db_mutex);
//   server.AddSagaStep("/credit/reserve", "/credit/release", &reserve);
//
//   Result<TransactionReply> r = Saga(client, "order-42")
//       .Step("reserve-credit", customers + "/credit/reserve", customers + "/credit/release",
//             R"({"customer": "c-17", "amount": 30})")
//       .Step("create-order", orders + "/orders/create", orders + "/orders/cancel",
//             R"({"order": "order-42"})", {"reserve-credit"})
//       .Timeout(std::chrono::seconds(10))
//       .Submit(/*wait=*/true);
#pragma once

#include <google/protobuf/struct.pb.h>
#include <sqlite3.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <pqxx/connection>
#include <pqxx/transaction_base>
#include <string>
#include <string_view>
#include <vector>

#include "txcoord/participant/barrier.h"
#include "txcoord/participant/client.h"
#include "txcoord/participant/commit_group.h"
#include "txcoord/participant/handler.h"
#include "txcoord/status.h"
#include "txcoord/v1/api.pb.h"

namespace txcoord::participant {

namespace internal {
class PgPool;  // src/pg_pool.h
}  // namespace internal

// A step's business change in the open transaction; ctx carries the step's payload.
using SqliteStepWork = std::function<Status(sqlite3* db, const CallbackContext& ctx)>;
using PgStepWork = std::function<Status(pqxx::transaction_base& tx, const CallbackContext& ctx)>;

// A saga step on SQLite: Action runs `action` and Compensate runs `compensate` behind the
// barrier, each with Barrier::RunInTransaction (BEGIN IMMEDIATE ... COMMIT) on `db`, or, with
// the second constructor, through a SqliteCommitGroup (commit_group.h): concurrent steps then
// share one transaction and one fsync, with the same answers. Several steps of one service may
// share one group (and so one connection); the group's rules for the connection apply.
//
// Thread-safety: Action and Compensate may be called from any thread concurrently. A SQLite
// connection runs one transaction at a time, so every call holds a mutex for its whole
// transaction: `db_mutex` when given, which the application must then hold for every other use
// of `db` (so that its statements never land inside a step's transaction, nor the step's in
// its); otherwise one of the step's own, and `db` must not be used by anyone else while the step
// lives. Other connections to the same file are fine: SQLite's database lock orders them (set
// sqlite3_busy_timeout on each). `db` (and `db_mutex`) must outlive the step.
class SqliteSagaStep final : public SagaStepHandler {
 public:
  SqliteSagaStep(sqlite3* db, SqliteStepWork action, SqliteStepWork compensate,
                 std::mutex* db_mutex = nullptr);
  // `group` must outlive the step.
  SqliteSagaStep(SqliteCommitGroup& group, SqliteStepWork action, SqliteStepWork compensate);

  // 500 when ctx.phase is not kAction (resp. kCompensate): a caller's bug, nothing runs.
  PhaseResult Action(const CallbackContext& ctx) override;
  PhaseResult Compensate(const CallbackContext& ctx) override;

  // The barrier's full result (what ran, and the reply), e.g. for tests and logs.
  BarrierResult Run(const CallbackContext& ctx);

 private:
  sqlite3* const db_;  // null with a group
  SqliteCommitGroup* const group_ = nullptr;
  const SqliteStepWork action_;
  const SqliteStepWork compensate_;
  std::mutex own_mutex_;
  std::mutex* const mutex_;  // db_mutex or &own_mutex_
};

struct PgSagaStepOptions {
  // libpq connection string of the participant's own database.
  std::string conninfo = {};
  // Bound every wait for a row lock and every statement (the business's included); past them the
  // call is answered 503 and the coordinator retries.
  std::chrono::milliseconds lock_timeout{5000};
  std::chrono::milliseconds statement_timeout{30000};
  // Connections kept open for reuse.
  size_t max_idle_connections = 8;
};

// A saga step on PostgreSQL: Action and Compensate run the business functions behind the
// barrier, each with Barrier::RunInTransaction in a pqxx::work (READ COMMITTED) on a pooled
// connection. Two deliveries of the same phase at once run the business once: the second waits
// for the first's barrier row (see barrier.h, "Concurrency").
//
// Thread-safety: Action and Compensate may be called from any thread concurrently; each call uses
// a connection of its own from the pool (a connection that failed is closed, not reused).
class PgSagaStep final : public SagaStepHandler {
 public:
  // Connects once and creates txcoord_barrier when absent. kUnavailable when the database cannot
  // be reached (the message never holds the conninfo); kInvalidArgument for an empty function.
  static Result<std::unique_ptr<PgSagaStep>> Open(PgSagaStepOptions options, PgStepWork action,
                                                  PgStepWork compensate);
  ~PgSagaStep() override;

  PgSagaStep(const PgSagaStep&) = delete;
  PgSagaStep& operator=(const PgSagaStep&) = delete;

  // 500 when ctx.phase is not kAction (resp. kCompensate): a caller's bug, nothing runs.
  PhaseResult Action(const CallbackContext& ctx) override;
  PhaseResult Compensate(const CallbackContext& ctx) override;

  // The barrier's full result (what ran, and the reply), e.g. for tests and logs.
  BarrierResult Run(const CallbackContext& ctx);

 private:
  PgSagaStep(PgSagaStepOptions options, PgStepWork action, PgStepWork compensate);

  const PgStepWork action_;
  const PgStepWork compensate_;
  const std::unique_ptr<internal::PgPool> pool_;
};

// Builds a saga's begin request (contract section 3: protocol "saga", steps with action,
// compensate, payload and depends_on) and submits it through a CoordinatorClient.
//
// A step runs once every step it depends on has succeeded; steps that depend on nothing among
// them run in parallel. Mistakes found while building (a bad or duplicate step id, an unknown
// dependency, an empty url, a payload that is not JSON) are kept and returned by Build and
// Submit as kInvalidArgument naming the step; the coordinator checks the rest (cycles, urls
// outside its allow-list) and answers 400 / 403, which Submit returns as kInvalidArgument.
//
// Idempotent by gtid: Submit sends the same request every time, so calling it again after a
// kUnavailable or kUnknownOutcome (or from another process, with the same steps) returns the same
// saga and never starts a second one. With an empty gtid the coordinator makes one up and a
// retried Submit may start a second saga; give one whenever the outcome matters.
//
// Not thread-safe while being built; Build and Submit are const and may then be called from any
// thread. `client` must outlive the builder.
class Saga {
 public:
  Saga(CoordinatorClient& client, std::string gtid);

  // Adds a step. `payload` is passed to the step's action and compensate untouched (any JSON
  // value); the overload with text parses it as JSON. depends_on names steps of this saga, added
  // before or after this one.
  Saga& Step(std::string step_id, std::string action_url, std::string compensate_url,
             google::protobuf::Value payload, std::vector<std::string> depends_on = {});
  Saga& Step(std::string step_id, std::string action_url, std::string compensate_url,
             std::string_view payload_json, std::vector<std::string> depends_on = {});

  // Bounds the saga's forward progress (contract: timeout_ms); past it, the saga turns to
  // compensation. Zero (the default) leaves it to the coordinator's default.
  Saga& Timeout(std::chrono::milliseconds timeout);

  // Per-step options (docs/contract-additions.md section 3) for a step added before: one
  // callback's budget (`timeout_ms`), and the retry policy of its action (`initial_ms`, `max_ms`,
  // `max_attempts`; 0 leaves each to the coordinator). An unknown step or a negative value is
  // a mistake, returned by Build and Submit.
  Saga& StepTimeout(std::string_view step_id, std::chrono::milliseconds timeout);
  Saga& StepRetry(std::string_view step_id, std::chrono::milliseconds initial,
                  std::chrono::milliseconds max, int max_attempts);

  // The begin request, or the first mistake found while building.
  Result<v1::BeginRequest> Build() const;

  // POST /v1/transactions with the request. wait=true answers when the saga is terminal
  // (committed: every step succeeded; aborted: compensated, see transaction().reason()) or
  // when the coordinator's wait is over (202, still running). Errors as CoordinatorClient::Begin.
  Result<TransactionReply> Submit(bool wait, const CallOptions& call = {}) const;

 private:
  // The step named `step_id`, or nullptr after recording the mistake (`option` names what was
  // being set).
  v1::Step* FindStep(std::string_view step_id, std::string_view option);

  CoordinatorClient& client_;
  v1::BeginRequest request_;
  Status error_;  // the first mistake found by Step or Timeout
};

}  // namespace txcoord::participant
