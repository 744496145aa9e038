// Bounded polling, the rig's answer to fixed sleeps in tests: wait on a condition, with a limit.
#pragma once

#include <chrono>
#include <functional>

namespace txcoord::testing {

// Calls `done` every `interval` until it returns true (then returns true) or until `timeout`
// has passed (then returns false, after one last call).
bool PollUntil(std::chrono::milliseconds timeout, std::chrono::milliseconds interval,
               const std::function<bool()>& done);

}  // namespace txcoord::testing
