#include "command.h"

#include <Poco/Exception.h>
#include <Poco/JSON/Parser.h>
#include <Poco/JSON/Stringifier.h>

#include <algorithm>
#include <charconv>
#include <iostream>
#include <sstream>
#include <utility>

#include "txcoord/schemas/json.h"

namespace txcoord::txctl {

ExitCode ExitCodeFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk:
      return ExitCode::kOk;
    case StatusCode::kNotFound:
      return ExitCode::kNotFound;
    case StatusCode::kInvalidArgument:
      return ExitCode::kUsage;
    case StatusCode::kUnavailable:
    case StatusCode::kUnknownOutcome:
      return ExitCode::kUnreachable;
    default:
      return ExitCode::kRefused;
  }
}

std::ostream& Context::out() const { return out_stream != nullptr ? *out_stream : std::cout; }
std::ostream& Context::err() const { return err_stream != nullptr ? *err_stream : std::cerr; }

int Fail(const Context& ctx, ExitCode code, std::string_view message) {
  std::string line;
  for (const char c : message) {
    const bool space = c == '\n' || c == '\r' || c == '\t';
    if (space && (line.empty() || line.back() == ' ')) continue;
    line.push_back(space ? ' ' : c);
  }
  ctx.err() << "txctl: " << line << std::endl;
  return ToInt(code);
}

int Fail(const Context& ctx, const Status& status) {
  return Fail(ctx, ExitCodeFor(status), status.message());
}

std::optional<std::string> ParsedArgs::Get(const std::string& name) const {
  const auto it = values_.find(name);
  if (it == values_.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> ParsedArgs::GetAll(const std::string& name) const {
  const auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

Result<ParsedArgs> ParseArgs(std::string_view command, const std::vector<std::string>& args,
                             const std::vector<FlagSpec>& specs) {
  const std::string see = "; see txctl " + std::string(command) + " --help";
  ParsedArgs parsed;
  bool flags_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& word = args[i];
    if (flags_done || !word.starts_with("-") || word == "-") {
      parsed.positional_.push_back(word);
      continue;
    }
    if (word == "--") {
      flags_done = true;
      continue;
    }
    if (word == "--help" || word == "-h") {
      parsed.help_ = true;
      continue;
    }
    if (!word.starts_with("--")) {
      return Status::InvalidArgument("unknown flag " + word + " for " + std::string(command) + see);
    }
    const size_t equals = word.find('=');
    const std::string name = word.substr(2, equals == std::string::npos ? equals : equals - 2);
    const auto spec =
        std::find_if(specs.begin(), specs.end(), [&](const FlagSpec& s) { return s.name == name; });
    if (spec == specs.end()) {
      return Status::InvalidArgument("unknown flag --" + name + " for " + std::string(command) +
                                     see);
    }
    if (!spec->repeatable && parsed.values_.contains(name)) {
      return Status::InvalidArgument("--" + name + " is given twice" + see);
    }
    std::string value;
    if (spec->takes_value) {
      if (equals != std::string::npos) {
        value = word.substr(equals + 1);
      } else if (i + 1 < args.size() && !args[i + 1].starts_with("--")) {
        value = args[++i];
      } else {
        return Status::InvalidArgument("--" + name + " needs a value" + see);
      }
    } else if (equals != std::string::npos) {
      return Status::InvalidArgument("--" + name + " takes no value" + see);
    }
    parsed.values_[name].push_back(std::move(value));
  }
  return parsed;
}

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(std::max(cells.size(), headers_.size()));
  rows_.push_back(std::move(cells));
}

void Table::Print(std::ostream& out) const {
  std::vector<size_t> widths(headers_.size(), 0);
  const auto measure = [&widths](const std::vector<std::string>& row) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  };
  measure(headers_);
  for (const auto& row : rows_) measure(row);
  const auto print = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      if (c > 0) line += "  ";
      line += row[c];
      if (c + 1 < row.size()) line.append(widths[c] - row[c].size(), ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << '\n';
  };
  print(headers_);
  for (const auto& row : rows_) print(row);
  out.flush();
}

namespace {

void PrintJsonText(const Context& ctx, const std::string& json) {
  // Re-parsed so that every JSON printed by txctl has the same layout.
  try {
    Poco::JSON::Parser parser;
    const Poco::Dynamic::Var value = parser.parse(json);
    Poco::JSON::Stringifier::stringify(value, ctx.out(), 2);
    ctx.out() << std::endl;
  } catch (const Poco::Exception&) {
    ctx.out() << json << std::endl;
  }
}

}  // namespace

