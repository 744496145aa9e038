// customer-service: owns each customer's credit limit and the credit reserved against it.
//
// - A limit change and its CreditLimitChanged event commit in one local SQLite transaction (the
//   transactional outbox); txrelay publishes the event.
// - The CreateOrder saga's first step, "reserve-credit", runs here: its action reserves an
//   order's amount, its compensation releases it. Each runs behind the SDK's barrier
//   (SqliteSagaStep), whose row is written in the same local transaction as the reservation, so
//   a repeated callback is a no-op and a release that overtakes its reserve blocks it.
//   The available credit is the limit minus the reservations; a reservation that does not fit it
//   is refused (409), which turns the saga to compensation. This is where the limit is enforced:
//   order-service's replica only serves a pre-check.
//
//   PUT  /credit-limit {"customer":"c-17","limit":100}  -> {"customer":"c-17","limit":100,
//                                                            "version":1}
//   GET  /customers              -> {"customers":[{"customer","limit","version","reserved",
//                                                  "available"}]}
//   GET  /customers?format=text  -> one "customer limit version" line each, sorted
//   GET  /credit?customer=c-17   -> {"customer","limit","version","reserved","available",
//                                    "reservations"}; 404 for an unknown customer
//   POST /credit/reserve         the saga step's action, payload {"order","customer","amount"}
//   POST /credit/release         its compensation
//   GET  /healthz
//
// Lowering a limit below what is reserved is allowed (its event goes out as always): the available
// credit is then negative and every new reservation is refused until the limit is raised again.
// The reservation of a committed order stays; this example never completes or returns orders.
#include <mutex>
#include <optional>

#include "service_common.h"
#include "txcoord/outbox/outbox.h"
#include "txcoord/participant/barrier.h"
#include "txcoord/participant/saga.h"
#include "txcoord/schemas/ids.h"

namespace credit_limit {
namespace {

using txcoord::Status;
using txcoord::participant::CallbackContext;

constexpr char kUsage[] =
    "usage: customer-service [--listen HOST:PORT] [--db PATH]\n"
    "Owns credit limits; writes CreditLimitChanged to its outbox in the same transaction;\n"
    "serves the CreateOrder saga's reserve-credit step at /credit/reserve and /credit/release.\n";

struct Credit {
  int64_t limit = 0;
  int64_t version = 0;
  int64_t reserved = 0;
  int64_t available() const { return limit - reserved; }
};

// The customer's credit, or nullopt when the customer has no limit.
std::optional<Credit> ReadCredit(sqlite3* db, const std::string& customer) {
  Statement s(db,
              "SELECT c.credit_limit, c.version, (SELECT coalesce(sum(amount), 0) FROM "
              "credit_reservations WHERE customer = c.id) FROM customers c WHERE c.id = ?1");
  s.Bind(1, customer);
  if (!s.Step()) return std::nullopt;
  return Credit{s.Int(0), s.Int(1), s.Int(2)};
}

// The step's payload, as order-service sends it.
struct Reservation {
  std::string order;
  std::string customer;
  int64_t amount = 0;
};

// A payload that cannot be read will not get better with retries: refused (409), so the saga
// compensates at once.
txcoord::Result<Reservation> ParseReservation(const CallbackContext& ctx) {
  try {
    auto payload = ParseObject(ctx.payload_json);
    Reservation r{payload->getValue<std::string>("order"),
                  payload->getValue<std::string>("customer"),
                  payload->getValue<int64_t>("amount")};
    if (r.amount <= 0) return Status::Conflict("the amount to reserve must be positive");
    return r;
  } catch (const std::exception& e) {
    return Status::Conflict(
        R"(the payload must be {"order": "<id>", "customer": "<id>", "amount": <n>}: )" +
        std::string(e.what()));
  }
}

// reserve-credit's action, inside the barrier's transaction.
Status ReserveCredit(sqlite3* db, const CallbackContext& ctx) {
  auto reservation = ParseReservation(ctx);
  if (!reservation.ok()) return reservation.status();
  const Reservation& r = *reservation;
  return Unthrown([&] {
    const std::optional<Credit> credit = ReadCredit(db, r.customer);
    if (!credit) return Status::Conflict("customer " + r.customer + " has no credit limit");
    if (r.amount > credit->available()) {
      return Status::Conflict("credit of " + std::to_string(r.amount) + " for order " + r.order +
                              " does not fit: " + r.customer + " has " +
                              std::to_string(credit->available()) + " available (limit " +
                              std::to_string(credit->limit) + ", reserved " +
                              std::to_string(credit->reserved) + ")");
    }
    Statement(db,
              "INSERT INTO credit_reservations (gtid, order_id, customer, amount) VALUES (?1, ?2, "
              "?3, ?4)")
        .Bind(1, ctx.gtid)
        .Bind(2, r.order)
        .Bind(3, r.customer)
        .Bind(4, r.amount)
        .Step();
    return Status::Ok();
  });
}

// reserve-credit's compensation. The barrier calls it only after ReserveCredit succeeded for
// this saga, so the reservation is there.
Status ReleaseCredit(sqlite3* db, const CallbackContext& ctx) {
  return Unthrown([&] {
    Statement(db, "DELETE FROM credit_reservations WHERE gtid = ?1").Bind(1, ctx.gtid).Step();
    return Status::Ok();
  });
}

class CustomerService {
 public:
  explicit CustomerService(const std::string& path)
      : db_(OpenDatabase(path)), reserve_credit_(db_, ReserveCredit, ReleaseCredit, &mu_) {
    Exec(db_,
         "CREATE TABLE IF NOT EXISTS customers (id TEXT PRIMARY KEY, credit_limit INTEGER NOT "
         "NULL, version INTEGER NOT NULL);"
         "CREATE TABLE IF NOT EXISTS credit_reservations (gtid TEXT PRIMARY KEY, order_id TEXT "
         "NOT NULL, customer TEXT NOT NULL, amount INTEGER NOT NULL);"
         "CREATE INDEX IF NOT EXISTS credit_reservations_customer ON credit_reservations "
         "(customer)");
    if (Status s = txcoord::outbox::EnsureSchema(db_); !s.ok()) {
      throw std::runtime_error("outbox schema: " + s.message());
    }
    if (Status s = txcoord::participant::Barrier::EnsureSchema(db_); !s.ok()) {
      throw std::runtime_error("barrier schema: " + s.message());
    }
  }
  ~CustomerService() { sqlite3_close(db_); }

