// Tests of the power-loss VFS: the file overlay itself, then SQLite through it, in one process
// (SimulatePowerLoss) and in a child process killed with SIGKILL.
#include "txcoord/testing/powerloss_vfs.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using txcoord::testing::GetPowerLossVfsStats;
using txcoord::testing::kPowerLossVfsName;
using txcoord::testing::OpenPowerLossVfsFiles;
using txcoord::testing::PowerLossVfsStats;
using txcoord::testing::RegisterPowerLossVfs;
using txcoord::testing::ResetPowerLossVfsStats;
using txcoord::testing::SimulatePowerLoss;

constexpr const char* kDefaultVfs = nullptr;  // sqlite3_open_v2's "use the default VFS"

// The bytes of a file as they are on disk, read without SQLite.
std::string DiskContent(const std::string& path) {
  std::string content;
  if (FILE* f = std::fopen(path.c_str(), "rb"); f != nullptr) {
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) content.append(buf, n);
    std::fclose(f);
  }
  return content;
}

// A file opened straight through the power-loss VFS's xOpen, as SQLite's pager would.
class RawFile {
 public:
  explicit RawFile(const std::string& path, int type = SQLITE_OPEN_MAIN_DB)
      : vfs_(sqlite3_vfs_find(kPowerLossVfsName)),
        // The unix VFS may look for URI parameters after a main database's name.
        name_(sqlite3_create_filename(path.c_str(), "", "", 0, nullptr)),
        storage_(new std::max_align_t[vfs_->szOsFile / sizeof(std::max_align_t) + 1]) {
    open_rc_ = vfs_->xOpen(vfs_, name_, file(), type | SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                           nullptr);
  }
  RawFile(const RawFile&) = delete;
  RawFile& operator=(const RawFile&) = delete;
  ~RawFile() {
    Close();
    sqlite3_free_filename(name_);
  }

  int open_rc() const { return open_rc_; }
  int Close() {
    if (open_rc_ != SQLITE_OK || closed_) return SQLITE_OK;
    closed_ = true;
    return file()->pMethods->xClose(file());
  }
  int Write(std::string_view data, int64_t offset) {
    return file()->pMethods->xWrite(file(), data.data(), static_cast<int>(data.size()), offset);
  }
  // Reads `amount` bytes at `offset` into *out; returns SQLite's result code.
  int Read(int amount, int64_t offset, std::string* out) {
    out->assign(amount, '?');
    return file()->pMethods->xRead(file(), out->data(), amount, offset);
  }
  int64_t Size() {
    sqlite3_int64 size = -1;
    EXPECT_EQ(file()->pMethods->xFileSize(file(), &size), SQLITE_OK);
    return size;
  }
  int Truncate(int64_t size) { return file()->pMethods->xTruncate(file(), size); }
  int Sync() { return file()->pMethods->xSync(file(), SQLITE_SYNC_NORMAL); }
  int DeviceCharacteristics() { return file()->pMethods->xDeviceCharacteristics(file()); }
  int FileControl(int op, void* arg) { return file()->pMethods->xFileControl(file(), op, arg); }

 private:
  sqlite3_file* file() { return reinterpret_cast<sqlite3_file*>(storage_.get()); }

  sqlite3_vfs* vfs_;
  sqlite3_filename name_;
  std::unique_ptr<std::max_align_t[]> storage_;
  int open_rc_ = SQLITE_CANTOPEN;
  bool closed_ = false;
};

