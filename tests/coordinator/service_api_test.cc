// The pure parts of the HTTP service: routing, the list query, traceparent, body decoding, the
// Status-to-HTTP mapping, API tokens and the metrics page. The served API is tested end to end
// in tests/integration/txcoord_api_test.cc.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <regex>
#include <sstream>
#include <string>
#include <variant>

#include "api_request.h"
#include "api_tokens.h"
#include "http_reply.h"
#include "metrics.h"
#include "txcoord/v1/api.pb.h"

namespace txcoord::service {
namespace {

using coordinator::Timestamp;
using std::chrono::milliseconds;

ApiRoute RouteOf(std::string_view method, std::string_view path) {
  auto matched = MatchApiRoute(method, path);
  if (auto* error = std::get_if<ErrorAnswer>(&matched)) {
    ADD_FAILURE() << method << " " << path << ": " << error->status << " " << error->message;
    return {};
  }
  return std::get<ApiRoute>(matched);
}

ErrorAnswer ErrorOf(std::string_view method, std::string_view path) {
  auto matched = MatchApiRoute(method, path);
  if (auto* error = std::get_if<ErrorAnswer>(&matched)) return *error;
  ADD_FAILURE() << method << " " << path << " matched an endpoint";
  return {};
}

TEST(MatchApiRouteTest, EveryEndpoint) {
  EXPECT_EQ(RouteOf("POST", "/v1/transactions").endpoint, Endpoint::kBegin);
  EXPECT_EQ(RouteOf("GET", "/v1/transactions").endpoint, Endpoint::kList);
  EXPECT_EQ(RouteOf("HEAD", "/v1/transactions").endpoint, Endpoint::kList);
  const ApiRoute get = RouteOf("GET", "/v1/transactions/order-42");
  EXPECT_EQ(get.endpoint, Endpoint::kGet);
  EXPECT_EQ(get.gtid, "order-42");
  EXPECT_EQ(RouteOf("POST", "/v1/transactions/a/branches").endpoint, Endpoint::kRegisterBranch);
  EXPECT_EQ(RouteOf("POST", "/v1/transactions/a/commit").endpoint, Endpoint::kCommit);
  const ApiRoute abort = RouteOf("POST", "/v1/transactions/a.b_c:d-e/abort");
  EXPECT_EQ(abort.endpoint, Endpoint::kAbort);
  EXPECT_EQ(abort.gtid, "a.b_c:d-e");
  // Percent-encoding is undone before the id rule is checked.
  EXPECT_EQ(RouteOf("GET", "/v1/transactions/ns%3A42").gtid, "ns:42");
}

TEST(MatchApiRouteTest, Errors) {
  EXPECT_EQ(ErrorOf("GET", "/v1/nothing").status, Poco::Net::HTTPResponse::HTTP_NOT_FOUND);
  EXPECT_EQ(ErrorOf("GET", "/v1/transactionsX").status, Poco::Net::HTTPResponse::HTTP_NOT_FOUND);
  EXPECT_EQ(ErrorOf("POST", "/v1/transactions/a/b/c").status,
            Poco::Net::HTTPResponse::HTTP_NOT_FOUND);
  EXPECT_EQ(ErrorOf("POST", "/v1/transactions/a/rollback").status,
            Poco::Net::HTTPResponse::HTTP_NOT_FOUND);

  const ErrorAnswer put = ErrorOf("PUT", "/v1/transactions");
  EXPECT_EQ(put.status, Poco::Net::HTTPResponse::HTTP_METHOD_NOT_ALLOWED);
  EXPECT_EQ(put.code, "INVALID_ARGUMENT");
  EXPECT_EQ(put.allow, "DELETE, GET, HEAD, POST");
  EXPECT_EQ(ErrorOf("DELETE", "/v1/transactions/a").allow, "GET, HEAD");
  EXPECT_EQ(ErrorOf("GET", "/v1/transactions/a/commit").allow, "POST");

  for (const char* path :
       {"/v1/transactions/", "/v1/transactions/bad%20id", "/v1/transactions/bad!id/commit",
        "/v1/transactions/%zz", "/v1/transactions/a%2Fb"}) {
    const ErrorAnswer bad = ErrorOf("GET", path);
    EXPECT_EQ(bad.status, Poco::Net::HTTPResponse::HTTP_BAD_REQUEST) << path;
    EXPECT_EQ(bad.code, "INVALID_ARGUMENT") << path;
  }
  const std::string long_gtid = "/v1/transactions/" + std::string(129, 'g');
  EXPECT_EQ(ErrorOf("GET", long_gtid).status, Poco::Net::HTTPResponse::HTTP_BAD_REQUEST);
  EXPECT_EQ(RouteOf("GET", "/v1/transactions/" + std::string(128, 'g')).endpoint, Endpoint::kGet);
}

TEST(MatchApiRouteTest, OperatorEndpoints) {
  EXPECT_EQ(RouteOf("DELETE", "/v1/transactions").endpoint, Endpoint::kPurge);
  const ApiRoute retry = RouteOf("POST", "/v1/transactions/order-42/retry");
  EXPECT_EQ(retry.endpoint, Endpoint::kRetry);
  EXPECT_EQ(retry.gtid, "order-42");
  const ApiRoute history = RouteOf("GET", "/v1/transactions/order-42/history");
  EXPECT_EQ(history.endpoint, Endpoint::kHistory);
  EXPECT_EQ(history.gtid, "order-42");
  EXPECT_EQ(RouteOf("HEAD", "/v1/transactions/order-42/history").endpoint, Endpoint::kHistory);
  const ApiRoute resolve = RouteOf("POST", "/v1/transactions/order-42/branches/ns%3Adebit/resolve");
  EXPECT_EQ(resolve.endpoint, Endpoint::kResolve);
  EXPECT_EQ(resolve.gtid, "order-42");
  EXPECT_EQ(resolve.branch_id, "ns:debit");

  EXPECT_EQ(ErrorOf("GET", "/v1/transactions/a/retry").allow, "POST");
  EXPECT_EQ(ErrorOf("POST", "/v1/transactions/a/history").allow, "GET, HEAD");
  EXPECT_EQ(ErrorOf("GET", "/v1/transactions/a/branches/b/resolve").allow, "POST");
  EXPECT_EQ(ErrorOf("POST", "/v1/transactions/a/branches/bad%20id/resolve").status,
            Poco::Net::HTTPResponse::HTTP_BAD_REQUEST);
  for (const char* path :
       {"/v1/transactions/a/branches/b/confirm", "/v1/transactions/a/steps/b/resolve",
        "/v1/transactions/a/branches/b/resolve/x"}) {
    EXPECT_EQ(ErrorOf("POST", path).status, Poco::Net::HTTPResponse::HTTP_NOT_FOUND) << path;
  }
}

TEST(ParsePurgeQueryTest, ReadsEveryParameterAndNeedsOlderThan) {
  const Timestamp now{milliseconds(1'700'000'000'000)};
  auto query = ParsePurgeQuery("older_than_ms=86400000&limit=500&dry_run=true", now);
  ASSERT_TRUE(query.ok()) << query.status().ToString();
  EXPECT_EQ(query->finished_before, now - milliseconds(86'400'000));
  EXPECT_EQ(query->limit, 500);
  EXPECT_TRUE(query->dry_run);
  auto defaults = ParsePurgeQuery("older_than_ms=0", now);
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->finished_before, now);
  EXPECT_EQ(defaults->limit, PurgeQuery{}.limit);
  EXPECT_FALSE(defaults->dry_run);
  for (const char* bad :
       {"", "limit=5", "older_than_ms=-1", "older_than_ms=x", "older_than_ms=1&limit=0",
        "older_than_ms=1&limit=100001", "older_than_ms=1&dry_run=yes", "older_than_ms=1&state=x",
        "older_than_ms=1&older_than_ms=2"}) {
    auto refused = ParsePurgeQuery(bad, now);
    EXPECT_FALSE(refused.ok()) << bad;
    EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(IsApiPathTest, OnlyV1) {
  EXPECT_TRUE(IsApiPath("/v1"));
  EXPECT_TRUE(IsApiPath("/v1/"));
  EXPECT_TRUE(IsApiPath("/v1/transactions"));
  EXPECT_FALSE(IsApiPath("/v10/transactions"));
  EXPECT_FALSE(IsApiPath("/healthz"));
  EXPECT_FALSE(IsApiPath("/metrics"));
}

TEST(ParseListQueryTest, ReadsEveryParameter) {
  const Timestamp now{milliseconds(1'700'000'000'000)};
  auto query = ParseListQuery("state=committed&older_than_ms=60000&limit=1000&after=order-41", now);
  ASSERT_TRUE(query.ok()) << query.status().ToString();
  EXPECT_EQ(query->state, "committed");
  ASSERT_TRUE(query->created_before.has_value());
  EXPECT_EQ(*query->created_before, now - milliseconds(60000));
  EXPECT_EQ(query->limit, 1000);
  EXPECT_EQ(query->after, "order-41");

  auto empty = ParseListQuery("", now);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->limit, coordinator::ListQuery{}.limit);
  EXPECT_FALSE(empty->created_before.has_value());
  EXPECT_EQ(empty->after, "");
  // An empty cursor is the first page; empty pairs are skipped.
  ASSERT_TRUE(ParseListQuery("after=&&limit=1&", now).ok());
  EXPECT_EQ(ParseListQuery("after=ns%3A1", now)->after, "ns:1");
}

TEST(ParseListQueryTest, RefusesBadValues) {
  const Timestamp now{milliseconds(1'700'000'000'000)};
  for (const char* bad :
       {"limit=0", "limit=1001", "limit=-1", "limit=ten", "limit=", "limit=1.5", "limit=1&limit=2",
        "older_than_ms=-1", "older_than_ms=1e3", "older_than_ms=99999999999999999999", "colour=red",
        "after=bad%20id", "state=", "state=COMMITTED", "state=a%22b", "limit=%zz"}) {
    auto query = ParseListQuery(bad, now);
    EXPECT_FALSE(query.ok()) << bad;
    EXPECT_EQ(query.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(ParseListQueryTest, TheStateIsOneTheRecordsCanShow) {
  const Timestamp now{milliseconds(1'700'000'000'000)};
  for (const char* state : {"active", "preparing", "can-committing", "pre-committing", "committing",
                            "aborting", "running", "compensating", "committed", "aborted"}) {
    auto query = ParseListQuery(std::string("state=") + state, now);
    ASSERT_TRUE(query.ok()) << state << ": " << query.status().ToString();
    EXPECT_EQ(query->state, state);
  }
  // A typo lists the states instead of an empty page.
  auto typo = ParseListQuery("state=comitted", now);
  ASSERT_EQ(typo.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(typo.status().message().find("\"comitted\" is not a transaction state; one of "
                                         "active, preparing"),
            std::string::npos)
      << typo.status().message();
}

TEST(IsValidTraceparentTest, W3cShapes) {
  EXPECT_TRUE(IsValidTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  EXPECT_TRUE(IsValidTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x"));
  for (const char* bad : {
           "",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  // 00 has no more
           "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
           "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
           "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
           "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
           "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-\x01",
       }) {
    EXPECT_FALSE(IsValidTraceparent(bad)) << bad;
  }
}

TEST(DecodeBodyTest, JsonProtobufAndEmpty) {
  v1::CompleteRequest complete;
  EXPECT_TRUE(DecodeBody("", /*protobuf=*/false, /*empty_allowed=*/true, &complete).ok());
  EXPECT_FALSE(complete.wait());
  EXPECT_EQ(DecodeBody("", false, false, &complete).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(DecodeBody(R"({"wait":true})", false, true, &complete).ok());
  EXPECT_TRUE(complete.wait());

  v1::BeginRequest begin;
  EXPECT_EQ(DecodeBody(R"({"protocol":"tcc","extra":1})", false, false, &begin).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeBody(R"({"wait":"yes"})", false, false, &begin).code(),
            StatusCode::kInvalidArgument);
  const Status malformed = DecodeBody("{", false, false, &begin);
  EXPECT_EQ(malformed.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(malformed.message().find("BeginRequest"), std::string::npos) << malformed.message();

  v1::BeginRequest sent;
  sent.set_gtid("pb-1");
  sent.set_protocol("2pc");
  ASSERT_TRUE(DecodeBody(sent.SerializeAsString(), /*protobuf=*/true, false, &begin).ok());
  EXPECT_EQ(begin.gtid(), "pb-1");
  EXPECT_EQ(DecodeBody("\xff\xff\xff", true, false, &begin).code(), StatusCode::kInvalidArgument);
}

// A binary body may not hold what its JSON form could not: both forms accept the same requests
// (found by tests/fuzz: a payload Value with no kind vanished from the callback body).
// A payload passes untouched, and a google.protobuf.Value holds numbers as doubles: an integer
// it would change is refused rather than rounded.
TEST(DecodeBodyTest, IntegersBeyondTwoToThe53AreRefusedNotRounded) {
  const auto decode = [](const std::string& payload) {
    v1::BeginRequest decoded;
    return DecodeBody(
        R"({"protocol":"2pc","branches":[{"branch_id":"b","url":"http://127.0.0.1:1/x",)"
        R"("payload":)" +
            payload + "}]}",
        false, false, &decoded);
  };
  for (const std::string refused : {"9007199254740993", "-9007199254740993", "12345678901234567891",
                                    R"({"id":[1,{"order":99999999999999999}]})"}) {
    const Status s = decode(refused);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << refused;
    EXPECT_NE(s.message().find("beyond 2^53"), std::string::npos) << s.message();
  }
  const Status named = decode("[1, 18446744073709551615]");
  EXPECT_NE(named.message().find("18446744073709551615"), std::string::npos) << named.message();
  for (const std::string kept :
       {"9007199254740992", "-9007199254740992", "1e300", "12345678901234567891.5",
        "1.8446744073709552e19", R"("12345678901234567891")", R"({"12345678901234567891":1})",
        R"("a \" 12345678901234567891")"}) {
    EXPECT_TRUE(decode(kept).ok()) << kept << ": " << decode(kept).ToString();
  }
}

TEST(DecodeBodyTest, BinaryBodiesAreHeldToWhatJsonCanSay) {
  v1::BeginRequest sent;
  sent.set_protocol("2pc");
  v1::Branch* branch = sent.add_branches();
  branch->set_branch_id("debit");
  branch->set_url("http://127.0.0.1:1/bank");
  branch->mutable_payload()->mutable_list_value()->add_values()->set_number_value(1);
  v1::BeginRequest decoded;
  ASSERT_TRUE(DecodeBody(sent.SerializeAsString(), true, false, &decoded).ok());

  // An element of the payload's list with no kind: its JSON form would drop it.
  v1::BeginRequest no_kind = sent;
  no_kind.mutable_branches(0)->mutable_payload()->mutable_list_value()->add_values();
  const Status kindless = DecodeBody(no_kind.SerializeAsString(), true, false, &decoded);
  EXPECT_EQ(kindless.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(kindless.message().find("branches[0].payload.list_value.values[1]"), std::string::npos)
      << kindless.message();

  // The same inside an object, and as the whole payload.
  v1::BeginRequest in_struct = sent;
  (*in_struct.mutable_branches(0)
        ->mutable_payload()
        ->mutable_struct_value()
        ->mutable_fields())["amount"];
  EXPECT_EQ(DecodeBody(in_struct.SerializeAsString(), true, false, &decoded).code(),
            StatusCode::kInvalidArgument);
  v1::BeginRequest empty_payload = sent;
  empty_payload.mutable_branches(0)->mutable_payload()->Clear();
  EXPECT_EQ(DecodeBody(empty_payload.SerializeAsString(), true, false, &decoded).code(),
            StatusCode::kInvalidArgument);

  // Numbers JSON has no form for, anywhere in a payload.
  for (const double number :
       {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
        -std::numeric_limits<double>::infinity()}) {
    v1::BeginRequest odd = sent;
    (*odd.mutable_branches(0)->mutable_payload()->mutable_struct_value()->mutable_fields())["n"]
        .set_number_value(number);
    const Status refused = DecodeBody(odd.SerializeAsString(), true, false, &decoded);
    EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument) << number;
    EXPECT_NE(
        refused.message().find("branches[0].payload.struct_value[\"n\"] is a number that is NaN or "
                               "infinite"),
        std::string::npos)
        << refused.message();
  }
  v1::BeginRequest largest = sent;
  largest.mutable_branches(0)->mutable_payload()->set_number_value(
      std::numeric_limits<double>::max());
  EXPECT_TRUE(DecodeBody(largest.SerializeAsString(), true, false, &decoded).ok());

  // A field this version does not know (number 99, varint 1), as JSON refuses unknown names.
  std::string unknown = sent.SerializeAsString();
  unknown += std::string("\x98\x06\x01", 3);
  const Status newer = DecodeBody(unknown, true, false, &decoded);
  EXPECT_EQ(newer.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(newer.message().find("field number 99"), std::string::npos) << newer.message();
}

TEST(ErrorAnswerForTest, ContractStatuses) {
  using R = Poco::Net::HTTPResponse;
  const struct {
    Status status;
    R::HTTPStatus http;
    std::string_view code;
  } cases[] = {
      {Status::InvalidArgument("x"), R::HTTP_BAD_REQUEST, "INVALID_ARGUMENT"},
      {Status::PermissionDenied("x"), R::HTTP_FORBIDDEN, "FORBIDDEN"},
      {Status::NotFound("x"), R::HTTP_NOT_FOUND, "NOT_FOUND"},
      {Status::Conflict("x"), R::HTTP_CONFLICT, "CONFLICT"},
      {Status::AlreadyExists("x"), R::HTTP_CONFLICT, "CONFLICT"},
      {Status::TooLarge("x"), R::HTTP_REQUEST_ENTITY_TOO_LARGE, "TOO_LARGE"},
      {Status::Unavailable("x"), R::HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE"},
      {Status::UnknownOutcome("x"), R::HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE"},
      {Status::Corruption("x"), R::HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE"},
      {Status::Internal("x"), R::HTTP_SERVICE_UNAVAILABLE, "UNAVAILABLE"},
  };
  for (const auto& c : cases) {
    const ErrorAnswer answer = ErrorAnswerFor(c.status);
    EXPECT_EQ(answer.status, c.http) << c.status.ToString();
    EXPECT_EQ(answer.code, c.code) << c.status.ToString();
    EXPECT_EQ(answer.message, "x");
  }
}

TEST(ApiTokensTest, VerifiesBearerTokens) {
  const ApiTokens none;
  EXPECT_FALSE(none.required());
  EXPECT_TRUE(none.Verify(""));

  const ApiTokens tokens = ApiTokens::FromTokens({"alpha", "beta-2"});
  EXPECT_TRUE(tokens.required());
  EXPECT_TRUE(tokens.Verify("Bearer alpha"));
  EXPECT_TRUE(tokens.Verify("bearer beta-2"));
  EXPECT_TRUE(tokens.Verify("BEARER  beta-2 "));
  for (const char* bad : {"", "alpha", "Bearer", "Bearer ", "Bearer alph", "Bearer alphaa",
                          "Bearer ALPHA", "Basic alpha", "Bearer alpha beta-2", "Bearerbeta-2"}) {
    EXPECT_FALSE(tokens.Verify(bad)) << bad;
  }
}

class ApiTokensFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "api_tokens_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& text) {
    const std::string path = dir_ + "/tokens";
    std::ofstream(path) << text;
    return path;
  }
  std::string dir_;
};

TEST_F(ApiTokensFileTest, SkipsBlankLinesAndComments) {
  auto tokens = ApiTokens::Load(Write("# ops\n\n  first  \r\n\t# old: retired\nsecond\n"));
  ASSERT_TRUE(tokens.ok()) << tokens.status().ToString();
  EXPECT_EQ(tokens->size(), 2u);
  EXPECT_TRUE(tokens->Verify("Bearer first"));
  EXPECT_TRUE(tokens->Verify("Bearer second"));
  EXPECT_FALSE(tokens->Verify("Bearer # ops"));
  EXPECT_FALSE(tokens->Verify("Bearer old: retired"));
}

TEST_F(ApiTokensFileTest, RefusesEmptyFilesAndBadTokens) {
  for (const char* text : {"", "\n\n", "# only a comment\n", "two words\n", "ctl\x01char\n"}) {
    auto tokens = ApiTokens::Load(Write(text));
    EXPECT_FALSE(tokens.ok()) << text;
    // The message names the file, never the token.
    EXPECT_NE(tokens.status().message().find(dir_), std::string::npos);
    EXPECT_EQ(tokens.status().message().find("words"), std::string::npos);
  }
  EXPECT_FALSE(ApiTokens::Load(dir_ + "/missing").ok());
  EXPECT_FALSE(ApiTokens::Load(dir_).ok());
}

TEST(RenderMetricsTest, EverySampleLineIsNameLabelsValue) {
  HttpMetrics http;
  http.CountReply(200);
  http.CountReply(200);
  http.CountReply(404);
  http.CountReply(42);  // out of range: counted, as 599
  http.CountRejected();
  MetricsSnapshot snapshot;
  snapshot.coordinator.live = 3;
  snapshot.coordinator.begun = 7;
  snapshot.coordinator.committed = 4;
  snapshot.coordinator.aborted = 1;
  snapshot.requests_in_progress = 1;
  const std::string page = RenderMetrics(snapshot, http);

  const std::regex sample(
      R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9]+(\.[0-9]+)?$)");
  std::istringstream lines(page);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) continue;
    EXPECT_TRUE(std::regex_match(line, sample)) << line;
  }
  for (const char* expected :
       {"\ntxcoord_transactions_live 3\n", "\ntxcoord_transactions_begun_total 7\n",
        "\ntxcoord_transactions_finished_total{outcome=\"committed\"} 4\n",
        "\ntxcoord_transactions_finished_total{outcome=\"aborted\"} 1\n",
        "\ntxcoord_http_requests_total{code=\"200\"} 2\n",
        "\ntxcoord_http_requests_total{code=\"404\"} 1\n",
        "\ntxcoord_http_requests_total{code=\"599\"} 1\n", "\ntxcoord_http_rejected_total 1\n",
        "\ntxcoord_callbacks_total 0\n", "\ntxcoord_transactions_recovered_total 0\n"}) {
    EXPECT_NE(page.find(expected), std::string::npos) << expected << " missing from\n" << page;
  }
  EXPECT_EQ(page.find("code=\"500\""), std::string::npos) << "codes never sent are left out";
}

}  // namespace
}  // namespace txcoord::service
