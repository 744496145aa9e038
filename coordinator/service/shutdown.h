// How txcoord reacts to SIGTERM and SIGINT.
//
//   starting  --signal-->  the process exits at once (128 + signal): nothing was served yet,
//                          and the store is safe to abandon (every acknowledged append is durable)
//   serving   --signal-->  stopping: WaitForStop() returns and the caller shuts down cleanly
//   stopping  --signal, or the grace period passes-->  the process exits at once with code 1,
//                          so a request stuck on a hung store cannot keep it alive forever
//
// The signals are blocked in every thread and taken by sigwait on one watcher thread, so they
// never interrupt a Poco or SQLite call and never run code in a signal handler.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace txcoord::service {

class ShutdownSignals {
 public:
  // Blocks SIGTERM and SIGINT in the calling thread; threads started later inherit the mask.
  // Call first thing in main, before any thread exists: a thread that does not block them would
  // receive them with the default action, which kills the process.
  static void BlockInThisThread();

  // Starts the watcher thread. REQUIRES: BlockInThisThread() was called.
  explicit ShutdownSignals(std::chrono::milliseconds grace);
  ~ShutdownSignals();  // stops the watcher; does not exit the process

  ShutdownSignals(const ShutdownSignals&) = delete;
  ShutdownSignals& operator=(const ShutdownSignals&) = delete;

  // From now on a signal asks for a clean stop instead of exiting.
  void Serving();

  // Blocks until a signal asks for a stop, and returns its number. The grace period starts when
  // the signal arrives; the caller should have finished (and destroyed this object) by then.
  int WaitForStop();

 private:
  void Watch();

  const std::chrono::milliseconds grace_;
  std::mutex mu_;
  std::condition_variable stop_requested_cv_;
  bool serving_ = false;  // GUARDED_BY(mu_)
  int stop_signal_ = 0;   // GUARDED_BY(mu_); nonzero once a stop was asked for
  bool quit_ = false;     // GUARDED_BY(mu_); the destructor asks the watcher to return
  std::thread watcher_;   // last: starts once the members above exist
};

// "SIGTERM", "SIGINT", or "a signal".
const char* SignalName(int signal);

}  // namespace txcoord::service
