// The Backend offline: the transaction log opened directly (log.h), while txcoord is stopped.
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <utility>
#include <variant>

#include "backend.h"
#include "txcoord/coordinator/engine.h"
#include "txcoord/coordinator/log.h"

namespace txcoord::txctl {
namespace {

using coordinator::Timestamp;
using std::chrono::milliseconds;

Timestamp Now() {
  return std::chrono::time_point_cast<milliseconds>(std::chrono::system_clock::now());
}

// Records a command emits, appended until the engine has nothing more to write. Bounded: each
// round is what became due once the previous one was durable (a decision, then the end).
constexpr int kMaxAppendRounds = 8;

class OfflineBackend final : public Backend {
 public:
  OfflineBackend(std::unique_ptr<coordinator::TransactionLog> log, std::string description)
      : log_(std::move(log)), description_(std::move(description)) {}

  Result<v1::TransactionList> List(const ListRequest& request) override {
    coordinator::ListQuery query;
    query.state = request.state;
    if (request.older_than) query.created_before = Now() - *request.older_than;
    query.limit = request.limit;
    query.after = request.after;
    auto page = log_->List(query);
    if (!page.ok()) return page.status();
    v1::TransactionList list;
    for (const coordinator::TransactionSummary& s : page->transactions) {
      auto logged = log_->Read(s.gtid);
      if (!logged.ok()) return logged.status();
      *list.add_transactions() = coordinator::FoldRecord(*logged);
    }
    list.set_next(page->next);
    return list;
  }

  Result<v1::Transaction> Get(const std::string& gtid) override {
    auto logged = Read(gtid);
    if (!logged.ok()) return logged.status();
    return coordinator::FoldRecord(*logged);
  }

  Result<v1::TransactionHistory> History(const std::string& gtid) override {
    auto logged = Read(gtid);
    if (!logged.ok()) return logged.status();
    return coordinator::HistoryOf(*logged);
  }

  Result<v1::Transaction> Retry(const std::string& gtid) override {
    auto logged = Unfinished(gtid);
    if (!logged.ok()) return logged.status();
    return Status::Conflict(
        "offline, nothing sends callbacks: txcoord does the retry itself when "
        "it next starts, resending every pending callback of " +
        gtid + " at once (it is " + logged->summary.state + ")");
  }

  Result<v1::Transaction> Abort(const std::string& gtid) override {
    // As the service answers: aborting an aborted transaction is done already.
    auto logged = Read(gtid);
    if (logged.ok() && logged->summary.finished() && logged->summary.state == "aborted") {
      return coordinator::FoldRecord(*logged);
    }
    return RunCommand(gtid, [](coordinator::Engine& e, coordinator::Effects& fx) {
      return e.Abort(Now(), "aborted by an operator (txctl abort, offline)", fx);
    });
  }

  Result<v1::Transaction> Resolve(const std::string& gtid, const std::string& branch_id,
                                  const v1::ResolveRequest& request) override {
    v1::ResolvedRecord resolve;
    resolve.set_branch_id(branch_id);
    resolve.set_as(request.as());
    resolve.set_operator_(request.operator_());
    resolve.set_reason(request.reason());
    return RunCommand(gtid, [&](coordinator::Engine& e, coordinator::Effects& fx) {
      return e.Resolve(Now(), resolve, fx);
    });
  }

  Result<PurgeSlice> Purge(milliseconds older_than, int64_t limit) override {
    const Timestamp before = Now() - older_than;
    int64_t purged = 0;
    if (limit > 0) {
      auto n = log_->Purge(before, limit);
      if (!n.ok()) return n.status();
      purged = *n;
    }
    auto remaining = log_->CountPurgeable(before);
    if (!remaining.ok()) return remaining.status();
    return PurgeSlice{purged, *remaining};
  }

  std::string Describe() const override { return description_; }

 private:
  Result<coordinator::LoggedTransaction> Read(const std::string& gtid) {
    auto logged = log_->Read(gtid);
    if (!logged.ok() && logged.status().code() == StatusCode::kNotFound) {
      return Status::NotFound("transaction " + gtid + " is not in " + description_ +
                              " (never begun, or purged)");
    }
    return logged;
  }

  Result<coordinator::LoggedTransaction> Unfinished(const std::string& gtid) {
    auto logged = Read(gtid);
    if (!logged.ok()) return logged.status();
    if (logged->summary.finished()) {
      return Status::Conflict("transaction " + gtid + " is " + logged->summary.state +
                              ", finished: nothing is outstanding");
    }
    return logged;
  }

  // Runs `command` on the transaction's engine as txcoord's recovery would build it, and
  // appends every record emitted (see backend.h). Callbacks are dropped: txcoord sends them.
  template <typename Fn>
  Result<v1::Transaction> RunCommand(const std::string& gtid, Fn&& command) {
    auto logged = Unfinished(gtid);
    if (!logged.ok()) return logged.status();
    coordinator::Effects fx;
    auto engine = coordinator::RecoverEngine(Now(), *logged, coordinator::EngineOptions{},
                                             std::random_device{}(), fx);
    if (!engine.ok()) {
      return Status::Corruption("cannot rebuild transaction " + gtid +
                                " from its records: " + engine.status().message());
    }
    coordinator::Engine& e = **engine;
    Result<uint64_t> seq = command(e, fx);
    if (!seq.ok()) return seq.status();
    for (int round = 0; !fx.append.empty(); ++round) {
      if (round == kMaxAppendRounds) {
        return Status::Internal("transaction " + gtid + " kept emitting records (a bug)");
      }
      std::vector<v1::LogRecord> records = std::move(fx.append);
      fx.Clear();
      TXCOORD_RETURN_IF_ERROR(log_->Append(std::move(records)));
      e.OnDurable(Now(), e.emitted(), fx);
    }
    return e.View();
  }

  std::unique_ptr<coordinator::TransactionLog> log_;
  std::string description_;
};

}  // namespace

Result<std::unique_ptr<Backend>> OpenOfflineBackend(const Context& ctx) {
  auto config = coordinator::ParseStoreUri(ctx.store_uri);
  if (!config.ok()) {
    return Status::InvalidArgument(
        "--store " + ctx.store_uri +
        " is not sqlite://PATH or postgresql://...: " + config.status().message());
  }
  std::string description;
  if (auto* sqlite = std::get_if<coordinator::SqliteLogConfig>(&*config)) {
    description = "the store sqlite " + sqlite->path;
    std::error_code ec;
    if (!std::filesystem::is_regular_file(sqlite->path, ec)) {
      // OpenLog would create an empty store: a mistyped path must not look like an empty log.
      return Status::Unavailable("there is no store at " + sqlite->path +
                                 " (txcoord creates it when it first starts); check --store");
    }
  } else {
    description = "the store postgresql";
    // Alone on the store, like SQLite's lock: refused while a txcoord uses it.
    std::get<coordinator::PostgresLogConfig>(*config).exclusive = true;
  }
  // The log's messages for a store that fails to open are for txcoord's operator; quiet them.
  spdlog::set_level(spdlog::level::warn);
  auto log = coordinator::OpenLog(*config);
  if (!log.ok()) {
    if (log.status().message().find("in use by another txcoord") != std::string::npos) {
      return Status::Conflict(
          description +
          " is in use by a running txcoord: work through it with --coordinator URL, or stop "
          "it first");
    }
    return Status::Unavailable("cannot open " + description + ": " + log.status().message());
  }
  return std::unique_ptr<Backend>(
      std::make_unique<OfflineBackend>(std::move(log).value(), std::move(description)));
}

}  // namespace txcoord::txctl
