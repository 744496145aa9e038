#include "txcoord/outbox/row.h"

#include <cctype>

#include "txcoord/json_text.h"
#include "txcoord/schemas/ids.h"

namespace txcoord::outbox {
namespace {

constexpr int kMaxJsonDepth = 512;
constexpr size_t kMaxAggregateId = 256;

// A small JSON reader over a string_view: validation without allocation, plus string decoding
// for the headers object. Hand-written because the relay checks every JSON payload it publishes
// and a general parser (Poco's) costs several microseconds per small document, a large share of
// the per-event budget at tens of thousands of events per second.
class JsonReader {
 public:
  explicit JsonReader(std::string_view text) : s_(text) {}

  void SkipSpace() {
    while (i_ < s_.size() &&
           (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) {
      ++i_;
    }
  }
  bool AtEnd() const { return i_ == s_.size(); }
  bool Consume(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  char Peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }

  bool Value(int depth) {
    if (depth > kMaxJsonDepth) return false;
    SkipSpace();
    switch (Peek()) {
      case '{':
        return Object(depth);
      case '[':
        return Array(depth);
      case '"':
        return String(nullptr);
      case 't':
        return Literal("true");
      case 'f':
        return Literal("false");
      case 'n':
        return Literal("null");
      default:
        return Number();
    }
  }

  // Reads a string; appends its decoded UTF-8 to `out` when not null.
  bool String(std::string* out) { return json_text::ReadString(s_, &i_, out); }

 private:
  bool Literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }

  bool Digits() {
    const size_t start = i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    return i_ > start;
  }

  bool Number() {
    Consume('-');
    if (Consume('0')) {
      if (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') return false;  // no leading zeros
    } else if (!Digits()) {
      return false;
    }
    if (Consume('.') && !Digits()) return false;
    if (Peek() == 'e' || Peek() == 'E') {
      ++i_;
      if (!Consume('+')) Consume('-');
      if (!Digits()) return false;
    }
    return true;
  }

  bool Array(int depth) {
    Consume('[');
    SkipSpace();
    if (Consume(']')) return true;
    while (true) {
      if (!Value(depth + 1)) return false;
      SkipSpace();
      if (Consume(']')) return true;
      if (!Consume(',')) return false;
    }
  }

  bool Object(int depth) {
    Consume('{');
    SkipSpace();
    if (Consume('}')) return true;
    while (true) {
      SkipSpace();
      if (!String(nullptr)) return false;
      SkipSpace();
      if (!Consume(':')) return false;
      if (!Value(depth + 1)) return false;
      SkipSpace();
      if (Consume('}')) return true;
      if (!Consume(',')) return false;
    }
  }

  std::string_view s_;
  size_t i_ = 0;
};

bool IsSubjectToken(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (const char c : s) {
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-')) {
      return false;
    }
  }
  return true;
}

bool IsHeaderName(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  for (const char c : s) {
    const bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && std::string_view("!#$%&'*+-.^_`|~").find(c) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool HasControl(std::string_view s) {
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return true;
  }
  return false;
}

// "application/json", "application/problem+json; charset=utf-8", ...
bool DeclaresJson(std::string_view content_type) {
  std::string type = Lower(content_type.substr(0, content_type.find(';')));
  while (!type.empty() && type.back() == ' ') type.pop_back();
  while (!type.empty() && type.front() == ' ') type.erase(type.begin());
  return type == "application/json" || type.ends_with("+json");
}

Status Bad(const OutboxRow& row, const std::string& what) {
  return Status::InvalidArgument("outbox row id " + std::to_string(row.id) + " (event_id \"" +
                                 PrintableForMessage(row.event_id, 64) + "\"): " + what);
}

}  // namespace

std::string AggregateKey(const OutboxRow& row) {
  std::string key;
  key.reserve(row.aggregate_type.size() + 1 + row.aggregate_id.size());
  key += row.aggregate_type;
  key += '\0';
  key += row.aggregate_id;
  return key;
}

bool IsValidJson(std::string_view text) {
  JsonReader reader(text);
  if (!reader.Value(0)) return false;
  reader.SkipSpace();
  return reader.AtEnd();
}

Result<std::vector<std::pair<std::string, std::string>>> ParseStringObject(std::string_view json) {
  JsonReader r(json);
  std::vector<std::pair<std::string, std::string>> out;
  r.SkipSpace();
  if (!r.Consume('{')) {
    return Status::InvalidArgument("headers is not a JSON object: " +
                                   PrintableForMessage(json, 80));
  }
  r.SkipSpace();
  if (!r.Consume('}')) {
    while (true) {
      std::string name;
      std::string value;
      r.SkipSpace();
      if (!r.String(&name)) return Status::InvalidArgument("headers is not valid JSON");
      r.SkipSpace();
      if (!r.Consume(':')) return Status::InvalidArgument("headers is not valid JSON");
      r.SkipSpace();
      if (r.Peek() != '"') {
        return Status::InvalidArgument("header \"" + PrintableForMessage(name, 64) +
                                       "\" is not a string; headers must be an object of "
                                       "string values");
      }
      if (!r.String(&value)) return Status::InvalidArgument("headers is not valid JSON");
      out.emplace_back(std::move(name), std::move(value));
      r.SkipSpace();
      if (r.Consume('}')) break;
      if (!r.Consume(',')) return Status::InvalidArgument("headers is not valid JSON");
    }
  }
  r.SkipSpace();
  if (!r.AtEnd()) return Status::InvalidArgument("headers has text after the object");
  return out;
}

namespace {

constexpr size_t kMaxEventId = 256;

// Header values may hold horizontal tabs (RFC 9110 field values do); no other control character.
bool IsHeaderValue(std::string_view s) {
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) return false;
  }
  return true;
}

// event_id goes out as the Nats-Msg-Id header: any text that survives as a header value intact.
bool IsEventId(std::string_view s) {
  return !s.empty() && s.size() <= kMaxEventId && !HasControl(s) && s.front() != ' ' &&
         s.back() != ' ';
}

// ToMessage's checks; fills `headers` with the row's own headers when not null. The messages do
// not name the row.
Status CheckRow(const OutboxRow& row, std::vector<std::pair<std::string, std::string>>* headers) {
  if (!IsSubjectToken(row.aggregate_type)) {
    return Status::InvalidArgument("aggregate_type \"" +
                                   PrintableForMessage(row.aggregate_type, 64) +
                                   "\" is not 1 to 64 characters of [A-Za-z0-9_-] (it becomes a "
                                   "subject token)");
  }
  if (!IsSubjectToken(row.event_type)) {
    return Status::InvalidArgument("event_type \"" + PrintableForMessage(row.event_type, 64) +
                                   "\" is not 1 to 64 characters of [A-Za-z0-9_-] (it becomes a "
                                   "subject token)");
  }
  if (!IsEventId(row.event_id)) {
    return Status::InvalidArgument(
        "event_id must be 1 to 256 characters without control characters or a leading or "
        "trailing space (it becomes the Nats-Msg-Id header)");
  }
  if (row.aggregate_id.empty() || row.aggregate_id.size() > kMaxAggregateId ||
      HasControl(row.aggregate_id)) {
    return Status::InvalidArgument(
        "aggregate_id must be 1 to 256 characters without control characters");
  }
  auto extra = ParseStringObject(row.headers_json);
  if (!extra.ok()) return extra.status();
  for (const auto& [name, value] : *extra) {
    if (!IsHeaderName(name)) {
      return Status::InvalidArgument("header name \"" + PrintableForMessage(name, 64) +
                                     "\" is not an HTTP token");
    }
    const std::string lower = Lower(name);
    if (lower.starts_with("nats-") || lower.starts_with("tx-")) {
      return Status::InvalidArgument("header " + name +
                                     " is reserved: the relay and NATS set Nats-* and Tx-*");
    }
    if (!IsHeaderValue(value)) {
      return Status::InvalidArgument("header " + name +
                                     " has a control character (such as a line break)");
    }
    if (lower == "content-type" && DeclaresJson(value) && !IsValidJson(row.payload)) {
      return Status::InvalidArgument("payload is not valid JSON although content-type is " + value);
    }
  }
  if (headers != nullptr) *headers = std::move(*extra);
  return Status::Ok();
}

}  // namespace

