// The NATS JetStream EventBus, on the NATS C client (libnats).
#include <nats/nats.h>

#include <atomic>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "txcoord/outbox/event_bus.h"

namespace txcoord::outbox {
namespace {

std::string NatsError(natsStatus status, int js_error = 0) {
  std::string text = natsStatus_GetText(status);
  const char* last = nats_GetLastError(nullptr);
  if (last != nullptr && last[0] != '\0' && text.find(last) == std::string::npos) {
    text += std::string(" (") + last + ")";
  }
  if (js_error != 0) text += " (JetStream error " + std::to_string(js_error) + ")";
  return text;
}

// What the library's callbacks of one connection need. The NATS C client may still run a
// callback of a connection after natsConnection_Destroy returned (its subscription threads
// finish on their own), so a context is never freed: it is parked in a process-wide list and
// marked dead. One small object per connection made, which is one per reconnect.
struct ConnectionContext {
  EventBus::Sink sink;
  std::atomic<bool> live{true};
  std::mutex mu;
  std::unordered_map<const natsMsg*, uint64_t> tokens;  // GUARDED_BY(mu)
};

ConnectionContext* NewContext(EventBus::Sink sink) {
  static std::mutex mu;
  static std::vector<std::unique_ptr<ConnectionContext>>* parked =
      new std::vector<std::unique_ptr<ConnectionContext>>();
  auto context = std::make_unique<ConnectionContext>();
  context->sink = std::move(sink);
  ConnectionContext* raw = context.get();
  std::lock_guard lock(mu);
  parked->push_back(std::move(context));
  return raw;
}

void OnAck(jsCtx*, natsMsg* msg, jsPubAck* ack, jsPubAckErr* error, void* closure) {
  auto* context = static_cast<ConnectionContext*>(closure);
  uint64_t token = 0;
  bool known = false;
  {
    std::lock_guard lock(context->mu);
    if (auto it = context->tokens.find(msg); it != context->tokens.end()) {
      token = it->second;
      known = true;
      context->tokens.erase(it);
    }
  }
  if (known && context->live.load()) {
    BusEvent event;
    event.token = token;
    if (ack != nullptr) {
      event.duplicate = ack->Duplicate;
      event.stream_sequence = ack->Sequence;
    } else {
      const int code = error != nullptr ? static_cast<int>(error->ErrCode) : 0;
      const std::string text =
          error != nullptr && error->ErrText != nullptr ? error->ErrText : "no acknowledgement";
      event.status =
          Status::Unavailable("JetStream refused the message: " + text +
                              (code != 0 ? " (JetStream error " + std::to_string(code) + ")" : ""));
    }
    context->sink(event);
  }
  natsMsg_Destroy(msg);
}

void OnClosed(natsConnection*, void* closure) {
  auto* context = static_cast<ConnectionContext*>(closure);
  if (!context->live.exchange(false)) return;
  BusEvent event;
  event.kind = BusEvent::Kind::kDisconnected;
  event.status = Status::Unavailable("the connection to NATS was lost");
  context->sink(event);
}

class JetStreamBus final : public EventBus {
 public:
  JetStreamBus(JetStreamConfig config, Sink sink)
      : config_(std::move(config)), sink_(std::move(sink)) {}
  ~JetStreamBus() override { Disconnect(); }

  Status Connect() override {
    Disconnect();
    context_ = NewContext(sink_);
    natsOptions* options = nullptr;
    natsStatus s = natsOptions_Create(&options);
    if (s == NATS_OK) s = natsOptions_SetURL(options, config_.url.c_str());
    if (s == NATS_OK) s = natsOptions_SetTimeout(options, config_.connect_timeout.count());
    if (s == NATS_OK) s = natsOptions_SetName(options, config_.client_name.c_str());
    if (s == NATS_OK) s = natsOptions_SetAllowReconnect(options, false);
    // A dead server (no TCP reset: a partition, a frozen host) is noticed within ~6 s.
    if (s == NATS_OK) s = natsOptions_SetPingInterval(options, 2000);
    if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(options, 3);
    if (s == NATS_OK) s = natsOptions_SetIOBufSize(options, 256 * 1024);
    if (s == NATS_OK) s = natsOptions_SetClosedCB(options, OnClosed, context_);
    if (s == NATS_OK) s = natsConnection_Connect(&nc_, options);
    natsOptions_Destroy(options);
    if (s != NATS_OK) {
      const std::string why = NatsError(s);
      Disconnect();
      return Status::Unavailable("cannot connect to NATS at " + config_.url + ": " + why);
    }
    jsOptions js_options;
    jsOptions_Init(&js_options);
    js_options.Wait = 5000;
    js_options.PublishAsync.MaxPending = config_.max_pending;
    js_options.PublishAsync.AckHandler = OnAck;
    js_options.PublishAsync.AckHandlerClosure = context_;
    s = natsConnection_JetStream(&js_, nc_, &js_options);
    if (s != NATS_OK) {
      const std::string why = NatsError(s);
      Disconnect();
      return Status::Unavailable("JetStream context: " + why);
    }
    if (Status ensured = EnsureStream(); !ensured.ok()) {
      Disconnect();
      return ensured;
    }
    max_payload_.store(natsConnection_GetMaxPayload(nc_));
    return Status::Ok();
  }

