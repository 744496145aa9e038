#include "workload.h"

#include <utility>

namespace txcoord::bench {
namespace {

constexpr int kRunTimeoutMs = 10'000;
constexpr int kHoldTimeoutMs = 3'600'000;
constexpr size_t kMaxEchoedBody = 200;

// Checks a reply: the HTTP status (`want_status`, or any 2xx when 0) and, when `want_state` is
// not empty, the record's top-level state.
Status Expect(const Result<HttpReply>& reply, int want_status, std::string_view want_state,
              const std::string& what) {
  if (!reply.ok()) return reply.status().WithContext(what);
  const bool status_ok = want_status == 0 ? reply->status / 100 == 2 : reply->status == want_status;
  if (status_ok && (want_state.empty() || TopLevelState(reply->body) == want_state)) {
    return Status::Ok();
  }
  std::string expected = want_status == 0 ? "2xx" : std::to_string(want_status);
  if (!want_state.empty()) expected += " " + std::string(want_state);
  return Status::Unavailable(what + ": expected " + expected + ", got HTTP " +
                             std::to_string(reply->status) + ": " +
                             reply->body.substr(0, kMaxEchoedBody));
}

// A cheap, well-spread hash of (thread, seq), to pick accounts without a shared generator.
uint64_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  return x ^ (x >> 33);
}

}  // namespace

std::string_view ProtocolName(Protocol p) { return p == Protocol::k2pc ? "2pc" : "tcc"; }

Transfers::Transfers(ConnectionPool& coordinator, std::array<Participant, 2> participants,
                     Protocol protocol, std::string gtid_prefix, int accounts)
    : coordinator_(coordinator),
      participants_(std::move(participants)),
      protocol_(protocol),
      gtid_prefix_(std::move(gtid_prefix)),
      accounts_(accounts) {}

std::string Transfers::Gtid(int thread, int64_t seq) const {
  return gtid_prefix_ + "-t" + std::to_string(thread) + "-" + std::to_string(seq);
}

std::array<Transfers::Leg, 2> Transfers::Legs(int thread, int64_t seq) const {
  const uint64_t h = Mix((static_cast<uint64_t>(thread) << 40) ^ static_cast<uint64_t>(seq));
  const auto account = [&](uint64_t bits) {
    return "a" + std::to_string(bits % static_cast<uint64_t>(accounts_));
  };
  const int from = static_cast<int>(seq % 2);  // alternate directions: balances stay put
  return {Leg{"debit", &participants_[from], account(h), -1},
          Leg{"credit", &participants_[1 - from], account(h >> 32), 1}};
}

std::string Transfers::BranchJson(const Leg& leg) const {
  return R"({"branch_id":")" + leg.branch_id + R"(","url":")" + leg.participant->url + "/" +
         std::string(ProtocolName(protocol_)) + R"(","payload":{"account":")" + leg.account +
         R"(","delta":)" + std::to_string(leg.delta) + "}}";
}

std::string Transfers::BeginJson(std::string_view gtid, int timeout_ms, bool wait,
                                 const std::array<Leg, 2>* legs) const {
  std::string json = R"({"gtid":")" + std::string(gtid) + R"(","protocol":")" +
                     std::string(ProtocolName(protocol_)) + R"(","timeout_ms":)" +
                     std::to_string(timeout_ms);
  if (legs != nullptr) {
    json += R"(,"branches":[)" + BranchJson((*legs)[0]) + "," + BranchJson((*legs)[1]) + "]";
  }
  return json + R"(,"wait":)" + (wait ? "true" : "false") + "}";
}

Status Transfers::RegisterBranch(const std::string& gtid, const Leg& leg) const {
  return Expect(coordinator_.Post("/v1/transactions/" + gtid + "/branches", BranchJson(leg), gtid),
                0, "", "tcc " + gtid + " register " + leg.branch_id);
}

Status Transfers::Begin(const std::string& gtid, const std::array<Leg, 2>& legs, int timeout_ms,
                        bool wait) const {
  // A tcc begin carries no branches: they are registered one by one, each before its Try.
  const bool two_phase = protocol_ == Protocol::k2pc;
  auto reply = coordinator_.Post(
      "/v1/transactions", BeginJson(gtid, timeout_ms, wait, two_phase ? &legs : nullptr), gtid);
  const std::string what = std::string(ProtocolName(protocol_)) + " " + gtid + " begin";
  if (!two_phase) return Expect(reply, 0, "active", what);
  return wait ? Expect(reply, 200, "committed", what) : Expect(reply, 202, "", what);
}

Status Transfers::Run(int thread, int64_t seq) const {
  const std::string gtid = Gtid(thread, seq);
  const std::array<Leg, 2> legs = Legs(thread, seq);
  if (protocol_ == Protocol::k2pc) return Begin(gtid, legs, kRunTimeoutMs, /*wait=*/true);
  TXCOORD_RETURN_IF_ERROR(Begin(gtid, legs, kRunTimeoutMs, /*wait=*/false));
  for (const Leg& leg : legs) {
    TXCOORD_RETURN_IF_ERROR(RegisterBranch(gtid, leg));
    const std::string try_body = R"({"gtid":")" + gtid + R"(","branch_id":")" + leg.branch_id +
                                 R"(","phase":"try","payload":{"account":")" + leg.account +
                                 R"(","delta":)" + std::to_string(leg.delta) + "}}";
    TXCOORD_RETURN_IF_ERROR(Expect(leg.participant->pool->Post("/app/try", try_body, gtid), 200, "",
                                   "tcc " + gtid + " try " + leg.branch_id));
  }
  return Expect(coordinator_.Post("/v1/transactions/" + gtid + "/commit", R"({"wait":true})", gtid),
                200, "committed", "tcc " + gtid + " commit");
}

Status Transfers::Hold(int thread, int64_t seq) const {
  const std::string gtid = Gtid(thread, seq);
  const std::array<Leg, 2> legs = Legs(thread, seq);
  TXCOORD_RETURN_IF_ERROR(Begin(gtid, legs, kHoldTimeoutMs, /*wait=*/false));
  if (protocol_ == Protocol::kTcc) {
    for (const Leg& leg : legs) TXCOORD_RETURN_IF_ERROR(RegisterBranch(gtid, leg));
  }
  return Status::Ok();
}

}  // namespace txcoord::bench
