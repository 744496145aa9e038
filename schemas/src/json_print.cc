// A printer of the contract's JSON form that walks a message by reflection. protobuf's json_util
// serializes the message to binary, reads that back through a type resolver and renders it: ~35 µs
// for a callback body, a sixth of txcoord's CPU per saga. This printer writes the same bytes as
// json_util with preserve_proto_field_names and without whitespace (JsonPrintTest compares them
// over every schema message, every code point and random messages), and declines what it does not
// print the same way: maps other than Struct's, well-known types other than Timestamp, Value,
// Struct and ListValue, floats, NaN and infinities, timestamps json_util refuses, strings that
// are not UTF-8 (json_util drops their bad bytes), and a Value with no kind.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/reflection.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "txcoord/json_text.h"
#include "txcoord/schemas/json.h"

namespace txcoord::internal {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

constexpr char kHex[] = "0123456789abcdef";

void AppendU16Escape(unsigned unit, std::string* out) {
  char esc[6] = {'\\',
                 'u',
                 kHex[(unit >> 12) & 0xF],
                 kHex[(unit >> 8) & 0xF],
                 kHex[(unit >> 4) & 0xF],
                 kHex[unit & 0xF]};
  out->append(esc, sizeof esc);
}

// The code points json_util writes as \u escapes although JSON allows them raw: HTML's < and >,
// the C1 controls and the invisible format characters (soft hyphen, bidi marks, BOM, ...). The
// list was read off json_util 3.21 by printing every code point; JsonPrintTest checks all of
// them against it.
bool NeedsUnicodeEscape(unsigned cp) {
  if (cp < 0x20 || cp == '<' || cp == '>') return true;
  if (cp < 0x7F) return false;
  if (cp <= 0x9F || cp == 0xAD) return true;
  if (cp < 0x600) return false;
  return (cp >= 0x600 && cp <= 0x603) || cp == 0x6DD || cp == 0x70F ||
         (cp >= 0x17B4 && cp <= 0x17B5) || (cp >= 0x200B && cp <= 0x200F) ||
         (cp >= 0x2028 && cp <= 0x202E) || (cp >= 0x2060 && cp <= 0x2064) ||
         (cp >= 0x206A && cp <= 0x206F) || cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFB) ||
         (cp >= 0x1D173 && cp <= 0x1D17A) || cp == 0xE0001 || (cp >= 0xE0020 && cp <= 0xE007F);
}

bool AppendString(std::string_view text, std::string* out) {
  out->push_back('"');
  std::size_t i = 0;
  while (i < text.size()) {
    // Plain printable ASCII is most of every body: copy runs of it at once.
    std::size_t run = i;
    while (run < text.size()) {
      const auto c = static_cast<unsigned char>(text[run]);
      if (c < 0x20 || c >= 0x7F || c == '"' || c == '\\' || c == '<' || c == '>') break;
      ++run;
    }
    out->append(text.data() + i, run - i);
    i = run;
    if (i == text.size()) break;
    unsigned cp = 0;
    const std::size_t len = json_text::DecodeUtf8(text, i, &cp);
    if (len == 0) return false;  // json_util drops such bytes: decline rather than guess
    if (cp == '"' || cp == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(cp));
    } else if (cp == '\b' || cp == '\t' || cp == '\n' || cp == '\f' || cp == '\r') {
      out->push_back('\\');
      out->push_back(cp == '\b'   ? 'b'
                     : cp == '\t' ? 't'
                     : cp == '\n' ? 'n'
                     : cp == '\f' ? 'f'
                                  : 'r');
    } else if (!NeedsUnicodeEscape(cp)) {
      out->append(text.data() + i, len);
    } else if (cp < 0x10000) {
      AppendU16Escape(cp, out);
    } else {
      const unsigned v = cp - 0x10000;
      AppendU16Escape(0xD800 + (v >> 10), out);
      AppendU16Escape(0xDC00 + (v & 0x3FF), out);
    }
    i += len;
  }
  out->push_back('"');
  return true;
}

template <typename Int>
void AppendInt(Int value, bool quoted, std::string* out) {
  char buf[24];
  const auto end = std::to_chars(buf, buf + sizeof buf, value).ptr;
  if (quoted) out->push_back('"');
  out->append(buf, end);
  if (quoted) out->push_back('"');
}