void PrintJson(const Context& ctx, const google::protobuf::Message& message) {
  PrintJsonText(ctx, MessageToJson(message));
}

void PrintJson(const Context& ctx, const Poco::JSON::Object::Ptr& object) {
  object->stringify(ctx.out(), 2);
  ctx.out() << std::endl;
}

void PrintJson(const Context& ctx, const Poco::JSON::Array::Ptr& array) {
  array->stringify(ctx.out(), 2);
  ctx.out() << std::endl;
}

Poco::JSON::Object::Ptr ToJsonObject(const google::protobuf::Message& message) {
  try {
    Poco::JSON::Parser parser;
    return parser.parse(MessageToJson(message)).extract<Poco::JSON::Object::Ptr>();
  } catch (const Poco::Exception&) {
    return new Poco::JSON::Object;  // MessageToJson always prints an object
  }
}

ProgressBar::ProgressBar(const Context& ctx, std::string label, uint64_t total)
    : ctx_(ctx),
      label_(std::move(label)),
      total_(total),
      active_(ctx.stdout_is_terminal && !ctx.json) {}

ProgressBar::~ProgressBar() { Finish(); }

void ProgressBar::Update(uint64_t done) {
  if (!active_ || finished_) return;
  constexpr int kWidth = 30;
  const uint64_t shown = std::min(done, total_);
  const int percent = total_ == 0 ? 100 : static_cast<int>(shown * 100 / total_);
  if (percent == last_percent_) return;
  last_percent_ = percent;
  const int filled = percent * kWidth / 100;
  ctx_.out() << '\r' << label_ << " [" << std::string(filled, '#')
             << std::string(kWidth - filled, '.') << "] " << shown << "/" << total_ << " ("
             << percent << "%)" << std::flush;
}

void ProgressBar::Finish() {
  if (!active_ || finished_) return;
  if (last_percent_ >= 0) ctx_.out() << '\n' << std::flush;
  finished_ = true;
}

Result<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  const auto bad = [&text] {
    return Status::InvalidArgument(
        "\"" + std::string(text) +
        "\" is not a duration; write e.g. 500ms, 45s, 10m, 2h, 3d, 1h30m");
  };
  constexpr int64_t kMaxMs = int64_t{10} * 366 * 24 * 3600 * 1000;
  if (text.empty()) return bad();
  int64_t total_ms = 0;
  std::string_view rest = text;
  while (!rest.empty()) {
    int64_t number = 0;
    const auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), number);
    if (ec != std::errc() || end == rest.data() || number < 0 || number > kMaxMs) return bad();
    rest.remove_prefix(end - rest.data());
    int64_t unit_ms = 0;
    if (rest.starts_with("ms")) {
      unit_ms = 1;
      rest.remove_prefix(2);
    } else if (!rest.empty()) {
      switch (rest.front()) {
        case 's':
          unit_ms = 1000;
          break;
        case 'm':
          unit_ms = 60'000;
          break;
        case 'h':
          unit_ms = 3'600'000;
          break;
        case 'd':
          unit_ms = 86'400'000;
          break;
        case 'w':
          unit_ms = 7 * 86'400'000LL;
          break;
        default:
          return bad();
      }
      rest.remove_prefix(1);
    } else {
      return bad();  // a bare number: the unit is not obvious, so it must be written
    }
    if (number > (kMaxMs - total_ms) / unit_ms) return bad();
    total_ms += number * unit_ms;
  }
  if (total_ms <= 0) return bad();
  return std::chrono::milliseconds(total_ms);
}

std::string FormatDuration(std::chrono::milliseconds duration) {
  int64_t ms = std::max<int64_t>(0, duration.count());
  if (ms < 1000) return std::to_string(ms) + "ms";
  struct Unit {
    int64_t ms;
    const char* name;
  };
  constexpr Unit kUnits[] = {{86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1000, "s"}};
  std::string text;
  int shown = 0;
  for (const Unit& unit : kUnits) {
    if (shown == 2) break;
    const int64_t count = ms / unit.ms;
    if (count == 0) {
      if (shown > 0) break;  // "2h" rather than "2h0m"; the next unit would be too fine
      continue;
    }
    text += std::to_string(count) + unit.name;
    ms -= count * unit.ms;
    ++shown;
  }
  return text;
}

}  // namespace txcoord::txctl
