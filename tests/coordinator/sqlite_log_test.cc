// What only the SQLite backend has: a file that can be damaged, a schema that migrates, a lock
// per store, and the fsync per group commit, observed through the power-loss VFS.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "log_backends.h"
#include "log_internal.h"
#include "log_test_util.h"
#include "txcoord/testing/powerloss_vfs.h"

namespace txcoord::coordinator {
namespace {

using namespace testutil;
namespace fs = std::filesystem;

class SqliteLogTest : public ::testing::Test {
 protected:
  std::string path() const { return backend_.path(); }

  std::unique_ptr<TransactionLog> MustOpen(const SqliteLogConfig& c) {
    auto log = OpenLog(c);
    EXPECT_TRUE(log.ok()) << log.status().ToString();
    return log.ok() ? std::move(log).value() : nullptr;
  }
  SqliteLogConfig Config() const { return std::get<SqliteLogConfig>(backend_.Config()); }

  // A closed store holding `n` finished transactions: several pages of b-tree.
  void MakeStore(int n) {
    auto log = MustOpen(Config());
    ASSERT_NE(log, nullptr);
    std::vector<v1::LogRecord> group;
    for (int i = 0; i < n; ++i) {
      const std::string g = "g" + std::to_string(i);
      group.push_back(Begin(g, kEpochMs + i));
      group.push_back(Decision(g, kEpochMs + i, v1::OUTCOME_COMMIT));
      group.push_back(End(g, kEpochMs + i, "committed"));
      if (group.size() >= 300 || i == n - 1) {
        ASSERT_TRUE(log->Append(std::move(group)).ok());
        group.clear();
      }
    }
  }

