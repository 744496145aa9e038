// The closed-loop runner and the floors (floors.h), shared by the benchmark programs.
#include "floors.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <latch>
#include <pqxx/pqxx>
#include <thread>
#include <utility>

#include "json_line.h"

namespace txcoord::bench {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxErrorSamples = 5;
constexpr size_t kSyncBlockBytes = 4096;

// The log's own rule for its sessions (postgres_log.cc): commits wait for the WAL flush.
void RequireSynchronousCommit(pqxx::connection& c) {
  pqxx::nontransaction n(c);
  if (n.exec1("SHOW synchronous_commit")[0].as<std::string>() == "off") {
    n.exec0("SET synchronous_commit TO on");
  }
}

}  // namespace

CpuTimes SampleCpu() {
  CpuTimes t;
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) == 0) {
    const auto seconds = [](const timeval& tv) {
      return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
    };
    t.self_s = seconds(ru.ru_utime) + seconds(ru.ru_stime);
  }
  // "cpu  user nice system idle iowait irq softirq steal ...", in clock ticks. Busy is all but
  // idle, iowait and steal (time the hypervisor gave to another guest).
  std::ifstream in("/proc/stat");
  std::string cpu;
  long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0;
  if (in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq && cpu == "cpu") {
    t.machine_busy_s = static_cast<double>(user + nice + system + irq + softirq) /
                       static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  return t;
}

double LoopResult::percentile_us(double p) const {
  if (latencies_ns.empty()) return 0;
  const auto n = latencies_ns.size();
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(n)));
  rank = std::clamp<size_t>(rank, 1, n);
  return static_cast<double>(latencies_ns[rank - 1]) / 1000.0;
}

LoopResult RunClosedLoop(int threads, double warmup_s, double measure_s, const Op& op,
                         const std::function<void()>& at_window_start,
                         const std::function<void()>& at_window_end) {
  struct PerThread {
    std::vector<int64_t> latencies_ns;
    int64_t errors = 0;
    std::vector<std::string> first_errors;
  };
  std::vector<PerThread> per_thread(threads);
  // Written before `go` is released, read by the workers after: the latch orders them.
  Clock::time_point window_start;
  Clock::time_point window_end;
  std::latch ready(threads);
  std::latch go(1);

  std::vector<std::jthread> workers;
  workers.reserve(threads);
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      PerThread& mine = per_thread[t];
      mine.latencies_ns.reserve(1 << 14);  // no reallocation inside a timed op for most runs
      ready.count_down();
      go.wait();
      for (int64_t seq = 0;; ++seq) {
        const Clock::time_point t0 = Clock::now();
        if (t0 >= window_end) break;
        const Status s = op(t, seq);
        const Clock::time_point t1 = Clock::now();
        if (!s.ok()) {
          ++mine.errors;
          if (mine.first_errors.size() < kMaxErrorSamples)
            mine.first_errors.push_back(s.ToString());
          continue;
        }
        if (t1 >= window_start && t1 < window_end) {
          mine.latencies_ns.push_back(
              std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
        }
      }
    });
  }
  ready.wait();  // every thread exists, so thread creation is not in the warm-up
  const auto to_clock = [](double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  };
  window_start = Clock::now() + to_clock(warmup_s);
  window_end = window_start + to_clock(measure_s);
  go.count_down();
  std::this_thread::sleep_until(window_start);
  const CpuTimes cpu_start = SampleCpu();
  const Clock::time_point cpu_start_at = Clock::now();
  if (at_window_start) at_window_start();
  std::this_thread::sleep_until(window_end);
  const CpuTimes cpu_end = SampleCpu();
  // The sampling thread may wake late on a busy machine: divide by the time actually sampled.
  const double cpu_s = std::chrono::duration<double>(Clock::now() - cpu_start_at).count();
  if (at_window_end) at_window_end();
  workers.clear();  // joins

  LoopResult r;
  r.window_s = measure_s;
  r.cpu_self_cores = (cpu_end.self_s - cpu_start.self_s) / cpu_s;
  r.cpu_machine_cores = (cpu_end.machine_busy_s - cpu_start.machine_busy_s) / cpu_s;
  for (PerThread& p : per_thread) {
    r.latencies_ns.insert(r.latencies_ns.end(), p.latencies_ns.begin(), p.latencies_ns.end());
    r.errors += p.errors;
    for (auto& e : p.first_errors) {
      if (r.first_errors.size() < kMaxErrorSamples) r.first_errors.push_back(std::move(e));
    }
  }
  std::sort(r.latencies_ns.begin(), r.latencies_ns.end());
  return r;
}

