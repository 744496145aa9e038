// The process-wide shared servers. initdb alone costs about a second, so tests that only need a
// database (or a stream) share one server per test process and isolate themselves with
// CreateDatabase (or UniqueStreamName).
//
// Lifetime: each server is created on first use and deleted by an atexit hook. That hook is
// registered after the server started, and so after the cleanup registry's own atexit hook
// (installed by the first server start); atexit hooks run in reverse order, so the shared
// server gets its orderly stop before the registry's emergency sweep, which then finds
// nothing left. The pointers are plain (trivially destructible) statics so that no static
// destructor races with the hook.
#include <cstdlib>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "txcoord/testing/nats_server.h"
#include "txcoord/testing/postgres_server.h"

namespace txcoord::testing {
namespace {

// The shared server of type Server: started once per process, deleted at exit.
template <typename Server>
struct Shared {
  static inline std::once_flag once;
  static inline Server* server = nullptr;
  // Why the start failed; kept so that later callers fail at once instead of retrying.
  static inline const std::string* failure = nullptr;

  static void DeleteAtExit() {
    delete server;
    server = nullptr;
  }

  static Server& Get(const char* what) {
    std::call_once(once, [] {
      Result<std::unique_ptr<Server>> started = Server::Start();
      if (!started.ok()) {
        failure = new std::string(started.status().ToString());
        return;
      }
      server = std::move(started).value().release();
      std::atexit(DeleteAtExit);
    });
    if (server == nullptr) {
      throw std::runtime_error(std::string(what) + ": the shared server could not start: " +
                               (failure != nullptr ? *failure : "it was already stopped at exit"));
    }
    return *server;
  }
};

}  // namespace

PostgresServer& SharedPostgres() { return Shared<PostgresServer>::Get("SharedPostgres()"); }

NatsServer& SharedNats() { return Shared<NatsServer>::Get("SharedNats()"); }

}  // namespace txcoord::testing