  // Everything is registered before the server starts; the service must outlive it.
  void Register(txcoord::participant::CallbackServer& server) {
    Check(server.AddSagaStep("/credit/reserve", "/credit/release", &reserve_credit_));
    Check(server.AddRoute("PUT", "/credit-limit", [this](const HttpRequest& q, HttpResponse& r) {
      SetLimit(q.body, r);
    }));
    Check(server.AddRoute("GET", "/customers", [this](const HttpRequest& q, HttpResponse& r) {
      List(q.QueryParam("format") == "text", r);
    }));
    Check(server.AddRoute("GET", "/credit", [this](const HttpRequest& q, HttpResponse& r) {
      ShowCredit(q.QueryParam("customer"), r);
    }));
    Check(server.AddRoute("GET", "/healthz", [](const HttpRequest&, HttpResponse& r) {
      r.body = R"({"status":"ok"})";
    }));
  }

 private:
  static void Check(const Status& s) {
    if (!s.ok()) throw std::runtime_error(s.ToString());
  }

  void SetLimit(const std::string& body, HttpResponse& response) {
    std::string customer;
    int64_t limit = 0;
    try {
      auto request = ParseObject(body);
      customer = request->getValue<std::string>("customer");
      limit = request->getValue<int64_t>("limit");
    } catch (const std::exception&) {
      response.SetError(400, "INVALID_ARGUMENT",
                        R"(the body must be {"customer": "<id>", "limit": <whole number>})");
      return;
    }
    if (!txcoord::IsValidId(customer)) {
      response.SetError(400, "INVALID_ARGUMENT",
                        "customer ids are 1 to 128 characters of [A-Za-z0-9._:-]");
      return;
    }
    if (limit < 0) {
      response.SetError(400, "INVALID_ARGUMENT", "limit must not be negative");
      return;
    }
    std::lock_guard lock(mu_);
    // The business change and its event: one transaction, so both commit or neither does.
    Exec(db_, "BEGIN IMMEDIATE");
    try {
      int64_t version = 0;
      {  // finalized before COMMIT, which fails while a statement is still running
        Statement upsert(db_,
                         "INSERT INTO customers (id, credit_limit, version) VALUES (?1, ?2, 1) "
                         "ON CONFLICT (id) DO UPDATE SET credit_limit = excluded.credit_limit, "
                         "version = customers.version + 1 RETURNING version");
        upsert.Bind(1, customer).Bind(2, limit);
        if (!upsert.Step()) throw std::runtime_error("the upsert returned no version");
        version = upsert.Int(0);
      }

      Poco::JSON::Object payload;
      payload.set("customer", customer);
      payload.set("limit", limit);
      payload.set("version", version);
      txcoord::v1::OutboxEvent event;
      event.set_aggregate_type("customer");
      event.set_aggregate_id(customer);
      event.set_event_type("CreditLimitChanged");
      event.set_payload(Json(payload));
      (*event.mutable_headers())["content-type"] = "application/json";
      auto appended = txcoord::outbox::Append(db_, event);
      if (!appended.ok()) {
        Exec(db_, "ROLLBACK");
        response.SetError(400, "INVALID_ARGUMENT", appended.status().message());
        return;
      }
      Exec(db_, "COMMIT");
      Reply(response, 200, payload);
    } catch (const std::exception&) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;  // answered 500 by the server
    }
  }

