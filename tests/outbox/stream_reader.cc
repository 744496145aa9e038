#include "stream_reader.h"

#include <nats/nats.h>
#include <unistd.h>

#include <atomic>
#include <set>

namespace txcoord::outbox::testing {
namespace {

std::string NatsError(natsStatus s) {
  std::string text = natsStatus_GetText(s);
  const char* last = nats_GetLastError(nullptr);
  if (last != nullptr && last[0] != '\0') text += std::string(" (") + last + ")";
  return text;
}

}  // namespace

natsStatus AddStream(jsCtx* js, const std::string& name, std::chrono::nanoseconds duplicate_window,
                     int64_t max_msgs) {
  jsStreamConfig config;
  jsStreamConfig_Init(&config);
  config.Name = name.c_str();
  const std::string subjects = name + ".>";
  const char* list[] = {subjects.c_str()};
  config.Subjects = list;
  config.SubjectsLen = 1;
  config.Storage = js_FileStorage;
  if (duplicate_window.count() != 0) config.Duplicates = duplicate_window.count();
  if (max_msgs > 0) {
    config.MaxMsgs = max_msgs;
    config.Discard = js_DiscardNew;
  }
  return js_AddStream(nullptr, js, &config, nullptr, nullptr);
}

Result<std::vector<StreamMessage>> ReadStream(const std::string& nats_url,
                                              const std::string& stream) {
  static std::atomic<int> readers{0};
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  natsSubscription* sub = nullptr;
  jsStreamInfo* info = nullptr;
  std::vector<StreamMessage> out;
  const std::string durable =
      "reader_" + std::to_string(getpid()) + "_" + std::to_string(readers.fetch_add(1));
  natsStatus s = natsConnection_ConnectTo(&nc, nats_url.c_str());
  if (s == NATS_OK) s = natsConnection_JetStream(&js, nc, nullptr);
  if (s == NATS_OK) s = js_GetStreamInfo(&info, js, stream.c_str(), nullptr, nullptr);
  uint64_t expected = 0;
  std::string filter = ">";
  if (s == NATS_OK) {
    expected = info->State.Msgs;
    if (info->Config->SubjectsLen > 0) filter = info->Config->Subjects[0];
  }
  if (s == NATS_OK && expected > 0) {
    jsSubOptions options;
    jsSubOptions_Init(&options);
    options.Stream = stream.c_str();
    options.Config.AckPolicy = js_AckNone;
    options.Config.DeliverPolicy = js_DeliverAll;
    options.Config.MaxRequestBatch = 1000;
    s = js_PullSubscribe(&sub, js, filter.c_str(), durable.c_str(), nullptr, &options, nullptr);
  }
  int empty_fetches = 0;
  while (s == NATS_OK && out.size() < expected && empty_fetches < 5) {
    natsMsgList list{};
    const natsStatus f = natsSubscription_Fetch(&list, sub, 1000, 2000, nullptr);
    if (f == NATS_TIMEOUT) {
      ++empty_fetches;
      continue;
    }
    if (f != NATS_OK) {
      s = f;
      break;
    }
    for (int i = 0; i < list.Count; ++i) {
      natsMsg* m = list.Msgs[i];
      StreamMessage message;
      jsMsgMetaData* meta = nullptr;
      if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
        message.sequence = meta->Sequence.Stream;
        jsMsgMetaData_Destroy(meta);
      }
      message.subject = natsMsg_GetSubject(m);
      message.body.assign(natsMsg_GetData(m), static_cast<size_t>(natsMsg_GetDataLength(m)));
      const char** keys = nullptr;
      int count = 0;
      if (natsMsgHeader_Keys(m, &keys, &count) == NATS_OK) {
        for (int k = 0; k < count; ++k) {
          const char* value = nullptr;
          if (natsMsgHeader_Get(m, keys[k], &value) == NATS_OK) {
            message.headers[keys[k]] = value;
          }
        }
        free(const_cast<char**>(keys));
      }
      out.push_back(std::move(message));
    }
    natsMsgList_Destroy(&list);
  }
  const std::string error = s == NATS_OK ? "" : NatsError(s);
  if (sub != nullptr) {
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    js_DeleteConsumer(js, stream.c_str(), durable.c_str(), nullptr, nullptr);
  }
  jsStreamInfo_Destroy(info);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  if (!error.empty()) return Status::Unavailable("read stream " + stream + ": " + error);
  if (out.size() != expected) {
    return Status::Unavailable("read stream " + stream + ": got " + std::to_string(out.size()) +
                               " of " + std::to_string(expected) + " messages");
  }
  return out;
}

std::vector<std::string> CheckExactlyOnceInOrder(const std::vector<StreamMessage>& messages,
                                                 const ExpectedEvents& expected, size_t limit) {
  std::vector<std::string> problems;
  const auto problem = [&](std::string text) {
    if (problems.size() < limit) problems.push_back(std::move(text));
  };
  std::map<std::string, std::string> aggregate_of;  // event id -> aggregate
  std::map<std::string, size_t> position_of;        // event id -> index in its aggregate
  for (const auto& [aggregate, ids] : expected) {
    for (size_t i = 0; i < ids.size(); ++i) {
      aggregate_of[ids[i]] = aggregate;
      position_of[ids[i]] = i;
    }
  }
  std::map<std::string, int> seen;
  std::map<std::string, size_t> next_position;  // aggregate -> index expected next
  for (const StreamMessage& m : messages) {
    const std::string id = m.Header("Nats-Msg-Id");
    if (++seen[id] > 1) {
      problem("event " + id + " is in the stream more than once (again at sequence " +
              std::to_string(m.sequence) + ")");
      continue;
    }
    auto agg = aggregate_of.find(id);
    if (agg == aggregate_of.end()) {
      problem("event " + id + " at sequence " + std::to_string(m.sequence) +
              " was not in any outbox");
      continue;
    }
    const std::string actual_aggregate =
        m.Header("Tx-Aggregate-Type") + "/" + m.Header("Tx-Aggregate-Id");
    if (actual_aggregate != agg->second) {
      problem("event " + id + " carries aggregate " + actual_aggregate + ", the outbox said " +
              agg->second);
    }
    size_t& next = next_position[agg->second];
    if (position_of[id] != next) {
      problem("aggregate " + agg->second + ": event " + id + " (its #" +
              std::to_string(position_of[id] + 1) + ") reached the stream at sequence " +
              std::to_string(m.sequence) + " when #" + std::to_string(next + 1) + " was expected");
    }
    next = std::max(next, position_of[id] + 1);
  }
  for (const auto& [aggregate, ids] : expected) {
    for (const std::string& id : ids) {
      if (!seen.contains(id)) problem("event " + id + " of " + aggregate + " is not in the stream");
    }
  }
  return problems;
}

}  // namespace txcoord::outbox::testing
