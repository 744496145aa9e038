// txcoord_sim: runs the seeded simulation (tests/simulation/README.md).
//
//   txcoord_sim --seed N [--protocol P] [--trace]       one seed; the trace with --trace
//   txcoord_sim --first N --count K [--protocol P]      a sweep; ctest runs these
//
// P is one of the protocols the simulation runs, or `all` (the default). A failure prints the
// seed, its violations and its trace, and exits 1; bad flags exit 2.
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "sim.h"

namespace {

using txcoord::simulation::FindProtocol;
using txcoord::simulation::Protocols;

int Usage(const std::string& why) {
  std::cerr << "txcoord_sim: " << why << "\n"
            << "usage: txcoord_sim --seed N [--protocol P] [--trace]\n"
            << "       txcoord_sim --first N --count K [--protocol P]\n"
            << "P: all";
  for (const auto& p : Protocols()) std::cerr << ", " << p.name;
  std::cerr << "\n";
  return 2;
}

bool ParseCount(const std::string& text, uint64_t* out) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos ||
      text.size() > 19) {
    return false;
  }
  *out = std::stoull(text);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  txcoord::simulation::SilenceEngineLogs();
  std::vector<std::string> args(argv + 1, argv + argc);
  uint64_t first = 0;
  uint64_t count = 1;
  bool single = false;
  bool trace = false;
  std::string protocol = "all";
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const bool has_value = i + 1 < args.size();
    if (a == "--trace") {
      trace = true;
    } else if (a == "--seed" && has_value) {
      if (!ParseCount(args[++i], &first)) return Usage("--seed takes a number");
      count = 1;
      single = true;
    } else if (a == "--first" && has_value) {
      if (!ParseCount(args[++i], &first)) return Usage("--first takes a number");
    } else if (a == "--count" && has_value) {
      if (!ParseCount(args[++i], &count) || count == 0) {
        return Usage("--count takes a positive number");
      }
    } else if (a == "--protocol" && has_value) {
      protocol = args[++i];
    } else {
      return Usage("unknown or incomplete argument \"" + a + "\"");
    }
  }
  std::vector<std::string> protocols;
  if (protocol == "all") {
    for (const auto& p : Protocols()) protocols.push_back(p.name);
  } else if (FindProtocol(protocol) != nullptr) {
    protocols.push_back(protocol);
  } else {
    return Usage("the simulation does not run protocol \"" + protocol + "\"");
  }

  bool failed = false;
  for (const std::string& p : protocols) {
    if (single) {
      const auto r = txcoord::simulation::Simulate({.seed = first, .protocol = p, .trace = true});
      if (trace || !r.ok()) {
        for (const std::string& line : r.trace) std::cout << line << "\n";
      }
      if (!r.ok()) {
        std::cout << txcoord::simulation::Report(
            {.seed = r.seed, .protocol = r.protocol, .violations = r.violations});
        failed = true;
      } else {
        std::cout << "seed " << first << " (" << p << ") passed: " << r.stats.transactions
                  << " transactions, " << r.stats.committed << " committed, " << r.stats.aborted
                  << " aborted, " << r.stats.events << " events, " << r.stats.sim_time_ms
                  << " ms simulated"
                  << (r.partition_cases > 0
                          ? ", " + std::to_string(r.partition_cases) + " partition cases"
                          : std::string())
                  << "\n";
      }
      continue;
    }
    const auto sweep = txcoord::simulation::Sweep(p, first, count, /*stop_at_first=*/false);
    std::cout << Summary(sweep) << "\n";
    if (!sweep.ok()) {
      failed = true;
      std::cout << "failing seeds:";
      for (size_t i = 0; i < sweep.failing_seeds.size() && i < 50; ++i) {
        std::cout << " " << sweep.failing_seeds[i];
      }
      std::cout << (sweep.failing_seeds.size() > 50 ? " ..." : "") << "\n";
      if (!sweep.reproduced) {
        std::cout << "THE FIRST FAILING SEED DID NOT FAIL THE SAME WAY WHEN RUN AGAIN: the "
                     "simulation is not deterministic\n";
      }
      std::cout << Report(sweep.first_failure);
    }
  }
  std::cout.flush();
  return failed ? 1 : 0;
}
