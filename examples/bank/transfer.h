// A money transfer between two banks as one distributed transaction, driven from the
// application's side: the code a service would write with the participant SDK.
//
//   2pc: one begin with both branches; the coordinator prepares and commits them.
//   3pc: the same, with can-commit, pre-commit and commit.
//   tcc: begin, then per branch: register it with the coordinator, call the bank's Try
//        (POST {bank}/app/try); then commit, or abort when a Try said no.
//
// Every call is retried on transient failures (coordinator or bank restarting) with the same
// gtid, which makes each step idempotent: a repeated begin returns the same transaction, a
// repeated registration is not an error, a repeated Try is a no-op behind the bank's barrier.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "txcoord/participant/client.h"
#include "txcoord/status.h"

namespace txcoord::examples::bank {

struct Transfer {
  std::string protocol = "2pc";  // "2pc", "3pc" or "tcc"
  std::string gtid;
  std::string from_bank;  // base URL of the bank process, e.g. http://127.0.0.1:7001
  std::string from_account;
  std::string to_bank;
  std::string to_account;
  int64_t amount = 0;
  int timeout_ms = 10'000;
  std::string traceparent;
};

struct TransferResult {
  std::string state;   // "committed" or "aborted"; another state when `give_up_after` passed
  std::string reason;  // why it aborted
};

// Runs the transfer to a terminal state, retrying transient failures until `give_up_after`.
// Errors: kInvalidArgument / kPermissionDenied for a request the coordinator refuses;
// kUnavailable when the coordinator could not be reached for `give_up_after`.
Result<TransferResult> RunTransfer(participant::CoordinatorClient& coordinator,
                                   const Transfer& transfer,
                                   std::chrono::milliseconds give_up_after);

}  // namespace txcoord::examples::bank
