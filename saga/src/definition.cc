#include "txcoord/saga/definition.h"

#include <Poco/Exception.h>
#include <Poco/URI.h>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <functional>
#include <optional>
#include <queue>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "txcoord/schemas/ids.h"

namespace txcoord::saga {
namespace {

char AsciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return AsciiLower(x) == AsciiLower(y);
         });
}

std::string Printable(std::string_view text) { return PrintableForMessage(text); }

UrlCheck Malformed(std::string message) { return {UrlVerdict::kMalformed, std::move(message)}; }
UrlCheck Forbidden(std::string message) { return {UrlVerdict::kForbidden, std::move(message)}; }

// An absolute URL split by hand, as scheme://[user-info@]host[:port][/path][?query][#fragment].
struct UrlText {
  std::string_view scheme;        // "http" or "https", in any case
  std::size_t authority_end = 0;  // where the path, query or fragment starts
  bool has_user_info = false;
  std::string_view host;  // without the brackets of an IPv6 literal
  std::string_view port;  // empty when absent; not yet checked to be digits
};

// Nothing when the text is not an http(s) URL with a non-empty host. Like Poco::URI, the last '@'
// of the authority ends the user-info.
std::optional<UrlText> SplitUrl(std::string_view url) {
  UrlText text;
  const std::size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return std::nullopt;
  text.scheme = url.substr(0, scheme_end);
  if (!EqualsIgnoreCase(text.scheme, "http") && !EqualsIgnoreCase(text.scheme, "https")) {
    return std::nullopt;
  }
  const std::size_t authority_begin = scheme_end + 3;
  text.authority_end = std::min(url.find_first_of("/?#", authority_begin), url.size());
  std::string_view host_port = url.substr(authority_begin, text.authority_end - authority_begin);
  if (const std::size_t at = host_port.rfind('@'); at != std::string_view::npos) {
    text.has_user_info = true;
    host_port.remove_prefix(at + 1);
  }
  text.host = host_port;
  if (host_port.starts_with('[')) {
    const std::size_t close = host_port.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    text.host = host_port.substr(1, close - 1);
    const std::string_view rest = host_port.substr(close + 1);
    if (!rest.empty() && !rest.starts_with(':')) return std::nullopt;
    if (!rest.empty()) text.port = rest.substr(1);
  } else if (const std::size_t colon = host_port.rfind(':'); colon != std::string_view::npos) {
    text.host = host_port.substr(0, colon);
    text.port = host_port.substr(colon + 1);
  }
  if (text.host.empty()) return std::nullopt;
  return text;
}

// The URL for an error message, without its user-info, which may hold a password: everything
// between "://" and the last '@' of the authority becomes "...". Without "://" the authority is
// unknown, so everything before the last '@' goes.
std::string ShowUrl(std::string_view url) {
  const std::size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) {
    const std::size_t at = url.rfind('@');
    return at == std::string_view::npos ? Printable(url) : "...@" + Printable(url.substr(at + 1));
  }
  const std::size_t authority_begin = scheme_end + 3;
  const std::size_t authority_end = std::min(url.find_first_of("/?#", authority_begin), url.size());
  const std::size_t at = url.substr(authority_begin, authority_end - authority_begin).rfind('@');
  if (at == std::string_view::npos) return Printable(url);
  return Printable(url.substr(0, authority_begin)) + "...@" +
         Printable(url.substr(authority_begin + at + 1));
}

// Whether `url` starts with `prefix`, comparing the scheme and authority (the first
// `authority_end` characters of `url`) case-insensitively and the rest exactly. A prefix that does
// not end with ':' or '/' must end at a boundary of the URL, so that "http://10.0.0.5" does not
// allow "http://10.0.0.50".
bool MatchesPrefix(std::string_view url, std::size_t authority_end, std::string_view prefix) {
  if (prefix.empty() || prefix.size() > url.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    const bool same =
        i < authority_end ? AsciiLower(url[i]) == AsciiLower(prefix[i]) : url[i] == prefix[i];
    if (!same) return false;
  }
  if (prefix.back() == ':' || prefix.back() == '/') return true;
  if (prefix.size() == url.size()) return true;
  const char next = url[prefix.size()];
  if (next == '/' || next == '?' || next == '#') return true;
  // Inside the authority, ':' starts the port: "http://localhost" allows "http://localhost:7001/".
  return next == ':' && prefix.size() <= authority_end;
}

std::string JoinPrefixes(const std::vector<std::string>& prefixes) {
  if (prefixes.empty()) return "none";
  std::string joined;
  for (const std::string& prefix : prefixes) {
    if (!joined.empty()) joined += ", ";
    joined += Printable(prefix);
  }
  return joined;
}

SagaValidation Invalid(std::string message) {
  SagaValidation validation;
  validation.status = Status::InvalidArgument(std::move(message));
  return validation;
}

std::string StepName(const v1::Step& step) { return "step \"" + step.step_id() + "\""; }

