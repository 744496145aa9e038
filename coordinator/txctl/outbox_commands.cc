// The outbox and dead-letter commands: `outbox status`, `outbox replay`, `deadletters list`,
// `deadletters redrive`. They work on the services' outboxes and on NATS directly (never
// through txcoord), through the library in outbox/include/txcoord/outbox/admin.h.
#include <Poco/Base64Encoder.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

#include "command.h"
#include "txcoord/outbox/admin.h"
#include "txcoord/outbox/source.h"

namespace txcoord::txctl {
namespace {

using outbox::DeadLetter;
using outbox::DeadLetterConfig;
using outbox::DeadLetterQueue;

constexpr const char* kOutboxHelp =
    "usage: txctl outbox status --source URI [--source URI ...]\n"
    "       txctl outbox replay --source URI (--from-id N | --from-time RFC3339)\n"
    "                           [--yes] [--dry-run] [--wait [--timeout 10m]]\n"
    "\n"
    "status   per source: rows pending, the oldest pending row's id and age (lag), the last\n"
    "         published row's id and time, all rows, replays, whether a relay leads it.\n"
    "replay   makes the rows from an id (or from the first row created at or after a time) to\n"
    "         the end unpublished again, in one transaction, so that txrelay publishes them\n"
    "         again in id order. Within the stream's duplicate window (2 minutes by default)\n"
    "         the broker drops the events it still holds; beyond it consumers' inboxes skip\n"
    "         them. Asks first unless --yes; --dry-run only counts; --wait follows the relay\n"
    "         until every replayed row is published again.\n"
    "\n"
    "URI: sqlite:///ABSOLUTE/PATH.db, sqlite://RELATIVE/PATH.db or postgresql://USER@HOST/DB\n";

constexpr const char* kDeadlettersHelp =
    "usage: txctl deadletters list [--nats URL] [--stream DEADLETTER] [--consumer NAME]\n"
    "                              [--limit N]\n"
    "       txctl deadletters redrive (--all | EVENT_ID...) [--nats URL]\n"
    "                                 [--stream DEADLETTER] [--consumer NAME]\n"
    "\n"
    "list     the messages inbox consumers gave up on: stream sequence, when, consumer, event\n"
    "         id, the subject it came from, failed attempts and the last error.\n"
    "redrive  publishes each chosen dead letter again to the subject it came from (payload and\n"
    "         original headers, Tx-Event-Id kept, a Nats-Msg-Id of its own), then deletes it\n"
    "         from the dead-letter stream. Consumers that applied the event skip the copy by\n"
    "         their inbox. EVENT_ID picks every dead letter of that event (of --consumer only,\n"
    "         if given).\n"
    "\n"
    "--nats defaults to nats://127.0.0.1:4222, --stream to DEADLETTER (the inbox consumer's\n"
    "dead_letter_stream).\n";

Poco::Int64 J(int64_t value) { return static_cast<Poco::Int64>(value); }
Poco::UInt64 J(uint64_t value) { return static_cast<Poco::UInt64>(value); }

std::string Or(const std::string& text, const char* fallback = "-") {
  return text.empty() ? fallback : text;
}

std::string Lag(double seconds) {
  return FormatDuration(std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
}

// "alice@host": recorded in the replay log as who asked.
std::string Operator() {
  const char* user = getenv("USER");
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return "txctl " + std::string(user != nullptr ? user : "?") + "@" + host;
}

Result<int64_t> ParseId(const std::string& text) {
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0) {
    return Status::InvalidArgument("--from-id \"" + text +
                                   "\" is not an outbox row id (a whole number, 0 or more)");
  }
  return value;
}

// Whether `text` is UTF-8 without control characters other than tab and line breaks: shown as
// text in JSON, else as base64.
bool IsUtf8(const std::string& text) {
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    int extra = 0;
    if (c < 0x80) {
      if (c < 0x20 && c != '\n' && c != '\r' && c != '\t') return false;
    } else if ((c >> 5) == 0x6) {
      extra = 1;
    } else if ((c >> 4) == 0xe) {
      extra = 2;
    } else if ((c >> 3) == 0x1e) {
      extra = 3;
    } else {
      return false;
    }
    if (i + extra >= text.size() && extra > 0) return false;
    for (int k = 1; k <= extra; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) >> 6) != 0x2) return false;
    }
    i += static_cast<size_t>(extra) + 1;
  }
  return true;
}

