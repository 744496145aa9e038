#include "txcoord/outbox/source.h"

#include <algorithm>

#include "source_internal.h"

namespace txcoord::outbox {

Result<SourceConfig> ParseSourceUri(std::string_view uri) {
  const auto bad = [&](std::string_view why) {
    return Status::InvalidArgument("--source \"" + RedactUri(uri) + "\" " + std::string(why) +
                                   "; use sqlite:///ABSOLUTE/PATH.db, sqlite://RELATIVE/PATH.db "
                                   "or postgresql://USER@HOST:PORT/DB");
  };
  if (uri.starts_with("sqlite://")) {
    const std::string_view path = uri.substr(9);
    if (path.empty()) return bad("has no path");
    if (path.find('?') != std::string_view::npos) return bad("has a query; sqlite takes none");
    return SourceConfig{SqliteSourceConfig{std::string(path)}};
  }
  if (uri.starts_with("postgresql://") || uri.starts_with("postgres://")) {
    return SourceConfig{PostgresSourceConfig{std::string(uri)}};
  }
  return bad("is not a source URI");
}

bool ReadMayHaveMore(const std::vector<OutboxRow>& rows, const ReadLimit& limit) {
  if (static_cast<int>(rows.size()) >= limit.rows) return true;
  int64_t bytes = 0;
  for (const OutboxRow& row : rows) bytes += static_cast<int64_t>(row.payload.size());
  return bytes >= limit.payload_bytes;
}

std::string RedactUri(std::string_view uri) {
  std::string out(uri);
  if (out.starts_with("sqlite://")) return out;
  const size_t scheme_end = out.find("://");
  if (scheme_end != std::string::npos) {
    const size_t rest = scheme_end + 3;
    const size_t query = std::min(out.find('?', rest), out.size());
    const size_t at = query == 0 ? std::string::npos : out.rfind('@', query - 1);
    if (at != std::string::npos && at >= rest) {
      const size_t colon = out.find(':', rest);
      if (colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  std::string lower = out;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  constexpr std::string_view kKey = "password=";
  std::string redacted;
  size_t copied = 0;
  for (size_t key = lower.find(kKey); key != std::string::npos;
       key = lower.find(kKey, key + kKey.size())) {
    const size_t value = key + kKey.size();
    const size_t value_end = std::min(out.find_first_of("& \t", value), out.size());
    redacted += out.substr(copied, value - copied) + "***";
    copied = value_end;
  }
  return redacted + out.substr(copied);
}

std::unique_ptr<OutboxSource> MakeSource(const SourceConfig& config, std::string name) {
  if (const auto* sqlite = std::get_if<SqliteSourceConfig>(&config)) {
    return MakeSqliteSource(*sqlite, std::move(name));
  }
  return MakePostgresSource(std::get<PostgresSourceConfig>(config), std::move(name));
}

}  // namespace txcoord::outbox