// Names the steps of one cycle among those Kahn's algorithm could not order (unfinished > 0).
// Each of them has a dependency that is itself unordered (else its count would have reached zero),
// so following the first such dependency from any of them never stops and must come back to a step
// already on the path: the path from that step on is a cycle. This is the depth-first search with
// its first branch always taken, which is enough because it can never dead-end. O(n).
std::string DescribeCycle(const google::protobuf::RepeatedPtrField<v1::Step>& steps,
                          const SagaPlan& plan, const std::vector<int>& unfinished) {
  const int n = steps.size();
  int step = static_cast<int>(
      std::find_if(unfinished.begin(), unfinished.end(), [](int count) { return count > 0; }) -
      unfinished.begin());
  std::vector<int> position_on_path(n, -1);
  std::vector<int> path;
  while (position_on_path[step] < 0) {
    position_on_path[step] = static_cast<int>(path.size());
    path.push_back(step);
    const std::vector<int>& deps = plan.dependencies[step];
    const auto next =
        std::find_if(deps.begin(), deps.end(), [&](int dep) { return unfinished[dep] > 0; });
    assert(next != deps.end() && "an unordered step must have an unordered dependency");
    step = *next;
  }
  std::vector<int> cycle(path.begin() + position_on_path[step], path.end());
  // Start at the step the client listed first, so the message does not depend on the walk.
  std::rotate(cycle.begin(), std::min_element(cycle.begin(), cycle.end()), cycle.end());

  std::string shown;
  for (int member : cycle) shown += steps[member].step_id() + " -> ";
  shown += steps[cycle.front()].step_id();
  return "steps form a cycle: " + shown +
         " (each depends on the next, so none of them can ever run); remove one of these "
         "depends_on entries";
}

}  // namespace

UrlCheck CheckParticipantUrl(std::string_view what, std::string_view url, const UrlPolicy& policy) {
  const std::string name(what);
  if (url.empty()) {
    return Malformed(name + " is missing; give an absolute http:// or https:// URL");
  }
  if (url.size() > kMaxParticipantUrlLength) {
    return Malformed(name + " is longer than " + std::to_string(kMaxParticipantUrlLength) +
                     " characters");
  }
  const std::string shown = ShowUrl(url);
  // Refused before parsing, not left to Poco: a space or control character could split the request
  // line or a header, and '\' is read as '/' by some URL parsers (WHATWG) but as user-info by
  // Poco, so the two would disagree about the host.
  for (char c : url) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte <= 0x20 || byte >= 0x7F || c == '\\') {
      return Malformed(name + " \"" + shown +
                       "\" contains a space, a control character, a '\\' or a non-ASCII byte; "
                       "percent-encode it");
    }
  }

  // The allow-list is matched against the text, so the text must mean what the HTTP client will
  // connect to: it is split by hand, and Poco::URI must read the same scheme, host and port.
  const std::string not_absolute = name + " \"" + shown +
                                   "\" is not an absolute http:// or https:// URL with a host, "
                                   "such as http://127.0.0.1:7001/credit/reserve";
  const std::optional<UrlText> text = SplitUrl(url);
  if (!text) return Malformed(not_absolute);
  unsigned port_number = 0;
  if (!text->port.empty()) {
    const char* end = text->port.data() + text->port.size();
    const auto [ptr, error] = std::from_chars(text->port.data(), end, port_number);
    if (error != std::errc() || ptr != end || port_number == 0 || port_number > 65535) {
      return Malformed(name + " \"" + shown + "\" has a port that is not a number from 1 to 65535");
    }
  }
  try {
    const Poco::URI parsed{std::string(url)};
    const bool agrees = EqualsIgnoreCase(parsed.getScheme(), text->scheme) &&
                        EqualsIgnoreCase(parsed.getHost(), text->host) &&
                        (text->port.empty() || parsed.getPort() == port_number) &&
                        parsed.getUserInfo().empty() != text->has_user_info;
    if (!agrees) {
      return Malformed(name + " \"" + shown +
                       "\" is ambiguous: its host or port can be read in more than one way");
    }
  } catch (const Poco::Exception&) {
    // Poco's own text is not passed on: it may quote the URL, user-info and all.
    return Malformed(not_absolute);
  }

  if (text->has_user_info) {
    return Forbidden(name + " \"" + shown +
                     "\" has user-info (text ending in '@' before the host), which the coordinator "
                     "refuses because it can make an allowed prefix name another host; give the "
                     "participant's URL without it");
  }
  for (const std::string& prefix : policy.allowed_prefixes) {
    if (MatchesPrefix(url, text->authority_end, prefix)) return {};
  }
  return Forbidden(name + " \"" + shown +
                   "\" is outside the coordinator's participant allow-list (" +
                   JoinPrefixes(policy.allowed_prefixes) +
                   "); use a URL that starts with one of these, or ask the operator to add a "
                   "prefix with --allow-url");
}

