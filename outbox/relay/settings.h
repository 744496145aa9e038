// txrelay's settings: the flag table, the config file and their validation, the way txcoord's
// are done (coordinator/service/settings.h): every flag may also come from --config FILE under
// the same name without dashes; flags given on the command line override the file.
#pragma once

#include <Poco/Net/SocketAddress.h>
#include <Poco/Util/AbstractConfiguration.h>

#include <string>
#include <vector>

#include "txcoord/outbox/event_bus.h"
#include "txcoord/outbox/relay.h"
#include "txcoord/outbox/source.h"
#include "txcoord/participant/tls.h"
#include "txcoord/process_log.h"
#include "txcoord/program.h"
#include "txcoord/status.h"

namespace txcoord::relay {

using LogFormat = txcoord::LogFormat;  // --log-format

struct RelaySettings {
  std::vector<std::string> source_uris;  // as given; may hold passwords (see outbox::RedactUri)
  std::vector<outbox::SourceConfig> sources;
  outbox::JetStreamConfig bus;
  outbox::RelayOptions relay;
  Poco::Net::SocketAddress listen;  // /healthz and /metrics
  LogFormat log_format = LogFormat::kText;
  participant::TlsServerFiles tls;  // empty cert_file: plain HTTP
};

// The flags (txcoord/program.h: the same table serves the option parser, --help and the config
// file's keys, where source is a comma-separated list).
const program::FlagTable& Flags();

// The --help text above the flags.
inline constexpr std::string_view kUsage =
    "usage: txrelay --source URI [--source URI ...] [--nats URL] [--stream NAME]\n"
    "               [--subject-prefix PREFIX] [--listen HOST:PORT] [--config FILE] [flags]\n"
    "Publishes the rows of transactional outboxes (table txcoord_outbox) to NATS JetStream,\n"
    "in id order per aggregate, and sets published_at once the broker acknowledged them.\n"
    "Several relays may run on one outbox: one publishes, the others stand by and take over.\n"
    "Serves GET /healthz and GET /metrics. Stops cleanly on SIGTERM or SIGINT.\n";

// Builds and checks the settings. `sources_from_flags`, when not empty, replaces the file's.
Result<RelaySettings> ResolveSettings(const Poco::Util::AbstractConfiguration& config,
                                      const std::vector<std::string>& sources_from_flags);

// "250ms", "10s", "2m", "168h", "7d"; a bare number is seconds.
Result<std::chrono::milliseconds> ParseDuration(std::string_view flag, std::string_view text);

}  // namespace txcoord::relay
