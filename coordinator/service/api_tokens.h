// Bearer tokens for the /v1/ API (contract section 1): --token-file, one token per line.
//
// Only SHA-256 digests of the tokens are kept, and a presented token is hashed and compared with
// every digest in constant time, so neither the timing nor the length of a guess tells anything
// about the tokens.
//
// Thread-safety: immutable after Load; Verify may be called from any thread concurrently.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "txcoord/status.h"

namespace txcoord::service {

class ApiTokens {
 public:
  // No tokens: every request is allowed (the service runs without --token-file).
  ApiTokens() = default;

  // Reads `path`: one token per line; leading and trailing blanks are trimmed, and blank lines
  // and lines starting with '#' are skipped. Errors (kInvalidArgument, naming the file and line,
  // never the token): the file cannot be read, holds no token, or a token contains blanks or
  // control characters (an Authorization header could not carry it).
  static Result<ApiTokens> Load(const std::string& path);

  // Builds from tokens given directly (tests). Each must be non-empty.
  static ApiTokens FromTokens(const std::vector<std::string>& tokens);

  bool required() const { return !digests_.empty(); }
  std::size_t size() const { return digests_.size(); }

  // True when no tokens are required, or `authorization` is "Bearer <token>" (scheme matched
  // case-insensitively) for one of them.
  bool Verify(std::string_view authorization) const;

 private:
  using Digest = std::array<unsigned char, 32>;
  static Digest Sha256(std::string_view text);

  std::vector<Digest> digests_;
};

}  // namespace txcoord::service
