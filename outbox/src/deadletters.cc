// DeadLetterQueue (admin.h): the inbox consumers' dead-letter stream, on the NATS C client.
#include <nats/nats.h>

#include <cstdlib>
#include <ctime>

#include "txcoord/outbox/admin.h"

namespace txcoord::outbox {
namespace {

// The headers the inbox consumer (participant-sdk/src/inbox.cc) puts on a dead letter.
constexpr const char* kDeadLetterPrefix = "Tx-Dead-Letter-";
constexpr const char* kConsumer = "Tx-Dead-Letter-Consumer";
constexpr const char* kReason = "Tx-Dead-Letter-Reason";
constexpr const char* kAttempts = "Tx-Dead-Letter-Attempts";
constexpr const char* kSubject = "Tx-Dead-Letter-Subject";
constexpr const char* kStreamSequence = "Tx-Dead-Letter-Stream-Sequence";
constexpr const char* kEventIdHeader = "Tx-Dead-Letter-Event-Id";

std::string NatsError(natsStatus status, jsErrCode js_error) {
  std::string text = natsStatus_GetText(status);
  const char* last = nats_GetLastError(nullptr);
  if (last != nullptr && last[0] != '\0' && text.find(last) == std::string::npos) {
    text += std::string(" (") + last + ")";
  }
  if (js_error != 0) text += " (JetStream error " + std::to_string(js_error) + ")";
  return text;
}

std::string TimeOfNanos(int64_t nanos) {
  const time_t seconds = static_cast<time_t>(nanos / 1'000'000'000);
  std::tm tm{};
  if (nanos <= 0 || gmtime_r(&seconds, &tm) == nullptr) return "";
  char buffer[96];
  std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>((nanos / 1'000'000) % 1000));
  return buffer;
}

uint64_t ToUnsigned(const std::string& text) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) return 0;
  return std::strtoull(text.c_str(), nullptr, 10);
}

// Whether NATS subject pattern `pattern` ('*' one token, '>' the rest) takes `subject`.
bool SubjectMatches(std::string_view pattern, std::string_view subject) {
  while (true) {
    const size_t p_end = std::min(pattern.find('.'), pattern.size());
    const size_t s_end = std::min(subject.find('.'), subject.size());
    const std::string_view p = pattern.substr(0, p_end);
    const std::string_view s = subject.substr(0, s_end);
    if (p == ">") return !s.empty();
    if (p != "*" && p != s) return false;
    const bool p_last = p_end == pattern.size();
    const bool s_last = s_end == subject.size();
    if (p_last || s_last) return p_last && s_last;
    pattern.remove_prefix(p_end + 1);
    subject.remove_prefix(s_end + 1);
  }
}

std::string HeaderOf(const DeadLetter& letter, std::string_view name) {
  for (const auto& [key, value] : letter.headers) {
    if (key == name) return value;
  }
  return "";
}

DeadLetter LetterOf(natsMsg* msg) {
  DeadLetter letter;
  letter.sequence = natsMsg_GetSequence(msg);
  letter.subject = natsMsg_GetSubject(msg);
  letter.dead_lettered_at = TimeOfNanos(natsMsg_GetTime(msg));
  letter.payload.assign(natsMsg_GetData(msg), static_cast<size_t>(natsMsg_GetDataLength(msg)));
  const char** keys = nullptr;
  int key_count = 0;
  if (natsMsgHeader_Keys(msg, &keys, &key_count) == NATS_OK) {
    for (int k = 0; k < key_count; ++k) {
      const char** values = nullptr;
      int value_count = 0;
      if (natsMsgHeader_Values(msg, keys[k], &values, &value_count) == NATS_OK) {
        for (int v = 0; v < value_count; ++v) letter.headers.emplace_back(keys[k], values[v]);
        free(const_cast<char**>(values));
      }
    }
    free(const_cast<char**>(keys));
  }
  letter.consumer = HeaderOf(letter, kConsumer);
  letter.reason = HeaderOf(letter, kReason);
  letter.attempts = static_cast<int>(ToUnsigned(HeaderOf(letter, kAttempts)));
  letter.original_subject = HeaderOf(letter, kSubject);
  letter.original_sequence = ToUnsigned(HeaderOf(letter, kStreamSequence));
  // The id the consumer's inbox keyed the event on: recorded since the header existed; before,
  // the outbox's Tx-Event-Id, or what follows "dead:{consumer}:" in the dead letter's own id.
  letter.event_id = HeaderOf(letter, kEventIdHeader);
  if (letter.event_id.empty()) letter.event_id = HeaderOf(letter, "Tx-Event-Id");
  if (letter.event_id.empty()) {
    const std::string own = HeaderOf(letter, "Nats-Msg-Id");
    const std::string prefix = "dead:" + letter.consumer + ":";
    if (own.starts_with(prefix)) letter.event_id = own.substr(prefix.size());
  }
  return letter;
}

}  // namespace

