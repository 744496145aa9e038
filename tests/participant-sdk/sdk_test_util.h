// Small helpers shared by the participant SDK's tests.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>

#include "txcoord/participant/handler.h"

namespace txcoord::participant::testing {

// A fresh directory under $TMPDIR, removed with everything in it when the object goes away.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "txcoord-sdk-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline CallbackContext Ctx(std::string gtid, std::string branch_id, Phase phase,
                           bool one_phase = false) {
  CallbackContext ctx;
  ctx.gtid = std::move(gtid);
  ctx.branch_id = std::move(branch_id);
  ctx.phase = phase;
  ctx.one_phase = one_phase;
  ctx.payload_json = "null";
  ctx.payload.set_null_value(google::protobuf::NULL_VALUE);
  return ctx;
}

}  // namespace txcoord::participant::testing