SagaValidation ValidateSaga(const google::protobuf::RepeatedPtrField<v1::Step>& steps,
                            const UrlPolicy& policy) {
  const int n = steps.size();
  if (n == 0) return Invalid("a saga needs at least one step in \"steps\"");
  if (static_cast<std::size_t>(n) > kMaxSagaSteps) {
    return Invalid("a saga has at most " + std::to_string(kMaxSagaSteps) +
                   " steps and this one has " + std::to_string(n) +
                   " (the first over the limit is steps[" + std::to_string(kMaxSagaSteps) +
                   "], step_id \"" + Printable(steps[kMaxSagaSteps].step_id()) +
                   "\"); split the work into several sagas");
  }

  // Ids. After this loop every step_id is valid, hence printable, and quoted as is.
  std::unordered_map<std::string_view, int> index_of;
  index_of.reserve(n);
  for (int i = 0; i < n; ++i) {
    const std::string& id = steps[i].step_id();
    const std::string where = "steps[" + std::to_string(i) + "]";
    if (Status status = ValidateId(where + ".step_id", id); !status.ok()) {
      return Invalid(status.message());
    }
    const auto [it, inserted] = index_of.emplace(id, i);
    if (!inserted) {
      return Invalid("steps[" + std::to_string(it->second) + "] and " + where +
                     " both have step_id \"" + id + "\"; step_ids must be unique within a saga");
    }
  }

  // URLs. A forbidden one is remembered, not returned: every 400 reason goes first.
  std::string forbidden_message;
  for (const v1::Step& step : steps) {
    const std::string name = StepName(step);
    if (step.action().empty()) {
      return Invalid(name +
                     " has no action URL; give the absolute http:// or https:// URL that the "
                     "coordinator POSTs to run the step");
    }
    if (step.compensate().empty()) {
      return Invalid(name +
                     " has no compensate URL; every step needs one, because a failed saga "
                     "compensates every step that may have run (point a step with nothing "
                     "to undo at a URL that answers 2xx)");
    }
    const std::pair<const char*, const std::string*> urls[] = {{"action", &step.action()},
                                                               {"compensate", &step.compensate()}};
    for (const auto& [field, url] : urls) {
      UrlCheck check = CheckParticipantUrl(name + " " + field, *url, policy);
      if (check.verdict == UrlVerdict::kMalformed) return Invalid(std::move(check.message));
      if (check.verdict == UrlVerdict::kForbidden && forbidden_message.empty()) {
        forbidden_message = std::move(check.message);
      }
    }
  }

  // Dependencies, as indexes. listed_by[j] == i marks j as already in step i's depends_on.
  SagaPlan plan;
  plan.dependencies.resize(n);
  plan.dependents.resize(n);
  std::vector<int> listed_by(n, -1);
  for (int i = 0; i < n; ++i) {
    const std::string name = StepName(steps[i]);
    for (const std::string& dep_id : steps[i].depends_on()) {
      const auto it = index_of.find(dep_id);
      if (it == index_of.end()) {
        return Invalid(name + " depends on \"" + Printable(dep_id) +
                       "\", which is not a step_id of this saga");
      }
      const int dep = it->second;
      if (dep == i) return Invalid(name + " depends on itself; remove it from its depends_on");
      if (listed_by[dep] == i) {
        return Invalid(name + " lists \"" + dep_id + "\" twice in depends_on; list it once");
      }
      listed_by[dep] = i;
      plan.dependencies[i].push_back(dep);
      plan.dependents[dep].push_back(i);  // i ascends, so each dependents list is ascending.
    }
  }

  // Kahn's algorithm; the min-heap makes the lowest ready index go next.
  std::vector<int> unfinished(n);  // dependencies not yet in `order`
  std::vector<int> level(n, 0);
  std::priority_queue<int, std::vector<int>, std::greater<>> ready;
  for (int i = 0; i < n; ++i) {
    unfinished[i] = static_cast<int>(plan.dependencies[i].size());
    if (unfinished[i] == 0) ready.push(i);
  }
  plan.order.reserve(n);
  while (!ready.empty()) {
    const int step = ready.top();
    ready.pop();
    plan.order.push_back(step);
    for (int dependent : plan.dependents[step]) {
      // Final once the count reaches zero: every dependency has been ordered by then.
      level[dependent] = std::max(level[dependent], level[step] + 1);
      if (--unfinished[dependent] == 0) ready.push(dependent);
    }
  }
  if (static_cast<int>(plan.order.size()) < n) {
    return Invalid(DescribeCycle(steps, plan, unfinished));
  }

  plan.levels.resize(*std::max_element(level.begin(), level.end()) + 1);
  for (int i = 0; i < n; ++i) plan.levels[level[i]].push_back(i);

  if (!forbidden_message.empty()) {
    SagaValidation validation = Invalid(std::move(forbidden_message));
    validation.forbidden_url = true;
    return validation;
  }
  SagaValidation validation;
  validation.plan = std::move(plan);
  return validation;
}

}  // namespace txcoord::saga
