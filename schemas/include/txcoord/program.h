// What the two daemons, txcoord and txrelay, share on their command line.
//
// - One table of flags per program (FlagSpec), read by the option parser, by --help and by the
//   config-file key check, so a flag cannot be added to one and forgotten in another.
// - The config file (--config FILE): Java properties (`key = value`), or INI when the name ends
//   in ".ini" (keys outside any section), keys named like the flags without their dashes.
//   Unknown keys are an error, so a misspelled setting is not silently ignored.
// - FlagApp, the Poco application shell of each main: --help and --version, the flags layered
//   over the file in a LayeredConfiguration (flags win), and every mistake reported as exactly
//   one line on stderr with exit status 2. Precedence is the configuration's, not code spread
//   over the program.
// - The value parsers both programs use.
#pragma once

#include <Poco/Net/SocketAddress.h>
#include <Poco/Util/AbstractConfiguration.h>
#include <Poco/Util/Application.h>
#include <Poco/Util/MapConfiguration.h>
#include <Poco/Util/OptionException.h>
#include <Poco/Util/OptionSet.h>

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "txcoord/process_log.h"
#include "txcoord/status.h"

namespace txcoord::program {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;  // a bad flag, value or config file

struct FlagSpec {
  const char* name = nullptr;
  const char* argument = nullptr;  // nullptr: the flag takes no value
  const char* help = nullptr;
  // May be given several times; its values are collected in order (FlagApp::Run's `repeated`).
  // At most one flag of a table repeats. In a config file it is a comma-separated list.
  bool repeatable = false;
  bool config_key = true;  // may also be set in a config file
};

// A program's flags. A view: the table (a constant array) must outlive it.
class FlagTable {
 public:
  explicit FlagTable(std::span<const FlagSpec> flags) : flags_(flags) {}

  const FlagSpec* Find(std::string_view name) const;
  // The repeatable flag's name; empty when none repeats.
  std::string_view Repeatable() const;

  // Adds every flag to `options`. Flags take their value as `--flag VALUE` or `--flag=VALUE`.
  void Define(Poco::Util::OptionSet& options) const;

  // `usage` (the lines above the flags, each ending in '\n'), then one line per flag.
  std::string Help(std::string_view usage) const;

  // Records one command-line flag into `flags` (the top configuration layer); the repeatable
  // flag's values go to `repeated` instead. Flags without a value are not recorded.
  // Errors: kInvalidArgument, e.g. a value that is itself a flag (`--store --listen x`): Poco
  // takes the next argument as the value whatever it is, and no valid value starts with "--",
  // so the value was forgotten.
  Status Record(const std::string& name, const std::string& value,
                Poco::Util::AbstractConfiguration& flags, std::vector<std::string>& repeated) const;

  // Reads a config file (see the top of this header). Errors: kInvalidArgument, naming the file
  // and, for an unknown key, the keys there are.
  Result<Poco::Util::AbstractConfiguration::Ptr> LoadConfigFile(const std::string& path) const;

 private:
  std::string ConfigKeyList() const;

  std::span<const FlagSpec> flags_;
};

// The shell of a daemon's main. A subclass gives its name, flags and usage text and implements
// Run; main() calls RunApp.
class FlagApp : public Poco::Util::Application {
 public:
  // `program` names the executable in messages ("txcoord: ..."), `version` is what --version
  // prints after it, `usage` as FlagTable::Help's.
  FlagApp(std::string program, std::string version, FlagTable flags, std::string usage);

  // Prints `message` as one line on stderr, prefixed "PROGRAM: ". For mistakes found before the
  // process log is set up: a person reads these at a terminal.
  void PrintUsageError(std::string_view message) const;

 protected:
  // Runs the program once the flags and the config file are read: `config` has the flags
  // layered over the file; `repeated` holds the repeatable flag's command-line values, which
  // replace the file's list when not empty. Returns the exit status.
  virtual int Run(const Poco::Util::AbstractConfiguration& config,
                  const std::vector<std::string>& repeated) = 0;

 private:
  friend int RunApp(FlagApp& app, int argc, char** argv);

  void defineOptions(Poco::Util::OptionSet& options) override;
  void handleOption(const std::string& name, const std::string& value) override;
  int main(const ArgVec& args) override;
  // Poco's messages name the flag without its dashes ("bogus", "listen requires HOST:PORT");
  // this puts them back and says what to do.
  std::string DescribeOptionError(const Poco::Util::OptionException& e) const;

  const std::string program_;
  const std::string version_text_;
  const FlagTable flags_table_;
  const std::string usage_;
  Poco::AutoPtr<Poco::Util::MapConfiguration> flags_ = new Poco::Util::MapConfiguration;
  std::vector<std::string> repeated_;
  bool help_ = false;
  bool version_ = false;
};

// Parses the command line into `app` and runs it: a bad flag prints one line and returns
// kExitUsage; otherwise the application's exit status.
int RunApp(FlagApp& app, int argc, char** argv);

// Error texts from libraries (libpq's, say) may span lines; a program promises one.
std::string OneLine(std::string_view text);

// A whole number in [min, max]; the error names --FLAG, the text and the range.
Result<int> ParseIntInRange(std::string_view flag, std::string_view text, int min, int max);

// "a, b,,c" -> {"a", "b", "c"}: a repeatable flag's list in a config file.
std::vector<std::string> SplitCommaList(const std::string& text);

// --listen's "HOST:PORT" or "[IPV6]:PORT" as a socket address; names are resolved. `example` is
// shown in the error ("127.0.0.1:8470").
Result<Poco::Net::SocketAddress> ParseListenAddress(std::string_view text,
                                                    std::string_view example);

// --log-format's "text" or "json".
Result<LogFormat> ParseLogFormat(std::string_view text);

// --tls-cert, --tls-key and --tls-client-ca of a server: the certificate and its key go
// together, and a client CA needs them.
Status CheckServerTlsFlags(std::string_view cert_file, std::string_view key_file,
                           std::string_view client_ca_file);

}  // namespace txcoord::program
