// The power-loss VFS: see powerloss_vfs.h for the model it implements.
//
// Layout. Each sqlite3_file this VFS opens is a PowerLossFile followed, in the same allocation
// (szOsFile covers both), by the wrapped VFS's own file object. A handle of an overlay file
// points at the SharedFile of its path; the Registry owns the SharedFiles.
//
// Locks. Registry::mu_ guards the path map and every SharedFile's handle list; SharedFile::mu
// guards its pending ops. Order: Registry::mu_ before SharedFile::mu, never the reverse. I/O
// methods take only SharedFile::mu; opening, closing, deleting, xAccess and SimulatePowerLoss
// take Registry::mu_ (and then, where needed, SharedFile::mu).
#include "txcoord/testing/powerloss_vfs.h"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace txcoord::testing {
namespace {

// Capabilities that would let SQLite skip a sync or a journal write it otherwise does, on the
// promise that the device orders or atomically applies writes. The real disk under the tests
// makes no such promise, and SQLite must issue exactly the syncs it issues in production.
//
// SQLITE_IOCAP_POWERSAFE_OVERWRITE is deliberately kept: it never removes a sync (it only saves
// padding the WAL to a sector boundary at commit), it promises that a write leaves the bytes
// around it intact on power loss, which holds in this model (no torn sectors), and the unix VFS
// reports it in production, so keeping it keeps the production write and sync sequence.
constexpr int kStrippedCaps =
    SQLITE_IOCAP_ATOMIC | SQLITE_IOCAP_ATOMIC512 | SQLITE_IOCAP_ATOMIC1K | SQLITE_IOCAP_ATOMIC2K |
    SQLITE_IOCAP_ATOMIC4K | SQLITE_IOCAP_ATOMIC8K | SQLITE_IOCAP_ATOMIC16K |
    SQLITE_IOCAP_ATOMIC32K | SQLITE_IOCAP_ATOMIC64K | SQLITE_IOCAP_SAFE_APPEND |
    SQLITE_IOCAP_SEQUENTIAL | SQLITE_IOCAP_BATCH_ATOMIC;

// The files whose writes are durable only after a sync: everything SQLite needs to recover the
// database. Temp files, statement journals and transient databases do not outlive the process.
constexpr int kOverlayTypes =
    SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_SUPER_JOURNAL | SQLITE_OPEN_WAL;

struct AtomicStats {
  std::atomic<uint64_t> syncs{0};
  std::atomic<uint64_t> syncs_wal{0};
  std::atomic<uint64_t> writes{0};
  std::atomic<uint64_t> bytes_written_pending{0};
  std::atomic<uint64_t> bytes_dropped{0};
};
AtomicStats g_stats;

// Incremented by each SimulatePowerLoss() (under Registry::mu_). A handle opened in an earlier
// epoch belongs to a machine that lost power: it is dead.
std::atomic<uint64_t> g_epoch{0};

// A write or truncation that has not reached the real file yet.
struct PendingOp {
  enum class Kind { kWrite, kTruncate };
  Kind kind;
  sqlite3_int64 offset;             // kWrite: first byte written; kTruncate: the new size
  std::vector<unsigned char> data;  // kWrite only
};

struct PowerLossFile;

// What this process has written to one path and not synced yet: the part of the page cache
// that a power loss would lose. Shared by every handle open on the path.
struct SharedFile {
  std::string path;
  // GUARDED_BY(Registry::mu_). Never empty while the SharedFile exists.
  std::vector<PowerLossFile*> handles;
  // GUARDED_BY(Registry::mu_). False once the path was deleted: handles still open keep this
  // state (an unlinked file stays readable through its open descriptors), a new open of the
  // path starts afresh.
  bool linked = true;

