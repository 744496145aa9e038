#include "txcoord_process.h"

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
#include <thread>

#include "txcoord/testing/poll.h"

namespace txcoord::integration {
namespace {

// "txcoord listening on HOST:PORT", "bank listening on HOST:PORT": any of the project's programs.
constexpr std::string_view kListeningPrefix = " listening on ";

int ExitCodeOf(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

}  // namespace

TxcoordProcess::TxcoordProcess(const std::string& binary, const std::vector<std::string>& args,
                               const std::string& stderr_path)
    : stderr_path_(stderr_path) {
  // Everything the child needs is prepared before fork: after it, only async-signal-safe calls.
  std::vector<std::string> argv_storage = {binary};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  argv.reserve(argv_storage.size() + 1);
  for (std::string& arg : argv_storage) argv.push_back(arg.data());
  argv.push_back(nullptr);

  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0)
    throw std::runtime_error("pipe2: " + std::string(strerror(errno)));
  const int err_fd = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (err_fd < 0 || null_fd < 0) throw std::runtime_error("open: " + std::string(strerror(errno)));
  const pid_t parent = getpid();

  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork: " + std::string(strerror(errno)));
  if (pid_ == 0) {
    // Dies with the test process, even if that is SIGKILLed. (gtest runs tests on the main
    // thread, which lives as long as the process, so the thread-bound signal fires only then.)
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(null_fd, STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  close(err_fd);
  close(null_fd);
  stdout_fd_ = out[0];
}

TxcoordProcess::~TxcoordProcess() {
  if (!exit_code_.has_value() && pid_ > 0) {
    kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

bool TxcoordProcess::ReadStdout(std::chrono::milliseconds wait) {
  if (stdout_eof_) return false;
  pollfd fd{stdout_fd_, POLLIN, 0};
  const int ready = poll(&fd, 1, static_cast<int>(wait.count()));
  if (ready <= 0) return true;
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

std::optional<int> TxcoordProcess::WaitForListening(std::chrono::milliseconds timeout) {
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

void TxcoordProcess::Signal(int signal) {
  if (!exit_code_.has_value()) kill(pid_, signal);
}

std::optional<int> TxcoordProcess::WaitForExit(std::chrono::milliseconds timeout) {
  const bool exited = testing::PollUntil(timeout, std::chrono::milliseconds(5), [&] {
    if (exit_code_.has_value()) return true;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) != pid_) return false;
    exit_code_ = ExitCodeOf(status);
    return true;
  });
  if (!exited) return std::nullopt;
  // The writer is gone, so end of file comes at once; the deadline only guards against a
  // grandchild holding the pipe open.
  const auto drain_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (!stdout_eof_ && std::chrono::steady_clock::now() < drain_deadline) {
    ReadStdout(std::chrono::milliseconds(100));
  }
  return exit_code_;
}

std::string TxcoordProcess::Stdout() {
  while (!stdout_eof_) {
    pollfd fd{stdout_fd_, POLLIN, 0};
    if (poll(&fd, 1, 0) <= 0) break;
    ReadStdout(std::chrono::milliseconds(0));
  }
  return stdout_;
}

std::string TxcoordProcess::Stderr() const {
  std::ifstream in(stderr_path_);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace txcoord::integration
