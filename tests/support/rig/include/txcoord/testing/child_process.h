// A program under test as a child process: started with fork/exec, stdout read through a pipe
// (for its "NAME listening on HOST:PORT" line), stderr written to a file. The integration tests
// run txcoord, the banks and saga participants this way, the outbox tests txrelay.
//
// The process never outlives its ChildProcess: the destructor SIGKILLs and reaps it if it is
// still running, so a failed assertion cannot leave a process behind; and it gets
// PR_SET_PDEATHSIG(SIGKILL), so it dies even when the test process itself is killed. Unlike the
// rig's servers it is forked from the calling thread, which is why the test thread must outlive
// it (gtest runs tests on the main thread, which does).
//
// Not thread-safe; one test thread drives it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace txcoord::testing {

class ChildProcess {
 public:
  // kAppend, for a process restarted with the same stderr file that a test reads as a whole.
  enum class StderrFile { kTruncate, kAppend };

  // Runs `binary` with `args`, stderr into `stderr_path`; `extra_env` ("NAME=value") is added
  // to this process's environment. Throws std::runtime_error (a test failure) if pipe, open or
  // fork fail; a failed exec shows as exit code 127.
  ChildProcess(const std::string& binary, const std::vector<std::string>& args,
               const std::string& stderr_path, StderrFile stderr_file = StderrFile::kTruncate,
               const std::vector<std::string>& extra_env = {});
  ~ChildProcess();

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Reads stdout until the listening line arrives and returns its port; nullopt if the process
  // closes stdout (exits) first or `timeout` passes.
  std::optional<int> WaitForListening(std::chrono::milliseconds timeout);

  void Signal(int signal);
  pid_t pid() const { return pid_; }

  // Polls every few milliseconds until the process exits or `timeout` passes. Returns the exit
  // code (128 + N when killed by signal N), or nullopt on timeout.
  std::optional<int> WaitForExit(std::chrono::milliseconds timeout);
  // The exit code if the process has ended, without waiting.
  std::optional<int> ExitedCode();

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

}  // namespace txcoord::testing
