// The wait that tests of the coordinator's outcomes share.
#pragma once

#include <string>

#include "txcoord/participant/client.h"
#include "txcoord/v1/api.pb.h"

namespace txcoord::integration {

// Polls `client` for `gtid` (up to 30 s, every 20 ms) until it is committed or aborted: a begin
// may return before phase two ends, and a restarted coordinator finishes what its log holds.
// A test failure naming the last state read if it never gets there. Returns the record as last
// read.
v1::Transaction WaitForTerminal(participant::CoordinatorClient& client, const std::string& gtid);

}  // namespace txcoord::integration
