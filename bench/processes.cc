#include "processes.h"

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "txcoord_process.h"

namespace txcoord::bench {
namespace {

constexpr auto kStartTimeout = std::chrono::seconds(30);
constexpr size_t kStderrTailBytes = 600;

std::string Tail(const std::string& text) {
  if (text.size() <= kStderrTailBytes) return text;
  return "..." + text.substr(text.size() - kStderrTailBytes);
}

// Fields of /proc/PID/stat after the command: the command may hold spaces and parentheses, so
// the fields start after the last ')'. Field 4 (ppid) is at index 1, 14 and 15 (utime, stime)
// at 11 and 12.
std::vector<std::string> StatFields(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  const size_t close = line.rfind(')');
  std::vector<std::string> fields;
  if (close == std::string::npos) return fields;
  std::istringstream rest(line.substr(close + 1));
  std::string field;
  while (rest >> field) fields.push_back(field);
  return fields;
}

double CpuOf(const std::vector<std::string>& fields) {
  if (fields.size() < 13) return 0;
  const double ticks = std::stod(fields[11]) + std::stod(fields[12]);
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace

Result<std::unique_ptr<Server>> Server::Start(const std::string& binary,
                                              const std::vector<std::string>& args,
                                              const std::string& stderr_path) {
  std::unique_ptr<integration::TxcoordProcess> process;
  try {
    process = std::make_unique<integration::TxcoordProcess>(binary, args, stderr_path);
  } catch (const std::runtime_error& e) {
    return Status::Unavailable("start " + binary + ": " + e.what());
  }
  const std::optional<int> port = process->WaitForListening(kStartTimeout);
  if (!port) {
    return Status::Unavailable(binary + " did not start (no listening line within 30 s, or it " +
                               "exited); its stderr: " + Tail(process->Stderr()));
  }
  auto server = std::unique_ptr<Server>(new Server(std::move(process), stderr_path));
  server->port_ = *port;
  server->name_ = binary.substr(binary.rfind('/') + 1);
  return server;
}

Server::Server(std::unique_ptr<integration::TxcoordProcess> process, std::string stderr_path)
    : process_(std::move(process)), stderr_path_(std::move(stderr_path)) {}

Server::~Server() = default;  // TxcoordProcess SIGKILLs and reaps a process still running

pid_t Server::pid() const { return process_->pid(); }

Status Server::Stop(std::chrono::milliseconds grace) {
  process_->Signal(SIGTERM);
  std::optional<int> code = process_->WaitForExit(grace);
  if (!code) {
    process_->Signal(SIGKILL);
    process_->WaitForExit(std::chrono::seconds(5));
    return Status::Unavailable(name_ + " did not stop within " + std::to_string(grace.count()) +
                               " ms of SIGTERM; killed. Its stderr: " + Tail(process_->Stderr()));
  }
  if (*code != 0) {
    return Status::Unavailable(name_ + " exited with " + std::to_string(*code) +
                               " after SIGTERM; its stderr: " + Tail(process_->Stderr()));
  }
  return Status::Ok();
}

Result<Memory> ReadMemory(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  if (!in) return Status::Unavailable("process " + std::to_string(pid) + " is gone");
  Memory m;
  std::string line;
  while (std::getline(in, line)) {
    long long kb = 0;
    if (std::sscanf(line.c_str(), "VmRSS: %lld kB", &kb) == 1) m.rss_kb = kb;
    if (std::sscanf(line.c_str(), "VmHWM: %lld kB", &kb) == 1) m.hwm_kb = kb;
  }
  return m;
}

double CpuSeconds(pid_t pid) { return CpuOf(StatFields(pid)); }

double CpuSecondsOfTree(pid_t root) {
  double total = CpuSeconds(root);
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return total;
  const std::string parent = std::to_string(root);
  while (const dirent* entry = readdir(proc)) {
    const std::string name = entry->d_name;
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::vector<std::string> fields = StatFields(static_cast<pid_t>(std::stol(name)));
    if (fields.size() > 1 && fields[1] == parent) total += CpuOf(fields);
  }
  closedir(proc);
  return total;
}

}  // namespace txcoord::bench