// protobuf's SimpleDtoa: 15 significant digits when they read back as the same double, else 17.
// The printf family follows the C locale here (nothing in txcoord calls setlocale).
bool AppendDouble(double value, std::string* out) {
  if (!std::isfinite(value)) return false;  // json_util's "NaN" / "Infinity" strings
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.15g", value);
  if (std::strtod(buf, nullptr) != value) std::snprintf(buf, sizeof buf, "%.17g", value);
  out->append(buf);
  return true;
}

void AppendDigits(std::int64_t value, int width, std::string* out) {
  char buf[20];
  for (int k = width - 1; k >= 0; --k) {
    buf[k] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
  out->append(buf, static_cast<std::size_t>(width));
}

// RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits, as json_util writes it; declines what it
// refuses (before year 1, after 9999, nanos outside [0, 1e9)).
bool AppendTimestamp(std::int64_t seconds, std::int32_t nanos, std::string* out) {
  constexpr std::int64_t kMinSeconds = -62135596800;  // 0001-01-01T00:00:00Z
  constexpr std::int64_t kMaxSeconds = 253402300799;  // 9999-12-31T23:59:59Z
  if (seconds < kMinSeconds || seconds > kMaxSeconds || nanos < 0 || nanos > 999999999) {
    return false;
  }
  std::int64_t days = seconds / 86400;
  std::int64_t rest = seconds % 86400;
  if (rest < 0) {
    rest += 86400;
    days -= 1;
  }
  // Civil date from days since 1970-01-01 (proleptic Gregorian, eras of 400 years).
  const std::int64_t z = days + 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const std::int64_t doe = z - era * 146097;
  const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::int64_t mp = (5 * doy + 2) / 153;
  const std::int64_t day = doy - (153 * mp + 2) / 5 + 1;
  const std::int64_t month = mp < 10 ? mp + 3 : mp - 9;
  const std::int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);

  out->push_back('"');
  AppendDigits(year, 4, out);
  out->push_back('-');
  AppendDigits(month, 2, out);
  out->push_back('-');
  AppendDigits(day, 2, out);
  out->push_back('T');
  AppendDigits(rest / 3600, 2, out);
  out->push_back(':');
  AppendDigits(rest / 60 % 60, 2, out);
  out->push_back(':');
  AppendDigits(rest % 60, 2, out);
  if (nanos != 0) {
    out->push_back('.');
    if (nanos % 1000000 == 0) {
      AppendDigits(nanos / 1000000, 3, out);
    } else if (nanos % 1000 == 0) {
      AppendDigits(nanos / 1000, 6, out);
    } else {
      AppendDigits(nanos, 9, out);
    }
  }
  out->append("Z\"");
  return true;
}

void AppendBase64(std::string_view bytes, std::string* out) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  out->push_back('"');
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
    const char quad[4] = {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63], kAlphabet[(v >> 6) & 63],
                          kAlphabet[v & 63]};
    out->append(quad, 4);
  }
  if (i < bytes.size()) {
    const bool two = i + 1 < bytes.size();
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (two ? static_cast<unsigned char>(bytes[i + 1]) << 8 : 0);
    const char quad[4] = {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63],
                          two ? kAlphabet[(v >> 6) & 63] : '=', '='};
    out->append(quad, 4);
  }
  out->push_back('"');
}

class Printer {
 public:
  Printer(bool print_defaults, std::string* out) : print_defaults_(print_defaults), out_(out) {}

  // Any message: the well-known types in their JSON shape, every other one as an object.
  bool Any(const Message& message) {
    const Descriptor* type = message.GetDescriptor();
    if (type->file()->package() != "google.protobuf") return Object(message);
    switch (type->well_known_type()) {
      case Descriptor::WELLKNOWNTYPE_TIMESTAMP: {
        const auto* ts = dynamic_cast<const google::protobuf::Timestamp*>(&message);
        return ts != nullptr && AppendTimestamp(ts->seconds(), ts->nanos(), out_);
      }
      case Descriptor::WELLKNOWNTYPE_VALUE: {
        const auto* value = dynamic_cast<const google::protobuf::Value*>(&message);
        return value != nullptr && Value(*value);
      }
      case Descriptor::WELLKNOWNTYPE_STRUCT: {
        const auto* s = dynamic_cast<const google::protobuf::Struct*>(&message);
        return s != nullptr && Struct(*s);
      }
      case Descriptor::WELLKNOWNTYPE_LISTVALUE: {
        const auto* list = dynamic_cast<const google::protobuf::ListValue*>(&message);
        return list != nullptr && List(*list);
      }
      default:
        return false;  // Duration, Any, wrappers, FieldMask, Empty: not in the contract
    }
  }

