// The 3pc engine (engine.h has its state diagram; docs/3pc.md what it guarantees). Internal to
// the coordinator: BeginEngine and RecoverEngine dispatch here for protocol "3pc".
#pragma once

#include <cstdint>
#include <memory>

#include "txcoord/coordinator/engine.h"

namespace txcoord::coordinator::internal {

// The transaction's tx_state values that only 3pc uses.
inline constexpr std::string_view kCanCommitting = "can-committing";
inline constexpr std::string_view kPreCommitting = "pre-committing";

std::unique_ptr<Engine> BeginThreePhaseEngine(Timestamp now, const BeginArgs& args,
                                              const EngineOptions& options, uint64_t seed,
                                              Effects& out);

// kCorruption when the records are not a 3pc transaction this engine can drive.
Result<std::unique_ptr<Engine>> RecoverThreePhaseEngine(Timestamp now,
                                                        const LoggedTransaction& logged,
                                                        const EngineOptions& options,
                                                        uint64_t seed, Effects& out);

}  // namespace txcoord::coordinator::internal
