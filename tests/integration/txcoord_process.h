// A real txcoord process for integration tests: started with fork/exec, stdout read through a
// pipe (for the "txcoord listening on HOST:PORT" line), stderr captured in a file.
//
// The process never outlives its TxcoordProcess: the destructor SIGKILLs and reaps it if it is
// still running, so a failed assertion cannot leave a server behind; and it gets
// PR_SET_PDEATHSIG(SIGKILL), so it dies even when the test process itself is killed.
//
// Not thread-safe; one test thread drives it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace txcoord::integration {

class TxcoordProcess {
 public:
  // Runs `binary` with `args`, stderr into `stderr_path`. Throws std::runtime_error (a test
  // failure) if pipe, open or fork fail; a failed exec shows as exit code 127.
  TxcoordProcess(const std::string& binary, const std::vector<std::string>& args,
                 const std::string& stderr_path);
  ~TxcoordProcess();

  TxcoordProcess(const TxcoordProcess&) = delete;
  TxcoordProcess& operator=(const TxcoordProcess&) = delete;

  // Reads stdout until the listening line arrives and returns its port; nullopt if the process
  // closes stdout (exits) first or `timeout` passes.
  std::optional<int> WaitForListening(std::chrono::milliseconds timeout);

  void Signal(int signal);
  pid_t pid() const { return pid_; }

  // Polls waitpid(WNOHANG) every few milliseconds until the process exits or `timeout` passes.
  // Returns the exit code (128 + N when killed by signal N), or nullopt on timeout.
  std::optional<int> WaitForExit(std::chrono::milliseconds timeout);

  // What the process wrote so far. Stdout is complete once WaitForExit returned a code.
  std::string Stdout();
  std::string Stderr() const;

 private:
  // Appends what stdout holds to stdout_, waiting up to `wait` for it. False at end of file.
  bool ReadStdout(std::chrono::milliseconds wait);

  const std::string stderr_path_;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  int stdout_fd_ = -1;
  bool stdout_eof_ = false;
  std::string stdout_;
};

}  // namespace txcoord::integration
