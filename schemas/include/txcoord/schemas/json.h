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
// year 9999); then the result is the contract's error body with code UNAVAILABLE,
// never an empty or partial object.
std::string MessageToJson(const google::protobuf::Message& message, JsonOptions options = {});

namespace internal {
// JsonToMessage as it was before its shape check read the text directly: the text parsed into a
// google.protobuf.Value for the check, then into the message. For the tests that compare both.
Status JsonToMessageThroughValue(std::string_view json, google::protobuf::Message* message);
// JsonToMessage without ReadJson: json_util behind the ShapeScanner, as before ReadJson.
Status JsonToMessageThroughUtil(std::string_view json, google::protobuf::Message* message);
// MessageToJson's own printer (schemas/src/json_print.cc): prints `message` into `out` and
// returns true, or returns false (`out` then unspecified) for what it declines to print.
bool PrintJson(const google::protobuf::Message& message, bool print_defaults, std::string* out);
// JsonToMessage's own reader (schemas/src/json_parse.cc): fills `message` from `json` and
// returns true, or returns false (`message` then unspecified) for what it declines to read.
bool ReadJson(std::string_view json, google::protobuf::Message* message);
// MessageToJson through protobuf's json_util alone, which MessageToJson's own printer must match
// byte for byte wherever it does not hand the message over to it.
std::string MessageToJsonThroughUtil(const google::protobuf::Message& message,
                                     JsonOptions options = {});
}  // namespace internal

}  // namespace txcoord
