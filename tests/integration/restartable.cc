#include "restartable.h"

#include <Poco/Net/ServerSocket.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <random>
#include <stdexcept>
#include <utility>

namespace txcoord::integration {

using std::chrono::seconds;

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

uint64_t SeedFromEnv() {
  const char* v = std::getenv("TXCOORD_SEED");
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : std::random_device{}();
}

int FreePortBelowEphemeralRange() {
  static std::mutex mu;
  static std::mt19937 rng{std::random_device{}()};
  int low = 32768;
  if (FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    if (std::fscanf(f, "%d", &low) != 1) low = 32768;
    std::fclose(f);
  }
  std::lock_guard lock(mu);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int port =
        10000 + static_cast<int>(rng() % static_cast<unsigned>(std::max(1, low - 10000)));
    try {
      Poco::Net::ServerSocket probe(
          Poco::Net::SocketAddress("127.0.0.1", static_cast<Poco::UInt16>(port)));
      return port;
    } catch (const std::exception&) {
    }
  }
  throw std::runtime_error("no free port below the ephemeral range");
}

Restartable::Restartable(std::string name, std::string binary,
                         std::function<std::vector<std::string>(int start)> args,
                         std::string log_dir)
    : name_(std::move(name)),
      binary_(std::move(binary)),
      args_(std::move(args)),
      log_dir_(std::move(log_dir)) {}

Restartable::Restartable(std::string name, std::string binary, std::vector<std::string> args,
                         std::string log_dir)
    : Restartable(
          std::move(name), std::move(binary), [args = std::move(args)](int) { return args; },
          std::move(log_dir)) {}

void Restartable::Start() {
  const int start = starts_++;
  const std::string log = log_dir_ + "/" + name_ + "." + std::to_string(start) + ".log";
  process_ = std::make_unique<TxcoordProcess>(binary_, args_(start), log);
  const auto port = process_->WaitForListening(seconds(30));
  ASSERT_TRUE(port.has_value()) << name_ << " did not start; its log:\n" << process_->Stderr();
}

void Restartable::Kill() {
  if (!process_) return;
  process_->Signal(SIGKILL);
  process_->WaitForExit(seconds(10));
  process_.reset();
}

void Restartable::Stop() {
  if (!process_) return;
  process_->Signal(SIGTERM);
  const auto code = process_->WaitForExit(seconds(20));
  EXPECT_EQ(code, 0) << name_ << " did not stop cleanly; its log:\n" << process_->Stderr();
  process_.reset();
}

}  // namespace txcoord::integration
