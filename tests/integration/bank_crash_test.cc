// The acceptance test of the coordinator: concurrent bank transfers while the coordinator and
// the participants are SIGKILLed at random and restarted.
//
// Set-up, all real processes on loopback: txcoord on a SQLite store; three bank participants
// (examples/bank): a and b on SQLite with the barrier, c on PostgreSQL prepared transactions
// (2pc, 3pc) and the barrier (tcc). For 3pc the banks' own timeouts (participant/three_phase.h)
// are short, so they fire during the kills, with the termination query required. Each protocol runs
// `kTransfers` transfers from `kClients` client threads (examples/bank/transfer.h, which retries
// with the same gtid), among random accounts of two different banks, some too large for the balance
// so that they abort. Meanwhile a killer SIGKILLs the coordinator at least `kCoordinatorKills`
// times and a random bank at least `kBankKills` times, restarting each at once on the same port.
//
// Afterwards, within 30 s of the last restart:
//   - every transaction is terminal (GET), and the client saw the same outcome;
//   - the sum of all balances is what it was, and no bank holds anything;
//   - all-or-nothing: a committed transaction has both its ledger entries (debit at one bank,
//     credit at the other), an aborted one has none anywhere;
//   - pg_prepared_xacts is empty.
// Knobs: TXCOORD_CRASH_TRANSFERS, TXCOORD_CRASH_COORDINATOR_KILLS, TXCOORD_CRASH_BANK_KILLS,
// TXCOORD_SEED (printed on failure).
#include <Poco/JSON/Parser.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/StreamCopier.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <thread>

#include "restartable.h"
#include "transfer.h"
#include "txcoord/participant/client.h"
#include "txcoord/testing/poll.h"
#include "txcoord/testing/postgres_server.h"

namespace txcoord::integration {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// GET http://127.0.0.1:port/path → body, or "" on any failure.
std::string HttpGet(int port, const std::string& path) {
  try {
    Poco::Net::HTTPClientSession session("127.0.0.1", static_cast<Poco::UInt16>(port));
    session.setTimeout(Poco::Timespan(5, 0));
    Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_GET, path,
                                   Poco::Net::HTTPMessage::HTTP_1_1);
    session.sendRequest(request);
    Poco::Net::HTTPResponse response;
    std::istream& in = session.receiveResponse(response);
    std::string body;
    Poco::StreamCopier::copyToString(in, body);
    return response.getStatus() == 200 ? body : "";
  } catch (const std::exception&) {
    return "";
  }
}

struct BankState {
  int64_t total = 0;
  int64_t held = 0;
  // gtid -> branch ids applied, once per ledger entry: the ledger has no key, so an entry
  // applied twice shows here twice.
  std::map<std::string, std::multiset<std::string>> ledger;
};

BankState ReadBank(int port) {
  BankState state;
  const std::string body = HttpGet(port, "/app/balances?ledger=1");
  if (body.empty()) {
    state.total = -1;
    return state;
  }
  Poco::JSON::Parser parser;
  auto root = parser.parse(body).extract<Poco::JSON::Object::Ptr>();
  state.total = root->getValue<int64_t>("total");
  state.held = root->getValue<int64_t>("held");
  auto ledger = root->getArray("ledger");
  for (size_t i = 0; i < ledger->size(); ++i) {
    auto entry = ledger->getObject(static_cast<unsigned>(i));
    state.ledger[entry->getValue<std::string>("gtid")].insert(
        entry->getValue<std::string>("branch_id"));
  }
  return state;
}

class BankCrashTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    seed_ = SeedFromEnv();
    std::cout << "seed " << seed_ << " (TXCOORD_SEED to replay)" << std::endl;
    dir_ = std::filesystem::temp_directory_path() /
           ("txcoord-bank-crash-" + std::to_string(getpid()) + "-" + GetParam());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto db = testing::SharedPostgres().CreateDatabase("bank_c_" + GetParam().substr(0, 3));
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    pg_conninfo_ = testing::SharedPostgres().ConnInfo(*db);

    coordinator_port_ = FreePortBelowEphemeralRange();
    const std::string coordinator_url = "http://127.0.0.1:" + std::to_string(coordinator_port_);
    coordinator_ = std::make_unique<Restartable>(
        "txcoord", TXCOORD_BIN,
        std::vector<std::string>{"--listen", "127.0.0.1:" + std::to_string(coordinator_port_),
                                 "--store", "sqlite://" + (dir_ / "txcoord.db").string()},
        dir_.string());
    const std::string accounts = "x0=1000,x1=1000,x2=1000,x3=1000";
    for (const char* name : {"a", "b", "c"}) {
      const int port = FreePortBelowEphemeralRange();
      std::vector<std::string> args = {
          "--name", name, "--listen", "127.0.0.1:" + std::to_string(port), "--accounts", accounts,
          "--coordinator", coordinator_url,
          // Short 3pc timeouts, so that the participants' own timers fire while the coordinator
          // is down or slow (dozens of times per run): with the termination query required (the
          // bank's default) they ask, wait while it cannot be asked, act on its answer, and must
          // never split an outcome.
          "--3pc-timeout-ms", "300"};
      if (std::string(name) == "c") {
        args.insert(args.end(), {"--postgres", pg_conninfo_});
      } else {
        args.insert(args.end(), {"--sqlite", (dir_ / (std::string(name) + ".db")).string()});
      }
      bank_ports_.push_back(port);
      banks_.push_back(std::make_unique<Restartable>(std::string("bank-") + name, BANK_BIN,
                                                     std::move(args), dir_.string()));
    }
    coordinator_->Start();
    for (auto& bank : banks_) bank->Start();
  }

  void TearDown() override {
    if (coordinator_) coordinator_->Kill();
    for (auto& bank : banks_) bank->Kill();
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  int64_t TotalBalance() {
    int64_t total = 0;
    for (int port : bank_ports_) {
      const BankState s = ReadBank(port);
      if (s.total < 0) return -1;
      total += s.total;
    }
    return total;
  }

  uint64_t seed_ = 0;
  std::filesystem::path dir_;
  std::string pg_conninfo_;
  int coordinator_port_ = 0;
  std::vector<int> bank_ports_;
  std::unique_ptr<Restartable> coordinator_;
  std::vector<std::unique_ptr<Restartable>> banks_;
};

