#include "cleanup_registry.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <mutex>

namespace txcoord::testing::internal {
namespace {

constexpr int kSlots = 128;
constexpr int kMaxDirLength = 1024;
// Deeper than any PostgreSQL data dir or JetStream store; bounds the stack used by the removal.
constexpr int kMaxTreeDepth = 16;

struct Slot {
  // The process that registered the slot; 0 while the slot is free.
  std::atomic<pid_t> owner{0};
  // True once `dir` is completely written; cleared before the slot is freed.
  std::atomic<bool> ready{false};
  // The running child, 0 if none. See "Ownership of a child pid" in the header.
  std::atomic<pid_t> child{0};
  std::atomic<int> emergency_signal{SIGKILL};
  char dir[kMaxDirLength] = {};
};

static_assert(std::atomic<pid_t>::is_always_lock_free && std::atomic<bool>::is_always_lock_free &&
                  std::atomic<int>::is_always_lock_free,
              "the registry is read from a signal handler, so its atomics must be lock-free");

Slot g_slots[kSlots];

// The process that started the emergency cleanup, so that it runs once per process even if a
// signal arrives while the atexit hook runs it, and so that no slot is reused meanwhile.
std::atomic<pid_t> g_cleanup_started_by{0};

struct sigaction g_previous_sigint;
struct sigaction g_previous_sigterm;

void SleepMilliseconds(long ms) {
  timespec left{0, ms * 1000 * 1000};
  while (nanosleep(&left, &left) != 0 && errno == EINTR) {
  }
}

// Reaps the pids in `pending` (zeroing each one reaped) until none is left or `timeout_ms`
// has passed.
void ReapAll(pid_t (&pending)[kSlots], int timeout_ms) {
  for (int waited_ms = 0;; waited_ms += 10) {
    bool any_left = false;
    for (pid_t& pid : pending) {
      if (pid <= 0) continue;
      int wait_status = 0;
      const pid_t reaped = waitpid(pid, &wait_status, WNOHANG);
      if (reaped == pid || (reaped < 0 && errno == ECHILD)) {
        pid = 0;
      } else {
        any_left = true;
      }
    }
    if (!any_left || waited_ms >= timeout_ms) return;
    SleepMilliseconds(10);
  }
}

// Stops this process's children and removes its temp dirs. Async-signal-safe.
void EmergencyCleanup() {
  const pid_t self = getpid();
  if (g_cleanup_started_by.exchange(self) == self) return;
  const int saved_errno = errno;

  // Signal every child first, so that their shutdowns overlap.
  pid_t pending[kSlots] = {};
  for (int i = 0; i < kSlots; ++i) {
    Slot& slot = g_slots[i];
    if (slot.owner.load() != self || !slot.ready.load()) continue;
    const pid_t pid = slot.child.exchange(0);
    if (pid <= 0) continue;
    kill(pid, slot.emergency_signal.load());
    kill(pid, SIGCONT);  // In case a test froze it with SIGSTOP.
    pending[i] = pid;
  }
  // PostgreSQL's immediate shutdown waits for its backends, and SIGKILLs them itself after 5 s.
  ReapAll(pending, 6000);
  for (const pid_t pid : pending) {
    if (pid > 0) kill(pid, SIGKILL);
  }
  ReapAll(pending, 2000);

  for (Slot& slot : g_slots) {
    if (slot.owner.load() != self || !slot.ready.load()) continue;
    RemoveTreeAsyncSignalSafe(slot.dir);
  }
  errno = saved_errno;
}

void OnTerminatingSignal(int sig) {
  EmergencyCleanup();
  // Hand the signal on: put back whatever was there before and raise the signal again. It is
  // blocked while this handler runs, so it arrives as soon as the handler returns: the default
  // action ends the process with the status a shell or ctest expects from an interrupt, and a
  // previous handler runs as if it had been called first.
  sigaction(sig, sig == SIGINT ? &g_previous_sigint : &g_previous_sigterm, nullptr);
  raise(sig);
}

void InstallHandler(int sig, struct sigaction* previous) {
  struct sigaction current {};
  if (sigaction(sig, nullptr, &current) != 0) return;
  // Respect a signal the test was told to ignore (nohup, a supervisor).
  if ((current.sa_flags & SA_SIGINFO) == 0 && current.sa_handler == SIG_IGN) return;
  *previous = current;
  struct sigaction action {};
  action.sa_handler = OnTerminatingSignal;
  sigemptyset(&action.sa_mask);
  // One cleanup at a time: a SIGTERM during the SIGINT cleanup waits for it to finish.
  sigaddset(&action.sa_mask, SIGINT);
  sigaddset(&action.sa_mask, SIGTERM);
  sigaction(sig, &action, nullptr);
}

void CleanupAtExit() { EmergencyCleanup(); }

// Removes `name` (relative to `parent_fd`) and, if it is a directory, everything below it.
void RemoveTreeAt(int parent_fd, const char* name, int depth) {
  if (unlinkat(parent_fd, name, 0) == 0 || errno == ENOENT) return;
  // Linux reports EISDIR for unlink of a directory; anything else we cannot fix here.
  if (errno != EISDIR || depth > kMaxTreeDepth) return;
  const int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  alignas(dirent64) char buffer[4096];
  // Removing entries while reading a directory can make the reader skip some, so read it
  // again from the start until it is empty (or until it is clear something will not go).
  for (int pass = 0; pass < 64; ++pass) {
    bool saw_entry = false;
    lseek(fd, 0, SEEK_SET);
    for (;;) {
      const ssize_t n = getdents64(fd, buffer, sizeof(buffer));
      if (n <= 0) break;
      for (ssize_t offset = 0; offset < n;) {
        const auto* entry = reinterpret_cast<const dirent64*>(buffer + offset);
        offset += entry->d_reclen;
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        saw_entry = true;
        RemoveTreeAt(fd, entry->d_name, depth + 1);
      }
    }
    if (!saw_entry) break;
  }
  close(fd);
  unlinkat(parent_fd, name, AT_REMOVEDIR);
}

}  // namespace

void InstallCleanupHandlersOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    InstallHandler(SIGINT, &g_previous_sigint);
    InstallHandler(SIGTERM, &g_previous_sigterm);
    std::atexit(CleanupAtExit);
  });
}

