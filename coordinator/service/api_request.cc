#include "api_request.h"

#include <Poco/Exception.h>
#include <Poco/URI.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/reflection.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/unknown_field_set.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <set>
#include <vector>

#include "txcoord/schemas/ids.h"
#include "txcoord/schemas/json.h"

namespace txcoord::service {
namespace {

using Poco::Net::HTTPResponse;

constexpr std::string_view kCollection = "/v1/transactions";
constexpr int kMaxListLimit = 1000;
// About 100 years: larger values are certainly mistakes, and now - n must not overflow.
constexpr int64_t kMaxOlderThanMs = int64_t{100} * 365 * 24 * 3600 * 1000;
// Every state a transaction record can show (the engines' diagrams: engine.h, engine_3pc.h,
// saga_engine.h), terminal ones last.
constexpr std::array<std::string_view, 10> kTransactionStates = {
    "active",   "preparing", "can-committing", "pre-committing", "committing",
    "aborting", "running",   "compensating",   "committed",      "aborted"};
constexpr size_t kMaxTraceparentLength = 512;

ErrorAnswer NotFound(std::string_view method, std::string_view path) {
  return {HTTPResponse::HTTP_NOT_FOUND, "NOT_FOUND",
          "no endpoint " + std::string(method) + " " + PrintableForMessage(path) +
              "; the API is POST/GET/DELETE /v1/transactions, GET /v1/transactions/{gtid} and "
              "/history, POST /v1/transactions/{gtid}/branches, /commit, /abort, /retry and "
              "/branches/{branch_id}/resolve"};
}

ErrorAnswer MethodNotAllowed(std::string_view method, std::string_view path,
                             std::string_view allow) {
  return {HTTPResponse::HTTP_METHOD_NOT_ALLOWED, "INVALID_ARGUMENT",
          "method " + PrintableForMessage(method, 20) + " is not allowed on " +
              PrintableForMessage(path) + "; use " + std::string(allow),
          std::string(allow)};
}

bool IsGet(std::string_view method) { return method == "GET" || method == "HEAD"; }

std::vector<std::string_view> Split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  while (true) {
    const size_t at = text.find(separator);
    parts.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return parts;
    text.remove_prefix(at + 1);
  }
}

Result<std::string> Decoded(std::string_view what, std::string_view encoded) {
  std::string decoded;
  try {
    Poco::URI::decode(std::string(encoded), decoded);
  } catch (const Poco::Exception&) {
    return Status::InvalidArgument(std::string(what) + " \"" + PrintableForMessage(encoded, 40) +
                                   "\" is not correctly percent-encoded");
  }
  return decoded;
}

Result<int64_t> ParseNonNegative(std::string_view name, std::string_view text, int64_t max) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || value < 0 || value > max) {
    return Status::InvalidArgument(std::string(name) + " \"" + PrintableForMessage(text, 40) +
                                   "\" is not a whole number from 0 to " + std::to_string(max));
  }
  return value;
}

