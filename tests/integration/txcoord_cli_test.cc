// The txcoord executable as a user meets it: flags, config file, /healthz, errors, signals.
//
// Each test starts the real binary (TXCOORD_BIN) with `--listen 127.0.0.1:0` and reads the port
// from its "txcoord listening on" line, so tests never race for a port. Waits are bounded polls,
// never fixed sleeps. TxcoordOnPostgresTest runs against a real PostgreSQL from the test rig, one
// server per test, since the tests stop or freeze it.
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/StreamCopier.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "txcoord/schemas/json.h"
#include "txcoord/testing/poll.h"
#include "txcoord/testing/postgres_server.h"
#include "txcoord/v1/api.pb.h"
#include "txcoord_process.h"

namespace txcoord::integration {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr milliseconds kStartTimeout = seconds(10);
constexpr milliseconds kExitTimeout = seconds(10);

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

struct HttpReply {
  int status = 0;
  std::string content_type;
  std::string allow;
  std::string body;
};

HttpReply Exchange(Poco::Net::HTTPClientSession& session, const std::string& method,
                   const std::string& path, const std::string& body = "",
                   const std::string& accept = "") {
  Poco::Net::HTTPRequest request(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
  if (!accept.empty()) request.set("Accept", accept);
  if (!body.empty()) {
    request.setContentType("application/json");
    request.setContentLength64(static_cast<Poco::Int64>(body.size()));
  }
  session.sendRequest(request) << body;
  Poco::Net::HTTPResponse response;
  std::istream& in = session.receiveResponse(response);
  HttpReply reply;
  reply.status = response.getStatus();
  reply.content_type = response.getContentType();
  reply.allow = response.get("Allow", "");
  Poco::StreamCopier::copyToString(in, reply.body);
  return reply;
}

HttpReply Http(int port, const std::string& method, const std::string& path,
               const std::string& body = "", const std::string& accept = "") {
  Poco::Net::HTTPClientSession session("127.0.0.1", static_cast<Poco::UInt16>(port));
  session.setTimeout(Poco::Timespan(5, 0));
  return Exchange(session, method, path, body, accept);
}

// The contract's error body, parsed strictly: an extra or misspelled field fails the parse.
v1::ErrorReply ParseError(const HttpReply& reply) {
  v1::ErrorReply error;
  const Status status = JsonToMessage(reply.body, &error);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\nbody: " << reply.body;
  return error;
}

std::string JsonField(const std::string& json, const std::string& field) {
  google::protobuf::Struct object;
  if (!google::protobuf::util::JsonStringToMessage(json, &object).ok()) return "<not JSON>";
  auto it = object.fields().find(field);
  return it == object.fields().end() ? "<absent>" : it->second.string_value();
}

bool PollUntil(milliseconds timeout, const std::function<bool()>& done) {
  return testing::PollUntil(timeout, milliseconds(5), done);
}

// True when some established TCP connection to local `port` holds bytes its owner has not read
// (/proc/net/tcp: "sl local rem st tx_queue:rx_queue ...", addresses and queues in hex).
bool UnreadBytesOnPort(int port) {
  std::ifstream table("/proc/net/tcp");
  std::string line;
  std::getline(table, line);  // header
  while (std::getline(table, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state, queues;
    fields >> slot >> local >> remote >> state >> queues;
    const int local_port = std::stoi(local.substr(local.find(':') + 1), nullptr, 16);
    const unsigned long rx_queue = std::stoul(queues.substr(queues.find(':') + 1), nullptr, 16);
    if (local_port == port && state == "01" && rx_queue > 0) return true;
  }
  return false;
}

// The pids whose parent is `parent`, from /proc/PID/stat ("pid (comm) state ppid ...").
std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> children;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat_file(entry.path() / "stat");
    std::string stat;
    std::getline(stat_file, stat);
    const size_t comm_end = stat.rfind(')');
    if (comm_end == std::string::npos) continue;
    std::istringstream rest(stat.substr(comm_end + 1));
    std::string state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent) children.push_back(std::stoi(name));
  }
  return children;
}

