// The WAL-batching VFS shim (txcoord/participant/wal_batch_vfs.h): a commit reaches the WAL below
// in a few large writes, other connections see every commit, checkpoints and WAL restarts keep
// working, and what was acknowledged survives a power loss (the power-loss VFS below it).
#include "txcoord/participant/wal_batch_vfs.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "txcoord/testing/powerloss_vfs.h"

namespace txcoord::participant {
namespace {

namespace fs = std::filesystem;

class WalBatchVfsTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '.');
    dir_ =
        fs::temp_directory_path() / ("wal_batch_vfs_test." + std::to_string(getpid()) + "." + name);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    testing::RegisterPowerLossVfs("powerloss");
  }
  void TearDown() override { fs::remove_all(dir_); }

  // At the `synchronous` level of the test's parameter (FULL where there is none).
  sqlite3* Open(const std::string& vfs) {
    sqlite3* db = nullptr;
    const int rc = sqlite3_open_v2(path().c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                   vfs.empty() ? nullptr : vfs.c_str());
    EXPECT_EQ(rc, SQLITE_OK) << sqlite3_errmsg(db);
    Exec(db, "PRAGMA journal_mode=WAL");
    Exec(db, std::string("PRAGMA synchronous=") + Synchronous());
    return db;
  }
  static void Exec(sqlite3* db, const std::string& sql) {
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK)
        << sql << ": " << (error != nullptr ? error : "");
    sqlite3_free(error);
  }
  static int64_t Count(sqlite3* db) {
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &stmt, nullptr), SQLITE_OK);
    int64_t count = -1;
    if (sqlite3_step(stmt) == SQLITE_ROW) count = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return count;
  }
  // PRAGMA integrity_check's first line: "ok" for a sound file.
  static std::string IntegrityCheck(sqlite3* db) {
    sqlite3_stmt* stmt = nullptr;
    std::string result = "(no result)";
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      result = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
    return result;
  }
  std::string path() const { return (dir_ / "t.db").string(); }
  static const char* Synchronous() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    return info->value_param() != nullptr ? GetParam() : "FULL";
  }
  static std::string Batching(const std::string& base) {
    auto vfs = WalBatchingVfs(base);
    EXPECT_TRUE(vfs.ok()) << vfs.status().ToString();
    return vfs.ok() ? *vfs : std::string();
  }

  fs::path dir_;
};

// At every synchronous level: without a sync, the commit frame is what passes the buffer down.
TEST_P(WalBatchVfsTest, ACommitReachesTheWalBelowInAFewLargeWrites) {
  sqlite3* db = Open(Batching("powerloss"));
  Exec(db, "PRAGMA wal_autocheckpoint=0");
  Exec(db, "CREATE TABLE t (n INTEGER PRIMARY KEY, pad BLOB)");
  testing::ResetPowerLossVfsStats();
  // ~100 pages of rows in one transaction: 200 frame writes (header, page) without the shim.
  Exec(db, "BEGIN");
  for (int i = 0; i < 400; ++i) {
    Exec(db, "INSERT INTO t VALUES (" + std::to_string(i) + ", randomblob(1000))");
  }
  Exec(db, "COMMIT");
  const auto stats = testing::GetPowerLossVfsStats();
  EXPECT_GE(stats.bytes_written_pending, 400u * 1000u);
  EXPECT_LE(stats.writes, 8u) << "the commit's frames went down in " << stats.writes << " writes";
  EXPECT_EQ(stats.syncs_wal >= 1, std::string(Synchronous()) == "FULL");
  EXPECT_EQ(Count(db), 400);
  sqlite3_close(db);
}

// The reader through the shim and the one without it see each commit the moment it returns,
// also when no sync passes the buffer down (NORMAL, OFF).
TEST_P(WalBatchVfsTest, OtherConnectionsSeeEveryCommitThroughCheckpointsAndRestarts) {
  sqlite3* writer = Open(Batching(""));
  Exec(writer, "CREATE TABLE t (n INTEGER PRIMARY KEY, pad BLOB)");
  Exec(writer, "PRAGMA wal_autocheckpoint=20");  // many checkpoints, and WAL restarts
  sqlite3* batched_reader = Open(Batching(""));
  sqlite3* plain_reader = Open("");
  for (int i = 1; i <= 600; ++i) {
    Exec(writer, "BEGIN");
    Exec(writer, "INSERT INTO t VALUES (" + std::to_string(i) + ", randomblob(" +
                     std::to_string(100 + (i % 7) * 700) + "))");
    if (i % 5 == 0) Exec(writer, "DELETE FROM t WHERE n = " + std::to_string(i - 3));
    Exec(writer, "COMMIT");
    const int64_t expected = i - i / 5;
    ASSERT_EQ(Count(writer), expected) << "after commit " << i;
    ASSERT_EQ(Count(batched_reader), expected) << "after commit " << i;
    ASSERT_EQ(Count(plain_reader), expected) << "after commit " << i;
  }
  Exec(plain_reader, "PRAGMA wal_checkpoint(TRUNCATE)");
  EXPECT_EQ(IntegrityCheck(writer), "ok");
  sqlite3_close(batched_reader);
  sqlite3_close(plain_reader);
  sqlite3_close(writer);
}

