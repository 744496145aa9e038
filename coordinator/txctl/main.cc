// txctl: the recovery CLI for txcoord (contract section 6; coordinator/txctl/README.md).
//
// Parses the global flags into a Context and dispatches to the command named by the first
// word that is not a global flag. Global flags may stand before or after the command's name;
// the rest of the words go to the command untouched.
#include <unistd.h>

#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "command.h"

namespace txcoord::txctl {
namespace {

constexpr std::string_view kDefaultCoordinator = "http://127.0.0.1:8470";

struct CommandEntry {
  std::string_view name;
  std::string_view summary;
  int (*run)(Context&, const std::vector<std::string>&);
};

constexpr CommandEntry kCommands[] = {
    {"list", "list transactions (--state, --protocol, --older-than, --limit)", RunList},
    {"show", "show one transaction: branches or steps, then its history", RunShow},
    {"retry", "send a transaction's pending callbacks now", RunRetry},
    {"abort", "abort a transaction whose outcome is not decided yet", RunAbort},
    {"resolve", "mark a stuck branch or step as done by hand (--branch, --as)", RunResolve},
    {"purge", "delete finished transactions older than --older-than", RunPurge},
    {"outbox", "outbox sources: status, replay", RunOutbox},
    {"deadletters", "the dead-letter stream: list, redrive", RunDeadletters},
};

std::string HelpText() {
  std::string text =
      "usage: txctl [--coordinator URL | --store URI] [global flags] COMMAND [ARGS]\n"
      "\n"
      "Works through the running txcoord (--coordinator, the default) or, with --store, offline\n"
      "on its store while the service is stopped.\n"
      "\n"
      "global flags:\n"
      "  --coordinator URL   the service, http:// or https:// (default http://127.0.0.1:8470)\n"
      "  --store URI         sqlite://PATH or postgresql://...: work on the store directly\n"
      "  --token-file FILE   bearer token for the API (the first token in FILE)\n"
      "  --ca FILE           CA the coordinator's certificate must chain to (https)\n"
      "  --cert FILE         client certificate, for a coordinator that requires one\n"
      "  --key FILE          its private key\n"
      "  --json              print JSON for scripts instead of tables\n"
      "  --help, --version\n"
      "\n"
      "commands:\n";
  for (const CommandEntry& command : kCommands) {
    std::string name(command.name);
    name.resize(13, ' ');
    text += "  " + name + std::string(command.summary) + "\n";
  }
  text +=
      "\n"
      "`txctl COMMAND --help` describes a command.\n"
      "exit codes: 0 done; 1 refused or failed (e.g. the state forbids it); 2 usage error;\n"
      "3 not found; 4 coordinator or store unreachable, or the token was refused.\n";
  return text;
}

// The first token in the file, as the service reads it (one per line, '#' comments).
Result<std::string> ReadToken(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::InvalidArgument("cannot read --token-file " + path);
  for (std::string line; std::getline(in, line);) {
    const size_t begin = line.find_first_not_of(" \t\r");
    if (begin == std::string::npos || line[begin] == '#') continue;
    const size_t end = line.find_last_not_of(" \t\r");
    return line.substr(begin, end - begin + 1);
  }
  return Status::InvalidArgument("--token-file " + path + " holds no token");
}

int Main(int argc, char** argv) {
  Context ctx;
  ctx.out_stream = &std::cout;
  ctx.err_stream = &std::cerr;
  ctx.stdout_is_terminal = isatty(STDOUT_FILENO) == 1;

  struct GlobalFlag {
    std::string_view name;
    std::string* value;  // nullptr: a switch
  };
  std::string coordinator_url;
  const GlobalFlag globals[] = {
      {"coordinator", &coordinator_url},
      {"store", &ctx.store_uri},
      {"token-file", &ctx.token_file},
      {"ca", &ctx.tls.ca_file},
      {"cert", &ctx.tls.cert_file},
      {"key", &ctx.tls.key_file},
      {"json", nullptr},
  };

  std::vector<std::string> words;
  bool help = false;
  bool version = false;
  bool rest_is_command_words = false;
  for (int i = 1; i < argc; ++i) {
    const std::string word = argv[i];
    if (rest_is_command_words || !word.starts_with("--")) {
      words.push_back(word);
      continue;
    }
    if (word == "--") {  // kept for the command: it ends the command's flags too
      rest_is_command_words = true;
      words.push_back(word);
      continue;
    }
    const size_t equals = word.find('=');
    const std::string name = word.substr(2, equals == std::string::npos ? equals : equals - 2);
    const GlobalFlag* flag = nullptr;
    for (const GlobalFlag& g : globals) {
      if (g.name == name) flag = &g;
    }
    if (flag == nullptr) {
      // Before the command, --help and --version are txctl's own; after it, the command's.
      if (words.empty() && (name == "help" || name == "version")) {
        (name == "help" ? help : version) = true;
        continue;
      }
      words.push_back(word);  // the command's flag
      continue;
    }
    if (flag->value == nullptr) {
      if (equals != std::string::npos) {
        return Fail(ctx, ExitCode::kUsage, "--" + name + " takes no value; see txctl --help");
      }
      ctx.json = true;
      continue;
    }
    if (equals != std::string::npos) {
      *flag->value = word.substr(equals + 1);
    } else if (i + 1 < argc && !std::string_view(argv[i + 1]).starts_with("--")) {
      *flag->value = argv[++i];
    } else {
      return Fail(ctx, ExitCode::kUsage, "--" + name + " needs a value; see txctl --help");
    }
    if (flag->value->empty()) {
      return Fail(ctx, ExitCode::kUsage, "--" + name + " needs a non-empty value");
    }
  }

  if (version) {
    ctx.out() << "txctl " TXCOORD_VERSION << std::endl;
    return ToInt(ExitCode::kOk);
  }
  if (help || words.empty()) {
    (help ? ctx.out() : ctx.err()) << HelpText() << std::flush;
    return ToInt(help ? ExitCode::kOk : ExitCode::kUsage);
  }
  if (!coordinator_url.empty() && !ctx.store_uri.empty()) {
    return Fail(ctx, ExitCode::kUsage,
                "give --coordinator (through the service) or --store (offline), not both");
  }
  ctx.coordinator_url =
      coordinator_url.empty() ? std::string(kDefaultCoordinator) : coordinator_url;
  if (!ctx.token_file.empty()) {
    auto token = ReadToken(ctx.token_file);
    if (!token.ok()) return Fail(ctx, ExitCode::kUsage, token.status().message());
    ctx.bearer_token = std::move(token).value();
  }

  const std::string command = words.front();
  const std::vector<std::string> args(words.begin() + 1, words.end());
  if (command == "help") {
    ctx.out() << HelpText() << std::flush;
    return ToInt(ExitCode::kOk);
  }
  for (const CommandEntry& entry : kCommands) {
    if (entry.name == command) return entry.run(ctx, args);
  }
  return Fail(ctx, ExitCode::kUsage,
              "unknown command \"" + command + "\"; see txctl --help for the commands");
}

}  // namespace
}  // namespace txcoord::txctl

int main(int argc, char** argv) { return txcoord::txctl::Main(argc, argv); }
