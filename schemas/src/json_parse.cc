// A reader of the contract's JSON form that fills a message by reflection, in front of
// protobuf's json_util (which parses the text into tokens, writes binary through a type
// resolver and parses that binary back: most of a begin request's cost). It reads a strict
// subset of what json_util accepts and declines everything else, so json_util still gives every
// error and reads every unusual form:
//   - member names exactly as the .proto spells them, each at most once per object, at most one
//     member of a oneof;
//   - strings (any escape, surrogate pairs included) for string fields; true/false for bools;
//     plain JSON integers in range for the integer types; arrays for repeated fields; objects for
//     messages; any JSON for google.protobuf.Value;
//   - Timestamps exactly as MessageToJson writes them (UTC, "Z", 0/3/6/9 fractional digits);
//   - no null outside a Value, no enums, bytes, floats, doubles, maps or other well-known types
//     (none in a request or reply the hot path reads), no "-0".
// What it accepts it reads exactly as json_util does; JsonParseTest checks that over random
// messages and mutations of their text.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/reflection.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "txcoord/json_text.h"
#include "txcoord/schemas/json.h"

namespace txcoord::internal {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

class Reader {
 public:
  explicit Reader(std::string_view text) : text_(text) {}

  bool Root(Message* message) {
    if (message->GetDescriptor()->file()->package() == "google.protobuf") return false;
    Skip();
    if (!Object(message)) return false;
    Skip();
    return pos_ == text_.size();
  }

 private:
  static constexpr int kMaxDepth = 32;

  bool At(char c) const { return pos_ < text_.size() && text_[pos_] == c; }

  bool Eat(char c) {
    Skip();
    if (!At(c)) return false;
    ++pos_;
    return true;
  }

  void Skip() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool Word(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  bool String(std::string* out) {
    Skip();
    return json_text::ReadString(text_, &pos_, out);
  }

  // The text of a JSON number at pos_, checked against the JSON grammar; "-0" declined.
  bool NumberText(std::string_view* number, bool* integer) {
    Skip();
    const std::size_t start = pos_;
    if (At('-')) ++pos_;
    const std::size_t digits = pos_;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
    if (pos_ == digits) return false;
    if (text_[digits] == '0' && pos_ - digits > 1) return false;  // a leading zero: not JSON
    *integer = true;
    if (At('.')) {
      *integer = false;
      const std::size_t frac = ++pos_;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
      if (pos_ == frac) return false;
    }
    if (At('e') || At('E')) {
      *integer = false;
      ++pos_;
      if (At('+') || At('-')) ++pos_;
      const std::size_t exp = pos_;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
      if (pos_ == exp) return false;
    }
    *number = text_.substr(start, pos_ - start);
    // json_util reads an integer "-0" as the integer 0, and a Value then holds +0.0.
    return !(*integer && *number == "-0");
  }

  template <typename Int>
  bool Integer(Int* value) {
    std::string_view number;
    bool integer = false;
    if (!NumberText(&number, &integer) || !integer) return false;
    const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), *value);
    return ec == std::errc() && end == number.data() + number.size();
  }

  bool Value(google::protobuf::Value* value, int depth) {
    if (depth > kMaxDepth) return false;
    Skip();
    if (pos_ == text_.size()) return false;
    switch (text_[pos_]) {
      case 'n':
        if (!Word("null")) return false;
        value->set_null_value(google::protobuf::NULL_VALUE);
        return true;
      case 't':
        if (!Word("true")) return false;
        value->set_bool_value(true);
        return true;
      case 'f':
        if (!Word("false")) return false;
        value->set_bool_value(false);
        return true;
      case '"':
        return String(value->mutable_string_value());
      case '{': {
        ++pos_;
        auto* fields = value->mutable_struct_value()->mutable_fields();
        if (Eat('}')) return true;
        std::string key;
        do {
          if (!String(&key) || !Eat(':')) return false;
          auto [it, fresh] = fields->insert({key, google::protobuf::Value()});
          if (!fresh || !Value(&it->second, depth + 1)) return false;  // a repeated key: decline
        } while (Eat(','));
        return Eat('}');
      }
      case '[': {
        ++pos_;
        auto* list = value->mutable_list_value();
        if (Eat(']')) return true;
        do {
          if (!Value(list->add_values(), depth + 1)) return false;
        } while (Eat(','));
        return Eat(']');
      }
      default: {
        std::string_view number;
        bool integer = false;
        if (!NumberText(&number, &integer)) return false;
        // Correctly rounded like json_util's own conversion, integers and decimals alike.
        const std::string copy(number);
        char* end = nullptr;
        const double d = std::strtod(copy.c_str(), &end);
        if (end != copy.c_str() + copy.size() || !std::isfinite(d)) return false;
        value->set_number_value(d);
        return true;
      }
    }
  }