  std::mutex mu;
  // GUARDED_BY(mu). In the order SQLite issued them. Invariant: the file as SQLite sees it is
  // the real file with these applied in order; the real file changes only in a sync, which
  // applies and removes them while holding `mu`.
  std::vector<PendingOp> ops;
};

struct PowerLossFile {
  sqlite3_file base;   // first: SQLite's sqlite3_file* points here
  sqlite3_file* real;  // the wrapped file, right after this struct in the same allocation
  SharedFile* shared;  // null for a pass-through file
  uint64_t epoch;      // g_epoch when opened
  bool is_wal;
  const char* vfs_name;  // for SQLITE_FCNTL_VFSNAME
};
static_assert(std::is_standard_layout_v<PowerLossFile> &&
                  std::is_trivially_destructible_v<PowerLossFile>,
              "SQLite casts the file to sqlite3_file* and frees it without running a destructor");

// Where the wrapped file starts, aligned as malloc would align it.
constexpr size_t kRealFileOffset = (sizeof(PowerLossFile) + alignof(std::max_align_t) - 1) /
                                   alignof(std::max_align_t) * alignof(std::max_align_t);

PowerLossFile* AsPowerLossFile(sqlite3_file* file) {
  // Pointer-interconvertible: `base` is the first member of a standard-layout struct.
  return reinterpret_cast<PowerLossFile*>(file);
}

bool IsDead(const PowerLossFile* f) { return f->epoch != g_epoch.load(std::memory_order_acquire); }

uint64_t PendingBytes(const std::vector<PendingOp>& ops) {
  uint64_t bytes = 0;
  for (const PendingOp& op : ops) bytes += op.data.size();
  return bytes;
}

// The size of the file as SQLite sees it, given the real file's size.
sqlite3_int64 LogicalSize(const std::vector<PendingOp>& ops, sqlite3_int64 real_size) {
  sqlite3_int64 size = real_size;
  for (const PendingOp& op : ops) {
    if (op.kind == PendingOp::Kind::kWrite) {
      size = std::max<sqlite3_int64>(size, op.offset + static_cast<sqlite3_int64>(op.data.size()));
    } else {
      size = op.offset;
    }
  }
  return size;
}

// Patches `buf`, which holds bytes [offset, offset + amt) of the real file (zero beyond its end),
// into the same bytes of the file as SQLite sees it. Invariant relied on by xRead: every byte
// at or beyond LogicalSize() comes out zero, because each truncation zeroes what lies past it.
void ApplyOps(const std::vector<PendingOp>& ops, unsigned char* buf, int amt,
              sqlite3_int64 offset) {
  const sqlite3_int64 end = offset + amt;
  for (const PendingOp& op : ops) {
    if (op.kind == PendingOp::Kind::kWrite) {
      const sqlite3_int64 op_end = op.offset + static_cast<sqlite3_int64>(op.data.size());
      const sqlite3_int64 lo = std::max(offset, op.offset);
      const sqlite3_int64 hi = std::min(end, op_end);
      if (lo < hi) std::memcpy(buf + (lo - offset), op.data.data() + (lo - op.offset), hi - lo);
    } else {
      const sqlite3_int64 lo = std::max(offset, op.offset);
      if (lo < end) std::memset(buf + (lo - offset), 0, end - lo);
    }
  }
}

// Applies `ops` to the real file in order, removing each one that landed. On error the ops not
// yet applied stay pending, in order.
int WriteBack(sqlite3_file* real, std::vector<PendingOp>& ops) {
  size_t applied = 0;
  int rc = SQLITE_OK;
  for (; applied < ops.size(); ++applied) {
    const PendingOp& op = ops[applied];
    rc = op.kind == PendingOp::Kind::kWrite
             ? real->pMethods->xWrite(real, op.data.data(), static_cast<int>(op.data.size()),
                                      op.offset)
             : real->pMethods->xTruncate(real, op.offset);
    if (rc != SQLITE_OK) break;
  }
  ops.erase(ops.begin(), ops.begin() + static_cast<std::ptrdiff_t>(applied));
  return rc;
}

// The process-wide map from path to SharedFile. Never destroyed: SQLite may close files while
// static destructors run.
class Registry {
 public:
  static Registry& Instance() {
    static Registry* const registry = new Registry;
    return *registry;
  }

  // Records `handle` as open on `path` and attaches it to the path's shared state.
  void Attach(const std::string& path, PowerLossFile* handle) {
    std::lock_guard lock(mu_);
    SharedFile*& shared = by_path_[path];
    if (shared == nullptr) {
      shared = new SharedFile;
      shared->path = path;
      all_.insert(shared);
    }
    shared->handles.push_back(handle);
    handle->shared = shared;
    handle->epoch = g_epoch.load(std::memory_order_relaxed);
  }