  // Writes a record the way schema versions 1 and 2 did: keyed (gtid, seq).
  static void InsertLegacyRecord(sqlite3* db, const std::string& gtid, int64_t seq,
                                 const v1::LogRecord& record) {
    std::string body;
    record.SerializeToString(&body);
    sqlite3_stmt* stmt = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db,
                                 "INSERT INTO txcoord_tx_record (gtid, seq, kind, body, crc) "
                                 "VALUES (?1, ?2, ?3, ?4, ?5)",
                                 -1, &stmt, nullptr),
              SQLITE_OK);
    sqlite3_bind_text(stmt, 1, gtid.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(stmt, 2, seq);
    sqlite3_bind_text(stmt, 3, std::string(internal::RecordKind(record)).c_str(), -1,
                      SQLITE_TRANSIENT);
    sqlite3_bind_blob(stmt, 4, body.data(), static_cast<int>(body.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(stmt, 5, internal::Checksum(body));
    EXPECT_EQ(sqlite3_step(stmt), SQLITE_DONE) << sqlite3_errmsg(db);
    sqlite3_finalize(stmt);
  }

  void ExpectCleanOpenError(StatusCode code) {
    auto log = OpenLog(Config());
    ASSERT_FALSE(log.ok()) << "a damaged store must not open";
    EXPECT_EQ(log.status().code(), code) << log.status().ToString();
    EXPECT_NE(log.status().message().find(path()), std::string::npos)
        << "the error names the store: " << log.status().ToString();
    EXPECT_EQ(log.status().message().find('\n'), std::string::npos) << "one line";
  }

  SqliteBackend backend_;
};

TEST_F(SqliteLogTest, OpensWithWalAndFullSync) {
  auto log = MustOpen(Config());
  ASSERT_NE(log, nullptr);
  ASSERT_TRUE(log->Append({Begin("g", kEpochMs)}).ok());
  EXPECT_TRUE(fs::exists(path() + "-wal")) << "WAL journal in use";
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path().c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "wal");
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST_F(SqliteLogTest, CreatesMissingDirectories) {
  SqliteLogConfig c = Config();
  c.path = fs::path(path()).parent_path() / "a" / "b" / "log.db";
  auto log = MustOpen(c);
  ASSERT_NE(log, nullptr);
  EXPECT_TRUE(log->Append({Begin("g", kEpochMs)}).ok());
}

TEST_F(SqliteLogTest, GarbageFileIsRefusedAtOpen) {
  std::ofstream(path()) << "this is not a database, just some text that is long enough";
  ExpectCleanOpenError(StatusCode::kCorruption);
}

TEST_F(SqliteLogTest, FileCutInsideTheHeaderIsRefusedAtOpen) {
  MakeStore(10);
  fs::resize_file(path(), 10);
  ExpectCleanOpenError(StatusCode::kCorruption);
}

TEST_F(SqliteLogTest, TruncatedFileIsRefusedAtOpen) {
  MakeStore(2000);
  const auto size = fs::file_size(path());
  ASSERT_GT(size, 16 * 4096u) << "the store must span many pages for this test to mean much";
  ASSERT_FALSE(fs::exists(path() + "-wal")) << "closed cleanly: everything is in the main file";
  fs::resize_file(path(), size / 2);
  ExpectCleanOpenError(StatusCode::kCorruption);
}

TEST_F(SqliteLogTest, OverwrittenPagesAreRefusedAtOpen) {
  MakeStore(2000);
  const auto size = fs::file_size(path());
  {
    std::fstream f(path(), std::ios::in | std::ios::out | std::ios::binary);
    // Garbage over two whole pages in the middle of the b-tree.
    f.seekp(static_cast<std::streamoff>(size / 2 / 4096 * 4096));
    std::string junk(8192, '\0');
    for (size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<char>((i * 131 + 7) % 251);
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  ExpectCleanOpenError(StatusCode::kCorruption);
}

TEST_F(SqliteLogTest, EmptyExistingFileBecomesANewStore) {
  std::ofstream(path()).close();
  auto log = MustOpen(Config());
  ASSERT_NE(log, nullptr);
  EXPECT_TRUE(log->Append({Begin("g", kEpochMs)}).ok());
}

TEST_F(SqliteLogTest, ForeignDatabaseIsRefused) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path().c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE customers (id TEXT)", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto log = OpenLog(Config());
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), StatusCode::kInvalidArgument) << log.status().ToString();
  EXPECT_NE(log.status().message().find("customers"), std::string::npos);
}

TEST_F(SqliteLogTest, NewerSchemaVersionIsRefused) {
  MakeStore(1);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path().c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE txcoord_meta SET value = '99' WHERE key = 'schema_version'",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto log = OpenLog(Config());
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), StatusCode::kConflict);
  EXPECT_NE(log.status().message().find("upgrade txcoord"), std::string::npos)
      << log.status().ToString();
}

// A store written by the first schema version opens, is migrated, and keeps its data.
TEST_F(SqliteLogTest, OldSchemaIsMigratedOnOpen) {
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path().c_str(), &db), SQLITE_OK);
    ASSERT_TRUE(internal::MigrateSqliteSchema(db, 1).ok());
    // One transaction written the way version 1 wrote it.
    InsertLegacyRecord(db, "legacy", 1, Begin("legacy", kEpochMs));
    const std::string summary =
        "INSERT INTO txcoord_tx (gtid, protocol, state, created_at_ms, updated_at_ms, "
        "record_count) VALUES ('legacy', '2pc', 'preparing', " +
        std::to_string(kEpochMs) + ", " + std::to_string(kEpochMs) + ", 1)";
    ASSERT_EQ(sqlite3_exec(db, summary.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  {
    auto log = MustOpen(Config());
    ASSERT_NE(log, nullptr);
    auto tx = log->Read("legacy");
    ASSERT_TRUE(tx.ok()) << tx.status().ToString();
    EXPECT_EQ(tx->summary.state, "preparing");
    auto scan = log->ScanUnfinished("", 10);
    ASSERT_TRUE(scan.ok());
    ASSERT_EQ(scan->size(), 1u);
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path().c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "SELECT (SELECT value FROM txcoord_meta WHERE key = "
                               "'schema_version'), (SELECT count(*) FROM sqlite_schema WHERE "
                               "name = 'txcoord_tx_unfinished')",
                               -1, &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0))),
            std::to_string(kLogSchemaVersion));
  EXPECT_EQ(sqlite3_column_int(stmt, 1), 1) << "version 2's index exists";
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