std::string Base64(const std::string& bytes) {
  std::ostringstream out;
  Poco::Base64Encoder encoder(out);
  encoder.rdbuf()->setLineLength(0);
  encoder << bytes;
  encoder.close();
  return out.str();
}

// ---- outbox status ------------------------------------------------------------------------------

Poco::JSON::Object::Ptr StatusJson(const outbox::OutboxStatus& s) {
  Poco::JSON::Object::Ptr o = new Poco::JSON::Object;
  o->set("source", s.source);
  o->set("total_rows", J(s.total_rows));
  o->set("pending_rows", J(s.pending_rows));
  o->set("oldest_pending_id", J(s.oldest_pending_id));
  o->set("oldest_pending_created_at", s.oldest_pending_created_at);
  o->set("lag_seconds", s.lag_s);
  o->set("last_published_id", J(s.last_published_id));
  o->set("last_published_at", s.last_published_at);
  o->set("replays", J(s.replays));
  o->set("last_replay_at", s.last_replay_at);
  if (s.relay_leading) {
    o->set("relay_leading", *s.relay_leading);
  } else {
    o->set("relay_leading", Poco::Dynamic::Var());
  }
  return o;
}

int RunOutboxStatus(Context& ctx, const std::vector<std::string>& args) {
  auto parsed = ParseArgs("outbox status", args, {{"source", true, true}});
  if (!parsed.ok()) return Fail(ctx, parsed.status());
  if (parsed->help()) {
    ctx.out() << kOutboxHelp;
    return ToInt(ExitCode::kOk);
  }
  const std::vector<std::string> sources = parsed->GetAll("source");
  if (sources.empty() || !parsed->positional().empty()) {
    return Fail(ctx, ExitCode::kUsage,
                "outbox status needs --source URI (repeatable) and no other words; see txctl "
                "outbox --help");
  }
  std::vector<outbox::OutboxStatus> found;
  std::vector<Status> failures;
  for (const std::string& uri : sources) {
    auto status = outbox::ReadOutboxStatus(uri);
    if (status.ok()) {
      found.push_back(std::move(status).value());
    } else {
      failures.push_back(status.status());
    }
  }
  if (ctx.json) {
    Poco::JSON::Object::Ptr reply = new Poco::JSON::Object;
    Poco::JSON::Array::Ptr list = new Poco::JSON::Array;
    for (const auto& s : found) list->add(StatusJson(s));
    reply->set("sources", list);
    Poco::JSON::Array::Ptr errors = new Poco::JSON::Array;
    for (const Status& f : failures) errors->add(f.message());
    reply->set("errors", errors);
    PrintJson(ctx, reply);
  } else if (!found.empty()) {
    Table table({"SOURCE", "PENDING", "OLDEST", "LAG", "LAST PUBLISHED", "PUBLISHED AT", "ROWS",
                 "REPLAYS", "RELAY"});
    for (const auto& s : found) {
      const bool pending = s.pending_rows > 0;
      table.AddRow({s.source, std::to_string(s.pending_rows),
                    pending ? std::to_string(s.oldest_pending_id) : "-",
                    pending ? Lag(s.lag_s) : "-",
                    s.last_published_id > 0 ? std::to_string(s.last_published_id) : "-",
                    Or(s.last_published_at), std::to_string(s.total_rows),
                    std::to_string(s.replays),
                    !s.relay_leading ? "?" : *s.relay_leading ? "leading" : "none"});
    }
    table.Print(ctx.out());
  }
  if (failures.empty()) return ToInt(ExitCode::kOk);
  for (size_t i = 1; i < failures.size(); ++i) {
    Fail(ctx, failures[i]);
  }
  return Fail(ctx, failures.front());
}

// ---- outbox replay ------------------------------------------------------------------------------