  // Detaches a closing handle. The last handle of a path drops what was never synced.
  void Detach(PowerLossFile* handle) {
    std::lock_guard lock(mu_);
    SharedFile* shared = handle->shared;
    handle->shared = nullptr;
    std::erase(shared->handles, handle);
    if (!shared->handles.empty()) return;
    {
      std::lock_guard file_lock(shared->mu);
      g_stats.bytes_dropped += PendingBytes(shared->ops);
    }
    if (shared->linked) by_path_.erase(shared->path);
    all_.erase(shared);
    delete shared;
  }

  // Deletes `path` with the real VFS; once it is gone, a new open of the path starts with no
  // pending state while handles still open keep theirs. mu_ is held across the real delete so
  // that no open of the path can slip in between.
  int Delete(sqlite3_vfs* real_vfs, const char* path, int sync_dir) {
    std::lock_guard lock(mu_);
    const int rc = real_vfs->xDelete(real_vfs, path, sync_dir);
    if (rc == SQLITE_OK || rc == SQLITE_IOERR_DELETE_NOENT) {
      if (auto it = by_path_.find(path); it != by_path_.end()) {
        it->second->linked = false;
        by_path_.erase(it);
      }
    }
    return rc;
  }

  // Whether `path` exists as the unix VFS's xAccess(SQLITE_ACCESS_EXISTS) would report it if
  // the pending ops had reached the disk (a file exists when its size is not zero), or nullopt
  // when nothing is pending for the path and the real VFS's answer is exact.
  std::optional<bool> ExistsThroughOverlay(const char* path) {
    std::lock_guard lock(mu_);
    auto it = by_path_.find(path);
    if (it == by_path_.end()) return std::nullopt;
    SharedFile* shared = it->second;
    std::lock_guard file_lock(shared->mu);
    if (shared->ops.empty()) return std::nullopt;
    // Any open handle can stat the real file; mu_ keeps it from closing meanwhile.
    sqlite3_file* real = shared->handles.front()->real;
    sqlite3_int64 real_size = 0;
    if (real->pMethods->xFileSize(real, &real_size) != SQLITE_OK) return std::nullopt;
    return LogicalSize(shared->ops, real_size) > 0;
  }

  size_t OpenHandles() {
    std::lock_guard lock(mu_);
    size_t handles = 0;
    for (const SharedFile* shared : all_) handles += shared->handles.size();
    return handles;
  }

  void PowerLoss() {
    std::lock_guard lock(mu_);
    // Bump first: an I/O method that takes a file's mu after this sees its handle dead, one that
    // got there before finishes before that file's ops are dropped below.
    g_epoch.fetch_add(1, std::memory_order_acq_rel);
    for (SharedFile* shared : all_) {
      std::lock_guard file_lock(shared->mu);
      g_stats.bytes_dropped += PendingBytes(shared->ops);
      shared->ops.clear();
    }
  }

 private:
  Registry() = default;

