#include "process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <future>
#include <mutex>
#include <random>
#include <sstream>
#include <system_error>
#include <thread>
#include <utility>

namespace txcoord::testing::internal {
namespace {

using std::chrono::milliseconds;

std::string ErrnoText(int err) { return std::system_category().message(err); }

// ---------------------------------------------------------------------------------------------
// The launcher thread.
//
// PR_SET_PDEATHSIG is tied to the thread that forked the child: the kernel sends the signal when
// that thread exits, even if the rest of the process lives on. A test that starts a server from
// a short-lived std::thread would see its server killed as soon as the thread ended. So every
// fork happens on one launcher thread per process that never exits; the death signal then fires
// exactly when the process dies.
//
// fork() copies only the calling thread, so a process forked from the test process (such as the
// rig test's own "child test process") inherits a Launcher whose thread does not exist there.
// The owner pid tells: a process builds its own Launcher the first time it needs one and leaks
// the inherited one, whose mutex may have been held by another thread at the time of the fork.
// ---------------------------------------------------------------------------------------------
struct Launcher {
  explicit Launcher(pid_t owner) : owner_pid(owner) {}

  const pid_t owner_pid;
  std::mutex mu;
  std::condition_variable wake;
  std::deque<std::packaged_task<void()>> tasks;  // GUARDED_BY(mu)
};

// Never destroyed (nor are the Launchers): the launcher thread may be blocked on one at exit.
std::atomic<Launcher*> g_launcher{nullptr};

[[noreturn]] void LauncherLoop(Launcher* launcher) {
  for (;;) {
    std::packaged_task<void()> task;
    {
      std::unique_lock lock(launcher->mu);
      launcher->wake.wait(lock, [launcher] { return !launcher->tasks.empty(); });
      task = std::move(launcher->tasks.front());
      launcher->tasks.pop_front();
    }
    task();
  }
}

Launcher& LauncherForThisProcess() {
  const pid_t self = getpid();
  Launcher* current = g_launcher.load(std::memory_order_acquire);
  if (current != nullptr && current->owner_pid == self) return *current;
  auto* fresh = new Launcher(self);
  if (!g_launcher.compare_exchange_strong(current, fresh, std::memory_order_acq_rel)) {
    // Another thread of this process installed one first; `current` now points to it.
    delete fresh;
    return *current;
  }
  std::thread(LauncherLoop, fresh).detach();
  return *fresh;
}

// Runs `fn` on the launcher thread and waits for it; exceptions propagate to the caller.
void RunOnLauncherThread(std::function<void()> fn) {
  Launcher& launcher = LauncherForThisProcess();
  std::packaged_task<void()> task(std::move(fn));
  std::future<void> done = task.get_future();
  {
    std::lock_guard lock(launcher.mu);
    launcher.tasks.push_back(std::move(task));
  }
  launcher.wake.notify_one();
  done.get();
}

// ---------------------------------------------------------------------------------------------
// fork and exec.
// ---------------------------------------------------------------------------------------------

// Everything the child needs, prepared before fork so that the child makes only
// async-signal-safe calls: the other threads' locks (malloc's, NSS's, iostream's) are in an
// unknown state in the child of a multithreaded process.
struct ChildPlan {
  const char* program = nullptr;
  std::vector<char*> argv;  // Null-terminated; points into the SpawnSpec.
  std::vector<char*> envp;  // Null-terminated; points into the SpawnSpec.
  const char* working_dir = nullptr;
  int stdin_fd = -1;
  int log_fd = -1;
  const Identity* identity = nullptr;
  pid_t parent_pid = 0;
};

// The step the child was at when it failed, reported to the parent with errno.
enum class ChildStep : int {
  kProcessGroup = 1,
  kRedirect,
  kGroups,
  kSetGid,
  kSetUid,
  kDeathSignal,
  kParentGone,
  kChdir,
  kExec,
};

std::string_view ChildStepName(ChildStep step) {
  switch (step) {
    case ChildStep::kProcessGroup:
      return "setpgid";
    case ChildStep::kRedirect:
      return "redirecting stdin/stdout/stderr";
    case ChildStep::kGroups:
      return "setgroups";
    case ChildStep::kSetGid:
      return "setgid";
    case ChildStep::kSetUid:
      return "setuid";
    case ChildStep::kDeathSignal:
      return "prctl(PR_SET_PDEATHSIG)";
    case ChildStep::kParentGone:
      return "the test process exited during the start";
    case ChildStep::kChdir:
      return "chdir";
    case ChildStep::kExec:
      return "execve";
  }
  return "unknown step";
}

[[noreturn]] void FailChild(int error_fd, ChildStep step) {
  const int report[2] = {static_cast<int>(step), errno};
  // If even this write fails the parent sees a plain exit with code 127.
  [[maybe_unused]] const ssize_t written = write(error_fd, report, sizeof(report));
  _exit(127);
}

// Runs in the child between fork and exec. Async-signal-safe calls only.
[[noreturn]] void RunChild(const ChildPlan& plan, int error_fd) {
  // A handler installed by the test process would be reset by exec anyway; an ignored signal
  // or a blocked one would not be, and postgres relies on SIGINT, SIGQUIT and SIGCHLD.
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) {
    sigaction(sig, &default_action, nullptr);  // Fails, harmlessly, for SIGKILL and SIGSTOP.
  }

