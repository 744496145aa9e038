// order-service: keeps a replica of each customer's credit limit, fed by CreditLimitChanged
// events through the inbox consumer (each event applied once, stale versions ignored), and
// accepts an order only if it fits the replica: the customer's accepted orders plus this one
// stay within the limit.
//
//   POST /orders {"customer":"c-17","amount":80}  -> 201 accepted, or 409 rejected with the reason
//   GET  /replica                  -> {"customers":[{"customer":..,"limit":..,"version":..}]}
//   GET  /replica?format=text      -> one "customer limit version" line each, sorted
//   GET  /inbox                    -> the consumer's counters (applied, duplicates, dead letters)
//   GET  /healthz
//
// TODO(saga issue): CreateOrder as a saga whose first step reserves the credit at
// customer-service, so the limit is enforced at the source, not only against the replica.
#include <mutex>

#include "service_common.h"
#include "txcoord/participant/inbox.h"

namespace credit_limit {
namespace {

constexpr char kUsage[] =
    "usage: order-service [--listen HOST:PORT] [--db PATH] [--nats URL] [--stream NAME]\n"
    "                     [--subject-prefix PREFIX]\n"
    "Accepts orders that fit a replica of the customers' credit limits, fed from JetStream.\n";

// The replica update, run by the inbox consumer inside its transaction (with the inbox row).
txcoord::Status ApplyCreditLimitChanged(sqlite3* db, const txcoord::participant::InboxEvent& e) {
  std::string customer;
  int64_t limit = 0, version = 0;
  try {
    auto payload = ParseObject(e.payload);
    customer = payload->getValue<std::string>("customer");
    limit = payload->getValue<int64_t>("limit");
    version = payload->getValue<int64_t>("version");
  } catch (const std::exception& ex) {
    return txcoord::Status::InvalidArgument("CreditLimitChanged payload: " +
                                            std::string(ex.what()));
  }
  sqlite3_stmt* s = nullptr;
  // A version not newer than the replica's is stale (an old event redelivered late): ignored.
  sqlite3_prepare_v2(db,
                     "INSERT INTO credit_replica (customer, credit_limit, version) VALUES (?1, "
                     "?2, ?3) ON CONFLICT (customer) DO UPDATE SET credit_limit = "
                     "excluded.credit_limit, version = excluded.version WHERE excluded.version > "
                     "credit_replica.version",
                     -1, &s, nullptr);
  sqlite3_bind_text(s, 1, customer.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(s, 2, limit);
  sqlite3_bind_int64(s, 3, version);
  const int rc = sqlite3_step(s);
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) return txcoord::Status::Unavailable(sqlite3_errmsg(db));
  return txcoord::Status::Ok();
}

class OrderService {
 public:
  OrderService(const std::map<std::string, std::string>& flags)
      : db_(OpenDatabase(flags.at("db"))), consumer_db_(OpenDatabase(flags.at("db"))) {
    Exec(db_,
         "CREATE TABLE IF NOT EXISTS credit_replica (customer TEXT PRIMARY KEY, credit_limit "
         "INTEGER NOT NULL, version INTEGER NOT NULL);"
         "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY AUTOINCREMENT, customer TEXT "
         "NOT NULL, amount INTEGER NOT NULL, status TEXT NOT NULL)");
    txcoord::participant::InboxConsumerOptions options;
    options.nats_url = flags.at("nats");
    options.stream = flags.at("stream");
    options.consumer = "order-service";
    options.filter_subject = flags.at("subject-prefix") + ".customer.CreditLimitChanged";
    options.ack_wait = std::chrono::seconds(5);
    auto consumer =
        txcoord::participant::InboxConsumer::Create(options, consumer_db_, ApplyCreditLimitChanged);
    if (!consumer.ok()) throw std::runtime_error(consumer.status().ToString());
    consumer_ = std::move(consumer).value();
    consumer_->Start();
  }
  ~OrderService() {
    consumer_->Stop();
    consumer_.reset();
    sqlite3_close(consumer_db_);
    sqlite3_close(db_);
  }

  Reply Route(const std::string& method, const std::string& path, const std::string& query,
              const std::string& body) {
    if (path == "/healthz") return {200, R"({"status":"ok"})"};
    if (path == "/replica" && method == "GET") return Replica(query == "format=text");
    if (path == "/inbox" && method == "GET") return Inbox();
    if (path == "/orders") {
      if (method != "POST") return Error(405, "INVALID_ARGUMENT", "use POST");
      return PlaceOrder(body);
    }
    return Error(404, "NOT_FOUND", "no such path");
  }