// Stops a PostgreSQL server, the postmaster first (so it starts no one) and then its children
// (each backend is in a session of its own, so there is no group to signal), until Thaw or
// destruction: queries on open connections then hang without failing.
class FrozenPostgres {
 public:
  explicit FrozenPostgres(pid_t postmaster) {
    if (postmaster <= 0) return;
    kill(postmaster, SIGSTOP);
    pids_ = ChildrenOf(postmaster);
    for (const pid_t pid : pids_) kill(pid, SIGSTOP);
    pids_.push_back(postmaster);
  }
  ~FrozenPostgres() { Thaw(); }
  bool frozen() const { return !pids_.empty(); }
  void Thaw() {
    for (const pid_t pid : pids_) kill(pid, SIGCONT);
    pids_.clear();
  }

 private:
  std::vector<pid_t> pids_;
};

class TxcoordCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "txcoord_cli_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  std::string StoreFlag(const std::string& name = "txcoord.db") const {
    return "--store=sqlite://" + Path(name);
  }

  std::unique_ptr<TxcoordProcess> Start(const std::vector<std::string>& args) {
    return std::make_unique<TxcoordProcess>(TXCOORD_BIN, args,
                                            Path("stderr-" + std::to_string(++started_)));
  }

  // Starts txcoord and waits for its listening line; the port, or a test failure quoting
  // what the process said.
  std::optional<int> StartServing(std::unique_ptr<TxcoordProcess>& process,
                                  const std::vector<std::string>& args) {
    process = Start(args);
    std::optional<int> port = process->WaitForListening(kStartTimeout);
    if (!port.has_value()) {
      ADD_FAILURE() << "txcoord did not report listening; stderr:\n" << process->Stderr();
    }
    return port;
  }

  struct Finished {
    std::optional<int> exit_code;
    std::string out;
    std::string err;
  };

  // Runs txcoord expecting it to exit by itself.
  Finished Run(const std::vector<std::string>& args) {
    auto process = Start(args);
    Finished result;
    result.exit_code = process->WaitForExit(kExitTimeout);
    result.out = process->Stdout();
    result.err = process->Stderr();
    return result;
  }

  // Sends `signal` and expects a clean exit (code 0) within the timeout.
  void ExpectCleanStop(TxcoordProcess& process, int signal) {
    process.Signal(signal);
    const std::optional<int> code = process.WaitForExit(kExitTimeout);
    ASSERT_TRUE(code.has_value()) << "still running " << kExitTimeout.count() << " ms after "
                                  << signal;
    EXPECT_EQ(*code, 0) << "stderr:\n" << process.Stderr();
  }

  std::string dir_;
  int started_ = 0;
};

TEST_F(TxcoordCliTest, ServesHealthzAndStopsCleanlyOnSigterm) {
  std::unique_ptr<TxcoordProcess> txcoord;
  auto port = StartServing(txcoord, {"--listen", "127.0.0.1:0", StoreFlag()});
  ASSERT_TRUE(port.has_value());

  const HttpReply health = Http(*port, "GET", "/healthz");
  EXPECT_EQ(health.status, 200) << health.body;
  EXPECT_EQ(health.content_type, "application/json");
  EXPECT_EQ(JsonField(health.body, "status"), "ok") << health.body;

  ExpectCleanStop(*txcoord, SIGTERM);
  EXPECT_TRUE(std::filesystem::exists(Path("txcoord.db")));
  const std::string log = txcoord->Stderr();
  EXPECT_NE(log.find("serving on 127.0.0.1:" + std::to_string(*port)), std::string::npos) << log;
  EXPECT_NE(log.find("stopped"), std::string::npos) << log;
}

TEST_F(TxcoordCliTest, StopsCleanlyOnSigint) {
  std::unique_ptr<TxcoordProcess> txcoord;
  ASSERT_TRUE(StartServing(txcoord, {"--listen=127.0.0.1:0", StoreFlag()}).has_value());
  ExpectCleanStop(*txcoord, SIGINT);
}

