// The NATS JetStream EventBus, on the NATS C client (libnats).
#include <Poco/JSON/Parser.h>
#include <nats/nats.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string_view>
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

// Messages done with, destroyed in batches. natsMsg_Destroy hands a message to the client
// library's collector thread and wakes that thread when it sleeps: destroyed one at a time, as
// each is done with, that is a futex wake and a context switch per message (a fifth of the
// relay's pump thread in a drain); in a batch, about one per batch.
class MessageBatch {
 public:
  static constexpr size_t kSize = 256;

  // Adds `msg`, and destroys the batch when it is full or when `now`.
  void Add(natsMsg* msg, bool now) {
    std::vector<natsMsg*> full;
    {
      std::lock_guard lock(mu_);
      msgs_.push_back(msg);
      if (!now && msgs_.size() < kSize) return;
      full.swap(msgs_);
    }
    for (natsMsg* m : full) natsMsg_Destroy(m);
  }

  void DestroyAll() {
    std::vector<natsMsg*> all;
    {
      std::lock_guard lock(mu_);
      all.swap(msgs_);
    }
    for (natsMsg* m : all) natsMsg_Destroy(m);
  }

 private:
  std::mutex mu_;
  std::vector<natsMsg*> msgs_;  // GUARDED_BY(mu_)
};

// What the library's callbacks of one connection need. The NATS C client may still run a
// callback of a connection after natsConnection_Destroy returned (its subscription threads
// finish on their own), so a context is never freed: it is parked in a process-wide list and
// marked dead. One small object per connection made, which is one per reconnect.
struct ConnectionContext {
  EventBus::Sink sink;
  std::atomic<bool> live{true};
  MessageBatch replies;  // read, to destroy; emptied by Disconnect
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

// Reads the decimal number at the front of `text`; false when there is none or it overflows.
bool ReadNumber(std::string_view& text, uint64_t& out) {
  size_t i = 0;
  out = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    const uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (out > (UINT64_MAX - digit) / 10) return false;
    out = out * 10 + digit;
    ++i;
  }
  text.remove_prefix(i);
  return i > 0;
}

// Skips spaces, then `token` if it comes next. Take(text, "") only skips spaces.
bool Take(std::string_view& text, std::string_view token) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  if (!text.starts_with(token)) return false;
  text.remove_prefix(token.size());
  return true;
}

// A JSON string with no escapes in it (stream and domain names have none).
bool TakePlainString(std::string_view& text) {
  if (!Take(text, "\"")) return false;
  const size_t end = text.find('"');
  if (end == text.npos || text.substr(0, end).find('\\') != text.npos) return false;
  text.remove_prefix(end + 1);
  return true;
}

// The PubAck as the server writes it: {"stream":"S", "seq":7} with ', "domain":"D"' and
// ', "duplicate": true' when they apply. False for anything else.
bool ReadCommonPubAck(std::string_view rest, uint64_t& seq, bool& duplicate) {
  if (!(Take(rest, "{") && Take(rest, "\"stream\"") && Take(rest, ":") && TakePlainString(rest) &&
        Take(rest, ",") && Take(rest, "\"seq\"") && Take(rest, ":") && Take(rest, "") &&
        ReadNumber(rest, seq))) {
    return false;
  }
  if (std::string_view probe = rest; Take(probe, ",") && Take(probe, "\"domain\"")) {
    if (!(Take(probe, ":") && TakePlainString(probe))) return false;
    rest = probe;
  }
  duplicate = false;
  if (std::string_view probe = rest; Take(probe, ",") && Take(probe, "\"duplicate\"")) {
    if (!(Take(probe, ":") && Take(probe, "true"))) return false;
    duplicate = true;
    rest = probe;
  }
  return Take(rest, "}") && Take(rest, "") && rest.empty();
}

