// Facts about the machine a benchmark ran on, printed in its header so that figures can be
// compared across machines: CPUs and kernel, and for a directory the file system, device, mount
// options and write-cache mode (with write cache "write back" every fdatasync sends a flush to the
// device). And WorkDir, the fresh directory a run keeps its files in.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "txcoord/status.h"

namespace txcoord::bench {

struct Storage {
  std::string path;
  std::string fs_type;
  std::string device;
  std::string mount_options;
  std::string write_cache;
};
// "unknown" for what cannot be found out (no /proc/mounts, a device without a queue).
Storage DescribeStorage(const std::filesystem::path& path);

struct Host {
  long nproc = 0;
  std::string cpu;     // the model name
  std::string kernel;  // "Linux 6.1.0"
};
Host DescribeHost();

// A fresh directory for a run's files, removed with everything in it when the object goes away.
class WorkDir {
 public:
  // Makes "txcoord-bench-XXXXXX" in `parent`, or in $TMPDIR (else /tmp) when `parent` is empty.
  // kUnavailable when it cannot be made (the message suggests --dir).
  static Result<std::unique_ptr<WorkDir>> Make(const std::string& parent);
  ~WorkDir();
  WorkDir(const WorkDir&) = delete;
  WorkDir& operator=(const WorkDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  explicit WorkDir(std::filesystem::path path) : path_(std::move(path)) {}
  std::filesystem::path path_;
};

}  // namespace txcoord::bench