Poco::JSON::Object::Ptr ReplayJson(const std::string& source, const outbox::ReplayResult& r,
                                   bool dry_run) {
  Poco::JSON::Object::Ptr o = new Poco::JSON::Object;
  o->set("source", source);
  o->set("dry_run", dry_run);
  o->set("from_id", J(r.from_id));
  o->set("to_id", J(r.to_id));
  o->set("rows_replayed", J(r.rows_replayed));
  o->set("rows_pending", J(r.rows_pending));
  o->set("first_row_id", J(r.first_row_id));
  o->set("replay_id", J(r.replay_id));
  return o;
}

// Asks on the terminal; false (refused) for anything but y/yes.
bool Confirm(Context& ctx, const std::string& question) {
  ctx.err() << question << " [y/N] " << std::flush;
  std::string answer;
  if (!std::getline(std::cin, answer)) return false;
  return answer == "y" || answer == "Y" || answer == "yes";
}

// Follows the relay until no row of the replay's range is left unpublished.
int WaitForRelay(Context& ctx, const std::string& uri, const outbox::ReplayResult& replay,
                 std::chrono::milliseconds timeout) {
  const int64_t total = replay.rows_replayed + replay.rows_pending;
  ProgressBar bar(ctx, "republished", static_cast<uint64_t>(total));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  outbox::ReplayRequest count;
  count.from_id = replay.from_id;
  count.dry_run = true;
  while (true) {
    // A dry run from the same start counts what is published again by now.
    auto now = outbox::ReplayOutbox(uri, count);
    if (!now.ok()) return Fail(ctx, now.status());
    const int64_t left = now->rows_pending;
    bar.Update(static_cast<uint64_t>(std::max<int64_t>(0, total - left)));
    if (left == 0) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      bar.Finish();
      return Fail(ctx, ExitCode::kRefused,
                  std::to_string(left) + " rows of the replay are still unpublished after " +
                      FormatDuration(timeout) +
                      "; is txrelay running on this source? (txctl outbox status)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  bar.Finish();
  return ToInt(ExitCode::kOk);
}

int RunOutboxReplay(Context& ctx, const std::vector<std::string>& args) {
  auto parsed = ParseArgs("outbox replay", args,
                          {{"source"},
                           {"from-id"},
                           {"from-time"},
                           {"yes", false},
                           {"dry-run", false},
                           {"wait", false},
                           {"timeout"}});
  if (!parsed.ok()) return Fail(ctx, parsed.status());
  if (parsed->help()) {
    ctx.out() << kOutboxHelp;
    return ToInt(ExitCode::kOk);
  }
  const auto source = parsed->Get("source");
  if (!source || !parsed->positional().empty()) {
    return Fail(ctx, ExitCode::kUsage,
                "outbox replay needs one --source URI and no other words; see txctl outbox --help");
  }
  if (parsed->Has("from-id") == parsed->Has("from-time")) {
    return Fail(ctx, ExitCode::kUsage,
                "outbox replay needs exactly one of --from-id N and --from-time RFC3339");
  }
  outbox::ReplayRequest request;
  request.requested_by = Operator();
  if (const auto id = parsed->Get("from-id")) {
    auto value = ParseId(*id);
    if (!value.ok()) return Fail(ctx, value.status());
    request.from_id = *value;
  } else {
    request.from_time = parsed->Get("from-time").value_or("");
  }
  std::chrono::milliseconds timeout = std::chrono::minutes(10);
  if (const auto text = parsed->Get("timeout")) {
    auto value = ParseDuration(*text);
    if (!value.ok()) return Fail(ctx, value.status().WithContext("--timeout"));
    timeout = *value;
  }
  const bool dry_run = parsed->Has("dry-run");
  const bool wait = parsed->Has("wait");

  // First count, change nothing: what the operator confirms, and what a dry run reports.
  request.dry_run = true;
  auto plan = outbox::ReplayOutbox(*source, request);
  if (!plan.ok()) return Fail(ctx, plan.status());
  const std::string name = outbox::RedactUri(*source);
  const auto describe = [&](const outbox::ReplayResult& r) {
    std::string text = std::to_string(r.rows_replayed) + " published rows of " + name +
                       ", ids " + std::to_string(r.from_id) + " to " + std::to_string(r.to_id);
    if (r.rows_pending > 0) {
      text += " (and " + std::to_string(r.rows_pending) +
              (r.rows_pending == 1 ? " row" : " rows") + " there not published yet)";
    }
    return text;
  };
  const bool below_retention =
      request.from_id && plan->first_row_id > 0 && *request.from_id < plan->first_row_id;
  if (below_retention && !ctx.json) {
    ctx.err() << "txctl: note: rows below id " << plan->first_row_id
              << " were deleted by retention and cannot be replayed; starting at "
              << plan->first_row_id << std::endl;
  }
  if (dry_run || plan->from_id == 0 || plan->rows_replayed == 0) {
    if (ctx.json) {
      PrintJson(ctx, ReplayJson(name, *plan, true));
    } else if (plan->from_id == 0) {
      ctx.out() << "nothing to replay: " << name << " has no row at or after that start\n";
    } else if (plan->rows_replayed == 0) {
      ctx.out() << "nothing to replay: every row of " << name << " from id " << plan->from_id
                << " is still pending (" << plan->rows_pending << " rows)\n";
    } else {
      ctx.out() << "would replay " << describe(*plan) << "\n";
    }
    return ToInt(ExitCode::kOk);
  }
  if (!parsed->Has("yes")) {
    if (ctx.json || isatty(STDIN_FILENO) != 1) {
      return Fail(ctx, ExitCode::kUsage,
                  "outbox replay would replay " + describe(*plan) +
                      "; add --yes to do it without asking");
    }
    if (!Confirm(ctx, "Replay " + describe(*plan) + "?")) {
      return Fail(ctx, ExitCode::kRefused, "not replayed");
    }
  }

  request.dry_run = false;
  ProgressBar bar(ctx, "replaying", static_cast<uint64_t>(plan->rows_replayed));
  request.progress = [&](int64_t done, int64_t) { bar.Update(static_cast<uint64_t>(done)); };
  auto done = outbox::ReplayOutbox(*source, request);
  bar.Finish();
  if (!done.ok()) return Fail(ctx, done.status());
  if (!ctx.json) {
    ctx.out() << "replayed " << describe(*done) << " (replay " << done->replay_id
              << "); txrelay publishes them again in id order\n";
  }
  int code = ToInt(ExitCode::kOk);
  if (wait) code = WaitForRelay(ctx, *source, *done, timeout);
  if (ctx.json) {
    Poco::JSON::Object::Ptr reply = ReplayJson(name, *done, false);
    if (wait) reply->set("republished", code == ToInt(ExitCode::kOk));
    PrintJson(ctx, reply);
  } else if (wait && code == ToInt(ExitCode::kOk)) {
    ctx.out() << "every replayed row is published again\n";
  }
  return code;
}

// ---- deadletters --------------------------------------------------------------------------------

Result<std::unique_ptr<DeadLetterQueue>> ConnectQueue(const ParsedArgs& parsed) {
  DeadLetterConfig config;
  config.nats_url = parsed.Get("nats").value_or("nats://127.0.0.1:4222");
  config.stream = parsed.Get("stream").value_or("DEADLETTER");
  return DeadLetterQueue::Connect(std::move(config));
}

Poco::JSON::Object::Ptr LetterJson(const DeadLetter& d) {
  Poco::JSON::Object::Ptr o = new Poco::JSON::Object;
  o->set("sequence", J(d.sequence));
  o->set("dead_lettered_at", d.dead_lettered_at);
  o->set("consumer", d.consumer);
  o->set("event_id", d.event_id);
  o->set("subject", d.original_subject);
  o->set("stream_sequence", J(d.original_sequence));
  o->set("attempts", d.attempts);
  o->set("reason", d.reason);
  o->set("dead_letter_subject", d.subject);
  Poco::JSON::Object::Ptr headers = new Poco::JSON::Object;
  for (const auto& [key, value] : d.headers) headers->set(key, value);
  o->set("headers", headers);
  if (IsUtf8(d.payload)) {
    o->set("payload", d.payload);
  } else {
    o->set("payload_base64", Base64(d.payload));
  }
  return o;
}

std::vector<DeadLetter> OfConsumer(std::vector<DeadLetter> letters, const ParsedArgs& parsed) {
  if (const auto consumer = parsed.Get("consumer")) {
    std::erase_if(letters, [&](const DeadLetter& d) { return d.consumer != *consumer; });
  }
  return letters;
}

int RunDeadlettersList(Context& ctx, const std::vector<std::string>& args) {
  auto parsed = ParseArgs("deadletters list", args,
                          {{"nats"}, {"stream"}, {"consumer"}, {"limit"}});
  if (!parsed.ok()) return Fail(ctx, parsed.status());
  if (parsed->help()) {
    ctx.out() << kDeadlettersHelp;
    return ToInt(ExitCode::kOk);
  }
  if (!parsed->positional().empty()) {
    return Fail(ctx, ExitCode::kUsage, "deadletters list takes no words; see txctl deadletters --help");
  }
  size_t limit = 0;
  if (const auto text = parsed->Get("limit")) {
    auto value = ParseId(*text);
    if (!value.ok() || *value == 0) {
      return Fail(ctx, ExitCode::kUsage, "--limit needs a whole number above 0");
    }
    limit = static_cast<size_t>(*value);
  }
  auto queue = ConnectQueue(*parsed);
  if (!queue.ok()) return Fail(ctx, queue.status());
  // With --consumer the limit counts that consumer's letters, so read them all first.
  auto letters = (*queue)->List(parsed->Has("consumer") ? 0 : limit);
  if (!letters.ok()) return Fail(ctx, letters.status());
  std::vector<DeadLetter> shown = OfConsumer(std::move(letters).value(), *parsed);
  if (limit != 0 && shown.size() > limit) shown.resize(limit);
  if (ctx.json) {
    Poco::JSON::Object::Ptr reply = new Poco::JSON::Object;
    reply->set("stream", parsed->Get("stream").value_or("DEADLETTER"));
    Poco::JSON::Array::Ptr list = new Poco::JSON::Array;
    for (const DeadLetter& d : shown) list->add(LetterJson(d));
    reply->set("dead_letters", list);
    PrintJson(ctx, reply);
    return ToInt(ExitCode::kOk);
  }
  if (shown.empty()) {
    ctx.out() << "no dead letters\n";
    return ToInt(ExitCode::kOk);
  }
  Table table({"SEQ", "DEAD-LETTERED AT", "CONSUMER", "EVENT", "SUBJECT", "ATTEMPTS", "REASON"});
  for (const DeadLetter& d : shown) {
    std::string reason = d.reason;
    if (reason.size() > 80) reason = reason.substr(0, 77) + "...";
    table.AddRow({std::to_string(d.sequence), Or(d.dead_lettered_at), Or(d.consumer),
                  Or(d.event_id), Or(d.original_subject), std::to_string(d.attempts),
                  Or(reason)});
  }
  table.Print(ctx.out());
  return ToInt(ExitCode::kOk);
}

int RunDeadlettersRedrive(Context& ctx, const std::vector<std::string>& args) {
  auto parsed = ParseArgs("deadletters redrive", args,
                          {{"nats"}, {"stream"}, {"consumer"}, {"all", false}});
  if (!parsed.ok()) return Fail(ctx, parsed.status());
  if (parsed->help()) {
    ctx.out() << kDeadlettersHelp;
    return ToInt(ExitCode::kOk);
  }
  const bool all = parsed->Has("all");
  const std::vector<std::string>& event_ids = parsed->positional();
  if (all == !event_ids.empty()) {
    return Fail(ctx, ExitCode::kUsage,
                "deadletters redrive needs --all or one or more EVENT_IDs, not both");
  }
  auto queue = ConnectQueue(*parsed);
  if (!queue.ok()) return Fail(ctx, queue.status());
  auto letters = (*queue)->List();
  if (!letters.ok()) return Fail(ctx, letters.status());
  std::vector<DeadLetter> chosen = OfConsumer(std::move(letters).value(), *parsed);
  if (!all) {
    // Every id must name a dead letter before anything is re-driven.
    const std::set<std::string> wanted(event_ids.begin(), event_ids.end());
    std::set<std::string> present;
    for (const DeadLetter& d : chosen) present.insert(d.event_id);
    for (const std::string& id : wanted) {
      if (!present.contains(id)) {
        return Fail(ctx, ExitCode::kNotFound,
                    "no dead letter of event " + id +
                        (parsed->Has("consumer") ? " for consumer " + *parsed->Get("consumer")
                                                 : std::string()) +
                        "; nothing was re-driven (see txctl deadletters list)");
      }
    }
    std::erase_if(chosen, [&](const DeadLetter& d) { return !wanted.contains(d.event_id); });
  }

  std::vector<outbox::RedriveResult> done;
  std::vector<std::pair<const DeadLetter*, Status>> failed;
  {
    ProgressBar bar(ctx, "re-driving", chosen.size());
    for (const DeadLetter& d : chosen) {
      auto result = (*queue)->Redrive(d);
      if (result.ok()) {
        done.push_back(std::move(result).value());
      } else {
        failed.emplace_back(&d, result.status());
      }
      bar.Update(done.size() + failed.size());
    }
  }
  if (ctx.json) {
    Poco::JSON::Object::Ptr reply = new Poco::JSON::Object;
    Poco::JSON::Array::Ptr list = new Poco::JSON::Array;
    for (const auto& r : done) {
      Poco::JSON::Object::Ptr o = new Poco::JSON::Object;
      o->set("sequence", J(r.dead_letter_sequence));
      o->set("event_id", r.event_id);
      o->set("consumer", r.consumer);
      o->set("subject", r.subject);
      o->set("stream", r.stream);
      o->set("stream_sequence", J(r.stream_sequence));
      o->set("duplicate", r.duplicate);
      list->add(o);
    }
    reply->set("redriven", list);
    Poco::JSON::Array::Ptr errors = new Poco::JSON::Array;
    for (const auto& [letter, why] : failed) {
      Poco::JSON::Object::Ptr o = new Poco::JSON::Object;
      o->set("sequence", J(letter->sequence));
      o->set("event_id", letter->event_id);
      o->set("error", why.message());
      errors->add(o);
    }
    reply->set("failed", errors);
    PrintJson(ctx, reply);
  } else if (chosen.empty()) {
    ctx.out() << "no dead letters\n";
  } else if (!done.empty()) {
    Table table({"SEQ", "EVENT", "CONSUMER", "SUBJECT", "STREAM", "STREAM SEQ"});
    for (const auto& r : done) {
      table.AddRow({std::to_string(r.dead_letter_sequence), Or(r.event_id), Or(r.consumer),
                    r.subject, r.stream,
                    std::to_string(r.stream_sequence) + (r.duplicate ? " (repeat)" : "")});
    }
    table.Print(ctx.out());
    ctx.out() << "re-drove " << done.size() << " dead letter" << (done.size() == 1 ? "" : "s")
              << "\n";
  }
  if (failed.empty()) return ToInt(ExitCode::kOk);
  for (size_t i = 1; i < failed.size(); ++i) Fail(ctx, failed[i].second);
  return Fail(ctx, failed.front().second);
}

int Dispatch(Context& ctx, const std::vector<std::string>& args, std::string_view group,
             const char* help,
             std::initializer_list<std::pair<std::string_view,
                                             int (*)(Context&, const std::vector<std::string>&)>>
                 subcommands) {
  if (args.empty() || args.front() == "--help" || args.front() == "-h" ||
      args.front() == "help") {
    (args.empty() ? ctx.err() : ctx.out()) << help;
    return ToInt(args.empty() ? ExitCode::kUsage : ExitCode::kOk);
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  for (const auto& [name, run] : subcommands) {
    if (args.front() == name) return run(ctx, rest);
  }
  return Fail(ctx, ExitCode::kUsage,
              "unknown " + std::string(group) + " command \"" + args.front() + "\"; see txctl " +
                  std::string(group) + " --help");
}

}  // namespace

int RunOutbox(Context& ctx, const std::vector<std::string>& args) {
  return Dispatch(ctx, args, "outbox", kOutboxHelp,
                  {{"status", RunOutboxStatus}, {"replay", RunOutboxReplay}});
}

int RunDeadletters(Context& ctx, const std::vector<std::string>& args) {
  return Dispatch(ctx, args, "deadletters", kDeadlettersHelp,
                  {{"list", RunDeadlettersList}, {"redrive", RunDeadlettersRedrive}});
}

}  // namespace txcoord::txctl