  // A timestamp exactly as MessageToJson writes it: "YYYY-MM-DDTHH:MM:SS[.fff[fff[fff]]]Z",
  // a real date in years 1-9999, no leap second. Offsets and other precisions: json_util's.
  bool Timestamp(google::protobuf::Timestamp* ts) {
    std::string text;
    if (!String(&text)) return false;
    const std::size_t n = text.size();
    if (n != 20 && n != 24 && n != 27 && n != 30) return false;
    auto digits = [&](std::size_t at, std::size_t count, std::int64_t* out) {
      std::int64_t v = 0;
      for (std::size_t k = at; k < at + count; ++k) {
        if (text[k] < '0' || text[k] > '9') return false;
        v = v * 10 + (text[k] - '0');
      }
      *out = v;
      return true;
    };
    std::int64_t year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, fraction = 0;
    if (!digits(0, 4, &year) || text[4] != '-' || !digits(5, 2, &month) || text[7] != '-' ||
        !digits(8, 2, &day) || text[10] != 'T' || !digits(11, 2, &hour) || text[13] != ':' ||
        !digits(14, 2, &minute) || text[16] != ':' || !digits(17, 2, &second) ||
        text[n - 1] != 'Z') {
      return false;
    }
    if (n > 20 && (text[19] != '.' || !digits(20, n - 21, &fraction))) return false;
    static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (year < 1 || month < 1 || month > 12 || day < 1 ||
        day > kDays[month - 1] + (month == 2 && leap ? 1 : 0) || hour > 23 || minute > 59 ||
        second > 59) {
      return false;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (eras of 400 years).
    const std::int64_t y = year - (month <= 2 ? 1 : 0);
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const std::int64_t yoe = y - era * 400;
    const std::int64_t doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    const std::int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    const std::int64_t days = era * 146097 + doe - 719468;
    ts->set_seconds(days * 86400 + hour * 3600 + minute * 60 + second);
    const std::int64_t scale = n == 24 ? 1000000 : n == 27 ? 1000 : 1;
    ts->set_nanos(static_cast<std::int32_t>(fraction * scale));
    return true;
  }

  bool Object(Message* message, int depth = 0) {
    if (depth > kMaxDepth || !Eat('{')) return false;
    if (Eat('}')) return true;
    const Descriptor* type = message->GetDescriptor();
    const Reflection* r = message->GetReflection();
    seen_.resize(static_cast<std::size_t>(depth) + 1);
    seen_[depth].clear();
    std::string key;
    do {
      if (!String(&key) || !Eat(':')) return false;
      const FieldDescriptor* field = type->FindFieldByName(key);
      if (field == nullptr || field->is_map()) return false;
      for (const FieldDescriptor* f : seen_[depth]) {
        if (f == field) return false;
        // A second member of one oneof (proto3 optional fields are each their own oneof).
        if (f->containing_oneof() != nullptr &&
            f->containing_oneof() == field->containing_oneof()) {
          return false;
        }
      }
      seen_[depth].push_back(field);
      if (!Field(message, r, field, depth)) return false;
    } while (Eat(','));
    return Eat('}');
  }

  bool Field(Message* message, const Reflection* r, const FieldDescriptor* field, int depth) {
    if (!field->is_repeated()) return Element(message, r, field, false, depth);
    if (!Eat('[')) return false;
    if (Eat(']')) return true;
    do {
      if (!Element(message, r, field, true, depth)) return false;
    } while (Eat(','));
    return Eat(']');
  }

  bool Element(Message* m, const Reflection* r, const FieldDescriptor* field, bool add, int depth) {
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32: {
        std::int32_t v = 0;
        if (!Integer(&v)) return false;
        add ? r->AddInt32(m, field, v) : r->SetInt32(m, field, v);
        return true;
      }
      case FieldDescriptor::CPPTYPE_UINT32: {
        std::uint32_t v = 0;
        if (!Integer(&v)) return false;
        add ? r->AddUInt32(m, field, v) : r->SetUInt32(m, field, v);
        return true;
      }
      case FieldDescriptor::CPPTYPE_INT64: {
        std::int64_t v = 0;
        if (!Integer(&v)) return false;
        add ? r->AddInt64(m, field, v) : r->SetInt64(m, field, v);
        return true;
      }
      case FieldDescriptor::CPPTYPE_UINT64: {
        std::uint64_t v = 0;
        if (!Integer(&v)) return false;
        add ? r->AddUInt64(m, field, v) : r->SetUInt64(m, field, v);
        return true;
      }
      case FieldDescriptor::CPPTYPE_BOOL: {
        Skip();
        bool v = false;
        if (Word("true")) {
          v = true;
        } else if (!Word("false")) {
          return false;
        }
        add ? r->AddBool(m, field, v) : r->SetBool(m, field, v);
        return true;
      }
      case FieldDescriptor::CPPTYPE_STRING: {
        if (field->type() == FieldDescriptor::TYPE_BYTES) return false;
        std::string v;
        if (!String(&v)) return false;
        add ? r->AddString(m, field, std::move(v)) : r->SetString(m, field, std::move(v));
        return true;
      }
      case FieldDescriptor::CPPTYPE_MESSAGE: {
        const Descriptor* sub = field->message_type();
        if (sub->file()->package() == "google.protobuf") {
          const auto kind = sub->well_known_type();
          if (kind != Descriptor::WELLKNOWNTYPE_VALUE &&
              kind != Descriptor::WELLKNOWNTYPE_TIMESTAMP) {
            return false;
          }
          Message* target = add ? r->AddMessage(m, field) : r->MutableMessage(m, field);
          if (kind == Descriptor::WELLKNOWNTYPE_TIMESTAMP) {
            auto* ts = dynamic_cast<google::protobuf::Timestamp*>(target);
            return ts != nullptr && Timestamp(ts);
          }
          auto* value = dynamic_cast<google::protobuf::Value*>(target);
          return value != nullptr && Value(value, depth + 1);
        }
        Skip();
        if (!At('{')) return false;  // null included: json_util's business
        return Object(add ? r->AddMessage(m, field) : r->MutableMessage(m, field), depth + 1);
      }
      default:
        return false;  // enums, floats, doubles
    }
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  std::vector<std::vector<const FieldDescriptor*>> seen_;  // per depth: members read so far
};

}  // namespace

bool ReadJson(std::string_view json, google::protobuf::Message* message) {
  message->Clear();
  return Reader(json).Root(message);
}

}  // namespace txcoord::internal