TEST_F(TxcoordCliTest, UnknownPathIsNotFoundWithTheContractErrorBody) {
  std::unique_ptr<TxcoordProcess> txcoord;
  auto port = StartServing(txcoord, {"--listen", "127.0.0.1:0", StoreFlag()});
  ASSERT_TRUE(port.has_value());

  for (const std::string path : {"/nope", "/healthz/", "/v2/transactions?limit=1", "/v1"}) {
    const HttpReply reply = Http(*port, "GET", path);
    EXPECT_EQ(reply.status, 404) << path;
    EXPECT_EQ(reply.content_type, "application/json") << path;
    const v1::ErrorReply error = ParseError(reply);
    EXPECT_EQ(error.error().code(), "NOT_FOUND") << path;
    EXPECT_FALSE(error.error().message().empty()) << path;
  }
}

TEST_F(TxcoordCliTest, WrongMethodOnHealthzIs405AndTheConnectionStaysUsable) {
  std::unique_ptr<TxcoordProcess> txcoord;
  auto port = StartServing(txcoord, {"--listen", "127.0.0.1:0", StoreFlag()});
  ASSERT_TRUE(port.has_value());

  Poco::Net::HTTPClientSession session("127.0.0.1", static_cast<Poco::UInt16>(*port));
  session.setKeepAlive(true);
  session.setTimeout(Poco::Timespan(5, 0));
  // A body the server does not read: it must skip it, or the next request on this connection
  // would be parsed from the middle of it.
  const HttpReply wrong = Exchange(session, "POST", "/healthz", R"({"please":"ignore me"})");
  EXPECT_EQ(wrong.status, 405);
  EXPECT_EQ(wrong.allow, "GET, HEAD");
  const v1::ErrorReply error = ParseError(wrong);
  EXPECT_EQ(error.error().code(), "INVALID_ARGUMENT");
  EXPECT_NE(error.error().message().find("GET"), std::string::npos) << error.error().message();

  const auto local_port = session.socket().address().port();
  const HttpReply health = Exchange(session, "GET", "/healthz");
  EXPECT_EQ(health.status, 200) << health.body;
  // The same connection served both: Poco's session reconnects silently, from a new port.
  EXPECT_EQ(session.socket().address().port(), local_port);
}

TEST_F(TxcoordCliTest, ErrorReplyIsBinaryProtobufWhenAccepted) {
  std::unique_ptr<TxcoordProcess> txcoord;
  auto port = StartServing(txcoord, {"--listen", "127.0.0.1:0", StoreFlag()});
  ASSERT_TRUE(port.has_value());

  const HttpReply reply = Http(*port, "GET", "/nope", "", "application/x-protobuf");
  EXPECT_EQ(reply.status, 404);
  EXPECT_EQ(reply.content_type, "application/x-protobuf");
  v1::ErrorReply error;
  ASSERT_TRUE(error.ParseFromString(reply.body));
  EXPECT_EQ(error.error().code(), "NOT_FOUND");
}

