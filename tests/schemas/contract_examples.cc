#include "contract_examples.h"

#include <Poco/Dynamic/Var.h>
#include <Poco/Exception.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/JSON/Stringifier.h>

#include <algorithm>
#include <map>
#include <regex>
#include <sstream>

namespace txcoord::testing {
namespace {

std::string_view TrimLeft(std::string_view s) {
  const auto start = s.find_first_not_of(" \t");
  return start == std::string_view::npos ? std::string_view() : s.substr(start);
}

std::string_view Trim(std::string_view s) {
  s = TrimLeft(s);
  const auto end = s.find_last_not_of(" \t\r");
  return end == std::string_view::npos ? std::string_view() : s.substr(0, end + 1);
}

std::vector<std::string_view> SplitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    lines.push_back(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return lines;
}

bool IsJsonObjectText(std::string_view text) {
  text = TrimLeft(text);
  if (text.empty() || text.front() != '{') return false;
  const auto next = text.find_first_not_of(" \t\n", 1);
  return next != std::string_view::npos && (text[next] == '"' || text[next] == '}');
}

// `{url}/{phase}`, `{action}`, `{prefix}.{aggregate_type}.{event_type}`: names in braces joined
// by '/' or '.'. These are how the contract writes URL and subject templates.
bool IsTemplate(const std::string& text) {
  static const std::regex kTemplate(R"(\{[a-z_]+\}([./]\{[a-z_]+\})*)");
  return std::regex_match(text, kTemplate);
}

// Inline code spans of one paragraph, CommonMark style: a run of N backticks opens a span that
// the next run of exactly N closes; a span may cross lines (the line ending becomes a space).
void ScanInlineSpans(const std::string& paragraph, int first_line, const std::string& section,
                     ContractScan* scan) {
  std::size_t pos = 0;
  while ((pos = paragraph.find('`', pos)) != std::string::npos) {
    const auto run_end = paragraph.find_first_not_of('`', pos);
    const std::size_t run = (run_end == std::string::npos ? paragraph.size() : run_end) - pos;
    // The span closes at the next run of exactly `run` backticks; a longer or shorter run is
    // part of the span's text.
    std::size_t close = pos + run;
    while ((close = paragraph.find('`', close)) != std::string::npos) {
      auto close_end = paragraph.find_first_not_of('`', close);
      if (close_end == std::string::npos) close_end = paragraph.size();
      if (close_end - close == run) break;
      close = close_end;
    }
    if (close == std::string::npos) {  // an unmatched run is literal text
      pos += run;
      continue;
    }
    std::string content = paragraph.substr(pos + run, close - pos - run);
    for (char& c : content) {
      if (c == '\n') c = ' ';
    }
    content = std::string(Trim(content));
    const int line =
        first_line + static_cast<int>(std::count(paragraph.begin(), paragraph.begin() + pos, '\n'));
    if (!content.empty() && content.front() == '{') {
      if (IsJsonObjectText(content)) {
        scan->examples.push_back({section, line, content});
      } else if (!IsTemplate(content)) {
        scan->unclassified.push_back("line " + std::to_string(line) + ": `" + content + "`");
      }
    }
    pos = close + run;
  }
}

using Poco::Dynamic::Var;

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Real values for the contract's angle-bracket placeholders, by field name.
const std::map<std::string, std::string>& AngleSamples() {
  static const std::map<std::string, std::string> kSamples = {
      {"code", "NOT_FOUND"},                               // "<CODE>"
      {"message", "transaction order-42 does not exist"},  // "<what was wrong, for a person>"
      {"next", "order-41"},                                // "<gtid or empty>"
  };
  return kSamples;
}

Status ResolveString(const std::string& key, Var* value) {
  const auto text = value->extract<std::string>();
  if (text == "..." && (EndsWith(key, "_at") || key == "deadline")) {
    *value = std::string(kExampleTime);
  } else if (text.size() >= 2 && text.front() == '<' && text.back() == '>') {
    const auto it = AngleSamples().find(key);
    if (it == AngleSamples().end()) {
      return Status::InvalidArgument("placeholder \"" + text + "\" in field \"" + key +
                                     "\" has no replacement rule in contract_examples.cc");
    }
    *value = it->second;
  }
  return Status::Ok();
}

// `key` is the field that holds `value` (for array elements, the array's field).
Status ResolveValue(const std::string& key, Var* value) {
  if (value->type() == typeid(Poco::JSON::Object::Ptr)) {
    auto object = value->extract<Poco::JSON::Object::Ptr>();
    for (const auto& name : object->getNames()) {
      Var child = object->get(name);
      TXCOORD_RETURN_IF_ERROR(ResolveValue(name, &child));
      object->set(name, child);
    }
  } else if (value->type() == typeid(Poco::JSON::Array::Ptr)) {
    auto array = value->extract<Poco::JSON::Array::Ptr>();
    for (unsigned i = 0; i < array->size(); ++i) {
      Var child = array->get(i);
      TXCOORD_RETURN_IF_ERROR(ResolveValue(key, &child));
      array->set(i, child);
    }
  } else if (value->isString()) {
    TXCOORD_RETURN_IF_ERROR(ResolveString(key, value));
  }
  return Status::Ok();
}

void ReplaceAll(std::string* text, std::string_view from, std::string_view to) {
  for (auto pos = text->find(from); pos != std::string::npos; pos = text->find(from, pos)) {
    text->replace(pos, from.size(), to);
    pos += to.size();
  }
}

}  // namespace

ContractScan ScanContract(std::string_view markdown) {
  ContractScan scan;
  std::string section;
  std::string paragraph;
  int paragraph_line = 0;
  auto flush = [&] {
    ScanInlineSpans(paragraph, paragraph_line, section, &scan);
    paragraph.clear();
  };

  const auto lines = SplitLines(markdown);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::string_view line = lines[i];
    const int line_no = static_cast<int>(i) + 1;
    if (TrimLeft(line).starts_with("```")) {
      flush();
      const std::string info(Trim(TrimLeft(line).substr(3)));
      std::string body;
      std::size_t j = i + 1;
      for (; j < lines.size() && !TrimLeft(lines[j]).starts_with("```"); ++j) {
        body.append(lines[j]).append("\n");
      }
      if (info == "json") {
        scan.examples.push_back({section, line_no + 1, body});
      } else if (TrimLeft(body).starts_with("{")) {
        scan.unclassified.push_back("line " + std::to_string(line_no) + ": a ```" + info +
                                    " block that starts with '{'");
      }
      i = j;  // the closing fence (or the end of an unclosed block)
      continue;
    }
    if (line.starts_with("#")) {
      flush();
      section = std::string(Trim(line.substr(line.find_first_not_of('#'))));
      continue;
    }
    if (Trim(line).empty()) {
      flush();
      continue;
    }
    if (paragraph.empty()) {
      paragraph_line = line_no;
    } else {
      paragraph += '\n';
    }
    paragraph.append(line);
  }
  flush();
  return scan;
}

std::string FirstKey(std::string_view json) {
  static const std::regex kFirstKey(R"(^\s*\{\s*"([^"\\]*)\")");
  std::match_results<std::string_view::const_iterator> match;
  if (!std::regex_search(json.begin(), json.end(), match, kFirstKey)) return "";
  return match[1].str();
}

Result<std::string> ResolvePlaceholders(std::string_view json) {
  // The elisions are not JSON at all, so they are replaced in the text before parsing.
  std::string text(json);
  ReplaceAll(&text, "{...}", R"({"k": "v"})");
  ReplaceAll(&text, "[...]", "[]");

  Var value;
  try {
    Poco::JSON::Parser parser;
    value = parser.parse(text);
  } catch (const Poco::Exception& e) {
    return Status::InvalidArgument("not JSON after replacing placeholders (" + e.displayText() +
                                   "): " + text);
  }
  TXCOORD_RETURN_IF_ERROR(ResolveValue("", &value));
  std::ostringstream out;
  Poco::JSON::Stringifier::condense(value, out);
  return out.str();
}

}  // namespace txcoord::testing
