// outbox_relay: how fast the relay (outbox/include/txcoord/outbox/relay.h) moves committed outbox
// rows into JetStream, beside the floor that bounds it, measured in the same run on the same
// broker:
//
//   - raw_async_publish: one client publishing 256-byte messages to a JetStream stream with
//     asynchronous publishes (4096 in flight), no headers: the broker's own rate here. The
//     relay cannot beat it; the issue's target is >= 50% of it.
//   - raw_async_publish_relay_shape: the same, but each message shaped like the relay's (the
//     seven headers, a unique Nats-Msg-Id the broker deduplicates on). Informational: what the
//     message format alone costs.
//
// Then, for each source (SQLite, PostgreSQL):
//   - drain: N events committed beforehand (256-byte JSON payloads, 1,000 aggregates); the relay
//     starts and publishes them all: events/s from start to the last ack.
//   - lag: two writers commit events at a fixed rate (default 5,000/s in all, in transactions of
//     10) while the relay runs; per event, the time from its COMMIT returning to the
//     broker's ack reaching the relay: p50/p99 (target: p99 <= 50 ms at 5,000 events/s).
//
// A program, not a test: it prints figures and asserts nothing. Exit status: 0 when every run
// finished (targets met or not), 1 when the benchmark failed, 2 on a bad command line.
#include <nats/nats.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "txcoord/outbox/outbox.h"
#include "txcoord/outbox/relay.h"
#include "txcoord/testing/nats_server.h"
#include "txcoord/testing/postgres_server.h"

namespace txcoord::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr double kTargetRatio = 0.5;   // of raw_async_publish
constexpr double kTargetP99Ms = 50.0;  // at the target rate
constexpr int kPayloadBytes = 256;
constexpr int kAggregates = 10000;

constexpr char kUsage[] = R"(usage: outbox_relay [options]

Measures txrelay's throughput (a backlog of committed events drained to JetStream) and its lag
(commit to broker ack at a fixed rate) for SQLite and PostgreSQL outboxes, beside the raw async
JetStream publish rate of the same broker measured in the same run. Starts its own nats-server
and PostgreSQL 15 (test rig) in temp dirs.

  --source S       sqlite, postgresql or all (default: all)
  --events N       events in each drain run and raw publish run (default: 100000)
  --rate R         events/s of the lag runs (default: 5000)
  --seconds S      length of each lag run (default: 5)
  --json           one JSON object per line on stdout; progress on stderr
  --help           this text

Exit status: 0 when every run finished (targets met or not), 1 when the benchmark failed,
2 on a bad command line.
)";

struct Options {
  bool sqlite = true;
  bool postgres = true;
  int64_t events = 100000;
  int rate = 5000;
  double seconds = 5;
  bool json = false;
};

template <typename T>
bool ParseNumber(std::string_view text, T& out) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

std::optional<Options> ParseFlags(int argc, char** argv, std::string& error) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--json") {
      o.json = true;
      continue;
    }
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) {
      error = "unknown flag or missing value: " + std::string(arg);
      return std::nullopt;
    }
    const std::string_view value = argv[++i];
    if (arg == "--source") {
      o.sqlite = value == "sqlite" || value == "all";
      o.postgres = value == "postgresql" || value == "all";
      if (!o.sqlite && !o.postgres) {
        error = "--source wants sqlite, postgresql or all";
        return std::nullopt;
      }
    } else if (arg == "--events") {
      if (!ParseNumber(value, o.events) || o.events < 1000 || o.events > 10'000'000) {
        error = "--events wants 1000 to 10000000";
        return std::nullopt;
      }
    } else if (arg == "--rate") {
      if (!ParseNumber(value, o.rate) || o.rate < 100 || o.rate > 100000) {
        error = "--rate wants 100 to 100000";
        return std::nullopt;
      }
    } else if (arg == "--seconds") {
      if (!ParseNumber(value, o.seconds) || !(o.seconds >= 1) || o.seconds > 600) {
        error = "--seconds wants 1 to 600";
        return std::nullopt;
      }
    } else {
      error = "unknown flag " + std::string(arg);
      return std::nullopt;
    }
  }
  return o;
}

