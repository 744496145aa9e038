#include "txcoord/program.h"

#include <Poco/Exception.h>
#include <Poco/String.h>
#include <Poco/StringTokenizer.h>
#include <Poco/Util/IniFileConfiguration.h>
#include <Poco/Util/Option.h>
#include <Poco/Util/PropertyFileConfiguration.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <iostream>

namespace txcoord::program {
namespace {

// Flags sit above the config file: a lower number is a higher priority in Poco's
// LayeredConfiguration, and both are above Poco's own application and system layers.
constexpr int kFlagLayerPriority = Poco::Util::Application::PRIO_APPLICATION - 20;
constexpr int kFileLayerPriority = Poco::Util::Application::PRIO_APPLICATION - 10;

}  // namespace

const FlagSpec* FlagTable::Find(std::string_view name) const {
  for (const FlagSpec& flag : flags_) {
    if (name == flag.name) return &flag;
  }
  return nullptr;
}

std::string_view FlagTable::Repeatable() const {
  for (const FlagSpec& flag : flags_) {
    if (flag.repeatable) return flag.name;
  }
  return {};
}

void FlagTable::Define(Poco::Util::OptionSet& options) const {
  for (const FlagSpec& flag : flags_) {
    Poco::Util::Option option(flag.name, "", flag.help);
    option.required(false).repeatable(flag.repeatable);
    if (flag.argument != nullptr) option.argument(flag.argument);
    options.addOption(option);
  }
}

std::string FlagTable::Help(std::string_view usage) const {
  std::string text = std::string(usage) + "\nflags (also --flag=VALUE):\n";
  for (const FlagSpec& flag : flags_) {
    std::string left = std::string("  --") + flag.name;
    if (flag.argument != nullptr) left += std::string(" ") + flag.argument;
    left.resize(std::max<size_t>(left.size() + 2, 34), ' ');
    text += left + flag.help + "\n";
  }
  return text;
}

Status FlagTable::Record(const std::string& name, const std::string& value,
                         Poco::Util::AbstractConfiguration& flags,
                         std::vector<std::string>& repeated) const {
  const FlagSpec* flag = Find(name);
  if (flag == nullptr || flag->argument == nullptr) return Status::Ok();
  if (value.starts_with("--")) {
    return Status::InvalidArgument("--" + name + " needs a value (--" + name + " " +
                                   flag->argument + "), got the flag " + value);
  }
  if (flag->repeatable) {
    repeated.push_back(value);
  } else {
    flags.setString(name, value);
  }
  return Status::Ok();
}

std::string FlagTable::ConfigKeyList() const {
  std::string keys;
  for (const FlagSpec& flag : flags_) {
    if (!flag.config_key) continue;
    if (!keys.empty()) keys += ", ";
    keys += flag.name;
  }
  return keys;
}

Result<Poco::Util::AbstractConfiguration::Ptr> FlagTable::LoadConfigFile(
    const std::string& path) const {
  Poco::Util::AbstractConfiguration::Ptr file;
  const bool ini = Poco::toLower(std::filesystem::path(path).extension().string()) == ".ini";
  // Poco reports a missing file as an exception, and reads a directory as an empty file.
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return Status::InvalidArgument("cannot read --config " + path + ": not a readable file");
  }
  try {
    if (ini) {
      file = new Poco::Util::IniFileConfiguration(path);
    } else {
      file = new Poco::Util::PropertyFileConfiguration(path);
    }
  } catch (const Poco::Exception& e) {
    return Status::InvalidArgument("cannot read --config " + path + ": " + e.displayText());
  }
  Poco::Util::AbstractConfiguration::Keys keys;
  file->keys(keys);
  for (const std::string& key : keys) {
    const FlagSpec* flag = Find(key);
    Poco::Util::AbstractConfiguration::Keys subkeys;  // "listen.port" is not "listen"
    file->keys(key, subkeys);
    if (flag == nullptr || !flag->config_key || !subkeys.empty()) {
      const std::string shown = subkeys.empty() ? key : key + "." + subkeys.front();
      return Status::InvalidArgument("--config " + path + ": unknown key \"" + shown +
                                     "\"; the keys are " + ConfigKeyList() +
                                     (ini ? ", outside any [section]" : ""));
    }
  }
  return file;
}

FlagApp::FlagApp(std::string program, std::string version, FlagTable flags, std::string usage)
    : program_(std::move(program)),
      version_text_(std::move(version)),
      flags_table_(flags),
      usage_(std::move(usage)) {
  config().add(flags_, kFlagLayerPriority, /*writeable=*/false);
}

void FlagApp::PrintUsageError(std::string_view message) const {
  std::cerr << program_ << ": " << OneLine(message) << std::endl;
}

void FlagApp::defineOptions(Poco::Util::OptionSet& options) {
  Application::defineOptions(options);
  flags_table_.Define(options);
}

void FlagApp::handleOption(const std::string& name, const std::string& value) {
  Application::handleOption(name, value);
  if (name == "help" || name == "version") {
    (name == "help" ? help_ : version_) = true;
    stopOptionsProcessing();
    return;
  }
  if (Status s = flags_table_.Record(name, value, *flags_, repeated_); !s.ok()) {
    throw Poco::Util::InvalidArgumentException(s.message());
  }
}

