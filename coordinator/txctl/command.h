// txctl's shared parts: the parsed global flags every command gets (Context), the exit codes,
// a small parser for a command's own flags, and the output helpers (table, JSON, progress bar,
// durations).
//
// A command is a function `int RunX(Context&, const std::vector<std::string>& args)`: `args` are
// the words after the command's name with the global flags already taken out. It prints its
// result on ctx.out() (a table, or JSON with --json), any error as ONE line on ctx.err() through
// Fail(), and returns an ExitCode as int.
//
// Thread-safety: none; txctl is single-threaded.
#pragma once

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <google/protobuf/message.h>

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "txcoord/participant/tls.h"
#include "txcoord/status.h"

namespace txcoord::txctl {

// The documented exit codes (coordinator/txctl/README.md). Scripts may rely on them.
enum class ExitCode : int {
  kOk = 0,
  kRefused = 1,      // the operation was refused or failed (e.g. 409: the state forbids it)
  kUsage = 2,        // bad flag, value or arguments; nothing was attempted
  kNotFound = 3,     // no such transaction (or other named thing)
  kUnreachable = 4,  // the coordinator or store could not be reached, or refused the token
};

inline int ToInt(ExitCode code) { return static_cast<int>(code); }

// The exit code for a failed Status: kNotFound → kNotFound; kInvalidArgument → kUsage;
// kUnavailable and kUnknownOutcome → kUnreachable; everything else → kRefused.
ExitCode ExitCodeFor(const Status& status);

// The global flags, parsed by main before the command runs.
struct Context {
  std::string coordinator_url;  // --coordinator URL (default http://127.0.0.1:8470)
  std::string store_uri;        // --store URI: work offline on the store; empty: use the service
  std::string token_file;       // --token-file FILE
  std::string bearer_token;     // the first token of --token-file, read by main
  participant::TlsClientFiles tls;     // --ca, --cert, --key for an https --coordinator
  bool json = false;                   // --json: machine-readable output
  std::ostream* out_stream = nullptr;  // where results go (std::cout in the program)
  std::ostream* err_stream = nullptr;  // where the one error line goes (std::cerr)
  bool stdout_is_terminal = false;     // draw progress bars only then (and never with --json)

  bool offline() const { return !store_uri.empty(); }
  std::ostream& out() const;
  std::ostream& err() const;
};

// Prints "txctl: <message>" (one line: newlines in `message` become blanks) on ctx.err() and
// returns `code` as int, for `return Fail(ctx, ExitCode::kUsage, "...");`.
int Fail(const Context& ctx, ExitCode code, std::string_view message);
// The same with the code and message taken from `status`.
int Fail(const Context& ctx, const Status& status);

// A command's own flags. Each word "--name" or "--name=value" must be one of `specs`; a flag
// that takes a value consumes the next word when not given with '='. "--" ends the flags; every
// other word is positional. "--help"/"-h" is always known.
struct FlagSpec {
  std::string name;  // without the dashes
  bool takes_value = true;
  bool repeatable = false;
};

class ParsedArgs {
 public:
  bool help() const { return help_; }
  bool Has(const std::string& name) const { return values_.contains(name); }
  // The (last) value, or nullopt when absent. For a flag without a value: "" when present.
  std::optional<std::string> Get(const std::string& name) const;
  std::vector<std::string> GetAll(const std::string& name) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  friend Result<ParsedArgs> ParseArgs(std::string_view command,
                                      const std::vector<std::string>& args,
                                      const std::vector<FlagSpec>& specs);
  bool help_ = false;
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positional_;
};

// kInvalidArgument for an unknown flag, a missing value, a repeated non-repeatable flag; the
// message names `command` and says to see `txctl <command> --help`.
Result<ParsedArgs> ParseArgs(std::string_view command, const std::vector<std::string>& args,
                             const std::vector<FlagSpec>& specs);

// A text table: a header row and rows of cells, columns padded to their widest cell, two blanks
// between columns, no trailing blanks. A row shorter than the header is padded with "".
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  void AddRow(std::vector<std::string> cells);
  size_t rows() const { return rows_.size(); }
  void Print(std::ostream& out) const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// JSON on ctx.out(), pretty-printed with a final newline. Protobuf messages use the proto3 JSON
// mapping with snake_case names (the contract's), fields at their defaults included.
void PrintJson(const Context& ctx, const google::protobuf::Message& message);
void PrintJson(const Context& ctx, const Poco::JSON::Object::Ptr& object);
void PrintJson(const Context& ctx, const Poco::JSON::Array::Ptr& array);
// A protobuf message as a Poco JSON object (to embed it in a larger JSON reply).
Poco::JSON::Object::Ptr ToJsonObject(const google::protobuf::Message& message);

// A progress bar on ctx.out(), redrawn in place ("\r"), only when stdout is a terminal and not
// --json; otherwise every call does nothing. Finish() ends the line.
class ProgressBar {
 public:
  ProgressBar(const Context& ctx, std::string label, uint64_t total);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void Update(uint64_t done);
  void Finish();
  bool active() const { return active_; }

 private:
  const Context& ctx_;
  std::string label_;
  uint64_t total_;
  bool active_;
  bool finished_ = false;
  int last_percent_ = -1;
};

// "10m", "2h", "3d", "45s", "500ms", "1h30m" → milliseconds. kInvalidArgument otherwise (also
// for 0 and for values beyond ten years).
Result<std::chrono::milliseconds> ParseDuration(std::string_view text);
// The reverse, rounded down to the largest two units: "3d4h", "2h10m", "45s", "120ms".
std::string FormatDuration(std::chrono::milliseconds duration);

// The commands. Each is defined in the file named.
int RunList(Context& ctx, const std::vector<std::string>& args);         // transaction_commands.cc
int RunShow(Context& ctx, const std::vector<std::string>& args);         // transaction_commands.cc
int RunRetry(Context& ctx, const std::vector<std::string>& args);        // transaction_commands.cc
int RunAbort(Context& ctx, const std::vector<std::string>& args);        // transaction_commands.cc
int RunResolve(Context& ctx, const std::vector<std::string>& args);      // transaction_commands.cc
int RunPurge(Context& ctx, const std::vector<std::string>& args);        // transaction_commands.cc
int RunOutbox(Context& ctx, const std::vector<std::string>& args);       // outbox_commands.cc
int RunDeadletters(Context& ctx, const std::vector<std::string>& args);  // outbox_commands.cc

}  // namespace txcoord::txctl
