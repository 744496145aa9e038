// RequestGate: admits requests until a server starts stopping, and counts those in progress, so
// that the stop can wait for exactly the requests already admitted and then cut every
// connection. Poco's own graceful stop (HTTPServer::stopAll(false)) instead waits on each
// connection's lock, which is also held while a request is still being received, so one client
// that sent half a request would hold up the stop for the whole request timeout.
//
// Used by the coordinator's HTTP service and the participant SDK's callback endpoint: each
// handler Enter()s when created and Leave()s when destroyed, after its reply was flushed.
//
// Thread-safety: every call from any thread.
#pragma once

#include <condition_variable>
#include <mutex>

namespace txcoord {

class RequestGate {
 public:
  // True when admitted: the request counts as in progress until Leave().
  bool Enter() {
    std::lock_guard lock(mu_);
    if (closed_) return false;
    ++in_progress_;
    return true;
  }

  void Leave() {
    std::lock_guard lock(mu_);
    if (--in_progress_ == 0) idle_.notify_all();
  }

  // Admits no more requests.
  void Close() {
    std::lock_guard lock(mu_);
    closed_ = true;
  }

  // Waits until the requests in progress have left. REQUIRES: Close() was called.
  void WaitIdle() {
    std::unique_lock lock(mu_);
    idle_.wait(lock, [this] { return in_progress_ == 0; });
  }

  int in_progress() {
    std::lock_guard lock(mu_);
    return in_progress_;
  }

 private:
  std::mutex mu_;
  std::condition_variable idle_;
  bool closed_ = false;  // GUARDED_BY(mu_)
  int in_progress_ = 0;  // GUARDED_BY(mu_)
};

}  // namespace txcoord
