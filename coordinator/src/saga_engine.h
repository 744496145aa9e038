// The saga engine (saga/include/txcoord/saga/engine.h) behind the coordinator's Engine
// interface. Internal to the coordinator: BeginEngine and RecoverEngine dispatch here.
#pragma once

#include <cstdint>
#include <memory>

#include "txcoord/coordinator/engine.h"

namespace txcoord::coordinator::internal {

// nullptr when the steps are not a valid saga: the API's checks should have refused them.
std::unique_ptr<Engine> BeginSagaEngine(Timestamp now, const BeginArgs& args,
                                        const EngineOptions& options, uint64_t seed, Effects& out);

Result<std::unique_ptr<Engine>> RecoverSagaEngine(Timestamp now, const LoggedTransaction& logged,
                                                  const EngineOptions& options, uint64_t seed,
                                                  Effects& out);

}  // namespace txcoord::coordinator::internal
