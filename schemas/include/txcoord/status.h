// Status and Result: how every txcoord library reports an error.
//
// The rule, decided once: libraries that throw (Poco, libpqxx, protobuf, SQLite's C API via its
// return codes) are caught at the adapter that calls them, and everything above returns a Status
// or a Result<T> carrying a code and a message with context.
//
// Each code also says what the caller may assume about the operation it attempted:
//
//   code              | what happened                          | contract error (HTTP)
//   ------------------+----------------------------------------+----------------------------
//   kOk               | it happened                            | -
//   kInvalidArgument  | nothing: the input is wrong            | INVALID_ARGUMENT (400)
//   kNotFound         | nothing: the thing does not exist      | NOT_FOUND (404)
//   kAlreadyExists    | nothing: it existed before             | CONFLICT (409)
//   kConflict         | nothing: the state does not allow it   | CONFLICT (409)
//   kPermissionDenied | nothing: not allowed (e.g. a URL off    | FORBIDDEN (403)
//                     | the allow-list)                        |
//   kTooLarge         | nothing: the input exceeds a limit     | TOO_LARGE (413)
//   kUnavailable      | nothing: a dependency is down; retry   | UNAVAILABLE (503)
//   kUnknownOutcome   | unknown: it may or may not have happened (e.g. the connection broke
//                     | during COMMIT); read back before acting | UNAVAILABLE (503)
//   kCorruption       | nothing: stored data is damaged         | UNAVAILABLE (503)
//   kInternal         | unknown: a bug                          | UNAVAILABLE (503)
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace txcoord {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kConflict,
  kUnavailable,
  kUnknownOutcome,
  kCorruption,
  kInternal,
  kPermissionDenied,
  kTooLarge,
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  static Status InvalidArgument(std::string m) {
    return {StatusCode::kInvalidArgument, std::move(m)};
  }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
  static Status Conflict(std::string m) { return {StatusCode::kConflict, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status UnknownOutcome(std::string m) {
    return {StatusCode::kUnknownOutcome, std::move(m)};
  }
  static Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
  static Status PermissionDenied(std::string m) {
    return {StatusCode::kPermissionDenied, std::move(m)};
  }
  static Status TooLarge(std::string m) { return {StatusCode::kTooLarge, std::move(m)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "NOT_FOUND: transaction order-42 does not exist"
  std::string ToString() const;

  // True when the caller may assume the operation did not take effect.
  bool NothingHappened() const {
    return code_ != StatusCode::kOk && code_ != StatusCode::kUnknownOutcome &&
           code_ != StatusCode::kInternal;
  }

  // Prefixes the message with context: "append order-42: " + message.
  Status WithContext(std::string_view context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// A value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit on purpose, like expected.
  Result(Status status) : status_(std::move(status)) {  // NOLINT
    assert(!status_.ok() && "a Result built from a Status must carry an error");
    // In release builds too: an OK status without a value must not read as success.
    if (status_.ok()) status_ = Status::Internal("Result built from an OK status without a value");
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & {
    assert(ok());
    return *value_;
  }
  const T& value() const& {
    assert(ok());
    return *value_;
  }
  T&& value() && {
    assert(ok());
    return std::move(*value_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace txcoord

#define TXCOORD_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    ::txcoord::Status txcoord_status_ = (expr);        \
    if (!txcoord_status_.ok()) return txcoord_status_; \
  } while (0)