// The reply to one publish, on the connection's reply subscription: "<inbox>.<token>".
void OnReply(natsConnection*, natsSubscription* sub, natsMsg* msg, void* closure) {
  auto* context = static_cast<ConnectionContext*>(closure);
  std::string_view subject = natsMsg_GetSubject(msg);
  const size_t dot = subject.rfind('.');
  std::string_view digits = dot == subject.npos ? std::string_view() : subject.substr(dot + 1);
  BusEvent event;
  if (context->live.load() && ReadNumber(digits, event.token) && digits.empty()) {
    if (natsMsg_IsNoResponders(msg)) {
      event.status = Status::Unavailable(
          "JetStream refused the message: no stream takes its subject (no responders)");
    } else {
      ReadPubAck(std::string_view(natsMsg_GetData(msg),
                                  static_cast<size_t>(natsMsg_GetDataLength(msg))),
                 event);
    }
    context->sink(event);
  }
  // The batch goes as soon as no more replies wait: a quiet relay keeps none.
  int waiting = 0;
  const bool idle = natsSubscription_GetPending(sub, &waiting, nullptr) != NATS_OK || waiting == 0;
  context->replies.Add(msg, idle || !context->live.load());
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
    // Publishes go out as core NATS messages with a reply subject of this connection's inbox;
    // JetStream answers each on it. The client library's own async JetStream publish does the
    // same but keeps a map of every message in flight and parses each ack into a structure
    // (about a tenth of the relay's CPU per event); the relay tracks what is in flight itself.
    natsInbox* inbox = nullptr;
    s = natsInbox_Create(&inbox);
    if (s == NATS_OK) {
      reply_ = std::string(inbox) + ".";
      reply_prefix_size_ = reply_.size();
      s = natsConnection_Subscribe(&replies_, nc_, (reply_ + "*").c_str(), OnReply, context_);
    }
    natsInbox_Destroy(inbox);
    // Replies are bounded by the caller's window; the subscription must never drop one as a
    // slow consumer (a dropped ack would only surface as a publish timeout).
    if (s == NATS_OK) s = natsSubscription_SetPendingLimits(replies_, -1, -1);
    if (s == NATS_OK) s = natsConnection_Flush(nc_);
    if (s != NATS_OK) {
      const std::string why = NatsError(s);
      Disconnect();
      return Status::Unavailable("subscribe to JetStream replies: " + why);
    }
    jsOptions js_options;
    jsOptions_Init(&js_options);
    js_options.Wait = 5000;
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
    sent_.DestroyAll();
    ConnectionContext* context = context_;
    if (context != nullptr) context->live.store(false);
    context_ = nullptr;
    max_payload_.store(0);
    // Replies still on their way are dropped: the context is dead, so none calls back.
    natsSubscription_Destroy(replies_);
    replies_ = nullptr;
    // A reply the callback still takes now is destroyed at once: the context is dead.
    if (context != nullptr) context->replies.DestroyAll();
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
    if (nc_ == nullptr || replies_ == nullptr) return Status::Unavailable("not connected to NATS");
    reply_.resize(reply_prefix_size_);
    reply_ += std::to_string(token);
    natsMsg* msg = nullptr;
    natsStatus s = natsMsg_Create(&msg, message.subject.c_str(), reply_.c_str(),
                                  message.body.data(), static_cast<int>(message.body.size()));
    for (const auto& [name, value] : message.headers) {
      if (s != NATS_OK) break;
      s = natsMsgHeader_Set(msg, name.c_str(), value.c_str());
    }
    if (s != NATS_OK) {
      natsMsg_Destroy(msg);
      return Status::Internal("build NATS message: " + NatsError(s));
    }
    s = natsConnection_PublishMsg(nc_, msg);
    sent_.Add(msg, false);
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
  natsSubscription* replies_ = nullptr;
  jsCtx* js_ = nullptr;
  std::string reply_;  // "<inbox>." then the token of the message being published
  size_t reply_prefix_size_ = 0;
  MessageBatch sent_;  // published, to destroy
  ConnectionContext* context_ = nullptr;
  std::atomic<int64_t> max_payload_{0};
};

}  // namespace

// JetStream answers with a JSON PubAck or with
// {"error":{"code":503,"err_code":10077,"description":"..."}}. The server's own PubAck shape is
// read by hand (a general parser costs microseconds per ack); anything else goes through Poco's.
void ReadPubAck(std::string_view body, BusEvent& event) {
  uint64_t seq = 0;
  bool duplicate = false;
  if (ReadCommonPubAck(body, seq, duplicate)) {
    event.stream_sequence = seq;
    event.duplicate = duplicate;
    return;
  }
  std::string why = "an unreadable acknowledgement";
  try {
    Poco::JSON::Parser parser;
    const auto object = parser.parse(std::string(body)).extract<Poco::JSON::Object::Ptr>();
    if (const auto error = object->getObject("error"); error != nullptr) {
      why = error->optValue<std::string>("description", "no description");
      const int code = error->optValue<int>("err_code", 0);
      if (code != 0) why += " (JetStream error " + std::to_string(code) + ")";
    } else if (object->has("seq")) {
      event.stream_sequence = object->getValue<uint64_t>("seq");
      event.duplicate = object->optValue<bool>("duplicate", false);
      return;
    }
  } catch (const std::exception&) {
    // `why` stays as it is: not JSON, or not the shape of a PubAck.
  }
  const std::string shown(body.substr(0, 200));
  event.status = Status::Unavailable("JetStream refused the message: " + why +
                                     (why.starts_with("an unreadable") ? ": " + shown : ""));
}

std::unique_ptr<EventBus> MakeJetStreamBus(JetStreamConfig config, EventBus::Sink sink) {
  return std::make_unique<JetStreamBus>(std::move(config), std::move(sink));
}

}  // namespace txcoord::outbox
