// Named fault points: compiled in, inert unless the environment names them.
//
//   TXCOORD_FAULT_POINTS="relay.after_ack_before_mark=0.002,relay.after_publish=0.0005"
//
// makes the process exit at once (_exit(kFaultExitCode): no destructors, no flushes, like a
// crash) with that probability each time the named point is reached. Tests use them to land a
// crash exactly in a window a random SIGKILL rarely hits.
#pragma once

namespace txcoord::outbox {

inline constexpr int kFaultExitCode = 86;

// Points: "relay.after_publish" (a message handed to the bus, no ack yet),
// "relay.after_ack_before_mark" (acks received, published_at not yet set).
void FaultPoint(const char* name);

}  // namespace txcoord::outbox
