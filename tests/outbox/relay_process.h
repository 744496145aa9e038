// A real txrelay process for tests: fork/exec, stdout read through a pipe (for the "txrelay
// listening on HOST:PORT" line), stderr appended to a file. The same rules as the txcoord
// integration tests' process (tests/integration/txcoord_process.h): the destructor SIGKILLs and
// reaps a child still running, and the child gets PR_SET_PDEATHSIG(SIGKILL).
//
// Not thread-safe; one test thread drives it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace txcoord::outbox::testing {

class RelayProcess {
 public:
  // Runs `binary` with `args`; `extra_env` ("NAME=value") is added to this process's
  // environment. Throws std::runtime_error if pipe, open or fork fail.
  RelayProcess(const std::string& binary, const std::vector<std::string>& args,
               const std::string& stderr_path, const std::vector<std::string>& extra_env = {});
  ~RelayProcess();

  RelayProcess(const RelayProcess&) = delete;
  RelayProcess& operator=(const RelayProcess&) = delete;

  // Reads stdout until the listening line arrives and returns its port; nullopt if the process
  // exits first or `timeout` passes.
  std::optional<int> WaitForListening(std::chrono::milliseconds timeout);

  void Signal(int signal);
  pid_t pid() const { return pid_; }
  // The exit code (128 + N when killed by signal N), or nullopt on timeout.
  std::optional<int> WaitForExit(std::chrono::milliseconds timeout);
  // Exit code if the process has ended, without waiting.
  std::optional<int> ExitedCode();

  std::string Stdout();
  std::string Stderr() const;

 private:
  bool ReadStdout(std::chrono::milliseconds wait);

  const std::string stderr_path_;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  int stdout_fd_ = -1;
  bool stdout_eof_ = false;
  std::string stdout_;
};

// GET http://127.0.0.1:port/path; returns status and body, or status 0 when nothing answered.
struct HttpReply {
  int status = 0;
  std::string body;
};
HttpReply HttpGet(int port, const std::string& path);

}  // namespace txcoord::outbox::testing