  std::mutex mu_;
  std::unordered_map<std::string, SharedFile*> by_path_;  // GUARDED_BY(mu_); linked files only
  std::unordered_set<SharedFile*> all_;                   // GUARDED_BY(mu_); linked or not
};

// ---- sqlite3_io_methods ------------------------------------------------------------------
//
// Each method handles a pass-through file (shared == nullptr) by forwarding to the real file.
// For an overlay file, the methods that move data check IsDead() under the file's mu; those
// that release resources (xClose, xUnlock, xShmUnmap, unlocking xShmLock) always forward, so
// that connections can be closed after a simulated power loss.

int FileClose(sqlite3_file* file) {
  PowerLossFile* f = AsPowerLossFile(file);
  if (f->shared != nullptr) Registry::Instance().Detach(f);
  return f->real->pMethods->xClose(f->real);
}

int FileRead(sqlite3_file* file, void* buf, int amt, sqlite3_int64 offset) {
  PowerLossFile* f = AsPowerLossFile(file);
  sqlite3_file* real = f->real;
  if (f->shared == nullptr) return real->pMethods->xRead(real, buf, amt, offset);
  std::lock_guard lock(f->shared->mu);
  if (IsDead(f)) return SQLITE_IOERR_READ;
  // On SQLITE_IOERR_SHORT_READ the real VFS zero-fills the rest of `buf`, as xRead must.
  const int rc = real->pMethods->xRead(real, buf, amt, offset);
  const std::vector<PendingOp>& ops = f->shared->ops;
  if (ops.empty() || (rc != SQLITE_OK && rc != SQLITE_IOERR_SHORT_READ)) return rc;
  sqlite3_int64 real_size = 0;
  if (const int size_rc = real->pMethods->xFileSize(real, &real_size); size_rc != SQLITE_OK) {
    return size_rc;
  }
  ApplyOps(ops, static_cast<unsigned char*>(buf), amt, offset);
  // Bytes past the logical end are zero (ApplyOps' invariant), as a short read requires.
  return offset + amt <= LogicalSize(ops, real_size) ? SQLITE_OK : SQLITE_IOERR_SHORT_READ;
}

int FileWrite(sqlite3_file* file, const void* buf, int amt, sqlite3_int64 offset) {
  PowerLossFile* f = AsPowerLossFile(file);
  if (f->shared == nullptr) return f->real->pMethods->xWrite(f->real, buf, amt, offset);
  std::lock_guard lock(f->shared->mu);
  if (IsDead(f)) return SQLITE_IOERR_WRITE;
  const auto* bytes = static_cast<const unsigned char*>(buf);
  f->shared->ops.push_back(
      {PendingOp::Kind::kWrite, offset, std::vector<unsigned char>(bytes, bytes + amt)});
  g_stats.writes.fetch_add(1, std::memory_order_relaxed);
  g_stats.bytes_written_pending.fetch_add(amt, std::memory_order_relaxed);
  return SQLITE_OK;
}

// Truncation is pending like a write: until the next sync, the disk keeps the old length and
// content (on Linux the new length is durable only after fsync too).
int FileTruncate(sqlite3_file* file, sqlite3_int64 size) {
  PowerLossFile* f = AsPowerLossFile(file);
  if (f->shared == nullptr) return f->real->pMethods->xTruncate(f->real, size);
  std::lock_guard lock(f->shared->mu);
  if (IsDead(f)) return SQLITE_IOERR_TRUNCATE;
  f->shared->ops.push_back({PendingOp::Kind::kTruncate, size, {}});
  return SQLITE_OK;
}

int FileSync(sqlite3_file* file, int flags) {
  PowerLossFile* f = AsPowerLossFile(file);
  sqlite3_file* real = f->real;
  if (f->shared == nullptr) return real->pMethods->xSync(real, flags);
  // mu is held through the fsync, so a simulated power loss falls before the write-back (the
  // data is lost) or after the fsync (it is durable), never in between.
  std::lock_guard lock(f->shared->mu);
  if (IsDead(f)) return SQLITE_IOERR_FSYNC;
  if (const int rc = WriteBack(real, f->shared->ops); rc != SQLITE_OK) return rc;
  const int rc = real->pMethods->xSync(real, flags);
  g_stats.syncs.fetch_add(1, std::memory_order_relaxed);
  if (f->is_wal) g_stats.syncs_wal.fetch_add(1, std::memory_order_relaxed);
  return rc;
}

int FileSize(sqlite3_file* file, sqlite3_int64* size) {
  PowerLossFile* f = AsPowerLossFile(file);
  sqlite3_file* real = f->real;
  if (f->shared == nullptr) return real->pMethods->xFileSize(real, size);
  std::lock_guard lock(f->shared->mu);
  if (IsDead(f)) return SQLITE_IOERR_FSTAT;
  sqlite3_int64 real_size = 0;
  if (const int rc = real->pMethods->xFileSize(real, &real_size); rc != SQLITE_OK) return rc;
  *size = LogicalSize(f->shared->ops, real_size);
  return SQLITE_OK;
}

int FileLock(sqlite3_file* file, int level) {
  PowerLossFile* f = AsPowerLossFile(file);
  if (f->shared != nullptr && IsDead(f)) return SQLITE_IOERR_LOCK;
  return f->real->pMethods->xLock(f->real, level);
}

int FileUnlock(sqlite3_file* file, int level) {
  PowerLossFile* f = AsPowerLossFile(file);
  return f->real->pMethods->xUnlock(f->real, level);
}

int FileCheckReservedLock(sqlite3_file* file, int* reserved) {
  PowerLossFile* f = AsPowerLossFile(file);
  return f->real->pMethods->xCheckReservedLock(f->real, reserved);
}

int FileControl(sqlite3_file* file, int op, void* arg) {
  PowerLossFile* f = AsPowerLossFile(file);
  sqlite3_file* real = f->real;
  switch (op) {
    case SQLITE_FCNTL_MMAP_SIZE:
      // A memory-mapped read would see the real file without the pending ops. xFetch refuses
      // already; answering "mmap is off" here also keeps the real file from being mapped.
      *static_cast<sqlite3_int64*>(arg) = 0;
      return SQLITE_OK;
    case SQLITE_FCNTL_SIZE_HINT:
    case SQLITE_FCNTL_CHUNK_SIZE:
      // The unix VFS would grow the real file (preallocation) behind the overlay's back and
      // round truncations up to the chunk size. They are hints: ignoring them is allowed.
      if (f->shared != nullptr) return SQLITE_OK;
      break;
    case SQLITE_FCNTL_VFSNAME: {
      const int rc = real->pMethods->xFileControl(real, op, arg);
      if (rc == SQLITE_OK) {
        char** name = static_cast<char**>(arg);
        *name = sqlite3_mprintf("%s/%z", f->vfs_name, *name);
      }
      return rc;
    }
    default:
      break;
  }
  return real->pMethods->xFileControl(real, op, arg);
}

int FileSectorSize(sqlite3_file* file) {
  PowerLossFile* f = AsPowerLossFile(file);
  return f->real->pMethods->xSectorSize(f->real);
}

int FileDeviceCharacteristics(sqlite3_file* file) {
  PowerLossFile* f = AsPowerLossFile(file);
  return f->real->pMethods->xDeviceCharacteristics(f->real) & ~kStrippedCaps;
}

// Shared memory is the real file's (see the header). A dead handle may still unlock and unmap.
int FileShmMap(sqlite3_file* file, int region, int region_size, int extend,
               void volatile** mapping) {
  PowerLossFile* f = AsPowerLossFile(file);
  if (f->shared != nullptr && IsDead(f)) return SQLITE_IOERR_SHMMAP;
  return f->real->pMethods->xShmMap(f->real, region, region_size, extend, mapping);
}

int FileShmLock(sqlite3_file* file, int offset, int n, int flags) {
  PowerLossFile* f = AsPowerLossFile(file);
  if (f->shared != nullptr && IsDead(f) && (flags & SQLITE_SHM_LOCK) != 0) {
    return SQLITE_IOERR_SHMLOCK;
  }
  return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

void FileShmBarrier(sqlite3_file* file) {
  PowerLossFile* f = AsPowerLossFile(file);
  f->real->pMethods->xShmBarrier(f->real);
}

int FileShmUnmap(sqlite3_file* file, int delete_flag) {
  PowerLossFile* f = AsPowerLossFile(file);
  return f->real->pMethods->xShmUnmap(f->real, delete_flag);
}

// Memory-mapped I/O is refused for every file: *pp == nullptr tells SQLite to use xRead, so no
// read can bypass the overlay.
int FileFetch(sqlite3_file*, sqlite3_int64, int, void** pp) {
  *pp = nullptr;
  return SQLITE_OK;
}

int FileUnfetch(sqlite3_file*, sqlite3_int64, void*) { return SQLITE_OK; }

// One table per io-methods version, so that a handle offers exactly the versions its real file
// offers (SQLite uses WAL only when xShm* exist, version >= 2).
constexpr sqlite3_io_methods MakeIoMethods(int version) {
  return sqlite3_io_methods{
      .iVersion = version,
      .xClose = FileClose,
      .xRead = FileRead,
      .xWrite = FileWrite,
      .xTruncate = FileTruncate,
      .xSync = FileSync,
      .xFileSize = FileSize,
      .xLock = FileLock,
      .xUnlock = FileUnlock,
      .xCheckReservedLock = FileCheckReservedLock,
      .xFileControl = FileControl,
      .xSectorSize = FileSectorSize,
      .xDeviceCharacteristics = FileDeviceCharacteristics,
      .xShmMap = version >= 2 ? FileShmMap : nullptr,
      .xShmLock = version >= 2 ? FileShmLock : nullptr,
      .xShmBarrier = version >= 2 ? FileShmBarrier : nullptr,
      .xShmUnmap = version >= 2 ? FileShmUnmap : nullptr,
      .xFetch = version >= 3 ? FileFetch : nullptr,
      .xUnfetch = version >= 3 ? FileUnfetch : nullptr,
  };
}

constexpr sqlite3_io_methods kIoMethods[] = {MakeIoMethods(1), MakeIoMethods(2), MakeIoMethods(3)};

// ---- sqlite3_vfs -------------------------------------------------------------------------

sqlite3_vfs* RealVfs(sqlite3_vfs* vfs) { return static_cast<sqlite3_vfs*>(vfs->pAppData); }

int VfsOpen(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* file, int flags,
            int* out_flags) {
  sqlite3_vfs* real_vfs = RealVfs(vfs);
  // Value-initialized: base.pMethods stays null until the real open succeeded, so SQLite never
  // calls our xClose on a file that failed to open.
  auto* f = new (file) PowerLossFile{};
  f->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f) + kRealFileOffset);
  f->vfs_name = vfs->zName;
  // `name` is passed on untouched: for the main database, URI parameters follow it in memory.
  const int rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    // A VFS may leave its file half-open on failure (pMethods set); SQLite will not close it
    // for us because our own pMethods is null.
    if (f->real->pMethods != nullptr) f->real->pMethods->xClose(f->real);
    return rc;
  }
  if ((flags & kOverlayTypes) != 0 && name != nullptr) {
    f->is_wal = (flags & SQLITE_OPEN_WAL) != 0;
    Registry::Instance().Attach(name, f);
  }
  const int version = std::clamp(f->real->pMethods->iVersion, 1, 3);
  f->base.pMethods = &kIoMethods[version - 1];
  return SQLITE_OK;
}