  void List(bool text, HttpResponse& response) {
    std::lock_guard lock(mu_);
    Statement s(db_,
                "SELECT c.id, c.credit_limit, c.version, (SELECT coalesce(sum(amount), 0) FROM "
                "credit_reservations WHERE customer = c.id) FROM customers c ORDER BY c.id");
    Poco::JSON::Array customers;
    std::string lines;
    while (s.Step()) {
      Poco::JSON::Object c;
      c.set("customer", s.Text(0));
      c.set("limit", s.Int(1));
      c.set("version", s.Int(2));
      c.set("reserved", s.Int(3));
      c.set("available", s.Int(1) - s.Int(3));
      customers.add(c);
      // The replica's format, so that the two can be compared line by line.
      lines += s.Text(0) + " " + std::to_string(s.Int(1)) + " " + std::to_string(s.Int(2)) + "\n";
    }
    if (text) return ReplyText(response, lines);
    Poco::JSON::Object body;
    body.set("customers", customers);
    Reply(response, 200, body);
  }

  void ShowCredit(const std::string& customer, HttpResponse& response) {
    std::lock_guard lock(mu_);
    const std::optional<Credit> credit = ReadCredit(db_, customer);
    if (!credit) {
      response.SetError(404, "NOT_FOUND",
                        "no customer " + txcoord::PrintableForMessage(customer, 128) +
                            " (give ?customer=<id> of a customer with a limit)");
      return;
    }
    Statement s(db_,
                "SELECT order_id, amount FROM credit_reservations WHERE customer = ?1 ORDER BY "
                "order_id");
    s.Bind(1, customer);
    Poco::JSON::Object reservations;
    while (s.Step()) reservations.set(s.Text(0), s.Int(1));
    Poco::JSON::Object body;
    body.set("customer", customer);
    body.set("limit", credit->limit);
    body.set("version", credit->version);
    body.set("reserved", credit->reserved);
    body.set("available", credit->available());
    body.set("reservations", reservations);
    Reply(response, 200, body);
  }

  std::mutex mu_;  // held for every use of db_, the saga step's transactions included
  sqlite3* const db_;
  txcoord::participant::SqliteSagaStep reserve_credit_;
};

}  // namespace
}  // namespace credit_limit

int main(int argc, char** argv) {
  credit_limit::BlockStopSignals();
  auto flags = credit_limit::ParseFlags(
      argc, argv, {{"listen", "127.0.0.1:0"}, {"db", "customer.db"}}, credit_limit::kUsage);
  try {
    credit_limit::CustomerService service(flags["db"]);
    txcoord::participant::CallbackServerOptions options;
    options.max_threads = 32;
    txcoord::participant::CallbackServer server(options);
    service.Register(server);
    return credit_limit::ServeUntilSignal("customer-service", flags["listen"], server);
  } catch (const std::exception& e) {
    std::cerr << "customer-service: " << e.what() << std::endl;
    return 1;
  }
}
