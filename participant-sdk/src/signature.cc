#include "txcoord/participant/signature.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <charconv>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <vector>

namespace txcoord::participant {
namespace {

constexpr std::string_view kSignaturePrefix = "sha256=";
constexpr size_t kMacBytes = 32;  // SHA-256 output.
constexpr size_t kSignatureHexDigits = 2 * kMacBytes;
constexpr char kHexDigits[] = "0123456789abcdef";

using Mac = std::array<unsigned char, kMacBytes>;

// HMAC-SHA256 through OpenSSL's one-shot HMAC(), which OpenSSL 3 keeps (only the HMAC_CTX calls
// are deprecated). nullopt when OpenSSL fails; callers decide whether that aborts or is reported.
std::optional<Mac> ComputeMac(std::string_view key, std::string_view data) {
  if (key.size() > static_cast<size_t>(INT_MAX)) return std::nullopt;  // HMAC() takes an int.
  // An empty string_view may carry a null pointer, and OpenSSL reads a null key as "keep the key
  // already set" rather than as the empty key; point both at a real (empty) buffer instead.
  static constexpr unsigned char kEmpty[1] = {0};
  const void* key_ptr = key.empty() ? kEmpty : static_cast<const void*>(key.data());
  const auto* data_ptr =
      data.empty() ? kEmpty : reinterpret_cast<const unsigned char*>(data.data());
  Mac mac;
  unsigned int mac_len = 0;
  if (HMAC(EVP_sha256(), key_ptr, static_cast<int>(key.size()), data_ptr, data.size(), mac.data(),
           &mac_len) == nullptr ||
      mac_len != kMacBytes) {
    return std::nullopt;
  }
  return mac;
}

std::string OpenSslFailure() {
  char detail[256] = "no OpenSSL error queued";
  if (unsigned long err = ERR_get_error(); err != 0) ERR_error_string_n(err, detail, sizeof detail);
  return std::string("OpenSSL could not compute HMAC-SHA256 (") + detail +
         "); check the OpenSSL configuration (providers) of this process";
}

std::string ToHex(const Mac& mac) {
  std::string hex;
  hex.reserve(kSignatureHexDigits);
  for (unsigned char byte : mac) {
    hex.push_back(kHexDigits[byte >> 4]);
    hex.push_back(kHexDigits[byte & 0x0f]);
  }
  return hex;
}

// The contract's signing input. `timestamp` is the header text as sent, not a reformatted number:
// the MAC must cover exactly the bytes the verifier sees.
std::string SigningInput(std::string_view timestamp, std::string_view path, std::string_view body) {
  std::string input;
  input.reserve(timestamp.size() + path.size() + body.size() + 2);
  input.append(timestamp).append("\n").append(path).append("\n").append(body);
  return input;
}

// Digits only: std::from_chars alone would accept a leading '-', and a sign, space or '+' has no
// place in a header the coordinator formats with std::to_string.
std::optional<int64_t> ParseUnixSeconds(std::string_view text) {
  if (text.empty()) return std::nullopt;
  if (!std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) return std::nullopt;  // errc::result_out_of_range.
  return value;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // Uppercase too: the contract says lowercase, and one spelling keeps it exact.
}

std::optional<Mac> ParseSignature(std::string_view header) {
  if (!header.starts_with(kSignaturePrefix)) return std::nullopt;
  std::string_view hex = header.substr(kSignaturePrefix.size());
  if (hex.size() != kSignatureHexDigits) return std::nullopt;
  Mac mac;
  for (size_t i = 0; i < kMacBytes; ++i) {
    int high = HexValue(hex[2 * i]);
    int low = HexValue(hex[2 * i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    mac[i] = static_cast<unsigned char>(high << 4 | low);
  }
  return mac;
}

// Shared by VerifyCallback and VerifyCallbackAny. String views so that the single-secret form does
// not copy the secret.
Status Verify(std::span<const std::string_view> secrets, std::string_view timestamp_header,
              std::string_view signature_header, std::string_view path, std::string_view body,
              int64_t now_unix_seconds, int64_t max_skew_seconds) {
  // Configuration first: with no usable secret nothing the caller sends can be right.
  if (secrets.empty() || (secrets.size() == 1 && secrets[0].empty())) {
    return Status::InvalidArgument(
        "no callback secret configured; configure the secret the coordinator signs with");
  }
  for (size_t i = 0; i < secrets.size(); ++i) {
    if (secrets[i].empty()) {
      return Status::InvalidArgument(
          "callback secret " + std::to_string(i + 1) + " of " + std::to_string(secrets.size()) +
          " is empty; an empty secret would let anyone sign, remove it from the configuration");
    }
  }

  if (timestamp_header.empty()) {
    return Status::InvalidArgument(std::string(kTimestampHeader) +
                                   " header missing; the coordinator must send Unix seconds");
  }
  if (signature_header.empty()) {
    return Status::InvalidArgument(std::string(kSignatureHeader) +
                                   " header missing; the coordinator must sign callbacks");
  }
  // The received values are not echoed: they are caller-controlled, and not needed to act.
  std::optional<int64_t> timestamp = ParseUnixSeconds(timestamp_header);
  if (!timestamp) {
    return Status::InvalidArgument(
        std::string(kTimestampHeader) +
        " must be Unix seconds as plain decimal digits (no sign or spaces, fits in 64 bits)");
  }
  std::optional<Mac> received = ParseSignature(signature_header);
  if (!received) {
    return Status::InvalidArgument(std::string(kSignatureHeader) +
                                   " must be \"sha256=\" followed by 64 lowercase hex digits");
  }

  const std::string input = SigningInput(timestamp_header, path, body);
  bool matched = false;
  for (std::string_view secret : secrets) {
    std::optional<Mac> expected = ComputeMac(secret, input);
    if (!expected) return Status::Internal(OpenSslFailure());
    // CRYPTO_memcmp takes the same time wherever the first difference is, so a forger cannot
    // find the MAC byte by byte from response times. The loop has no early exit either, so the
    // time does not depend on which secret matched.
    matched |= CRYPTO_memcmp(expected->data(), received->data(), kMacBytes) == 0;
  }
  if (!matched) {
    return Status::InvalidArgument(
        "signature does not match: the secret differs from the coordinator's, or the path or "
        "body was changed on the way");
  }

  // The skew is checked after the MAC so that a "stale" refusal is only ever about a timestamp
  // the coordinator really signed: either the clocks drifted apart or the request is a replay.
  const int64_t allowed = std::max<int64_t>(max_skew_seconds, 0);
  int64_t ahead = 0;  // Positive when the timestamp is in the participant's future.
  if (__builtin_sub_overflow(*timestamp, now_unix_seconds, &ahead)) {
    return Status::InvalidArgument(std::string(kTimestampHeader) +
                                   " is out of any sensible range of this participant's clock");
  }
  if (ahead > allowed || ahead < -allowed) {
    const bool future = ahead > 0;
    return Status::InvalidArgument(
        std::string(kTimestampHeader) + " is " + std::to_string(future ? ahead : -ahead) + " s " +
        (future ? "ahead of" : "behind") + " this participant's clock, more than the " +
        std::to_string(allowed) +
        " s allowed; check that both clocks are synchronized, or this is a replayed request");
  }
  return Status::Ok();
}

}  // namespace

Result<std::string> SignCallback(std::string_view secret, int64_t unix_seconds,
                                 std::string_view path, std::string_view body) {
  if (secret.empty()) {
    return Status::InvalidArgument(
        "no callback secret: an empty secret signs nothing anyone "
        "could not forge");
  }
  if (unix_seconds < 0) return Status::InvalidArgument("a callback timestamp cannot be negative");
  std::optional<Mac> mac =
      ComputeMac(secret, SigningInput(std::to_string(unix_seconds), path, body));
  // A coordinator that cannot sign must not send the callback unsigned: the caller retries.
  if (!mac) return Status::Internal(OpenSslFailure());
  return std::string(kSignaturePrefix) + ToHex(*mac);
}

Status VerifyCallback(std::string_view secret, std::string_view timestamp_header,
                      std::string_view signature_header, std::string_view path,
                      std::string_view body, int64_t now_unix_seconds, int64_t max_skew_seconds) {
  const std::string_view secrets[] = {secret};
  return Verify(secrets, timestamp_header, signature_header, path, body, now_unix_seconds,
                max_skew_seconds);
}

Status VerifyCallbackAny(std::span<const std::string> secrets, std::string_view timestamp_header,
                         std::string_view signature_header, std::string_view path,
                         std::string_view body, int64_t now_unix_seconds,
                         int64_t max_skew_seconds) {
  const std::vector<std::string_view> views(secrets.begin(), secrets.end());
  return Verify(views, timestamp_header, signature_header, path, body, now_unix_seconds,
                max_skew_seconds);
}

namespace detail {

Result<std::string> HmacSha256Hex(std::string_view key, std::string_view data) {
  std::optional<Mac> mac = ComputeMac(key, data);
  if (!mac) return Status::Internal(OpenSslFailure());
  return ToHex(*mac);
}

}  // namespace detail

}  // namespace txcoord::participant
