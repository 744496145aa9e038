// The transactions bench/txn runs: a 2-branch transfer between two participants, as the bank
// example's client would run it (examples/bank/transfer.h), over the benchmark's own kept-alive
// client (http_client.h) rather than the SDK's CoordinatorClient, so that the load generator's
// JSON work stays small next to the coordinator's on a shared machine.
//
//   2pc  POST /v1/transactions {"protocol":"2pc", 2 branches, "wait":true} -> 200 committed
//   tcc  POST /v1/transactions {"protocol":"tcc"} -> active; then per branch: register it
//        (POST .../branches -> 201), call the participant's Try (POST {participant}/app/try ->
//        200); then POST .../commit {"wait":true} -> 200 committed
//
// A branch's payload is the bank example's {"account": "a17", "delta": -1}. The debit and the
// credit go to different participants, in alternating directions, on accounts spread over
// `accounts` names, so that with many accounts two transfers rarely touch the same one; the
// storage-free participant ignores the payload.
//
// Thread-safety: Run and Hold may be called from any thread concurrently.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "http_client.h"
#include "txcoord/status.h"

namespace txcoord::bench {

enum class Protocol { k2pc, kTcc };
std::string_view ProtocolName(Protocol p);

struct Participant {
  std::string url;       // base URL, http://127.0.0.1:PORT; branch urls are {url}/2pc, {url}/tcc
  ConnectionPool* pool;  // for the tcc Try; not owned
};

class Transfers {
 public:
  // `gtid_prefix` makes the gtids of this run unique (a store is fresh per run anyway).
  Transfers(ConnectionPool& coordinator, std::array<Participant, 2> participants, Protocol protocol,
            std::string gtid_prefix, int accounts);

  // One transfer, to its end. OK only when the coordinator answered it committed; otherwise
  // kUnavailable naming the call, its HTTP status and the start of the reply.
  Status Run(int thread, int64_t seq) const;

  // Starts a transfer and leaves it in flight, with a one-hour deadline: tcc is begun and both
  // branches registered (state active, waiting for the application); 2pc is begun without
  // waiting (state preparing, as long as the participants answer 425 to the prepares).
  Status Hold(int thread, int64_t seq) const;

 private:
  struct Leg {
    std::string branch_id;
    const Participant* participant;
    std::string account;
    int64_t delta;
  };
  std::array<Leg, 2> Legs(int thread, int64_t seq) const;
  std::string Gtid(int thread, int64_t seq) const;
  std::string BranchJson(const Leg& leg) const;
  std::string BeginJson(std::string_view gtid, int timeout_ms, bool wait,
                        const std::array<Leg, 2>* legs) const;
  // Begins the transfer and checks the reply: 2pc with `wait` 200 committed, without 202; tcc
  // 2xx active.
  Status Begin(const std::string& gtid, const std::array<Leg, 2>& legs, int timeout_ms,
               bool wait) const;
  Status RegisterBranch(const std::string& gtid, const Leg& leg) const;

  ConnectionPool& coordinator_;
  const std::array<Participant, 2> participants_;
  const Protocol protocol_;
  const std::string gtid_prefix_;
  const int accounts_;
};

}  // namespace txcoord::bench
