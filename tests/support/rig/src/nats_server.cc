#include "txcoord/testing/nats_server.h"

#include <nats/nats.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <utility>

#include "process.h"
#include "server_process.h"

namespace txcoord::testing {
namespace {

using internal::ServerProcess;
using internal::SpawnSpec;
using std::chrono::milliseconds;

// Per request of the readiness probe; the probe is repeated until start_timeout.
constexpr int64_t kProbeTimeoutMs = 1000;
// The longest prefix UniqueStreamName keeps; stream names become directory names.
constexpr size_t kMaxStreamPrefix = 32;

std::string NatsError(natsStatus status, jsErrCode js_error) {
  std::string text = natsStatus_GetText(status);
  if (js_error != 0) text += " (JetStream error " + std::to_string(js_error) + ")";
  return text;
}

// Ready means: a client can connect, and JetStream answers an account-info request. The port
// alone is not enough; JetStream may still be recovering its streams from the store.
Status ProbeJetStream(const std::string& url) {
  natsOptions* options = nullptr;
  natsConnection* connection = nullptr;
  jsCtx* js = nullptr;
  jsAccountInfo* account = nullptr;
  jsErrCode js_error = static_cast<jsErrCode>(0);

  natsStatus status = natsOptions_Create(&options);
  if (status == NATS_OK) status = natsOptions_SetURL(options, url.c_str());
  if (status == NATS_OK) status = natsOptions_SetTimeout(options, kProbeTimeoutMs);
  if (status == NATS_OK) status = natsOptions_SetAllowReconnect(options, false);
  if (status == NATS_OK) status = natsConnection_Connect(&connection, options);
  if (status == NATS_OK) status = natsConnection_JetStream(&js, connection, nullptr);
  if (status == NATS_OK) {
    jsOptions js_options;
    jsOptions_Init(&js_options);
    js_options.Wait = kProbeTimeoutMs;
    status = js_GetAccountInfo(&account, js, &js_options, &js_error);
  }

  jsAccountInfo_Destroy(account);
  jsCtx_Destroy(js);
  natsConnection_Destroy(connection);
  natsOptions_Destroy(options);
  if (status == NATS_OK) return Status::Ok();
  return Status::Unavailable(NatsError(status, js_error));
}

std::string UrlFor(int port) { return "nats://127.0.0.1:" + std::to_string(port); }

}  // namespace

Result<std::unique_ptr<NatsServer>> NatsServer::Start(NatsOptions options) {
  std::string server_path = options.server_path;
  if (server_path.empty()) {
    const char* from_env = getenv("TXCOORD_NATS_SERVER");
    if (from_env != nullptr && from_env[0] != '\0') {
      server_path = from_env;
    } else {
      // Debian installs it in /usr/sbin, which is not in every user's PATH.
      server_path = internal::FindExecutable("nats-server", {"/usr/sbin", "/usr/local/bin"})
                        .value_or(std::string());
    }
  }
  if (server_path.empty() || access(server_path.c_str(), X_OK) != 0) {
    return Status::NotFound("nats-server not found" +
                            (server_path.empty() ? std::string() : " at " + server_path) +
                            "; install nats-server or set TXCOORD_NATS_SERVER to its path");
  }

  Result<std::unique_ptr<ServerProcess>> process = ServerProcess::Create({
      .name = "nats-server",
      .dir_prefix = "txcoord-nats-",
      // nats-server has no objection to root, so it keeps the test's own account.
      .identity = internal::CurrentIdentity(),
      .graceful_signal = SIGINT,
      .immediate_signal = SIGKILL,
      .destroy_signal = SIGINT,  // Takes a few milliseconds.
      .emergency_signal = SIGKILL,
      .stop_timeout = options.stop_timeout,
  });
  if (!process.ok()) return process.status().WithContext("start nats-server");

  std::unique_ptr<NatsServer> server(
      new NatsServer(std::move(options), std::move(server_path), std::move(process).value()));
  TXCOORD_RETURN_IF_ERROR(server->Launch().WithContext("start nats-server"));
  return server;
}

NatsServer::NatsServer(NatsOptions options, std::string server_path,
                       std::unique_ptr<internal::ServerProcess> process)
    : options_(std::move(options)),
      server_path_(std::move(server_path)),
      process_(std::move(process)) {}

NatsServer::~NatsServer() = default;

Status NatsServer::Launch() {
  const auto spec_for_port = [this](int port) {
    SpawnSpec spec;
    spec.program = server_path_;
    spec.args = {"-js", "-sd", store_dir(), "-a", "127.0.0.1", "-p", std::to_string(port),
                 // A fixed name, so that a restarted server is the same JetStream server.
                 "--server_name", "txcoord-test-rig"};
    spec.args.insert(spec.args.end(), options_.extra_args.begin(), options_.extra_args.end());
    const char* path = getenv("PATH");
    spec.env = {std::string("PATH=") + (path != nullptr ? path : "/usr/bin:/bin")};
    spec.log_path = log_path();
    return spec;
  };
  const auto probe = [](int port) { return ProbeJetStream(UrlFor(port)); };

  Result<int> port = internal::LaunchOnPort(*process_, port_, spec_for_port, probe,
                                            options_.start_timeout, "nats-server");
  if (!port.ok()) return port.status();
  port_ = *port;
  return Status::Ok();
}

std::string NatsServer::Url() const { return UrlFor(port_); }

Status NatsServer::Stop(bool immediate) {
  return process_->Stop(immediate).WithContext("stop nats-server on port " + std::to_string(port_));
}

Status NatsServer::StartAgain() {
  if (running()) {
    return Status::Conflict("nats-server is already running on port " + std::to_string(port_));
  }
  return Launch().WithContext("start nats-server again");
}

bool NatsServer::running() const { return process_->running(); }

pid_t NatsServer::pid() const { return running() ? process_->pid() : 0; }

const std::string& NatsServer::dir() const { return process_->dir(); }

std::string NatsServer::UniqueStreamName(std::string_view prefix) {
  static std::atomic<int> streams_named{0};
  std::string name;
  for (const char c : prefix.substr(0, kMaxStreamPrefix)) {
    const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_';
    name += keep ? c : '_';
  }
  if (name.empty()) name = "stream";
  // The counter makes names unique within the process; the pid and the random part keep them
  // apart should test processes ever share a server.
  return name + "_" + std::to_string(getpid()) + "_" +
         std::to_string(streams_named.fetch_add(1) + 1) + "_" + internal::RandomHex(6);
}

}  // namespace txcoord::testing