 private:
  bool Value(const google::protobuf::Value& value) {
    switch (value.kind_case()) {
      case google::protobuf::Value::kNullValue:
        out_->append("null");
        return true;
      case google::protobuf::Value::kNumberValue:
        return AppendDouble(value.number_value(), out_);
      case google::protobuf::Value::kStringValue:
        return AppendString(value.string_value(), out_);
      case google::protobuf::Value::kBoolValue:
        out_->append(value.bool_value() ? "true" : "false");
        return true;
      case google::protobuf::Value::kStructValue:
        return Struct(value.struct_value());
      case google::protobuf::Value::kListValue:
        return List(value.list_value());
      default:
        return false;  // no kind: json_util prints nothing at all
    }
  }

  // Keys in the map's own iteration order, which is the order json_util prints them in too.
  bool Struct(const google::protobuf::Struct& s) {
    out_->push_back('{');
    bool first = true;
    for (const auto& [key, value] : s.fields()) {
      if (!first) out_->push_back(',');
      first = false;
      if (!AppendString(key, out_)) return false;
      out_->push_back(':');
      if (!Value(value)) return false;
    }
    out_->push_back('}');
    return true;
  }

  bool List(const google::protobuf::ListValue& list) {
    out_->push_back('[');
    for (int i = 0; i < list.values_size(); ++i) {
      if (i > 0) out_->push_back(',');
      if (!Value(list.values(i))) return false;
    }
    out_->push_back(']');
    return true;
  }

  bool Object(const Message& message) {
    const FieldOrder& order = OrderOf(message.GetDescriptor());
    if (order.declined) return false;
    const Reflection* reflection = message.GetReflection();
    out_->push_back('{');
    bool first = true;
    const auto print = [&](const FieldDescriptor* field) {
      if (!Present(message, reflection, field)) return true;
      if (!first) out_->push_back(',');
      first = false;
      out_->push_back('"');
      out_->append(field->name());  // proto field names are [A-Za-z0-9_]: nothing to escape
      out_->append("\":");
      return Field(message, reflection, field);
    };
    if (!print_defaults_) {
      for (const FieldDescriptor* field : order.by_number) {
        if (!print(field)) return false;
      }
    } else {
      for (const FieldDescriptor* field : order.declared) {
        if (!Deferred(message, reflection, field) && !print(field)) return false;
      }
      for (const FieldDescriptor* field : order.by_number) {
        if (Deferred(message, reflection, field) && !print(field)) return false;
      }
    }
    out_->push_back('}');
    return true;
  }

  bool Present(const Message& message, const Reflection* reflection,
               const FieldDescriptor* field) const {
    if (field->is_repeated()) return print_defaults_ || reflection->FieldSize(message, field) > 0;
    // Messages, oneof members and proto3 optional fields print when set, defaults or not.
    if (field->has_presence()) return reflection->HasField(message, field);
    return print_defaults_ || reflection->HasField(message, field);
  }

  // With defaults, json_util's writer lays out, in declaration order, a slot for every field
  // it could print a default for, and for every message field (oneof members too): an object,
  // a list or a scalar. A value that arrives in the shape of its slot takes that slot; any
  // other is appended after them in the order the binary form brings it (by number). So scalar
  // oneof members and proto3 optional fields come last, and so do Timestamps (a string where an
  // object was laid out) and Values that are not objects.
  static bool Deferred(const Message& message, const Reflection* reflection,
                       const FieldDescriptor* field) {
    const Descriptor* sub = field->message_type();
    if (sub == nullptr) return field->containing_oneof() != nullptr;
    if (sub->file()->package() != "google.protobuf") return false;
    if (sub->well_known_type() != Descriptor::WELLKNOWNTYPE_VALUE) return true;
    const auto& value =
        static_cast<const google::protobuf::Value&>(reflection->GetMessage(message, field));
    return value.kind_case() != google::protobuf::Value::kStructValue;
  }

  // A type's fields by number (the binary form's order, which json_util prints without defaults)
  // and as declared (see Deferred).
  struct FieldOrder {
    std::vector<const FieldDescriptor*> by_number;
    std::vector<const FieldDescriptor*> declared;
    // A map, or a repeated, Struct or ListValue field of a well-known type (none in the schemas;
    // their placement with defaults is not pinned by the tests).
    bool declined = false;
  };