std::string Payload(int aggregate, int64_t n) {
  std::string p = R"({"customer":"c-)" + std::to_string(aggregate) + R"(","seq":)" +
                  std::to_string(n) + R"(,"note":")";
  p.append(kPayloadBytes - p.size() - 2, 'x');
  return p + "\"}";
}

v1::OutboxEvent Event(int64_t n) {
  v1::OutboxEvent e;
  const int aggregate = static_cast<int>(n % kAggregates);
  e.set_aggregate_type("customer");
  e.set_aggregate_id("c-" + std::to_string(aggregate));
  e.set_event_type("CreditLimitChanged");
  e.set_payload(Payload(aggregate, n));
  (*e.mutable_headers())["content-type"] = "application/json";
  return e;
}

double Percentile(std::vector<double>& values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t rank = std::clamp<size_t>(
      static_cast<size_t>(std::ceil(p * static_cast<double>(values.size()))), 1, values.size());
  return values[rank - 1];
}

// ---- raw publishes ----------------------------------------------------------------------------

struct RawResult {
  double msgs_per_s = 0;
  int64_t errors = 0;
};

void CountAck(jsCtx*, natsMsg* msg, jsPubAck* ack, jsPubAckErr*, void* closure) {
  auto* counters = static_cast<std::pair<std::atomic<int64_t>, std::atomic<int64_t>>*>(closure);
  (ack != nullptr ? counters->first : counters->second).fetch_add(1);
  natsMsg_Destroy(msg);
}

Result<RawResult> MeasureRaw(const std::string& url, const std::string& stream, int64_t count,
                             bool relay_shape) {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  std::pair<std::atomic<int64_t>, std::atomic<int64_t>> counters{0, 0};
  natsOptions* options = nullptr;
  natsOptions_Create(&options);
  natsOptions_SetURL(options, url.c_str());
  natsOptions_SetIOBufSize(options, 256 * 1024);
  natsStatus s = natsConnection_Connect(&nc, options);
  natsOptions_Destroy(options);
  jsOptions js_options;
  jsOptions_Init(&js_options);
  js_options.PublishAsync.MaxPending = 4096;
  js_options.PublishAsync.AckHandler = CountAck;
  js_options.PublishAsync.AckHandlerClosure = &counters;
  if (s == NATS_OK) s = natsConnection_JetStream(&js, nc, &js_options);
  if (s == NATS_OK) {
    jsStreamConfig config;
    jsStreamConfig_Init(&config);
    config.Name = stream.c_str();
    const std::string subjects = stream + ".>";
    const char* list[] = {subjects.c_str()};
    config.Subjects = list;
    config.SubjectsLen = 1;
    config.Storage = js_FileStorage;
    config.Duplicates =
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::minutes(2)).count();
    s = js_AddStream(nullptr, js, &config, nullptr, nullptr);
  }
  if (s != NATS_OK) {
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return Status::Unavailable(std::string("raw publish setup: ") + natsStatus_GetText(s));
  }
  const std::string subject = stream + ".customer.CreditLimitChanged";
  const std::string body = Payload(1, 1);
  const auto start = Clock::now();
  for (int64_t i = 0; i < count && s == NATS_OK; ++i) {
    if (!relay_shape) {
      s = js_PublishAsync(js, subject.c_str(), body.data(), static_cast<int>(body.size()), nullptr);
      continue;
    }
    natsMsg* msg = nullptr;
    const std::string id = "raw-" + std::to_string(i) + "-" + std::to_string(getpid());
    s = natsMsg_Create(&msg, subject.c_str(), nullptr, body.data(), static_cast<int>(body.size()));
    natsMsgHeader_Set(msg, "Nats-Msg-Id", id.c_str());
    natsMsgHeader_Set(msg, "Tx-Event-Id", id.c_str());
    natsMsgHeader_Set(msg, "Tx-Event-Type", "CreditLimitChanged");
    natsMsgHeader_Set(msg, "Tx-Aggregate-Type", "customer");
    natsMsgHeader_Set(msg, "Tx-Aggregate-Id", "c-1");
    natsMsgHeader_Set(msg, "Tx-Outbox-Id", std::to_string(i).c_str());
    natsMsgHeader_Set(msg, "content-type", "application/json");
    if (s == NATS_OK) s = js_PublishMsgAsync(js, &msg, nullptr);
    natsMsg_Destroy(msg);
  }
  jsPubOptions complete;
  jsPubOptions_Init(&complete);
  complete.MaxWait = 60000;
  if (s == NATS_OK) s = js_PublishAsyncComplete(js, &complete);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  RawResult r;
  r.msgs_per_s = static_cast<double>(counters.first.load()) / seconds;
  r.errors = counters.second.load() + (count - counters.first.load() - counters.second.load());
  js_DeleteStream(js, stream.c_str(), nullptr, nullptr);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  if (s != NATS_OK)
    return Status::Unavailable(std::string("raw publish: ") + natsStatus_GetText(s));
  return r;
}

