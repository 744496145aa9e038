#include "txcoord/testing/postgres_server.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cctype>
#include <pqxx/connection>
#include <pqxx/except>
#include <pqxx/nontransaction>
#include <utility>

#include "process.h"
#include "server_process.h"

namespace txcoord::testing {
namespace {

using internal::Identity;
using internal::ServerProcess;
using internal::SpawnSpec;
using std::chrono::milliseconds;

constexpr char kDefaultBinDir[] = "/usr/lib/postgresql/15/bin";
// initdb of an empty cluster takes about a second; this only guards against a hang.
constexpr milliseconds kInitDbTimeout(120000);
// The longest prefix CreateDatabase keeps, so that prefix + "_<counter>_<6 hex>" stays within
// PostgreSQL's 63-byte identifier limit.
constexpr size_t kMaxDatabasePrefix = 40;

// A libpq connection-string value: quoted when empty or when it holds spaces, quotes or
// backslashes (which are then escaped).
std::string ConnValue(std::string_view value) {
  if (!value.empty() && value.find_first_of(" \t\n'\\") == std::string_view::npos) {
    return std::string(value);
  }
  std::string quoted = "'";
  for (const char c : value) {
    if (c == '\'' || c == '\\') quoted += '\\';
    quoted += c;
  }
  return quoted + "'";
}

// Percent-encodes everything but RFC 3986's unreserved characters.
std::string PercentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string encoded;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte) || c == '-' || c == '.' || c == '_' || c == '~') {
      encoded += c;
    } else {
      encoded += '%';
      encoded += kHex[byte >> 4];
      encoded += kHex[byte & 0xF];
    }
  }
  return encoded;
}

// `prefix` as the start of an unquoted-safe identifier: lowercase letters, digits and '_',
// starting with a letter or '_'.
std::string DatabasePrefix(std::string_view prefix) {
  std::string name;
  for (const char c : prefix) {
    const char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    const bool keep =
        (lower >= 'a' && lower <= 'z') || (lower >= '0' && lower <= '9') || lower == '_';
    name += keep ? lower : '_';
  }
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) name = "db_" + name;
  if (name.size() > kMaxDatabasePrefix) name.resize(kMaxDatabasePrefix);
  return name;
}

// A small fixed environment rather than the test's: no PG* variables from a developer's shell,
// the C locale for initdb and stable messages, and UTC so that timestamps do not depend on the
// machine.
std::vector<std::string> ChildEnvironment() {
  const char* path = getenv("PATH");
  return {std::string("PATH=") + (path != nullptr ? path : "/usr/bin:/bin"), "LC_ALL=C", "LANG=C",
          "TZ=UTC"};
}

std::string ConnInfoFor(int port, std::string_view user, std::string_view dbname) {
  return "host=127.0.0.1 port=" + std::to_string(port) + " user=" + ConnValue(user) +
         " dbname=" + ConnValue(dbname);
}

// The message of a libpq error, without the trailing newline libpq puts there.
std::string ErrorText(const std::exception& error) {
  std::string text = error.what();
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

Status ProbeConnection(const std::string& conninfo) {
  try {
    pqxx::connection connection(conninfo);
    return Status::Ok();
  } catch (const std::exception& error) {
    return Status::Unavailable(ErrorText(error));
  }
}

}  // namespace

Result<std::unique_ptr<PostgresServer>> PostgresServer::Start(PostgresOptions options) {
  std::string bin_dir = options.bin_dir;
  if (bin_dir.empty()) {
    const char* from_env = getenv("TXCOORD_PG_BIN_DIR");
    bin_dir = from_env != nullptr && from_env[0] != '\0' ? from_env : kDefaultBinDir;
  }
  for (const char* program : {"initdb", "postgres"}) {
    const std::string path = bin_dir + "/" + program;
    if (access(path.c_str(), X_OK) != 0) {
      return Status::NotFound(path + " is not an executable; install postgresql-15 or point " +
                              "TXCOORD_PG_BIN_DIR (or PostgresOptions::bin_dir) at its bin dir");
    }
  }

  Identity identity = internal::CurrentIdentity();
  if (geteuid() == 0) {
    Result<Identity> unprivileged = internal::LookUpIdentity(options.os_user_when_root);
    if (!unprivileged.ok()) {
      return unprivileged.status().WithContext(
          "start PostgreSQL: the test runs as root and PostgreSQL refuses to, so it must run as "
          "PostgresOptions::os_user_when_root");
    }
    identity = std::move(unprivileged).value();
  }

  Result<std::unique_ptr<ServerProcess>> process = ServerProcess::Create({
      .name = "postgres",
      .dir_prefix = "txcoord-pg-",
      .identity = std::move(identity),
      .graceful_signal = SIGINT,    // Fast shutdown. (SIGTERM would wait for clients to leave.)
      .immediate_signal = SIGQUIT,  // Immediate shutdown.
      // The data dir is deleted right after, so the shutdown checkpoint of a fast shutdown
      // (0.4 to 1.3 s with fsync=on here) would be wasted.
      .destroy_signal = SIGQUIT,
      .emergency_signal = SIGQUIT,
      .stop_timeout = options.stop_timeout,
  });
  if (!process.ok()) return process.status().WithContext("start PostgreSQL");

  std::unique_ptr<PostgresServer> server(
      new PostgresServer(std::move(options), std::move(bin_dir), std::move(process).value()));
  TXCOORD_RETURN_IF_ERROR(server->InitDataDir().WithContext("start PostgreSQL: initdb"));
  TXCOORD_RETURN_IF_ERROR(server->Launch().WithContext("start PostgreSQL"));
  return server;
}

