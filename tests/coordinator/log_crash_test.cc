// The log's crash test: a child process appends from 16 threads and is SIGKILLed at a random
// moment, 200 times per backend. After each kill the reopened log must hold every append the
// child acknowledged before it died, and no torn record or torn append.
//
// For SQLite the child writes through the power-loss VFS (tests/support/powerloss), whose
// unsynced writes die with the process: so the kill is a power failure, and the test proves the
// acknowledged appends were fsync'd, not merely in the page cache. For PostgreSQL the server
// survives; the test proves the log acknowledges only committed appends.
//
// TXCOORD_CRASH_ROUNDS overrides the number of kills; TXCOORD_SEED replays a run.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <random>
#include <sstream>

#include "log_backends.h"
#include "log_test_util.h"

namespace txcoord::coordinator {
namespace {

using namespace testutil;

constexpr int kThreads = 16;

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::atoi(v) : fallback;
}

// Runs the child and kills it `kill_after` after it started or, with `from_ready`, after it
// reported its log open ("R"); returns everything it printed. Timing kills from readiness keeps
// them landing among appends even when a loaded machine makes start-up slow.
std::string RunAndKill(const std::vector<std::string>& args, std::chrono::milliseconds kill_after,
                       bool from_ready) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return "E pipe failed";
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  std::string output;
  char buf[65536];
  auto deadline = std::chrono::steady_clock::now() +
                  (from_ready ? std::chrono::milliseconds(60'000) : kill_after);
  bool eof = false;
  bool ready = false;
  while (!eof) {
    if (from_ready && !ready && output.find("R\n") != std::string::npos) {
      ready = true;
      deadline = std::chrono::steady_clock::now() + kill_after;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    const ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0)
      eof = true;
    else
      output.append(buf, static_cast<size_t>(n));
  }
  kill(pid, SIGKILL);
  // Whatever the child wrote before it died is still in the pipe.
  for (;;) {
    const ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    output.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return output;
}

// What one kill round acknowledged: the highest stage per transaction, and per thread the
// highest transaction index with any acknowledgement.
struct Acks {
  std::map<std::string, int> stage;
  std::map<int, int> last_index;  // thread -> i
  std::string child_error;
};

Acks ParseAcks(const std::string& output, const std::string& round) {
  Acks acks;
  std::istringstream in(output);
  std::string line;
  while (std::getline(in, line)) {
    if (line == "R") continue;  // the log is open
    if (line.starts_with("E ")) {
      acks.child_error = line;
      continue;
    }
    // "S rR-tT-I"; a line cut by the kill cannot exist (single atomic write), but be strict.
    if (line.size() < 3 || line[1] != ' ') {
      acks.child_error = "malformed line: " + line;
      continue;
    }
    const std::string gtid = line.substr(2);
    acks.stage[gtid] = std::max(acks.stage[gtid], line[0] - '0');
    const std::string prefix = "r" + round + "-t";
    const auto dash = gtid.find('-', prefix.size());
    const int t = std::stoi(gtid.substr(prefix.size(), dash - prefix.size()));
    const int i = std::stoi(gtid.substr(dash + 1));
    acks.last_index[t] = std::max(acks.last_index.count(t) ? acks.last_index[t] : -1, i);
  }
  return acks;
}

// A transaction as the child writes it has 1, 4 or 5 records in this order.
void ExpectWholeAppends(const LoggedTransaction& tx) {
  const auto& r = tx.records;
  ASSERT_TRUE(r.size() == 1 || r.size() == 4 || r.size() == 5)
      << tx.summary.gtid << " has " << r.size() << " records: a torn append";
  EXPECT_TRUE(r[0].has_begin());
  if (r.size() >= 4) {
    EXPECT_TRUE(r[1].has_decision());
    EXPECT_TRUE(r[2].has_branch_outcome());
    EXPECT_TRUE(r[3].has_branch_outcome());
    EXPECT_EQ(tx.summary.decision, v1::OUTCOME_COMMIT);
  }
  if (r.size() == 5) {
    EXPECT_TRUE(r[4].has_end());
    EXPECT_TRUE(tx.summary.finished());
  } else {
    EXPECT_FALSE(tx.summary.finished());
  }
}

template <typename Backend>
class LogCrashTest : public ::testing::Test {
 protected:
  Backend backend_;
};

struct BackendName {
  template <typename T>
  static std::string GetName(int) {
    return T::kName;
  }
};
using Backends = ::testing::Types<SqliteBackend, PostgresBackend>;
TYPED_TEST_SUITE(LogCrashTest, Backends, BackendName);

TYPED_TEST(LogCrashTest, EveryAcknowledgedAppendSurvivesAKill) {
  const int rounds = EnvInt("TXCOORD_CRASH_ROUNDS", 200);
  const unsigned seed = static_cast<unsigned>(EnvInt("TXCOORD_SEED", std::random_device{}()));
  this->RecordProperty("seed", std::to_string(seed));
  SCOPED_TRACE("replay with TXCOORD_SEED=" + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> kill_ms(0, 200);

  std::vector<std::string> args = {LOG_CRASH_CHILD};
  if constexpr (std::is_same_v<TypeParam, SqliteBackend>) {
    args.push_back("sqlite://" + this->backend_.path());
  } else {
    args.push_back(this->backend_.uri());
  }
  int64_t total_acked = 0;
  int rounds_with_acks = 0;
  for (int round = 0; round < rounds; ++round) {
    std::vector<std::string> a = args;
    a.push_back(std::to_string(round));
    a.push_back(std::to_string(kThreads));
    if constexpr (std::is_same_v<TypeParam, SqliteBackend>) a.push_back("powerloss");
    // One kill in ten lands during start-up (opening, creating or migrating the store); the
    // others among the appends.
    const bool during_start = round % 10 == 0;
    const std::string output =
        RunAndKill(a, std::chrono::milliseconds(during_start ? kill_ms(rng) / 5 : kill_ms(rng)),
                   /*from_ready=*/!during_start);
    const Acks acks = ParseAcks(output, std::to_string(round));
    ASSERT_TRUE(acks.child_error.empty()) << "round " << round << ": " << acks.child_error;
    total_acked += static_cast<int64_t>(acks.stage.size());
    if (!acks.stage.empty()) rounds_with_acks++;

    // The plain VFS reads only what reached the disk.
    auto log = OpenLog(this->backend_.Config());
    ASSERT_TRUE(log.ok()) << "round " << round << ": " << log.status().ToString();
    for (const auto& [gtid, stage] : acks.stage) {
      auto tx = (*log)->Read(gtid);
      ASSERT_TRUE(tx.ok()) << "round " << round << ": acknowledged " << gtid
                           << " is lost: " << tx.status().ToString();
      const size_t needed = stage == 1 ? 1 : stage == 2 ? 4 : 5;
      EXPECT_GE(tx->records.size(), needed)
          << "round " << round << ": " << gtid << " lost acknowledged stage " << stage;
      ExpectWholeAppends(*tx);
    }
    // Each thread may have had one more transaction in flight; nothing beyond it exists.
    for (int t = 0; t < kThreads; ++t) {
      const int last = acks.last_index.count(t) ? acks.last_index.at(t) : -1;
      const std::string prefix = "r" + std::to_string(round) + "-t" + std::to_string(t) + "-";
      auto in_flight = (*log)->Read(prefix + std::to_string(last + 1));
      if (in_flight.ok()) {
        ExpectWholeAppends(*in_flight);
      } else {
        EXPECT_EQ(in_flight.status().code(), StatusCode::kNotFound)
            << in_flight.status().ToString();
      }
      EXPECT_EQ((*log)->Read(prefix + std::to_string(last + 2)).status().code(),
                StatusCode::kNotFound);
    }
    if (::testing::Test::HasFailure()) return;
  }
  // Finally, every unfinished transaction of every round reads back whole.
  auto log = OpenLog(this->backend_.Config());
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  std::string after;
  for (;;) {
    auto page = (*log)->ScanUnfinished(after, 500);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    if (page->empty()) break;
    for (const auto& tx : *page) ExpectWholeAppends(tx);
    after = page->back().summary.gtid;
  }
  std::cout << "[ crash    ] " << TypeParam::kName << ": " << rounds << " kills, "
            << rounds_with_acks << " after some acknowledgements, " << total_acked
            << " acknowledged transactions checked, seed " << seed << "\n";
  EXPECT_GT(rounds_with_acks, rounds / 2) << "most kills must land after appends began";
}

}  // namespace
}  // namespace txcoord::coordinator
