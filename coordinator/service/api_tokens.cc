#include "api_tokens.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace txcoord::service {
namespace {

constexpr std::string_view kBlanks = " \t\r";

std::string_view Trim(std::string_view text) {
  const size_t begin = text.find_first_not_of(kBlanks);
  if (begin == std::string_view::npos) return {};
  const size_t end = text.find_last_not_of(kBlanks);
  return text.substr(begin, end - begin + 1);
}

bool IsTokenChar(char c) {
  const auto byte = static_cast<unsigned char>(c);
  return byte > 0x20 && byte != 0x7f;
}

}  // namespace

ApiTokens::Digest ApiTokens::Sha256(std::string_view text) {
  Digest digest{};
  unsigned int length = 0;
  // EVP_Digest fails only when OpenSSL cannot allocate; a token check must never pass by
  // accident, so that ends the process rather than returning a zero digest.
  if (EVP_Digest(text.data(), text.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1 ||
      length != digest.size()) {
    std::abort();
  }
  return digest;
}

Result<ApiTokens> ApiTokens::Load(const std::string& path) {
  std::error_code ec;
  std::ifstream in(path);
  if (!std::filesystem::is_regular_file(path, ec) || !in) {
    return Status::InvalidArgument("cannot read --token-file " + path);
  }
  ApiTokens tokens;
  int line_number = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_number;
    const std::string_view token = Trim(line);
    if (token.empty() || token.starts_with('#')) continue;
    for (const char c : token) {
      if (!IsTokenChar(c)) {
        return Status::InvalidArgument("--token-file " + path + " line " +
                                       std::to_string(line_number) +
                                       ": a token must not contain blanks or control characters");
      }
    }
    tokens.digests_.push_back(Sha256(token));
  }
  if (in.bad()) return Status::InvalidArgument("cannot read --token-file " + path);
  if (tokens.digests_.empty()) {
    return Status::InvalidArgument("--token-file " + path +
                                   " holds no token; put one token per line (# starts a comment)");
  }
  return tokens;
}

ApiTokens ApiTokens::FromTokens(const std::vector<std::string>& tokens) {
  ApiTokens result;
  for (const std::string& token : tokens) result.digests_.push_back(Sha256(token));
  return result;
}

bool ApiTokens::Verify(std::string_view authorization) const {
  if (digests_.empty()) return true;
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    const char c = authorization[i];
    if ((c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c) != kScheme[i]) return false;
  }
  const Digest presented = Sha256(Trim(authorization.substr(kScheme.size())));
  // Every digest is compared, so the time does not depend on which token matched, if any.
  int matched = 0;
  for (const Digest& digest : digests_) {
    matched |= static_cast<int>(CRYPTO_memcmp(digest.data(), presented.data(), digest.size()) == 0);
  }
  return matched != 0;
}

}  // namespace txcoord::service
