#include <Poco/Checksum.h>

#include <algorithm>
#include <limits>

#include "log_internal.h"

namespace txcoord::coordinator {

Timestamp FromProto(const google::protobuf::Timestamp& t) {
  // Saturates rather than overflow: the log refuses such times, but callers may convert any.
  constexpr int64_t kMaxSeconds = std::numeric_limits<int64_t>::max() / 1000 - 1;
  const int64_t seconds = std::clamp<int64_t>(t.seconds(), -kMaxSeconds, kMaxSeconds);
  return Timestamp(std::chrono::milliseconds(seconds * 1000 + t.nanos() / 1'000'000));
}

google::protobuf::Timestamp ToProto(Timestamp t) {
  const int64_t ms = t.time_since_epoch().count();
  google::protobuf::Timestamp out;
  int64_t seconds = ms / 1000;
  int64_t rem = ms % 1000;
  if (rem < 0) {
    rem += 1000;
    seconds -= 1;
  }
  out.set_seconds(seconds);
  out.set_nanos(static_cast<int32_t>(rem * 1'000'000));
  return out;
}

Result<LogConfig> ParseStoreUri(std::string_view uri) {
  constexpr std::string_view kSqlite = "sqlite://";
  if (uri.starts_with(kSqlite)) {
    std::string path(uri.substr(kSqlite.size()));
    if (path.empty()) {
      return Status::InvalidArgument("store URI \"" + std::string(uri) +
                                     "\" has no path; use sqlite://./dir/file.db or "
                                     "sqlite:///absolute/file.db");
    }
    SqliteLogConfig c;
    c.path = std::move(path);
    return LogConfig(std::move(c));
  }
  if (uri.starts_with("postgresql://") || uri.starts_with("postgres://")) {
    PostgresLogConfig c;
    c.conninfo = std::string(uri);
    return LogConfig(std::move(c));
  }
  // Only the scheme is quoted back: the rest may hold a password.
  const size_t colon = uri.find("://");
  if (colon == std::string_view::npos || colon > 20) {
    return Status::InvalidArgument(
        "store URI has no scheme; use sqlite://PATH or postgresql://USER@HOST:PORT/DB");
  }
  return Status::InvalidArgument("store URI with scheme \"" + std::string(uri.substr(0, colon)) +
                                 "\" is neither sqlite://PATH nor postgresql://...");
}

Result<std::unique_ptr<TransactionLog>> OpenLog(const LogConfig& config) {
  return std::visit(
      [](const auto& c) -> Result<std::unique_ptr<TransactionLog>> {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, SqliteLogConfig>) {
          return internal::OpenSqliteLog(c);
        } else {
          return internal::OpenPostgresLog(c);
        }
      },
      config);
}

namespace internal {

uint32_t Checksum(std::string_view bytes) {
  Poco::Checksum crc(Poco::Checksum::TYPE_CRC32);
  crc.update(bytes.data(), static_cast<unsigned>(bytes.size()));
  return crc.checksum();
}

Result<v1::LogRecord> DecodeRecord(std::string_view gtid, int64_t id, std::string_view body,
                                   uint32_t crc) {
  const std::string where =
      "log record " + std::to_string(id) + " of transaction " + std::string(gtid);
  if (Checksum(body) != crc) {
    return Status::Corruption(where + " fails its checksum; the store is damaged");
  }
  v1::LogRecord record;
  if (!record.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
    return Status::Corruption(where + " does not parse; the store is damaged");
  }
  if (record.gtid() != gtid) {
    return Status::Corruption(where + " names transaction " + record.gtid());
  }
  return record;
}

int64_t ToMillis(Timestamp t) { return t.time_since_epoch().count(); }
Timestamp FromMillis(int64_t ms) { return Timestamp(std::chrono::milliseconds(ms)); }

}  // namespace internal
}  // namespace txcoord::coordinator
