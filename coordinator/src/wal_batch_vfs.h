// A SQLite VFS shim that hands a commit's WAL frames to the VFS below as one write.
//
// SQLite writes each WAL frame with two calls (its 24-byte header, then the page), so a group
// commit of ~90 pages made ~180 pwrite(2)s, 10% of the coordinator's CPU at 64 clients. This
// VFS keeps the writes to a WAL file that follow each other in a buffer of the file handle and
// passes them down as one write when SQLite syncs that file, reads it, asks its size, truncates
// or closes it, or writes elsewhere in it (so the order of writes is kept). Every other file,
// and every other call, goes straight to the VFS below.
//
// Why it is safe: a WAL frame becomes visible to other connections only when the writer updates
// the WAL index after the commit, and with synchronous=FULL SQLite syncs the WAL before that
// update, which flushes the buffer first. The handle that wrote the frames flushes before any
// read of its own. So nothing ever reads the file while a buffered write is missing, and a sync
// means what it meant below. Use it only for connections with synchronous=FULL (or EXTRA): the
// transaction log sets it on every connection and refuses to open otherwise. A write error in
// a flush is returned by the call that flushed (a sync: the COMMIT fails and SQLite rolls the
// transaction back, as for a failed sync).
//
// Thread-safety: the buffer belongs to one sqlite3_file, which SQLite uses from one thread at a
// time; registration is thread-safe.
#pragma once

#include <string>

#include "txcoord/status.h"

namespace txcoord::coordinator::internal {

// The name of a VFS stacked on `base` (a registered VFS's name; empty: the default VFS),
// registered (not as the default) on first use and kept for the life of the process.
// kInvalidArgument if there is no VFS called `base`.
Result<std::string> WalBatchingVfs(const std::string& base);

}  // namespace txcoord::coordinator::internal
