// Random messages of every type in the schema files, for the tests that hold the JSON helpers
// to protobuf's json_util.
#pragma once

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/message.h>
#include <google/protobuf/reflection.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/timestamp.pb.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "txcoord/v1/api.pb.h"
#include "txcoord/v1/log.pb.h"
#include "txcoord/v1/outbox.pb.h"

namespace txcoord::testing {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

inline std::string Utf8(unsigned cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// Random messages of every type in the schema files, filled field by field through reflection.
class RandomFiller {
 public:
  explicit RandomFiller(std::uint32_t seed) : rng_(seed) {}

  void Fill(Message* m, int depth) {
    const Descriptor* type = m->GetDescriptor();
    if (type->well_known_type() == Descriptor::WELLKNOWNTYPE_TIMESTAMP) {
      auto* ts = static_cast<google::protobuf::Timestamp*>(m);
      ts->set_seconds(Between(-62135596800, 253402300799));
      const std::int32_t nanos[] = {0,      0, 7000000,
                                    123000, 1, static_cast<std::int32_t>(Between(0, 999999999))};
      ts->set_nanos(nanos[Between(0, 5)]);
      return;
    }
    if (type->well_known_type() == Descriptor::WELLKNOWNTYPE_VALUE) {
      FillValue(static_cast<google::protobuf::Value*>(m), depth);
      return;
    }
    const Reflection* r = m->GetReflection();
    for (int i = 0; i < type->field_count(); ++i) {
      const FieldDescriptor* f = type->field(i);
      if (Between(0, 2) == 0) continue;  // leave about a third of the fields unset
      if (f->is_repeated()) {
        const int n = static_cast<int>(Between(0, 3));
        for (int k = 0; k < n; ++k) Add(m, r, f, depth);
      } else {
        Set(m, r, f, depth);
      }
    }
  }

  std::string Text() {
    static const unsigned kSpecial[] = {
        '"',    '\\',   '<',     '>',     '\n', '\t',   0x01,    0x1F,     0x7F, 0x85, 0xAD, 0x600,
        0x2028, 0xFEFF, 0x1D173, 0xE0041, 0xE9, 0x4E2D, 0x1F600, 0x10FFFF, '/',  '&',  '\''};
    std::string s;
    const int n = static_cast<int>(Between(0, 12));
    for (int i = 0; i < n; ++i) {
      switch (Between(0, 3)) {
        case 0:
          s += Utf8(kSpecial[Between(0, std::size(kSpecial) - 1)]);
          break;
        case 1: {
          unsigned cp = static_cast<unsigned>(Between(0x80, 0x10FFFF));
          if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xE000;
          s += Utf8(cp);
          break;
        }
        default:
          s += static_cast<char>(Between(0x20, 0x7E));
      }
    }
    return s;
  }

 private:
  std::int64_t Between(std::int64_t lo, std::int64_t hi) {
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng_);
  }

  double Number() {
    switch (Between(0, 3)) {
      case 0:
        return static_cast<double>(Between(-1000000, 1000000));
      case 1:
        return std::uniform_real_distribution<double>(-1e6, 1e6)(rng_);
      case 2: {
        double d = 0;
        do {
          const std::uint64_t bits = rng_() | (static_cast<std::uint64_t>(rng_()) << 32);
          std::memcpy(&d, &bits, sizeof d);
        } while (!std::isfinite(d));
        return d;
      }
      default:
        return static_cast<double>(Between(0, 100)) / 100.0;
    }
  }

  void FillValue(google::protobuf::Value* v, int depth) {
    switch (Between(0, depth > 2 ? 3 : 5)) {
      case 0:
        v->set_null_value(google::protobuf::NULL_VALUE);
        break;
      case 1:
        v->set_number_value(Number());
        break;
      case 2:
        v->set_string_value(Text());
        break;
      case 3:
        v->set_bool_value(Between(0, 1) == 1);
        break;
      case 4: {
        auto* fields = v->mutable_struct_value()->mutable_fields();
        const int n = static_cast<int>(Between(0, 4));
        for (int i = 0; i < n; ++i) FillValue(&(*fields)[Text()], depth + 1);
        break;
      }
      default: {
        auto* list = v->mutable_list_value();
        const int n = static_cast<int>(Between(0, 4));
        for (int i = 0; i < n; ++i) FillValue(list->add_values(), depth + 1);
      }
    }
  }

  int EnumNumber(const FieldDescriptor* f) {
    const auto* e = f->enum_type();
    if (Between(0, 9) == 0) return static_cast<int>(Between(100, 200));  // an unknown value
    return e->value(static_cast<int>(Between(0, e->value_count() - 1)))->number();
  }

  void Set(Message* m, const Reflection* r, const FieldDescriptor* f, int depth) {
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        r->SetInt32(m, f, static_cast<std::int32_t>(Between(INT32_MIN, INT32_MAX)));
        break;
      case FieldDescriptor::CPPTYPE_UINT32:
        r->SetUInt32(m, f, static_cast<std::uint32_t>(Between(0, UINT32_MAX)));
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        r->SetInt64(m, f, Between(INT64_MIN, INT64_MAX));
        break;
      case FieldDescriptor::CPPTYPE_UINT64:
        r->SetUInt64(m, f, static_cast<std::uint64_t>(Between(0, INT64_MAX)) * 2 + 1);
        break;
      case FieldDescriptor::CPPTYPE_DOUBLE:
        r->SetDouble(m, f, Number());
        break;
      case FieldDescriptor::CPPTYPE_FLOAT:
        r->SetFloat(m, f, static_cast<float>(Number()));
        break;
      case FieldDescriptor::CPPTYPE_BOOL:
        r->SetBool(m, f, Between(0, 1) == 1);
        break;
      case FieldDescriptor::CPPTYPE_ENUM:
        r->SetEnumValue(m, f, EnumNumber(f));
        break;
      case FieldDescriptor::CPPTYPE_STRING:
        r->SetString(m, f, f->type() == FieldDescriptor::TYPE_BYTES ? Bytes() : Text());
        break;
      case FieldDescriptor::CPPTYPE_MESSAGE:
        if (depth < 4) Fill(r->MutableMessage(m, f), depth + 1);
        break;
    }
  }