  void Disconnect() override {
    if (context_ != nullptr) context_->live.store(false);
    context_ = nullptr;
    max_payload_.store(0);
    // The context first: it drops the messages still waiting for an ack without calling back.
    jsCtx_Destroy(js_);
    js_ = nullptr;
    natsConnection_Destroy(nc_);
    nc_ = nullptr;
  }

  bool connected() const override {
    return nc_ != nullptr && context_ != nullptr && context_->live.load() &&
           natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED;
  }

  int64_t max_payload() const override { return max_payload_.load(); }

  Status PublishAsync(const BusMessage& message, uint64_t token) override {
    if (js_ == nullptr) return Status::Unavailable("not connected to NATS");
    natsMsg* msg = nullptr;
    natsStatus s = natsMsg_Create(&msg, message.subject.c_str(), nullptr, message.body.data(),
                                  static_cast<int>(message.body.size()));
    for (const auto& [name, value] : message.headers) {
      if (s != NATS_OK) break;
      s = natsMsgHeader_Set(msg, name.c_str(), value.c_str());
    }
    if (s != NATS_OK) {
      natsMsg_Destroy(msg);
      return Status::Internal("build NATS message: " + NatsError(s));
    }
    {
      // Before publishing: the ack may arrive before js_PublishMsgAsync returns.
      std::lock_guard lock(context_->mu);
      context_->tokens.emplace(msg, token);
    }
    const natsMsg* key = msg;
    s = js_PublishMsgAsync(js_, &msg, nullptr);
    if (s != NATS_OK) {
      std::lock_guard lock(context_->mu);
      context_->tokens.erase(key);
    }
    natsMsg_Destroy(msg);  // null when the library took it
    if (s != NATS_OK) return Status::Unavailable("publish to NATS: " + NatsError(s));
    return Status::Ok();
  }

  std::string Describe() const override { return config_.url + " stream " + config_.stream; }

 private:
  Status EnsureStream() {
    const std::string subjects = config_.subject_prefix + ".>";
    jsStreamInfo* info = nullptr;
    jsErrCode js_error = static_cast<jsErrCode>(0);
    natsStatus s = js_GetStreamInfo(&info, js_, config_.stream.c_str(), nullptr, &js_error);
    if (s == NATS_OK) {
      bool covered = false;
      for (int i = 0; i < info->Config->SubjectsLen; ++i) {
        const std::string subject = info->Config->Subjects[i];
        if (subject == subjects || subject == ">") covered = true;
      }
      jsStreamInfo_Destroy(info);
      if (!covered) {
        return Status::InvalidArgument("stream " + config_.stream + " exists but does not take " +
                                       subjects + "; add that subject to it or use --stream");
      }
      return Status::Ok();
    }
    if (s != NATS_NOT_FOUND && js_error != JSStreamNotFoundErr) {
      return Status::Unavailable("look up stream " + config_.stream + ": " +
                                 NatsError(s, js_error));
    }
    if (!config_.create_stream) {
      return Status::InvalidArgument("stream " + config_.stream + " does not exist");
    }
    jsStreamConfig stream;
    jsStreamConfig_Init(&stream);
    stream.Name = config_.stream.c_str();
    const char* subject_list[] = {subjects.c_str()};
    stream.Subjects = subject_list;
    stream.SubjectsLen = 1;
    stream.Storage = js_FileStorage;
    stream.Retention = js_LimitsPolicy;
    stream.Duplicates =
        std::chrono::duration_cast<std::chrono::nanoseconds>(config_.duplicate_window).count();
    js_error = static_cast<jsErrCode>(0);
    s = js_AddStream(nullptr, js_, &stream, nullptr, &js_error);
    if (s != NATS_OK && js_error != JSStreamNameExistErr) {  // another relay made it meanwhile
      return Status::Unavailable("create stream " + config_.stream + ": " + NatsError(s, js_error));
    }
    return Status::Ok();
  }

  const JetStreamConfig config_;
  const Sink sink_;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  ConnectionContext* context_ = nullptr;
  std::atomic<int64_t> max_payload_{0};
};

}  // namespace

std::unique_ptr<EventBus> MakeJetStreamBus(JetStreamConfig config, EventBus::Sink sink) {
  return std::make_unique<JetStreamBus>(std::move(config), std::move(sink));
}

}  // namespace txcoord::outbox
