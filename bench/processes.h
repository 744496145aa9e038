// The processes a benchmark run starts (txcoord, participants), and what /proc says about them.
//
// A Server is a program of this project that prints "<name> listening on HOST:PORT" once it
// serves: started with tests/integration's TxcoordProcess (fork/exec, stdout through a pipe,
// stderr into a file, PR_SET_PDEATHSIG so that it dies with the benchmark), stopped with SIGTERM.
//
// Not thread-safe: one thread starts and stops servers. The /proc readers may be called from any
// thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "txcoord/status.h"

namespace txcoord::integration {
class TxcoordProcess;
}

namespace txcoord::bench {

class Server {
 public:
  // Runs `binary` with `args`, its stderr into `stderr_path`, and waits up to 30 s for its
  // listening line. kUnavailable with the end of its stderr when it exits or stays silent.
  static Result<std::unique_ptr<Server>> Start(const std::string& binary,
                                               const std::vector<std::string>& args,
                                               const std::string& stderr_path);
  // SIGKILLs the process if Stop() was not called.
  ~Server();

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const { return port_; }
  pid_t pid() const;
  // "http://127.0.0.1:PORT"
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // SIGTERM, then waits up to `grace` for the exit (SIGKILL after it). kUnavailable when the exit
  // code is not 0, or the grace passed, with the end of its stderr.
  Status Stop(std::chrono::milliseconds grace = std::chrono::seconds(10));

 private:
  Server(std::unique_ptr<integration::TxcoordProcess> process, std::string stderr_path);

  std::unique_ptr<integration::TxcoordProcess> process_;
  std::string stderr_path_;
  std::string name_;
  int port_ = 0;
};

// Resident memory from /proc/PID/status, in kB: VmRSS now and VmHWM, its peak since the start.
struct Memory {
  int64_t rss_kb = 0;
  int64_t hwm_kb = 0;
};
Result<Memory> ReadMemory(pid_t pid);

// CPU time (user + system, all threads) a process used so far, in seconds; 0 when it is gone.
double CpuSeconds(pid_t pid);
// The same for `root` and every process whose parent it is (a PostgreSQL postmaster and its
// backends). Backends that exited meanwhile are not counted: a run keeps its connections.
double CpuSecondsOfTree(pid_t root);

}  // namespace txcoord::bench
