#include "wait_for_terminal.h"

#include <gtest/gtest.h>

#include <chrono>

#include "txcoord/testing/poll.h"

namespace txcoord::integration {

v1::Transaction WaitForTerminal(participant::CoordinatorClient& client, const std::string& gtid) {
  v1::Transaction tx;
  EXPECT_TRUE(testing::PollUntil(std::chrono::seconds(30), std::chrono::milliseconds(20),
                                 [&] {
                                   auto got = client.Get(gtid);
                                   if (got.ok()) tx = *got;
                                   return got.ok() &&
                                          (tx.state() == "committed" || tx.state() == "aborted");
                                 }))
      << gtid << " is " << tx.state();
  return tx;
}

}  // namespace txcoord::integration