// A connection that closes itself.
class Connection {
 public:
  Connection(const std::string& path, const char* vfs) {
    const int rc =
        sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs);
    EXPECT_EQ(rc, SQLITE_OK) << path << ": " << sqlite3_errmsg(db_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() { EXPECT_EQ(Close(), SQLITE_OK); }

  sqlite3* get() { return db_; }
  int Close() {
    const int rc = sqlite3_close(db_);
    db_ = nullptr;
    return rc;
  }
  // Runs `sql` and returns SQLite's (primary) result code.
  int ExecRc(const std::string& sql) {
    return sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
  }
  ::testing::AssertionResult Exec(const std::string& sql) {
    if (ExecRc(sql) == SQLITE_OK) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << sql << ": " << sqlite3_errmsg(db_);
  }
  // The first column of the first row, as text; nullopt on error or no row.
  std::optional<std::string> QueryText(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    std::optional<std::string> result;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(stmt, 0);
      result = text == nullptr ? "" : reinterpret_cast<const char*>(text);
    } else {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
    }
    sqlite3_finalize(stmt);
    return result;
  }
  std::optional<int64_t> QueryInt(const std::string& sql) {
    const std::optional<std::string> text = QueryText(sql);
    if (!text) return std::nullopt;
    return std::strtoll(text->c_str(), nullptr, 10);
  }
  std::optional<int64_t> RowCount() { return QueryInt("SELECT count(*) FROM t"); }
  // Inserts rows first_id..last_id, one transaction each.
  ::testing::AssertionResult InsertRows(int first_id, int last_id) {
    for (int id = first_id; id <= last_id; ++id) {
      auto result =
          Exec("INSERT INTO t(id, payload) VALUES(" + std::to_string(id) + ", randomblob(300))");
      if (!result) return result;
    }
    return ::testing::AssertionSuccess();
  }

 private:
  sqlite3* db_ = nullptr;
};

// Puts a new database in WAL mode with table t, and commits rows 1..rows, durably (FULL).
::testing::AssertionResult CreateLog(Connection& db, int rows) {
  if (db.QueryText("PRAGMA journal_mode=WAL") != "wal") {
    return ::testing::AssertionFailure() << "journal_mode=WAL refused";
  }
  for (const char* sql : {"PRAGMA synchronous=FULL", "PRAGMA wal_autocheckpoint=0",
                          "CREATE TABLE t(id INTEGER PRIMARY KEY, payload BLOB)"}) {
    if (auto result = db.Exec(sql); !result) return result;
  }
  return db.InsertRows(1, rows);
}

class PowerLossVfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RegisterPowerLossVfs();
    ResetPowerLossVfsStats();
    std::string dir = ::testing::TempDir() + "powerloss_vfs_test_XXXXXX";
    ASSERT_NE(mkdtemp(dir.data()), nullptr) << std::strerror(errno);
    dir_ = dir;
    db_path_ = dir_ + "/log.db";
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Reopens the database with the plain default VFS: it sees only what reached the disk, and
  // runs SQLite's recovery on it. Returns the row count of t; checks integrity.
  std::optional<int64_t> RowsOnDisk() {
    EXPECT_EQ(OpenPowerLossVfsFiles(), 0u) << "a connection would keep the stale WAL index";
    Connection db(db_path_, kDefaultVfs);
    EXPECT_EQ(db.QueryText("PRAGMA integrity_check"), "ok");
    return db.RowCount();
  }

  std::string dir_;
  std::string db_path_;
};

// ---- The file overlay, through xOpen/xRead/xWrite directly -------------------------------

TEST_F(PowerLossVfsTest, WritesReachTheDiskOnlyAtSync) {
  RawFile file(db_path_);
  ASSERT_EQ(file.open_rc(), SQLITE_OK);
  ASSERT_EQ(file.Write("hello", 0), SQLITE_OK);
  ASSERT_EQ(file.Write("X", 10), SQLITE_OK);
  EXPECT_EQ(DiskContent(db_path_), "") << "a write reached the disk before any sync";
  EXPECT_EQ(file.Size(), 11);

  std::string got;
  EXPECT_EQ(file.Read(11, 0, &got), SQLITE_OK);
  EXPECT_EQ(got, std::string("hello\0\0\0\0\0X", 11));
  // Past the end: a short read, the missing bytes zero-filled, as the unix VFS does.
  EXPECT_EQ(file.Read(6, 8, &got), SQLITE_IOERR_SHORT_READ);
  EXPECT_EQ(got, std::string("\0\0X\0\0\0", 6));

  const PowerLossVfsStats before = GetPowerLossVfsStats();
  EXPECT_EQ(before.writes, 2u);
  EXPECT_EQ(before.bytes_written_pending, 6u);
  ASSERT_EQ(file.Sync(), SQLITE_OK);
  EXPECT_EQ(DiskContent(db_path_), std::string("hello\0\0\0\0\0X", 11));
  EXPECT_EQ(GetPowerLossVfsStats().syncs, before.syncs + 1);
  EXPECT_EQ(GetPowerLossVfsStats().syncs_wal, 0u) << "not a WAL file";
}