  if (setpgid(0, 0) != 0) FailChild(error_fd, ChildStep::kProcessGroup);
  if (dup2(plan.stdin_fd, STDIN_FILENO) < 0 || dup2(plan.log_fd, STDOUT_FILENO) < 0 ||
      dup2(plan.log_fd, STDERR_FILENO) < 0) {
    FailChild(error_fd, ChildStep::kRedirect);
  }

  const Identity& identity = *plan.identity;
  if (identity.switch_user) {
    // Groups first, then the gid, then the uid: after setuid there is no privilege left to
    // change the others.
    if (setgroups(identity.groups.size(), identity.groups.data()) != 0) {
      FailChild(error_fd, ChildStep::kGroups);
    }
    if (setgid(identity.gid) != 0) FailChild(error_fd, ChildStep::kSetGid);
    if (setuid(identity.uid) != 0) FailChild(error_fd, ChildStep::kSetUid);
  }

  // Only after the credential change: changing the effective uid or gid clears the
  // parent-death signal (prctl(2)).
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) FailChild(error_fd, ChildStep::kDeathSignal);
  // If the test process died between fork() and prctl(), the signal will never come.
  if (getppid() != plan.parent_pid) {
    errno = ESRCH;
    FailChild(error_fd, ChildStep::kParentGone);
  }

  if (chdir(plan.working_dir) != 0) FailChild(error_fd, ChildStep::kChdir);

  // The server must not keep the test process's descriptors (client connections, listening
  // sockets, pipes to other children) open: mark all of them above stderr close-on-exec.
  // error_fd is close-on-exec already, so it stays usable until exec succeeds.
  if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    for (int fd = 3; fd < 65536; ++fd) fcntl(fd, F_SETFD, FD_CLOEXEC);  // Kernels before 5.11.
  }

  execve(plan.program, plan.argv.data(), plan.envp.data());
  FailChild(error_fd, ChildStep::kExec);
}