TEST_F(WalBatchVfsTest, EveryAcknowledgedCommitSurvivesAPowerLoss) {
  sqlite3* db = Open(Batching("powerloss"));
  Exec(db, "CREATE TABLE t (n INTEGER PRIMARY KEY, pad BLOB)");
  for (int i = 1; i <= 50; ++i) {
    Exec(db, "INSERT INTO t VALUES (" + std::to_string(i) + ", randomblob(3000))");
  }
  testing::SimulatePowerLoss();
  sqlite3_close(db);
  ASSERT_EQ(testing::OpenPowerLossVfsFiles(), 0u);
  sqlite3* reopened = Open("");
  EXPECT_EQ(Count(reopened), 50) << "an acknowledged commit was only in a buffer";
  sqlite3_close(reopened);
}

// A disk that fills up under a commit (RLIMIT_FSIZE: writes past the limit fail, as on a full
// disk): the commit fails, nothing of it is visible, everything committed before stays, and
// once there is room again the next commit works.
TEST_F(WalBatchVfsTest, AWriteThatFailsBelowFailsTheCommitAndLosesNothing) {
  sqlite3* db = Open(Batching(""));
  Exec(db, "PRAGMA wal_autocheckpoint=0");
  Exec(db, "CREATE TABLE t (n INTEGER PRIMARY KEY, pad BLOB)");
  for (int i = 1; i <= 10; ++i) {
    Exec(db, "INSERT INTO t VALUES (" + std::to_string(i) + ", randomblob(2000))");
  }
  const auto wal_size = fs::file_size(path() + "-wal");
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  const auto old_handler = signal(SIGXFSZ, SIG_IGN);
  rlimit small = saved;
  small.rlim_cur = wal_size + 64 * 1024;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  Exec(db, "BEGIN");
  Exec(db,
       "WITH RECURSIVE s(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM s WHERE v < 400) "
       "INSERT INTO t SELECT v + 100, randomblob(1000) FROM s");
  const int rc = sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  const std::string error = sqlite3_errmsg(db);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &saved), 0);
  signal(SIGXFSZ, old_handler);
  // EFBIG: SQLITE_IOERR_WRITE (a real full disk, ENOSPC, gives SQLITE_FULL).
  EXPECT_TRUE((rc & 0xff) == SQLITE_IOERR || (rc & 0xff) == SQLITE_FULL)
      << "a commit whose frames could not be written: " << rc << " " << error;
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);  // if SQLite left it open

  sqlite3* other = Open("");
  EXPECT_EQ(Count(other), 10) << "another connection sees exactly what was committed";
  EXPECT_EQ(Count(db), 10);
  Exec(db, "INSERT INTO t VALUES (11, randomblob(2000))");
  EXPECT_EQ(Count(other), 11) << "the next commit works";
  sqlite3_close(other);
  sqlite3_close(db);
  sqlite3* reopened = Open("");
  EXPECT_EQ(Count(reopened), 11);
  EXPECT_EQ(IntegrityCheck(reopened), "ok");
  sqlite3_close(reopened);
}

TEST_F(WalBatchVfsTest, AnUnknownBaseVfsIsAnError) {
  auto vfs = WalBatchingVfs("no-such-vfs");
  ASSERT_FALSE(vfs.ok());
  EXPECT_EQ(vfs.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(vfs.status().message().find("no-such-vfs"), std::string::npos);
  auto again = WalBatchingVfs("");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, Batching("")) << "registered once";
}

INSTANTIATE_TEST_SUITE_P(Synchronous, WalBatchVfsTest, ::testing::Values("FULL", "NORMAL", "OFF"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace txcoord::participant