int VfsDelete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
  return Registry::Instance().Delete(RealVfs(vfs), name, sync_dir);
}

int VfsAccess(sqlite3_vfs* vfs, const char* name, int flags, int* result) {
  if (flags == SQLITE_ACCESS_EXISTS) {
    if (const std::optional<bool> exists = Registry::Instance().ExistsThroughOverlay(name)) {
      *result = *exists ? 1 : 0;
      return SQLITE_OK;
    }
  }
  return RealVfs(vfs)->xAccess(RealVfs(vfs), name, flags, result);
}

int VfsFullPathname(sqlite3_vfs* vfs, const char* name, int size, char* out) {
  return RealVfs(vfs)->xFullPathname(RealVfs(vfs), name, size, out);
}

void* VfsDlOpen(sqlite3_vfs* vfs, const char* filename) {
  return RealVfs(vfs)->xDlOpen(RealVfs(vfs), filename);
}

void VfsDlError(sqlite3_vfs* vfs, int size, char* message) {
  RealVfs(vfs)->xDlError(RealVfs(vfs), size, message);
}

using DlSymbol = void (*)();
DlSymbol VfsDlSym(sqlite3_vfs* vfs, void* library, const char* symbol) {
  return RealVfs(vfs)->xDlSym(RealVfs(vfs), library, symbol);
}

