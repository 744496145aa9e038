// CallbackTransport over HTTP/1.1 with Poco (contract section 4).
//
// Parts, each with its own lock, none held while another is taken except as noted:
//   - HttpTransport: a FIFO queue of calls served by a fixed set of worker threads, and one
//     completion thread for calls refused because the transport is stopping.
//   - SessionPool: idle kept-alive connections per participant host:port.
//   - DeadlineWatchdog: one thread that cuts the connection of a call past its whole budget, which
//     socket timeouts alone cannot bound (they bound each recv, not the sum of them).
//
// Every Poco and std exception is caught in the worker that runs the call and becomes a
// kTransient reply; nothing throws across CallbackTransport.
#include <Poco/Exception.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/Socket.h>
#include <Poco/Timespan.h>
#include <Poco/URI.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <istream>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "txcoord/coordinator/transport.h"
#include "txcoord/participant/signature.h"
#include "txcoord/status.h"

namespace txcoord::coordinator {

ReplyClass ClassifyHttpStatus(int http_status) {
  if (http_status >= 200 && http_status <= 299) return ReplyClass::kSuccess;
  if (http_status == 409) return ReplyClass::kRefused;
  if (http_status == 425) return ReplyClass::kInProgress;
  return ReplyClass::kTransient;
}

namespace {

using Clock = std::chrono::steady_clock;
using Poco::Net::HTTPClientSession;

// CallbackReply::detail's bound (transport.h).
constexpr size_t kMaxDetailBytes = 300;
constexpr std::string_view kStoppingDetail = "coordinator stopping";
constexpr std::string_view kHttpsDetail = "https callbacks are not configured";
// An idle connection older than this is closed rather than reused. Servers close idle
// connections on their own schedule (Node.js after 5 s, Poco after 10 s, txcoord's service after
// 15 s); staying under the shortest common one keeps the stale-connection retry below rare.
constexpr auto kMaxIdle = std::chrono::seconds(4);
constexpr size_t kReadChunkBytes = 16 * 1024;

// ---------------------------------------------------------------------------------------------
// Detail strings.

// The length of the UTF-8 sequence starting at text[i], or 0 when the bytes there are not a valid
// sequence (overlong forms and surrogates are taken as invalid).
size_t Utf8SequenceLength(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  size_t length = 0;
  uint32_t min_code_point = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
    min_code_point = 0x80;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    min_code_point = 0x800;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    min_code_point = 0x10000;
  } else {
    return 0;
  }
  if (i + length > text.size()) return 0;
  uint32_t code_point = lead & (0xFF >> (length + 1));
  for (size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    code_point = (code_point << 6) | (byte(i + k) & 0x3F);
  }
  if (code_point < min_code_point || code_point > 0x10FFFF) return 0;
  if (code_point >= 0xD800 && code_point <= 0xDFFF) return 0;
  return length;
}

bool OnlyWhitespaceFrom(std::string_view text, size_t i) {
  return text.find_first_not_of(" \t\r\n\v\f", i) == std::string_view::npos;
}

// One printable line of at most kMaxDetailBytes: whitespace runs (CR, LF, tab, ...) become one
// space, other control bytes and invalid UTF-8 become \xNN, valid UTF-8 is kept whole, and a cut
// text ends with "...". A reply body is the participant's to choose, so nothing in it may break
// a log line or a JSON record.
std::string OneLine(std::string_view text) {
  constexpr std::string_view kEllipsis = "...";
  std::string out;
  out.reserve(std::min(text.size(), kMaxDetailBytes));
  size_t room_for_ellipsis = 0;  // the longest prefix of `out`, at a unit boundary, that leaves it
  bool cut = false;
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    std::string unit;
    size_t consumed = 1;
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f') {
      if (out.empty() || out.back() == ' ') {
        ++i;
        continue;
      }
      unit = " ";
    } else if (c >= 0x21 && c <= 0x7E) {
      unit.assign(1, static_cast<char>(c));
    } else if (size_t n = c >= 0x80 ? Utf8SequenceLength(text, i) : 0; n > 0) {
      unit.assign(text.substr(i, n));
      consumed = n;
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      unit = {'\\', 'x', kHex[c >> 4], kHex[c & 0xF]};
    }
    if (out.size() + unit.size() > kMaxDetailBytes) {
      cut = !OnlyWhitespaceFrom(text, i);
      break;
    }
    out += unit;
    i += consumed;
    if (out.size() + kEllipsis.size() <= kMaxDetailBytes) room_for_ellipsis = out.size();
  }
  if (cut) out.resize(room_for_ellipsis);
  while (!out.empty() && out.back() == ' ') out.pop_back();
  if (cut) out += kEllipsis;
  return out;
}

