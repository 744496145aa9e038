// A fault-injecting SQLite VFS that forgets every write not yet synced, to prove durability.
//
// Killing a process proves nothing about fsync: the OS page cache outlives the process, so data
// that was only write()n is still there when the database is reopened. This VFS moves the page
// cache into the process (the technique of LevelDB's FaultInjectionTestEnv): writes to the main
// database, its rollback journals and its WAL are kept in memory, and reach the real file only
// when SQLite syncs that file. Whatever kills the process - SIGKILL, or SimulatePowerLoss() for a
// test that stays in one process - therefore loses exactly what a power cut would lose: every
// write since the file's last sync.
//
// Model, per file opened as MAIN_DB, MAIN_JOURNAL, SUPER_JOURNAL or WAL ("overlay files"):
//   - The real file holds the "disk": its content as of its last xSync.
//   - xWrite and xTruncate are appended, in order, to a pending list shared by every handle of
//     that path in this process (several connections see each other's unsynced data, as they
//     would through a page cache). xRead, xFileSize and xAccess(EXISTS) see the disk with the
//     pending list applied on top.
//   - xSync applies the pending list to the real file in order, then fsyncs it (the real
//     xSync). Only then does the data survive a power loss.
//   - When the last handle of a path closes, its pending list is dropped: an unsynced write
//     does not outlive its file's handles (as if the power failed right after the close).
//   - SimulatePowerLoss() drops every pending list and kills every handle open at that moment:
//     from then on their I/O (read, write, sync, lock, ...) fails with SQLITE_IOERR_*, while
//     unlock and close still work. A dead machine cannot checkpoint, so closing the connections
//     after the "power loss" writes nothing. Close them all, then reopen (with this VFS or the
//     default one): SQLite recovers from what the disk holds.
//   - Shared memory (the WAL's -shm index) is the real file's: SQLite rebuilds it from the WAL
//     when the first connection opens after every other one has closed, as after a reboot.
//   - Other files (temp files, statement journals, ...) pass straight through.
// What it does not model (see README.md): durability of directory entries (creating, deleting
// or renaming a file is durable at once), writes reaching the disk out of order or partly
// between two syncs, torn sectors, and a page cache shared with other processes.
//
// Thread-safety: every function here, and the VFS itself, may be used from any thread. Do not
// fork() while another thread is inside the VFS; open connections in the child after the fork.
//
// Inside namespace txcoord, `testing::` means this namespace: name GoogleTest's `::testing::`.
#pragma once

#include <cstddef>
#include <cstdint>

namespace txcoord::testing {

inline constexpr char kPowerLossVfsName[] = "powerloss";

// Registers, not as the default, a VFS called `name` that wraps the VFS that is the default at
// the time of the call (sqlite3_vfs_find(nullptr)). Idempotent and thread-safe. Every VFS it
// registers shares the same process-wide pending state. Open a database through it with
// sqlite3_open_v2(path, &db, flags, name). Aborts if another VFS already uses `name`.
void RegisterPowerLossVfs(const char* name = kPowerLossVfsName);

// Process-wide counters, cumulative since the last ResetPowerLossVfsStats(). "Overlay files" are
// the MAIN_DB, journal and WAL files; temp files are never counted.
struct PowerLossVfsStats {
  uint64_t syncs = 0;                  // real xSync calls on overlay files
  uint64_t syncs_wal = 0;              // of which on WAL files
  uint64_t writes = 0;                 // xWrite calls on overlay files (all kept pending)
  uint64_t bytes_written_pending = 0;  // bytes of those writes
  uint64_t bytes_dropped = 0;          // bytes of pending writes lost to a power loss or a close
};

PowerLossVfsStats GetPowerLossVfsStats();
void ResetPowerLossVfsStats();

// How many handles of overlay files (main db, journals, WAL) are open in this process. After a
// power loss, assert it is 0 before reopening: a connection left open (an idle pool member, a
// sqlite3_close_v2 zombie kept by an unfinalized statement) keeps the stale WAL index in shared
// memory, and a new connection would reuse it instead of recovering from the disk.
size_t OpenPowerLossVfsFiles();

// Drops every pending (unsynced) write and truncation of every overlay file in this process and
// kills the handles open now (see the model above). Handles opened afterwards work normally.
// Safe while other threads use the VFS: a sync already under way finishes first (its data
// survives), and every later call through an old handle fails.
void SimulatePowerLoss();

}  // namespace txcoord::testing