  static const FieldOrder& OrderOf(const Descriptor* type) {
    // Per thread, so the hot path takes no lock; a process prints a few dozen types.
    thread_local std::unordered_map<const Descriptor*, FieldOrder> orders;
    auto [it, fresh] = orders.try_emplace(type);
    if (!fresh) return it->second;
    FieldOrder& order = it->second;
    for (int i = 0; i < type->field_count(); ++i) {
      const FieldDescriptor* field = type->field(i);
      const Descriptor* sub = field->message_type();
      if (field->is_map()) order.declined = true;
      if (sub != nullptr && sub->file()->package() == "google.protobuf" &&
          (field->is_repeated() || sub->well_known_type() == Descriptor::WELLKNOWNTYPE_STRUCT ||
           sub->well_known_type() == Descriptor::WELLKNOWNTYPE_LISTVALUE)) {
        order.declined = true;
      }
      order.by_number.push_back(field);
      order.declared.push_back(field);
    }
    std::sort(order.by_number.begin(), order.by_number.end(),
              [](const FieldDescriptor* a, const FieldDescriptor* b) {
                return a->number() < b->number();
              });
    return order;
  }

  bool Field(const Message& message, const Reflection* reflection, const FieldDescriptor* field) {
    if (!field->is_repeated()) return Element(message, reflection, field, -1);
    out_->push_back('[');
    const int size = reflection->FieldSize(message, field);
    for (int i = 0; i < size; ++i) {
      if (i > 0) out_->push_back(',');
      if (!Element(message, reflection, field, i)) return false;
    }
    out_->push_back(']');
    return true;
  }

  // One value of `field`: the singular one when index < 0, else element `index`.
  bool Element(const Message& message, const Reflection* r, const FieldDescriptor* field,
               int index) {
    const bool one = index < 0;
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        AppendInt(one ? r->GetInt32(message, field) : r->GetRepeatedInt32(message, field, index),
                  false, out_);
        return true;
      case FieldDescriptor::CPPTYPE_UINT32:
        AppendInt(one ? r->GetUInt32(message, field) : r->GetRepeatedUInt32(message, field, index),
                  false, out_);
        return true;
      case FieldDescriptor::CPPTYPE_INT64:
        AppendInt(one ? r->GetInt64(message, field) : r->GetRepeatedInt64(message, field, index),
                  true, out_);
        return true;
      case FieldDescriptor::CPPTYPE_UINT64:
        AppendInt(one ? r->GetUInt64(message, field) : r->GetRepeatedUInt64(message, field, index),
                  true, out_);
        return true;
      case FieldDescriptor::CPPTYPE_DOUBLE:
        return AppendDouble(
            one ? r->GetDouble(message, field) : r->GetRepeatedDouble(message, field, index), out_);
      case FieldDescriptor::CPPTYPE_FLOAT:
        return false;  // json_util prints floats with 6 or 9 digits; no schema has one
      case FieldDescriptor::CPPTYPE_BOOL:
        out_->append((one ? r->GetBool(message, field) : r->GetRepeatedBool(message, field, index))
                         ? "true"
                         : "false");
        return true;
      case FieldDescriptor::CPPTYPE_ENUM: {
        if (field->enum_type()->full_name() == "google.protobuf.NullValue") return false;
        const int number =
            one ? r->GetEnumValue(message, field) : r->GetRepeatedEnumValue(message, field, index);
        const auto* value = field->enum_type()->FindValueByNumber(number);
        if (value == nullptr) {
          AppendInt(number, false, out_);  // an open enum's unknown value prints as its number
        } else {
          out_->push_back('"');
          out_->append(value->name());
          out_->push_back('"');
        }
        return true;
      }
      case FieldDescriptor::CPPTYPE_STRING: {
        std::string scratch;
        const std::string& text =
            one ? r->GetStringReference(message, field, &scratch)
                : r->GetRepeatedStringReference(message, field, index, &scratch);
        if (field->type() == FieldDescriptor::TYPE_BYTES) {
          AppendBase64(text, out_);
          return true;
        }
        return AppendString(text, out_);
      }
      case FieldDescriptor::CPPTYPE_MESSAGE:
        return Any(one ? r->GetMessage(message, field)
                       : r->GetRepeatedMessage(message, field, index));
    }
    return false;
  }

  const bool print_defaults_;
  std::string* const out_;
};

}  // namespace

bool PrintJson(const Message& message, bool print_defaults, std::string* out) {
  out->clear();
  return Printer(print_defaults, out).Any(message);
}

}  // namespace txcoord::internal