void ReplaceAll(std::string& text, std::string_view what, std::string_view with) {
  if (what.empty()) return;
  for (size_t pos = text.find(what); pos != std::string::npos;
       pos = text.find(what, pos + with.size())) {
    text.replace(pos, what.size(), with);
  }
}

// The detail for the record: one line, bounded, and never the secret, even when a participant
// echoes it back. Redacted before and after OneLine, since escaping could in principle rebuild it.
std::string Detail(std::string text, const std::string& secret) {
  constexpr std::string_view kRedacted = "[redacted]";
  ReplaceAll(text, secret, kRedacted);
  std::string line = OneLine(text);
  ReplaceAll(line, secret, kRedacted);
  return line;
}

CallbackReply Transient(std::string detail) {
  CallbackReply reply;
  reply.reply_class = ReplyClass::kTransient;
  reply.detail = std::move(detail);
  return reply;
}

std::string NoReplyWithin(std::chrono::milliseconds timeout) {
  return "no reply within " + std::to_string(timeout.count()) + " ms";
}

// ---------------------------------------------------------------------------------------------
// URLs.

struct Target {
  bool https = false;
  std::string host;
  uint16_t port = 0;
  std::string host_port;  // the connection pool's key
  // The request-target exactly as written on the request line and as signed: the URL's path and
  // query, byte for byte as the caller gave them (Poco::URI would decode and re-encode them).
  std::string path;
};

bool IsSafeRequestTarget(std::string_view path) {
  return std::none_of(path.begin(), path.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c <= 0x20 || c == 0x7F;
  });
}

// The URL's parts, or a kTransient detail saying what is wrong with it. The detail never quotes
// the URL: it could carry credentials, and the record already shows the branch's URL.
Result<Target> ParseUrl(const std::string& url) {
  const auto malformed = [](std::string_view why) {
    return Status::InvalidArgument("malformed callback URL: " + std::string(why));
  };
  Poco::URI uri;
  try {
    uri = Poco::URI(url);
  } catch (const Poco::Exception&) {
    return malformed("cannot be parsed");
  }
  const bool https = uri.getScheme() == "https";
  if (!https && uri.getScheme() != "http") return malformed("the scheme must be http or https");
  if (uri.getHost().empty()) return malformed("no host");
  if (!uri.getUserInfo().empty()) return malformed("user info is not supported");
  if (uri.getPort() == 0) return malformed("port 0");

  const size_t authority_begin = url.find("://");
  if (authority_begin == std::string::npos) return malformed("no authority");
  const size_t path_begin = url.find_first_of("/?#", authority_begin + 3);
  std::string path;
  if (path_begin != std::string::npos) {
    path = url.substr(path_begin, url.find('#', path_begin) - path_begin);
  }
  if (path.empty() || path.front() != '/') path.insert(0, "/");
  if (!IsSafeRequestTarget(path)) return malformed("space or control character in the path");

  Target target;
  target.https = https;
  target.host = uri.getHost();
  target.port = uri.getPort();
  // The scheme is part of the key: a plain connection must never carry an https call.
  target.host_port =
      (https ? "https://" : "http://") + target.host + ":" + std::to_string(target.port);
  target.path = std::move(path);
  return target;
}

