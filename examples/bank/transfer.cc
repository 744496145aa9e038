#include "transfer.h"

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/URI.h>

#include <sstream>
#include <thread>

#include "txcoord/schemas/json.h"

namespace txcoord::examples::bank {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

v1::Branch MakeBranch(const std::string& id, const std::string& url, const std::string& account,
                      int64_t delta) {
  v1::Branch b;
  b.set_branch_id(id);
  b.set_url(url);
  auto& fields = *b.mutable_payload()->mutable_struct_value()->mutable_fields();
  fields["account"].set_string_value(account);
  fields["delta"].set_number_value(static_cast<double>(delta));
  return b;
}

// Unavailable: nothing happened; unknown outcome: the reply was lost. Both are safe to repeat,
// since every call carries the gtid and is idempotent.
bool Retryable(const Status& s) {
  return s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kUnknownOutcome;
}

// Retries `call` while it fails with a retryable error and time is left.
template <typename Fn>
auto Retry(Clock::time_point give_up, Fn&& call) -> decltype(call()) {
  milliseconds pause(20);
  for (;;) {
    auto result = call();
    if (result.ok() || !Retryable(result.status()) || Clock::now() >= give_up) return result;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, milliseconds(500));
  }
}

// The bank's Try: 200 held, 409 refused, anything else transient.
Status CallTry(const std::string& bank, const std::string& gtid, const v1::Branch& branch) {
  try {
    const Poco::URI uri(bank);
    Poco::Net::HTTPClientSession session(uri.getHost(), uri.getPort());
    session.setTimeout(Poco::Timespan(5, 0));
    v1::Callback body;
    body.set_gtid(gtid);
    body.set_branch_id(branch.branch_id());
    body.set_phase("try");
    *body.mutable_payload() = branch.payload();
    const std::string json = MessageToJson(body, {.print_defaults = false});
    Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_POST, "/app/try",
                                   Poco::Net::HTTPMessage::HTTP_1_1);
    request.setContentType("application/json");
    request.setContentLength(static_cast<std::streamsize>(json.size()));
    session.sendRequest(request) << json;
    Poco::Net::HTTPResponse response;
    std::istream& in = session.receiveResponse(response);
    std::ostringstream reply;
    reply << in.rdbuf();
    const int status = response.getStatus();
    if (status / 100 == 2) return Status::Ok();
    if (status == 409) return Status::Conflict(reply.str());
    return Status::Unavailable("try answered " + std::to_string(status) + ": " + reply.str());
  } catch (const std::exception& e) {
    return Status::Unavailable(std::string("try: ") + e.what());
  }
}

struct Unit {};

}  // namespace

Result<TransferResult> RunTransfer(participant::CoordinatorClient& coordinator, const Transfer& t,
                                   milliseconds give_up_after) {
  const auto give_up = Clock::now() + give_up_after;
  participant::CallOptions call;
  call.traceparent = t.traceparent;
  const v1::Branch debit =
      MakeBranch("debit", t.from_bank + "/" + t.protocol, t.from_account, -t.amount);
  const v1::Branch credit =
      MakeBranch("credit", t.to_bank + "/" + t.protocol, t.to_account, t.amount);
  v1::BeginRequest begin;
  begin.set_gtid(t.gtid);
  begin.set_protocol(t.protocol);
  begin.set_timeout_ms(t.timeout_ms);
  if (t.protocol == "2pc" || t.protocol == "3pc") {  // the coordinator drives both phases
    *begin.add_branches() = debit;
    *begin.add_branches() = credit;
    begin.set_wait(true);
  }
  auto begun = Retry(give_up, [&] { return coordinator.Begin(begin, call); });
  if (!begun.ok()) return begun.status();

  Result<participant::TransactionReply> outcome = *begun;
  if (t.protocol == "tcc") {
    bool refused = false;
    std::string refusal;
    for (const v1::Branch* b : {&debit, &credit}) {
      auto registered = Retry(give_up, [&] {
        Status s = coordinator.RegisterBranch(t.gtid, *b, call);
        return s.ok() ? Result<Unit>(Unit{}) : Result<Unit>(s);
      });
      if (!registered.ok()) {
        // 409: the transaction is no longer active (it passed its deadline): its outcome stands.
        if (registered.status().code() == StatusCode::kConflict) break;
        return registered.status();
      }
      const std::string& bank = b == &debit ? t.from_bank : t.to_bank;
      auto tried = Retry(give_up, [&] {
        Status s = CallTry(bank, t.gtid, *b);
        return s.ok() ? Result<Unit>(Unit{}) : Result<Unit>(s);
      });
      if (!tried.ok()) {
        refused = true;
        refusal = tried.status().message();
        break;
      }
    }
    outcome = Retry(give_up, [&] {
      auto r =
          refused ? coordinator.Abort(t.gtid, true, call) : coordinator.Commit(t.gtid, true, call);
      // A commit refused because the transaction aborted meanwhile (deadline): read the outcome.
      if (!r.ok() && r.status().code() == StatusCode::kConflict) {
        auto tx = coordinator.Get(t.gtid, call);
        if (!tx.ok()) return Result<participant::TransactionReply>(tx.status());
        return Result<participant::TransactionReply>(participant::TransactionReply{*tx, 200});
      }
      return r;
    });
    if (!outcome.ok()) return outcome.status();
    (void)refusal;
  }
  // Not terminal yet (a participant slow to acknowledge): poll until it is.
  v1::Transaction tx = outcome->transaction;
  milliseconds pause(50);
  while (tx.state() != "committed" && tx.state() != "aborted" && Clock::now() < give_up) {
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, milliseconds(1000));
    auto got = coordinator.Get(t.gtid, call);
    if (got.ok()) tx = *got;
  }
  return TransferResult{tx.state(), tx.reason()};
}

}  // namespace txcoord::examples::bank