  void Add(Message* m, const Reflection* r, const FieldDescriptor* f, int depth) {
    if (f->is_map()) {
      Message* entry = r->AddMessage(m, f);
      const Reflection* er = entry->GetReflection();
      er->SetString(entry, entry->GetDescriptor()->map_key(), Text());
      Set(entry, er, entry->GetDescriptor()->map_value(), depth);
      return;
    }
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_STRING:
        r->AddString(m, f, f->type() == FieldDescriptor::TYPE_BYTES ? Bytes() : Text());
        break;
      case FieldDescriptor::CPPTYPE_MESSAGE:
        if (depth < 4) Fill(r->AddMessage(m, f), depth + 1);
        break;
      case FieldDescriptor::CPPTYPE_INT32:
        r->AddInt32(m, f, static_cast<std::int32_t>(Between(-5, 5)));
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        r->AddInt64(m, f, Between(INT64_MIN, INT64_MAX));
        break;
      case FieldDescriptor::CPPTYPE_ENUM:
        r->AddEnumValue(m, f, EnumNumber(f));
        break;
      default:
        FAIL() << "the filler has no case for repeated " << f->full_name();
    }
  }

  std::string Bytes() {
    std::string s(static_cast<std::size_t>(Between(0, 40)), '\0');
    for (char& c : s) c = static_cast<char>(Between(0, 255));
    return s;
  }

  std::mt19937 rng_;
};

inline std::vector<const Descriptor*> SchemaMessages() {
  std::vector<const Descriptor*> out;
  std::vector<const Descriptor*> pending;
  for (const auto* file :
       {v1::BeginRequest::descriptor()->file(), v1::LogRecord::descriptor()->file(),
        v1::OutboxEvent::descriptor()->file()}) {
    for (int i = 0; i < file->message_type_count(); ++i) pending.push_back(file->message_type(i));
  }
  while (!pending.empty()) {
    const Descriptor* d = pending.back();
    pending.pop_back();
    if (d->options().map_entry()) continue;
    out.push_back(d);
    for (int i = 0; i < d->nested_type_count(); ++i) pending.push_back(d->nested_type(i));
  }
  return out;
}

// What the printer declines in a message of these schemas: a map other than Struct's.
inline bool HasPlainMap(const Descriptor* type, int depth = 0) {
  if (depth > 8) return false;
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* f = type->field(i);
    if (f->is_map()) return true;
    if (f->message_type() != nullptr && f->message_type()->file()->package() != "google.protobuf" &&
        HasPlainMap(f->message_type(), depth + 1)) {
      return true;
    }
  }
  return false;
}

}  // namespace txcoord::testing