TEST_F(PowerLossVfsTest, LaterWritesWinAndTruncationIsPendingUntilSync) {
  RawFile file(db_path_);
  ASSERT_EQ(file.open_rc(), SQLITE_OK);
  ASSERT_EQ(file.Write("abcdefgh", 0), SQLITE_OK);
  ASSERT_EQ(file.Sync(), SQLITE_OK);

  ASSERT_EQ(file.Write("XY", 2), SQLITE_OK);
  ASSERT_EQ(file.Truncate(3), SQLITE_OK);
  EXPECT_EQ(file.Size(), 3);
  ASSERT_EQ(file.Write("Z", 5), SQLITE_OK);  // bytes 3..4 must read as zero, not "de"
  EXPECT_EQ(file.Size(), 6);
  std::string got;
  EXPECT_EQ(file.Read(8, 0, &got), SQLITE_IOERR_SHORT_READ);
  EXPECT_EQ(got, std::string("abX\0\0Z\0\0", 8));
  EXPECT_EQ(DiskContent(db_path_), "abcdefgh") << "the truncation reached the disk unsynced";

  ASSERT_EQ(file.Sync(), SQLITE_OK);
  EXPECT_EQ(DiskContent(db_path_), std::string("abX\0\0Z", 6));
}

TEST_F(PowerLossVfsTest, HandlesOfOnePathShareUnsyncedWritesUntilTheLastCloses) {
  RawFile first(db_path_);
  RawFile second(db_path_);
  ASSERT_EQ(first.open_rc(), SQLITE_OK);
  ASSERT_EQ(second.open_rc(), SQLITE_OK);
  ASSERT_EQ(first.Write("shared", 0), SQLITE_OK);
  std::string got;
  EXPECT_EQ(second.Read(6, 0, &got), SQLITE_OK);
  EXPECT_EQ(got, "shared");

  ASSERT_EQ(first.Close(), SQLITE_OK);
  EXPECT_EQ(second.Read(6, 0, &got), SQLITE_OK) << "another handle is still open";
  EXPECT_EQ(got, "shared");
  ASSERT_EQ(second.Close(), SQLITE_OK);
  EXPECT_EQ(GetPowerLossVfsStats().bytes_dropped, 6u);

  RawFile third(db_path_);
  ASSERT_EQ(third.open_rc(), SQLITE_OK);
  EXPECT_EQ(third.Size(), 0) << "the unsynced write outlived every handle of its file";
  EXPECT_EQ(DiskContent(db_path_), "");
}

TEST_F(PowerLossVfsTest, ADeletedPathReopensEmptyWhileOldHandlesKeepTheirWrites) {
  sqlite3_vfs* vfs = sqlite3_vfs_find(kPowerLossVfsName);
  RawFile old_file(db_path_);
  ASSERT_EQ(old_file.open_rc(), SQLITE_OK);
  ASSERT_EQ(old_file.Write("old", 0), SQLITE_OK);
  int exists = 0;
  ASSERT_EQ(vfs->xAccess(vfs, db_path_.c_str(), SQLITE_ACCESS_EXISTS, &exists), SQLITE_OK);
  EXPECT_EQ(exists, 1) << "xAccess must see the unsynced size, like the other calls";

  ASSERT_EQ(vfs->xDelete(vfs, db_path_.c_str(), 0), SQLITE_OK);
  ASSERT_EQ(vfs->xAccess(vfs, db_path_.c_str(), SQLITE_ACCESS_EXISTS, &exists), SQLITE_OK);
  EXPECT_EQ(exists, 0);
  RawFile new_file(db_path_);
  ASSERT_EQ(new_file.open_rc(), SQLITE_OK);
  EXPECT_EQ(new_file.Size(), 0);
  std::string got;
  EXPECT_EQ(old_file.Read(3, 0, &got), SQLITE_OK);
  EXPECT_EQ(got, "old");
}

