// The process the crash test kills. It appends from many threads, forever, and reports each
// acknowledged append on stdout as one line "<stage> <gtid>", written with a single write(2)
// after Append returned OK (lines under PIPE_BUF are atomic in a pipe). So whatever the parent
// reads was acknowledged before the kill, and must be in the log after it.
//
// It prints "R" once the log is open, so the parent can time its kill from then.
// Each transaction is three appends: 1 = begin; 2 = commit decision + two branch outcomes in one
// append; 3 = end. So a transaction in the log has 1, 4 or 5 records; any other count is a torn
// append.
//
//   log_crash_child STORE_URI ROUND THREADS [VFS]
#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "log_test_util.h"
#include "txcoord/coordinator/log.h"
#include "txcoord/testing/powerloss_vfs.h"

using namespace txcoord;
using namespace txcoord::coordinator;
using namespace txcoord::coordinator::testutil;

namespace {

void Report(char stage, const std::string& gtid) {
  const std::string line = std::string(1, stage) + " " + gtid + "\n";
  if (write(STDOUT_FILENO, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(4);
}

[[noreturn]] void Fail(const std::string& what, const Status& s) {
  const std::string line = "E " + what + ": " + s.ToString() + "\n";
  (void)!write(STDOUT_FILENO, line.data(), line.size());
  _exit(3);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: log_crash_child STORE_URI ROUND THREADS [VFS]\n");
    return 2;
  }
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
  auto config = ParseStoreUri(argv[1]);
  if (!config.ok()) Fail("parse", config.status());
  if (argc > 4) {
    testing::RegisterPowerLossVfs(argv[4]);
    std::get<SqliteLogConfig>(*config).vfs = argv[4];
  }
  auto log = OpenLog(*config);
  if (!log.ok()) Fail("open", log.status());
  if (write(STDOUT_FILENO, "R\n", 2) != 2) _exit(4);  // ready: the parent times its kill from here
  const std::string round = argv[2];
  const int threads = std::atoi(argv[3]);

  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0;; ++i) {
        const std::string g = "r" + round + "-t" + std::to_string(t) + "-" + std::to_string(i);
        const int64_t at = kEpochMs + i;
        Status s = (*log)->Append({Begin(g, at)});
        if (!s.ok()) Fail(g, s);
        Report('1', g);
        s = (*log)->Append({Decision(g, at + 1, v1::OUTCOME_COMMIT),
                            BranchOutcome(g, at + 2, "b0", "committed"),
                            BranchOutcome(g, at + 2, "b1", "committed")});
        if (!s.ok()) Fail(g, s);
        Report('2', g);
        s = (*log)->Append({End(g, at + 3, "committed")});
        if (!s.ok()) Fail(g, s);
        Report('3', g);
      }
    });
  }
  for (auto& w : workers) w.join();
}
