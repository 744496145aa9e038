#include "txcoord/schemas/json.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cstdio>

#include "txcoord/v1/api.pb.h"

namespace txcoord {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;

// Replaces each byte that is not part of a valid UTF-8 sequence by "\xNN": a Status message ends
// up in ErrorDetail.message, a proto3 string, which must be UTF-8.
std::string ValidUtf8(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size();) {
    const auto b = static_cast<unsigned char>(text[i]);
    std::size_t len = b < 0x80           ? 1
                      : (b >> 5) == 0x6  ? 2
                      : (b >> 4) == 0xE  ? 3
                      : (b >> 3) == 0x1E ? 4
                                         : 0;
    bool ok = len > 0 && i + len <= text.size();
    unsigned cp = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
    for (std::size_t k = 1; ok && k < len; ++k) {
      const auto c = static_cast<unsigned char>(text[i + k]);
      ok = (c & 0xC0) == 0x80;
      cp = (cp << 6) | (c & 0x3F);
    }
    static constexpr unsigned kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    ok = ok && cp >= kMin[len] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    if (ok) {
      out.append(text.substr(i, len));
      i += len;
    } else {
      char esc[5];
      std::snprintf(esc, sizeof esc, "\\x%02X", b);
      out += esc;
      i += 1;
    }
  }
  return out;
}

bool IsWellKnown(const Descriptor* type) { return type->file()->package() == "google.protobuf"; }

Status CheckShape(const google::protobuf::Value& json, const Descriptor* type,
                  const std::string& path);

// One value of `field` (an element, when the field is repeated).
Status CheckElement(const google::protobuf::Value& v, const FieldDescriptor* field,
                    const std::string& path) {
  if (v.has_null_value()) return Status::Ok();
  if (field->cpp_type() == FieldDescriptor::CPPTYPE_BOOL && !v.has_bool_value()) {
    return Status::InvalidArgument(path + " must be true or false");
  }
  if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE &&
      !IsWellKnown(field->message_type())) {
    if (!v.has_struct_value()) return Status::InvalidArgument(path + " must be a JSON object");
    return CheckShape(v, field->message_type(), path);
  }
  return Status::Ok();
}

// What protobuf 3.21's parser lets through: a lone value for a repeated field (read as a list of
// one) and a string for a bool ("yes" reads as true).
Status CheckShape(const google::protobuf::Value& json, const Descriptor* type,
                  const std::string& path) {
  if (!json.has_struct_value()) return Status::Ok();  // the parser reports the root itself
  for (const auto& [key, v] : json.struct_value().fields()) {
    const FieldDescriptor* field = type->FindFieldByName(key);
    if (field == nullptr) field = type->FindFieldByCamelcaseName(key);
    if (field == nullptr || v.has_null_value()) continue;  // unknown: the parser names it
    const std::string where = path.empty() ? key : path + "." + key;
    if (field->is_map()) {
      if (!v.has_struct_value()) return Status::InvalidArgument(where + " must be a JSON object");
      const FieldDescriptor* value_field = field->message_type()->map_value();
      for (const auto& [k, e] : v.struct_value().fields()) {
        TXCOORD_RETURN_IF_ERROR(CheckElement(e, value_field, where + "." + k));
      }
    } else if (field->is_repeated()) {
      if (!v.has_list_value()) return Status::InvalidArgument(where + " must be a JSON array");
      for (int i = 0; i < v.list_value().values_size(); ++i) {
        TXCOORD_RETURN_IF_ERROR(
            CheckElement(v.list_value().values(i), field, where + "[" + std::to_string(i) + "]"));
      }
    } else {
      TXCOORD_RETURN_IF_ERROR(CheckElement(v, field, where));
    }
  }
  return Status::Ok();
}

}  // namespace

Status JsonToMessage(std::string_view json, google::protobuf::Message* message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  message->Clear();
  const google::protobuf::StringPiece text(json.data(), json.size());
  const std::string what = "invalid " + message->GetDescriptor()->name() + " JSON: ";
  google::protobuf::Value shape;
  auto status = google::protobuf::util::JsonStringToMessage(text, &shape, options);
  if (status.ok()) {
    Status checked = CheckShape(shape, message->GetDescriptor(), "");
    if (!checked.ok()) return checked.WithContext(what.substr(0, what.size() - 2));
    status = google::protobuf::util::JsonStringToMessage(text, message, options);
  }
  if (!status.ok()) {
    message->Clear();
    return Status::InvalidArgument(what + ValidUtf8(std::string(status.message())));
  }
  return Status::Ok();
}

std::string MessageToJson(const google::protobuf::Message& message, JsonOptions options) {
  google::protobuf::util::JsonPrintOptions print;
  print.preserve_proto_field_names = true;
  print.always_print_primitive_fields = options.print_defaults;
  print.add_whitespace = options.pretty;
  std::string out;
  auto status = google::protobuf::util::MessageToJsonString(message, &out, print);
  if (status.ok()) return out;
  // Printing fails only for values no valid message holds (a timestamp out of range, a NaN):
  // answer with the contract's error body rather than an empty or partial one.
  v1::ErrorReply error;
  error.mutable_error()->set_code("UNAVAILABLE");
  error.mutable_error()->set_message("reply could not be encoded: " +
                                     ValidUtf8(std::string(status.message())));
  out.clear();
  (void)google::protobuf::util::MessageToJsonString(error, &out, print);
  return out;
}

}  // namespace txcoord