class DeadLetterQueue::Impl {
 public:
  explicit Impl(DeadLetterConfig config) : config_(std::move(config)) {}
  ~Impl() {
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
  }

  Status Connect() {
    natsOptions* options = nullptr;
    natsStatus s = natsOptions_Create(&options);
    if (s == NATS_OK) s = natsOptions_SetURL(options, config_.nats_url.c_str());
    if (s == NATS_OK) s = natsOptions_SetTimeout(options, config_.timeout.count());
    if (s == NATS_OK) s = natsOptions_SetName(options, "txctl");
    if (s == NATS_OK) s = natsOptions_SetAllowReconnect(options, false);
    if (s == NATS_OK) s = natsConnection_Connect(&nc_, options);
    natsOptions_Destroy(options);
    if (s != NATS_OK) {
      return Status::Unavailable("cannot connect to NATS at " + config_.nats_url + ": " +
                                 NatsError(s, static_cast<jsErrCode>(0)));
    }
    jsOptions js_options;
    jsOptions_Init(&js_options);
    js_options.Wait = config_.timeout.count();
    s = natsConnection_JetStream(&js_, nc_, &js_options);
    if (s != NATS_OK) {
      return Status::Unavailable("JetStream at " + config_.nats_url + ": " +
                                 NatsError(s, static_cast<jsErrCode>(0)));
    }
    return Status::Ok();
  }

  Result<std::vector<DeadLetter>> List(size_t limit) {
    uint64_t first = 0, last = 0;
    TXCOORD_RETURN_IF_ERROR(ReadStreamInfo(&first, &last, nullptr));
    std::vector<DeadLetter> letters;
    for (uint64_t seq = first; seq != 0 && seq <= last; ++seq) {
      if (limit != 0 && letters.size() >= limit) break;
      natsMsg* msg = nullptr;
      jsErrCode js_error = static_cast<jsErrCode>(0);
      const natsStatus s = js_GetMsg(&msg, js_, config_.stream.c_str(), seq, nullptr, &js_error);
      if (s == NATS_NOT_FOUND || js_error == JSNoMessageFoundErr) continue;  // deleted
      if (s != NATS_OK) {
        return Status::Unavailable("read dead letter " + std::to_string(seq) + " of stream " +
                                   config_.stream + ": " + NatsError(s, js_error));
      }
      letters.push_back(LetterOf(msg));
      natsMsg_Destroy(msg);
    }
    return letters;
  }

