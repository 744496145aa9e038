// txrelay's settings: the flag table, the config file and their validation, the way txcoord's
// are done (coordinator/service/settings.h): every flag may also come from --config FILE under
// the same name without dashes; flags given on the command line override the file.
#pragma once

#include <Poco/Net/SocketAddress.h>
#include <Poco/Util/AbstractConfiguration.h>
#include <Poco/Util/OptionSet.h>

#include <string>
#include <vector>

#include "txcoord/outbox/event_bus.h"
#include "txcoord/outbox/relay.h"
#include "txcoord/outbox/source.h"
#include "txcoord/participant/tls.h"
#include "txcoord/process_log.h"
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

void DefineFlags(Poco::Util::OptionSet& options);
std::string HelpText();

// Records one command-line flag into `flags` (the top configuration layer); --source repeats
// into `sources`.
Status RecordFlag(const std::string& name, const std::string& value,
                  Poco::Util::AbstractConfiguration& flags, std::vector<std::string>& sources);

// Java properties (`key = value`), or INI when the name ends in ".ini". Unknown keys are an
// error. In a file, `source` is a comma-separated list.
Result<Poco::Util::AbstractConfiguration::Ptr> LoadConfigFile(const std::string& path);

// Builds and checks the settings. `sources_from_flags`, when not empty, replaces the file's.
Result<RelaySettings> ResolveSettings(const Poco::Util::AbstractConfiguration& config,
                                      const std::vector<std::string>& sources_from_flags);

// "250ms", "10s", "2m", "168h", "7d"; a bare number is seconds.
Result<std::chrono::milliseconds> ParseDuration(std::string_view flag, std::string_view text);

}  // namespace txcoord::relay
