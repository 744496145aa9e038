// A SQLite VFS shim that hands a transaction's WAL frames to the VFS below in a few writes.
//
// SQLite writes each WAL frame with two calls (its 24-byte header, then the page), so a commit
// of ~90 pages makes ~180 pwrite(2)s; in the coordinator's log that was 10% of its CPU at 64
// clients. Through this VFS, the writes to a WAL file that follow each other are kept in a
// buffer of the file handle and passed down together (in writes of at most 124 KiB) as soon as
// the transaction's commit frame is complete: at the end of a commit, before its sync and
// before SQLite makes the frames visible in the WAL index. The buffer is also passed down
// before the file is read, synced, sized, truncated, closed or file-controlled, and before a
// write elsewhere in it, so the order of writes is kept. Every other file, and every other
// call, goes straight to the VFS below.
//
// Why it is safe at every `synchronous` level: a frame becomes visible to other connections
// only when the writer updates the WAL index after writing the commit frame, and the frames
// reach the file below when the commit frame does. A failed write surfaces as the commit
// frame's write error, so SQLite fails the commit before it updates the index. The handle that
// wrote frames of an unfinished transaction (a spill of its cache) passes them down before any
// read of its own. The commit frame is recognised by the WAL format (a 24-byte frame header
// whose "database size after commit" field is not zero; sqlite.org/fileformat2.html#walformat);
// a write that only looks like one merely passes the buffer down early.
//
// Use: WalBatchingVfs() once, then sqlite3_open_v2(path, &db, flags, name.c_str()).
// Thread-safety: a buffer belongs to one sqlite3_file, which SQLite uses from one thread at a
// time; WalBatchingVfs is thread-safe.
#pragma once

#include <string>

#include "txcoord/status.h"

namespace txcoord::participant {

// The name of a VFS stacked on `base` (a registered VFS's name; empty: the default VFS),
// registered (not as the default) on first use and kept for the life of the process.
// kInvalidArgument if there is no VFS called `base`.
Result<std::string> WalBatchingVfs(const std::string& base = "");

}  // namespace txcoord::participant