// Version 3 re-keys records by an internal id given in creation order. A version 2 store keeps
// every transaction, record and state across the rebuild, and appends go on after it.
TEST_F(SqliteLogTest, Version2StoreIsRekeyedOnOpen) {
  struct Legacy {
    std::string gtid;
    int64_t created_ms;
    std::vector<v1::LogRecord> records;
    std::string state;
    v1::Outcome decision;
    bool finished;
  };
  const std::vector<Legacy> legacy = {
      {"zeta",
       kEpochMs + 1,
       {Begin("zeta", kEpochMs + 1), Decision("zeta", kEpochMs + 2, v1::OUTCOME_COMMIT),
        End("zeta", kEpochMs + 3, "committed")},
       "committed",
       v1::OUTCOME_COMMIT,
       true},
      {"alpha",
       kEpochMs + 2,
       {Begin("alpha", kEpochMs + 2)},
       "preparing",
       v1::OUTCOME_UNSPECIFIED,
       false},
      {"mid",
       kEpochMs,
       {Begin("mid", kEpochMs), Decision("mid", kEpochMs + 1, v1::OUTCOME_ABORT)},
       "aborting",
       v1::OUTCOME_ABORT,
       false},
  };
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path().c_str(), &db), SQLITE_OK);
  ASSERT_TRUE(internal::MigrateSqliteSchema(db, 2).ok());
  for (const Legacy& t : legacy) {
    for (size_t i = 0; i < t.records.size(); ++i) {
      InsertLegacyRecord(db, t.gtid, static_cast<int64_t>(i) + 1, t.records[i]);
    }
    const int64_t last_ms = t.created_ms + static_cast<int64_t>(t.records.size()) - 1;
    const std::string summary =
        "INSERT INTO txcoord_tx (gtid, protocol, state, decision, created_at_ms, updated_at_ms, "
        "deadline_ms, finished_at_ms, record_count) VALUES ('" +
        t.gtid + "', '2pc', '" + t.state + "', " + std::to_string(t.decision) + ", " +
        std::to_string(t.created_ms) + ", " + std::to_string(last_ms) + ", " +
        std::to_string(t.created_ms + 10'000) + ", " +
        (t.finished ? std::to_string(last_ms) : std::string("NULL")) + ", " +
        std::to_string(t.records.size()) + ")";
    ASSERT_EQ(sqlite3_exec(db, summary.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
  }
  sqlite3_close(db);

  {
    auto log = MustOpen(Config());
    ASSERT_NE(log, nullptr);
    std::error_code ec;
    EXPECT_EQ(fs::file_size(path() + "-wal", ec), 0u)
        << "the rebuild's frames are checkpointed and the WAL truncated (" << ec.message() << ")";
    for (const Legacy& t : legacy) {
      auto tx = log->Read(t.gtid);
      ASSERT_TRUE(tx.ok()) << t.gtid << ": " << tx.status().ToString();
      EXPECT_EQ(tx->summary.state, t.state);
      EXPECT_EQ(tx->summary.finished(), t.finished) << t.gtid;
      ASSERT_EQ(tx->records.size(), t.records.size()) << t.gtid;
      for (size_t i = 0; i < t.records.size(); ++i) {
        EXPECT_EQ(tx->records[i].SerializeAsString(), t.records[i].SerializeAsString())
            << t.gtid << " record " << i + 1;
      }
    }
    auto scan = log->ScanUnfinished("", 10);
    ASSERT_TRUE(scan.ok()) << scan.status().ToString();
    ASSERT_EQ(scan->size(), 2u);
    EXPECT_EQ((*scan)[0].summary.gtid, "alpha");
    EXPECT_EQ((*scan)[1].summary.gtid, "mid");

    // Appends go on: to a migrated transaction, and a new one.
    ASSERT_TRUE(log->Append({Decision("alpha", kEpochMs + 5, v1::OUTCOME_COMMIT)}).ok());
    ASSERT_TRUE(log->Append({Begin("fresh", kEpochMs + 6)}).ok());
    auto alpha = log->Read("alpha");
    ASSERT_TRUE(alpha.ok()) << alpha.status().ToString();
    EXPECT_EQ(alpha->records.size(), 2u);
    EXPECT_EQ(alpha->summary.state, "committing");

    auto purged = log->Purge(T(kEpochMs + 1'000'000), 100);
    ASSERT_TRUE(purged.ok()) << purged.status().ToString();
    EXPECT_EQ(*purged, 1) << "zeta, the only finished one";
    EXPECT_EQ(log->Read("zeta").status().code(), StatusCode::kNotFound);
  }

  ASSERT_EQ(sqlite3_open(path().c_str(), &db), SQLITE_OK);
  auto column = [&](const char* sql) {
    std::string out;
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    while (stmt != nullptr && sqlite3_step(stmt) == SQLITE_ROW) {
      if (!out.empty()) out += ',';
      const unsigned char* text = sqlite3_column_text(stmt, 0);
      out += text == nullptr ? "NULL" : reinterpret_cast<const char*>(text);
    }
    sqlite3_finalize(stmt);
    return out;
  };
  EXPECT_EQ(column("SELECT value FROM txcoord_meta WHERE key = 'schema_version'"),
            std::to_string(kLogSchemaVersion));
  EXPECT_EQ(column("SELECT gtid FROM txcoord_tx ORDER BY id"), "mid,alpha,fresh")
      << "ids follow creation, and a new transaction comes after every migrated one";
  EXPECT_EQ(column("SELECT count(*) FROM txcoord_tx_record"), "5")
      << "mid 2, alpha 2, fresh 1; zeta's records went with it";
  EXPECT_EQ(column("SELECT count(*) FROM txcoord_tx_record WHERE tx_id NOT IN "
                   "(SELECT id FROM txcoord_tx)"),
            "0");
  EXPECT_EQ(column("SELECT name FROM sqlite_schema WHERE type = 'index' AND name LIKE "
                   "'txcoord_tx_%' ORDER BY name"),
            "txcoord_tx_by_created,txcoord_tx_by_finished,txcoord_tx_unfinished");
  EXPECT_EQ(column("PRAGMA integrity_check"), "ok");
  sqlite3_close(db);
}

// Page locality (schema version 3): a group commit that moves the newest transactions on — what
// is in flight under load — writes a few pages, however the clients spell their gtids. Keyed by
// gtid, each of these 60 decisions dirtied a summary page and a record page of its own (~120
// WAL frames here).
TEST_F(SqliteLogTest, AGroupOfRecentTransactionsSharesItsPages) {
  constexpr int kOld = 3000;
  constexpr int kGroup = 60;
  std::mt19937_64 rng(42);
  std::vector<std::string> gtids;
  for (int i = 0; i < kOld; ++i) {
    char g[24];
    std::snprintf(g, sizeof g, "%016llx", static_cast<unsigned long long>(rng()));
    gtids.emplace_back(g);
  }
  {
    auto log = MustOpen(Config());
    ASSERT_NE(log, nullptr);
    std::vector<v1::LogRecord> group;
    for (int i = 0; i < kOld; ++i) {
      group.push_back(Begin(gtids[i], kEpochMs + i));
      if (group.size() == 500) {
        ASSERT_TRUE(log->Append(std::move(group)).ok());
        group.clear();
      }
    }
  }  // closed: the WAL is checkpointed and starts over empty
  auto wal_frames = [&] {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(path().c_str(), &db), SQLITE_OK);
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, "PRAGMA wal_checkpoint(PASSIVE)", -1, &stmt, nullptr),
              SQLITE_OK);
    int frames = -1;
    if (sqlite3_step(stmt) == SQLITE_ROW) frames = sqlite3_column_int(stmt, 1);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return frames;
  };
  auto log = MustOpen(Config());
  ASSERT_NE(log, nullptr);
  ASSERT_EQ(wal_frames(), 0);
  std::vector<v1::LogRecord> decisions;
  for (int i = kOld - kGroup; i < kOld; ++i) {
    decisions.push_back(Decision(gtids[i], kEpochMs + kOld + i, v1::OUTCOME_COMMIT));
  }
  ASSERT_TRUE(log->Append(std::move(decisions)).ok());
  const int frames = wal_frames();
  EXPECT_GT(frames, 0) << "the group is in the WAL";
  EXPECT_LE(frames, 20) << "WAL frames (pages) written by one group of " << kGroup << " decisions";
  auto tx = log->Read(gtids[kOld - 1]);
  ASSERT_TRUE(tx.ok()) << tx.status().ToString();
  EXPECT_EQ(tx->summary.state, "committing");
}

