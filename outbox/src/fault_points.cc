#include "fault_points.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace txcoord::outbox {
namespace {

std::vector<std::pair<std::string, double>> ParseFaultPoints() {
  std::vector<std::pair<std::string, double>> points;
  const char* env = std::getenv("TXCOORD_FAULT_POINTS");
  if (env == nullptr) return points;
  std::string text = env;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(start, end - start);
    const size_t eq = item.find('=');
    if (eq != std::string::npos) {
      points.emplace_back(item.substr(0, eq), std::strtod(item.c_str() + eq + 1, nullptr));
    }
    start = end + 1;
  }
  return points;
}

}  // namespace

void FaultPoint(const char* name) {
  static const std::vector<std::pair<std::string, double>> points = ParseFaultPoints();
  if (points.empty()) return;
  for (const auto& [point, probability] : points) {
    if (point != name) continue;
    thread_local std::mt19937_64 engine{std::random_device{}()};
    if (std::uniform_real_distribution<double>(0, 1)(engine) < probability) {
      static const char kMessage[] = "txrelay: fault point reached, exiting\n";
      (void)!write(2, kMessage, sizeof kMessage - 1);
      _exit(kFaultExitCode);
    }
  }
}

}  // namespace txcoord::outbox