// Runs on the launcher thread.
Result<pid_t> ForkAndExec(const ChildPlan& plan) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return Status::Internal("pipe2: " + ErrnoText(errno));
  }
  const pid_t pid = fork();
  if (pid < 0) {
    const int err = errno;
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return Status::Unavailable("fork: " + ErrnoText(err));
  }
  if (pid == 0) {
    close(pipe_fds[0]);
    RunChild(plan, pipe_fds[1]);
  }
  close(pipe_fds[1]);

  // End of file means exec succeeded (the pipe was close-on-exec); a report means it did not.
  int report[2] = {0, 0};
  ssize_t n;
  do {
    n = read(pipe_fds[0], report, sizeof(report));
  } while (n < 0 && errno == EINTR);
  close(pipe_fds[0]);
  if (n == 0) return pid;

  int wait_status = 0;
  while (waitpid(pid, &wait_status, 0) < 0 && errno == EINTR) {
  }
  if (n != static_cast<ssize_t>(sizeof(report))) {
    return Status::Internal(std::string("could not start ") + plan.program + ": the child " +
                            DescribeWaitStatus(wait_status) + " before reporting why");
  }
  const auto step = static_cast<ChildStep>(report[0]);
  std::string message = std::string("could not start ") + plan.program + ": " +
                        std::string(ChildStepName(step)) + ": " + ErrnoText(report[1]);
  if (step == ChildStep::kExec && report[1] == ENOENT) return Status::NotFound(message);
  return Status::Internal(message);
}

// Closes a file descriptor when it goes out of scope.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

Identity CurrentIdentity() {
  Identity identity;
  identity.uid = geteuid();
  identity.gid = getegid();
  identity.name = "uid " + std::to_string(identity.uid);
  passwd entry{};
  passwd* found = nullptr;
  std::vector<char> buffer(16384);
  if (getpwuid_r(identity.uid, &entry, buffer.data(), buffer.size(), &found) == 0 &&
      found != nullptr) {
    identity.name = entry.pw_name;
  }
  return identity;
}

Result<Identity> LookUpIdentity(const std::string& user) {
  passwd entry{};
  passwd* found = nullptr;
  std::vector<char> buffer(16384);
  const int rc = getpwnam_r(user.c_str(), &entry, buffer.data(), buffer.size(), &found);
  if (rc != 0 || found == nullptr) {
    return Status::NotFound("OS user '" + user + "' does not exist" +
                            (rc != 0 ? " (" + ErrnoText(rc) + ")" : std::string()));
  }
  Identity identity;
  identity.switch_user = true;
  identity.name = user;
  identity.uid = entry.pw_uid;
  identity.gid = entry.pw_gid;
  int count = 32;
  identity.groups.resize(count);
  while (getgrouplist(user.c_str(), entry.pw_gid, identity.groups.data(), &count) < 0) {
    identity.groups.resize(count);  // `count` now holds the number needed.
  }
  identity.groups.resize(count);
  return identity;
}

