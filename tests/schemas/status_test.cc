// Status and Result: the error rule every library follows. Retry decisions hang on
// NothingHappened, so its classification is pinned code by code.
#include "txcoord/status.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "printers.h"

namespace txcoord {
namespace {

struct CodeFacts {
  StatusCode code;
  std::string_view name;
  bool nothing_happened;
};

// The table of status.h. kUnknownOutcome and kInternal are the two where the caller may not
// assume the operation failed cleanly: retrying a COMMIT that may have landed must read back first.
const std::vector<CodeFacts>& AllCodes() {
  static const std::vector<CodeFacts> kCodes = {
      {StatusCode::kOk, "OK", false},
      {StatusCode::kInvalidArgument, "INVALID_ARGUMENT", true},
      {StatusCode::kNotFound, "NOT_FOUND", true},
      {StatusCode::kAlreadyExists, "ALREADY_EXISTS", true},
      {StatusCode::kConflict, "CONFLICT", true},
      {StatusCode::kUnavailable, "UNAVAILABLE", true},
      {StatusCode::kUnknownOutcome, "UNKNOWN_OUTCOME", false},
      {StatusCode::kCorruption, "CORRUPTION", true},
      {StatusCode::kInternal, "INTERNAL", false},
      {StatusCode::kPermissionDenied, "PERMISSION_DENIED", true},
      {StatusCode::kTooLarge, "TOO_LARGE", true},
  };
  return kCodes;
}

TEST(StatusTest, EveryCodeHasItsNameAndClassification) {
  for (const auto& facts : AllCodes()) {
    SCOPED_TRACE(std::string(facts.name));
    EXPECT_EQ(StatusCodeName(facts.code), facts.name);
    const Status status(facts.code, "m");
    EXPECT_EQ(status.code(), facts.code);
    EXPECT_EQ(status.ok(), facts.code == StatusCode::kOk);
    EXPECT_EQ(status.NothingHappened(), facts.nothing_happened);
  }
  // The table above covers the enum: kTooLarge is its last value.
  EXPECT_EQ(static_cast<int>(StatusCode::kTooLarge) + 1, static_cast<int>(AllCodes().size()));
}

TEST(StatusTest, FactoriesSetTheirCode) {
  EXPECT_EQ(Status::InvalidArgument("m").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Status::NotFound("m").code(), StatusCode::kNotFound);
  EXPECT_EQ(Status::AlreadyExists("m").code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(Status::Conflict("m").code(), StatusCode::kConflict);
  EXPECT_EQ(Status::Unavailable("m").code(), StatusCode::kUnavailable);
  EXPECT_EQ(Status::UnknownOutcome("m").code(), StatusCode::kUnknownOutcome);
  EXPECT_EQ(Status::Corruption("m").code(), StatusCode::kCorruption);
  EXPECT_EQ(Status::Internal("m").code(), StatusCode::kInternal);
  EXPECT_EQ(Status::PermissionDenied("m").code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(Status::TooLarge("m").code(), StatusCode::kTooLarge);
  EXPECT_TRUE(Status::Ok().ok());
  EXPECT_TRUE(Status().ok());
}

TEST(StatusTest, ToStringShowsCodeAndMessage) {
  EXPECT_EQ(Status::Ok().ToString(), "OK");
  EXPECT_EQ(Status::NotFound("transaction order-42 does not exist").ToString(),
            "NOT_FOUND: transaction order-42 does not exist");
}

TEST(StatusTest, WithContextPrefixesTheMessageAndKeepsTheCode) {
  const Status status =
      Status::UnknownOutcome("connection reset").WithContext("commit").WithContext("order-42");
  EXPECT_EQ(status.code(), StatusCode::kUnknownOutcome);
  EXPECT_EQ(status.message(), "order-42: commit: connection reset");
  EXPECT_FALSE(status.NothingHappened());

  // Success has no message to explain, and must stay success.
  const Status ok = Status::Ok().WithContext("append order-42");
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.message(), "");
}

TEST(ResultTest, HoldsAValue) {
  Result<std::string> result(std::string("order-42"));
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result.status().ok());
  EXPECT_EQ(*result, "order-42");
  EXPECT_EQ(result->size(), 8u);
  result.value() += "-b";
  EXPECT_EQ(result.value(), "order-42-b");
}

TEST(ResultTest, HoldsAnErrorAndNoValue) {
  const Result<int> result(Status::NotFound("no such transaction"));
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(result.status().message(), "no such transaction");
}

TEST(ResultTest, MovesOutAMoveOnlyValue) {
  Result<std::unique_ptr<int>> result(std::make_unique<int>(7));
  ASSERT_TRUE(result.ok());
  std::unique_ptr<int> taken = std::move(result).value();
  ASSERT_NE(taken, nullptr);
  EXPECT_EQ(*taken, 7);
}

// TXCOORD_RETURN_IF_ERROR returns the first error and runs on after success, both from a function
// returning Status and from one returning Result<T>.
Status Step(bool fail, int* calls) {
  ++*calls;
  return fail ? Status::Conflict("step failed") : Status::Ok();
}

Status TwoSteps(bool fail_first, int* calls) {
  TXCOORD_RETURN_IF_ERROR(Step(fail_first, calls));
  TXCOORD_RETURN_IF_ERROR(Step(false, calls));
  return Status::Ok();
}

Result<int> TwoStepsThenValue(bool fail_first, int* calls) {
  TXCOORD_RETURN_IF_ERROR(Step(fail_first, calls));
  TXCOORD_RETURN_IF_ERROR(Step(false, calls));
  return 42;
}

TEST(StatusTest, ReturnIfErrorStopsAtTheFirstError) {
  int calls = 0;
  EXPECT_TRUE(TwoSteps(false, &calls).ok());
  EXPECT_EQ(calls, 2);

  calls = 0;
  const Status failed = TwoSteps(true, &calls);
  EXPECT_EQ(failed.code(), StatusCode::kConflict);
  EXPECT_EQ(calls, 1);

  calls = 0;
  const Result<int> value = TwoStepsThenValue(false, &calls);
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(*value, 42);

  calls = 0;
  const Result<int> error = TwoStepsThenValue(true, &calls);
  EXPECT_FALSE(error.ok());
  EXPECT_EQ(error.status().code(), StatusCode::kConflict);
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace txcoord
