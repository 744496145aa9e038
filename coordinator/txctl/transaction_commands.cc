// The transaction commands: list, show, retry, abort, resolve, purge (README.md). Each parses
// its flags, makes one or a few Backend calls and prints a table, or JSON with --json.
#include <google/protobuf/util/time_util.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "backend.h"
#include "txcoord/coordinator/log.h"
#include "txcoord/schemas/ids.h"
#include "txcoord/schemas/json.h"

namespace txcoord::txctl {
namespace {

using google::protobuf::util::TimeUtil;
using std::chrono::milliseconds;

constexpr int kDefaultListLimit = 50;
constexpr int kMaxListLimit = 100'000;
constexpr int kMaxPage = 1000;
constexpr int64_t kDefaultPurgeBatch = 1000;
constexpr int64_t kMaxPurgeBatch = 100'000;
constexpr size_t kCellWidth = 60;

int64_t NowMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t ToMs(const google::protobuf::Timestamp& t) { return TimeUtil::TimestampToMilliseconds(t); }

bool IsSet(const google::protobuf::Timestamp& t) { return t.seconds() != 0 || t.nanos() != 0; }

// RFC 3339 in UTC with milliseconds, as the contract writes times.
std::string Time(const google::protobuf::Timestamp& t) {
  if (!IsSet(t)) return "-";
  return TimeUtil::ToString(TimeUtil::MillisecondsToTimestamp(ToMs(t)));
}

std::string Age(const google::protobuf::Timestamp& t) {
  if (!IsSet(t)) return "-";
  return FormatDuration(milliseconds(NowMs() - ToMs(t)));
}

// One line, at most `width` characters, for a table cell.
std::string Cell(std::string_view text, size_t width = kCellWidth) {
  std::string line;
  for (const char c : text) line.push_back(c == '\n' || c == '\r' || c == '\t' ? ' ' : c);
  if (line.size() > width) line = line.substr(0, width - 3) + "...";
  return line;
}

bool IsTerminal(const std::string& state) { return state == "committed" || state == "aborted"; }

// What an operator looks at first: why it aborted, or the first branch or step with an error
// that has not finished its phase.
std::string Problem(const v1::Transaction& tx) {
  if (!tx.reason().empty()) return tx.reason();
  for (const v1::Branch& b : tx.branches()) {
    if (!b.last_error().empty() && !IsTerminal(b.state())) {
      return "branch " + b.branch_id() + ": " + b.last_error();
    }
  }
  for (const v1::Step& s : tx.steps()) {
    if (!s.last_error().empty() && s.state() != "succeeded" && s.state() != "compensated") {
      return "step " + s.step_id() + ": " + s.last_error();
    }
  }
  return "";
}

std::string Parts(const v1::Transaction& tx) {
  if (tx.steps_size() > 0) return std::to_string(tx.steps_size()) + " steps";
  return std::to_string(tx.branches_size()) + (tx.branches_size() == 1 ? " branch" : " branches");
}

// Prints the help of a command and returns 0.
int Help(const Context& ctx, std::string_view text) {
  ctx.out() << text << std::flush;
  return ToInt(ExitCode::kOk);
}

// The parsed flags, or the usage error already printed (returned as its exit code).
struct Parsed {
  std::optional<ParsedArgs> args;
  int exit_code = 0;
};

Parsed Parse(const Context& ctx, std::string_view command, const std::vector<std::string>& words,
             const std::vector<FlagSpec>& specs) {
  auto args = ParseArgs(command, words, specs);
  if (!args.ok()) return {std::nullopt, Fail(ctx, args.status())};
  return {std::move(args).value(), 0};
}

// The one GTID a command takes, checked against the contract's id rule.
Result<std::string> OneGtid(std::string_view command, const ParsedArgs& args) {
  if (args.positional().size() != 1) {
    return Status::InvalidArgument("txctl " + std::string(command) + " takes one GTID; see txctl " +
                                   std::string(command) + " --help");
  }
  const std::string& gtid = args.positional().front();
  TXCOORD_RETURN_IF_ERROR(ValidateId("GTID", gtid));
  return gtid;
}

void PrintParts(const Context& ctx, const v1::Transaction& tx) {
  if (tx.steps_size() > 0) {
    Table table({"STEP", "STATE", "ATTEMPTS", "LAST ERROR"});
    for (const v1::Step& s : tx.steps()) {
      table.AddRow({s.step_id(), s.state(), std::to_string(s.attempts()), Cell(s.last_error())});
    }
    table.Print(ctx.out());
    return;
  }
  if (tx.branches_size() == 0) {
    ctx.out() << "(no branches registered)\n";
    return;
  }
  Table table({"BRANCH", "STATE", "ATTEMPTS", "LAST ERROR", "URL"});
  for (const v1::Branch& b : tx.branches()) {
    table.AddRow(
        {b.branch_id(), b.state(), std::to_string(b.attempts()), Cell(b.last_error()), b.url()});
  }
  table.Print(ctx.out());
}

void PrintSummary(const Context& ctx, const v1::Transaction& tx) {
  ctx.out() << "gtid:      " << tx.gtid() << "\n"
            << "protocol:  " << tx.protocol() << "\n"
            << "state:     " << tx.state() << "\n"
            << "created:   " << Time(tx.created_at()) << " (" << Age(tx.created_at()) << " ago)\n"
            << "updated:   " << Time(tx.updated_at()) << "\n"
            << "deadline:  " << Time(tx.deadline()) << "\n";
  if (!tx.reason().empty()) ctx.out() << "reason:    " << tx.reason() << "\n";
}

// ---- list

constexpr std::string_view kListHelp =
    "usage: txctl list [--state STATE] [--protocol P] [--older-than DURATION] [--limit N]\n"
    "                  [--after GTID]\n"
    "\n"
    "Transactions, newest first: gtid, protocol, state, age, branches or steps, and the reason\n"
    "it aborted or the error a branch or step is stuck on.\n"
    "\n"
    "  --state STATE          only this state (committed, aborted, preparing, committing, ...)\n"
    "  --protocol P           only this protocol (2pc, 3pc, tcc, saga)\n"
    "  --older-than DURATION  only those begun longer ago than this: 90s, 10m, 2h, 3d\n"
    "  --limit N              at most N (default 50); pages are fetched as needed\n"
    "  --after GTID           continue after this gtid: the `next` of an earlier list\n"
    "\n"
    "With --json: {\"transactions\": [...], \"next\": \"GTID or empty\"}, records as GET\n"
    "/v1/transactions/{gtid} gives them.\n";

}  // namespace

int RunList(Context& ctx, const std::vector<std::string>& words) {
  Parsed p =
      Parse(ctx, "list", words, {{"state"}, {"protocol"}, {"older-than"}, {"limit"}, {"after"}});
  if (!p.args) return p.exit_code;
  const ParsedArgs& args = *p.args;
  if (args.help()) return Help(ctx, kListHelp);
  if (!args.positional().empty()) {
    return Fail(ctx, ExitCode::kUsage, "txctl list takes no GTID; see txctl list --help");
  }
  ListRequest request;
  request.state = args.Get("state").value_or("");
  const std::string protocol = args.Get("protocol").value_or("");
  if (auto older = args.Get("older-than")) {
    auto duration = ParseDuration(*older);
    if (!duration.ok())
      return Fail(ctx, ExitCode::kUsage, "--older-than: " + duration.status().message());
    request.older_than = *duration;
  }
  int limit = kDefaultListLimit;
  if (auto text = args.Get("limit")) {
    char* end = nullptr;
    const long value = std::strtol(text->c_str(), &end, 10);
    if (text->empty() || *end != '\0' || value < 1 || value > kMaxListLimit) {
      return Fail(
          ctx, ExitCode::kUsage,
          "--limit \"" + *text + "\" is not a number from 1 to " + std::to_string(kMaxListLimit));
    }
    limit = static_cast<int>(value);
  }
  request.after = args.Get("after").value_or("");
  if (!request.after.empty()) {
    if (Status s = ValidateId("--after", request.after); !s.ok()) return Fail(ctx, s);
  }

  auto backend = OpenBackend(ctx);
  if (!backend.ok()) return Fail(ctx, backend.status());
  // Pages until `limit` records match; --protocol is filtered here, the rest by the store.
  v1::TransactionList result;
  std::string next;
  for (;;) {
    const int wanted = limit - result.transactions_size();
    request.limit = protocol.empty() ? std::min(wanted, kMaxPage) : kMaxPage;
    auto page = (*backend)->List(request);
    if (!page.ok()) return Fail(ctx, page.status());
    bool stopped_early = false;
    for (int i = 0; i < page->transactions_size(); ++i) {
      const v1::Transaction& tx = page->transactions(i);
      if (!protocol.empty() && tx.protocol() != protocol) continue;
      *result.add_transactions() = tx;
      if (result.transactions_size() == limit) {
        stopped_early = i + 1 < page->transactions_size() || !page->next().empty();
        break;
      }
    }
    if (result.transactions_size() == limit) {
      next = stopped_early ? result.transactions(result.transactions_size() - 1).gtid() : "";
      break;
    }
    if (page->next().empty()) break;
    request.after = page->next();
  }
  result.set_next(next);

  if (ctx.json) {
    PrintJson(ctx, result);
    return ToInt(ExitCode::kOk);
  }
  Table table({"GTID", "PROTOCOL", "STATE", "AGE", "PARTS", "REASON OR LAST ERROR"});
  for (const v1::Transaction& tx : result.transactions()) {
    table.AddRow(
        {tx.gtid(), tx.protocol(), tx.state(), Age(tx.created_at()), Parts(tx), Cell(Problem(tx))});
  }
  table.Print(ctx.out());
  if (table.rows() == 0) ctx.out() << "(no transactions)\n";
  if (!next.empty()) ctx.out() << "more: txctl list --after " << next << " ...\n";
  ctx.out().flush();
  return ToInt(ExitCode::kOk);
}

namespace {

constexpr std::string_view kShowHelp =
    "usage: txctl show GTID\n"
    "\n"
    "One transaction: its state and reason, each branch or saga step with its state, attempts\n"
    "and last error, then its history: every durable record as a timeline (decisions, phase\n"
    "outcomes, retries logged at attempts 1, 2, 4, 8, ..., resolves with operator and reason).\n"
    "\n"
    "With --json: {\"transaction\": {...}, \"history\": {\"entries\": [...]}}.\n";

void PrintHistory(const Context& ctx, const v1::TransactionHistory& history) {
  ctx.out() << "\nhistory:\n";
  Table table({"TIME", "+ELAPSED", "KIND", "WHAT"});
  int64_t first_ms = -1;
  for (const v1::HistoryEntry& e : history.entries()) {
    const int64_t at = ToMs(e.at());
    if (first_ms < 0) first_ms = at;
    table.AddRow({Time(e.at()), "+" + FormatDuration(milliseconds(at - first_ms)), e.kind(),
                  Cell(e.detail(), 160)});
  }
  table.Print(ctx.out());
}

}  // namespace

int RunShow(Context& ctx, const std::vector<std::string>& words) {
  Parsed p = Parse(ctx, "show", words, {});
  if (!p.args) return p.exit_code;
  if (p.args->help()) return Help(ctx, kShowHelp);
  auto gtid = OneGtid("show", *p.args);
  if (!gtid.ok()) return Fail(ctx, gtid.status());
  auto backend = OpenBackend(ctx);
  if (!backend.ok()) return Fail(ctx, backend.status());
  auto tx = (*backend)->Get(*gtid);
  if (!tx.ok()) return Fail(ctx, tx.status());
  auto history = (*backend)->History(*gtid);
  if (!history.ok()) return Fail(ctx, history.status());
  if (ctx.json) {
    const auto json = [](const google::protobuf::Message& m) {
      std::string text = MessageToJson(m, {.print_defaults = true, .pretty = true});
      while (!text.empty() && text.back() == '\n') text.pop_back();
      return text;
    };
    ctx.out() << "{\"transaction\": " << json(*tx) << ",\n\"history\": " << json(*history) << "}"
              << std::endl;
    return ToInt(ExitCode::kOk);
  }
  PrintSummary(ctx, *tx);
  ctx.out() << "\n";
  PrintParts(ctx, *tx);
  PrintHistory(ctx, *history);
  ctx.out().flush();
  return ToInt(ExitCode::kOk);
}

namespace {

constexpr std::string_view kRetryHelp =
    "usage: txctl retry GTID\n"
    "\n"
    "Sends the transaction's pending callbacks now instead of after their backoff, and starts\n"
    "the backoff over. Calls already in flight are left to finish.\n"
    "Offline (--store) there is nothing to send them with: txcoord resends every pending\n"
    "callback when it next starts, so txctl only says so and exits 1.\n"
    "Exit: 0 sent; 1 finished already, or offline; 3 no such transaction.\n";

constexpr std::string_view kAbortHelp =
    "usage: txctl abort GTID\n"
    "\n"
    "Aborts a transaction whose outcome is not decided yet (2pc preparing, tcc active, a running\n"
    "saga, which then compensates). Once a commit is decided it can no longer abort: exit 1.\n"
    "Offline, the abort decision is written to the store as txcoord would write it; txcoord sends\n"
    "the aborts when it next starts.\n";

}  // namespace

int RunRetry(Context& ctx, const std::vector<std::string>& words) {
  Parsed p = Parse(ctx, "retry", words, {});
  if (!p.args) return p.exit_code;
  if (p.args->help()) return Help(ctx, kRetryHelp);
  auto gtid = OneGtid("retry", *p.args);
  if (!gtid.ok()) return Fail(ctx, gtid.status());
  auto backend = OpenBackend(ctx);
  if (!backend.ok()) return Fail(ctx, backend.status());
  auto tx = (*backend)->Retry(*gtid);
  if (!tx.ok()) return Fail(ctx, tx.status().WithContext("retry " + *gtid));
  if (ctx.json) {
    PrintJson(ctx, *tx);
    return ToInt(ExitCode::kOk);
  }
  ctx.out() << *gtid << " (" << tx->state() << "): pending callbacks sent now\n";
  PrintParts(ctx, *tx);
  return ToInt(ExitCode::kOk);
}

int RunAbort(Context& ctx, const std::vector<std::string>& words) {
  Parsed p = Parse(ctx, "abort", words, {});
  if (!p.args) return p.exit_code;
  if (p.args->help()) return Help(ctx, kAbortHelp);
  auto gtid = OneGtid("abort", *p.args);
  if (!gtid.ok()) return Fail(ctx, gtid.status());
  auto backend = OpenBackend(ctx);
  if (!backend.ok()) return Fail(ctx, backend.status());
  auto tx = (*backend)->Abort(*gtid);
  if (!tx.ok()) return Fail(ctx, tx.status().WithContext("cannot abort " + *gtid));
  if (ctx.json) {
    PrintJson(ctx, *tx);
    return ToInt(ExitCode::kOk);
  }
  ctx.out() << *gtid << ": abort decided, now " << tx->state();
  if (!tx->reason().empty()) ctx.out() << " (" << tx->reason() << ")";
  ctx.out() << "\n";
  PrintParts(ctx, *tx);
  return ToInt(ExitCode::kOk);
}

namespace {

constexpr std::string_view kResolveHelp =
    "usage: txctl resolve GTID --branch ID --as committed|aborted [--reason TEXT]\n"
    "                     [--operator NAME]\n"
    "\n"
    "Marks a call the coordinator keeps retrying as done by hand, so the transaction can finish:\n"
    "  - a branch's commit (the decision is commit): --as committed;\n"
    "  - a branch's abort (the decision is abort): --as aborted;\n"
    "  - a single-branch one-phase commit still outstanding: --as committed if the participant\n"
    "    committed, --as aborted if it did not (the operator's word decides it);\n"
    "  - a saga step (--branch STEP_ID): --as aborted once its compensation was done by hand\n"
    "    (the saga is compensating), --as committed once its action was (the saga runs).\n"
    "Anything else is refused (exit 1) with the reason. The resolve is a durable record with the\n"
    "operator and the reason; `txctl show` lists it in the history.\n"
    "\n"
    "  --branch ID       the branch_id, or the saga step_id\n"
    "  --as STATE        committed or aborted\n"
    "  --reason TEXT     why, for the history\n"
    "  --operator NAME   who (default: $USER)\n";

}  // namespace

int RunResolve(Context& ctx, const std::vector<std::string>& words) {
  Parsed p = Parse(ctx, "resolve", words, {{"branch"}, {"as"}, {"reason"}, {"operator"}});
  if (!p.args) return p.exit_code;
  const ParsedArgs& args = *p.args;
  if (args.help()) return Help(ctx, kResolveHelp);
  auto gtid = OneGtid("resolve", args);
  if (!gtid.ok()) return Fail(ctx, gtid.status());
  const std::string branch = args.Get("branch").value_or("");
  if (branch.empty()) {
    return Fail(ctx, ExitCode::kUsage, "txctl resolve needs --branch ID (a branch or saga step)");
  }
  if (Status s = ValidateId("--branch", branch); !s.ok()) return Fail(ctx, s);
  const std::string as = args.Get("as").value_or("");
  if (as != "committed" && as != "aborted") {
    return Fail(ctx, ExitCode::kUsage, "txctl resolve needs --as committed or --as aborted");
  }
  v1::ResolveRequest request;
  request.set_as(as);
  request.set_reason(args.Get("reason").value_or(""));
  const char* user = std::getenv("USER");
  request.set_operator_(args.Get("operator").value_or(user != nullptr ? user : ""));
  if (request.operator_().empty()) {
    return Fail(ctx, ExitCode::kUsage,
                "txctl resolve needs --operator NAME ($USER is not set): the history records who");
  }
  auto backend = OpenBackend(ctx);
  if (!backend.ok()) return Fail(ctx, backend.status());
  auto tx = (*backend)->Resolve(*gtid, branch, request);
  if (!tx.ok()) {
    return Fail(ctx, tx.status().WithContext("cannot resolve " + branch + " of " + *gtid));
  }
  if (ctx.json) {
    PrintJson(ctx, *tx);
    return ToInt(ExitCode::kOk);
  }
  ctx.out() << *gtid << ": " << branch << " resolved as " << as << " by " << request.operator_()
            << "; the transaction is now " << tx->state() << "\n";
  PrintParts(ctx, *tx);
  return ToInt(ExitCode::kOk);
}

namespace {

constexpr std::string_view kPurgeHelp =
    "usage: txctl purge --older-than DURATION (--yes | --dry-run) [--batch N]\n"
    "\n"
    "Deletes finished (committed or aborted) transactions that ended longer ago than DURATION\n"
    "(90s, 10m, 2h, 3d), with their history. Unfinished ones are never deleted. A participant\n"
    "asking about a purged transaction gets 404 (presumed abort), so keep at least as long as\n"
    "participants may stay in doubt.\n"
    "\n"
    "  --older-than DURATION  required\n"
    "  --yes                  delete; without it (and without a terminal to ask on) nothing is\n"
    "  --dry-run              only count them\n"
    "  --batch N              transactions deleted per request (default 1000); a progress bar\n"
    "                         shows on a terminal\n"
    "\n"
    "With --json: {\"purged\": N, \"remaining\": N, \"dry_run\": bool}.\n";

bool AskYes(const Context& ctx, const std::string& question) {
  if (isatty(STDIN_FILENO) != 1) return false;
  ctx.out() << question << " [y/N] " << std::flush;
  std::string answer;
  if (!std::getline(std::cin, answer)) return false;
  return answer == "y" || answer == "Y" || answer == "yes";
}

}  // namespace

int RunPurge(Context& ctx, const std::vector<std::string>& words) {
  Parsed p =
      Parse(ctx, "purge", words, {{"older-than"}, {"yes", false}, {"dry-run", false}, {"batch"}});
  if (!p.args) return p.exit_code;
  const ParsedArgs& args = *p.args;
  if (args.help()) return Help(ctx, kPurgeHelp);
  if (!args.positional().empty()) {
    return Fail(ctx, ExitCode::kUsage, "txctl purge takes no GTID; see txctl purge --help");
  }
  const auto older_text = args.Get("older-than");
  if (!older_text) {
    return Fail(ctx, ExitCode::kUsage, "txctl purge needs --older-than DURATION, e.g. 7d");
  }
  auto older = ParseDuration(*older_text);
  if (!older.ok()) return Fail(ctx, ExitCode::kUsage, "--older-than: " + older.status().message());
  int64_t batch = kDefaultPurgeBatch;
  if (auto text = args.Get("batch")) {
    char* end = nullptr;
    const long long value = std::strtoll(text->c_str(), &end, 10);
    if (text->empty() || *end != '\0' || value < 1 || value > kMaxPurgeBatch) {
      return Fail(
          ctx, ExitCode::kUsage,
          "--batch \"" + *text + "\" is not a number from 1 to " + std::to_string(kMaxPurgeBatch));
    }
    batch = value;
  }
  const bool dry_run = args.Has("dry-run");
  if (dry_run && args.Has("yes")) {
    return Fail(ctx, ExitCode::kUsage, "give --yes or --dry-run, not both");
  }
  auto backend = OpenBackend(ctx);
  if (!backend.ok()) return Fail(ctx, backend.status());
  Backend& store = **backend;

  auto counted = store.Purge(*older, 0);
  if (!counted.ok()) return Fail(ctx, counted.status().WithContext("purge"));
  const std::string what = "finished transactions older than " + FormatDuration(*older);
  const auto report = [&](int64_t purged, int64_t remaining) {
    if (ctx.json) {
      Poco::JSON::Object::Ptr out = new Poco::JSON::Object;
      out->set("purged", purged);
      out->set("remaining", remaining);
      out->set("dry_run", dry_run);
      PrintJson(ctx, out);
    } else if (dry_run) {
      ctx.out() << remaining << " " << what << " would be purged\n";
    } else {
      ctx.out() << "purged " << purged << " " << what << "\n";
    }
    return ToInt(ExitCode::kOk);
  };
  if (dry_run) return report(0, counted->remaining);
  if (counted->remaining == 0) return report(0, 0);
  if (!args.Has("yes") &&
      !AskYes(ctx, "purge " + std::to_string(counted->remaining) + " " + what + "?")) {
    return Fail(ctx, ExitCode::kUsage,
                "nothing purged: " + std::to_string(counted->remaining) + " " + what +
                    " are eligible; pass --yes to delete them (or --dry-run to only count)");
  }

  int64_t total = counted->remaining;
  int64_t purged = 0;
  int64_t remaining = total;
  ProgressBar bar(ctx, "purging", static_cast<uint64_t>(total));
  for (;;) {
    auto slice = store.Purge(*older, batch);
    if (!slice.ok()) {
      bar.Finish();
      return Fail(ctx, slice.status().WithContext("purge stopped after " + std::to_string(purged) +
                                                  " transactions"));
    }
    purged += slice->purged;
    remaining = slice->remaining;
    // More may have become eligible meanwhile (the cutoff moves with the clock).
    if (purged + remaining > total) {
      total = purged + remaining;
      bar.SetTotal(static_cast<uint64_t>(total));
    }
    bar.Update(static_cast<uint64_t>(purged));
    if (slice->purged < batch || remaining == 0) break;
  }
  bar.Finish();
  return report(purged, remaining);
}

}  // namespace txcoord::txctl
