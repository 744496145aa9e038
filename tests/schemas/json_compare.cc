#include "json_compare.h"

#include <Poco/Dynamic/Var.h>
#include <Poco/Exception.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/JSON/Stringifier.h>

#include <sstream>

namespace txcoord::testing {
namespace {

using google::protobuf::Descriptor;
using Poco::Dynamic::Var;

enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject, kOther };

// Poco's Var says a bool is numeric, so the order of these checks matters.
Kind KindOf(const Var& v) {
  if (v.isEmpty()) return Kind::kNull;
  if (v.type() == typeid(Poco::JSON::Object::Ptr)) return Kind::kObject;
  if (v.type() == typeid(Poco::JSON::Array::Ptr)) return Kind::kArray;
  if (v.isBoolean()) return Kind::kBool;
  if (v.isNumeric()) return Kind::kNumber;
  if (v.isString()) return Kind::kString;
  return Kind::kOther;
}

std::string Show(const Var& v) {
  if (v.isEmpty()) return "null";
  std::ostringstream out;
  Poco::JSON::Stringifier::condense(v, out);
  return out.str();
}

// Integers compare exactly, by their decimal text (a payload id above 2^53 must not pass because
// both sides round to the same double); anything else compares as a double, so 30 equals 30.0
// and 1e300 equals 1e+300.
bool SameNumber(const Var& a, const Var& b) {
  if (a.isInteger() && b.isInteger()) return a.convert<std::string>() == b.convert<std::string>();
  return a.convert<double>() == b.convert<double>();
}

bool IsProto3Default(const Var& v) {
  switch (KindOf(v)) {
    case Kind::kNull:
      return true;
    case Kind::kBool:
      return !v.extract<bool>();
    case Kind::kNumber:
      return v.convert<double>() == 0.0;
    case Kind::kString:
      return v.extract<std::string>().empty();
    case Kind::kArray:
      return v.extract<Poco::JSON::Array::Ptr>()->size() == 0;
    case Kind::kObject:
      return v.extract<Poco::JSON::Object::Ptr>()->size() == 0;
    case Kind::kOther:
      return false;
  }
  return false;
}

bool IsFreeForm(const Descriptor* type) {
  return type == nullptr || type->full_name() == "google.protobuf.Value" ||
         type->full_name() == "google.protobuf.Struct" ||
         type->full_name() == "google.protobuf.ListValue";
}

// The message type a key's value is read as, or null for free-form JSON or a key the schema
// does not have (the parse would have rejected it; compare such a value exactly).
const Descriptor* FieldType(const Descriptor* type, const std::string& key) {
  if (IsFreeForm(type)) return nullptr;
  const auto* field = type->FindFieldByName(key);
  if (field == nullptr || field->message_type() == nullptr) return nullptr;
  return IsFreeForm(field->message_type()) ? nullptr : field->message_type();
}

void Compare(const Var& written, const Var& printed, const Descriptor* type,
             const std::string& path, std::vector<std::string>* diffs) {
  const Kind kind = KindOf(written);
  if (kind != KindOf(printed)) {
    diffs->push_back(path + ": " + Show(written) + " became " + Show(printed));
    return;
  }
  switch (kind) {
    case Kind::kObject: {
      const auto w = written.extract<Poco::JSON::Object::Ptr>();
      const auto p = printed.extract<Poco::JSON::Object::Ptr>();
      for (const auto& key : w->getNames()) {
        if (!p->has(key)) {
          diffs->push_back(path + "." + key + ": missing from the printed JSON");
          continue;
        }
        Compare(w->get(key), p->get(key), FieldType(type, key), path + "." + key, diffs);
      }
      for (const auto& key : p->getNames()) {
        if (w->has(key)) continue;
        if (IsFreeForm(type)) {
          diffs->push_back(path + "." + key + ": added to free-form JSON");
        } else if (!IsProto3Default(p->get(key))) {
          diffs->push_back(path + "." + key + ": added with non-default value " +
                           Show(p->get(key)));
        }
      }
      return;
    }
    case Kind::kArray: {
      const auto w = written.extract<Poco::JSON::Array::Ptr>();
      const auto p = printed.extract<Poco::JSON::Array::Ptr>();
      if (w->size() != p->size()) {
        diffs->push_back(path + ": " + std::to_string(w->size()) + " elements became " +
                         std::to_string(p->size()));
        return;
      }
      for (unsigned i = 0; i < w->size(); ++i) {
        Compare(w->get(i), p->get(i), type, path + "[" + std::to_string(i) + "]", diffs);
      }
      return;
    }
    case Kind::kNumber:
      if (!SameNumber(written, printed)) {
        diffs->push_back(path + ": " + Show(written) + " became " + Show(printed));
      }
      return;
    case Kind::kBool:
      if (written.extract<bool>() != printed.extract<bool>()) {
        diffs->push_back(path + ": " + Show(written) + " became " + Show(printed));
      }
      return;
    case Kind::kString:
      if (written.extract<std::string>() != printed.extract<std::string>()) {
        diffs->push_back(path + ": " + Show(written) + " became " + Show(printed));
      }
      return;
    case Kind::kNull:
      return;
    case Kind::kOther:
      diffs->push_back(path + ": a value Poco's JSON parser should never produce");
      return;
  }
}

// Poco throws; the comparison reports a parse failure as a difference instead.
bool Parse(std::string_view text, const char* side, Var* out, std::vector<std::string>* diffs) {
  try {
    Poco::JSON::Parser parser;
    *out = parser.parse(std::string(text));
    return true;
  } catch (const Poco::Exception& e) {
    diffs->push_back(std::string(side) + " is not JSON (" + e.displayText() +
                     "): " + std::string(text));
    return false;
  }
}

}  // namespace

std::vector<std::string> JsonDifferences(std::string_view written, std::string_view printed,
                                         const Descriptor* type) {
  std::vector<std::string> diffs;
  Var w, p;
  if (!Parse(written, "the written JSON", &w, &diffs)) return diffs;
  if (!Parse(printed, "the printed JSON", &p, &diffs)) return diffs;
  Compare(w, p, type, "$", &diffs);
  return diffs;
}

}  // namespace txcoord::testing
