#include "relay_process.h"

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/StreamCopier.h>
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

#include "txcoord/testing/poll.h"

extern char** environ;

namespace txcoord::outbox::testing {
namespace {

constexpr std::string_view kListeningPrefix = "txrelay listening on ";

int ExitCodeOf(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

}  // namespace

RelayProcess::RelayProcess(const std::string& binary, const std::vector<std::string>& args,
                           const std::string& stderr_path,
                           const std::vector<std::string>& extra_env)
    : stderr_path_(stderr_path) {
  std::vector<std::string> argv_storage = {binary};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& arg : argv_storage) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
  env_storage.insert(env_storage.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> envp;
  for (std::string& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);

  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    throw std::runtime_error("pipe2: " + std::string(strerror(errno)));
  }
  const int err_fd = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (err_fd < 0 || null_fd < 0) throw std::runtime_error("open: " + std::string(strerror(errno)));
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork: " + std::string(strerror(errno)));
  if (pid_ == 0) {
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

RelayProcess::~RelayProcess() {
  if (!exit_code_.has_value() && pid_ > 0) {
    kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

bool RelayProcess::ReadStdout(std::chrono::milliseconds wait) {
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

std::optional<int> RelayProcess::WaitForListening(std::chrono::milliseconds timeout) {
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

void RelayProcess::Signal(int signal) {
  if (!exit_code_.has_value()) kill(pid_, signal);
}

std::optional<int> RelayProcess::ExitedCode() {
  if (exit_code_.has_value()) return exit_code_;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) exit_code_ = ExitCodeOf(status);
  return exit_code_;
}

std::optional<int> RelayProcess::WaitForExit(std::chrono::milliseconds timeout) {
  const bool exited = txcoord::testing::PollUntil(timeout, std::chrono::milliseconds(5),
                                                  [&] { return ExitedCode().has_value(); });
  if (!exited) return std::nullopt;
  const auto drain_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (!stdout_eof_ && std::chrono::steady_clock::now() < drain_deadline) {
    ReadStdout(std::chrono::milliseconds(100));
  }
  return exit_code_;
}

std::string RelayProcess::Stdout() {
  while (!stdout_eof_) {
    pollfd fd{stdout_fd_, POLLIN, 0};
    if (poll(&fd, 1, 0) <= 0) break;
    ReadStdout(std::chrono::milliseconds(0));
  }
  return stdout_;
}

std::string RelayProcess::Stderr() const {
  std::ifstream in(stderr_path_);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

HttpReply HttpGet(int port, const std::string& path) {
  HttpReply reply;
  try {
    Poco::Net::HTTPClientSession session("127.0.0.1", static_cast<Poco::UInt16>(port));
    session.setTimeout(Poco::Timespan(5, 0));
    Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_GET, path,
                                   Poco::Net::HTTPMessage::HTTP_1_1);
    session.sendRequest(request);
    Poco::Net::HTTPResponse response;
    std::istream& body = session.receiveResponse(response);
    Poco::StreamCopier::copyToString(body, reply.body);
    reply.status = static_cast<int>(response.getStatus());
  } catch (const std::exception&) {
    reply.status = 0;
  }
  return reply;
}

}  // namespace txcoord::outbox::testing
