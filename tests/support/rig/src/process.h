// Internal to the rig: starting and waiting for the child processes that run the real servers
// (initdb, postgres, nats-server). Nothing here is part of the public API.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "txcoord/status.h"
#include "txcoord/testing/poll.h"

namespace txcoord::testing::internal {

// The OS account a child runs as. PostgreSQL refuses to run as root, so when the test process is
// root the child switches to an unprivileged account between fork and exec.
struct Identity {
  bool switch_user = false;  // false: the child keeps the test process's credentials.
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  // Supplementary groups, looked up before fork: initgroups() reads /etc/group through
  // allocating NSS code, which is not safe in the child of a multithreaded process.
  std::vector<gid_t> groups;
};

// The test process's own account.
Identity CurrentIdentity();
// `user` from the password database, with its supplementary groups.
Result<Identity> LookUpIdentity(const std::string& user);

struct SpawnSpec {
  std::string program;            // Absolute path: there is no PATH search after fork.
  std::vector<std::string> args;  // argv[1..]; argv[0] is `program`.
  std::vector<std::string> env;   // The child's whole environment, "KEY=VALUE".
  std::string working_dir;        // The child chdirs here; must be reachable by `identity`.
  std::string log_path;           // stdout and stderr are appended to this file.
  Identity identity;
};

// Forks and execs `spec` and returns the child's pid once exec has succeeded (a CLOEXEC pipe
// reports a failed step, so "binary not found" is an error here rather than a mysterious exit).
//
// The child:
//   - runs in its own process group, so a terminal's Ctrl-C reaches only the test process, whose
//     handler then stops the servers in order;
//   - gets PR_SET_PDEATHSIG(SIGKILL), so it dies with the test process. The kernel sends that
//     signal when the *thread* that forked exits, not the process; so every fork happens on one
//     rig-owned thread that lives until the process exits (see process.cc);
//   - has stdin on /dev/null, stdout and stderr appended to `log_path`, an empty signal mask,
//     default signal dispositions, and no file descriptors of the test process other than 0-2.
Result<pid_t> Spawn(const SpawnSpec& spec);

// What waitpid reported for a child, in words: "exited with code 1", "killed by signal 9
// (Killed)". kNotOurChild when someone else already reaped it.
inline constexpr int kNotOurChild = -1;
std::string DescribeWaitStatus(int wait_status);

// Polls waitpid(pid, WNOHANG) until the child exits (and is reaped) or `timeout` passes.
// Returns the wait status, kNotOurChild if it is not (or no longer) our child, or nullopt on
// timeout, in which case the child is still running and unreaped.
std::optional<int> WaitForExit(pid_t pid, std::chrono::milliseconds timeout);

// True if `pid` has exited, without reaping it (waitid with WNOWAIT), so that the pid stays
// reserved until whoever owns the child reaps it. Also true if `pid` is not our child.
bool HasExited(pid_t pid);

using ::txcoord::testing::PollUntil;  // txcoord/testing/poll.h

// A TCP port on 127.0.0.1 that nobody listened on a moment ago: bind port 0, read it back, close.
// Another process can take it before the server binds it, so callers retry when the server
// reports "address already in use".
Result<int> PickFreeLoopbackPort();

// The size of a file, or 0 if it cannot be read.
std::uint64_t FileSize(const std::string& path);

// The part of log `path` from byte `from_offset` on, for quoting in an error message: all of it
// if short, else its first and last lines (servers tend to print the cause first, as
// nats-server does before its usage text, or last, as postgres does). Ends with a newline.
std::string LogExcerpt(const std::string& path, std::uint64_t from_offset = 0);

// `digits` random lowercase hex digits, to keep names of databases and streams apart when
// several test processes share a server.
std::string RandomHex(int digits);

// Looks `name` up in $PATH and then in `extra_dirs`; returns the first executable match.
std::optional<std::string> FindExecutable(const std::string& name,
                                          const std::vector<std::string>& extra_dirs);

}  // namespace txcoord::testing::internal