bool IsLowerHex(std::string_view text) {
  for (const char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool AllZeros(std::string_view text) { return text.find_first_not_of('0') == std::string::npos; }

}  // namespace

bool IsApiPath(std::string_view path) { return path == "/v1" || path.starts_with("/v1/"); }

std::variant<ApiRoute, ErrorAnswer> MatchApiRoute(std::string_view method, std::string_view path) {
  if (path == kCollection) {
    if (method == "POST") return ApiRoute{Endpoint::kBegin, ""};
    if (IsGet(method)) return ApiRoute{Endpoint::kList, ""};
    if (method == "DELETE") return ApiRoute{Endpoint::kPurge, ""};
    return MethodNotAllowed(method, path, "DELETE, GET, HEAD, POST");
  }
  if (!path.starts_with(kCollection) || path[kCollection.size()] != '/') {
    return NotFound(method, path);
  }
  const std::vector<std::string_view> rest = Split(path.substr(kCollection.size() + 1), '/');
  // {gtid}, {gtid}/{verb}, or {gtid}/branches/{branch_id}/resolve.
  const bool resolve = rest.size() == 4 && rest[1] == "branches" && rest[3] == "resolve";
  if (rest.size() > 2 && !resolve) return NotFound(method, path);
  auto gtid = Decoded("gtid in the path", rest[0]);
  if (!gtid.ok()) return ErrorAnswerFor(gtid.status());
  if (Status valid = ValidateId("gtid in the path", *gtid); !valid.ok()) {
    return ErrorAnswerFor(valid);
  }
  if (rest.size() == 1) {
    if (IsGet(method)) return ApiRoute{Endpoint::kGet, std::move(gtid).value()};
    return MethodNotAllowed(method, path, "GET, HEAD");
  }
  if (resolve) {
    auto branch_id = Decoded("branch_id in the path", rest[2]);
    if (!branch_id.ok()) return ErrorAnswerFor(branch_id.status());
    if (Status valid = ValidateId("branch_id in the path", *branch_id); !valid.ok()) {
      return ErrorAnswerFor(valid);
    }
    if (method != "POST") return MethodNotAllowed(method, path, "POST");
    return ApiRoute{Endpoint::kResolve, std::move(gtid).value(), std::move(branch_id).value()};
  }
  if (rest[1] == "history") {
    if (IsGet(method)) return ApiRoute{Endpoint::kHistory, std::move(gtid).value()};
    return MethodNotAllowed(method, path, "GET, HEAD");
  }
  Endpoint endpoint;
  if (rest[1] == "branches") {
    endpoint = Endpoint::kRegisterBranch;
  } else if (rest[1] == "commit") {
    endpoint = Endpoint::kCommit;
  } else if (rest[1] == "abort") {
    endpoint = Endpoint::kAbort;
  } else if (rest[1] == "retry") {
    endpoint = Endpoint::kRetry;
  } else {
    return NotFound(method, path);
  }
  if (method != "POST") return MethodNotAllowed(method, path, "POST");
  return ApiRoute{endpoint, std::move(gtid).value()};
}

// The query's parameters, decoded: name and value, in the order given. A name given twice is
// refused.
Result<std::vector<std::pair<std::string, std::string>>> QueryParameters(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> parameters;
  std::set<std::string, std::less<>> seen;
  for (const std::string_view pair : Split(query, '&')) {
    if (pair.empty()) continue;  // "a=1&&b=2", a trailing '&'
    const size_t equals = pair.find('=');
    auto name = Decoded("query parameter", pair.substr(0, equals));
    if (!name.ok()) return name.status();
    auto value = Decoded("query parameter " + PrintableForMessage(*name, 40),
                         equals == std::string_view::npos ? "" : pair.substr(equals + 1));
    if (!value.ok()) return value.status();
    if (!seen.insert(*name).second) {
      return Status::InvalidArgument("query parameter " + PrintableForMessage(*name, 40) +
                                     " is given twice");
    }
    parameters.emplace_back(std::move(name).value(), std::move(value).value());
  }
  return parameters;
}

Result<coordinator::ListQuery> ParseListQuery(std::string_view query, coordinator::Timestamp now) {
  coordinator::ListQuery list;
  auto parameters = QueryParameters(query);
  if (!parameters.ok()) return parameters.status();
  for (auto& [name, value] : *parameters) {
    if (name == "state") {
      if (std::find(kTransactionStates.begin(), kTransactionStates.end(), value) ==
          kTransactionStates.end()) {
        std::string known;
        for (std::string_view state : kTransactionStates) {
          known += (known.empty() ? "" : ", ") + std::string(state);
        }
        // A typo would otherwise list nothing, which reads as "no such transactions".
        return Status::InvalidArgument("state \"" + PrintableForMessage(value, 40) +
                                       "\" is not a transaction state; one of " + known);
      }
      list.state = std::move(value);
    } else if (name == "older_than_ms") {
      auto ms = ParseNonNegative("older_than_ms", value, kMaxOlderThanMs);
      if (!ms.ok()) return ms.status();
      list.created_before = now - std::chrono::milliseconds(*ms);
    } else if (name == "limit") {
      auto limit = ParseNonNegative("limit", value, kMaxListLimit);
      if (!limit.ok() || *limit < 1) {
        return Status::InvalidArgument("limit \"" + PrintableForMessage(value, 40) +
                                       "\" is not a whole number from 1 to " +
                                       std::to_string(kMaxListLimit));
      }
      list.limit = static_cast<int>(*limit);
    } else if (name == "after") {
      // Empty means the first page, as the `next` of a last page is empty.
      if (!value.empty()) TXCOORD_RETURN_IF_ERROR(ValidateId("after", value));
      list.after = std::move(value);
    } else {
      return Status::InvalidArgument("unknown query parameter \"" + PrintableForMessage(name, 40) +
                                     "\"; use state, older_than_ms, limit and after");
    }
  }
  return list;
}

Result<PurgeQuery> ParsePurgeQuery(std::string_view query, coordinator::Timestamp now) {
  constexpr int64_t kMaxPurgeLimit = 100'000;
  PurgeQuery purge;
  auto parameters = QueryParameters(query);
  if (!parameters.ok()) return parameters.status();
  for (const auto& [name, value] : *parameters) {
    if (name == "older_than_ms") {
      auto ms = ParseNonNegative("older_than_ms", value, kMaxOlderThanMs);
      if (!ms.ok()) return ms.status();
      purge.finished_before = now - std::chrono::milliseconds(*ms);
    } else if (name == "limit") {
      auto limit = ParseNonNegative("limit", value, kMaxPurgeLimit);
      if (!limit.ok() || *limit < 1) {
        return Status::InvalidArgument("limit \"" + PrintableForMessage(value, 40) +
                                       "\" is not a whole number from 1 to " +
                                       std::to_string(kMaxPurgeLimit));
      }
      purge.limit = *limit;
    } else if (name == "dry_run") {
      if (value != "true" && value != "false") {
        return Status::InvalidArgument("dry_run \"" + PrintableForMessage(value, 40) +
                                       "\" is not true or false");
      }
      purge.dry_run = value == "true";
    } else {
      return Status::InvalidArgument("unknown query parameter \"" + PrintableForMessage(name, 40) +
                                     "\"; a purge takes older_than_ms, limit and dry_run");
    }
  }
  if (std::none_of(parameters->begin(), parameters->end(),
                   [](const auto& p) { return p.first == "older_than_ms"; })) {
    return Status::InvalidArgument(
        "a purge needs older_than_ms: finished transactions whose end is older than that many "
        "milliseconds are deleted");
  }
  return purge;
}

bool IsValidTraceparent(std::string_view traceparent) {
  // version "-" trace-id "-" parent-id "-" flags
  constexpr size_t kLength = 2 + 1 + 32 + 1 + 16 + 1 + 2;
  if (traceparent.size() < kLength || traceparent.size() > kMaxTraceparentLength) return false;
  const std::string_view version = traceparent.substr(0, 2);
  const std::string_view trace_id = traceparent.substr(3, 32);
  const std::string_view parent_id = traceparent.substr(36, 16);
  const std::string_view flags = traceparent.substr(53, 2);
  if (traceparent[2] != '-' || traceparent[35] != '-' || traceparent[52] != '-') return false;
  if (!IsLowerHex(version) || !IsLowerHex(trace_id) || !IsLowerHex(parent_id) ||
      !IsLowerHex(flags)) {
    return false;
  }
  if (version == "ff" || AllZeros(trace_id) || AllZeros(parent_id)) return false;
  if (traceparent.size() == kLength) return true;
  // Later versions may append fields; version 00 may not. The rest goes into a header as is, so
  // it must be printable ASCII.
  if (version == "00" || traceparent[kLength] != '-') return false;
  for (const char c : traceparent.substr(kLength)) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

namespace {

// What a binary body may hold that its JSON form cannot, refused so that both forms accept the
// same requests: fields unknown to this version (JSON refuses unknown names; a binary client of
// a newer schema would otherwise have a field it relies on silently ignored), and a
// google.protobuf.Value with no kind set (it has no JSON form: printed into a callback it would
// vanish, or drop its member from a list or object, so the payload would not pass untouched),
// and a number that is NaN or infinite (JSON has no such numbers: it would reach participants
// as something else, and NaN, never equal to itself, would make a repeated branch registration
// look different). `where` names the field for the message, e.g. "steps[2].payload".
Status CheckBinaryDecoded(const google::protobuf::Message& message, const std::string& where) {
  using google::protobuf::FieldDescriptor;
  const google::protobuf::Reflection* reflection = message.GetReflection();
  const google::protobuf::Descriptor* descriptor = message.GetDescriptor();
  const google::protobuf::UnknownFieldSet& unknown = reflection->GetUnknownFields(message);
  if (!unknown.empty()) {
    return Status::InvalidArgument(
        (where.empty() ? descriptor->name() : where) + " has field number " +
        std::to_string(unknown.field(0).number()) +
        ", which this coordinator does not know; it may be older than the client's schema");
  }
  if (descriptor->full_name() == "google.protobuf.Value" &&
      static_cast<const google::protobuf::Value&>(message).kind_case() ==
          google::protobuf::Value::KIND_NOT_SET) {
    return Status::InvalidArgument(where +
                                   " is a google.protobuf.Value with no kind set; JSON null is "
                                   "null_value");
  }
  if (descriptor->full_name() == "google.protobuf.Value") {
    const auto& value = static_cast<const google::protobuf::Value&>(message);
    if (value.kind_case() == google::protobuf::Value::kNumberValue &&
        !std::isfinite(value.number_value())) {
      return Status::InvalidArgument(where +
                                     " is a number that is NaN or infinite, which JSON cannot "
                                     "carry");
    }
  }
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    if (field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
    const std::string name = where.empty() ? field->name() : where + "." + field->name();
    if (field->is_map()) continue;  // Struct fields: map<string, Value>, checked below
    if (field->is_repeated()) {
      for (int i = 0; i < reflection->FieldSize(message, field); ++i) {
        TXCOORD_RETURN_IF_ERROR(
            CheckBinaryDecoded(reflection->GetRepeatedMessage(message, field, i),
                               name + "[" + std::to_string(i) + "]"));
      }
    } else {
      TXCOORD_RETURN_IF_ERROR(CheckBinaryDecoded(reflection->GetMessage(message, field), name));
    }
  }
  if (descriptor->full_name() == "google.protobuf.Struct") {
    for (const auto& [key, value] :
         static_cast<const google::protobuf::Struct&>(message).fields()) {
      TXCOORD_RETURN_IF_ERROR(
          CheckBinaryDecoded(value, where + "[\"" + PrintableForMessage(key, 40) + "\"]"));
    }
  }
  return Status::Ok();
}

// The first integer in a valid JSON text that a double, and so a google.protobuf.Value, cannot
// hold exactly (beyond ±2^53), or "" when there is none. Numbers with a fraction or an exponent
// are decimals, which a double is expected to round.
std::string_view InexactInteger(std::string_view json) {
  constexpr std::string_view kLargestExact = "9007199254740992";  // 2^53
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (c == '"') {  // skip the string, escapes included
      for (++i; i < json.size() && json[i] != '"'; ++i) {
        if (json[i] == '\\') ++i;
      }
      continue;
    }
    if (c != '-' && (c < '0' || c > '9')) continue;
    const size_t start = i;
    const size_t digits_start = c == '-' ? i + 1 : i;
    size_t end = digits_start;
    while (end < json.size() && json[end] >= '0' && json[end] <= '9') ++end;
    const bool decimal =
        end < json.size() && (json[end] == '.' || json[end] == 'e' || json[end] == 'E');
    while (end < json.size() &&
           std::string_view("0123456789.eE+-").find(json[end]) != std::string_view::npos) {
      ++end;
    }
    const std::string_view digits = json.substr(digits_start, end - digits_start);
    if (!decimal && (digits.size() > kLargestExact.size() ||
                     (digits.size() == kLargestExact.size() && digits > kLargestExact))) {
      return json.substr(start, end - start);
    }
    i = end - 1;
  }
  return {};
}

}  // namespace

Status DecodeBody(std::string_view body, bool protobuf, bool empty_allowed,
                  google::protobuf::Message* message) {
  const std::string& type = message->GetDescriptor()->name();
  if (body.empty()) {
    if (empty_allowed) return Status::Ok();
    return Status::InvalidArgument("the request has no body; send a JSON " + type + " object");
  }
  if (protobuf) {
    if (!message->ParseFromArray(body.data(), static_cast<int>(body.size()))) {
      return Status::InvalidArgument("the body is not a binary protobuf txcoord.v1." + type +
                                     " (Content-Type: application/x-protobuf)");
    }
    return CheckBinaryDecoded(*message, "");
  }
  if (Status status = JsonToMessage(body, message); !status.ok()) {
    return status.WithContext("the body is not a valid " + type);
  }
  // A payload passes to participants untouched (contract section 3), but google.protobuf.Value
  // holds numbers as doubles: such an integer would arrive changed, so it is refused instead.
  if (const std::string_view number = InexactInteger(body); !number.empty()) {
    return Status::InvalidArgument(
        "the integer " + PrintableForMessage(number, 40) +
        " is beyond 2^53, which a payload cannot carry exactly (JSON numbers are doubles); "
        "send it as a string");
  }
  return Status::Ok();
}

}  // namespace txcoord::service