Result<int> RegisterTempDir(const std::string& dir) {
  if (dir.size() >= static_cast<size_t>(kMaxDirLength)) {
    return Status::InvalidArgument("temp dir path too long for the rig's cleanup registry: " + dir +
                                   "; set TMPDIR to a shorter directory");
  }
  const pid_t self = getpid();
  if (g_cleanup_started_by.load() == self) {
    return Status::Unavailable("the test process is shutting down; not starting another server");
  }
  for (int i = 0; i < kSlots; ++i) {
    Slot& slot = g_slots[i];
    pid_t free_owner = 0;
    if (!slot.owner.compare_exchange_strong(free_owner, self)) continue;
    memcpy(slot.dir, dir.c_str(), dir.size() + 1);
    slot.child.store(0);
    slot.ready.store(true);
    return i;
  }
  return Status::Unavailable("the rig's cleanup registry is full (" + std::to_string(kSlots) +
                             " live servers); destroy servers that are no longer needed");
}

void SetChild(int slot, pid_t pid, int emergency_signal) {
  g_slots[slot].emergency_signal.store(emergency_signal);
  g_slots[slot].child.store(pid);
}

pid_t TakeChild(int slot) { return g_slots[slot].child.exchange(0); }

void Unregister(int slot) {
  g_slots[slot].ready.store(false);
  g_slots[slot].child.store(0);
  g_slots[slot].owner.store(0);
}

void RemoveTreeAsyncSignalSafe(const char* path) { RemoveTreeAt(AT_FDCWD, path, 0); }

}  // namespace txcoord::testing::internal
