// Saga definitions: every reason a definition is refused, with the offending step named; the plan
// (topological order, dependencies, levels) of valid ones; and the participant URL allow-list,
// including URLs built to look allowed while naming another host.
#include "txcoord/saga/definition.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace txcoord {

// Found by argument-dependent lookup: a failed EXPECT_EQ prints "INVALID_ARGUMENT".
inline void PrintTo(StatusCode code, std::ostream* out) { *out << StatusCodeName(code); }

namespace saga {

inline void PrintTo(UrlVerdict verdict, std::ostream* out) {
  switch (verdict) {
    case UrlVerdict::kOk:
      *out << "kOk";
      return;
    case UrlVerdict::kMalformed:
      *out << "kMalformed";
      return;
    case UrlVerdict::kForbidden:
      *out << "kForbidden";
      return;
  }
  *out << "UrlVerdict(" << static_cast<int>(verdict) << ")";
}

namespace {

using Steps = google::protobuf::RepeatedPtrField<v1::Step>;

v1::Step MakeStep(const std::string& id, std::initializer_list<std::string> depends_on = {}) {
  v1::Step step;
  step.set_step_id(id);
  step.set_action("http://127.0.0.1:7003/" + id + "/do");
  step.set_compensate("http://127.0.0.1:7003/" + id + "/undo");
  for (const std::string& dep : depends_on) step.add_depends_on(dep);
  return step;
}

Steps MakeSteps(std::initializer_list<v1::Step> steps) {
  Steps repeated;
  for (const v1::Step& step : steps) *repeated.Add() = step;
  return repeated;
}

// A chain: s0 <- s1 <- ... <- s{n-1}, each step depending on the one before.
Steps Chain(int n) {
  Steps steps;
  for (int i = 0; i < n; ++i) {
    *steps.Add() =
        i == 0 ? MakeStep("s0") : MakeStep("s" + std::to_string(i), {"s" + std::to_string(i - 1)});
  }
  return steps;
}

// Indexes as step_ids, so a failure reads "a, b, c" rather than "0, 1, 2".
std::vector<std::string> Ids(const Steps& steps, const std::vector<int>& indexes) {
  std::vector<std::string> ids;
  for (int i : indexes) ids.push_back(steps[i].step_id());
  return ids;
}

std::vector<std::vector<std::string>> LevelIds(const Steps& steps, const SagaPlan& plan) {
  std::vector<std::vector<std::string>> levels;
  for (const std::vector<int>& level : plan.levels) levels.push_back(Ids(steps, level));
  return levels;
}

// Refused with kInvalidArgument, as a 403 exactly when `forbidden`, and with a message mentioning
// every one of `mentions`.
testing::AssertionResult Refused(const SagaValidation& validation, bool forbidden,
                                 std::initializer_list<std::string_view> mentions) {
  if (validation.ok()) return testing::AssertionFailure() << "accepted";
  if (validation.status.code() != StatusCode::kInvalidArgument) {
    return testing::AssertionFailure() << "code " << StatusCodeName(validation.status.code());
  }
  if (validation.forbidden_url != forbidden) {
    return testing::AssertionFailure() << "forbidden_url is " << validation.forbidden_url << ": "
                                       << validation.status.message();
  }
  for (std::string_view needle : mentions) {
    if (validation.status.message().find(needle) == std::string::npos) {
      return testing::AssertionFailure() << "message \"" << validation.status.message()
                                         << "\" does not mention \"" << needle << "\"";
    }
  }
  return testing::AssertionSuccess() << validation.status.message();
}

testing::AssertionResult IsInvalid(const SagaValidation& validation,
                                   std::initializer_list<std::string_view> mentions) {
  return Refused(validation, /*forbidden=*/false, mentions);
}

testing::AssertionResult IsForbidden(const SagaValidation& validation,
                                     std::initializer_list<std::string_view> mentions) {
  return Refused(validation, /*forbidden=*/true, mentions);
}

// The invariants every plan must keep, whatever the graph.
testing::AssertionResult PlanIsConsistent(const Steps& steps, const SagaPlan& plan) {
  const int n = steps.size();
  std::vector<int> position(n, -1);
  for (int i = 0; i < static_cast<int>(plan.order.size()); ++i) {
    if (plan.order[i] < 0 || plan.order[i] >= n || position[plan.order[i]] >= 0) {
      return testing::AssertionFailure() << "order is not a permutation";
    }
    position[plan.order[i]] = i;
  }
  if (static_cast<int>(plan.order.size()) != n) return testing::AssertionFailure() << "order size";
  std::vector<int> level_of(n, -1);
  for (int level = 0; level < static_cast<int>(plan.levels.size()); ++level) {
    if (plan.levels[level].empty()) return testing::AssertionFailure() << "empty level " << level;
    if (!std::is_sorted(plan.levels[level].begin(), plan.levels[level].end())) {
      return testing::AssertionFailure() << "level " << level << " is not ascending";
    }
    for (int step : plan.levels[level]) {
      if (level_of[step] >= 0) return testing::AssertionFailure() << "step in two levels";
      level_of[step] = level;
    }
  }
  for (int i = 0; i < n; ++i) {
    if (level_of[i] < 0) return testing::AssertionFailure() << "step " << i << " in no level";
    if (static_cast<int>(plan.dependencies[i].size()) != steps[i].depends_on_size()) {
      return testing::AssertionFailure() << "step " << i << " lost a dependency";
    }
    int deepest = -1;
    for (int dep : plan.dependencies[i]) {
      if (position[dep] >= position[i]) return testing::AssertionFailure() << "order broken";
      if (level_of[dep] >= level_of[i]) return testing::AssertionFailure() << "levels broken";
      const auto& back = plan.dependents[dep];
      if (std::find(back.begin(), back.end(), i) == back.end()) {
        return testing::AssertionFailure() << "dependents[" << dep << "] lacks " << i;
      }
      deepest = std::max(deepest, level_of[dep]);
    }
    // Each step sits right after its deepest dependency: as early as it can run.
    if (level_of[i] != deepest + 1) return testing::AssertionFailure() << "step " << i << " late";
    if (!std::is_sorted(plan.dependents[i].begin(), plan.dependents[i].end())) {
      return testing::AssertionFailure() << "dependents[" << i << "] is not ascending";
    }
  }
  return testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------------------------
// Valid definitions and their plans
// ---------------------------------------------------------------------------------------------

TEST(SagaPlanTest, DiamondRunsTopThenMiddleTogetherThenBottom) {
  const Steps steps = MakeSteps(
      {MakeStep("a"), MakeStep("b", {"a"}), MakeStep("c", {"a"}), MakeStep("d", {"b", "c"})});
  const SagaValidation validation = ValidateSaga(steps, UrlPolicy{});
  ASSERT_TRUE(validation.ok()) << validation.status.ToString();
  const SagaPlan& plan = validation.plan;
  EXPECT_EQ(Ids(steps, plan.order), (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ(LevelIds(steps, plan),
            (std::vector<std::vector<std::string>>{{"a"}, {"b", "c"}, {"d"}}));
  EXPECT_EQ(plan.dependencies[3], (std::vector<int>{1, 2}));
  EXPECT_EQ(plan.dependents[0], (std::vector<int>{1, 2}));
  EXPECT_TRUE(plan.dependencies[0].empty());
  EXPECT_TRUE(plan.dependents[3].empty());
  EXPECT_TRUE(PlanIsConsistent(steps, plan));
}

TEST(SagaPlanTest, DiamondListedBottomUpStillRunsDependenciesFirst) {
  // Indexes: d=0, c=1, b=2, a=3. Dependencies decide the order; the index only breaks ties.
  const Steps steps = MakeSteps(
      {MakeStep("d", {"b", "c"}), MakeStep("c", {"a"}), MakeStep("b", {"a"}), MakeStep("a")});
  const SagaValidation validation = ValidateSaga(steps, UrlPolicy{});
  ASSERT_TRUE(validation.ok()) << validation.status.ToString();
  EXPECT_EQ(Ids(steps, validation.plan.order), (std::vector<std::string>{"a", "c", "b", "d"}));
  EXPECT_EQ(LevelIds(steps, validation.plan),
            (std::vector<std::vector<std::string>>{{"a"}, {"c", "b"}, {"d"}}));
  // In depends_on order, not sorted.
  EXPECT_EQ(validation.plan.dependencies[0], (std::vector<int>{2, 1}));
  EXPECT_TRUE(PlanIsConsistent(steps, validation.plan));
}

TEST(SagaPlanTest, IndependentStepsFormOneLevel) {
  const Steps steps = MakeSteps({MakeStep("x"), MakeStep("y"), MakeStep("z")});
  const SagaValidation validation = ValidateSaga(steps, UrlPolicy{});
  ASSERT_TRUE(validation.ok()) << validation.status.ToString();
  EXPECT_EQ(validation.plan.order, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(validation.plan.levels, (std::vector<std::vector<int>>{{0, 1, 2}}));
}

TEST(SagaPlanTest, OrderTakesTheLowestReadyIndexNotWholeLevels) {
  // p waits for q; r is free. Lowest ready index first gives q, p, r; the levels are {q, r}, {p}.
  const Steps steps = MakeSteps({MakeStep("p", {"q"}), MakeStep("q"), MakeStep("r")});
  const SagaValidation validation = ValidateSaga(steps, UrlPolicy{});
  ASSERT_TRUE(validation.ok()) << validation.status.ToString();
  EXPECT_EQ(Ids(steps, validation.plan.order), (std::vector<std::string>{"q", "p", "r"}));
  EXPECT_EQ(LevelIds(steps, validation.plan),
            (std::vector<std::vector<std::string>>{{"q", "r"}, {"p"}}));
}

TEST(SagaPlanTest, LevelFollowsTheDeepestDependency) {
  // c depends on a (level 0) and on b (level 1), so it is level 2, not 1.
  const Steps steps = MakeSteps({MakeStep("a"), MakeStep("b", {"a"}), MakeStep("c", {"a", "b"})});
  const SagaValidation validation = ValidateSaga(steps, UrlPolicy{});
  ASSERT_TRUE(validation.ok()) << validation.status.ToString();
  EXPECT_EQ(validation.plan.levels, (std::vector<std::vector<int>>{{0}, {1}, {2}}));
}

TEST(SagaPlanTest, RandomDagsKeepThePlanInvariants) {
  const std::uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (set it here to reproduce)");
  std::mt19937 random(seed);
  for (int round = 0; round < 200; ++round) {
    const int n = std::uniform_int_distribution<int>(1, 40)(random);
    // Edges only from a later to an earlier rank of a shuffled ranking: acyclic, listed in any
    // order.
    std::vector<int> rank(n);
    for (int i = 0; i < n; ++i) rank[i] = i;
    std::shuffle(rank.begin(), rank.end(), random);
    Steps steps;
    for (int i = 0; i < n; ++i) *steps.Add() = MakeStep("s" + std::to_string(i));
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) {
        if (rank[j] < rank[i] && std::uniform_int_distribution<int>(0, 3)(random) == 0) {
          steps[i].add_depends_on("s" + std::to_string(j));
        }
      }
    }
    const SagaValidation validation = ValidateSaga(steps, UrlPolicy{});
    ASSERT_TRUE(validation.ok()) << validation.status.ToString();
    ASSERT_TRUE(PlanIsConsistent(steps, validation.plan)) << "round " << round;
    // Kahn's with a min-heap: at each point the next step is the lowest index whose dependencies
    // are all earlier.
    std::vector<bool> done(n, false);
    for (int step : validation.plan.order) {
      for (int i = 0; i < step; ++i) {
        if (done[i]) continue;
        const auto& deps = validation.plan.dependencies[i];
        ASSERT_FALSE(std::all_of(deps.begin(), deps.end(), [&](int d) { return done[d]; }))
            << "round " << round << ": step " << i << " was ready before " << step;
      }
      done[step] = true;
    }
  }
}

TEST(SagaPlanTest, HundredStepsAreAllowedAndValidateQuickly) {
  const Steps chain = Chain(100);
  const SagaValidation validation = ValidateSaga(chain, UrlPolicy{});
  ASSERT_TRUE(validation.ok()) << validation.status.ToString();
  EXPECT_EQ(validation.plan.levels.size(), 100u);
  EXPECT_EQ(validation.plan.order.front(), 0);
  EXPECT_EQ(validation.plan.order.back(), 99);

  // The densest allowed graph: each step depends on every earlier one (4950 edges, with
  // exponentially many paths, which a search that enumerates paths would not survive).
  Steps dense;
  for (int i = 0; i < 100; ++i) {
    v1::Step step = MakeStep("s" + std::to_string(i));
    for (int j = i - 1; j >= 0; --j) step.add_depends_on("s" + std::to_string(j));
    *dense.Add() = step;
  }
  // No timing assertion (the machine is shared): a path-enumerating search would simply not
  // finish within ctest's timeout.
  const SagaValidation dense_validation = ValidateSaga(dense, UrlPolicy{});
  ASSERT_TRUE(dense_validation.ok()) << dense_validation.status.ToString();
  ASSERT_EQ(dense_validation.plan.levels.size(), 100u);
  EXPECT_EQ(dense_validation.plan.dependencies[99].size(), 99u);
}

// ---------------------------------------------------------------------------------------------
// Refused definitions: 400, naming the offending step
// ---------------------------------------------------------------------------------------------

TEST(SagaValidationTest, NoStepsIsRefused) {
  EXPECT_TRUE(IsInvalid(ValidateSaga(Steps(), UrlPolicy{}), {"at least one step"}));
}

TEST(SagaValidationTest, MoreThanHundredStepsIsRefused) {
  EXPECT_EQ(kMaxSagaSteps, 100u);
  EXPECT_TRUE(IsInvalid(ValidateSaga(Chain(101), UrlPolicy{}),
                        {"at most 100 steps", "has 101", "\"s100\""}));
}

TEST(SagaValidationTest, InvalidStepIdIsRefusedByPosition) {
  const Steps steps = MakeSteps({MakeStep("a"), MakeStep("b c")});
  EXPECT_TRUE(IsInvalid(ValidateSaga(steps, UrlPolicy{}), {"steps[1].step_id", "\"b c\""}));

  const Steps unnamed = MakeSteps({MakeStep("a"), MakeStep("")});
  EXPECT_TRUE(IsInvalid(ValidateSaga(unnamed, UrlPolicy{}), {"steps[1].step_id \"\""}));

  const Steps too_long = MakeSteps({MakeStep(std::string(129, 'x'))});
  EXPECT_TRUE(IsInvalid(ValidateSaga(too_long, UrlPolicy{}), {"steps[0].step_id"}));
}

TEST(SagaValidationTest, DuplicateStepIdIsRefusedNamingBothPositions) {
  const Steps steps = MakeSteps({MakeStep("a"), MakeStep("b"), MakeStep("a")});
  EXPECT_TRUE(IsInvalid(ValidateSaga(steps, UrlPolicy{}),
                        {"steps[0] and steps[2]", "step_id \"a\"", "unique"}));
}

TEST(SagaValidationTest, MissingActionIsRefused) {
  Steps steps = MakeSteps({MakeStep("a"), MakeStep("b", {"a"})});
  steps[1].clear_action();
  EXPECT_TRUE(IsInvalid(ValidateSaga(steps, UrlPolicy{}), {"step \"b\"", "no action URL"}));
}

TEST(SagaValidationTest, MissingCompensateIsRefused) {
  // Required: the action may have run even when its reply was lost, so it may need undoing.
  Steps steps = MakeSteps({MakeStep("a"), MakeStep("b", {"a"})});
  steps[1].clear_compensate();
  EXPECT_TRUE(IsInvalid(ValidateSaga(steps, UrlPolicy{}), {"step \"b\"", "no compensate URL"}));
}

TEST(SagaValidationTest, MalformedUrlsAreRefusedNamingStepAndField) {
  Steps steps = MakeSteps({MakeStep("a"), MakeStep("b")});
  steps[1].set_action("ftp://127.0.0.1:1/x");
  EXPECT_TRUE(IsInvalid(ValidateSaga(steps, UrlPolicy{}),
                        {"step \"b\" action \"ftp://127.0.0.1:1/x\"", "http://"}));

  steps = MakeSteps({MakeStep("a"), MakeStep("b")});
  steps[1].set_compensate("127.0.0.1:7001/x");
  EXPECT_TRUE(IsInvalid(ValidateSaga(steps, UrlPolicy{}), {"step \"b\" compensate"}));
}

TEST(SagaValidationTest, UnknownDependencyIsRefused) {
  const Steps steps = MakeSteps({MakeStep("a"), MakeStep("b", {"a", "nope"})});
  EXPECT_TRUE(IsInvalid(ValidateSaga(steps, UrlPolicy{}),
                        {"step \"b\" depends on \"nope\"", "not a step_id"}));
}

TEST(SagaValidationTest, UnknownDependencyIsQuotedPrintably) {
  // The message becomes JSON: a raw byte that is not UTF-8 would make the reply invalid.
  const Steps steps = MakeSteps({MakeStep("a", {std::string("x\xff\n", 3)})});
  const SagaValidation validation = ValidateSaga(steps, UrlPolicy{});
  EXPECT_TRUE(IsInvalid(validation, {"step \"a\"", "x\\xFF\\x0A"}));
  for (char c : validation.status.message()) {
    EXPECT_TRUE(c >= 0x20 && c < 0x7F) << "byte " << static_cast<int>(c);
  }
}

TEST(SagaValidationTest, SelfDependencyIsRefused) {
  const Steps steps = MakeSteps({MakeStep("a"), MakeStep("b", {"a", "b"})});
  EXPECT_TRUE(IsInvalid(ValidateSaga(steps, UrlPolicy{}), {"step \"b\" depends on itself"}));
}

TEST(SagaValidationTest, RepeatedDependencyIsRefused) {
  const Steps steps = MakeSteps({MakeStep("a"), MakeStep("b"), MakeStep("c", {"a", "b", "a"})});
  EXPECT_TRUE(IsInvalid(ValidateSaga(steps, UrlPolicy{}), {"step \"c\" lists \"a\" twice"}));
}

TEST(SagaValidationTest, ThreeCycleInALargerGraphIsNamedInOrder) {
  // root -> {a, x}; a depends on root and c, c on b, b on a; tail hangs below the cycle and x
  // beside it. Neither is on the cycle, so neither is named.
  const Steps steps =
      MakeSteps({MakeStep("root"), MakeStep("a", {"root", "c"}), MakeStep("b", {"a"}),
                 MakeStep("c", {"b"}), MakeStep("tail", {"c"}), MakeStep("x", {"root"})});
  const SagaValidation validation = ValidateSaga(steps, UrlPolicy{});
  EXPECT_TRUE(IsInvalid(validation, {"steps form a cycle: a -> c -> b -> a"}));
  for (const char* bystander : {"root", "tail", "x "}) {
    EXPECT_EQ(validation.status.message().find(bystander), std::string::npos) << bystander;
  }
}

TEST(SagaValidationTest, TwoCycleIsFoundFromAStepBelowIt) {
  // The first unordered step (index 0) is below the cycle, not on it: the walk from it must go up
  // to the cycle and report only the cycle, starting at its first listed step.
  const Steps steps =
      MakeSteps({MakeStep("below", {"q"}), MakeStep("free"), MakeStep("q", {"free", "p"}),
                 MakeStep("p", {"q"}), MakeStep("after", {"free"})});
  const SagaValidation validation = ValidateSaga(steps, UrlPolicy{});
  EXPECT_TRUE(IsInvalid(validation, {"steps form a cycle: q -> p -> q "}));
  EXPECT_EQ(validation.status.message().find("below"), std::string::npos);
}

TEST(SagaValidationTest, WholeGraphCycleIsNamed) {
  const Steps steps = MakeSteps({MakeStep("a", {"b"}), MakeStep("b", {"c"}), MakeStep("c", {"a"})});
  EXPECT_TRUE(
      IsInvalid(ValidateSaga(steps, UrlPolicy{}), {"steps form a cycle: a -> b -> c -> a"}));
}

// ---------------------------------------------------------------------------------------------
// Forbidden URLs: 403, and only when nothing else is wrong
// ---------------------------------------------------------------------------------------------

TEST(SagaValidationTest, UrlOutsideTheAllowListIsForbidden) {
  Steps steps = MakeSteps({MakeStep("a"), MakeStep("b", {"a"})});
  steps[1].set_compensate("http://10.0.0.5:8080/undo");
  EXPECT_TRUE(IsForbidden(ValidateSaga(steps, UrlPolicy{}),
                          {"step \"b\" compensate \"http://10.0.0.5:8080/undo\"", "allow-list",
                           "http://127.0.0.1:", "--allow-url"}));
}

TEST(SagaValidationTest, UserInfoAttackIsForbidden) {
  // Starts with the allowed "http://127.0.0.1:", but connects to evil.com.
  Steps steps = MakeSteps({MakeStep("a")});
  steps[0].set_action("http://127.0.0.1:80@evil.com/");
  EXPECT_TRUE(IsForbidden(ValidateSaga(steps, UrlPolicy{}), {"step \"a\" action", "user-info"}));
}

TEST(SagaValidationTest, FirstForbiddenStepIsNamed) {
  Steps steps = MakeSteps({MakeStep("a"), MakeStep("b"), MakeStep("c")});
  steps[1].set_action("http://10.0.0.1:1/b");
  steps[2].set_action("http://10.0.0.1:1/c");
  EXPECT_TRUE(IsForbidden(ValidateSaga(steps, UrlPolicy{}), {"step \"b\" action"}));
}

TEST(SagaValidationTest, AnyOtherErrorWinsOverAForbiddenUrl) {
  // A 403 must mean "valid, but not allowed here": fix-the-request errors come first, even from
  // later steps and later checks.
  Steps steps = MakeSteps({MakeStep("a"), MakeStep("b", {"nope"})});
  steps[0].set_action("http://10.0.0.1:1/a");
  EXPECT_TRUE(IsInvalid(ValidateSaga(steps, UrlPolicy{}), {"step \"b\" depends on \"nope\""}));

  steps = MakeSteps({MakeStep("a", {"b"}), MakeStep("b", {"a"})});
  steps[0].set_action("http://10.0.0.1:1/a");
  EXPECT_TRUE(IsInvalid(ValidateSaga(steps, UrlPolicy{}), {"a -> b -> a"}));

  steps = MakeSteps({MakeStep("a"), MakeStep("b")});
  steps[0].set_action("http://10.0.0.1:1/a");
  steps[1].set_compensate("http://");
  EXPECT_TRUE(IsInvalid(ValidateSaga(steps, UrlPolicy{}), {"step \"b\" compensate"}));
}

// ---------------------------------------------------------------------------------------------
// CheckParticipantUrl
// ---------------------------------------------------------------------------------------------

UrlVerdict Verdict(std::string_view url, const UrlPolicy& policy = UrlPolicy{}) {
  return CheckParticipantUrl("branch \"debit\" url", url, policy).verdict;
}

TEST(ParticipantUrlTest, DefaultPolicyAllowsLoopback) {
  for (const char* url :
       {"http://127.0.0.1:7001/bank", "https://127.0.0.1:8443/bank", "http://localhost:7001/x",
        "https://localhost:7001/x", "http://[::1]:7001/x", "https://[::1]:7001/x",
        "http://127.0.0.1:7001", "http://127.0.0.1:7001?q=a@b", "http://127.0.0.1:7001/a@b",
        "HTTP://LocalHost:7001/x"}) {
    const UrlCheck check = CheckParticipantUrl("url", url, UrlPolicy{});
    EXPECT_TRUE(check.ok()) << url << ": " << check.message;
    EXPECT_TRUE(check.message.empty());
  }
}

TEST(ParticipantUrlTest, DefaultPolicyForbidsEverythingElse) {
  for (const char* url :
       {"http://10.0.0.5:8080/x", "http://127.0.0.1.evil.com:80/x", "http://localhost.evil.com/x",
        "http://127.0.0.2:80/x", "http://evil.com/http://127.0.0.1:1/"}) {
    EXPECT_EQ(Verdict(url), UrlVerdict::kForbidden) << url;
  }
}

TEST(ParticipantUrlTest, UserInfoIsForbiddenEvenTowardAnAllowedHost) {
  for (const char* url : {"http://127.0.0.1:80@evil.com/", "http://127.0.0.1:80@evil.com",
                          "http://localhost:1@[::1]:7001/x", "http://user@127.0.0.1:7001/x",
                          "http://127.0.0.1:1@127.0.0.1:7001/x"}) {
    EXPECT_EQ(Verdict(url), UrlVerdict::kForbidden) << url;
  }
}

TEST(ParticipantUrlTest, MessagesNeverRepeatAPassword) {
  for (const char* url : {"http://user:s3cret@127.0.0.1:7001/x", "ftp://user:s3cret@127.0.0.1/x",
                          "user:s3cret@127.0.0.1:7001/x", "http://user:s3cret@127.0.0.1:99999/"}) {
    const UrlCheck check = CheckParticipantUrl("step \"a\" action", url, UrlPolicy{});
    EXPECT_FALSE(check.ok()) << url;
    EXPECT_NE(check.message.find("step \"a\" action"), std::string::npos) << check.message;
    EXPECT_EQ(check.message.find("s3cret"), std::string::npos) << check.message;
  }
}

TEST(ParticipantUrlTest, MalformedUrlsAreNamedAndRefused) {
  const std::string too_long =
      "http://127.0.0.1:7001/" + std::string(kMaxParticipantUrlLength, 'x');
  for (const std::string& url : std::vector<std::string>{
           "ftp://127.0.0.1:1/x", "127.0.0.1:7001/x", "http://", "", "http:127.0.0.1:7001/x",
           "http:///x", "http://:7001/x", "://127.0.0.1:7001/x", "http://127.0.0.1:99999/",
           "http://127.0.0.1:0/", "http://127.0.0.1:+80/", "http://127.0.0.1:8o/",
           "http://127.0.0.1:7001/a b", "http://127.0.0.1:7001\\@evil.com/", "http://[::1/x",
           "http://[::1]x/", "http://127.0.0.1:7001/\n", "http://127.0.0.1:7001/caf\xc3\xa9",
           too_long}) {
    const UrlCheck check = CheckParticipantUrl("branch \"debit\" url", url, UrlPolicy{});
    EXPECT_EQ(check.verdict, UrlVerdict::kMalformed) << "\"" << url << "\": " << check.message;
    EXPECT_EQ(check.message.rfind("branch \"debit\" url ", 0), 0u) << check.message;
    for (char c : check.message) EXPECT_TRUE(c >= 0x20 && c < 0x7F) << check.message;
  }
}

TEST(ParticipantUrlTest, LengthLimitIsInclusive) {
  std::string url = "http://127.0.0.1:7001/";
  url += std::string(kMaxParticipantUrlLength - url.size(), 'x');
  EXPECT_EQ(Verdict(url), UrlVerdict::kOk);
  EXPECT_EQ(Verdict(url + "x"), UrlVerdict::kMalformed);
}

TEST(ParticipantUrlTest, CustomPrefixStopsAtItsBoundary) {
  const UrlPolicy policy{{"http://10.0.0.5:8080/"}};
  EXPECT_EQ(Verdict("http://10.0.0.5:8080/bank", policy), UrlVerdict::kOk);
  EXPECT_EQ(Verdict("http://10.0.0.50:8080/bank", policy), UrlVerdict::kForbidden);
  EXPECT_EQ(Verdict("http://10.0.0.5:80801/bank", policy), UrlVerdict::kMalformed);  // > 65535
  EXPECT_EQ(Verdict("http://10.0.0.5:8081/bank", policy), UrlVerdict::kForbidden);
  // A custom list replaces the default one.
  EXPECT_EQ(Verdict("http://127.0.0.1:7001/bank", policy), UrlVerdict::kForbidden);
}

TEST(ParticipantUrlTest, PrefixWithoutTrailingSeparatorMatchesOnlyAtABoundary) {
  const UrlPolicy host{{"http://10.0.0.5"}};
  EXPECT_EQ(Verdict("http://10.0.0.5:8080/x", host), UrlVerdict::kOk);
  EXPECT_EQ(Verdict("http://10.0.0.5/x", host), UrlVerdict::kOk);
  EXPECT_EQ(Verdict("http://10.0.0.5", host), UrlVerdict::kOk);
  EXPECT_EQ(Verdict("http://10.0.0.50:8080/x", host), UrlVerdict::kForbidden);
  EXPECT_EQ(Verdict("http://10.0.0.5.evil.com/x", host), UrlVerdict::kForbidden);

  // A port is a boundary too: port 80 is not a prefix of port 8080.
  const UrlPolicy port{{"http://10.0.0.5:80"}};
  EXPECT_EQ(Verdict("http://10.0.0.5:80/x", port), UrlVerdict::kOk);
  EXPECT_EQ(Verdict("http://10.0.0.5:8080/x", port), UrlVerdict::kForbidden);

  const UrlPolicy path{{"http://10.0.0.5:8080/bank"}};
  EXPECT_EQ(Verdict("http://10.0.0.5:8080/bank", path), UrlVerdict::kOk);
  EXPECT_EQ(Verdict("http://10.0.0.5:8080/bank/debit", path), UrlVerdict::kOk);
  EXPECT_EQ(Verdict("http://10.0.0.5:8080/bank?x=1", path), UrlVerdict::kOk);
  EXPECT_EQ(Verdict("http://10.0.0.5:8080/bankrupt", path), UrlVerdict::kForbidden);
  EXPECT_EQ(Verdict("http://10.0.0.5:8080/bank:x", path), UrlVerdict::kForbidden);
}

TEST(ParticipantUrlTest, SchemeAndHostIgnoreCaseButPathDoesNot) {
  const UrlPolicy policy{{"http://Svc.Internal:8080/Bank/"}};
  EXPECT_EQ(Verdict("HTTP://svc.internal:8080/Bank/x", policy), UrlVerdict::kOk);
  EXPECT_EQ(Verdict("http://svc.internal:8080/bank/x", policy), UrlVerdict::kForbidden);
}

TEST(ParticipantUrlTest, EmptyPolicyOrPrefixAllowsNothing) {
  EXPECT_EQ(Verdict("http://127.0.0.1:7001/x", UrlPolicy{{}}), UrlVerdict::kForbidden);
  EXPECT_EQ(Verdict("http://127.0.0.1:7001/x", UrlPolicy{{""}}), UrlVerdict::kForbidden);
  const UrlCheck check = CheckParticipantUrl("url", "http://127.0.0.1:7001/x", UrlPolicy{{}});
  EXPECT_NE(check.message.find("allow-list (none)"), std::string::npos) << check.message;
}

}  // namespace
}  // namespace saga
}  // namespace txcoord