TEST_F(PowerLossVfsTest, PowerLossDropsUnsyncedDataAndKillsOpenHandles) {
  RawFile file(db_path_);
  ASSERT_EQ(file.open_rc(), SQLITE_OK);
  ASSERT_EQ(file.Write("durable", 0), SQLITE_OK);
  ASSERT_EQ(file.Sync(), SQLITE_OK);
  ASSERT_EQ(file.Write("LOST", 0), SQLITE_OK);
  ASSERT_EQ(file.Truncate(2), SQLITE_OK);

  SimulatePowerLoss();
  EXPECT_EQ(GetPowerLossVfsStats().bytes_dropped, 4u);
  std::string got;
  EXPECT_EQ(file.Read(7, 0, &got), SQLITE_IOERR_READ);
  EXPECT_EQ(file.Write("x", 0), SQLITE_IOERR_WRITE);
  EXPECT_EQ(file.Sync(), SQLITE_IOERR_FSYNC);
  EXPECT_EQ(file.Close(), SQLITE_OK) << "a dead handle can still be closed";

  RawFile after(db_path_);
  ASSERT_EQ(after.open_rc(), SQLITE_OK);
  EXPECT_EQ(after.Read(7, 0, &got), SQLITE_OK);
  EXPECT_EQ(got, "durable");
  EXPECT_EQ(after.Write("new", 0), SQLITE_OK) << "handles opened after the power loss work";
}

TEST_F(PowerLossVfsTest, NoCapabilityLetsSqliteSkipASync) {
  RawFile file(db_path_);
  ASSERT_EQ(file.open_rc(), SQLITE_OK);
  const int caps = file.DeviceCharacteristics();
  EXPECT_EQ(caps & (SQLITE_IOCAP_ATOMIC | SQLITE_IOCAP_ATOMIC4K | SQLITE_IOCAP_SAFE_APPEND |
                    SQLITE_IOCAP_SEQUENTIAL | SQLITE_IOCAP_BATCH_ATOMIC),
            0);
}

TEST_F(PowerLossVfsTest, SizeHintsDoNotGrowTheDiskFileBehindTheOverlay) {
  RawFile file(db_path_);
  ASSERT_EQ(file.open_rc(), SQLITE_OK);
  int chunk_size = 1 << 20;
  ASSERT_EQ(file.FileControl(SQLITE_FCNTL_CHUNK_SIZE, &chunk_size), SQLITE_OK);
  sqlite3_int64 size_hint = 1 << 20;
  ASSERT_EQ(file.FileControl(SQLITE_FCNTL_SIZE_HINT, &size_hint), SQLITE_OK);
  ASSERT_EQ(file.Write("x", 0), SQLITE_OK);
  ASSERT_EQ(file.Sync(), SQLITE_OK);
  EXPECT_EQ(fs::file_size(db_path_), 1u);
  sqlite3_int64 mmap_size = 1 << 20;
  ASSERT_EQ(file.FileControl(SQLITE_FCNTL_MMAP_SIZE, &mmap_size), SQLITE_OK);
  EXPECT_EQ(mmap_size, 0) << "memory-mapped reads would bypass the overlay";
}

TEST_F(PowerLossVfsTest, RegistrationIsIdempotent) {
  sqlite3_vfs* first = sqlite3_vfs_find(kPowerLossVfsName);
  ASSERT_NE(first, nullptr);
  RegisterPowerLossVfs();
  EXPECT_EQ(sqlite3_vfs_find(kPowerLossVfsName), first);
  EXPECT_NE(sqlite3_vfs_find(nullptr), first) << "registered as the default VFS";
}

TEST_F(PowerLossVfsTest, FilesNameTheVfsTheyGoThrough) {
  Connection db(db_path_, kPowerLossVfsName);
  char* vfs_name = nullptr;
  ASSERT_EQ(sqlite3_file_control(db.get(), "main", SQLITE_FCNTL_VFSNAME, &vfs_name), SQLITE_OK);
  EXPECT_EQ(std::string(vfs_name),
            std::string(kPowerLossVfsName) + "/" + sqlite3_vfs_find(nullptr)->zName);
  sqlite3_free(vfs_name);
}

// ---- SQLite through the VFS, power loss simulated in this process ------------------------

TEST_F(PowerLossVfsTest, SynchronousOffLosesCommittedRowsAtPowerLoss) {
  {
    Connection db(db_path_, kPowerLossVfsName);
    ASSERT_TRUE(CreateLog(db, 10));
    ASSERT_TRUE(db.Exec("PRAGMA synchronous=OFF"));
    ASSERT_TRUE(db.InsertRows(11, 110));
    EXPECT_EQ(db.RowCount(), 110) << "committed rows are visible before the power loss";

    SimulatePowerLoss();
    EXPECT_GT(GetPowerLossVfsStats().bytes_dropped, 100u * 300u);
    EXPECT_EQ(db.ExecRc("SELECT count(*) FROM t") & 0xff, SQLITE_IOERR)
        << "the connection outlived the power loss";
  }
  EXPECT_EQ(RowsOnDisk(), 10) << "only the rows committed with synchronous=FULL survive";
}

