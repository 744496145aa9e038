// The WAL-batching VFS shim; what it does and why it is safe: wal_batch_vfs.h.
#include "txcoord/participant/wal_batch_vfs.h"

#include <sqlite3.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <new>

namespace txcoord::participant {
namespace {

// Writes larger than this, or that would make the buffer larger, flush it first; a group
// commit's frames (~90 pages, ~370 kB) fit many times over.
constexpr size_t kMaxBuffered = size_t{8} << 20;

// The handle SQLite allocates for us (szOsFile bytes): our part, then the handle of the VFS
// below. Plain data: SQLite hands over raw memory and frees it itself.
struct BatchFile {
  sqlite3_file base;         // base.pMethods is one of kMethods, once the file is open
  sqlite3_file* inner;       // the VFS below's handle, in the same allocation
  std::string* pending;      // buffered writes of a WAL file (owned); null for other files
  sqlite3_int64 pending_at;  // file offset of (*pending)[0]
  bool commit_frame;         // the last write was a commit frame's header: flush after its page
};

// The WAL format (sqlite.org/fileformat2.html#walformat): a 32-byte file header, then frames of
// a 24-byte header and a page; bytes 4-7 of a frame header are the database size in pages after
// a commit, zero in every frame but a transaction's last.
constexpr sqlite3_int64 kWalHeaderSize = 32;
constexpr int kFrameHeaderSize = 24;

bool IsCommitFrameHeader(const void* data, int amount, sqlite3_int64 offset) {
  if (amount != kFrameHeaderSize || offset < kWalHeaderSize) return false;
  const auto* bytes = static_cast<const unsigned char*>(data);
  return (bytes[4] | bytes[5] | bytes[6] | bytes[7]) != 0;
}

constexpr size_t InnerOffset() { return (sizeof(BatchFile) + 15) & ~size_t{15}; }

BatchFile* Self(sqlite3_file* f) { return reinterpret_cast<BatchFile*>(f); }
sqlite3_file* Inner(sqlite3_file* f) { return Self(f)->inner; }
const sqlite3_io_methods* Below(sqlite3_file* f) { return Inner(f)->pMethods; }

// Each write below is at most this long: SQLite's unix VFS takes no more than 128 KiB - 1 in
// one call (it masks the length), as SQLite itself never writes more than a page or so.
constexpr size_t kMaxWriteBelow = 0x1ffff & ~size_t{4095};

int Flush(BatchFile* f) {
  if (f->pending == nullptr || f->pending->empty()) return SQLITE_OK;
  int rc = SQLITE_OK;
  const std::string& pending = *f->pending;
  for (size_t done = 0; done < pending.size() && rc == SQLITE_OK;) {
    const size_t n = std::min(kMaxWriteBelow, pending.size() - done);
    rc = f->inner->pMethods->xWrite(f->inner, pending.data() + done, static_cast<int>(n),
                                    f->pending_at + static_cast<sqlite3_int64>(done));
    done += n;
  }
  // Dropped even when the write failed: SQLite sees the error, gives the transaction up and
  // writes its frames again next time; keeping them would write stale data later.
  f->pending->clear();
  return rc;
}

int FileClose(sqlite3_file* file) {
  BatchFile* f = Self(file);
  const int flush_rc = Flush(f);
  const int rc = Below(file)->xClose(f->inner);
  delete f->pending;
  f->pending = nullptr;
  return flush_rc != SQLITE_OK ? flush_rc : rc;
}

int FileRead(sqlite3_file* file, void* out, int amount, sqlite3_int64 offset) {
  if (const int rc = Flush(Self(file)); rc != SQLITE_OK) return rc;
  return Below(file)->xRead(Inner(file), out, amount, offset);
}

// Appends one write to the buffer, passing the buffer down first when the write does not
// follow it or would make it too large.
int Buffer(BatchFile* f, const void* data, int amount, sqlite3_int64 offset) {
  sqlite3_file* file = &f->base;
  std::string& pending = *f->pending;
  const auto size = static_cast<size_t>(amount);
  if (!pending.empty() && (offset != f->pending_at + static_cast<sqlite3_int64>(pending.size()) ||
                           pending.size() + size > kMaxBuffered)) {
    if (const int rc = Flush(f); rc != SQLITE_OK) return rc;
  }
  if (size > kMaxWriteBelow) return Below(file)->xWrite(f->inner, data, amount, offset);
  if (pending.empty()) f->pending_at = offset;
  try {
    pending.append(static_cast<const char*>(data), size);
  } catch (const std::bad_alloc&) {
    if (const int rc = Flush(f); rc != SQLITE_OK) return rc;
    return Below(file)->xWrite(f->inner, data, amount, offset);
  }
  return SQLITE_OK;
}

// A commit frame's page is the end of a commit: what is buffered goes down now, before SQLite
// syncs (at synchronous=FULL) or, without a sync, makes the frames visible in the WAL index.
int FileWrite(sqlite3_file* file, const void* data, int amount, sqlite3_int64 offset) {
  BatchFile* f = Self(file);
  if (f->pending == nullptr) return Below(file)->xWrite(f->inner, data, amount, offset);
  const bool ends_commit = f->commit_frame;
  f->commit_frame = IsCommitFrameHeader(data, amount, offset);
  if (const int rc = Buffer(f, data, amount, offset); rc != SQLITE_OK) return rc;
  return ends_commit ? Flush(f) : SQLITE_OK;
}

int FileTruncate(sqlite3_file* file, sqlite3_int64 size) {
  if (const int rc = Flush(Self(file)); rc != SQLITE_OK) return rc;
  return Below(file)->xTruncate(Inner(file), size);
}

int FileSync(sqlite3_file* file, int flags) {
  if (const int rc = Flush(Self(file)); rc != SQLITE_OK) return rc;
  return Below(file)->xSync(Inner(file), flags);
}

int FileSize(sqlite3_file* file, sqlite3_int64* size) {
  if (const int rc = Flush(Self(file)); rc != SQLITE_OK) return rc;
  return Below(file)->xFileSize(Inner(file), size);
}

int FileLock(sqlite3_file* file, int level) { return Below(file)->xLock(Inner(file), level); }
int FileUnlock(sqlite3_file* file, int level) { return Below(file)->xUnlock(Inner(file), level); }
int FileCheckReservedLock(sqlite3_file* file, int* out) {
  return Below(file)->xCheckReservedLock(Inner(file), out);
}

// Flushed first: a file control may look at the file (its size, its content) below us.
int FileControl(sqlite3_file* file, int op, void* arg) {
  if (const int rc = Flush(Self(file)); rc != SQLITE_OK) return rc;
  return Below(file)->xFileControl(Inner(file), op, arg);
}

int FileSectorSize(sqlite3_file* file) { return Below(file)->xSectorSize(Inner(file)); }
int FileDeviceCharacteristics(sqlite3_file* file) {
  return Below(file)->xDeviceCharacteristics(Inner(file));
}

// Version 2 and 3 methods: called only when the VFS below has them (the method table we give a
// file has the version of the one below).
int FileShmMap(sqlite3_file* file, int page, int page_size, int extend, void volatile** out) {
  return Below(file)->xShmMap(Inner(file), page, page_size, extend, out);
}
int FileShmLock(sqlite3_file* file, int offset, int n, int flags) {
  return Below(file)->xShmLock(Inner(file), offset, n, flags);
}
void FileShmBarrier(sqlite3_file* file) { Below(file)->xShmBarrier(Inner(file)); }
int FileShmUnmap(sqlite3_file* file, int delete_flag) {
  return Below(file)->xShmUnmap(Inner(file), delete_flag);
}
int FileFetch(sqlite3_file* file, sqlite3_int64 offset, int amount, void** out) {
  if (const int rc = Flush(Self(file)); rc != SQLITE_OK) return rc;
  return Below(file)->xFetch(Inner(file), offset, amount, out);
}
int FileUnfetch(sqlite3_file* file, sqlite3_int64 offset, void* page) {
  return Below(file)->xUnfetch(Inner(file), offset, page);
}

constexpr sqlite3_io_methods MethodsOfVersion(int version) {
  return {version,
          FileClose,
          FileRead,
          FileWrite,
          FileTruncate,
          FileSync,
          FileSize,
          FileLock,
          FileUnlock,
          FileCheckReservedLock,
          FileControl,
          FileSectorSize,
          FileDeviceCharacteristics,
          FileShmMap,
          FileShmLock,
          FileShmBarrier,
          FileShmUnmap,
          FileFetch,
          FileUnfetch};
}
// kMethods[v - 1] mirrors a VFS below whose files have methods of version v.
constexpr sqlite3_io_methods kMethods[] = {MethodsOfVersion(1), MethodsOfVersion(2),
                                           MethodsOfVersion(3)};

sqlite3_vfs* BaseOf(sqlite3_vfs* vfs) { return static_cast<sqlite3_vfs*>(vfs->pAppData); }

int VfsOpen(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* file, int flags,
            int* out_flags) {
  BatchFile* f = Self(file);
  f->base.pMethods = nullptr;  // until the file below is open: SQLite then never closes ours
  f->inner = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(file) + InnerOffset());
  f->pending = nullptr;
  f->pending_at = 0;
  f->commit_frame = false;
  sqlite3_vfs* base = BaseOf(vfs);
  const int rc = base->xOpen(base, name, f->inner, flags, out_flags);
  if (f->inner->pMethods == nullptr) return rc;
  if (rc == SQLITE_OK && (flags & SQLITE_OPEN_WAL) != 0) {
    f->pending = new (std::nothrow) std::string;  // none: this file is simply not batched
  }
  const int version = std::clamp(f->inner->pMethods->iVersion, 1, 3);
  f->base.pMethods = &kMethods[version - 1];
  return rc;
}

int VfsDelete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
  return BaseOf(vfs)->xDelete(BaseOf(vfs), name, sync_dir);
}
int VfsAccess(sqlite3_vfs* vfs, const char* name, int flags, int* out) {
  return BaseOf(vfs)->xAccess(BaseOf(vfs), name, flags, out);
}
int VfsFullPathname(sqlite3_vfs* vfs, const char* name, int size, char* out) {
  return BaseOf(vfs)->xFullPathname(BaseOf(vfs), name, size, out);
}
void* VfsDlOpen(sqlite3_vfs* vfs, const char* name) {
  return BaseOf(vfs)->xDlOpen(BaseOf(vfs), name);
}
void VfsDlError(sqlite3_vfs* vfs, int size, char* out) {
  BaseOf(vfs)->xDlError(BaseOf(vfs), size, out);
}
void (*VfsDlSym(sqlite3_vfs* vfs, void* handle, const char* symbol))() {
  return BaseOf(vfs)->xDlSym(BaseOf(vfs), handle, symbol);
}
void VfsDlClose(sqlite3_vfs* vfs, void* handle) { BaseOf(vfs)->xDlClose(BaseOf(vfs), handle); }
int VfsRandomness(sqlite3_vfs* vfs, int size, char* out) {
  return BaseOf(vfs)->xRandomness(BaseOf(vfs), size, out);
}
int VfsSleep(sqlite3_vfs* vfs, int micros) { return BaseOf(vfs)->xSleep(BaseOf(vfs), micros); }
int VfsCurrentTime(sqlite3_vfs* vfs, double* out) {
  return BaseOf(vfs)->xCurrentTime(BaseOf(vfs), out);
}
int VfsGetLastError(sqlite3_vfs* vfs, int size, char* out) {
  return BaseOf(vfs)->xGetLastError != nullptr ? BaseOf(vfs)->xGetLastError(BaseOf(vfs), size, out)
                                               : 0;
}
int VfsCurrentTimeInt64(sqlite3_vfs* vfs, sqlite3_int64* out) {
  sqlite3_vfs* base = BaseOf(vfs);
  if (base->iVersion >= 2 && base->xCurrentTimeInt64 != nullptr) {
    return base->xCurrentTimeInt64(base, out);
  }
  double days = 0;
  const int rc = base->xCurrentTime(base, &days);
  *out = static_cast<sqlite3_int64>(days * 86'400'000.0);
  return rc;
}

