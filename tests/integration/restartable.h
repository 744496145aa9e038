// What the crash tests share: knobs and seeds from the environment, ports that survive a
// restart, and a program that is killed and started again on its port.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "txcoord_process.h"

namespace txcoord::integration {

// The integer in environment variable `name`, or `fallback` when it is unset or empty.
int EnvInt(const char* name, int fallback);

// TXCOORD_SEED when set, so that a printed seed replays a failing run; else a random one.
uint64_t SeedFromEnv();

// A free port below the kernel's ephemeral range. The processes here are restarted on their
// port, and while one is down a client's outgoing connection may be given that very port from
// the ephemeral range (or connect to itself), so that the restart would find it in use.
// Thread-safe.
int FreePortBelowEphemeralRange();

// A program of the test that is killed and started again on the same port. `args` gets the
// number of the start (0, 1, ...), so that a program can be told something different per start.
class Restartable {
 public:
  Restartable(std::string name, std::string binary,
              std::function<std::vector<std::string>(int start)> args, std::string log_dir);
  // The same arguments at every start.
  Restartable(std::string name, std::string binary, std::vector<std::string> args,
              std::string log_dir);

  // Starts and waits for the listening line, each start with a log of its own. A failure to
  // start is a fatal test failure (ASSERT_NO_FATAL_FAILURE to stop the caller).
  void Start();
  void Kill();
  // SIGTERM; a non-zero exit is a test failure.
  void Stop();
  const std::string& name() const { return name_; }

 private:
  const std::string name_;
  const std::string binary_;
  const std::function<std::vector<std::string>(int)> args_;
  const std::string log_dir_;
  int starts_ = 0;
  std::unique_ptr<TxcoordProcess> process_;
};

}  // namespace txcoord::integration