TEST_F(TxcoordCliTest, HelpListsEveryFlagAndExitsZero) {
  const Finished run = Run({"--help"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  for (const char* flag :
       {"--listen", "--store", "--config", "--allow-url", "--token-file", "--callback-secret-file",
        "--log-format", "--max-threads", "--max-queued", "--max-in-flight", "--max-body-bytes",
        "--max-live-transactions", "--default-timeout-ms", "--callback-timeout-ms",
        "--retry-initial-ms", "--retry-max-ms", "--recovery-interval-ms", "--one-phase"}) {
    EXPECT_NE(run.out.find(flag), std::string::npos) << flag << " missing from:\n" << run.out;
  }
  EXPECT_EQ(run.err, "");
}

// Each bad command line: a non-zero exit, and exactly one line on stderr that names the
// culprit.
struct BadCommandLine {
  std::string name;  // the test's name suffix
  std::vector<std::string> args;
  std::string mentions;
};

void PrintTo(const BadCommandLine& bad, std::ostream* out) {
  for (const std::string& arg : bad.args) *out << arg << ' ';
}

class TxcoordBadCommandLineTest : public TxcoordCliTest,
                                  public ::testing::WithParamInterface<BadCommandLine> {};

TEST_P(TxcoordBadCommandLineTest, ExitsTwoWithOneLine) {
  const Finished run = Run(GetParam().args);
  ASSERT_TRUE(run.exit_code.has_value()) << "txcoord kept running";
  EXPECT_EQ(*run.exit_code, 2);
  const auto lines = Lines(run.err);
  ASSERT_EQ(lines.size(), 1u) << run.err;
  EXPECT_NE(lines[0].find(GetParam().mentions), std::string::npos) << lines[0];
  EXPECT_EQ(run.out.find("listening"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Flags, TxcoordBadCommandLineTest,
    ::testing::Values(
        BadCommandLine{"UnknownFlag", {"--bogus"}, "--bogus"},
        BadCommandLine{"MissingValue", {"--listen"}, "--listen"},
        BadCommandLine{"FlagAsValue", {"--store", "--listen", "127.0.0.1:0"}, "--store"},
        BadCommandLine{"ListenWithoutPort", {"--listen", "nonsense"}, "nonsense"},
        BadCommandLine{"PortOutOfRange", {"--listen", "127.0.0.1:70000"}, "127.0.0.1:70000"},
        BadCommandLine{"UnknownStoreScheme", {"--store", "mysql://db"}, "mysql://db"},
        BadCommandLine{"UnknownLogFormat", {"--log-format", "xml"}, "xml"},
        BadCommandLine{"OnePhaseNeitherOnNorOff", {"--one-phase", "maybe"}, "maybe"},
        BadCommandLine{"StrayArgument", {"--listen=127.0.0.1:0", "stray"}, "stray"},
        BadCommandLine{"MissingTokenFile", {"--token-file", "/nonexistent/tokens"}, "/nonexistent"},
        BadCommandLine{"ZeroInFlight", {"--max-in-flight", "0"}, "--max-in-flight"},
        BadCommandLine{"TinyBodyLimit", {"--max-body-bytes", "10"}, "--max-body-bytes"},
        BadCommandLine{"BackoffCapBelowStart",
                       {"--retry-initial-ms", "500", "--retry-max-ms", "100"},
                       "--retry-max-ms"},
        BadCommandLine{"RelativeAllowUrl", {"--allow-url", "127.0.0.1:"}, "127.0.0.1:"}),
    [](const ::testing::TestParamInfo<BadCommandLine>& info) { return info.param.name; });

TEST_F(TxcoordCliTest, DamagedStoreExitsOneWithOneLineNamingIt) {
  std::ofstream(Path("garbage.db")) << "not a database, just some text that is long enough";
  const Finished run = Run({"--listen", "127.0.0.1:0", StoreFlag("garbage.db")});
  ASSERT_TRUE(run.exit_code.has_value()) << "txcoord kept running";
  EXPECT_EQ(*run.exit_code, 1);
  const auto lines = Lines(run.err);
  ASSERT_EQ(lines.size(), 1u) << run.err;
  EXPECT_NE(lines[0].find(Path("garbage.db")), std::string::npos) << lines[0];
  EXPECT_EQ(run.out, "");
}

TEST_F(TxcoordCliTest, UnreachablePostgresExitsOneWithoutShowingThePassword) {
  // Port 1 on loopback refuses at once.
  const Finished run =
      Run({"--listen", "127.0.0.1:0", "--store", "postgresql://app:hunter2@127.0.0.1:1/coord"});
  ASSERT_TRUE(run.exit_code.has_value()) << "txcoord kept running";
  EXPECT_EQ(*run.exit_code, 1);
  const auto lines = Lines(run.err);
  ASSERT_EQ(lines.size(), 1u) << run.err;
  EXPECT_EQ(run.err.find("hunter2"), std::string::npos) << run.err;
}

TEST_F(TxcoordCliTest, PortInUseExitsOneWithOneLine) {
  Poco::Net::ServerSocket taken(Poco::Net::SocketAddress("127.0.0.1", 0));  // binds and listens
  const std::string address = "127.0.0.1:" + std::to_string(taken.address().port());
  const Finished run = Run({"--listen", address, StoreFlag()});
  ASSERT_TRUE(run.exit_code.has_value()) << "txcoord kept running";
  EXPECT_EQ(*run.exit_code, 1);
  const auto lines = Lines(run.err);
  ASSERT_EQ(lines.size(), 1u) << run.err;
  EXPECT_NE(lines[0].find(address), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("in use"), std::string::npos) << lines[0];
}

TEST_F(TxcoordCliTest, SecondProcessOnTheSameStoreExitsOne) {
  std::unique_ptr<TxcoordProcess> first;
  ASSERT_TRUE(StartServing(first, {"--listen", "127.0.0.1:0", StoreFlag()}).has_value());
  const Finished second = Run({"--listen", "127.0.0.1:0", StoreFlag()});
  ASSERT_TRUE(second.exit_code.has_value()) << "second txcoord kept running";
  EXPECT_EQ(*second.exit_code, 1);
  EXPECT_EQ(Lines(second.err).size(), 1u) << second.err;
  ExpectCleanStop(*first, SIGTERM);
}

TEST_F(TxcoordCliTest, ConfigFileSetsListenAndStore) {
  std::ofstream(Path("txcoord.properties")) << "# comments are allowed\n"
                                            << "listen = 127.0.0.1:0\n"
                                            << "store = sqlite://" << Path("from-config.db") << "\n"
                                            << "log-format = json\n";
  std::unique_ptr<TxcoordProcess> txcoord;
  auto port = StartServing(txcoord, {"--config", Path("txcoord.properties")});
  ASSERT_TRUE(port.has_value());
  EXPECT_EQ(Http(*port, "GET", "/healthz").status, 200);
  ExpectCleanStop(*txcoord, SIGTERM);
  // The store named in the file was the one opened, and the log lines were JSON.
  EXPECT_TRUE(std::filesystem::exists(Path("from-config.db")));
  for (const std::string& line : Lines(txcoord->Stderr())) {
    EXPECT_EQ(JsonField(line, "level"), "info") << line;
  }
}

TEST_F(TxcoordCliTest, FlagsOverrideTheConfigFile) {
  // Unusable on its own: only the flag makes this start.
  std::ofstream(Path("txcoord.ini")) << "listen = not-an-address\n"
                                     << "store = sqlite://" << Path("from-ini.db") << "\n";
  std::unique_ptr<TxcoordProcess> txcoord;
  auto port = StartServing(txcoord, {"--config", Path("txcoord.ini"), "--listen", "127.0.0.1:0"});
  ASSERT_TRUE(port.has_value());
  EXPECT_EQ(Http(*port, "GET", "/healthz").status, 200);
  ExpectCleanStop(*txcoord, SIGTERM);
  EXPECT_TRUE(std::filesystem::exists(Path("from-ini.db")));
}

TEST_F(TxcoordCliTest, UnknownConfigKeyExitsTwoWithOneLine) {
  std::ofstream(Path("typo.properties")) << "lisen = 127.0.0.1:0\n";
  const Finished run = Run({"--config", Path("typo.properties"), StoreFlag()});
  ASSERT_TRUE(run.exit_code.has_value());
  EXPECT_EQ(*run.exit_code, 2);
  const auto lines = Lines(run.err);
  ASSERT_EQ(lines.size(), 1u) << run.err;
  EXPECT_NE(lines[0].find("lisen"), std::string::npos) << lines[0];
}

// txcoord on a PostgreSQL server of its own, which the test may stop or freeze.
class TxcoordOnPostgresTest : public TxcoordCliTest {
 protected:
  void SetUp() override {
    TxcoordCliTest::SetUp();
    auto postgres = txcoord::testing::PostgresServer::Start();
    ASSERT_TRUE(postgres.ok()) << postgres.status().ToString();
    postgres_ = std::move(postgres).value();
    auto db = postgres_->CreateDatabase("txcoord_cli");
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    // The rig's server trusts loopback and ignores the password, which txcoord must still keep
    // out of its log.
    uri_ = postgres_->Uri(*db);
    const std::string user = postgres_->user();
    uri_.replace(uri_.find(user + "@"), user.size() + 1, user + ":" + kPassword + "@");
    auto port = StartServing(txcoord_, {"--listen", "127.0.0.1:0", "--store", uri_});
    ASSERT_TRUE(port.has_value());
    port_ = *port;
    // Also leaves a pooled store connection, which the next /healthz reuses.
    ASSERT_EQ(Http(port_, "GET", "/healthz").status, 200);
  }

  // Freezes the server and starts a /healthz that hangs on it; returns once txcoord is
  // handling it, which is when its query sits unread at the frozen server.
  std::future<HttpReply> StartHangingRequest(FrozenPostgres& frozen) {
    EXPECT_TRUE(frozen.frozen());
    auto reply = std::async(std::launch::async, [this] { return Http(port_, "GET", "/healthz"); });
    EXPECT_TRUE(PollUntil(kStartTimeout, [this] { return UnreadBytesOnPort(postgres_->port()); }));
    return reply;
  }

  static constexpr const char* kPassword = "hunter2";
  std::unique_ptr<txcoord::testing::PostgresServer> postgres_;
  std::string uri_;
  std::unique_ptr<TxcoordProcess> txcoord_;
  int port_ = 0;
};

TEST_F(TxcoordOnPostgresTest, HealthzFollowsTheStoreAndTheLogHidesThePassword) {
  ASSERT_TRUE(postgres_->Stop(/*immediate=*/false).ok());
  const HttpReply down = Http(port_, "GET", "/healthz");
  EXPECT_EQ(down.status, 503) << down.body;
  EXPECT_EQ(ParseError(down).error().code(), "UNAVAILABLE");

  ASSERT_TRUE(postgres_->StartAgain().ok());
  EXPECT_EQ(Http(port_, "GET", "/healthz").status, 200);

  ExpectCleanStop(*txcoord_, SIGTERM);
  const std::string log = txcoord_->Stderr();
  EXPECT_EQ(log.find(kPassword), std::string::npos) << log;
  EXPECT_NE(log.find(postgres_->user() + ":***@"), std::string::npos) << log;
}

// SIGTERM stops accepting but lets a request in progress finish and be answered.
TEST_F(TxcoordOnPostgresTest, SigtermLetsARequestInProgressFinish) {
  FrozenPostgres frozen(postgres_->pid());
  std::future<HttpReply> in_progress = StartHangingRequest(frozen);
  ASSERT_FALSE(HasFailure());

  txcoord_->Signal(SIGTERM);
  // A bounded check that it is still waiting, not a synchronizing sleep.
  EXPECT_FALSE(txcoord_->WaitForExit(milliseconds(300)).has_value())
      << "txcoord exited with a request in progress; stderr:\n"
      << txcoord_->Stderr();
  frozen.Thaw();
  try {
    EXPECT_EQ(in_progress.get().status, 200);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "the request in progress got no answer: " << e.what() << "\nstderr:\n"
                  << txcoord_->Stderr();
  }
  const std::optional<int> code = txcoord_->WaitForExit(kExitTimeout);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << txcoord_->Stderr();
}

// A second signal while a stop waits for a stuck request ends the process at once, with 1.
TEST_F(TxcoordOnPostgresTest, SecondSignalWhileStoppingExitsAtOnce) {
  FrozenPostgres frozen(postgres_->pid());
  std::future<HttpReply> stuck = StartHangingRequest(frozen);
  ASSERT_FALSE(HasFailure());

  txcoord_->Signal(SIGTERM);
  // Sent until it exits: a signal that arrives before the first was taken would merge with it.
  std::optional<int> code;
  ASSERT_TRUE(PollUntil(kExitTimeout, [&] {
    txcoord_->Signal(SIGINT);
    code = txcoord_->WaitForExit(milliseconds(50));
    return code.has_value();
  }));
  EXPECT_EQ(*code, 1);
  const auto lines = Lines(txcoord_->Stderr());
  ASSERT_FALSE(lines.empty());
  // Which of the two counts as "again" depends on whether both were pending at once.
  EXPECT_NE(lines.back().find("received again while stopping"), std::string::npos) << lines.back();
  frozen.Thaw();
  EXPECT_ANY_THROW(stuck.get());  // its connection died with the process
}

}  // namespace
}  // namespace txcoord::integration