  Result<RedriveResult> Redrive(const DeadLetter& letter) {
    const std::string where =
        "dead letter " + std::to_string(letter.sequence) + " (event " + letter.event_id + ")";
    if (letter.original_subject.empty()) {
      return Status::InvalidArgument(where + " has no " + std::string(kSubject) +
                                     " header, so where it came from is not known; publish its "
                                     "payload by hand");
    }
    std::vector<std::string> subjects;
    TXCOORD_RETURN_IF_ERROR(ReadStreamInfo(nullptr, nullptr, &subjects));
    for (const std::string& pattern : subjects) {
      if (SubjectMatches(pattern, letter.original_subject)) {
        return Status::InvalidArgument(where + ": its subject " + letter.original_subject +
                                       " belongs to the dead-letter stream " + config_.stream +
                                       " itself");
      }
    }
    natsMsg* msg = nullptr;
    natsStatus s = natsMsg_Create(&msg, letter.original_subject.c_str(), nullptr,
                                  letter.payload.data(), static_cast<int>(letter.payload.size()));
    for (const auto& [name, value] : letter.headers) {
      if (s != NATS_OK) break;
      if (name == "Nats-Msg-Id" || name == "Tx-Event-Id" || name.starts_with(kDeadLetterPrefix)) {
        continue;
      }
      s = natsMsgHeader_Add(msg, name.c_str(), value.c_str());
    }
    // Consumers key their inbox on Tx-Event-Id: those that applied the original skip this copy.
    if (s == NATS_OK && !letter.event_id.empty()) {
      s = natsMsgHeader_Set(msg, "Tx-Event-Id", letter.event_id.c_str());
    }
    // An id of its own: the original's would be dropped as a duplicate within the window.
    const std::string msg_id = "redrive:" + config_.stream + ":" + std::to_string(letter.sequence);
    if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Nats-Msg-Id", msg_id.c_str());
    jsPubAck* ack = nullptr;
    jsErrCode js_error = static_cast<jsErrCode>(0);
    if (s == NATS_OK) s = js_PublishMsg(&ack, js_, msg, nullptr, &js_error);
    natsMsg_Destroy(msg);
    if (s != NATS_OK) {
      jsPubAck_Destroy(ack);
      return Status::Unavailable(where + ": publish to " + letter.original_subject + ": " +
                                 NatsError(s, js_error) + "; it stays in " + config_.stream);
    }
    RedriveResult result;
    result.dead_letter_sequence = letter.sequence;
    result.event_id = letter.event_id;
    result.consumer = letter.consumer;
    result.subject = letter.original_subject;
    result.stream = ack->Stream != nullptr ? ack->Stream : "";
    result.stream_sequence = ack->Sequence;
    result.duplicate = ack->Duplicate;
    jsPubAck_Destroy(ack);
    js_error = static_cast<jsErrCode>(0);
    s = js_DeleteMsg(js_, config_.stream.c_str(), letter.sequence, nullptr, &js_error);
    if (s != NATS_OK && !Gone(letter.sequence)) {
      return Status::Unavailable(where + " was published again to " + letter.original_subject +
                                 " (stream " + result.stream + ", sequence " +
                                 std::to_string(result.stream_sequence) +
                                 ") but could not be deleted from " + config_.stream + ": " +
                                 NatsError(s, js_error) +
                                 "; re-driving it again within the duplicate window is harmless");
    }
    return result;
  }

 private:
  // Whether message `seq` is no longer in the dead-letter stream (deleted by an earlier re-drive:
  // the server answers the delete of a missing message with a generic failure).
  bool Gone(uint64_t seq) {
    natsMsg* msg = nullptr;
    jsErrCode js_error = static_cast<jsErrCode>(0);
    const natsStatus s = js_GetMsg(&msg, js_, config_.stream.c_str(), seq, nullptr, &js_error);
    natsMsg_Destroy(msg);
    return s == NATS_NOT_FOUND || js_error == JSNoMessageFoundErr;
  }

  Status ReadStreamInfo(uint64_t* first, uint64_t* last, std::vector<std::string>* subjects) {
    jsStreamInfo* info = nullptr;
    jsErrCode js_error = static_cast<jsErrCode>(0);
    const natsStatus s =
        js_GetStreamInfo(&info, js_, config_.stream.c_str(), nullptr, &js_error);
    if (s != NATS_OK) {
      jsStreamInfo_Destroy(info);
      if (js_error == JSStreamNotFoundErr || s == NATS_NOT_FOUND) {
        return Status::NotFound("no dead-letter stream " + config_.stream + " at " +
                                config_.nats_url +
                                ": no inbox consumer has dead-lettered anything there yet, or "
                                "the consumers use another --stream");
      }
      return Status::Unavailable("read stream " + config_.stream + ": " + NatsError(s, js_error));
    }
    if (first != nullptr) *first = info->State.Msgs == 0 ? 0 : info->State.FirstSeq;
    if (last != nullptr) *last = info->State.LastSeq;
    if (subjects != nullptr && info->Config != nullptr) {
      for (int i = 0; i < info->Config->SubjectsLen; ++i) {
        subjects->push_back(info->Config->Subjects[i]);
      }
    }
    jsStreamInfo_Destroy(info);
    return Status::Ok();
  }

  const DeadLetterConfig config_;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
};

Result<std::unique_ptr<DeadLetterQueue>> DeadLetterQueue::Connect(DeadLetterConfig config) {
  auto impl = std::make_unique<Impl>(std::move(config));
  TXCOORD_RETURN_IF_ERROR(impl->Connect());
  return std::unique_ptr<DeadLetterQueue>(new DeadLetterQueue(std::move(impl)));
}

DeadLetterQueue::DeadLetterQueue(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DeadLetterQueue::~DeadLetterQueue() = default;

Result<std::vector<DeadLetter>> DeadLetterQueue::List(size_t limit) { return impl_->List(limit); }

Result<RedriveResult> DeadLetterQueue::Redrive(const DeadLetter& letter) {
  return impl_->Redrive(letter);
}

}  // namespace txcoord::outbox
