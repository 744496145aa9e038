// Proves the rig gives tests what they rely on: real, durable, isolated servers that can be
// crashed and restarted, and that never outlive the test process.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <pqxx/connection>
#include <pqxx/except>
#include <pqxx/nontransaction>
#include <pqxx/transaction>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "txcoord/testing/nats_server.h"
#include "txcoord/testing/poll.h"
#include "txcoord/testing/postgres_server.h"

namespace txcoord::testing {
namespace {

using std::chrono::milliseconds;
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

// True if something accepts TCP connections on 127.0.0.1:port.
bool AcceptsTcp(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  const bool connected =
      connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
  close(fd);
  return connected;
}

// The fields of /proc/<pid>/stat after the command name: state is [0], ppid is [1].
std::vector<std::string> ProcStat(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t end_of_name = text.rfind(')');
  if (end_of_name == std::string::npos) return {};
  std::istringstream rest(text.substr(end_of_name + 1));
  std::vector<std::string> fields;
  for (std::string field; rest >> field;) fields.push_back(field);
  return fields;
}

// True if `pid` no longer runs: it does not exist, or it is a zombie nobody has reaped yet
// (which happens to orphans when PID 1 of a container does not reap).
bool ProcessGone(pid_t pid) {
  if (kill(pid, 0) != 0 && errno == ESRCH) return true;
  const std::vector<std::string> stat = ProcStat(pid);
  return stat.empty() || stat[0] == "Z" || stat[0] == "X";
}

// Pids of the live processes whose working directory is `dir` or below it. Every PostgreSQL
// process chdirs into its data dir, so this finds the postmaster and all its backends and
// auxiliary processes, including orphans.
std::vector<pid_t> ProcessesWorkingIn(const std::string& dir) {
  std::vector<pid_t> found;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator("/proc", error)) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code link_error;
    const std::string cwd = fs::read_symlink(entry.path() / "cwd", link_error).string();
    if (link_error) continue;  // Gone, a zombie, or not ours to look at.
    if (cwd == dir || cwd.rfind(dir + "/", 0) == 0) found.push_back(std::stoi(name));
  }
  return found;
}

