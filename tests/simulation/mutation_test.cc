// A mutation test: this binary links the simulator against engines compiled with one deliberate
// bug (MUTATION_NAME, switched on by a define in CMakeLists.txt). The simulator must catch it
// within the seeds CI runs, with the expected violation, and the failing seed must replay.
#include <gtest/gtest.h>

#include <iostream>
#include <string>
#include <string_view>

#include "sim.h"

namespace txcoord::simulation {
namespace {

constexpr uint64_t kCiSeeds = 10'000;

// The engines' warnings are provoked on purpose; they would drown the test output.
const bool kEngineLogsSilenced = (SilenceEngineLogs(), true);

TEST(Mutation, CaughtWithinTheCiSeeds) {
  const SweepResult sweep = Sweep(MUTATION_PROTOCOL, 0, kCiSeeds, /*stop_at_first=*/true);
  ASSERT_FALSE(sweep.ok()) << "the " MUTATION_NAME " mutation survived " << sweep.runs
                           << " seeds of " MUTATION_PROTOCOL ": " << Summary(sweep);
  std::cout << "the " MUTATION_NAME " mutation is caught at seed " << sweep.failing_seeds.front()
            << " (" << sweep.runs << " seeds run): "
            << (sweep.first_failure.violations.empty() ? std::string("?")
                                                       : sweep.first_failure.violations.front())
            << "\n";
  ASSERT_FALSE(sweep.first_failure.violations.empty());
  // MUTATION_EXPECTED: the checks the bug breaks, as alternatives separated by '|'.
  const std::string& violation = sweep.first_failure.violations.front();
  bool expected = false;
  std::string_view alternatives = MUTATION_EXPECTED;
  while (!alternatives.empty()) {
    const size_t bar = alternatives.find('|');
    expected = expected || violation.find(alternatives.substr(0, bar)) != std::string::npos;
    alternatives = bar == std::string_view::npos ? "" : alternatives.substr(bar + 1);
  }
  EXPECT_TRUE(expected) << "caught, but not by the check it breaks (" MUTATION_EXPECTED "):\n"
                        << Report(sweep.first_failure);
  EXPECT_TRUE(sweep.reproduced) << "the failing seed did not fail the same way again";
  EXPECT_FALSE(sweep.first_failure.trace.empty()) << "a failure comes with its trace";
}

}  // namespace
}  // namespace txcoord::simulation
