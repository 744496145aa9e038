// What the two example services share: flags, JSON and SQLite helpers, and serving a
// CallbackServer (the participant SDK's HTTP server: saga step callbacks plus the service's own
// routes) until SIGTERM. Example code: short on purpose, not a framework.
#pragma once

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <signal.h>
#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>

#include "txcoord/participant/endpoint.h"

namespace credit_limit {

using txcoord::participant::HttpRequest;
using txcoord::participant::HttpResponse;

// --name value pairs; anything else is an error with one line on stderr and exit code 2.
inline std::map<std::string, std::string> ParseFlags(
    int argc, char** argv, const std::map<std::string, std::string>& defaults,
    const std::string& usage) {
  std::map<std::string, std::string> flags = defaults;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help") {
      std::cout << usage;
      std::exit(0);
    }
    if (!arg.starts_with("--") || !defaults.contains(arg.substr(2)) || i + 1 >= argc) {
      std::cerr << argv[0] << ": bad flag " << arg << "; see --help" << std::endl;
      std::exit(2);
    }
    flags[arg.substr(2)] = argv[++i];
  }
  return flags;
}

inline std::string Json(const Poco::JSON::Object& object) {
  std::ostringstream out;
  object.stringify(out);
  return out.str();
}

// Throws (Poco's exceptions) when `body` is not a JSON object.
inline Poco::JSON::Object::Ptr ParseObject(const std::string& body) {
  return Poco::JSON::Parser().parse(body).extract<Poco::JSON::Object::Ptr>();
}

inline void Reply(HttpResponse& response, int status, const Poco::JSON::Object& body) {
  response.status = status;
  response.content_type = "application/json";
  response.body = Json(body);
}

inline void ReplyText(HttpResponse& response, std::string text) {
  response.status = 200;
  response.content_type = "text/plain";
  response.body = std::move(text);
}

inline void Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    const std::string why = err != nullptr ? err : "?";
    sqlite3_free(err);
    throw std::runtime_error(sql.substr(0, 60) + ": " + why);
  }
}

// One prepared statement; every SQLite failure throws std::runtime_error with SQLite's message.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK) Fail();
  }
  ~Statement() { sqlite3_finalize(s_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& Bind(int index, const std::string& value) {
    if (sqlite3_bind_text(s_, index, value.c_str(), -1, SQLITE_TRANSIENT) != SQLITE_OK) Fail();
    return *this;
  }
  Statement& Bind(int index, int64_t value) {
    if (sqlite3_bind_int64(s_, index, value) != SQLITE_OK) Fail();
    return *this;
  }
  // True with a row to read, false when done.
  bool Step() {
    const int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    Fail();
  }
  int64_t Int(int column) const { return sqlite3_column_int64(s_, column); }
  std::string Text(int column) const {
    const unsigned char* text = sqlite3_column_text(s_, column);
    return text != nullptr ? reinterpret_cast<const char*>(text) : "";
  }

 private:
  [[noreturn]] void Fail() const { throw std::runtime_error(sqlite3_errmsg(db_)); }

  sqlite3* const db_;
  sqlite3_stmt* s_ = nullptr;
};

inline sqlite3* OpenDatabase(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
    sqlite3_close(db);
    throw std::runtime_error("cannot open " + path);
  }
  sqlite3_busy_timeout(db, 5000);
  Exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL");
  return db;
}

// A saga step's business function that throws (Statement does on a SQLite failure) is answered
// 500 by the barrier; a SQLite failure is "could not do it now" (503, retried), so wrap it.
inline txcoord::Status Unthrown(const std::function<txcoord::Status()>& business) {
  try {
    return business();
  } catch (const std::exception& e) {
    return txcoord::Status::Unavailable(e.what());
  }
}

// Starts `server` on `listen` ("HOST:PORT", port 0 picks one), calls `started` with the bound
// port, prints "<name> listening on HOST:PORT" on stdout, and blocks until SIGTERM or SIGINT;
// then stops the server (requests in progress are answered first). Returns 0, or 1 when it
// cannot listen.
inline int ServeUntilSignal(const std::string& name, const std::string& listen,
                            txcoord::participant::CallbackServer& server,
                            const std::function<void(int port)>& started = {}) {
  auto port = server.Start(listen);
  if (!port.ok()) {
    std::cerr << name << ": cannot listen on " << listen << ": " << port.status().message()
              << std::endl;
    return 1;
  }
  if (started) started(*port);
  std::cout << name << " listening on " << listen.substr(0, listen.rfind(':')) << ":" << *port
            << std::endl;
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  int signal = 0;
  sigwait(&stop, &signal);
  server.Stop();
  return 0;
}

// Call first in main: SIGTERM and SIGINT are then taken by ServeUntilSignal's sigwait only.
inline void BlockStopSignals() {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

}  // namespace credit_limit
