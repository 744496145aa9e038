// Callback signatures (contract section 4). The library computes HMAC-SHA256 with OpenSSL; the
// known answers here come from a different implementation, Poco's HMACEngine over its own
// SHA2Engine, fed the signing input spelled out from the contract, and from RFC 4231. Every
// refusal case is built so that only the check under test can refuse it.
#include "txcoord/participant/signature.h"

#include <Poco/DigestEngine.h>
#include <Poco/HMACEngine.h>
#include <Poco/SHA2Engine.h>
#include <gtest/gtest.h>

#include <cctype>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace txcoord::participant {
namespace {

// The library's results, unwrapped: every call in these tests has valid inputs.
std::string Sign(std::string_view secret, int64_t ts, std::string_view path,
                 std::string_view body) {
  auto r = SignCallback(secret, ts, path, body);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : std::string();
}
std::string Hmac(std::string_view key, std::string_view data) {
  auto r = detail::HmacSha256Hex(key, data);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : std::string();
}

// Poco 1.11's SHA2Engine lacks the BLOCK_SIZE and DIGEST_SIZE that HMACEngine needs.
class PocoSha256Engine : public Poco::SHA2Engine {
 public:
  enum { BLOCK_SIZE = 64, DIGEST_SIZE = 32 };
  PocoSha256Engine() : Poco::SHA2Engine(SHA_256) {}
};

std::string PocoHmacSha256Hex(const std::string& key, const std::string& data) {
  Poco::HMACEngine<PocoSha256Engine> hmac(key);
  hmac.update(data);
  return Poco::DigestEngine::digestToHex(hmac.digest());
}

// The contract's formula, written out independently of the library.
std::string ContractSignature(const std::string& secret, const std::string& timestamp,
                              const std::string& path, const std::string& body) {
  return "sha256=" + PocoHmacSha256Hex(secret, timestamp + "\n" + path + "\n" + body);
}

// Refused with kInvalidArgument (the SDK answers 401 to every refusal) and a message containing
// `about`, so that a refusal for the wrong reason fails the test.
::testing::AssertionResult RefusedWith(const Status& status, std::string_view about) {
  if (status.ok()) return ::testing::AssertionFailure() << "accepted, expected: " << about;
  if (status.code() != StatusCode::kInvalidArgument) {
    return ::testing::AssertionFailure() << "wrong code: " << status.ToString();
  }
  if (status.message().find(about) == std::string::npos) {
    return ::testing::AssertionFailure()
           << "\"" << status.message() << "\" lacks \"" << about << "\"";
  }
  return ::testing::AssertionSuccess();
}

constexpr std::string_view kMismatch = "signature does not match";
constexpr std::string_view kBadTimestamp = "Tx-Timestamp must be";
constexpr std::string_view kBadSignature = "Tx-Signature must be";

const std::string kSecret = "txcoord-test-secret";
constexpr int64_t kTimestamp = 1700000000;
const std::string kTimestampText = "1700000000";
const std::string kPath = "/bank/debit/prepare";
const std::string kBody =
    R"({"gtid": "order-42", "branch_id": "debit", "phase": "prepare", "payload": )"
    R"({"account": "A", "amount": 30}})";

TEST(HmacSha256HexTest, Rfc4231TestCases) {
  // Case 2 is the one asked for; 1 and 6 add a binary key and a key longer than a block, which
  // HMAC hashes first.
  EXPECT_EQ(Hmac("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(Hmac(std::string(20, '\x0b'), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(
      Hmac(std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First"),
      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  // The oracle the other tests rely on gets case 2 right too.
  EXPECT_EQ(PocoHmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(HmacSha256HexTest, EmptyKeyAndDataAreTheEmptyStringNotNull) {
  EXPECT_EQ(Hmac("", ""), "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
  EXPECT_EQ(Hmac("", ""), PocoHmacSha256Hex("", ""));
}

TEST(SignCallbackTest, RefusesAnEmptySecretAndANegativeTimestamp) {
  EXPECT_EQ(SignCallback("", kTimestamp, kPath, kBody).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(SignCallback(kSecret, -1, kPath, kBody).status().code(), StatusCode::kInvalidArgument);
}

TEST(SignCallbackTest, KnownAnswerFromTheContractFormula) {
  const std::string signature = Sign(kSecret, kTimestamp, kPath, kBody);
  EXPECT_EQ(signature, ContractSignature(kSecret, kTimestampText, kPath, kBody));
  // Pinned as well, for participants in other languages to check against. Computed with Python's
  // hmac module and `openssl dgst -sha256 -hmac`.
  EXPECT_EQ(signature, "sha256=b3460658d0aa744943442332ab8fbbd9a64af404835fc1fafcccc2e3c7b32c61");
}

TEST(SignCallbackTest, BodyIsTakenAsBytesIncludingNulAndNonAscii) {
  const std::string body = std::string("a\0b", 3) + "\xc3\xa9\n\xff";
  EXPECT_EQ(Sign(kSecret, kTimestamp, kPath, body),
            ContractSignature(kSecret, kTimestampText, kPath, body));
  EXPECT_NE(Sign(kSecret, kTimestamp, kPath, body), Sign(kSecret, kTimestamp, kPath, "a"));
  EXPECT_EQ(Sign(kSecret, 0, "", ""), ContractSignature(kSecret, "0", "", ""));
}

TEST(SignCallbackTest, TheJoinsAreNewlinesSoFieldsCannotBeShifted) {
  // Moving a character between path and body changes the signature.
  EXPECT_NE(Sign(kSecret, kTimestamp, "/a", "b"), Sign(kSecret, kTimestamp, "/", "ab"));
}

TEST(VerifyCallbackTest, RoundTripIsAccepted) {
  const std::string signature = Sign(kSecret, kTimestamp, kPath, kBody);
  Status status = VerifyCallback(kSecret, kTimestampText, signature, kPath, kBody, kTimestamp);
  EXPECT_TRUE(status.ok()) << status.ToString();
}

TEST(VerifyCallbackTest, TamperedRequestsAreRefusedAsMismatch) {
  const std::string signature = Sign(kSecret, kTimestamp, kPath, kBody);
  auto verify = [&](std::string_view timestamp, std::string_view path, std::string_view body) {
    return VerifyCallback(kSecret, timestamp, signature, path, body, kTimestamp);
  };
  std::string body = kBody;
  body[body.size() / 2] ^= 0x01;
  EXPECT_TRUE(RefusedWith(verify(kTimestampText, kPath, body), kMismatch));
  EXPECT_TRUE(RefusedWith(verify(kTimestampText, kPath, kBody + " "), kMismatch));
  EXPECT_TRUE(RefusedWith(verify(kTimestampText, "/bank/debit/commit", kBody), kMismatch));
  // One second later is well inside the skew, so only the MAC can refuse it.
  EXPECT_TRUE(RefusedWith(verify("1700000001", kPath, kBody), kMismatch));
  EXPECT_TRUE(RefusedWith(
      VerifyCallback("txcoord-other-secret", kTimestampText, signature, kPath, kBody, kTimestamp),
      kMismatch));
}

TEST(VerifyCallbackTest, EveryHexDigitIsCompared) {
  const std::string signature = Sign(kSecret, kTimestamp, kPath, kBody);
  for (size_t i = std::string_view("sha256=").size(); i < signature.size(); ++i) {
    std::string tampered = signature;
    tampered[i] = tampered[i] == '0' ? '1' : '0';
    EXPECT_TRUE(RefusedWith(
        VerifyCallback(kSecret, kTimestampText, tampered, kPath, kBody, kTimestamp), kMismatch))
        << "digit " << i;
  }
}

TEST(VerifyCallbackTest, MalformedSignatureHeadersAreRefused) {
  const std::string signature = Sign(kSecret, kTimestamp, kPath, kBody);
  const std::string hex = signature.substr(std::string_view("sha256=").size());
  std::string upper = "sha256=";
  for (char c : hex)
    upper.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  ASSERT_NE(upper, signature) << "the fixture's signature must contain a letter";

  const std::vector<std::string> malformed = {
      upper,                          // Uppercase hex: the right MAC, not the contract's form.
      hex,                            // No "sha256=" prefix.
      "SHA256=" + hex,                // Prefix in the wrong case.
      "sha256:" + hex,                // Wrong separator.
      "sha256=" + hex.substr(0, 63),  // 63 hex digits.
      signature + "0",                // 65 hex digits.
      signature + " ",                // Trailing space (HTTP parsers trim it).
      " " + signature,                // Leading space.
      "sha256=" + hex.substr(0, 62) + "g0",  // Not a hex digit.
      "sha256=",                             // Prefix alone.
  };
  for (const std::string& header : malformed) {
    EXPECT_TRUE(RefusedWith(
        VerifyCallback(kSecret, kTimestampText, header, kPath, kBody, kTimestamp), kBadSignature))
        << "header \"" << header << "\"";
  }
}

TEST(VerifyCallbackTest, MissingHeadersAreRefused) {
  const std::string signature = Sign(kSecret, kTimestamp, kPath, kBody);
  EXPECT_TRUE(RefusedWith(VerifyCallback(kSecret, "", signature, kPath, kBody, kTimestamp),
                          "Tx-Timestamp header missing"));
  EXPECT_TRUE(RefusedWith(VerifyCallback(kSecret, kTimestampText, "", kPath, kBody, kTimestamp),
                          "Tx-Signature header missing"));
}

TEST(VerifyCallbackTest, GarbageTimestampsAreRefusedEvenWhenCorrectlySigned) {
  // Each signature is the real MAC over the garbage text, so the format check alone must refuse.
  const std::vector<std::string> garbage = {
      "-5",
      "+5",
      " 12",
      "12 ",
      "12a",
      "0x10",
      "1.5",
      "1e9",
      "\t1",
      std::string("1\0", 2),
      "99999999999999999999999",  // Overflows int64.
      "9223372036854775808",      // INT64_MAX + 1.
  };
  for (const std::string& timestamp : garbage) {
    const std::string signature = ContractSignature(kSecret, timestamp, kPath, kBody);
    EXPECT_TRUE(RefusedWith(VerifyCallback(kSecret, timestamp, signature, kPath, kBody, kTimestamp),
                            kBadTimestamp))
        << "timestamp \"" << timestamp << "\"";
  }
}

TEST(VerifyCallbackTest, SkewOfExactlyMaxIsAcceptedAndOneMoreIsRefused) {
  const std::string signature = Sign(kSecret, kTimestamp, kPath, kBody);
  auto verify_at = [&](int64_t now) {
    return VerifyCallback(kSecret, kTimestampText, signature, kPath, kBody, now);
  };
  EXPECT_TRUE(verify_at(kTimestamp + 300).ok());  // Signed 300 s ago.
  EXPECT_TRUE(verify_at(kTimestamp - 300).ok());  // Signed 300 s in our future.
  EXPECT_TRUE(RefusedWith(verify_at(kTimestamp + 301), "is 301 s behind"));
  EXPECT_TRUE(RefusedWith(verify_at(kTimestamp - 301), "is 301 s ahead of"));
  EXPECT_TRUE(RefusedWith(verify_at(kTimestamp - 3600), "is 3600 s ahead of"));
  EXPECT_TRUE(RefusedWith(verify_at(kTimestamp + 86400), "is 86400 s behind"));
}

TEST(VerifyCallbackTest, MaxSkewIsTheCallersAndNegativeMeansZero) {
  const std::string signature = Sign(kSecret, kTimestamp, kPath, kBody);
  auto verify = [&](int64_t now, int64_t max_skew) {
    return VerifyCallback(kSecret, kTimestampText, signature, kPath, kBody, now, max_skew);
  };
  EXPECT_TRUE(verify(kTimestamp + 10, 10).ok());
  EXPECT_TRUE(RefusedWith(verify(kTimestamp + 11, 10), "more than the 10 s allowed"));
  EXPECT_TRUE(verify(kTimestamp, 0).ok());
  EXPECT_TRUE(RefusedWith(verify(kTimestamp + 1, 0), "1 s behind"));
  EXPECT_TRUE(RefusedWith(verify(kTimestamp + 1, -5), "1 s behind"));
  EXPECT_TRUE(verify(kTimestamp, std::numeric_limits<int64_t>::min()).ok());
}

TEST(VerifyCallbackTest, ExtremeTimestampsAndClocksDoNotOverflow) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  const std::string max_text = std::to_string(kMax);
  const std::string signature = ContractSignature(kSecret, max_text, kPath, kBody);
  EXPECT_TRUE(RefusedWith(VerifyCallback(kSecret, max_text, signature, kPath, kBody, kTimestamp),
                          "ahead of"));
  // INT64_MAX - INT64_MIN does not fit in int64.
  EXPECT_TRUE(RefusedWith(VerifyCallback(kSecret, max_text, signature, kPath, kBody,
                                         std::numeric_limits<int64_t>::min()),
                          "Tx-Timestamp is"));
  EXPECT_TRUE(VerifyCallback(kSecret, max_text, signature, kPath, kBody, kMax).ok());
}

TEST(VerifyCallbackTest, AnEmptySecretIsRefusedEvenWithAMatchingSignature) {
  // Anyone can compute a MAC with the empty key; a participant configured so must refuse all.
  const std::string forged = ContractSignature("", kTimestampText, kPath, kBody);
  EXPECT_TRUE(RefusedWith(VerifyCallback("", kTimestampText, forged, kPath, kBody, kTimestamp),
                          "no callback secret configured"));
}

TEST(VerifyCallbackAnyTest, RotationAcceptsEitherSecret) {
  const std::vector<std::string> secrets = {"txcoord-old-secret", "txcoord-new-secret"};
  for (const std::string& secret : secrets) {
    const std::string signature = Sign(secret, kTimestamp, kPath, kBody);
    Status status = VerifyCallbackAny(secrets, kTimestampText, signature, kPath, kBody, kTimestamp);
    EXPECT_TRUE(status.ok()) << secret << ": " << status.ToString();
  }
  const std::string retired = Sign("txcoord-retired-secret", kTimestamp, kPath, kBody);
  EXPECT_TRUE(RefusedWith(
      VerifyCallbackAny(secrets, kTimestampText, retired, kPath, kBody, kTimestamp), kMismatch));
  // The other checks still apply when a secret matches.
  const std::string signature = Sign(secrets[1], kTimestamp, kPath, kBody);
  EXPECT_TRUE(RefusedWith(
      VerifyCallbackAny(secrets, kTimestampText, signature, kPath, kBody, kTimestamp + 301),
      "301 s behind"));
  EXPECT_TRUE(RefusedWith(
      VerifyCallbackAny(secrets, kTimestampText, signature, kPath, kBody + "x", kTimestamp),
      kMismatch));
}

TEST(VerifyCallbackAnyTest, NoSecretsOrAnEmptyOneIsAConfigurationError) {
  const std::string signature = Sign(kSecret, kTimestamp, kPath, kBody);
  EXPECT_TRUE(
      RefusedWith(VerifyCallbackAny({}, kTimestampText, signature, kPath, kBody, kTimestamp),
                  "no callback secret configured"));
  // Refused although kSecret matches: an empty entry is a mistake that should not go unnoticed.
  const std::vector<std::string> with_empty = {kSecret, ""};
  EXPECT_TRUE(RefusedWith(
      VerifyCallbackAny(with_empty, kTimestampText, signature, kPath, kBody, kTimestamp),
      "callback secret 2 of 2 is empty"));
}

TEST(VerifyCallbackTest, NoRefusalRevealsTheSecretOrTheExpectedSignature) {
  const std::string secret = "Zq9-DISTINCTIVE-SECRET-do-not-log-4711";
  const std::string expected = Sign(secret, kTimestamp, kPath, kBody);
  const std::string expected_hex = expected.substr(std::string_view("sha256=").size());
  const std::vector<std::string> secrets = {"txcoord-old-secret", secret};

  std::vector<Status> refusals = {
      VerifyCallback(secret, kTimestampText, expected, kPath, kBody + "x", kTimestamp),
      VerifyCallback(secret, kTimestampText, expected, kPath, kBody, kTimestamp + 301),
      VerifyCallback(secret, kTimestampText, expected, kPath, kBody, kTimestamp - 301),
      VerifyCallback(secret, "12a", expected, kPath, kBody, kTimestamp),
      VerifyCallback(secret, "", expected, kPath, kBody, kTimestamp),
      VerifyCallback(secret, kTimestampText, "", kPath, kBody, kTimestamp),
      VerifyCallback(secret, kTimestampText, expected.substr(0, 70), kPath, kBody, kTimestamp),
      VerifyCallback(secret, kTimestampText, "sha256=" + std::string(64, '0'), kPath, kBody,
                     kTimestamp),
      VerifyCallbackAny(secrets, kTimestampText, "sha256=" + std::string(64, '0'), kPath, kBody,
                        kTimestamp),
      VerifyCallbackAny(secrets, "1700000001", expected, kPath, kBody, kTimestamp),
  };
  for (const Status& status : refusals) {
    ASSERT_FALSE(status.ok());
    const std::string text = status.ToString();
    EXPECT_EQ(text.find(secret), std::string::npos) << text;
    EXPECT_EQ(text.find("DISTINCTIVE"), std::string::npos) << text;
    // The first 16 digits are enough to notice a leak of any part of the expected MAC.
    EXPECT_EQ(text.find(expected_hex.substr(0, 16)), std::string::npos) << text;
  }
}

}  // namespace
}  // namespace txcoord::participant
