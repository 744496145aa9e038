// The contract's JSON form of the schema messages: proto3 JSON mapping, snake_case names.
#pragma once

#include <google/protobuf/message.h>

#include <string>
#include <string_view>

#include "txcoord/status.h"

namespace txcoord {

struct JsonOptions {
  // Print fields that hold their default value too ("attempts": 0, "depends_on": []), so a
  // reader sees every field; off gives the compact proto3 form.
  bool print_defaults = true;
  bool pretty = false;
};

// Parses JSON into `message`. Unknown fields are an error (a misspelled field must not be
// silently dropped); the message says which field or value was wrong.
Status JsonToMessage(std::string_view json, google::protobuf::Message* message);
// Prints `message`. Printing fails only for values no valid message holds (a timestamp beyond
// year 9999, a NaN number); then the result is the contract's error body with code UNAVAILABLE,
// never an empty or partial object.
std::string MessageToJson(const google::protobuf::Message& message, JsonOptions options = {});

namespace internal {
// JsonToMessage as it was before its shape check read the text directly: the text parsed into a
// google.protobuf.Value for the check, then into the message. For the tests that compare both.
Status JsonToMessageThroughValue(std::string_view json, google::protobuf::Message* message);
}  // namespace internal

}  // namespace txcoord
