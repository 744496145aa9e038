#include "txcoord/schemas/json.h"

#include <google/protobuf/util/json_util.h>

namespace txcoord {

Status JsonToMessage(std::string_view json, google::protobuf::Message* message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  message->Clear();
  auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), message, options);
  if (!status.ok()) {
    return Status::InvalidArgument("invalid " + message->GetDescriptor()->name() + " JSON: " +
                                   std::string(status.message()));
  }
  return Status::Ok();
}

std::string MessageToJson(const google::protobuf::Message& message, JsonOptions options) {
  google::protobuf::util::JsonPrintOptions print;
  print.preserve_proto_field_names = true;
  print.always_print_primitive_fields = options.print_defaults;
  print.add_whitespace = options.pretty;
  std::string out;
  // Printing a valid message cannot fail; a failure would be a bug in a message we built.
  auto status = google::protobuf::util::MessageToJsonString(message, &out, print);
  if (!status.ok()) return "{}";
  return out;
}

}  // namespace txcoord