Result<LoopResult> MeasureFdatasync(const fs::path& file, SyncPattern pattern, double warmup_s,
                                    double measure_s) {
  const int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Status::Unavailable("cannot create " + file.string() + ": " + std::strerror(errno));
  }
  std::vector<char> block(kSyncBlockBytes, 'x');
  const auto write_and_sync = [&](off_t offset, int64_t seq) -> Status {
    // A different block every time, so that no layer can skip the write as unchanged.
    std::memcpy(block.data(), &seq, sizeof seq);
    const ssize_t n = pwrite(fd, block.data(), block.size(), offset);
    if (n != static_cast<ssize_t>(block.size())) {
      return Status::Unavailable("pwrite " + file.string() + ": " +
                                 (n < 0 ? std::strerror(errno) : "short write"));
    }
    if (fdatasync(fd) != 0) {
      return Status::Unavailable("fdatasync " + file.string() + ": " + std::strerror(errno));
    }
    return Status::Ok();
  };
  if (pattern == SyncPattern::kOverwrite) {
    // Allocate the block and fix the file size before the loop, so that the loop changes data
    // only.
    if (Status s = write_and_sync(0, -1); !s.ok()) {
      close(fd);
      return s;
    }
  }
  LoopResult r = RunClosedLoop(1, warmup_s, measure_s, [&](int, int64_t seq) {
    const off_t offset =
        pattern == SyncPattern::kOverwrite ? 0 : static_cast<off_t>(seq * kSyncBlockBytes);
    return write_and_sync(offset, seq);
  });
  close(fd);
  std::error_code ec;
  fs::remove(file, ec);
  return r;
}

Result<LoopResult> MeasurePgSingleCommit(const std::string& conninfo, double warmup_s,
                                         double measure_s) {
  try {
    pqxx::connection c(conninfo);
    RequireSynchronousCommit(c);
    {
      pqxx::nontransaction n(c);
      n.exec0("CREATE TABLE floor_commit (id BIGINT PRIMARY KEY, payload TEXT NOT NULL)");
    }
    // A small row, in the order of an encoded `begin` record with two branches.
    const std::string payload(160, 'p');
    return RunClosedLoop(1, warmup_s, measure_s, [&](int, int64_t seq) -> Status {
      try {
        pqxx::work w(c);
        w.exec_params("INSERT INTO floor_commit (id, payload) VALUES ($1, $2)", seq, payload);
        w.commit();
        return Status::Ok();
      } catch (const std::exception& e) {
        return Status::Unavailable(std::string("insert + commit: ") + e.what());
      }
    });
  } catch (const std::exception& e) {
    return Status::Unavailable(std::string("PostgreSQL commit floor: ") + e.what());
  }
}

void PrintFloorHeader() {
  std::printf("%-7s %-18s %10s %9s %9s %8s %11s\n", "kind", "name", "ops/s", "p50_us", "p99_us",
              "cpu_self", "cpu_machine");
  std::fflush(stdout);
}

void PrintFloor(const Floor& f, bool json, std::string_view bench) {
  if (json) {
    JsonLine(bench)
        .Str("kind", "floor")
        .Str("name", f.name)
        .Num("ops_per_s", f.loop.ops_per_s())
        .Num("p50_us", f.loop.percentile_us(0.50))
        .Num("p99_us", f.loop.percentile_us(0.99))
        .Int("ops", f.loop.ops())
        .Int("errors", f.loop.errors)
        .Num("cpu_self", f.loop.cpu_self_cores, 2)
        .Num("cpu_machine", f.loop.cpu_machine_cores, 2)
        .Print();
    return;
  }
  std::printf("%-7s %-18s %10.0f %9.0f %9.0f %8.2f %11.2f\n", "floor", f.name.c_str(),
              f.loop.ops_per_s(), f.loop.percentile_us(0.50), f.loop.percentile_us(0.99),
              f.loop.cpu_self_cores, f.loop.cpu_machine_cores);
  std::fflush(stdout);
}

}  // namespace txcoord::bench