// Header names are RFC 9110 tokens; values must not contain CR, LF or NUL, which would let a
// value end the header early and inject others (Poco writes them unchecked).
bool IsSafeHeader(std::string_view name, std::string_view value) {
  if (name.empty()) return false;
  for (char ch : name) {
    const auto c = static_cast<unsigned char>(ch);
    const bool token = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                       std::string_view("!#$%&'*+-.^_`|~").find(ch) != std::string_view::npos;
    if (!token) return false;
  }
  return value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

// ---------------------------------------------------------------------------------------------
// SessionPool

// Idle kept-alive connections per host:port, at most max_idle_per_host each. Only a session whose
// last exchange completed cleanly (whole reply read, server agreed to keep the connection) is
// put back, so a pooled session is always at a request boundary.
//
// Thread-safe. Sessions are closed outside the lock (closing is a system call).
class SessionPool {
 public:
  explicit SessionPool(size_t max_idle_per_host) : max_idle_per_host_(max_idle_per_host) {}

  // A connected idle session for `key` that still looks usable, or null.
  std::unique_ptr<HTTPClientSession> Take(const std::string& key) {
    for (;;) {
      std::unique_ptr<HTTPClientSession> session;
      std::vector<std::unique_ptr<HTTPClientSession>> expired;
      {
        std::lock_guard lock(mu_);
        auto it = idle_.find(key);
        if (it == idle_.end()) return nullptr;
        std::deque<Idle>& sessions = it->second;
        // The front is the longest idle; the back the most recently used, the likeliest alive.
        const auto oldest_usable = Clock::now() - kMaxIdle;
        while (!sessions.empty() && sessions.front().since < oldest_usable) {
          expired.push_back(std::move(sessions.front().session));
          sessions.pop_front();
        }
        if (!sessions.empty()) {
          session = std::move(sessions.back().session);
          sessions.pop_back();
        }
        if (sessions.empty()) idle_.erase(it);
      }
      if (!session) return nullptr;
      if (LooksUsable(*session)) return session;
      // Closed by the server while idle: drop it and look at the next one.
    }
  }

  void Put(const std::string& key, std::unique_ptr<HTTPClientSession> session) {
    std::lock_guard lock(mu_);
    // Returning early closes the session: the parameter dies after the lock is released.
    if (closed_) return;
    std::deque<Idle>& sessions = idle_[key];
    if (sessions.size() >= max_idle_per_host_) return;
    sessions.push_back(Idle{std::move(session), Clock::now()});
  }

  // Closes every idle connection and keeps none from now on.
  void Close() {
    std::unordered_map<std::string, std::deque<Idle>> idle;
    {
      std::lock_guard lock(mu_);
      closed_ = true;
      idle.swap(idle_);
    }
  }

 private:
  struct Idle {
    std::unique_ptr<HTTPClientSession> session;
    Clock::time_point since;
  };

  // An idle HTTP/1.1 connection has nothing to read. Readable means the server closed it (EOF)
  // or sent something unasked; either way it cannot carry a request. This catches most closes
  // before a request is sent, so the retry in HttpTransport stays the exception.
  // One poll(2) on the descriptor: Poco's Socket::poll makes, fills and closes an epoll set for
  // each call, four system calls where one does, on every callback.
  static bool LooksUsable(HTTPClientSession& session) {
    try {
      if (!session.connected()) return false;
      pollfd probe{.fd = session.socket().impl()->sockfd(), .events = POLLIN, .revents = 0};
      // Ready (data, EOF, error, hang-up) or a failed poll: not usable.
      return ::poll(&probe, 1, 0) == 0;
    } catch (...) {
      return false;
    }
  }

  const size_t max_idle_per_host_;
  std::mutex mu_;
  bool closed_ = false;                                     // GUARDED_BY(mu_)
  std::unordered_map<std::string, std::deque<Idle>> idle_;  // GUARDED_BY(mu_)
};

// ---------------------------------------------------------------------------------------------
// DeadlineWatchdog

// Enforces each call's whole budget. A call registers its connected socket with its deadline;
// past the deadline the watchdog shuts the socket down, which makes the worker's blocked send or
// recv return at once, and the worker reports the timeout. Socket timeouts alone bound each recv,
// not the call: a participant trickling a byte at a time could hold a worker for ever.
//
// The watchdog works on its own dup() of the socket, owned by the registration, so the descriptor
// cannot be closed and reused for another connection while registered, even when Poco closes its
// own descriptor on an error. shutdown() acts on the socket, not the descriptor, so it reaches
// the worker's descriptor too.
//
// Thread-safe. One thread, from construction to destruction.
class DeadlineWatchdog {
 public:
  DeadlineWatchdog() : thread_([this] { Run(); }) {}

  ~DeadlineWatchdog() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

  DeadlineWatchdog(const DeadlineWatchdog&) = delete;
  DeadlineWatchdog& operator=(const DeadlineWatchdog&) = delete;

 private:
  struct Entry {
    int fd;  // the watchdog's own dup() of the socket
    Clock::time_point deadline;
    bool fired;
  };

 public:
  // Watches one socket from Start() until Fired() or destruction. Fired() says whether the
  // deadline cut it; ask after the exchange, whatever error the cut produced.
  class Watch {
   public:
    explicit Watch(DeadlineWatchdog& watchdog) : watchdog_(watchdog) {}
    ~Watch() { Fired(); }

    Watch(const Watch&) = delete;
    Watch& operator=(const Watch&) = delete;

    // REQUIRES: not started yet; `socket_fd` is connected.
    void Start(int socket_fd, Clock::time_point deadline) {
      const int fd = ::dup(socket_fd);
      // Without a descriptor of its own the call is bounded by its socket timeouts only, which
      // is still a bound; running out of descriptors must not fail the call on its own.
      if (fd < 0) return;
      entry_ = watchdog_.Register(fd, deadline);
      watching_ = true;
    }

    // Ends the watch (idempotent) and says whether the deadline cut the socket.
    bool Fired() {
      if (watching_) {
        fired_ = watchdog_.Unregister(entry_);
        watching_ = false;
      }
      return fired_;
    }

   private:
    DeadlineWatchdog& watchdog_;
    std::list<Entry>::iterator entry_;  // valid while watching_
    bool watching_ = false;
    bool fired_ = false;
  };

 private:
  std::list<Entry>::iterator Register(int fd, Clock::time_point deadline) {
    bool wake = false;
    std::list<Entry>::iterator it;
    {
      std::lock_guard lock(mu_);
      it = entries_.insert(entries_.end(), Entry{fd, deadline, false});
      wake = deadline < next_wake_;
    }
    if (wake) cv_.notify_one();
    return it;
  }

  bool Unregister(std::list<Entry>::iterator it) {
    int fd;
    bool fired;
    {
      std::lock_guard lock(mu_);
      fd = it->fd;
      fired = it->fired;
      entries_.erase(it);
    }
    ::close(fd);  // After the erase: Run never touches it again.
    return fired;
  }

  void Run() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      const auto now = Clock::now();
      next_wake_ = Clock::time_point::max();
      for (Entry& entry : entries_) {
        if (entry.fired) continue;
        if (entry.deadline <= now) {
          ::shutdown(entry.fd, SHUT_RDWR);  // Fails only if already shut down or not connected.
          entry.fired = true;
        } else {
          next_wake_ = std::min(next_wake_, entry.deadline);
        }
      }
      if (next_wake_ == Clock::time_point::max()) {
        cv_.wait(lock);
      } else {
        cv_.wait_until(lock, next_wake_);
      }
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::list<Entry> entries_;                                // GUARDED_BY(mu_)
  Clock::time_point next_wake_ = Clock::time_point::max();  // GUARDED_BY(mu_)
  bool stop_ = false;                                       // GUARDED_BY(mu_)
  std::thread thread_;  // Last member: starts after the others are built.
};

// ---------------------------------------------------------------------------------------------
// HttpTransport

class HttpTransport final : public CallbackTransport {
 public:
  explicit HttpTransport(const HttpTransportOptions& options)
      : options_(options),
        keep_alive_(options.max_idle_per_host > 0),
        pool_(static_cast<size_t>(std::max(options.max_idle_per_host, 0))) {
    const int threads = std::max(options.threads, 1);
    workers_.reserve(static_cast<size_t>(threads));
    idle_slots_.reserve(static_cast<size_t>(threads));
    for (int i = 0; i < threads; ++i) {
      IdleWorker* slot = idle_slots_.emplace_back(std::make_unique<IdleWorker>()).get();
      workers_.emplace_back([this, slot] { WorkerLoop(*slot); });
    }
    refuser_ = std::thread([this] { RefuserLoop(); });
  }

  ~HttpTransport() override {
    Shutdown();
    {
      std::lock_guard lock(mu_);
      exiting_ = true;
    }
    refused_cv_.notify_all();
    refuser_.join();  // It completes whatever was refused before exiting.
  }

  void Send(CallbackRequest request, std::function<void(CallbackReply)> done) override {
    Call call{std::move(request), std::move(done)};
    IdleWorker* wake = nullptr;
    bool refused = false;
    {
      std::lock_guard lock(mu_);
      if (!stopping_) {
        queue_.push_back(std::move(call));
        if (!idle_.empty()) {
          wake = idle_.back();
          idle_.pop_back();
          wake->signaled = true;
        }
      } else {
        refused_.push_back(std::move(call));
        ++refused_total_;
        refused = true;
      }
    }
    // Notified after the unlock: a worker woken under the lock would only block on it again,
    // one more context switch per call. With no idle worker, a busy one takes the call when it
    // finishes its own.
    if (wake != nullptr) wake->cv.notify_one();
    if (refused) refused_cv_.notify_one();
  }

  // From inside a `done` on one of this transport's workers, the call waits in that worker's
  // hand for the `done` to return and then runs there: no other worker woken, one context switch
  // less per callback of a transaction that goes on step by step. Anywhere else, and for a
  // second call from the same `done`, it is a Send.
  void SendNext(CallbackRequest request, std::function<void(CallbackReply)> done) override {
    if (tls_worker_of_ == this && !tls_next_) {
      tls_next_.emplace(Call{std::move(request), std::move(done)});
      return;
    }
    Send(std::move(request), std::move(done));
  }

  // Stops the workers after their current call, hands the queued calls to the refuser thread,
  // and returns once both the calls in progress and the queued ones have completed. Safe to call
  // more than once and from several threads. Must not be called from a `done` (it would wait for
  // itself) or while holding a lock that a `done` takes.
  void Shutdown() override {
    std::lock_guard shutdown_lock(shutdown_mu_);
    uint64_t refused_so_far;
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      while (!queue_.empty()) {
        refused_.push_back(std::move(queue_.front()));
        queue_.pop_front();
        ++refused_total_;
      }
      refused_so_far = refused_total_;
      for (IdleWorker* idle : idle_) {
        idle->signaled = true;
        idle->cv.notify_one();
      }
      idle_.clear();
    }
    refused_cv_.notify_all();
    for (std::thread& worker : workers_) worker.join();
    workers_.clear();
    {
      // Waits for the calls refused until now only: a `done` that sends again at once must not
      // keep Shutdown from returning.
      std::unique_lock lock(mu_);
      refused_done_cv_.wait(lock, [&] { return refused_completed_ >= refused_so_far; });
    }
    pool_.Close();
  }

 private:
  struct Call {
    CallbackRequest request;
    std::function<void(CallbackReply)> done;
  };

  // A worker waiting for a call. Each has its own condition variable, so that Send wakes the
  // most recently idle worker (LIFO) instead of whichever one a shared condition variable picks.
  // Owned by the transport, not the worker's stack: Send notifies after unlocking, when the
  // worker may already have woken and, at a Shutdown, returned.
  struct IdleWorker {
    std::condition_variable cv;
    bool signaled = false;  // GUARDED_BY(mu_): removed from idle_ and woken
  };

  // `done` belongs to the caller; an exception from it must not end a transport thread, and
  // there is no one to report it to, so it is swallowed. Callers must not throw from `done`.
  static void Complete(Call& call, CallbackReply reply) {
    if (!call.done) return;
    try {
      call.done(std::move(reply));
    } catch (...) {
    }
  }

  void WorkerLoop(IdleWorker& self) {
    tls_worker_of_ = this;
    for (;;) {
      Call call;
      bool have = false;
      {
        std::unique_lock lock(mu_);
        if (tls_next_) {
          // The call the last `done` handed this thread: it runs here unless the transport
          // stops, and then it is refused like every queued call.
          call = std::move(*tls_next_);
          tls_next_.reset();
          have = true;
          if (stopping_) {
            refused_.push_back(std::move(call));
            ++refused_total_;
            lock.unlock();
            refused_cv_.notify_one();
            return;
          }
        }
        while (!have && !stopping_ && queue_.empty()) {
          // Idle, on top of the stack: the next Send wakes this thread, whose stack and cache
          // are still warm, rather than the longest idle one.
          self.signaled = false;
          idle_.push_back(&self);
          self.cv.wait(lock, [&] { return self.signaled; });
          // Signaled by Send (another worker may have taken that call meanwhile) or Shutdown;
          // either removed `self` from idle_.
        }
        // Shutdown moved the queue to refused_ when it set stopping_.
        if (!have) {
          if (stopping_) return;
          call = std::move(queue_.front());
          queue_.pop_front();
        }
      }
      CallbackReply reply;
      try {
        reply = Execute(call.request);
      } catch (const std::exception& e) {
        // Execute catches what Poco throws; this is std::bad_alloc and the like.
        reply = Transient(
            Detail(std::string("transport error: ") + e.what(), options_.callback_secret));
      } catch (...) {
        reply = Transient("transport error");
      }
      Complete(call, std::move(reply));
    }
  }

  // Completes refused calls: those queued when Shutdown began and every Send after it. A thread
  // of its own, alive until the destructor, so that `done` never runs inside Send nor on the
  // thread that called Shutdown, and a late Send costs no thread creation.
  void RefuserLoop() {
    std::unique_lock lock(mu_);
    for (;;) {
      refused_cv_.wait(lock, [this] { return exiting_ || !refused_.empty(); });
      if (refused_.empty()) return;  // exiting_, and nothing left to complete.
      Call call = std::move(refused_.front());
      refused_.pop_front();
      lock.unlock();
      Complete(call, Transient(std::string(kStoppingDetail)));
      lock.lock();
      ++refused_completed_;
      refused_done_cv_.notify_all();
    }
  }

  // One call, start to end. The budget starts when a worker takes the call, not when it was
  // queued: a backlog must not turn into timeouts of calls that were never tried.
  CallbackReply Execute(const CallbackRequest& request) {
    const auto deadline = Clock::now() + request.timeout;
    Result<Target> target = ParseUrl(request.url);
    if (!target.ok()) return Transient(target.status().message());
    if (target->https && options_.tls_context.isNull()) return Transient(std::string(kHttpsDetail));

    Poco::Net::HTTPRequest http(Poco::Net::HTTPRequest::HTTP_POST, target->path,
                                Poco::Net::HTTPMessage::HTTP_1_1);
    if (std::string problem = SetHeaders(request, target->path, http); !problem.empty()) {
      return Transient(Detail(std::move(problem), options_.callback_secret));
    }

    // At most two rounds: the second only when a reused connection turned out to be closed.
    for (int round = 0;; ++round) {
      std::unique_ptr<HTTPClientSession> session;
      if (round == 0 && keep_alive_) session = pool_.Take(target->host_port);
      const bool reused = session != nullptr;
      if (!session) {
        if (target->https) {
          session = std::make_unique<Poco::Net::HTTPSClientSession>(target->host, target->port,
                                                                    options_.tls_context);
        } else {
          session = std::make_unique<HTTPClientSession>(target->host, target->port);
        }
        session->setKeepAlive(keep_alive_);
        // The pool decides when an idle connection is too old (kMaxIdle); Poco's own idle
        // timeout would silently reconnect inside sendRequest and hide whether a connection
        // was reused.
        session->setKeepAliveTimeout(Poco::Timespan(24 * 3600, 0));
      }
      Exchange exchange = SendOnce(*session, http, request, *target, deadline);
      if (exchange.reusable) pool_.Put(target->host_port, std::move(session));
      // Retried once, on a fresh connection, when a reused one failed with no reply byte: the
      // server closed the idle connection as the request went out (Poco reports
      // NoMessageException or ConnectionResetException). The server did not act on the request
      // then: it drops a connection between requests, not while handling one. The rare case
      // where it crashed mid-request is covered by the contract (every phase is idempotent).
      // The retry carries the same Tx-Attempt and counts as the same attempt: the engine asked
      // for one, and a connection it did not choose going stale is not a participant failure.
      // (Poco has a reconnect of its own for when the very first write on a kept-alive session
      // fails; that needs a reset already received, which SessionPool::Take sees first.)
      if (exchange.stale_connection && reused && Clock::now() < deadline) continue;
      return std::move(exchange.reply);
    }
  }

  // The contract's headers (section 4), after the extra ones so that those cannot replace them.
  // Returns what is wrong, or "" when the request is ready.
  std::string SetHeaders(const CallbackRequest& request, const std::string& path,
                         Poco::Net::HTTPRequest& http) const {
    for (const auto& [name, value] : request.extra_headers) {
      if (!IsSafeHeader(name, value)) return "invalid extra header \"" + name + "\"";
      http.set(name, value);
    }
    const std::pair<std::string_view, const std::string&> ids[] = {
        {"Tx-Gtid", request.gtid},
        {"Tx-Branch-Id", request.branch_id},
        {"Tx-Phase", request.phase}};
    for (const auto& [name, value] : ids) {
      if (!IsSafeHeader(name, value)) return "invalid " + std::string(name) + " header value";
      http.set(std::string(name), value);
    }
    http.set("Tx-Attempt", std::to_string(request.attempt));
    // An optional hint passed through from the client: a malformed one is dropped rather than
    // failing a commit for ever.
    if (!request.traceparent.empty() && IsSafeHeader("traceparent", request.traceparent)) {
      http.set("traceparent", request.traceparent);
    }
    if (!options_.callback_secret.empty()) {
      const int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
      Result<std::string> signature =
          participant::SignCallback(options_.callback_secret, now_s, path, request.body);
      if (!signature.ok()) return "cannot sign the callback: " + signature.status().message();
      http.set(std::string(participant::kTimestampHeader), std::to_string(now_s));
      http.set(std::string(participant::kSignatureHeader), *signature);
    }
    http.setContentType("application/json");
    http.setContentLength64(static_cast<Poco::Int64>(request.body.size()));
    return "";
  }

  struct Exchange {
    CallbackReply reply;
    bool reusable = false;          // the session may go back to the pool
    bool stale_connection = false;  // failed before any reply byte, in a way a closed idle
                                    // connection explains (see Execute)
  };

  // Sends the request on `session` and reads the reply. Never throws.
  Exchange SendOnce(HTTPClientSession& session, Poco::Net::HTTPRequest& http,
                    const CallbackRequest& request, const Target& target,
                    Clock::time_point deadline) {
    Exchange exchange;
    const std::string& secret = options_.callback_secret;
    DeadlineWatchdog::Watch watch(watchdog_);
    // Only the watchdog's cut counts as a timeout here: a complete reply that arrived just at the
    // deadline is still a reply, and a socket timeout is reported by Poco as TimeoutException.
    const auto timed_out = [&] { return watch.Fired(); };
    try {
      const auto remaining =
          std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now());
      // A zero Poco::Timespan means "no timeout", so an exhausted budget must stop here.
      if (remaining.count() <= 0) {
        exchange.reply = Transient(NoReplyWithin(request.timeout));
        return exchange;
      }
      // Connect is bounded by what is left of the budget, and the watchdog bounds everything
      // after it to the deadline. The socket's send and receive timeouts are only a backstop
      // (for when the watchdog cannot take a descriptor): they are the call's whole timeout,
      // which is never shorter than what is left of it, so they cannot end a call early. Being
      // the same for every call with the same timeout, they are set when the connection is made
      // and again only when a call's timeout differs: two system calls less per callback.
      // Name resolution is not bounded (getaddrinfo has no timeout); participant URLs are
      // expected to be IP addresses or names the resolver knows.
      const Poco::Timespan whole(
          std::chrono::duration_cast<std::chrono::microseconds>(request.timeout).count());
      if (!session.connected()) {
        // Applied by Poco when sendRequest connects.
        session.setTimeout(Poco::Timespan(remaining.count()), whole, whole);
      } else if (session.getTimeout() != whole) {
        // getTimeout is the receive timeout last given to this session. Depending on the Poco
        // version, setTimeout reaches a connected socket or only the next connection, so the
        // socket is told too.
        session.setTimeout(Poco::Timespan(remaining.count()), whole, whole);
        session.socket().setSendTimeout(whole);
        session.socket().setReceiveTimeout(whole);
      }
      std::ostream& out = session.sendRequest(http);  // Connects a fresh session.
      watch.Start(session.socket().impl()->sockfd(), deadline);
      out.write(request.body.data(), static_cast<std::streamsize>(request.body.size()));
      out.flush();  // A failure is kept by the session and rethrown by receiveResponse.

      Poco::Net::HTTPResponse response;
      std::istream& in = session.receiveResponse(response);
      std::string body;
      const size_t max_bytes = options_.max_reply_bytes;
      char chunk[kReadChunkBytes];
      // Reads one byte past the limit to tell a body of exactly max_bytes from a longer one.
      while (body.size() <= max_bytes) {
        in.read(chunk,
                static_cast<std::streamsize>(std::min(sizeof chunk, max_bytes + 1 - body.size())));
        body.append(chunk, static_cast<size_t>(in.gcount()));
        if (!in) break;
      }
      // The reply streams keep read errors to themselves; the session has the cause.
      if (session.networkException() != nullptr) session.networkException()->rethrow();
      const bool oversized = body.size() > max_bytes;
      if (oversized) body.resize(max_bytes);
      const bool complete =
          oversized || (in.eof() && !in.bad() &&
                        (!response.hasContentLength() ||
                         static_cast<Poco::Int64>(body.size()) == response.getContentLength64()));
      if (timed_out()) {
        exchange.reply = Transient(NoReplyWithin(request.timeout));
        return exchange;
      }
      const int status = static_cast<int>(response.getStatus());
      std::string text = "HTTP " + std::to_string(status);
      if (!complete) {
        // The status line arrived but the reply broke off. Only a whole reply counts: an
        // idempotent callback may be sent again, a half-read one must not be trusted.
        exchange.reply = Transient(Detail(text + " reply broke off before its end", secret));
        return exchange;
      }
      if (!body.empty()) text += ": " + body;
      exchange.reply.reply_class = ClassifyHttpStatus(status);
      exchange.reply.http_status = status;
      exchange.reply.detail = Detail(std::move(text), secret);
      // A body past the limit is left unread, so the connection is not at a request boundary.
      exchange.reusable = keep_alive_ && response.getKeepAlive() && !oversized;
      return exchange;
    } catch (const Poco::Net::NoMessageException&) {
      exchange.stale_connection = true;
      exchange.reply = Transient("connection closed without a reply");
    } catch (const Poco::Net::ConnectionResetException&) {
      exchange.stale_connection = true;
      exchange.reply = Transient("connection reset");
    } catch (const Poco::Net::ConnectionRefusedException&) {
      exchange.reply = Transient(Detail("connection refused by " + target.host_port, secret));
    } catch (const Poco::Net::DNSException&) {
      exchange.reply = Transient(Detail("cannot resolve host " + target.host, secret));
    } catch (const Poco::TimeoutException&) {
      exchange.reply = Transient(NoReplyWithin(request.timeout));
    } catch (const Poco::Net::MessageException& e) {
      exchange.reply = Transient(Detail("malformed HTTP reply: " + e.message(), secret));
    } catch (const Poco::Exception& e) {
      exchange.reply = Transient(Detail(e.displayText(), secret));
    } catch (const std::exception& e) {
      exchange.reply = Transient(Detail(std::string("transport error: ") + e.what(), secret));
    }
    // Whatever error a cut socket produced, the cause is the budget.
    if (timed_out()) {
      exchange.stale_connection = false;
      exchange.reply = Transient(NoReplyWithin(request.timeout));
    }
    return exchange;
  }

  const HttpTransportOptions options_;
  const bool keep_alive_;  // false when no idle connection may be kept
  SessionPool pool_;
  DeadlineWatchdog watchdog_;

  std::mutex shutdown_mu_;  // Serializes Shutdown calls; taken before mu_.
  std::mutex mu_;
  std::condition_variable refused_cv_;       // refused_ not empty, or exiting_
  std::condition_variable refused_done_cv_;  // refused_completed_ grew
  std::deque<Call> queue_;                   // GUARDED_BY(mu_)
  std::vector<IdleWorker*> idle_;            // GUARDED_BY(mu_): waiting workers, last idle last
  // On a worker thread: its transport, and the call a `done` handed it with SendNext.
  static inline thread_local HttpTransport* tls_worker_of_ = nullptr;
  static inline thread_local std::optional<Call> tls_next_;
  std::deque<Call> refused_;        // GUARDED_BY(mu_)
  uint64_t refused_total_ = 0;      // GUARDED_BY(mu_): calls ever put in refused_
  uint64_t refused_completed_ = 0;  // GUARDED_BY(mu_): of those, whose done has returned
  bool stopping_ = false;           // GUARDED_BY(mu_)
  bool exiting_ = false;            // GUARDED_BY(mu_)
  std::vector<std::unique_ptr<IdleWorker>> idle_slots_;  // one per worker, alive until the end

  // Started last, in the constructor body, when everything they use exists.
  std::vector<std::thread> workers_;  // Only the constructor and Shutdown touch it.
  std::thread refuser_;
};

}  // namespace

std::unique_ptr<CallbackTransport> NewHttpTransport(const HttpTransportOptions& options) {
  return std::make_unique<HttpTransport>(options);
}

}  // namespace txcoord::coordinator