TEST_F(PowerLossVfsTest, SynchronousFullKeepsEveryCommittedRowAtPowerLoss) {
  {
    Connection db(db_path_, kPowerLossVfsName);
    ASSERT_TRUE(CreateLog(db, 60));
    ASSERT_TRUE(db.Exec("PRAGMA wal_checkpoint(PASSIVE)"));  // some rows reach the db file
    ASSERT_TRUE(db.InsertRows(61, 120));
    SimulatePowerLoss();
    EXPECT_EQ(GetPowerLossVfsStats().bytes_dropped, 0u) << "FULL left a write unsynced";
  }
  EXPECT_EQ(RowsOnDisk(), 120);
}

TEST_F(PowerLossVfsTest, ConnectionsInOneProcessSeeEachOthersUnsyncedWrites) {
  {
    Connection a(db_path_, kPowerLossVfsName);
    ASSERT_TRUE(CreateLog(a, 10));
    // The baseline goes into the db file, so that the checkpoint below rewrites pages the disk
    // already has: with mmap on, a read that bypassed the overlay would see them stale.
    ASSERT_EQ(a.QueryText("PRAGMA wal_checkpoint(TRUNCATE)"), "0");
    Connection b(db_path_, kPowerLossVfsName);
    for (Connection* db : {&a, &b}) {
      ASSERT_TRUE(db->Exec("PRAGMA synchronous=OFF; PRAGMA mmap_size=268435456"));
    }
    ResetPowerLossVfsStats();

    ASSERT_TRUE(a.InsertRows(11, 60));
    EXPECT_EQ(b.RowCount(), 60);
    ASSERT_TRUE(b.InsertRows(61, 100));
    EXPECT_EQ(a.RowCount(), 100);
    // Copies the WAL into the db file and truncates the WAL: both only in the overlay.
    EXPECT_EQ(a.QueryText("PRAGMA wal_checkpoint(TRUNCATE)"), "0");
    EXPECT_EQ(b.RowCount(), 100);
    EXPECT_EQ(b.QueryInt("SELECT sum(id) FROM t"), 100 * 101 / 2);
    EXPECT_EQ(b.QueryText("PRAGMA integrity_check"), "ok");
    EXPECT_EQ(GetPowerLossVfsStats().syncs, 0u);

    SimulatePowerLoss();
  }
  EXPECT_EQ(RowsOnDisk(), 10);
}

