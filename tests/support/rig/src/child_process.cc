#include "txcoord/testing/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string_view>

#include "txcoord/testing/poll.h"

extern char** environ;

namespace txcoord::testing {
namespace {

// "txcoord listening on HOST:PORT", "txrelay listening on HOST:PORT": any of the project's
// programs.
constexpr std::string_view kListeningPrefix = " listening on ";

int ExitCodeOf(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

// NULL-terminated pointers into `storage`, which must outlive them.
std::vector<char*> PointersTo(std::vector<std::string>& storage) {
  std::vector<char*> pointers;
  pointers.reserve(storage.size() + 1);
  for (std::string& s : storage) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

}  // namespace

ChildProcess::ChildProcess(const std::string& binary, const std::vector<std::string>& args,
                           const std::string& stderr_path, StderrFile stderr_file,
                           const std::vector<std::string>& extra_env)
    : stderr_path_(stderr_path) {
  // Everything the child needs is prepared before fork: after it, only async-signal-safe calls.
  std::vector<std::string> argv_storage = {binary};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv = PointersTo(argv_storage);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
  env_storage.insert(env_storage.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> envp = PointersTo(env_storage);

  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    throw std::runtime_error("pipe2: " + std::string(strerror(errno)));
  }
  const int mode = stderr_file == StderrFile::kAppend ? O_APPEND : O_TRUNC;
  const int err_fd = open(stderr_path.c_str(), O_WRONLY | O_CREAT | mode | O_CLOEXEC, 0644);
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (err_fd < 0 || null_fd < 0) throw std::runtime_error("open: " + std::string(strerror(errno)));
  const pid_t parent = getpid();

  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork: " + std::string(strerror(errno)));
  if (pid_ == 0) {
    // The signal is bound to this thread (see the header), and fires only when it ends.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(null_fd, STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(out[1]);
  close(err_fd);
  close(null_fd);
  stdout_fd_ = out[0];
}

ChildProcess::~ChildProcess() {
  if (!exit_code_.has_value() && pid_ > 0) {
    kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

bool ChildProcess::ReadStdout(std::chrono::milliseconds wait) {
  if (stdout_eof_) return false;
  pollfd fd{stdout_fd_, POLLIN, 0};
  if (poll(&fd, 1, static_cast<int>(wait.count())) <= 0) return true;
  char buffer[4096];
  const ssize_t n = read(stdout_fd_, buffer, sizeof buffer);
  if (n > 0) {
    stdout_.append(buffer, static_cast<size_t>(n));
    return true;
  }
  if (n < 0 && errno == EINTR) return true;
  stdout_eof_ = true;
  return false;
}

std::optional<int> ChildProcess::WaitForListening(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const size_t at = stdout_.find(kListeningPrefix);
    const size_t line_end = at == std::string::npos ? at : stdout_.find('\n', at);
    if (line_end != std::string::npos) {
      const std::string address =
          stdout_.substr(at + kListeningPrefix.size(), line_end - at - kListeningPrefix.size());
      return std::stoi(address.substr(address.rfind(':') + 1));
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    if (!ReadStdout(left)) return std::nullopt;
  }
}

void ChildProcess::Signal(int signal) {
  if (!exit_code_.has_value()) kill(pid_, signal);
}

std::optional<int> ChildProcess::ExitedCode() {
  if (exit_code_.has_value()) return exit_code_;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) exit_code_ = ExitCodeOf(status);
  return exit_code_;
}

std::optional<int> ChildProcess::WaitForExit(std::chrono::milliseconds timeout) {
  const bool exited =
      PollUntil(timeout, std::chrono::milliseconds(5), [&] { return ExitedCode().has_value(); });
  if (!exited) return std::nullopt;
  // The writer is gone, so end of file comes at once; the deadline only guards against a
  // grandchild holding the pipe open.
  const auto drain_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (!stdout_eof_ && std::chrono::steady_clock::now() < drain_deadline) {
    ReadStdout(std::chrono::milliseconds(100));
  }
  return exit_code_;
}

std::string ChildProcess::Stdout() {
  while (!stdout_eof_) {
    pollfd fd{stdout_fd_, POLLIN, 0};
    if (poll(&fd, 1, 0) <= 0) break;
    ReadStdout(std::chrono::milliseconds(0));
  }
  return stdout_;
}

std::string ChildProcess::Stderr() const {
  std::ifstream in(stderr_path_);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace txcoord::testing
