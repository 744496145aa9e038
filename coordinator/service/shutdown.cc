#include "shutdown.h"

#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <ctime>

namespace txcoord::service {
namespace {

sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

constexpr int kExitForced = 1;

}  // namespace

void ShutdownSignals::BlockInThisThread() {
  const sigset_t set = StopSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

ShutdownSignals::ShutdownSignals(std::chrono::milliseconds grace)
    : grace_(grace), watcher_([this] { Watch(); }) {}

ShutdownSignals::~ShutdownSignals() {
  {
    std::lock_guard lock(mu_);
    quit_ = true;
  }
  // Wakes the watcher from sigwait: a signal sent to that thread alone, then told apart from a
  // real one by quit_. It stops nothing: the watcher only ever takes SIGTERM through sigwait.
  pthread_kill(watcher_.native_handle(), SIGTERM);  // NOLINT(bugprone-bad-signal-to-kill-thread)
  watcher_.join();
}

void ShutdownSignals::Serving() {
  std::lock_guard lock(mu_);
  serving_ = true;
}

int ShutdownSignals::WaitForStop() {
  std::unique_lock lock(mu_);
  stop_requested_cv_.wait(lock, [this] { return stop_signal_ != 0; });
  return stop_signal_;
}

void ShutdownSignals::Watch() {
  const sigset_t set = StopSignals();
  std::chrono::steady_clock::time_point deadline{};
  while (true) {
    int signal = 0;
    if (deadline == std::chrono::steady_clock::time_point{}) {
      if (sigwait(&set, &signal) != 0) continue;
    } else {
      const auto left = std::max(deadline - std::chrono::steady_clock::now(),
                                 std::chrono::steady_clock::duration::zero());
      const auto left_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
      const timespec timeout{static_cast<time_t>(left_ns / 1'000'000'000),
                             static_cast<long>(left_ns % 1'000'000'000)};
      signal = sigtimedwait(&set, nullptr, &timeout);
      if (signal < 0 && errno == EINTR) continue;
    }
    std::unique_lock lock(mu_);
    if (quit_) return;
    if (signal < 0) {
      spdlog::error("still stopping {} s after {}: exiting without waiting any longer",
                    std::chrono::duration_cast<std::chrono::seconds>(grace_).count(),
                    SignalName(stop_signal_));
      std::_Exit(kExitForced);
    }
    if (!serving_) std::_Exit(128 + signal);
    if (stop_signal_ != 0) {
      spdlog::warn("{} received again while stopping: exiting without waiting any longer",
                   SignalName(signal));
      std::_Exit(kExitForced);
    }
    stop_signal_ = signal;
    deadline = std::chrono::steady_clock::now() + grace_;
    stop_requested_cv_.notify_all();
  }
}

const char* SignalName(int signal) {
  switch (signal) {
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    default:
      return "a signal";
  }
}

}  // namespace txcoord::service