// ---- outboxes ---------------------------------------------------------------------------------

// Writes events into one outbox the way a service does. One per source kind.
class Writer {
 public:
  virtual ~Writer() = default;
  // Appends `count` events from number `first` in one transaction; returns their event ids.
  virtual Result<std::vector<std::string>> Write(int64_t first, int count) = 0;
  virtual outbox::SourceConfig Config() const = 0;
  virtual std::string Name() const = 0;
};

class SqliteWriter final : public Writer {
 public:
  explicit SqliteWriter(std::string path) : path_(std::move(path)) {
    sqlite3_open(path_.c_str(), &db_);
    sqlite3_exec(db_, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL", nullptr, nullptr,
                 nullptr);
    sqlite3_busy_timeout(db_, 10000);
    (void)outbox::EnsureSchema(db_);
  }
  ~SqliteWriter() override { sqlite3_close(db_); }
  Result<std::vector<std::string>> Write(int64_t first, int count) override {
    std::vector<std::string> ids;
    sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    for (int i = 0; i < count; ++i) {
      auto id = outbox::Append(db_, Event(first + i));
      if (!id.ok()) {
        sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
        return id.status();
      }
      ids.push_back(std::move(id).value());
    }
    if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
      return Status::Unavailable(sqlite3_errmsg(db_));
    }
    return ids;
  }
  outbox::SourceConfig Config() const override { return outbox::SqliteSourceConfig{path_}; }
  std::string Name() const override { return "sqlite://" + path_; }

 private:
  std::string path_;
  sqlite3* db_ = nullptr;
};

class PostgresWriter final : public Writer {
 public:
  explicit PostgresWriter(std::string conninfo) : conninfo_(std::move(conninfo)), conn_(conninfo_) {
    pqxx::work w(conn_);
    (void)outbox::EnsureSchema(w);
    w.commit();
  }
  Result<std::vector<std::string>> Write(int64_t first, int count) override {
    try {
      std::vector<std::string> ids;
      pqxx::work w(conn_);
      for (int i = 0; i < count; ++i) {
        auto id = outbox::Append(w, Event(first + i));
        if (!id.ok()) return id.status();
        ids.push_back(std::move(id).value());
      }
      w.commit();
      return ids;
    } catch (const std::exception& e) {
      return Status::Unavailable(e.what());
    }
  }
  outbox::SourceConfig Config() const override { return outbox::PostgresSourceConfig{conninfo_}; }
  std::string Name() const override { return "postgresql"; }

 private:
  std::string conninfo_;
  pqxx::connection conn_;
};

// ---- relay runs -------------------------------------------------------------------------------

struct DrainResult {
  double events_per_s = 0;
  double seconds = 0;
  int64_t duplicates = 0;
  double cpu_us_per_event = 0;  // this process (the relay's threads, the NATS client's)
  double cpu_machine = 0;       // CPUs busy machine-wide: the broker, the database, the relay
};

double SelfCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// Busy CPU seconds of the whole machine, from /proc/stat (all but idle, iowait and steal).
double MachineBusySeconds() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq;
  return static_cast<double>(user + nice + system + irq + softirq) /
         static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct LagResult {
  double offered_per_s = 0;
  double acked_per_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double max_ms = 0;
  int64_t samples = 0;
};

outbox::JetStreamConfig BusConfig(const std::string& url, const std::string& stream) {
  outbox::JetStreamConfig c;
  c.url = url;
  c.stream = stream;
  c.subject_prefix = stream;
  return c;
}

Result<DrainResult> MeasureDrain(Writer& writer, const std::string& url, const std::string& stream,
                                 int64_t events) {
  constexpr int kPreloadBatch = 5000;
  for (int64_t n = 0; n < events; n += kPreloadBatch) {
    auto written = writer.Write(n, static_cast<int>(std::min<int64_t>(kPreloadBatch, events - n)));
    if (!written.ok()) return written.status().WithContext("preload");
  }
  std::atomic<int64_t> acked{0};
  std::atomic<int64_t> duplicates{0};
  std::mutex mu;
  std::condition_variable done;
  Clock::time_point last_ack;
  outbox::RelayHooks hooks;
  hooks.on_published = [&](size_t, int64_t, const std::string&, bool duplicate) {
    if (duplicate) ++duplicates;
    if (acked.fetch_add(1) + 1 == events) {
      std::lock_guard lock(mu);
      last_ack = Clock::now();
      done.notify_all();
    }
  };
  outbox::Relay relay(
      1, outbox::Relay::DefaultParts({writer.Config()}, {writer.Name()}, BusConfig(url, stream)),
      stream, outbox::RelayOptions{}, hooks);
  const double cpu_start = SelfCpuSeconds();
  const double machine_start = MachineBusySeconds();
  const auto start = Clock::now();
  relay.Start();
  std::unique_lock lock(mu);
  const bool finished =
      done.wait_for(lock, std::chrono::minutes(10), [&] { return acked.load() >= events; });
  lock.unlock();
  const double cpu_used = SelfCpuSeconds() - cpu_start;
  const double machine_used = MachineBusySeconds() - machine_start;
  relay.Stop();
  if (!finished) {
    return Status::Unavailable("the relay published " + std::to_string(acked.load()) + " of " +
                               std::to_string(events) + " events in 10 minutes");
  }
  DrainResult r;
  r.seconds = std::chrono::duration<double>(last_ack - start).count();
  r.events_per_s = static_cast<double>(events) / r.seconds;
  r.duplicates = duplicates.load();
  r.cpu_us_per_event = cpu_used * 1e6 / static_cast<double>(events);
  r.cpu_machine = machine_used / r.seconds;
  return r;
}

