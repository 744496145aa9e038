// Internal to the outbox library: the constructors behind MakeSource.
#pragma once

#include <memory>
#include <string>

#include "txcoord/outbox/source.h"

namespace txcoord::outbox {

std::unique_ptr<OutboxSource> MakeSqliteSource(const SqliteSourceConfig& config, std::string name);
std::unique_ptr<OutboxSource> MakePostgresSource(const PostgresSourceConfig& config,
                                                 std::string name);

}  // namespace txcoord::outbox
