#include "server_process.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <utility>

#include "cleanup_registry.h"

namespace txcoord::testing::internal {
namespace {

using std::chrono::milliseconds;

// How often readiness probes run. Short, since each test pays it at least once.
constexpr milliseconds kProbeInterval(20);
// How long a child gets to die after SIGKILL before we report it as stuck.
constexpr milliseconds kKillTimeout(10000);

std::string ToLower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

std::string ErrnoText(int err) { return std::system_category().message(err); }

}  // namespace

std::string TempRoot() {
  const char* tmpdir = getenv("TMPDIR");
  return tmpdir != nullptr && tmpdir[0] != '\0' ? tmpdir : "/tmp";
}

Result<std::unique_ptr<ServerProcess>> ServerProcess::Create(Config config) {
  InstallCleanupHandlersOnce();

  std::string pattern = TempRoot() + "/" + config.dir_prefix + "XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    return Status::Unavailable("mkdtemp " + pattern + ": " + ErrnoText(errno) +
                               "; is TMPDIR writable?");
  }
  const std::string dir = pattern;
  Result<int> slot = RegisterTempDir(dir);
  if (!slot.ok()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
    return slot.status();
  }
  // From here on the object owns the dir and the slot, and its destructor releases both.
  std::unique_ptr<ServerProcess> process(new ServerProcess(std::move(config), dir, *slot));

  const Identity& identity = process->config_.identity;
  if (identity.switch_user && chown(dir.c_str(), identity.uid, identity.gid) != 0) {
    return Status::Internal("chown " + dir + " to " + identity.name + ": " + ErrnoText(errno));
  }
  return process;
}

ServerProcess::ServerProcess(Config config, std::string dir, int slot)
    : config_(std::move(config)), dir_(std::move(dir)), slot_(slot), owner_pid_(getpid()) {}

ServerProcess::~ServerProcess() {
  if (getpid() != owner_pid_) return;  // Inherited across fork(); the parent owns the server.
  Status stopped = StopWith(config_.destroy_signal);
  if (!stopped.ok()) {
    std::fprintf(stderr, "txcoord test rig: %s\n", stopped.ToString().c_str());
  }
  std::error_code error;
  std::filesystem::remove_all(dir_, error);
  if (error) {
    std::fprintf(stderr, "txcoord test rig: could not remove %s: %s\n", dir_.c_str(),
                 error.message().c_str());
  }
  Unregister(slot_);
}

Status ServerProcess::Launch(SpawnSpec spec) {
  if (pid_.load() != 0) {
    if (running()) {
      return Status::Conflict(config_.name + " is already running (pid " +
                              std::to_string(pid_.load()) + ")");
    }
    ReapIfExited();
  }
  spec.identity = config_.identity;
  spec.working_dir = dir_;
  log_path_ = spec.log_path;
  log_offset_ = FileSize(log_path_);
  Result<pid_t> pid = Spawn(spec);
  if (!pid.ok()) return pid.status();
  pid_.store(*pid);
  SetChild(slot_, *pid, config_.emergency_signal);
  return Status::Ok();
}

Status ServerProcess::AwaitReady(milliseconds timeout, const std::function<Status()>& probe) {
  Status last_attempt = Status::Unavailable("not tried");
  std::optional<std::string> exit;
  const bool ready = PollUntil(timeout, kProbeInterval, [&] {
    last_attempt = probe();
    if (last_attempt.ok()) return true;
    exit = ReapIfExited();
    return exit.has_value();
  });
  if (ready && last_attempt.ok()) return Status::Ok();

  std::string message;
  if (exit.has_value()) {
    message = config_.name + " " + *exit + " before it accepted connections";
  } else {
    message = config_.name + " did not accept connections within " +
              std::to_string(timeout.count()) + " ms (last attempt: " + last_attempt.message() +
              ")";
    // Leave no half-started server behind.
    Status stopped = Stop(/*immediate=*/true);
    if (!stopped.ok()) message += "; and stopping it failed: " + stopped.message();
  }
  return Status::Unavailable(message + "\n" + LogExcerpt(log_path_, log_offset_));
}

bool ServerProcess::LogSinceLaunchContains(std::string_view needle) const {
  std::ifstream in(log_path_, std::ios::binary);
  if (!in) return false;
  in.seekg(static_cast<std::streamoff>(log_offset_));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return ToLower(text).find(ToLower(std::string(needle))) != std::string::npos;
}

