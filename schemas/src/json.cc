#include "txcoord/schemas/json.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cstdio>

#include "txcoord/json_text.h"
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
    unsigned cp = 0;
    if (const std::size_t len = json_text::DecodeUtf8(text, i, &cp); len > 0) {
      out.append(text.substr(i, len));
      i += len;
    } else {
      char esc[5];
      std::snprintf(esc, sizeof esc, "\\x%02X", static_cast<unsigned char>(text[i]));
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

// CheckShape's rules read straight off the JSON text, walking the message's descriptor, without
// parsing the text into a google.protobuf.Value first: that parse cost more than the parse into
// the message itself (~11 of ~21 us for a callback body). Whatever the scanner does not handle -
// malformed JSON, an escaped key, deep nesting - it leaves to the Value path, so the answers
// are CheckShape's in every case; it only checks every member of a repeated key, where a
// Value keeps one.
class ShapeScanner {
 public:
  enum class Outcome { kOk, kBad, kGiveUp };

  explicit ShapeScanner(std::string_view text) : text_(text) {}

  // kOk when the shape holds (or the root is not an object, which the parser reports), kBad
  // with *status set, kGiveUp when the text is not for this scanner.
  Outcome Check(const Descriptor* type, Status* status) {
    SkipWhitespace();
    if (!At('{')) return Outcome::kOk;
    const Outcome outcome = Object(type, "", status);
    // A shape error counts only in text that parses: otherwise the parser's error comes first.
    if (outcome == Outcome::kBad && !WellFormed()) return Outcome::kGiveUp;
    return outcome;
  }

 private:
  static constexpr int kMaxDepth = 64;

  bool At(char c) const { return pos_ < text_.size() && text_[pos_] == c; }

  void SkipWhitespace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool Literal(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  bool AtNull() const { return text_.substr(pos_, 4) == "null"; }
  bool AtBool() const {
    return text_.substr(pos_, 4) == "true" || text_.substr(pos_, 5) == "false";
  }

  // A string at pos_ (which is at its opening quote), escapes included.
  bool SkipString() {
    for (++pos_; pos_ < text_.size(); ++pos_) {
      const char c = text_[pos_];
      if (c == '\\') {
        ++pos_;
      } else if (c == '"') {
        ++pos_;
        return true;
      } else if (static_cast<unsigned char>(c) < 0x20) {
        return false;
      }
    }
    return false;
  }

  // A member name without escapes (the contract's field names have none).
  bool Key(std::string_view* key) {
    if (!At('"')) return false;
    const size_t end = text_.find_first_of("\"\\", pos_ + 1);
    if (end == std::string_view::npos || text_[end] != '"') return false;
    *key = text_.substr(pos_ + 1, end - pos_ - 1);
    pos_ = end + 1;
    SkipWhitespace();
    if (!At(':')) return false;
    ++pos_;
    SkipWhitespace();
    return true;
  }

  // At an opening bracket: steps in; false (and past the closing one) when the container is
  // empty.
  bool Open(char close) {
    ++pos_;
    SkipWhitespace();
    if (!At(close)) return true;
    ++pos_;
    return false;
  }

  // After a member or element: true at the next one, false at the end (*more says which).
  bool Next(char close, bool* more) {
    SkipWhitespace();
    if (At(',')) {
      ++pos_;
      SkipWhitespace();
      *more = true;
      return true;
    }
    if (At(close)) {
      ++pos_;
      *more = false;
      return true;
    }
    return false;
  }

  bool SkipValue() {
    if (pos_ >= text_.size()) return false;
    const char c = text_[pos_];
    if (c == '"') return SkipString();
    if (c == 'n') return Literal("null");
    if (c == 't') return Literal("true");
    if (c == 'f') return Literal("false");
    if (c == '-' || (c >= '0' && c <= '9')) {
      const size_t end = text_.find_first_not_of("+-.0123456789eE", pos_);
      pos_ = end == std::string_view::npos ? text_.size() : end;
      return true;
    }
    if (c != '{' && c != '[') return false;
    if (++depth_ > kMaxDepth) return false;
    const char close = c == '{' ? '}' : ']';
    bool more = Open(close);
    while (more) {
      std::string_view key;
      if (close == '}' && !Key(&key)) return false;
      if (!SkipValue() || !Next(close, &more)) return false;
    }
    --depth_;
    return true;
  }

  // One value of `field` (an element, when the field is repeated): CheckElement.
  Outcome Element(const FieldDescriptor* field, const std::string& path, Status* status) {
    if (AtNull()) return SkipValue() ? Outcome::kOk : Outcome::kGiveUp;
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_BOOL && !AtBool()) {
      if (!SkipValue()) return Outcome::kGiveUp;  // malformed text: the parser's error first
      *status = Status::InvalidArgument(path + " must be true or false");
      return Outcome::kBad;
    }
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE &&
        !IsWellKnown(field->message_type())) {
      if (!At('{')) return Bad(path + " must be a JSON object", status);
      return Object(field->message_type(), path, status);
    }
    return SkipValue() ? Outcome::kOk : Outcome::kGiveUp;
  }

  // An object at pos_ whose members are `type`'s fields: CheckShape.
  Outcome Object(const Descriptor* type, const std::string& path, Status* status) {
    if (++depth_ > kMaxDepth) return Outcome::kGiveUp;
    bool more = Open('}');
    while (more) {
      std::string_view key;
      if (!Key(&key)) return Outcome::kGiveUp;
      const std::string name(key);
      const FieldDescriptor* field = type->FindFieldByName(name);
      if (field == nullptr) field = type->FindFieldByCamelcaseName(name);
      Outcome outcome = Outcome::kOk;
      if (field == nullptr || AtNull()) {  // unknown: the parser names it
        if (!SkipValue()) return Outcome::kGiveUp;
      } else {
        outcome = Member(field, path.empty() ? name : path + "." + name, status);
      }
      if (outcome != Outcome::kOk) return outcome;
      if (!Next('}', &more)) return Outcome::kGiveUp;
    }
    --depth_;
    return Outcome::kOk;
  }

  Outcome Member(const FieldDescriptor* field, const std::string& where, Status* status) {
    if (field->is_map()) {
      if (!At('{')) return Bad(where + " must be a JSON object", status);
      const FieldDescriptor* value_field = field->message_type()->map_value();
      bool more = Open('}');
      while (more) {
        std::string_view key;
        if (!Key(&key)) return Outcome::kGiveUp;
        const Outcome outcome = Element(value_field, where + "." + std::string(key), status);
        if (outcome != Outcome::kOk) return outcome;
        if (!Next('}', &more)) return Outcome::kGiveUp;
      }
      return Outcome::kOk;
    }
    if (field->is_repeated()) {
      if (!At('[')) return Bad(where + " must be a JSON array", status);
      bool more = Open(']');
      for (int i = 0; more; ++i) {
        const Outcome outcome = Element(field, where + "[" + std::to_string(i) + "]", status);
        if (outcome != Outcome::kOk) return outcome;
        if (!Next(']', &more)) return Outcome::kGiveUp;
      }
      return Outcome::kOk;
    }
    return Element(field, where, status);
  }

  // A shape error, reported only when the value it is about is well-formed JSON.
  Outcome Bad(std::string message, Status* status) {
    if (!SkipValue()) return Outcome::kGiveUp;
    *status = Status::InvalidArgument(std::move(message));
    return Outcome::kBad;
  }

  // Whether the whole text is one JSON value (as far as this scanner checks: not numbers'
  // syntax, escapes or UTF-8).
  bool WellFormed() {
    pos_ = 0;
    depth_ = 0;
    SkipWhitespace();
    if (!SkipValue()) return false;
    SkipWhitespace();
    return pos_ == text_.size();
  }

  std::string_view text_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

namespace {

// The ways of parsing: through the ShapeScanner, or (`via_value`) through a Value always, the
// reference the tests compare the scanner with; `fast` tries ReadJson first.
Status Parse(std::string_view json, google::protobuf::Message* message, bool via_value, bool fast) {
  // The common, plain requests are read without json_util; anything else, errors included,
  // goes through it below.
  if (fast && internal::ReadJson(json, message)) return Status::Ok();
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  message->Clear();
  const google::protobuf::StringPiece text(json.data(), json.size());
  const std::string what = "invalid " + message->GetDescriptor()->name() + " JSON: ";
  Status checked;
  const auto scanned = via_value ? ShapeScanner::Outcome::kGiveUp
                                 : ShapeScanner(json).Check(message->GetDescriptor(), &checked);
  google::protobuf::util::Status status;
  if (scanned == ShapeScanner::Outcome::kGiveUp) {
    google::protobuf::Value shape;
    status = google::protobuf::util::JsonStringToMessage(text, &shape, options);
    if (status.ok()) checked = CheckShape(shape, message->GetDescriptor(), "");
  }
  if (status.ok()) {
    if (!checked.ok()) return checked.WithContext(what.substr(0, what.size() - 2));
    status = google::protobuf::util::JsonStringToMessage(text, message, options);
  }
  if (!status.ok()) {
    message->Clear();
    return Status::InvalidArgument(what + ValidUtf8(std::string(status.message())));
  }
  return Status::Ok();
}

}  // namespace

Status JsonToMessage(std::string_view json, google::protobuf::Message* message) {
  return Parse(json, message, false, true);
}

namespace internal {
Status JsonToMessageThroughUtil(std::string_view json, google::protobuf::Message* message) {
  return Parse(json, message, false, false);
}
Status JsonToMessageThroughValue(std::string_view json, google::protobuf::Message* message) {
  return Parse(json, message, true, false);
}
}  // namespace internal

namespace internal {
std::string MessageToJsonThroughUtil(const google::protobuf::Message& message,
                                     JsonOptions options) {
  google::protobuf::util::JsonPrintOptions print;
  print.preserve_proto_field_names = true;
  print.always_print_primitive_fields = options.print_defaults;
  print.add_whitespace = options.pretty;
  std::string out;
  auto status = google::protobuf::util::MessageToJsonString(message, &out, print);
  if (status.ok()) return out;
  // Printing fails only for values no valid message holds (a timestamp out of range): answer
  // with the contract's error body rather than an empty or partial one.
  v1::ErrorReply error;
  error.mutable_error()->set_code("UNAVAILABLE");
  error.mutable_error()->set_message("reply could not be encoded: " +
                                     ValidUtf8(std::string(status.message())));
  out.clear();
  (void)google::protobuf::util::MessageToJsonString(error, &out, print);
  return out;
}
}  // namespace internal

std::string MessageToJson(const google::protobuf::Message& message, JsonOptions options) {
  // Pretty printing is for people (txctl), never on a hot path: json_util does it.
  std::string out;
  if (!options.pretty && internal::PrintJson(message, options.print_defaults, &out)) return out;
  return internal::MessageToJsonThroughUtil(message, options);
}

}  // namespace txcoord
