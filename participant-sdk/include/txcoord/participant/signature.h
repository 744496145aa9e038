// Callback signatures (contract section 4): the coordinator signs each callback it sends to a
// participant, and the participant checks the signature before acting on it.
//
//   Tx-Timestamp: <Unix seconds, decimal>
//   Tx-Signature: sha256=<lowercase hex HMAC-SHA256(secret, timestamp + "\n" + path + "\n" + body)>
//
// Both sides use this one implementation, so the coordinator and the SDK cannot drift apart on
// the signing input. A participant written in another language reimplements the same formula.
//
// The timestamp bounds replay: a captured callback is refused once it is more than five minutes
// old (the MAC covers the timestamp, so it cannot be refreshed without the secret). Within that
// window a replay is harmless because every phase must be idempotent anyway (contract section 4).
//
// Every function here is pure (no I/O, no clock: the caller passes "now") and thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "txcoord/status.h"

namespace txcoord::participant {

inline constexpr std::string_view kTimestampHeader = "Tx-Timestamp";
inline constexpr std::string_view kSignatureHeader = "Tx-Signature";

// The contract's "more than 5 minutes off", in either direction.
inline constexpr int64_t kDefaultMaxSkewSeconds = 300;

// Returns the Tx-Signature value, "sha256=" followed by 64 lowercase hex digits, for a callback
// whose Tx-Timestamp header is std::to_string(unix_seconds). `path` is the request path exactly as
// sent on the request line, `body` the exact bytes of the request body.
//
// kInvalidArgument for an empty secret (a verifier refuses one, since anyone could forge it) or a
// negative timestamp (a verifier refuses that too); kInternal if OpenSSL cannot compute
// HMAC-SHA256, which happens only on allocation failure or a provider configured to refuse it
// (e.g. a FIPS provider that rejects short keys). Never an unsigned result.
Result<std::string> SignCallback(std::string_view secret, int64_t unix_seconds,
                                 std::string_view path, std::string_view body);

// Checks a callback's Tx-Timestamp and Tx-Signature headers (pass "" for a header that is
// absent) against `secret`, with `now_unix_seconds` read from the participant's clock.
//
// Returns OK when the signature matches and the timestamp is within max_skew_seconds of now in
// either direction (a difference of exactly max_skew_seconds is accepted). Otherwise every refusal
// is kInvalidArgument (nothing happened: the request is wrong) and the SDK answers 401 to all of
// them; status.h has no "unauthenticated" code, and the message tells the cases apart:
//   - a header is missing, the timestamp is not plain decimal digits that fit in int64, or the
//     signature is not "sha256=" + 64 lowercase hex: the message names the header and the form;
//   - the timestamp is too far from now: the message gives the offset. This is checked after the
//     MAC, so the timestamp is one the coordinator really signed: clocks drifted apart, or the
//     request is an old one replayed;
//   - the MAC does not match: "signature does not match"; the secret differs, or the path or
//     body changed on the way.
// The message never contains the secret or the expected signature, so it is safe to log and to
// send back. No secret configured (an empty secret) is refused too, as kInvalidArgument, with a
// message that says so. kInternal only if OpenSSL fails to compute the MAC (see SignCallback).
// A negative max_skew_seconds is taken as 0.
//
// The MAC is compared in constant time, so the response time does not reveal how many leading
// bytes of a forged signature were right.
Status VerifyCallback(std::string_view secret, std::string_view timestamp_header,
                      std::string_view signature_header, std::string_view path,
                      std::string_view body, int64_t now_unix_seconds,
                      int64_t max_skew_seconds = kDefaultMaxSkewSeconds);

// Same as VerifyCallback, accepting a signature made with any of `secrets`. This is how a secret
// is rotated without refusing callbacks in flight: configure participants with [old, new], then
// switch the coordinator to new, then drop old. Refuses when `secrets` is empty or any of them is
// empty (a configuration mistake that would otherwise go unnoticed).
Status VerifyCallbackAny(std::span<const std::string> secrets, std::string_view timestamp_header,
                         std::string_view signature_header, std::string_view path,
                         std::string_view body, int64_t now_unix_seconds,
                         int64_t max_skew_seconds = kDefaultMaxSkewSeconds);

namespace detail {

// Lowercase hex HMAC-SHA256(key, data). Exposed for the RFC 4231 known-answer tests, which
// cannot be reached through SignCallback: its input always contains two "\n".
// kInternal on the same OpenSSL failure as SignCallback.
Result<std::string> HmacSha256Hex(std::string_view key, std::string_view data);

}  // namespace detail

}  // namespace txcoord::participant