Status ValidateRow(const OutboxRow& row) { return CheckRow(row, nullptr); }

Result<BusMessage> ToMessage(const OutboxRow& row, std::string_view subject_prefix) {
  std::vector<std::pair<std::string, std::string>> extra;
  if (Status st = CheckRow(row, &extra); !st.ok()) return Bad(row, st.message());

  BusMessage m;
  m.subject.reserve(subject_prefix.size() + row.aggregate_type.size() + row.event_type.size() + 2);
  m.subject.append(subject_prefix).append(".").append(row.aggregate_type);
  m.subject.append(".").append(row.event_type);
  m.msg_id = row.event_id;
  m.headers.reserve(6 + extra.size());
  m.headers.emplace_back("Nats-Msg-Id", row.event_id);
  m.headers.emplace_back("Tx-Event-Id", row.event_id);
  m.headers.emplace_back("Tx-Event-Type", row.event_type);
  m.headers.emplace_back("Tx-Aggregate-Type", row.aggregate_type);
  m.headers.emplace_back("Tx-Aggregate-Id", row.aggregate_id);
  m.headers.emplace_back("Tx-Outbox-Id", std::to_string(row.id));
  for (auto& header : extra) m.headers.push_back(std::move(header));
  m.body = row.payload;
  return m;
}

size_t WireSize(const BusMessage& message) {
  size_t size = message.body.size() + 12;  // "NATS/1.0\r\n" + "\r\n"
  for (const auto& [name, value] : message.headers) size += name.size() + value.size() + 4;
  return size;
}

}  // namespace txcoord::outbox