Result<pid_t> Spawn(const SpawnSpec& spec) {
  const ScopedFd log_fd(
      open(spec.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (log_fd.get() < 0) {
    return Status::Internal("open " + spec.log_path + ": " + ErrnoText(errno));
  }
  const ScopedFd null_fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (null_fd.get() < 0) return Status::Internal("open /dev/null: " + ErrnoText(errno));

  // execve takes char* const[]; it does not modify the strings.
  ChildPlan plan;
  plan.program = spec.program.c_str();
  plan.argv.push_back(const_cast<char*>(spec.program.c_str()));
  for (const std::string& arg : spec.args) plan.argv.push_back(const_cast<char*>(arg.c_str()));
  plan.argv.push_back(nullptr);
  for (const std::string& var : spec.env) plan.envp.push_back(const_cast<char*>(var.c_str()));
  plan.envp.push_back(nullptr);
  plan.working_dir = spec.working_dir.c_str();
  plan.stdin_fd = null_fd.get();
  plan.log_fd = log_fd.get();
  plan.identity = &spec.identity;
  plan.parent_pid = getpid();

  Result<pid_t> result = Status::Internal("the launcher thread did not run");
  RunOnLauncherThread([&] { result = ForkAndExec(plan); });
  return result;
}

std::string DescribeWaitStatus(int wait_status) {
  if (wait_status == kNotOurChild) return "was already reaped (not a child of this process)";
  if (WIFEXITED(wait_status)) return "exited with code " + std::to_string(WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) {
    const int sig = WTERMSIG(wait_status);
    const char* description = sigdescr_np(sig);
    return "was killed by signal " + std::to_string(sig) + " (" +
           (description != nullptr ? description : "unknown") + ")";
  }
  return "changed state (wait status " + std::to_string(wait_status) + ")";
}

std::optional<int> WaitForExit(pid_t pid, milliseconds timeout) {
  std::optional<int> status;
  PollUntil(timeout, milliseconds(5), [&] {
    int wait_status = 0;
    const pid_t reaped = waitpid(pid, &wait_status, WNOHANG);
    if (reaped == pid) {
      status = wait_status;
      return true;
    }
    if (reaped < 0 && errno != EINTR) {
      status = kNotOurChild;
      return true;
    }
    return false;
  });
  return status;
}

bool HasExited(pid_t pid) {
  siginfo_t info{};
  if (waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0) return errno != EINTR;
  return info.si_pid == pid;  // Stays 0 while the child runs.
}

Result<int> PickFreeLoopbackPort() {
  const ScopedFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Status::Internal("socket: " + ErrnoText(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return Status::Unavailable("bind 127.0.0.1:0: " + ErrnoText(errno));
  }
  socklen_t length = sizeof(address);
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return Status::Internal("getsockname: " + ErrnoText(errno));
  }
  return static_cast<int>(ntohs(address.sin_port));
}

std::uint64_t FileSize(const std::string& path) {
  struct stat info {};
  if (stat(path.c_str(), &info) != 0) return 0;
  return static_cast<std::uint64_t>(info.st_size);
}

std::string LogExcerpt(const std::string& path, std::uint64_t from_offset) {
  constexpr std::uint64_t kMaxBytes = 1024 * 1024;  // Of the end, if the log is huge.
  constexpr size_t kHeadLines = 5;
  constexpr size_t kTailLines = 30;
  const std::uint64_t size = FileSize(path);
  const std::uint64_t start = std::max(from_offset, size > kMaxBytes ? size - kMaxBytes : 0);
  std::ifstream in(path, std::ios::binary);
  if (!in) return "    (cannot read " + path + ")\n";
  in.seekg(static_cast<std::streamoff>(start));
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(std::move(line));
  if (lines.empty()) return "    (nothing in " + path + ")\n";

  std::string excerpt = "    from " + path + ":\n";
  const auto quote = [&excerpt](const std::string& line) { excerpt += "    | " + line + "\n"; };
  if (lines.size() <= kHeadLines + kTailLines) {
    for (const std::string& line : lines) quote(line);
    return excerpt;
  }
  for (size_t i = 0; i < kHeadLines; ++i) quote(lines[i]);
  excerpt +=
      "    | ... (" + std::to_string(lines.size() - kHeadLines - kTailLines) + " lines left out)\n";
  for (size_t i = lines.size() - kTailLines; i < lines.size(); ++i) quote(lines[i]);
  return excerpt;
}

std::string RandomHex(int digits) {
  thread_local std::mt19937_64 engine{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::uniform_int_distribution<int> nibble(0, 15);
  std::string hex;
  for (int i = 0; i < digits; ++i) hex += kHex[nibble(engine)];
  return hex;
}

std::optional<std::string> FindExecutable(const std::string& name,
                                          const std::vector<std::string>& extra_dirs) {
  std::vector<std::string> dirs;
  const char* path = getenv("PATH");
  std::stringstream entries(path != nullptr ? path : "");
  for (std::string dir; std::getline(entries, dir, ':');) {
    if (!dir.empty()) dirs.push_back(dir);
  }
  dirs.insert(dirs.end(), extra_dirs.begin(), extra_dirs.end());
  for (const std::string& dir : dirs) {
    const std::string candidate = dir + "/" + name;
    struct stat info {};
    if (stat(candidate.c_str(), &info) == 0 && S_ISREG(info.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return std::nullopt;
}

}  // namespace txcoord::testing::internal

namespace txcoord::testing {

bool PollUntil(std::chrono::milliseconds timeout, std::chrono::milliseconds interval,
               const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return done();
    std::this_thread::sleep_for(interval);
  }
}

}  // namespace txcoord::testing
