// The pure parts of txctl (coordinator/txctl/command.h): durations, a command's flags, tables,
// exit codes, the progress bar's silence off a terminal.
#include <gtest/gtest.h>

#include <sstream>

#include "command.h"

namespace txcoord::txctl {
namespace {

using std::chrono::milliseconds;

TEST(TxctlDuration, ParsesUnitsAndSums) {
  EXPECT_EQ(*ParseDuration("500ms"), milliseconds(500));
  EXPECT_EQ(*ParseDuration("45s"), milliseconds(45'000));
  EXPECT_EQ(*ParseDuration("10m"), milliseconds(600'000));
  EXPECT_EQ(*ParseDuration("2h"), milliseconds(7'200'000));
  EXPECT_EQ(*ParseDuration("3d"), milliseconds(259'200'000));
  EXPECT_EQ(*ParseDuration("1w"), milliseconds(604'800'000));
  EXPECT_EQ(*ParseDuration("1h30m"), milliseconds(5'400'000));
  for (const char* bad :
       {"", "10", "0s", "-5m", "5 m", "5x", "m", "1h30", "99999999999d", "9223372036854775807ms"}) {
    auto d = ParseDuration(bad);
    EXPECT_FALSE(d.ok()) << bad;
    EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(TxctlDuration, FormatsTheTwoLargestUnits) {
  EXPECT_EQ(FormatDuration(milliseconds(120)), "120ms");
  EXPECT_EQ(FormatDuration(milliseconds(45'000)), "45s");
  EXPECT_EQ(FormatDuration(milliseconds(7'800'000)), "2h10m");
  EXPECT_EQ(FormatDuration(milliseconds(7'200'000 + 5'000)), "2h");
  EXPECT_EQ(FormatDuration(milliseconds(3 * 86'400'000LL + 4 * 3'600'000LL + 59'000)), "3d4h");
  EXPECT_EQ(FormatDuration(milliseconds(-5)), "0ms");
}

TEST(TxctlArgs, FlagsValuesPositionalsAndErrors) {
  const std::vector<FlagSpec> specs = {{"branch"}, {"yes", false}, {"tag", true, true}};
  auto args = ParseArgs(
      "resolve",
      {"gtid-1", "--branch", "b1", "--yes", "--tag=x", "--tag", "y", "--", "--not-a-flag"}, specs);
  ASSERT_TRUE(args.ok()) << args.status().ToString();
  EXPECT_EQ(args->Get("branch"), "b1");
  EXPECT_TRUE(args->Has("yes"));
  EXPECT_EQ(args->GetAll("tag"), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(args->positional(), (std::vector<std::string>{"gtid-1", "--not-a-flag"}));
  EXPECT_FALSE(args->help());
  EXPECT_TRUE(ParseArgs("resolve", {"-h"}, specs)->help());

  for (const std::vector<std::string>& bad :
       std::vector<std::vector<std::string>>{{"--nope"},
                                             {"--branch"},
                                             {"--branch", "--yes"},
                                             {"--branch", "a", "--branch", "b"},
                                             {"--yes=1"},
                                             {"-x"}}) {
    auto refused = ParseArgs("resolve", bad, specs);
    ASSERT_FALSE(refused.ok()) << ::testing::PrintToString(bad);
    EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(refused.status().message().find("txctl resolve --help"), std::string::npos);
  }
}

TEST(TxctlTable, PadsColumnsWithoutTrailingBlanks) {
  Table table({"GTID", "STATE", "NOTE"});
  table.AddRow({"order-1", "committed", ""});
  table.AddRow({"o2", "aborting"});
  std::ostringstream out;
  table.Print(out);
  EXPECT_EQ(out.str(),
            "GTID     STATE      NOTE\n"
            "order-1  committed\n"
            "o2       aborting\n");
}

TEST(TxctlExitCodes, FollowTheStatusCode) {
  EXPECT_EQ(ExitCodeFor(Status::NotFound("x")), ExitCode::kNotFound);
  EXPECT_EQ(ExitCodeFor(Status::Conflict("x")), ExitCode::kRefused);
  EXPECT_EQ(ExitCodeFor(Status::InvalidArgument("x")), ExitCode::kUsage);
  EXPECT_EQ(ExitCodeFor(Status::Unavailable("x")), ExitCode::kUnreachable);
  EXPECT_EQ(ExitCodeFor(Status::PermissionDenied("x")), ExitCode::kUnreachable);
  EXPECT_EQ(ExitCodeFor(Status::Corruption("x")), ExitCode::kRefused);
  EXPECT_EQ(ToInt(ExitCode::kUnreachable), 4);
}

TEST(TxctlOutput, FailPrintsOneLineAndTheProgressBarOnlyOnATerminal) {
  std::ostringstream out, err;
  Context ctx;
  ctx.out_stream = &out;
  ctx.err_stream = &err;
  EXPECT_EQ(Fail(ctx, ExitCode::kRefused, "first\nsecond"), 1);
  EXPECT_EQ(err.str(), "txctl: first second\n");
  {
    ProgressBar quiet(ctx, "purging", 10);
    quiet.Update(5);
  }
  EXPECT_EQ(out.str(), "") << "no progress bar when stdout is not a terminal";
  ctx.stdout_is_terminal = true;
  {
    ProgressBar bar(ctx, "purging", 10);
    bar.Update(5);
    bar.Update(10);
  }
  EXPECT_NE(out.str().find("5/10 (50%)"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("10/10 (100%)\n"), std::string::npos) << out.str();
  out.str("");
  ctx.json = true;
  {
    ProgressBar silent(ctx, "purging", 10);
    silent.Update(5);
  }
  EXPECT_EQ(out.str(), "") << "never with --json";
}

}  // namespace
}  // namespace txcoord::txctl