TEST_F(SqliteLogTest, ASecondOpenOfTheSameStoreIsRefused) {
  auto first = MustOpen(Config());
  ASSERT_NE(first, nullptr);
  auto second = OpenLog(Config());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find("in use"), std::string::npos);
  first.reset();
  EXPECT_TRUE(OpenLog(Config()).ok()) << "the lock goes with the first log";
}

TEST_F(SqliteLogTest, TheLockHoldsWhateverThePathSpelling) {
  auto first = MustOpen(Config());
  ASSERT_NE(first, nullptr);
  const std::string alias = fs::path(path()).parent_path() / "alias.db";
  fs::create_symlink(path(), alias);
  SqliteLogConfig c = Config();
  c.path = alias;
  auto via_symlink = OpenLog(c);
  ASSERT_FALSE(via_symlink.ok()) << "a second log on the same file through a symlink";
  EXPECT_EQ(via_symlink.status().code(), StatusCode::kUnavailable);
  c.path = fs::path(path()).parent_path() / "." / "log.db";
  EXPECT_FALSE(OpenLog(c).ok()) << "nor through another relative spelling";
}

// Through the power-loss VFS, whose unsynced writes vanish: every acknowledged append is on
// disk, and a group of concurrent appends cost far fewer WAL fsyncs than appends.
TEST_F(SqliteLogTest, AcknowledgedAppendsSurvivePowerLossAndShareFsyncs) {
  testing::RegisterPowerLossVfs("powerloss");
  SqliteLogConfig c = Config();
  c.vfs = "powerloss";
  auto log = MustOpen(c);
  ASSERT_NE(log, nullptr);
  testing::ResetPowerLossVfsStats();
  constexpr int kThreads = 32;
  constexpr int kPerThread = 25;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string g = "p" + std::to_string(t) + "-" + std::to_string(i);
        if (!log->Append({Begin(g, kEpochMs + i)}).ok()) failures++;
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(failures.load(), 0);
  const auto stats = testing::GetPowerLossVfsStats();
  const int appends = kThreads * kPerThread;
  EXPECT_GE(stats.syncs_wal, log->Stats().commits) << "every commit fsyncs the WAL";
  EXPECT_LT(stats.syncs_wal, appends) << "group commit: appends share fsyncs";

  testing::SimulatePowerLoss();
  log.reset();
  auto reopened = MustOpen(Config());  // the plain VFS: only what reached the disk
  ASSERT_NE(reopened, nullptr);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      const std::string g = "p" + std::to_string(t) + "-" + std::to_string(i);
      EXPECT_TRUE(reopened->Read(g).ok()) << g << " was acknowledged but lost";
    }
  }
}

}  // namespace
}  // namespace txcoord::coordinator