TEST_P(BankCrashTest, MoneyIsConservedAndEveryTransferIsAllOrNothing) {
  const std::string protocol = GetParam();
  const int transfers = EnvInt("TXCOORD_CRASH_TRANSFERS", 300);
  const int coordinator_kills = EnvInt("TXCOORD_CRASH_COORDINATOR_KILLS", 30);
  const int bank_kills = EnvInt("TXCOORD_CRASH_BANK_KILLS", 10);
  constexpr int kClients = 24;
  const int64_t initial_total = TotalBalance();
  ASSERT_EQ(initial_total, 3 * 4 * 1000);

  // The transfers, drawn from the seed.
  std::mt19937_64 rng(seed_);
  std::vector<examples::bank::Transfer> plan;
  for (int i = 0; i < transfers; ++i) {
    const int from = static_cast<int>(rng() % 3);
    const int to = (from + 1 + static_cast<int>(rng() % 2)) % 3;
    examples::bank::Transfer t;
    t.protocol = protocol;
    t.gtid = protocol + "-" + std::to_string(i);
    t.from_bank = "http://127.0.0.1:" + std::to_string(bank_ports_[from]);
    t.to_bank = "http://127.0.0.1:" + std::to_string(bank_ports_[to]);
    t.from_account = "x" + std::to_string(rng() % 4);
    t.to_account = "x" + std::to_string(rng() % 4);
    t.amount = 1 + static_cast<int64_t>(rng() % 600);  // some exceed what is left: aborts
    t.timeout_ms = 4000;
    plan.push_back(t);
  }

  std::atomic<int> next{0};
  std::mutex results_mu;
  std::map<std::string, std::string> seen;  // gtid -> the state the client saw
  std::vector<std::string> errors;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      participant::CoordinatorClientOptions options;
      options.url = "http://127.0.0.1:" + std::to_string(coordinator_port_);
      options.timeout = seconds(15);
      auto client = participant::CoordinatorClient::Create(options);
      if (!client.ok()) {
        std::lock_guard lock(results_mu);
        errors.push_back(client.status().ToString());
        return;
      }
      for (int i; (i = next++) < transfers;) {
        auto result = examples::bank::RunTransfer(**client, plan[i], seconds(120));
        std::lock_guard lock(results_mu);
        if (result.ok()) {
          seen[plan[i].gtid] = result->state;
        } else {
          errors.push_back(plan[i].gtid + ": " + result.status().ToString());
        }
      }
    });
  }

  // The killer, on this thread: TxcoordProcess gives its children PR_SET_PDEATHSIG, which the
  // kernel fires when the forking *thread* exits, so restarts must come from a thread that
  // outlives them. Random pauses, the coordinator more often than the banks, until both counts
  // are reached and every transfer has started.
  {
    std::mt19937_64 krng(seed_ ^ 0x9e3779b97f4a7c15ULL);
    int killed_coordinator = 0, killed_banks = 0;
    while (killed_coordinator < coordinator_kills || killed_banks < bank_kills ||
           (next < transfers && killed_coordinator < coordinator_kills * 4)) {
      std::this_thread::sleep_for(milliseconds(50 + krng() % 400));
      if (killed_banks >= bank_kills || krng() % 4 != 0) {
        coordinator_->Kill();
        coordinator_->Start();
        ++killed_coordinator;
      } else {
        auto& bank = banks_[krng() % banks_.size()];
        bank->Kill();
        bank->Start();
        ++killed_banks;
      }
      if (HasFatalFailure()) break;
    }
    std::cout << "killed the coordinator " << killed_coordinator << " times and banks "
              << killed_banks << " times" << std::endl;
  }
  const auto last_restart = std::chrono::steady_clock::now();
  for (auto& t : clients) t.join();
  ASSERT_TRUE(errors.empty()) << errors.size() << " transfers failed, first: " << errors.front();

  // Every transaction terminal within 30 s of the last restart, and as the client saw it.
  participant::CoordinatorClientOptions options;
  options.url = "http://127.0.0.1:" + std::to_string(coordinator_port_);
  auto client = participant::CoordinatorClient::Create(options);
  ASSERT_TRUE(client.ok());
  std::map<std::string, std::string> final_state;
  std::string last_seen;  // why the last transaction checked was not terminal
  const bool all_terminal = testing::PollUntil(
      std::chrono::duration_cast<milliseconds>(seconds(30) -
                                               (std::chrono::steady_clock::now() - last_restart)),
      milliseconds(200), [&] {
        for (const auto& t : plan) {
          if (final_state.count(t.gtid) != 0) continue;
          auto tx = (*client)->Get(t.gtid);
          if (tx.ok() && (tx->state() == "committed" || tx->state() == "aborted")) {
            final_state[t.gtid] = tx->state();
          } else {
            last_seen = t.gtid + ": " + (tx.ok() ? tx->state() : tx.status().ToString());
          }
        }
        return final_state.size() == plan.size();
      });
  ASSERT_TRUE(all_terminal) << final_state.size() << " of " << plan.size()
                            << " terminal 30 s after the last restart; " << last_seen;
  int committed = 0;
  for (const auto& t : plan) {
    EXPECT_EQ(seen[t.gtid], final_state[t.gtid]) << t.gtid;
    committed += final_state[t.gtid] == "committed";
  }
  std::cout << committed << " committed, " << plan.size() - committed << " aborted" << std::endl;
  EXPECT_GT(committed, 0);
  EXPECT_LT(committed, static_cast<int>(plan.size()));

  // The banks settle: holds resolved, prepared transactions resolved.
  std::string left;
  ASSERT_TRUE(testing::PollUntil(
      seconds(30), milliseconds(200),
      [&] {
        left.clear();
        for (size_t i = 0; i < bank_ports_.size(); ++i) {
          const BankState s = ReadBank(bank_ports_[i]);
          if (s.total < 0) {
            left += " bank " + std::to_string(i) + " unreachable;";
          } else if (s.held != 0) {
            left += " bank " + std::to_string(i) + " holds " + std::to_string(s.held) + ";";
          }
        }
        pqxx::connection conn(pg_conninfo_);
        pqxx::nontransaction tx(conn);
        for (const auto& row :
             tx.exec("SELECT gid FROM pg_prepared_xacts WHERE database = current_database()")) {
          left += " prepared " + row[0].as<std::string>() + ";";
        }
        return left.empty();
      }))
      << "left behind:" << left;

  EXPECT_EQ(TotalBalance(), initial_total) << "money was created or destroyed";
  std::map<std::string, std::multiset<std::string>> applied;  // gtid -> branches, all banks
  for (int port : bank_ports_) {
    for (const auto& [gtid, branches] : ReadBank(port).ledger) {
      for (const auto& b : branches) applied[gtid].insert(b);
    }
  }
  for (const auto& t : plan) {
    const auto& branches = applied[t.gtid];
    if (final_state[t.gtid] == "committed") {
      EXPECT_EQ(branches, (std::multiset<std::string>{"credit", "debit"}))
          << t.gtid << " committed but not applied at both banks";
    } else {
      EXPECT_TRUE(branches.empty()) << t.gtid << " aborted but applied at a bank";
    }
  }

  coordinator_->Stop();
  for (auto& bank : banks_) bank->Stop();
}

INSTANTIATE_TEST_SUITE_P(Protocols, BankCrashTest, ::testing::Values("2pc", "3pc", "tcc"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace txcoord::integration
