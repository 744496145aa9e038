// Internal to the rig: one server's temp dir and child process, with the start, stop, wait and
// cleanup rules that PostgresServer and NatsServer share.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "process.h"
#include "txcoord/status.h"

namespace txcoord::testing::internal {

// Lifecycle:
//
//   Create --> [no child] --Launch--> [running] --Stop--> [no child] --Launch--> ...
//                  |                      |
//                  |                      +-- exits on its own --> [exited, unreaped]
//                  |                                               (Launch or Stop reaps it)
//                  +-- destructor: stop with destroy_signal, remove the temp dir, unregister
//
// The temp dir lives from Create to the destructor, across any number of launches, so a
// restarted server finds its data. The child pid is also in the cleanup registry while the
// child runs, so an interrupted test stops it (see cleanup_registry.h).
//
// Thread safety: Launch, Run, AwaitReady, Stop and the destructor must not run concurrently
// with each other; running() and pid() may be called from any thread at any time.
class ServerProcess {
 public:
  struct Config {
    std::string name;        // For messages: "postgres", "nats-server".
    std::string dir_prefix;  // Temp dir name before the random part: "txcoord-pg-".
    Identity identity;       // Owns the temp dir; every child runs as this account.
    int graceful_signal;     // Orderly shutdown.
    int immediate_signal;    // Crash-like stop.
    int destroy_signal;      // Used by the destructor, after which nothing of the dir is kept.
    int emergency_signal;    // Sent by the cleanup registry when the test is interrupted.
    std::chrono::milliseconds stop_timeout;  // Then SIGKILL.
  };

  // Creates `$TMPDIR/<dir_prefix>XXXXXX` (or under /tmp), owned by config.identity.
  static Result<std::unique_ptr<ServerProcess>> Create(Config config);

  // In the process that created it: stops the child with destroy_signal (SIGKILL after
  // stop_timeout) and removes the temp dir. In a process forked from that one: does nothing,
  // since the server is the parent's.
  ~ServerProcess();

  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  const std::string& dir() const { return dir_; }
  const Config& config() const { return config_; }

  // Starts the long-running server described by `spec` (identity and working dir filled in
  // here). Fails if the previous child still runs.
  Status Launch(SpawnSpec spec);

  // Polls `probe` every few milliseconds until it succeeds. Fails, with the end of the log
  // since Launch, if the server exits first or `timeout` passes (then the server is killed).
  Status AwaitReady(std::chrono::milliseconds timeout, const std::function<Status()>& probe);

  // True if the log written since the last Launch contains `needle`, ignoring ASCII case.
  bool LogSinceLaunchContains(std::string_view needle) const;

  // Runs a one-shot program (initdb) to completion; registered like a server while it runs.
  // Fails if it does not exit with code 0 within `timeout`.
  Status Run(SpawnSpec spec, std::chrono::milliseconds timeout);

  // Sends the immediate or the graceful signal, waits up to stop_timeout, then SIGKILLs, and
  // returns once the child is reaped. Does nothing if no child runs.
  Status Stop(bool immediate);

  // True from Launch until the child exits (whether it was stopped or not).
  bool running() const;
  // The pid of the child started by the last Launch, until it is stopped or reaped; else 0.
  pid_t pid() const { return pid_.load(); }

 private:
  ServerProcess(Config config, std::string dir, int slot);

  Status StopWith(int sig);

  // If the child has exited on its own: reaps it and says how it ended ("exited with code 1").
  std::optional<std::string> ReapIfExited();

  const Config config_;
  const std::string dir_;
  const int slot_;         // In the cleanup registry.
  const pid_t owner_pid_;  // The process that created this object.
  std::atomic<pid_t> pid_{0};
  std::string log_path_;          // Of the last Launch.
  std::uint64_t log_offset_ = 0;  // Size of that log before the last Launch.
};

// Launches a server on a free loopback port and waits until `probe(port)` succeeds. Another
// process can take the port between picking and binding it, so when the server exits saying
// "address already in use", it is launched again on another port, a few times. Returns the
// port.
Result<int> LaunchOnFreePort(ServerProcess& process,
                             const std::function<SpawnSpec(int port)>& spec_for_port,
                             const std::function<Status(int port)>& probe,
                             std::chrono::milliseconds timeout);

// Launches a server on `port` and waits for `probe(port)`: the port of the previous start, so
// that clients keep their address across a restart, or 0 the first time, which goes through
// LaunchOnFreePort. A fixed port that another process took while the server was stopped cannot
// be retried elsewhere, so that case gets its own message naming `server_name`. Returns the
// port.
Result<int> LaunchOnPort(ServerProcess& process, int port,
                         const std::function<SpawnSpec(int port)>& spec_for_port,
                         const std::function<Status(int port)>& probe,
                         std::chrono::milliseconds timeout, std::string_view server_name);

// $TMPDIR if it is set and not empty, else /tmp.
std::string TempRoot();

}  // namespace txcoord::testing::internal