void VfsDlClose(sqlite3_vfs* vfs, void* library) { RealVfs(vfs)->xDlClose(RealVfs(vfs), library); }

int VfsRandomness(sqlite3_vfs* vfs, int size, char* out) {
  return RealVfs(vfs)->xRandomness(RealVfs(vfs), size, out);
}

int VfsSleep(sqlite3_vfs* vfs, int microseconds) {
  return RealVfs(vfs)->xSleep(RealVfs(vfs), microseconds);
}

int VfsCurrentTime(sqlite3_vfs* vfs, double* now) {
  return RealVfs(vfs)->xCurrentTime(RealVfs(vfs), now);
}

int VfsGetLastError(sqlite3_vfs* vfs, int size, char* out) {
  return RealVfs(vfs)->xGetLastError(RealVfs(vfs), size, out);
}

int VfsCurrentTimeInt64(sqlite3_vfs* vfs, sqlite3_int64* now) {
  return RealVfs(vfs)->xCurrentTimeInt64(RealVfs(vfs), now);
}

int VfsSetSystemCall(sqlite3_vfs* vfs, const char* name, sqlite3_syscall_ptr call) {
  return RealVfs(vfs)->xSetSystemCall(RealVfs(vfs), name, call);
}

sqlite3_syscall_ptr VfsGetSystemCall(sqlite3_vfs* vfs, const char* name) {
  return RealVfs(vfs)->xGetSystemCall(RealVfs(vfs), name);
}