int FlagApp::main(const ArgVec& args) {
  if (help_) {
    std::cout << flags_table_.Help(usage_) << std::flush;
    return kExitOk;
  }
  if (version_) {
    std::cout << program_ << " " << version_text_ << std::endl;
    return kExitOk;
  }
  if (!args.empty()) {
    PrintUsageError("unexpected argument \"" + args.front() + "\"; flags start with --, see " +
                    program_ + " --help");
    return kExitUsage;
  }
  if (flags_->hasProperty("config")) {
    auto file = flags_table_.LoadConfigFile(flags_->getRawString("config"));
    if (!file.ok()) {
      PrintUsageError(file.status().message());
      return kExitUsage;
    }
    config().add(*file, kFileLayerPriority, /*writeable=*/false);
  }
  return Run(config(), repeated_);
}

std::string FlagApp::DescribeOptionError(const Poco::Util::OptionException& e) const {
  using namespace Poco::Util;
  const std::string see = "; see " + program_ + " --help";
  const std::string& text = e.message();
  const std::string flag = (text.starts_with("-") ? "" : "--") + text.substr(0, text.find(' '));
  if (dynamic_cast<const UnknownOptionException*>(&e)) return "unknown flag " + flag + see;
  if (dynamic_cast<const MissingArgumentException*>(&e)) {
    const size_t requires_at = text.find(" requires ");
    const std::string value =
        requires_at == std::string::npos ? "VALUE" : text.substr(requires_at + 10);
    return flag + " needs a value: " + flag + " " + value;
  }
  if (dynamic_cast<const DuplicateOptionException*>(&e)) {
    const std::string_view repeatable = flags_table_.Repeatable();
    return flag + " is given twice" +
           (repeatable.empty() ? see : "; only --" + std::string(repeatable) + " may repeat");
  }
  if (dynamic_cast<const AmbiguousOptionException*>(&e)) {
    return flag + " is ambiguous; spell the flag out" + see;
  }
  if (dynamic_cast<const UnexpectedArgumentException*>(&e)) {
    return flag.substr(0, flag.find('=')) + " takes no value" + see;
  }
  return text;  // ours, from FlagTable::Record: already says what to do
}

int RunApp(FlagApp& app, int argc, char** argv) {
  try {
    app.init(argc, argv);
  } catch (const Poco::Util::OptionException& e) {
    app.PrintUsageError(app.DescribeOptionError(e));
    return kExitUsage;
  } catch (const Poco::Exception& e) {
    app.PrintUsageError(e.displayText());
    return kExitUsage;
  }
  return app.run();
}

std::string OneLine(std::string_view text) {
  std::string line;
  for (const char c : text) {
    const bool space = c == '\n' || c == '\r' || c == '\t' || c == ' ';
    if (space && (line.empty() || line.back() == ' ')) continue;
    line.push_back(space ? ' ' : c);
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line;
}

Result<int> ParseIntInRange(std::string_view flag, std::string_view text, int min, int max) {
  int value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || value < min || value > max) {
    return Status::InvalidArgument("--" + std::string(flag) + " \"" + std::string(text) +
                                   "\" is not a whole number from " + std::to_string(min) + " to " +
                                   std::to_string(max));
  }
  return value;
}

std::vector<std::string> SplitCommaList(const std::string& text) {
  Poco::StringTokenizer tokens(
      text, ",", Poco::StringTokenizer::TOK_TRIM | Poco::StringTokenizer::TOK_IGNORE_EMPTY);
  return {tokens.begin(), tokens.end()};
}

Result<Poco::Net::SocketAddress> ParseListenAddress(std::string_view text,
                                                    std::string_view example) {
  auto bad = [text, example](std::string_view why) {
    return Status::InvalidArgument("--listen \"" + std::string(text) + "\" " + std::string(why) +
                                   "; use HOST:PORT, e.g. " + std::string(example));
  };
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return bad("has no port");
  std::string_view host = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  if (host.starts_with('[')) {
    if (!host.ends_with(']')) return bad("has an unclosed [");
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return bad("needs brackets around an IPv6 address");
  }
  if (host.empty()) return bad("has no host");
  int port = 0;
  const char* end = port_text.data() + port_text.size();
  auto [ptr, ec] = std::from_chars(port_text.data(), end, port);
  if (port_text.empty() || ec != std::errc() || ptr != end || port < 0 || port > 65535) {
    return bad("has no port number from 0 to 65535");
  }
  try {
    return Poco::Net::SocketAddress(std::string(host), static_cast<Poco::UInt16>(port));
  } catch (const Poco::Exception& e) {
    return bad("names no usable host (" + e.displayText() + ")");
  }
}

Result<LogFormat> ParseLogFormat(std::string_view text) {
  if (text == "text") return LogFormat::kText;
  if (text == "json") return LogFormat::kJson;
  return Status::InvalidArgument("--log-format \"" + std::string(text) +
                                 "\" is neither text nor json");
}

Status CheckServerTlsFlags(std::string_view cert_file, std::string_view key_file,
                           std::string_view client_ca_file) {
  if (cert_file.empty() != key_file.empty()) {
    return Status::InvalidArgument("--tls-cert and --tls-key go together: give both or neither");
  }
  if (cert_file.empty() && !client_ca_file.empty()) {
    return Status::InvalidArgument("--tls-client-ca needs --tls-cert and --tls-key");
  }
  return Status::Ok();
}

}  // namespace txcoord::program
