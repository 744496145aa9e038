// The adapter from saga::SagaEngine to coordinator::Engine: a thin translation of effects and
// replies. Each saga Send becomes a callback to the step's own action or compensate URL, with
// the step's payload and callback budget; the transport's ReplyClass becomes a saga::StepReply.
#include "saga_engine.h"

#include <spdlog/spdlog.h>

#include <utility>

#include "txcoord/saga/engine.h"

namespace txcoord::coordinator::internal {
namespace {

saga::StepReply ToStepReply(ReplyClass c) {
  switch (c) {
    case ReplyClass::kSuccess:
      return saga::StepReply::kDone;
    case ReplyClass::kRefused:
      return saga::StepReply::kRefused;
    case ReplyClass::kInProgress:
      return saga::StepReply::kInProgress;
    case ReplyClass::kTransient:
      break;
  }
  return saga::StepReply::kTransient;
}

std::string Describe(const CallbackReply& reply) {
  if (!reply.detail.empty()) return reply.detail;
  return reply.http_status != 0 ? "HTTP " + std::to_string(reply.http_status) : "no reply";
}

saga::SagaOptions ToSagaOptions(const EngineOptions& o) {
  saga::SagaOptions s;
  s.retry_initial = o.retry.initial;
  s.retry_max = o.retry.max;
  s.callback_timeout = o.retry.callback;
  s.max_parallel_steps = std::max(1, o.max_parallel_steps);
  s.log_failed_attempts = o.log_failed_attempts;
  return s;
}

class SagaAdapter final : public Engine {
 public:
  explicit SagaAdapter(std::unique_ptr<saga::SagaEngine> engine) : e_(std::move(engine)) {}

  Result<uint64_t> RegisterBranch(Timestamp, const v1::Branch&, Effects&) override {
    return Status::Conflict("branches are registered only in tcc transactions; " + e_->gtid() +
                            " is a saga, whose steps are given at begin");
  }
  Result<uint64_t> Commit(Timestamp now, Effects& out) override {
    saga::Effects fx;
    Result<uint64_t> seq = e_->Commit(now, fx);
    Convert(fx, out);
    return seq;
  }
  Result<uint64_t> Abort(Timestamp now, std::string reason, Effects& out) override {
    saga::Effects fx;
    Result<uint64_t> seq = e_->Abort(now, std::move(reason), fx);
    Convert(fx, out);
    return seq;
  }
  Result<uint64_t> Resolve(Timestamp now, const v1::ResolvedRecord& request,
                           Effects& out) override {
    saga::Effects fx;
    Result<uint64_t> seq = e_->Resolve(now, request.branch_id(), request.as(), request.operator_(),
                                       request.reason(), fx);
    Convert(fx, out);
    return seq;
  }
  void RetryNow(Timestamp now, Effects& out) override {
    saga::Effects fx;
    e_->RetryNow(now, fx);
    Convert(fx, out);
  }
  void OnDurable(Timestamp now, uint64_t seq, Effects& out) override {
    saga::Effects fx;
    e_->OnDurable(now, seq, fx);
    Convert(fx, out);
  }
  void OnReply(Timestamp now, const Send& sent, const CallbackReply& reply, Effects& out) override {
    const int step = e_->FindStep(sent.branch_id);
    if (step < 0) return;
    if (reply.reply_class == ReplyClass::kRefused && sent.phase == saga::kPhaseCompensate) {
      spdlog::warn(
          "{}: participant bug: step \"{}\" answered 409 to compensate (attempt {}); "
          "retried",
          e_->gtid(), sent.branch_id, sent.attempt);
    }
    saga::Effects fx;
    e_->OnReply(
        now,
        saga::Send{
            .step = step, .step_id = sent.branch_id, .phase = sent.phase, .attempt = sent.attempt},
        ToStepReply(reply.reply_class), Describe(reply), fx);
    Convert(fx, out);
  }
  void OnTimer(Timestamp now, Effects& out) override {
    saga::Effects fx;
    e_->OnTimer(now, fx);
    Convert(fx, out);
  }

  std::optional<Timestamp> WakeAt() const override { return e_->WakeAt(); }
  v1::Transaction View() const override { return e_->View(); }
  const std::string& gtid() const override { return e_->gtid(); }
  const std::string& state() const override { return e_->state(); }
  const std::string& request_digest() const override { return e_->request_digest(); }
  const std::string& traceparent() const override { return e_->traceparent(); }
  const v1::Branch* FindBranch(const std::string&) const override { return nullptr; }
  bool decided() const override { return e_->decided(); }
  bool finished() const override { return e_->finished(); }
  uint64_t emitted() const override { return e_->emitted(); }
  uint64_t durable() const override { return e_->durable(); }

  void Convert(saga::Effects& fx, Effects& out) const {
    for (v1::LogRecord& r : fx.append) out.append.push_back(std::move(r));
    for (saga::Send& s : fx.send) {
      const v1::Step& def = e_->step(s.step);
      Send send;
      send.url = s.phase == saga::kPhaseAction ? def.action() : def.compensate();
      send.payload = def.has_payload() ? &def.payload() : nullptr;
      send.timeout = e_->CallbackTimeout(s.step);
      send.branch_id = std::move(s.step_id);
      send.phase = std::move(s.phase);
      send.attempt = s.attempt;
      out.send.push_back(std::move(send));
    }
    fx.Clear();
  }

 private:
  std::unique_ptr<saga::SagaEngine> e_;
};

}  // namespace

std::unique_ptr<Engine> BeginSagaEngine(Timestamp now, const BeginArgs& args,
                                        const EngineOptions& options, uint64_t seed, Effects& out) {
  saga::SagaBegin begin;
  begin.request = args.request;
  begin.traceparent = args.traceparent;
  begin.request_digest = args.request_digest;
  begin.timeout_ms = args.timeout_ms;
  begin.plan = args.saga_plan;
  saga::Effects fx;
  auto engine = saga::SagaEngine::Begin(now, begin, ToSagaOptions(options), seed, fx);
  if (!engine.ok()) {
    spdlog::error("{}: saga refused after the API's checks passed (a bug): {}", args.request.gtid(),
                  engine.status().ToString());
    return nullptr;
  }
  auto adapter = std::make_unique<SagaAdapter>(std::move(*engine));
  adapter->Convert(fx, out);
  return adapter;
}

Result<std::unique_ptr<Engine>> RecoverSagaEngine(Timestamp now, const LoggedTransaction& logged,
                                                  const EngineOptions& options, uint64_t seed,
                                                  Effects& out) {
  saga::Effects fx;
  auto engine = saga::SagaEngine::Recover(now, logged.records, ToSagaOptions(options), seed, fx);
  if (!engine.ok()) return engine.status();
  auto adapter = std::make_unique<SagaAdapter>(std::move(*engine));
  adapter->Convert(fx, out);
  return std::unique_ptr<Engine>(std::move(adapter));
}

}  // namespace txcoord::coordinator::internal