const char* VfsNextSystemCall(sqlite3_vfs* vfs, const char* name) {
  return RealVfs(vfs)->xNextSystemCall(RealVfs(vfs), name);
}

bool IsPowerLossVfs(const sqlite3_vfs* vfs) { return vfs != nullptr && vfs->xOpen == VfsOpen; }

[[noreturn]] void Die(const char* what, const char* name) {
  std::fprintf(stderr, "RegisterPowerLossVfs(\"%s\"): %s\n", name, what);
  std::abort();
}

}  // namespace

void RegisterPowerLossVfs(const char* name) {
  static std::mutex* const mu = new std::mutex;
  std::lock_guard lock(*mu);
  if (sqlite3_vfs* existing = sqlite3_vfs_find(name); existing != nullptr) {
    if (IsPowerLossVfs(existing)) return;
    Die("another VFS already has this name", name);
  }
  sqlite3_vfs* real = sqlite3_vfs_find(nullptr);
  // Never stack two overlays, even if someone made a power-loss VFS the default.
  if (IsPowerLossVfs(real)) real = RealVfs(real);
  if (real == nullptr) Die("SQLite has no default VFS", name);

  // Both are leaked on purpose: SQLite keeps the pointers for the life of the process.
  auto* vfs = new sqlite3_vfs{};
  const std::string* vfs_name = new std::string(name);
  vfs->iVersion = std::min(real->iVersion, 3);
  vfs->szOsFile = static_cast<int>(kRealFileOffset) + real->szOsFile;
  vfs->mxPathname = real->mxPathname;
  vfs->zName = vfs_name->c_str();
  vfs->pAppData = real;
  vfs->xOpen = VfsOpen;
  vfs->xDelete = VfsDelete;
  vfs->xAccess = VfsAccess;
  vfs->xFullPathname = VfsFullPathname;
  vfs->xDlOpen = real->xDlOpen != nullptr ? VfsDlOpen : nullptr;
  vfs->xDlError = real->xDlError != nullptr ? VfsDlError : nullptr;
  vfs->xDlSym = real->xDlSym != nullptr ? VfsDlSym : nullptr;
  vfs->xDlClose = real->xDlClose != nullptr ? VfsDlClose : nullptr;
  vfs->xRandomness = VfsRandomness;
  vfs->xSleep = VfsSleep;
  vfs->xCurrentTime = VfsCurrentTime;
  vfs->xGetLastError = VfsGetLastError;
  if (vfs->iVersion >= 2) {
    vfs->xCurrentTimeInt64 = real->xCurrentTimeInt64 != nullptr ? VfsCurrentTimeInt64 : nullptr;
  }
  if (vfs->iVersion >= 3) {
    vfs->xSetSystemCall = real->xSetSystemCall != nullptr ? VfsSetSystemCall : nullptr;
    vfs->xGetSystemCall = real->xGetSystemCall != nullptr ? VfsGetSystemCall : nullptr;
    vfs->xNextSystemCall = real->xNextSystemCall != nullptr ? VfsNextSystemCall : nullptr;
  }
  if (sqlite3_vfs_register(vfs, /*makeDflt=*/0) != SQLITE_OK) {
    Die("sqlite3_vfs_register failed", name);
  }
}

PowerLossVfsStats GetPowerLossVfsStats() {
  return PowerLossVfsStats{
      .syncs = g_stats.syncs.load(),
      .syncs_wal = g_stats.syncs_wal.load(),
      .writes = g_stats.writes.load(),
      .bytes_written_pending = g_stats.bytes_written_pending.load(),
      .bytes_dropped = g_stats.bytes_dropped.load(),
  };
}

void ResetPowerLossVfsStats() {
  g_stats.syncs = 0;
  g_stats.syncs_wal = 0;
  g_stats.writes = 0;
  g_stats.bytes_written_pending = 0;
  g_stats.bytes_dropped = 0;
}

size_t OpenPowerLossVfsFiles() { return Registry::Instance().OpenHandles(); }

void SimulatePowerLoss() { Registry::Instance().PowerLoss(); }

}  // namespace txcoord::testing