 private:
  Reply PlaceOrder(const std::string& body) {
    std::string customer;
    int64_t amount = 0;
    try {
      auto order = ParseObject(body);
      customer = order->getValue<std::string>("customer");
      amount = order->getValue<int64_t>("amount");
    } catch (const std::exception&) {
      return Error(400, "INVALID_ARGUMENT",
                   R"(the body must be {"customer": "<id>", "amount": <whole number>})");
    }
    if (amount <= 0) return Error(400, "INVALID_ARGUMENT", "amount must be positive");
    std::lock_guard lock(mu_);
    Exec(db_, "BEGIN IMMEDIATE");
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db_,
                       "SELECT r.credit_limit, (SELECT coalesce(sum(amount), 0) FROM orders WHERE "
                       "customer = ?1 AND status = 'accepted') FROM credit_replica r WHERE "
                       "r.customer = ?1",
                       -1, &s, nullptr);
    sqlite3_bind_text(s, 1, customer.c_str(), -1, SQLITE_TRANSIENT);
    const bool known = sqlite3_step(s) == SQLITE_ROW;
    const int64_t limit = known ? sqlite3_column_int64(s, 0) : 0;
    const int64_t used = known ? sqlite3_column_int64(s, 1) : 0;
    sqlite3_finalize(s);
    std::string reason;
    if (!known) {
      reason = "no credit limit known for " + customer + " yet";
    } else if (used + amount > limit) {
      reason = "order of " + std::to_string(amount) + " does not fit: " + std::to_string(used) +
               " of the limit " + std::to_string(limit) + " is already used";
    }
    const std::string status = reason.empty() ? "accepted" : "rejected";
    sqlite3_prepare_v2(db_,
                       "INSERT INTO orders (customer, amount, status) VALUES (?1, ?2, ?3) "
                       "RETURNING id",
                       -1, &s, nullptr);
    sqlite3_bind_text(s, 1, customer.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, amount);
    sqlite3_bind_text(s, 3, status.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_step(s);
    const int64_t id = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    Exec(db_, "COMMIT");
    Poco::JSON::Object reply;
    reply.set("order_id", id);
    reply.set("customer", customer);
    reply.set("amount", amount);
    reply.set("status", status);
    if (!reason.empty()) reply.set("reason", reason);
    return {reason.empty() ? 201 : 409, Json(reply)};
  }

  Reply Replica(bool text) {
    std::lock_guard lock(mu_);
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db_,
                       "SELECT customer, credit_limit, version FROM credit_replica ORDER BY "
                       "customer",
                       -1, &s, nullptr);
    Poco::JSON::Array customers;
    std::string lines;
    while (sqlite3_step(s) == SQLITE_ROW) {
      const std::string id = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
      Poco::JSON::Object c;
      c.set("customer", id);
      c.set("limit", sqlite3_column_int64(s, 1));
      c.set("version", sqlite3_column_int64(s, 2));
      customers.add(c);
      lines += id + " " + std::to_string(sqlite3_column_int64(s, 1)) + " " +
               std::to_string(sqlite3_column_int64(s, 2)) + "\n";
    }
    sqlite3_finalize(s);
    if (text) return {200, lines, "text/plain"};
    Poco::JSON::Object body;
    body.set("customers", customers);
    return {200, Json(body)};
  }

  Reply Inbox() {
    const auto stats = consumer_->Stats();
    Poco::JSON::Object body;
    body.set("applied", stats.applied);
    body.set("duplicates_skipped", stats.duplicates_skipped);
    body.set("handler_failures", stats.handler_failures);
    body.set("dead_lettered", stats.dead_lettered);
    body.set("connected", stats.connected);
    body.set("last_error", stats.last_error);
    return {200, Json(body)};
  }

  std::mutex mu_;
  sqlite3* const db_;           // HTTP requests, under mu_
  sqlite3* const consumer_db_;  // the inbox consumer's thread only
  std::unique_ptr<txcoord::participant::InboxConsumer> consumer_;
};

}  // namespace
}  // namespace credit_limit

int main(int argc, char** argv) {
  credit_limit::BlockStopSignals();
  auto flags = credit_limit::ParseFlags(argc, argv,
                                        {{"listen", "127.0.0.1:0"},
                                         {"db", "order.db"},
                                         {"nats", "nats://127.0.0.1:4222"},
                                         {"stream", "EVENTS"},
                                         {"subject-prefix", "events"}},
                                        credit_limit::kUsage);
  try {
    credit_limit::OrderService service(flags);
    credit_limit::Route route = [&](const std::string& m, const std::string& p,
                                    const std::string& q,
                                    const std::string& b) { return service.Route(m, p, q, b); };
    return credit_limit::ServeUntilSignal("order-service", flags["listen"], route);
  } catch (const std::exception& e) {
    std::cerr << "order-service: " << e.what() << std::endl;
    return 1;
  }
}