struct Registered {
  std::string name;
  sqlite3_vfs vfs{};
};

}  // namespace

Result<std::string> WalBatchingVfs(const std::string& base_name) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<Registered>> registered;  // GUARDED_BY(mu)
  std::lock_guard lock(mu);
  if (auto it = registered.find(base_name); it != registered.end()) return it->second->name;

  sqlite3_vfs* base = sqlite3_vfs_find(base_name.empty() ? nullptr : base_name.c_str());
  if (base == nullptr) {
    return Status::InvalidArgument("no SQLite VFS called \"" + base_name + "\"");
  }
  auto r = std::make_unique<Registered>();
  r->name = "txcoord-wal-batch" + (base_name.empty() ? std::string() : ":" + base_name);
  sqlite3_vfs& v = r->vfs;
  v.iVersion = 2;  // no system-call overrides: they are for SQLite's own tests
  v.szOsFile = static_cast<int>(InnerOffset()) + base->szOsFile;
  v.mxPathname = base->mxPathname;
  v.zName = r->name.c_str();
  v.pAppData = base;
  v.xOpen = VfsOpen;
  v.xDelete = VfsDelete;
  v.xAccess = VfsAccess;
  v.xFullPathname = VfsFullPathname;
  v.xDlOpen = VfsDlOpen;
  v.xDlError = VfsDlError;
  v.xDlSym = VfsDlSym;
  v.xDlClose = VfsDlClose;
  v.xRandomness = VfsRandomness;
  v.xSleep = VfsSleep;
  v.xCurrentTime = VfsCurrentTime;
  v.xGetLastError = VfsGetLastError;
  v.xCurrentTimeInt64 = VfsCurrentTimeInt64;
  if (const int rc = sqlite3_vfs_register(&v, 0); rc != SQLITE_OK) {
    return Status::Internal("register SQLite VFS " + r->name + ": " + sqlite3_errstr(rc));
  }
  std::string name = r->name;
  registered.emplace(base_name, std::move(r));
  return name;
}

}  // namespace txcoord::participant