// Several threads, a connection each: the shared pending state is consistent under concurrency
// (run it under TSan too), and every acknowledged commit survives.
TEST_F(PowerLossVfsTest, ConcurrentConnectionsKeepEveryAcknowledgedRow) {
  {
    Connection setup(db_path_, kPowerLossVfsName);
    ASSERT_TRUE(CreateLog(setup, 0));
  }
  constexpr int kThreads = 4;
  constexpr int kRowsPerThread = 40;
  std::vector<std::unique_ptr<Connection>> connections;
  for (int t = 0; t < kThreads; ++t) {
    connections.push_back(std::make_unique<Connection>(db_path_, kPowerLossVfsName));
    ASSERT_TRUE(connections.back()->Exec("PRAGMA busy_timeout=30000; PRAGMA synchronous=FULL"));
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Connection& db = *connections[t];
      for (int i = 1; i <= kRowsPerThread; ++i) {
        EXPECT_TRUE(db.InsertRows(t * 1000 + i, t * 1000 + i));
        EXPECT_GE(db.RowCount().value_or(-1), i);  // reads race with the other writers
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  SimulatePowerLoss();
  EXPECT_EQ(OpenPowerLossVfsFiles(), 2u * kThreads) << "a db and a WAL handle per connection";
  connections.clear();
  ASSERT_EQ(OpenPowerLossVfsFiles(), 0u);

  Connection db(db_path_, kDefaultVfs);
  EXPECT_EQ(db.QueryText("PRAGMA integrity_check"), "ok");
  EXPECT_EQ(db.RowCount(), kThreads * kRowsPerThread);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(db.QueryInt("SELECT count(*) FROM t WHERE id / 1000 = " + std::to_string(t)),
              kRowsPerThread);
  }
}

TEST_F(PowerLossVfsTest, EveryCommitSyncsTheWalWithSynchronousFull) {
  Connection db(db_path_, kPowerLossVfsName);
  ASSERT_TRUE(CreateLog(db, 1));
  for (int id = 2; id <= 21; ++id) {
    const PowerLossVfsStats before = GetPowerLossVfsStats();
    ASSERT_TRUE(db.InsertRows(id, id));
    const PowerLossVfsStats after = GetPowerLossVfsStats();
    EXPECT_GT(after.syncs_wal, before.syncs_wal) << "commit of row " << id;
    EXPECT_GT(after.writes, before.writes);
  }
  EXPECT_GE(GetPowerLossVfsStats().syncs, GetPowerLossVfsStats().syncs_wal);
}

TEST_F(PowerLossVfsTest, NothingIsSyncedWithSynchronousOff) {
  Connection db(db_path_, kPowerLossVfsName);
  ASSERT_TRUE(CreateLog(db, 1));
  ASSERT_TRUE(db.Exec("PRAGMA synchronous=OFF"));
  ResetPowerLossVfsStats();
  ASSERT_TRUE(db.InsertRows(2, 21));
  const PowerLossVfsStats stats = GetPowerLossVfsStats();
  EXPECT_EQ(stats.syncs_wal, 0u);
  EXPECT_EQ(stats.syncs, 0u);
  EXPECT_GE(stats.writes, 20u);
  EXPECT_GE(stats.bytes_written_pending, 20u * 4096u) << "at least one WAL frame per commit";
}

// ---- A writer process killed with SIGKILL -------------------------------------------------

struct WriterOptions {
  const char* vfs;
  const char* synchronous;
  int autocheckpoint_pages;
  int rows;
};

// Runs in the forked child: commits rows 1..rows, one transaction each, and writes each id to
// `ack_fd` once its COMMIT returned (the acknowledgement). Then waits to be killed.
[[noreturn]] void RunWriter(const std::string& path, const WriterOptions& options, int ack_fd) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, options.vfs) != SQLITE_OK) {
    _exit(10);
  }
  const std::string pragmas =
      std::string("PRAGMA synchronous=") + options.synchronous +
      "; PRAGMA wal_autocheckpoint=" + std::to_string(options.autocheckpoint_pages);
  if (sqlite3_exec(db, pragmas.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) _exit(11);
  sqlite3_stmt* insert = nullptr;
  if (sqlite3_prepare_v2(db, "INSERT INTO t(id, payload) VALUES(?1, randomblob(300))", -1, &insert,
                         nullptr) != SQLITE_OK) {
    _exit(12);
  }
  for (int32_t id = 1; id <= options.rows; ++id) {
    sqlite3_bind_int(insert, 1, id);
    if (sqlite3_step(insert) != SQLITE_DONE) _exit(13);
    sqlite3_reset(insert);
    if (write(ack_fd, &id, sizeof id) != sizeof id) _exit(14);
  }
  for (;;) pause();
}

// Reads one acknowledged id; nullopt at end of file. Fails the test if none comes in time.
std::optional<int32_t> ReadAck(int fd) {
  constexpr int kTimeoutMs = 30'000;
  pollfd pfd{.fd = fd, .events = POLLIN, .revents = 0};
  const int ready = poll(&pfd, 1, kTimeoutMs);
  if (ready <= 0) {
    ADD_FAILURE() << "no acknowledgement within " << kTimeoutMs << " ms";
    return std::nullopt;
  }
  int32_t id = 0;
  // Writes of at most PIPE_BUF bytes are atomic: an id is never split.
  const ssize_t n = read(fd, &id, sizeof id);
  if (n == 0) return std::nullopt;
  if (n != sizeof id) {
    ADD_FAILURE() << "read from the writer's pipe returned " << n;
    return std::nullopt;
  }
  return id;
}