// Kills and reaps a forked child when it goes out of scope, unless told it is reaped already.
struct ChildReaper {
  pid_t pid;
  ~ChildReaper() {
    if (pid <= 0) return;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
};

std::string Show(pqxx::transaction_base& tx, const std::string& setting) {
  return tx.exec1("SHOW " + setting)[0].as<std::string>();
}

int64_t QueryInt(pqxx::transaction_base& tx, const std::string& query) {
  return tx.exec1(query)[0].as<int64_t>();
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

TEST(PostgresServerTest, EachDatabaseIsIsolated) {
  PostgresServer& server = SharedPostgres();
  EXPECT_EQ(&server, &SharedPostgres()) << "one shared server per process";

  Result<std::string> first = server.CreateDatabase("Rig Isolation");
  Result<std::string> second = server.CreateDatabase("Rig Isolation");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_NE(*first, *second);
  // The prefix becomes a lowercase identifier that needs no quoting.
  EXPECT_TRUE(std::regex_match(*first, std::regex("rig_isolation_[0-9]+_[0-9a-f]{6}"))) << *first;

  {
    pqxx::connection connection(server.ConnInfo(*first));
    pqxx::work tx(connection);
    tx.exec0("CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL)");
    tx.exec0("INSERT INTO accounts VALUES (1, 100)");
    tx.commit();
  }

  pqxx::connection in_first(server.ConnInfo(*first));
  pqxx::nontransaction first_tx(in_first);
  EXPECT_EQ(first_tx.exec1("SELECT current_database()")[0].as<std::string>(), *first);
  EXPECT_EQ(QueryInt(first_tx, "SELECT sum(balance) FROM accounts"), 100);

  // Connect to the second one through the URI form, to check that form too.
  pqxx::connection in_second(server.Uri(*second));
  pqxx::nontransaction second_tx(in_second);
  EXPECT_EQ(second_tx.exec1("SELECT current_database()")[0].as<std::string>(), *second);
  EXPECT_TRUE(second_tx.exec1("SELECT to_regclass('public.accounts') IS NULL")[0].as<bool>())
      << "a table created in " << *first << " is visible in " << *second;
}

TEST(PostgresServerTest, IsDurableAndRunsPreparedTransactions) {
  PostgresServer& server = SharedPostgres();
  Result<std::string> db = server.CreateDatabase("prepared");
  ASSERT_TRUE(db.ok()) << db.status().ToString();

  pqxx::connection connection(server.ConnInfo(*db));
  // PREPARE TRANSACTION ends the transaction itself, so it cannot go through pqxx::work's
  // commit; a nontransaction sends BEGIN ... PREPARE TRANSACTION as plain statements.
  pqxx::nontransaction tx(connection);
  EXPECT_EQ(Show(tx, "fsync"), "on");
  EXPECT_EQ(Show(tx, "synchronous_commit"), "on");
  EXPECT_EQ(Show(tx, "full_page_writes"), "on");
  EXPECT_GE(std::stoi(Show(tx, "max_prepared_transactions")), 100);
  EXPECT_GE(std::stoi(Show(tx, "max_connections")), 100);

  tx.exec0("CREATE TABLE ledger (amount int NOT NULL)");
  // Transaction ids are cluster-wide, and the server is shared: make this one unique.
  const std::string gid = tx.quote("rig-" + *db);
  tx.exec0("BEGIN");
  tx.exec0("INSERT INTO ledger VALUES (7)");
  tx.exec0("PREPARE TRANSACTION " + gid);

  // Prepared: listed as pending, its row not yet visible.
  EXPECT_EQ(QueryInt(tx, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = " + gid), 1);
  EXPECT_EQ(QueryInt(tx, "SELECT count(*) FROM ledger"), 0);

  tx.exec0("COMMIT PREPARED " + gid);
  EXPECT_EQ(QueryInt(tx, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = " + gid), 0);
  EXPECT_EQ(QueryInt(tx, "SELECT coalesce(sum(amount), 0) FROM ledger"), 7);
}

TEST(PostgresServerTest, RunsAsADirectChildUnderAnUnprivilegedAccount) {
  PostgresServer& server = SharedPostgres();
  const pid_t postmaster = server.pid();
  ASSERT_GT(postmaster, 0);
  ASSERT_TRUE(server.running());

  // Not daemonized: the postmaster is our own child, so the death signal and reaping work.
  const std::vector<std::string> proc_stat = ProcStat(postmaster);
  ASSERT_GE(proc_stat.size(), 2u);
  EXPECT_EQ(std::stoi(proc_stat[1]), getpid());

  struct stat info {};
  ASSERT_EQ(stat(("/proc/" + std::to_string(postmaster)).c_str(), &info), 0);
  if (geteuid() == 0) {
    const passwd* postgres = getpwnam("postgres");
    ASSERT_NE(postgres, nullptr);
    EXPECT_EQ(info.st_uid, postgres->pw_uid) << "as root, postgres must run as user postgres";
  } else {
    EXPECT_EQ(info.st_uid, geteuid());
  }
}

TEST(PostgresServerTest, CommittedAndPreparedWorkSurviveAnImmediateStop) {
  Result<std::unique_ptr<PostgresServer>> started = PostgresServer::Start();
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  PostgresServer& server = **started;
  Result<std::string> db = server.CreateDatabase("restart");
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  const int port = server.port();
  const pid_t first_postmaster = server.pid();

  {
    pqxx::connection connection(server.ConnInfo(*db));
    pqxx::work tx(connection);
    tx.exec0("CREATE TABLE ledger (amount int NOT NULL)");
    tx.exec0("INSERT INTO ledger VALUES (1)");
    tx.commit();
  }
  {
    pqxx::connection connection(server.ConnInfo(*db));
    pqxx::nontransaction tx(connection);
    tx.exec0("BEGIN");
    tx.exec0("INSERT INTO ledger VALUES (2)");
    tx.exec0("PREPARE TRANSACTION 'x'");
  }
  // A client that is connected when the server goes away.
  pqxx::connection bystander(server.ConnInfo(*db));

  Status stopped = server.Stop(/*immediate=*/true);
  ASSERT_TRUE(stopped.ok()) << stopped.ToString();
  EXPECT_FALSE(server.running());
  EXPECT_EQ(server.pid(), 0);
  EXPECT_TRUE(ProcessGone(first_postmaster));
  EXPECT_FALSE(AcceptsTcp(port));
  EXPECT_THROW(pqxx::connection{server.ConnInfo(*db)}, pqxx::broken_connection);
  EXPECT_THROW(
      {
        pqxx::nontransaction tx(bystander);
        tx.exec("SELECT 1");
      },
      pqxx::broken_connection);

  Status restarted = server.StartAgain();
  ASSERT_TRUE(restarted.ok()) << restarted.ToString();
  EXPECT_TRUE(server.running());
  EXPECT_EQ(server.port(), port);
  EXPECT_NE(server.pid(), first_postmaster);
  EXPECT_EQ(server.StartAgain().code(), StatusCode::kConflict) << "it is running already";

  {
    std::ifstream log(server.log_path());
    const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    EXPECT_NE(text.find("automatic recovery in progress"), std::string::npos)
        << "an immediate stop must look like a crash: the restart runs WAL recovery";
  }

  pqxx::connection connection(server.ConnInfo(*db));
  pqxx::nontransaction tx(connection);
  EXPECT_EQ(QueryInt(tx, "SELECT coalesce(sum(amount), 0) FROM ledger"), 1);
  EXPECT_EQ(QueryInt(tx, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'x'"), 1)
      << "a prepared transaction must survive the crash";
  tx.exec0("COMMIT PREPARED 'x'");
  EXPECT_EQ(QueryInt(tx, "SELECT coalesce(sum(amount), 0) FROM ledger"), 3);
}

TEST(PostgresServerTest, AFastStopAndStartAgainKeepTheData) {
  Result<std::unique_ptr<PostgresServer>> started = PostgresServer::Start();
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  PostgresServer& server = **started;
  Result<std::string> db = server.CreateDatabase("fast_stop");
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  {
    pqxx::connection connection(server.ConnInfo(*db));
    pqxx::work tx(connection);
    tx.exec0("CREATE TABLE t AS SELECT 42 AS v");
    tx.commit();
  }
  // Stopping twice is harmless; the second does nothing.
  ASSERT_TRUE(server.Stop(/*immediate=*/false).ok());
  ASSERT_TRUE(server.Stop(/*immediate=*/false).ok());
  EXPECT_FALSE(AcceptsTcp(server.port()));

  Status restarted = server.StartAgain();
  ASSERT_TRUE(restarted.ok()) << restarted.ToString();
  pqxx::connection connection(server.ConnInfo(*db));
  pqxx::nontransaction tx(connection);
  EXPECT_EQ(QueryInt(tx, "SELECT v FROM t"), 42);
}

TEST(PostgresServerTest, DestroyingTheServerClosesThePortAndRemovesTheDir) {
  Result<std::unique_ptr<PostgresServer>> started = PostgresServer::Start();
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  const int port = (*started)->port();
  const std::string dir = (*started)->dir();
  const pid_t postmaster = (*started)->pid();
  ASSERT_TRUE(AcceptsTcp(port));
  ASSERT_TRUE(fs::exists((*started)->data_dir() + "/PG_VERSION"));
  ASSERT_FALSE(ProcessesWorkingIn(dir).empty()) << "the /proc check below would prove nothing";

  started->reset();

  EXPECT_FALSE(AcceptsTcp(port));
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_TRUE(ProcessGone(postmaster));
  EXPECT_TRUE(ProcessesWorkingIn(dir).empty()) << "a backend outlived its server";
}

// Removes the System V shared memory segment named in `data_dir`/postmaster.pid, if no process
// is attached to it any more.
void RemoveSharedMemoryOf(const std::string& data_dir) {
  // Line 7 of postmaster.pid holds the segment's key and id.
  std::ifstream pid_file(data_dir + "/postmaster.pid");
  std::string line;
  for (int i = 0; i < 7 && std::getline(pid_file, line); ++i) {
  }
  std::istringstream fields(line);
  long key = 0;
  int shmid = -1;
  if (!(fields >> key >> shmid) || shmid < 0) return;
  shmid_ds info{};
  if (shmctl(shmid, IPC_STAT, &info) == 0 && info.shm_nattch == 0) {
    shmctl(shmid, IPC_RMID, nullptr);
  }
}

// Makes the test process the reaper of orphaned descendants while it lives (and then puts back
// what was there). Orphans then come to us instead of to PID 1, so that a test can reap them and
// see how they ended; and PID 1 of a container often reaps nothing, which would leave zombies.
class SubreaperScope {
 public:
  SubreaperScope() {
    prctl(PR_GET_CHILD_SUBREAPER, &previous_);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
  }
  ~SubreaperScope() { prctl(PR_SET_CHILD_SUBREAPER, previous_); }
  SubreaperScope(const SubreaperScope&) = delete;
  SubreaperScope& operator=(const SubreaperScope&) = delete;

 private:
  int previous_ = 0;
};

// A process that starts a server and then dies by SIGKILL (nothing of it runs any more: no
// destructor, no handler) must take the server with it. That is PR_SET_PDEATHSIG's job. The
// temp dir is left behind in that case; this test removes it.
TEST(PostgresServerTest, ServerDiesWithTheProcessThatStartedIt) {
  const SubreaperScope subreaper;
  int report_pipe[2];
  ASSERT_EQ(pipe2(report_pipe, O_CLOEXEC), 0);
  std::cout.flush();
  std::fflush(nullptr);  // Or the child would write our buffered output a second time.

  // The child may run only the rig code: the test process can have other threads (the rig's
  // launcher, the NATS client's), and the state of their locks is unknown after fork. The
  // rig's own state is fork-aware (see process.cc and cleanup_registry.h), and glibc's malloc
  // is reset for the child.
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(report_pipe[0]);
    Result<std::unique_ptr<PostgresServer>> server = PostgresServer::Start();
    const std::string report =
        server.ok() ? "ok " + std::to_string((*server)->pid()) + " " + (*server)->dir() + "\n"
                    : "error " + server.status().ToString() + "\n";
    [[maybe_unused]] const ssize_t written = write(report_pipe[1], report.data(), report.size());
    if (!server.ok()) _exit(1);
    for (;;) pause();  // Until SIGKILLed.
  }
  close(report_pipe[1]);
  ChildReaper reaper{child};  // Whatever happens below, the child does not outlive the test.

  std::string report;
  const bool got_report = PollUntil(milliseconds(60000), milliseconds(0), [&] {
    pollfd readable{report_pipe[0], POLLIN, 0};
    if (poll(&readable, 1, 100) <= 0) return false;
    char buffer[4096];
    const ssize_t n = read(report_pipe[0], buffer, sizeof(buffer));
    if (n > 0) report.append(buffer, static_cast<size_t>(n));
    return n <= 0 || report.find('\n') != std::string::npos;
  });
  close(report_pipe[0]);
  ASSERT_TRUE(got_report) << "the child did not report within 60 s";
  ASSERT_EQ(report.rfind("ok ", 0), 0u) << "the child could not start PostgreSQL: " << report;

  std::istringstream fields(report.substr(3));
  pid_t postmaster = 0;
  std::string dir;
  fields >> postmaster >> dir;
  ASSERT_GT(postmaster, 0) << report;
  ASSERT_FALSE(ProcessGone(postmaster));
  // The postmaster and its auxiliary processes (checkpointer, walwriter, ...).
  const std::vector<pid_t> server_processes = ProcessesWorkingIn(dir);
  ASSERT_NE(std::find(server_processes.begin(), server_processes.end(), postmaster),
            server_processes.end());

  ASSERT_EQ(kill(child, SIGKILL), 0);
  int child_status = 0;
  ASSERT_EQ(waitpid(child, &child_status, 0), child);
  reaper.pid = 0;
  ASSERT_TRUE(WIFSIGNALED(child_status) && WTERMSIG(child_status) == SIGKILL);

  // They are orphans now, reparented to us (the subreaper): reap each as it ends. A listed
  // process may also have been a short-lived backend (the readiness probe's, an autovacuum
  // worker) that the postmaster reaped before the kill: it is not our child (ECHILD) and no longer
  // exists, which counts as ended too.
  std::map<pid_t, int> ended;  // pid -> wait status, or -1 when reaped by someone else
  const bool all_ended = PollUntil(milliseconds(30000), milliseconds(20), [&] {
    for (const pid_t pid : server_processes) {
      if (ended.count(pid) != 0) continue;
      int wait_status = 0;
      const pid_t waited = waitpid(pid, &wait_status, WNOHANG);
      if (waited == pid) {
        ended[pid] = wait_status;
      } else if (waited < 0 && errno == ECHILD && ProcessGone(pid)) {
        ended[pid] = -1;
      }
    }
    return ended.size() == server_processes.size();
  });
  EXPECT_TRUE(all_ended) << ended.size() << " of " << server_processes.size()
                         << " server processes ended within 30 s";
  ASSERT_EQ(ended.count(postmaster), 1u);
  ASSERT_NE(ended[postmaster], -1) << "the postmaster is our orphan: we must reap it";
  EXPECT_TRUE(WIFSIGNALED(ended[postmaster]) && WTERMSIG(ended[postmaster]) == SIGKILL)
      << "the postmaster must die of its parent-death signal, SIGKILL; wait status "
      << ended[postmaster];
  EXPECT_TRUE(ProcessesWorkingIn(dir).empty()) << "a server process outlived the test process";

  // Best effort, as documented: nothing was left to remove the dir, nor the postmaster's small
  // System V shared memory segment (its interlock), which a SIGKILLed postmaster cannot remove.
  EXPECT_TRUE(fs::exists(dir));
  RemoveSharedMemoryOf(dir + "/data");
  std::error_code ignored;
  fs::remove_all(dir, ignored);
}

// ---------------------------------------------------------------------------------------------
// NATS JetStream
// ---------------------------------------------------------------------------------------------

struct NatsDeleter {
  void operator()(natsConnection* connection) const { natsConnection_Destroy(connection); }
  void operator()(jsCtx* js) const { jsCtx_Destroy(js); }
  void operator()(jsPubAck* ack) const { jsPubAck_Destroy(ack); }
  void operator()(jsStreamInfo* info) const { jsStreamInfo_Destroy(info); }
  void operator()(natsMsg* message) const { natsMsg_Destroy(message); }
};
template <typename T>
using NatsPtr = std::unique_ptr<T, NatsDeleter>;

// A connection and its JetStream context. The context goes first.
struct JetStreamClient {
  NatsPtr<natsConnection> connection;
  NatsPtr<jsCtx> js;
};

::testing::AssertionResult Connect(const std::string& url, JetStreamClient& client) {
  natsConnection* connection = nullptr;
  natsStatus status = natsConnection_ConnectTo(&connection, url.c_str());
  client.connection.reset(connection);
  if (status != NATS_OK) {
    return ::testing::AssertionFailure() << "connect " << url << ": " << natsStatus_GetText(status);
  }
  jsCtx* js = nullptr;
  status = natsConnection_JetStream(&js, connection, nullptr);
  client.js.reset(js);
  if (status != NATS_OK) {
    return ::testing::AssertionFailure() << "JetStream context: " << natsStatus_GetText(status);
  }
  return ::testing::AssertionSuccess();
}

// A file-stored stream that takes the subjects "<name>.>".
::testing::AssertionResult AddFileStream(jsCtx* js, const std::string& name) {
  const std::string subjects = name + ".>";
  const char* subject_list[] = {subjects.c_str()};
  jsStreamConfig config;
  jsStreamConfig_Init(&config);
  config.Name = name.c_str();
  config.Subjects = subject_list;
  config.SubjectsLen = 1;
  config.Storage = js_FileStorage;
  jsStreamInfo* info = nullptr;
  jsErrCode js_error = static_cast<jsErrCode>(0);
  const natsStatus status = js_AddStream(&info, js, &config, nullptr, &js_error);
  jsStreamInfo_Destroy(info);
  if (status != NATS_OK) {
    return ::testing::AssertionFailure()
           << "add stream " << name << ": " << natsStatus_GetText(status) << " (JetStream error "
           << js_error << ")";
  }
  return ::testing::AssertionSuccess();
}

// Publishes `data` to `subject`, with a Nats-Msg-Id if `msg_id` is not empty.
NatsPtr<jsPubAck> Publish(jsCtx* js, const std::string& subject, const std::string& data,
                          const std::string& msg_id = "") {
  jsPubOptions options;
  jsPubOptions_Init(&options);
  if (!msg_id.empty()) options.MsgId = msg_id.c_str();
  jsPubAck* ack = nullptr;
  jsErrCode js_error = static_cast<jsErrCode>(0);
  const natsStatus status = js_Publish(&ack, js, subject.c_str(), data.data(),
                                       static_cast<int>(data.size()), &options, &js_error);
  EXPECT_EQ(status, NATS_OK) << "publish to " << subject << ": " << natsStatus_GetText(status)
                             << " (JetStream error " << js_error << ")";
  return NatsPtr<jsPubAck>(ack);
}

uint64_t StoredMessages(jsCtx* js, const std::string& stream) {
  jsStreamInfo* info = nullptr;
  const natsStatus status = js_GetStreamInfo(&info, js, stream.c_str(), nullptr, nullptr);
  const NatsPtr<jsStreamInfo> owned(info);
  EXPECT_EQ(status, NATS_OK) << "stream info " << stream << ": " << natsStatus_GetText(status);
  return info != nullptr ? info->State.Msgs : 0;
}

TEST(NatsServerTest, UniqueStreamNamesAreValidAndDistinct) {
  const std::string first = NatsServer::UniqueStreamName("rig acks.*>");
  const std::string second = NatsServer::UniqueStreamName("rig acks.*>");
  EXPECT_NE(first, second);
  // No whitespace, '.', '*', '>' or path separators: what JetStream rejects in a stream name.
  EXPECT_TRUE(std::regex_match(first, std::regex("rig_acks____[0-9]+_[0-9]+_[0-9a-f]{6}")))
      << first;
}

TEST(NatsServerTest, JetStreamAcksPublishesAndDropsDuplicates) {
  NatsServer& nats = SharedNats();
  EXPECT_EQ(&nats, &SharedNats()) << "one shared server per process";
  EXPECT_EQ(nats.Url(), "nats://127.0.0.1:" + std::to_string(nats.port()));

  JetStreamClient client;
  ASSERT_TRUE(Connect(nats.Url(), client));
  const std::string stream = NatsServer::UniqueStreamName("rig_acks");
  ASSERT_TRUE(AddFileStream(client.js.get(), stream));
  const std::string subject = stream + ".events";

  NatsPtr<jsPubAck> first = Publish(client.js.get(), subject, "one", "msg-1");
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->Sequence, 1u);
  EXPECT_FALSE(first->Duplicate);
  EXPECT_EQ(std::string(first->Stream), stream);

  // Same Nats-Msg-Id: acknowledged again, as a duplicate of the stored message, not stored.
  NatsPtr<jsPubAck> again = Publish(client.js.get(), subject, "one, again", "msg-1");
  ASSERT_NE(again, nullptr);
  EXPECT_TRUE(again->Duplicate);
  EXPECT_EQ(again->Sequence, 1u);

  NatsPtr<jsPubAck> next = Publish(client.js.get(), subject, "two", "msg-2");
  ASSERT_NE(next, nullptr);
  EXPECT_FALSE(next->Duplicate);
  EXPECT_EQ(next->Sequence, 2u);
  EXPECT_EQ(StoredMessages(client.js.get(), stream), 2u);
}

TEST(NatsServerTest, StopAndStartAgainKeepFileStoredMessages) {
  Result<std::unique_ptr<NatsServer>> started = NatsServer::Start();
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  NatsServer& nats = **started;
  const int port = nats.port();
  const pid_t first_pid = nats.pid();
  const std::string stream = NatsServer::UniqueStreamName("rig_restart");
  {
    JetStreamClient client;
    ASSERT_TRUE(Connect(nats.Url(), client));
    ASSERT_TRUE(AddFileStream(client.js.get(), stream));
    NatsPtr<jsPubAck> ack = Publish(client.js.get(), stream + ".events", "kept");
    ASSERT_NE(ack, nullptr);
    ASSERT_EQ(ack->Sequence, 1u);
  }

  Status stopped = nats.Stop(/*immediate=*/false);
  ASSERT_TRUE(stopped.ok()) << stopped.ToString();
  EXPECT_FALSE(nats.running());
  EXPECT_TRUE(ProcessGone(first_pid));
  EXPECT_FALSE(AcceptsTcp(port));

  Status restarted = nats.StartAgain();
  ASSERT_TRUE(restarted.ok()) << restarted.ToString();
  EXPECT_EQ(nats.port(), port);
  EXPECT_NE(nats.pid(), first_pid);

  JetStreamClient client;
  ASSERT_TRUE(Connect(nats.Url(), client));
  EXPECT_EQ(StoredMessages(client.js.get(), stream), 1u);
  natsMsg* raw = nullptr;
  ASSERT_EQ(js_GetMsg(&raw, client.js.get(), stream.c_str(), 1, nullptr, nullptr), NATS_OK);
  const NatsPtr<natsMsg> message(raw);
  EXPECT_EQ(std::string(natsMsg_GetData(message.get()), natsMsg_GetDataLength(message.get())),
            "kept");
  // The stream carries on where it was.
  NatsPtr<jsPubAck> ack = Publish(client.js.get(), stream + ".events", "after");
  ASSERT_NE(ack, nullptr);
  EXPECT_EQ(ack->Sequence, 2u);

  // A crash of the server process right after the ack loses nothing either: the message was
  // written (not fsynced) before the ack. See "Durability" in nats_server.h.
  client = JetStreamClient();
  stopped = nats.Stop(/*immediate=*/true);
  ASSERT_TRUE(stopped.ok()) << stopped.ToString();
  restarted = nats.StartAgain();
  ASSERT_TRUE(restarted.ok()) << restarted.ToString();
  ASSERT_TRUE(Connect(nats.Url(), client));
  EXPECT_EQ(StoredMessages(client.js.get(), stream), 2u);
}

TEST(NatsServerTest, DestroyingTheServerClosesThePortAndRemovesTheDir) {
  Result<std::unique_ptr<NatsServer>> started = NatsServer::Start();
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  const int port = (*started)->port();
  const std::string dir = (*started)->dir();
  const pid_t pid = (*started)->pid();
  ASSERT_TRUE(AcceptsTcp(port));
  ASSERT_TRUE(fs::exists((*started)->store_dir() + "/jetstream"));

  started->reset();

  EXPECT_FALSE(AcceptsTcp(port));
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_TRUE(ProcessGone(pid));
}

}  // namespace
}  // namespace txcoord::testing
