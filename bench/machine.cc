// Machine facts (machine.h).
#include "machine.h"

#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <string_view>
#include <utility>

namespace txcoord::bench {
namespace {

namespace fs = std::filesystem;

struct Mount {
  std::string device;
  std::string mount_point;
  std::string fs_type;
  std::string options;
};

// /proc/mounts escapes space, tab, newline and backslash as \ooo.
std::string UnescapeMountField(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const std::string oct(s.substr(i + 1, 3));
      if (oct.find_first_not_of("01234567") == std::string::npos) {
        out += static_cast<char>(std::stoi(oct, nullptr, 8));
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

// The mount that holds `path`: the last listed mount point that is the longest prefix of it
// (later mounts shadow earlier ones on the same point).
std::optional<Mount> MountOf(const fs::path& path) {
  std::error_code ec;
  const fs::path canonical = fs::canonical(path, ec);
  if (ec) return std::nullopt;
  std::ifstream in("/proc/mounts");
  std::optional<Mount> best;
  std::string line;
  while (std::getline(in, line)) {
    char device[512], point[1024], type[64], options[1024];
    if (std::sscanf(line.c_str(), "%511s %1023s %63s %1023s", device, point, type, options) != 4) {
      continue;
    }
    const fs::path mount_point = UnescapeMountField(point);
    const auto [m, p] =
        std::mismatch(mount_point.begin(), mount_point.end(), canonical.begin(), canonical.end());
    if (m != mount_point.end()) continue;  // not a prefix, component by component
    if (!best || mount_point.string().size() >= best->mount_point.size()) {
      best = Mount{UnescapeMountField(device), mount_point.string(), type, options};
    }
  }
  return best;
}

// statfs's f_type, for when /proc/mounts is not readable.
std::string FsTypeFromStatfs(const fs::path& path) {
  struct statfs st {};
  if (statfs(path.c_str(), &st) != 0) return "unknown";
  switch (static_cast<unsigned long>(st.f_type)) {
    case 0xEF53:
      return "ext2/3/4";
    case 0x58465342:
      return "xfs";
    case 0x9123683E:
      return "btrfs";
    case 0x01021994:
      return "tmpfs";
    case 0x794C7630:
      return "overlayfs";
    case 0x2FC12FC1:
      return "zfs";
    case 0xF2F52010:
      return "f2fs";
    case 0x6969:
      return "nfs";
    case 0x65735546:
      return "fuse";
    default: {
      char hex[32];
      std::snprintf(hex, sizeof hex, "0x%lx", static_cast<unsigned long>(st.f_type));
      return hex;
    }
  }
}

std::string ReadFirstLine(const fs::path& file) {
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  return line;
}

// The block device's write cache mode ("write back": fdatasync must send a cache flush; "write
// through": the device says it has none), which explains much of the fdatasync rate.
std::string WriteCacheOf(const std::string& device) {
  if (!device.starts_with("/dev/")) return "unknown";
  std::error_code ec;
  const fs::path dev = fs::canonical(fs::path("/sys/class/block") / device.substr(5), ec);
  if (ec) return "unknown";
  for (const fs::path& dir : {dev, dev.parent_path()}) {  // a partition's queue is its disk's
    std::string mode = ReadFirstLine(dir / "queue" / "write_cache");
    if (!mode.empty()) return mode;
  }
  return "unknown";
}

}  // namespace

Storage DescribeStorage(const fs::path& path) {
  Storage s;
  s.path = path.string();
  if (auto m = MountOf(path)) {
    s.fs_type = m->fs_type;
    s.device = m->device;
    s.mount_options = m->options;
    s.write_cache = WriteCacheOf(m->device);
  } else {
    s.fs_type = FsTypeFromStatfs(path);
    s.device = "unknown";
    s.mount_options = "unknown";
    s.write_cache = "unknown";
  }
  return s;
}

namespace {

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("model name")) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "unknown";
}

}  // namespace

Host DescribeHost() {
  Host h;
  h.nproc = sysconf(_SC_NPROCESSORS_ONLN);
  h.cpu = CpuModel();
  struct utsname u {};
  h.kernel = uname(&u) == 0 ? std::string(u.sysname) + " " + u.release : "unknown";
  return h;
}

Result<std::unique_ptr<WorkDir>> WorkDir::Make(const std::string& parent_flag) {
  std::string parent = parent_flag;
  if (parent.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    parent = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  }
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) return Status::Unavailable("cannot create directory " + parent + ": " + ec.message());
  std::string templ = (fs::path(parent) / "txcoord-bench-XXXXXX").string();
  if (mkdtemp(templ.data()) == nullptr) {
    return Status::Unavailable("cannot make a directory in " + parent + ": " +
                               std::strerror(errno) + "; pass a writable --dir");
  }
  return std::unique_ptr<WorkDir>(new WorkDir(templ));
}

WorkDir::~WorkDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

}  // namespace txcoord::bench
