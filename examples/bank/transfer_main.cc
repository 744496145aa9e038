// transfer: moves money between two banks in one distributed transaction (transfer.h).
//
//   transfer --coordinator http://127.0.0.1:8470 --protocol 2pc --gtid t-1
//            --from http://127.0.0.1:7001#alice --to http://127.0.0.1:7003#carol --amount 30
//
// Prints one JSON line {"gtid":..,"protocol":..,"state":..,"reason":..}. Exit code 0 when the
// transfer reached a terminal state (committed or aborted), 1 when it did not in time or the
// coordinator could not be reached, 2 for a bad flag.
#include <algorithm>
#include <charconv>
#include <iostream>
#include <string>

#include "transfer.h"
#include "txcoord/participant/client.h"

namespace {

int Usage(const std::string& message) {
  std::cerr << "transfer: " << message << "; see the top of examples/bank/transfer_main.cc"
            << std::endl;
  return 2;
}

bool SplitBank(const std::string& text, std::string& bank, std::string& account) {
  const size_t hash = text.find('#');
  if (hash == std::string::npos || hash == 0 || hash + 1 == text.size()) return false;
  bank = text.substr(0, hash);
  account = text.substr(hash + 1);
  return true;
}

std::string Quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) out += c;
  }
  return out + "\"";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace txcoord;
  examples::bank::Transfer t;
  std::string coordinator = "http://127.0.0.1:8470";
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) return Usage(flag + " needs a value");
    const std::string value = argv[++i];
    if (flag == "--coordinator") {
      coordinator = value;
    } else if (flag == "--protocol") {
      t.protocol = value;
    } else if (flag == "--gtid") {
      t.gtid = value;
    } else if (flag == "--from") {
      if (!SplitBank(value, t.from_bank, t.from_account)) return Usage("--from wants URL#account");
    } else if (flag == "--to") {
      if (!SplitBank(value, t.to_bank, t.to_account)) return Usage("--to wants URL#account");
    } else if (flag == "--amount" || flag == "--timeout-ms") {
      int64_t n = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || p != value.data() + value.size() || n <= 0) {
        return Usage(flag + " wants a positive whole number");
      }
      if (flag == "--amount") {
        t.amount = n;
      } else {
        t.timeout_ms = static_cast<int>(std::min<int64_t>(n, 24 * 3600 * 1000));
      }
    } else {
      return Usage("unknown flag " + flag);
    }
  }
  if (t.protocol != "2pc" && t.protocol != "3pc" && t.protocol != "tcc") {
    return Usage("--protocol is 2pc, 3pc or tcc");
  }
  if (t.gtid.empty() || t.from_bank.empty() || t.to_bank.empty() || t.amount <= 0) {
    return Usage("--gtid, --from, --to and --amount are required");
  }
  participant::CoordinatorClientOptions options;
  options.url = coordinator;
  auto client = participant::CoordinatorClient::Create(options);
  if (!client.ok()) return Usage("--coordinator: " + client.status().message());
  auto result = examples::bank::RunTransfer(**client, t, std::chrono::seconds(60));
  if (!result.ok()) {
    std::cerr << "transfer: " << result.status().message() << std::endl;
    return 1;
  }
  std::cout << "{\"gtid\":" << Quoted(t.gtid) << ",\"protocol\":" << Quoted(t.protocol)
            << ",\"state\":" << Quoted(result->state) << ",\"reason\":" << Quoted(result->reason)
            << "}" << std::endl;
  return result->state == "committed" || result->state == "aborted" ? 0 : 1;
}
