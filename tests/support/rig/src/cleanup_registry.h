// Internal to the rig: the last line of defence against leaked servers and temp dirs.
//
// Every ServerProcess registers its temp dir and, while one runs, its child's pid here. When
// the test binary is interrupted (SIGINT, SIGTERM) or exits without having destroyed its
// servers, the registry stops the children and removes their dirs. Destructors do the same in
// the normal case; this only covers the paths where destructors do not run.
//
// What it cannot cover: SIGKILL of the test process (or a crash). Then PR_SET_PDEATHSIG kills
// each server, but nothing removes the temp dirs; they stay under $TMPDIR as txcoord-*.
//
// Async-signal safety: the registry is a fixed array of slots made of lock-free atomics and a
// fixed char buffer; the cleanup uses only kill, waitpid, nanosleep, openat, getdents64,
// unlinkat and close. Registering and unregistering take no lock, so a process forked while
// another thread was registering cannot deadlock on the registry.
//
// Ownership of a child pid: whoever takes the pid out of its slot (TakeChild, or the emergency
// cleanup, with an atomic exchange) is the one that signals and reaps it. That keeps a
// destructor and the emergency cleanup from both reaping, and from signalling a pid that was
// reaped and reused meanwhile.
//
// Forked processes: a slot records the pid of the process that registered it, and a process
// only ever cleans up its own slots. A child forked from the test process inherits the parent's
// registry and handlers, and must not kill the parent's servers when it exits.
#pragma once

#include <sys/types.h>

#include <string>

#include "txcoord/status.h"

namespace txcoord::testing::internal {

// Installs (once per process) the SIGINT and SIGTERM handlers and the atexit hook. A signal
// that is ignored when this runs stays ignored (e.g. under nohup).
void InstallCleanupHandlersOnce();

// Registers `dir` for removal at emergency cleanup. Returns the slot.
// Fails only if the fixed number of slots is used up.
Result<int> RegisterTempDir(const std::string& dir);

// Records the running child of `slot` and the signal that stops it promptly in an emergency
// (the cleanup escalates to SIGKILL if it does not work within a few seconds).
void SetChild(int slot, pid_t pid, int emergency_signal);

// Takes the child's pid out of `slot` (0 if none, or if the emergency cleanup took it). The
// caller now owns signalling and reaping that pid.
pid_t TakeChild(int slot);

// Forgets `slot`. Call after the child is reaped and the dir removed.
void Unregister(int slot);

// Removes `path` and everything below it without following symlinks. Async-signal-safe (no
// allocation, no opendir). Best effort: stops quietly at anything it cannot remove.
void RemoveTreeAsyncSignalSafe(const char* path);

}  // namespace txcoord::testing::internal