// `writers` (two connections to one outbox, as a service's request threads would be) share the
// rate, each on its own fixed schedule.
Result<LagResult> MeasureLag(const std::vector<Writer*>& writers, const std::string& url,
                             const std::string& stream, const Options& o) {
  std::mutex mu;
  // An ack may reach the relay before the writer has taken its clock reading after COMMIT
  // returned; whichever of the two comes second computes the lag (clamped at zero).
  std::unordered_map<std::string, Clock::time_point> committed;  // GUARDED_BY(mu)
  std::unordered_map<std::string, Clock::time_point> acked_at;   // GUARDED_BY(mu)
  std::vector<double> lags_ms;                                   // GUARDED_BY(mu)
  const auto lag = [&](Clock::time_point commit, Clock::time_point ack) {
    lags_ms.push_back(
        std::max(0.0, std::chrono::duration<double, std::milli>(ack - commit).count()));
  };
  std::atomic<int64_t> acked{0};
  outbox::RelayHooks hooks;
  hooks.on_published = [&](size_t, int64_t, const std::string& event_id, bool) {
    const auto now = Clock::now();
    ++acked;
    std::lock_guard lock(mu);
    auto it = committed.find(event_id);
    if (it == committed.end()) {
      acked_at.emplace(event_id, now);
      return;
    }
    lag(it->second, now);
    committed.erase(it);
  };
  Writer& first = *writers.front();
  outbox::Relay relay(
      1, outbox::Relay::DefaultParts({first.Config()}, {first.Name()}, BusConfig(url, stream)),
      stream, outbox::RelayOptions{}, hooks);
  relay.Start();
  // Wait until the relay leads and its bus is up, so start-up is not measured.
  for (int i = 0; i < 2000; ++i) {
    const auto s = relay.Statuses()[0];
    if (s.role == outbox::SourceStatus::Role::kLeader && s.bus_connected) break;
    std::this_thread::sleep_for(milliseconds(5));
  }
  // Transactions of 10 events, each writer at rate/writers, on a fixed schedule (a late writer
  // catches up rather than lowering the rate).
  constexpr int kPerTransaction = 10;
  const double per_writer_rate = static_cast<double>(o.rate) / static_cast<double>(writers.size());
  const auto interval = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(kPerTransaction / per_writer_rate));
  const int64_t transactions = static_cast<int64_t>(o.seconds * per_writer_rate / kPerTransaction);
  const auto start = Clock::now();
  std::atomic<int64_t> written{0};
  std::atomic<int64_t> failed{0};
  std::vector<std::thread> threads;
  for (size_t w = 0; w < writers.size(); ++w) {
    threads.emplace_back([&, w] {
      const int64_t base = static_cast<int64_t>(w) * 1'000'000'000;
      for (int64_t t = 0; t < transactions; ++t) {
        std::this_thread::sleep_until(start + t * interval);
        auto ids = writers[w]->Write(base + t * kPerTransaction, kPerTransaction);
        const auto at = Clock::now();
        if (!ids.ok()) {
          ++failed;
          continue;
        }
        written += kPerTransaction;
        std::lock_guard lock(mu);
        for (auto& id : *ids) {
          auto it = acked_at.find(id);
          if (it != acked_at.end()) {
            lag(at, it->second);
            acked_at.erase(it);
          } else {
            committed.emplace(std::move(id), at);
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  const double write_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (int i = 0; i < 2000 && acked.load() < written.load(); ++i) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  relay.Stop();
  if (failed > 0) return Status::Unavailable(std::to_string(failed.load()) + " writes failed");
  LagResult r;
  r.offered_per_s = static_cast<double>(written.load()) / write_seconds;
  r.acked_per_s = static_cast<double>(acked.load()) / write_seconds;
  std::lock_guard lock(mu);
  r.samples = static_cast<int64_t>(lags_ms.size());
  r.p50_ms = Percentile(lags_ms, 0.50);
  r.p99_ms = Percentile(lags_ms, 0.99);
  r.max_ms = lags_ms.empty() ? 0 : lags_ms.back();
  return r;
}

// ---- output -----------------------------------------------------------------------------------

std::string Num(double v, int decimals = 1) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, v);
  return buffer;
}

void Progress(const Options& o, const std::string& text) {
  std::fprintf(o.json ? stderr : stdout, "%s\n", text.c_str());
  std::fflush(o.json ? stderr : stdout);
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("model name")) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

int Run(const Options& o) {
  auto nats = testing::NatsServer::Start();
  if (!nats.ok()) {
    std::fprintf(stderr, "outbox_relay: %s\n", nats.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<testing::PostgresServer> pg;
  if (o.postgres) {
    auto started = testing::PostgresServer::Start();
    if (!started.ok()) {
      std::fprintf(stderr, "outbox_relay: %s\n", started.status().ToString().c_str());
      return 1;
    }
    pg = std::move(started).value();
  }
  std::string tmpl = (fs::temp_directory_path() / "outbox-relay-bench-XXXXXX").string();
  const std::string dir = mkdtemp(tmpl.data());
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{dir};

  utsname u{};
  uname(&u);
  const std::string url = (*nats)->Url();
  if (o.json) {
    std::printf(
        "{\"bench\":\"outbox_relay\",\"kind\":\"machine\",\"nproc\":%ld,\"cpu\":\"%s\","
        "\"kernel\":\"%s %s\",\"sqlite_version\":\"%s\",\"events\":%lld,\"rate\":%d,"
        "\"payload_bytes\":%d}\n",
        sysconf(_SC_NPROCESSORS_ONLN), CpuModel().c_str(), u.sysname, u.release,
        sqlite3_libversion(), static_cast<long long>(o.events), o.rate, kPayloadBytes);
  } else {
    std::printf(
        "outbox_relay: %lld events of %d bytes per run; lag runs at %d events/s for %.0f s\n",
        static_cast<long long>(o.events), kPayloadBytes, o.rate, o.seconds);
    std::printf("machine     %ld CPUs (%s), %s %s; nats-server started by the rig (file store)\n",
                sysconf(_SC_NPROCESSORS_ONLN), CpuModel().c_str(), u.sysname, u.release);
    std::printf("sqlite      %s (WAL, synchronous=FULL writers)%s\n\n", sqlite3_libversion(),
                pg ? "; PostgreSQL 15 started by the rig (fsync=on)" : "");
  }

  Progress(o, "floor: raw async JetStream publishes ...");
  auto raw = MeasureRaw(url, "RAW", o.events, false);
  if (!raw.ok()) {
    std::fprintf(stderr, "outbox_relay: %s\n", raw.status().ToString().c_str());
    return 1;
  }
  auto shaped = MeasureRaw(url, "RAWSHAPED", o.events, true);
  if (!shaped.ok()) {
    std::fprintf(stderr, "outbox_relay: %s\n", shaped.status().ToString().c_str());
    return 1;
  }
  if (o.json) {
    std::printf(
        "{\"bench\":\"outbox_relay\",\"kind\":\"floor\",\"name\":\"raw_async_publish\","
        "\"msgs_per_s\":%.0f,\"errors\":%lld}\n",
        raw->msgs_per_s, static_cast<long long>(raw->errors));
    std::printf(
        "{\"bench\":\"outbox_relay\",\"kind\":\"floor\",\"name\":"
        "\"raw_async_publish_relay_shape\",\"msgs_per_s\":%.0f,\"errors\":%lld}\n",
        shaped->msgs_per_s, static_cast<long long>(shaped->errors));
  } else {
    std::printf("%-32s %10s msgs/s  (errors %lld)\n", "raw_async_publish",
                Num(raw->msgs_per_s, 0).c_str(), static_cast<long long>(raw->errors));
    std::printf("%-32s %10s msgs/s  (errors %lld; 7 headers, deduplicated ids)\n\n",
                "raw_async_publish_relay_shape", Num(shaped->msgs_per_s, 0).c_str(),
                static_cast<long long>(shaped->errors));
    std::printf("%-10s %11s %7s %8s %8s %8s %11s %10s %10s %10s %8s\n", "source", "drain_ev/s",
                "ratio", "target", "us/event", "cpu_mach", "lag_offered", "lag_p50_ms",
                "lag_p99_ms", "lag_max_ms", "target");
  }
  std::fflush(stdout);

  int failures = 0;
  const auto run_source = [&](const std::string& name, std::unique_ptr<Writer> drain_writer,
                              std::unique_ptr<Writer> lag_writer,
                              std::unique_ptr<Writer> lag_writer_2) {
    Progress(o, name + ": drain of " + std::to_string(o.events) + " events ...");
    auto drain = MeasureDrain(*drain_writer, url, "DRAIN_" + name, o.events);
    Progress(o, name + ": lag at " + std::to_string(o.rate) + " events/s ...");
    auto lag = MeasureLag({lag_writer.get(), lag_writer_2.get()}, url, "LAG_" + name, o);
    if (!drain.ok() || !lag.ok()) {
      std::fprintf(stderr, "outbox_relay: %s: %s\n", name.c_str(),
                   (!drain.ok() ? drain.status() : lag.status()).ToString().c_str());
      ++failures;
      return;
    }
    const double ratio = drain->events_per_s / raw->msgs_per_s;
    const bool throughput_met = ratio >= kTargetRatio;
    const bool lag_met = lag->p99_ms <= kTargetP99Ms;
    if (o.json) {
      std::printf(
          "{\"bench\":\"outbox_relay\",\"kind\":\"relay\",\"source\":\"%s\",\"drain_events_per_s\":"
          "%.0f,\"drain_seconds\":%.3f,\"ratio_to_raw\":%.3f,\"target_ratio\":%.2f,"
          "\"throughput_target_met\":%s,\"relay_cpu_us_per_event\":%.2f,\"cpu_machine\":%.2f,"
          "\"lag_offered_per_s\":%.0f,\"lag_acked_per_s\":%.0f,"
          "\"lag_samples\":%lld,\"lag_p50_ms\":%.2f,\"lag_p99_ms\":%.2f,\"lag_max_ms\":%.2f,"
          "\"target_p99_ms\":%.0f,\"lag_target_met\":%s}\n",
          name.c_str(), drain->events_per_s, drain->seconds, ratio, kTargetRatio,
          throughput_met ? "true" : "false", drain->cpu_us_per_event, drain->cpu_machine,
          lag->offered_per_s, lag->acked_per_s, static_cast<long long>(lag->samples), lag->p50_ms,
          lag->p99_ms, lag->max_ms, kTargetP99Ms, lag_met ? "true" : "false");
    } else {
      std::printf("%-10s %11s %6sx %8s %8s %8s %11s %10s %10s %10s %8s\n", name.c_str(),
                  Num(drain->events_per_s, 0).c_str(), Num(ratio, 2).c_str(),
                  throughput_met ? "met" : "NOT met", Num(drain->cpu_us_per_event, 1).c_str(),
                  Num(drain->cpu_machine, 2).c_str(), Num(lag->offered_per_s, 0).c_str(),
                  Num(lag->p50_ms, 2).c_str(), Num(lag->p99_ms, 2).c_str(),
                  Num(lag->max_ms, 2).c_str(), lag_met ? "met" : "NOT met");
    }
    std::fflush(stdout);
  };
  if (o.sqlite) {
    run_source("sqlite", std::make_unique<SqliteWriter>(dir + "/drain.db"),
               std::make_unique<SqliteWriter>(dir + "/lag.db"),
               std::make_unique<SqliteWriter>(dir + "/lag.db"));
  }
  if (o.postgres) {
    auto drain_db = pg->CreateDatabase("bench_drain");
    auto lag_db = pg->CreateDatabase("bench_lag");
    if (!drain_db.ok() || !lag_db.ok()) {
      std::fprintf(stderr, "outbox_relay: cannot create databases\n");
      return 1;
    }
    run_source("postgresql", std::make_unique<PostgresWriter>(pg->ConnInfo(*drain_db)),
               std::make_unique<PostgresWriter>(pg->ConnInfo(*lag_db)),
               std::make_unique<PostgresWriter>(pg->ConnInfo(*lag_db)));
  }
  if (!o.json) {
    std::printf(
        "\ntargets (informational): drain >= %.0f%% of raw_async_publish; lag p99 <= %.0f ms "
        "at %d events/s\n",
        kTargetRatio * 100, kTargetP99Ms, o.rate);
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace txcoord::bench

int main(int argc, char** argv) {
  std::string error;
  auto options = txcoord::bench::ParseFlags(argc, argv, error);
  if (!options) {
    std::fprintf(stderr, "outbox_relay: %s; see --help\n", error.c_str());
    return 2;
  }
  // The relay logs through spdlog; a benchmark's output is its figures (warnings still show).
  spdlog::set_level(spdlog::level::warn);
  return txcoord::bench::Run(*options);
}