PostgresServer::PostgresServer(PostgresOptions options, std::string bin_dir,
                               std::unique_ptr<internal::ServerProcess> process)
    : options_(std::move(options)), bin_dir_(std::move(bin_dir)), process_(std::move(process)) {}

PostgresServer::~PostgresServer() = default;

Status PostgresServer::InitDataDir() {
  SpawnSpec spec;
  spec.program = bin_dir_ + "/initdb";
  // No --no-sync: it would save little (~0.1 s) and leave the fresh cluster's files unflushed.
  spec.args = {"--pgdata=" + data_dir(),
               "--username=" + options_.superuser,
               "--auth=trust",
               "--encoding=UTF8",
               "--locale=C",
               "--no-instructions"};
  spec.env = ChildEnvironment();
  spec.log_path = dir() + "/initdb.log";
  Status status = process_->Run(std::move(spec), kInitDbTimeout);
  if (!status.ok() && process_->config().identity.switch_user) {
    std::string message = status.message();
    if (message.back() != '\n') message += '\n';
    message += "    (initdb ran as OS user '" + process_->config().identity.name +
               "'; every directory above " + dir() +
               " must be searchable by that user: check TMPDIR)\n";
    return Status(status.code(), std::move(message));
  }
  return status;
}

Status PostgresServer::Launch() {
  const auto spec_for_port = [this](int port) {
    SpawnSpec spec;
    spec.program = bin_dir_ + "/postgres";
    // One flag and its value per line:
    // clang-format off
    spec.args = {
        "-D", data_dir(),
        "-p", std::to_string(port),
        // The Unix socket (and its lock file) go in the temp dir, not /var/run/postgresql.
        "-k", dir(),
        "-c", "listen_addresses=127.0.0.1",
        // Durable like production: crash tests rely on what was committed surviving.
        "-c", "fsync=on",
        "-c", "synchronous_commit=on",
        "-c", "full_page_writes=on",
        "-c", "max_connections=" + std::to_string(options_.max_connections),
        "-c", "max_prepared_transactions=" + std::to_string(options_.max_prepared_transactions),
        // Small, since tests hold little data and many servers may run at once.
        "-c", "shared_buffers=32MB",
        "-c", "huge_pages=off",
        // Dynamic shared memory in files under the data dir instead of /dev/shm, so that
        // removing the temp dir leaves nothing behind even after a SIGKILL.
        "-c", "dynamic_shared_memory_type=mmap",
        // The log is the server's stderr, which the rig sends to log_path().
        "-c", "logging_collector=off",
    };
    // clang-format on
    for (const std::string& setting : options_.settings) {
      spec.args.push_back("-c");
      spec.args.push_back(setting);
    }
    spec.env = ChildEnvironment();
    spec.log_path = log_path();
    return spec;
  };
  const auto probe = [this](int port) {
    return ProbeConnection(ConnInfoFor(port, user(), "postgres") + " connect_timeout=2");
  };

  Result<int> port = internal::LaunchOnPort(*process_, port_, spec_for_port, probe,
                                            options_.start_timeout, "PostgreSQL");
  if (!port.ok()) return port.status();
  port_ = *port;
  return Status::Ok();
}

std::string PostgresServer::ConnInfo(std::string_view dbname) const {
  return ConnInfoFor(port_, user(), dbname);
}

std::string PostgresServer::Uri(std::string_view dbname) const {
  return "postgresql://" + PercentEncode(user()) + "@127.0.0.1:" + std::to_string(port_) + "/" +
         PercentEncode(dbname);
}

Result<std::string> PostgresServer::CreateDatabase(std::string_view prefix) {
  const int number = databases_created_.fetch_add(1) + 1;
  const std::string name =
      DatabasePrefix(prefix) + "_" + std::to_string(number) + "_" + internal::RandomHex(6);
  try {
    pqxx::connection connection(ConnInfo("postgres"));
    // CREATE DATABASE cannot run inside a transaction block. template0, not template1: nobody
    // can connect to it (so it cannot be "in use by other users") and no test can change it.
    pqxx::nontransaction tx(connection);
    tx.exec0("CREATE DATABASE " + tx.quote_name(name) + " TEMPLATE template0 ENCODING 'UTF8'");
  } catch (const pqxx::broken_connection& error) {
    return Status::Unavailable("create database " + name + " on port " + std::to_string(port_) +
                               ": " + ErrorText(error));
  } catch (const std::exception& error) {
    return Status::Internal("create database " + name + ": " + ErrorText(error));
  }
  return name;
}

Status PostgresServer::Stop(bool immediate) {
  return process_->Stop(immediate).WithContext("stop PostgreSQL on port " + std::to_string(port_));
}

Status PostgresServer::StartAgain() {
  if (running()) {
    return Status::Conflict("PostgreSQL is already running on port " + std::to_string(port_));
  }
  return Launch().WithContext("start PostgreSQL again");
}

bool PostgresServer::running() const { return process_->running(); }

pid_t PostgresServer::pid() const { return running() ? process_->pid() : 0; }

const std::string& PostgresServer::dir() const { return process_->dir(); }

}  // namespace txcoord::testing