Status ServerProcess::Run(SpawnSpec spec, milliseconds timeout) {
  spec.identity = config_.identity;
  spec.working_dir = dir_;
  Result<pid_t> spawned = Spawn(spec);
  if (!spawned.ok()) return spawned.status();
  const pid_t pid = *spawned;
  SetChild(slot_, pid, SIGKILL);

  // Wait without reaping, so that the pid stays ours until we take it out of the registry.
  const bool exited = PollUntil(timeout, milliseconds(5), [pid] { return HasExited(pid); });
  if (TakeChild(slot_) != pid) {
    return Status::Unavailable(spec.program + " was stopped: the test process is shutting down");
  }
  if (!exited) kill(pid, SIGKILL);
  const std::optional<int> wait_status = WaitForExit(pid, kKillTimeout);
  if (!exited) {
    return Status::Unavailable(spec.program + " did not finish within " +
                               std::to_string(timeout.count()) + " ms; killed it\n" +
                               LogExcerpt(spec.log_path));
  }
  if (!wait_status.has_value() || !WIFEXITED(*wait_status) || WEXITSTATUS(*wait_status) != 0) {
    return Status::Internal(spec.program + " " +
                            (wait_status.has_value() ? DescribeWaitStatus(*wait_status)
                                                     : std::string("could not be reaped")) +
                            "\n" + LogExcerpt(spec.log_path));
  }
  return Status::Ok();
}

Status ServerProcess::Stop(bool immediate) {
  return StopWith(immediate ? config_.immediate_signal : config_.graceful_signal);
}

Status ServerProcess::StopWith(int sig) {
  const pid_t pid = TakeChild(slot_);
  pid_.store(0);
  if (pid == 0) return Status::Ok();  // Not running, or the emergency cleanup has it.

  kill(pid, sig);
  // A test may have frozen the server with SIGSTOP; a stopped process acts on no signal but
  // SIGKILL until it is continued.
  kill(pid, SIGCONT);
  std::optional<int> wait_status = WaitForExit(pid, config_.stop_timeout);
  if (wait_status.has_value()) return Status::Ok();

  // Tests must not hang on a server that ignores its shutdown signal; say so and kill it.
  std::fprintf(stderr,
               "txcoord test rig: %s (pid %d) did not exit within %lld ms of %s; "
               "sending SIGKILL\n",
               config_.name.c_str(), static_cast<int>(pid),
               static_cast<long long>(config_.stop_timeout.count()), sigabbrev_np(sig));
  kill(pid, SIGKILL);
  wait_status = WaitForExit(pid, kKillTimeout);
  if (!wait_status.has_value()) {
    return Status::Internal(config_.name + " (pid " + std::to_string(pid) +
                            ") did not exit even after SIGKILL");
  }
  return Status::Ok();
}

bool ServerProcess::running() const {
  const pid_t pid = pid_.load();
  return pid != 0 && !HasExited(pid);
}

std::optional<std::string> ServerProcess::ReapIfExited() {
  const pid_t pid = pid_.load();
  if (pid == 0 || !HasExited(pid)) return std::nullopt;
  pid_.store(0);
  if (TakeChild(slot_) != pid) return "was stopped by the rig's emergency cleanup";
  const std::optional<int> wait_status = WaitForExit(pid, kKillTimeout);
  return wait_status.has_value() ? DescribeWaitStatus(*wait_status) : "could not be reaped";
}

Result<int> LaunchOnFreePort(ServerProcess& process,
                             const std::function<SpawnSpec(int port)>& spec_for_port,
                             const std::function<Status(int port)>& probe, milliseconds timeout) {
  constexpr int kAttempts = 5;
  Status last = Status::Unavailable("not tried");
  for (int attempt = 1; attempt <= kAttempts; ++attempt) {
    Result<int> port = PickFreeLoopbackPort();
    if (!port.ok()) return port.status();
    TXCOORD_RETURN_IF_ERROR(process.Launch(spec_for_port(*port)));
    last = process.AwaitReady(timeout, [&] { return probe(*port); });
    if (last.ok()) return *port;
    if (process.running() || !process.LogSinceLaunchContains("address already in use")) {
      return last;
    }
  }
  return last.WithContext("every port tried was taken (" + std::to_string(kAttempts) +
                          " attempts)");
}

Result<int> LaunchOnPort(ServerProcess& process, int port,
                         const std::function<SpawnSpec(int port)>& spec_for_port,
                         const std::function<Status(int port)>& probe, milliseconds timeout,
                         std::string_view server_name) {
  if (port == 0) return LaunchOnFreePort(process, spec_for_port, probe, timeout);
  TXCOORD_RETURN_IF_ERROR(process.Launch(spec_for_port(port)));
  Status ready = process.AwaitReady(timeout, [&] { return probe(port); });
  if (!ready.ok() && process.LogSinceLaunchContains("address already in use")) {
    return Status::Unavailable("port " + std::to_string(port) +
                               " was taken by another process while " + std::string(server_name) +
                               " was stopped: " + ready.message());
  }
  if (!ready.ok()) return ready;
  return port;
}

}  // namespace txcoord::testing::internal