// Forks a writer, kills it with SIGKILL once `kill_after` commits were acknowledged, and
// returns the highest acknowledged id (acks sent before the kill landed count too).
int32_t RunAndKillWriter(const std::string& path, const WriterOptions& options, int kill_after) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return 0;
  }
  std::fflush(nullptr);  // or the child's exit could flush our buffers twice
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    RunWriter(path, options, fds[1]);
  }
  close(fds[1]);
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << std::strerror(errno);
    close(fds[0]);
    return 0;
  }
  int32_t acked = 0;
  while (acked < kill_after) {
    const std::optional<int32_t> id = ReadAck(fds[0]);
    if (!id) break;
    EXPECT_EQ(*id, acked + 1);
    acked = *id;
  }
  kill(pid, SIGKILL);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the writer died by itself; exit status "
      << (WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  while (const std::optional<int32_t> id = ReadAck(fds[0])) acked = *id;
  close(fds[0]);
  return acked;
}

class KilledWriterTest : public PowerLossVfsTest {
 protected:
  // A WAL database with an empty table t, made with the default VFS and closed, so that the
  // writer's connection is the only one. Returns false (with a test failure) if that failed.
  bool CreateEmptyLog() {
    Connection db(db_path_, kDefaultVfs);
    const ::testing::AssertionResult created = CreateLog(db, 0);
    EXPECT_TRUE(created);
    return created;
  }

  // Seeded from TXCOORD_TEST_SEED if set, else at random; printed with every failure.
  uint64_t Seed() {
    if (const char* env = std::getenv("TXCOORD_TEST_SEED")) return std::strtoull(env, nullptr, 10);
    return std::random_device{}();
  }
};

TEST_F(KilledWriterTest, AcknowledgedCommitsSurviveSigkillWithSynchronousFull) {
  const uint64_t seed = Seed();
  SCOPED_TRACE("TXCOORD_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  constexpr int kRows = 150;
  for (int round = 0; round < 5; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    fs::remove_all(dir_);
    fs::create_directory(dir_);
    ASSERT_TRUE(CreateEmptyLog());
    // Small checkpoints, so that kills also land inside checkpoints and WAL restarts.
    const WriterOptions options{
        .vfs = kPowerLossVfsName, .synchronous = "FULL", .autocheckpoint_pages = 8, .rows = kRows};
    const int kill_after = std::uniform_int_distribution<int>(1, kRows - 30)(rng);
    const int32_t acked = RunAndKillWriter(db_path_, options, kill_after);
    ASSERT_GE(acked, kill_after);

    Connection db(db_path_, kDefaultVfs);
    EXPECT_EQ(db.QueryText("PRAGMA integrity_check"), "ok");
    const std::optional<int64_t> rows = db.RowCount();
    ASSERT_TRUE(rows.has_value());
    // Every acknowledged row, and at most the one whose COMMIT was under way.
    EXPECT_GE(*rows, acked) << "acknowledged rows were lost";
    EXPECT_LE(*rows, acked + 1);
    EXPECT_EQ(db.QueryInt("SELECT coalesce(max(id), 0) FROM t"), *rows) << "a gap in the ids";
  }
}

TEST_F(KilledWriterTest, AcknowledgedCommitsAreLostOnSigkillWithSynchronousOff) {
  ASSERT_TRUE(CreateEmptyLog());
  // Never checkpointed, never synced: no WAL frame of the writer ever reaches the disk.
  const WriterOptions options{
      .vfs = kPowerLossVfsName, .synchronous = "OFF", .autocheckpoint_pages = 0, .rows = 200};
  const int32_t acked = RunAndKillWriter(db_path_, options, options.rows);
  ASSERT_EQ(acked, 200);
  EXPECT_EQ(RowsOnDisk(), 0) << "with synchronous=OFF every acknowledged row should be lost";
}

// The reason this VFS exists: without it, SIGKILL loses nothing even when nothing is synced,
// because the OS page cache outlives the process.
TEST_F(KilledWriterTest, WithoutTheVfsSigkillLosesNothingEvenWithSynchronousOff) {
  ASSERT_TRUE(CreateEmptyLog());
  const WriterOptions options{
      .vfs = kDefaultVfs, .synchronous = "OFF", .autocheckpoint_pages = 0, .rows = 200};
  const int32_t acked = RunAndKillWriter(db_path_, options, options.rows);
  ASSERT_EQ(acked, 200);
  EXPECT_EQ(RowsOnDisk(), 200);
}

}  // namespace
