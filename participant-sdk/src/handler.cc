#include "txcoord/participant/handler.h"

#include <array>
#include <utility>

namespace txcoord::participant {
namespace {

constexpr std::array<std::pair<Phase, std::string_view>, 8> kPhaseNames = {{
    {Phase::kPrepare, "prepare"},
    {Phase::kCommit, "commit"},
    {Phase::kAbort, "abort"},
    {Phase::kCanCommit, "can-commit"},
    {Phase::kPreCommit, "pre-commit"},
    {Phase::kAction, "action"},
    {Phase::kCompensate, "compensate"},
    {Phase::kTry, "try"},
}};

constexpr std::string_view kNo3pc = "3pc not supported by this participant";

}  // namespace

std::string_view PhaseName(Phase phase) {
  for (const auto& [p, name] : kPhaseNames) {
    if (p == phase) return name;
  }
  return "unknown";
}

std::optional<Phase> ParsePhase(std::string_view name) {
  for (const auto& [p, n] : kPhaseNames) {
    if (n == name) return p;
  }
  return std::nullopt;
}

PhaseResult PhaseResult::FromStatus(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk:
      return Done();
    case StatusCode::kConflict:
    case StatusCode::kAlreadyExists:
      return Refused(status.message());
    case StatusCode::kInternal:
      return Failed(status.message());
    default:
      return Transient(status.message());
  }
}

int PhaseResult::http_status() const {
  switch (kind_) {
    case Kind::kDone:
      return 200;
    case Kind::kRefused:
      return 409;
    case Kind::kInProgress:
      return 425;
    case Kind::kTransient:
      return 503;
    case Kind::kFailed:
      return 500;
  }
  return 500;
}

std::string PhaseResult::ToString() const {
  switch (kind_) {
    case Kind::kDone:
      return "done";
    case Kind::kRefused:
      return "refused: " + message_;
    case Kind::kInProgress:
      return "in progress: " + message_;
    case Kind::kTransient:
      return "transient: " + message_;
    case Kind::kFailed:
      return "failed: " + message_;
  }
  return "unknown";
}

PhaseResult BranchHandler::Prepare(const CallbackContext&) {
  return PhaseResult::Refused(
      "prepare not supported by this participant (it takes part in tcc only)");
}

PhaseResult BranchHandler::CanCommit(const CallbackContext&) {
  return PhaseResult::Refused(std::string(kNo3pc));
}

PhaseResult BranchHandler::PreCommit(const CallbackContext&) {
  return PhaseResult::Refused(std::string(kNo3pc));
}

}  // namespace txcoord::participant
