// order-service: creates orders through the CreateOrder saga, and keeps a replica of each
// customer's credit limit for a fast pre-check.
//
// CreateOrder (POST /orders) is a txcoord saga with gtid "order-<order id>" and two steps:
//   1. reserve-credit at customer-service (/credit/reserve, compensated by /credit/release): the
//      source of the limits reserves the amount, or refuses (409) when it does not fit;
//   2. create-order here (/orders/create, compensated by /orders/cancel), after step 1: takes one
//      unit of the item from the stock and records the order, or refuses (409) when the item is
//      out of stock. Then the coordinator compensates step 1: the reservation is released.
// Each step runs behind the SDK's barrier (SqliteSagaStep) in one local transaction with its
// change. The saga's gtid comes from the order id, which the client may give: a retried POST with
// the same order id (after a timeout, a lost reply) gets the same saga, never a second order.
//
// The replica (credit_replica) is fed by CreditLimitChanged events through the inbox consumer,
// each event applied once, stale versions ignored. Before starting a saga the order is checked
// against it: when the replica knows the customer's limit and this service's orders plus this
// one clearly exceed it, the order is rejected at once without a saga. Otherwise the source
// decides, in step 1; the replica may be behind.
//
//   POST /orders {"order":"o-1","customer":"c-17","item":"widget","amount":80}
//        "order" optional (one is made up; then a retry may create a second order).
//        -> 201 committed, 409 aborted (saga compensated) or rejected (pre-check), 202 still
//           running; body {"order","customer","item","amount","saga","state","reason","steps"}
//   GET  /orders[?format=text]   -> the orders ("order customer item amount status" lines)
//   GET  /stock                  -> {"stock":{"widget":99,...}}
//   GET  /replica[?format=text]  -> {"customers":[{"customer","limit","version"}]} / lines
//   GET  /inbox                  -> the consumer's counters (applied, duplicates, dead letters)
//   GET  /healthz
//   POST /orders/create, /orders/cancel   the create-order step (callbacks from txcoord)
#include <mutex>
#include <optional>
#include <random>

#include "service_common.h"
#include "txcoord/participant/barrier.h"
#include "txcoord/participant/client.h"
#include "txcoord/participant/inbox.h"
#include "txcoord/participant/saga.h"
#include "txcoord/schemas/ids.h"

namespace credit_limit {
namespace {

using txcoord::Status;
using txcoord::StatusCode;
using txcoord::participant::CallbackContext;

constexpr char kUsage[] =
    "usage: order-service --customer-service URL [--coordinator URL] [--public-url URL]\n"
    "                     [--listen HOST:PORT] [--db PATH] [--stock ITEM=N,...]\n"
    "                     [--nats URL] [--stream NAME] [--subject-prefix PREFIX]\n"
    "Creates orders through the CreateOrder saga on txcoord (--coordinator): reserve-credit at\n"
    "customer-service, then create-order here. --public-url is this service's URL in the saga's\n"
    "step callbacks (default http://<listen host>:<bound port>). --stock sets each item's\n"
    "initial stock, for items not in the database yet (default widget=100). Keeps a replica of\n"
    "the credit limits fed from JetStream for a pre-check.\n";

// How long a saga may take to get through its steps; past it, txcoord compensates.
constexpr std::chrono::seconds kSagaTimeout{10};

// The replica update, run by the inbox consumer inside its transaction (with the inbox row).
Status ApplyCreditLimitChanged(sqlite3* db, const txcoord::participant::InboxEvent& e) {
  std::string customer;
  int64_t limit = 0, version = 0;
  try {
    auto payload = ParseObject(e.payload);
    customer = payload->getValue<std::string>("customer");
    limit = payload->getValue<int64_t>("limit");
    version = payload->getValue<int64_t>("version");
  } catch (const std::exception& ex) {
    return Status::InvalidArgument("CreditLimitChanged payload: " + std::string(ex.what()));
  }
  return Unthrown([&] {
    // A version not newer than the replica's is stale (an old event redelivered late): ignored.
    Statement(db,
              "INSERT INTO credit_replica (customer, credit_limit, version) VALUES (?1, ?2, ?3) "
              "ON CONFLICT (customer) DO UPDATE SET credit_limit = excluded.credit_limit, "
              "version = excluded.version WHERE excluded.version > credit_replica.version")
        .Bind(1, customer)
        .Bind(2, limit)
        .Bind(3, version)
        .Step();
    return Status::Ok();
  });
}

// An order, as POSTed and as the saga steps' payload.
struct Order {
  std::string id;
  std::string customer;
  std::string item;
  int64_t amount = 0;

  std::string gtid() const { return "order-" + id; }
  Poco::JSON::Object ToJson() const {
    Poco::JSON::Object o;
    o.set("order", id);
    o.set("customer", customer);
    o.set("item", item);
    o.set("amount", amount);
    return o;
  }
};

// kInvalidArgument naming what is wrong. An empty order id is allowed here (POST /orders makes
// one up); the steps' payloads always have one.
txcoord::Result<Order> ParseOrder(const std::string& json) {
  Order order;
  try {
    auto o = ParseObject(json);
    order.id = o->optValue<std::string>("order", "");
    order.customer = o->getValue<std::string>("customer");
    order.item = o->getValue<std::string>("item");
    order.amount = o->getValue<int64_t>("amount");
  } catch (const std::exception&) {
    return Status::InvalidArgument(
        R"(the body must be {"order": "<id>" (optional), "customer": "<id>", "item": "<id>", )"
        R"("amount": <whole number>})");
  }
  if (!order.id.empty() && !txcoord::IsValidId(order.gtid())) {
    return Status::InvalidArgument("an order id is 1 to 122 characters of [A-Za-z0-9._:-]");
  }
  if (!txcoord::IsValidId(order.customer) || !txcoord::IsValidId(order.item)) {
    return Status::InvalidArgument(
        "customer and item are 1 to 128 characters of [A-Za-z0-9._:-] each");
  }
  if (order.amount <= 0) return Status::InvalidArgument("amount must be positive");
  return order;
}

// create-order's action, inside the barrier's transaction: one unit of the item leaves the stock
// and the order is recorded. Out of stock is a business refusal: the saga compensates.
Status CreateOrder(sqlite3* db, const CallbackContext& ctx) {
  auto order = ParseOrder(ctx.payload_json);
  // A payload that cannot be read will not get better with retries: refused.
  if (!order.ok()) return Status::Conflict("create-order payload: " + order.status().message());
  if (order->id.empty()) return Status::Conflict("create-order payload: no order id");
  return Unthrown([&] {
    Statement stock(db, "SELECT quantity FROM stock WHERE item = ?1");
    stock.Bind(1, order->item);
    if (!stock.Step()) return Status::Conflict("there is no item " + order->item);
    if (stock.Int(0) <= 0) return Status::Conflict("item " + order->item + " is out of stock");
    Statement existing(db, "SELECT 1 FROM orders WHERE id = ?1");
    if (existing.Bind(1, order->id).Step()) {
      return Status::Conflict("order " + order->id + " exists already (another saga made it)");
    }
    Statement(db, "UPDATE stock SET quantity = quantity - 1 WHERE item = ?1")
        .Bind(1, order->item)
        .Step();
    Statement(db,
              "INSERT INTO orders (id, gtid, customer, item, amount, status) VALUES (?1, ?2, ?3, "
              "?4, ?5, 'created')")
        .Bind(1, order->id)
        .Bind(2, ctx.gtid)
        .Bind(3, order->customer)
        .Bind(4, order->item)
        .Bind(5, order->amount)
        .Step();
    return Status::Ok();
  });
}

// create-order's compensation. The barrier calls it only after CreateOrder succeeded for this
// saga (and only once), so the order is there: it is cancelled and its unit goes back.
Status CancelOrder(sqlite3* db, const CallbackContext& ctx) {
  return Unthrown([&] {
    Statement order(db, "SELECT item FROM orders WHERE gtid = ?1 AND status = 'created'");
    if (!order.Bind(1, ctx.gtid).Step()) return Status::Ok();
    Statement(db, "UPDATE stock SET quantity = quantity + 1 WHERE item = ?1")
        .Bind(1, order.Text(0))
        .Step();
    Statement(db, "UPDATE orders SET status = 'cancelled' WHERE gtid = ?1")
        .Bind(1, ctx.gtid)
        .Step();
    return Status::Ok();
  });
}

std::string NewOrderId() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard lock(mu);
  char id[24];
  std::snprintf(id, sizeof id, "o-%016llx", static_cast<unsigned long long>(rng()));
  return id;
}

class OrderService {
 public:
  explicit OrderService(const std::map<std::string, std::string>& flags)
      : customer_service_(flags.at("customer-service")),
        public_url_(flags.at("public-url")),
        db_(OpenDatabase(flags.at("db"))),
        consumer_db_(OpenDatabase(flags.at("db"))),
        create_order_(db_, CreateOrder, CancelOrder, &mu_) {
    if (customer_service_.empty()) throw std::runtime_error("--customer-service URL is required");
    while (customer_service_.ends_with('/')) customer_service_.pop_back();
    while (public_url_.ends_with('/')) public_url_.pop_back();
    Exec(db_,
         "CREATE TABLE IF NOT EXISTS credit_replica (customer TEXT PRIMARY KEY, credit_limit "
         "INTEGER NOT NULL, version INTEGER NOT NULL);"
         "CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, gtid TEXT NOT NULL UNIQUE, "
         "customer TEXT NOT NULL, item TEXT NOT NULL, amount INTEGER NOT NULL, status TEXT NOT "
         "NULL);"
         "CREATE INDEX IF NOT EXISTS orders_customer ON orders (customer);"
         "CREATE TABLE IF NOT EXISTS stock (item TEXT PRIMARY KEY, quantity INTEGER NOT NULL)");
    if (Status s = txcoord::participant::Barrier::EnsureSchema(db_); !s.ok()) {
      throw std::runtime_error("barrier schema: " + s.message());
    }
    SetInitialStock(flags.at("stock"));

    txcoord::participant::CoordinatorClientOptions coordinator;
    coordinator.url = flags.at("coordinator");
    auto client = txcoord::participant::CoordinatorClient::Create(coordinator);
    if (!client.ok()) throw std::runtime_error("--coordinator: " + client.status().message());
    coordinator_ = std::move(client).value();

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

  // Everything is registered before the server starts; the service must outlive it.
  void Register(txcoord::participant::CallbackServer& server) {
    Check(server.AddSagaStep("/orders/create", "/orders/cancel", &create_order_));
    Check(server.AddRoute("POST", "/orders", [this](const HttpRequest& q, HttpResponse& r) {
      PlaceOrder(q.body, r);
    }));
    Check(server.AddRoute("GET", "/orders", [this](const HttpRequest& q, HttpResponse& r) {
      ListOrders(q.QueryParam("format") == "text", r);
    }));
    Check(server.AddRoute("GET", "/stock",
                          [this](const HttpRequest&, HttpResponse& r) { ListStock(r); }));
    Check(server.AddRoute("GET", "/replica", [this](const HttpRequest& q, HttpResponse& r) {
      Replica(q.QueryParam("format") == "text", r);
    }));
    Check(server.AddRoute("GET", "/inbox",
                          [this](const HttpRequest&, HttpResponse& r) { Inbox(r); }));
    Check(server.AddRoute("GET", "/healthz", [](const HttpRequest&, HttpResponse& r) {
      r.body = R"({"status":"ok"})";
    }));
  }

  // Called once the server is bound, before it is announced: the step urls need the port.
  void Started(const std::string& listen, int port) {
    std::lock_guard lock(mu_);
    if (public_url_.empty()) {
      public_url_ = "http://" + listen.substr(0, listen.rfind(':')) + ":" + std::to_string(port);
    }
  }

 private:
  static void Check(const Status& s) {
    if (!s.ok()) throw std::runtime_error(s.ToString());
  }

  void SetInitialStock(const std::string& spec) {
    std::istringstream in(spec);
    std::string entry;
    while (std::getline(in, entry, ',')) {
      const size_t eq = entry.find('=');
      int64_t quantity = -1;
      try {
        if (eq != std::string::npos) quantity = std::stoll(entry.substr(eq + 1));
      } catch (const std::exception&) {
      }
      const std::string item = entry.substr(0, eq);
      if (quantity < 0 || !txcoord::IsValidId(item)) {
        throw std::runtime_error("--stock: \"" + entry + "\" is not ITEM=N (N >= 0)");
      }
      Statement(db_, "INSERT INTO stock (item, quantity) VALUES (?1, ?2) ON CONFLICT DO NOTHING")
          .Bind(1, item)
          .Bind(2, quantity)
          .Step();
    }
  }

  // Why the replica says the order clearly does not fit, or "" when it may (the customer's limit
  // is not replicated yet, or it fits). The customer's orders include this one when it is a
  // retried POST; PlaceOrder asks the coordinator before rejecting.
  std::string PreCheck(const Order& order) {
    std::lock_guard lock(mu_);
    Statement s(
        db_,
        "SELECT r.credit_limit, (SELECT coalesce(sum(amount), 0) FROM orders WHERE "
        "customer = ?1 AND status = 'created') FROM credit_replica r WHERE r.customer = ?1");
    if (!s.Bind(1, order.customer).Step()) return "";
    const int64_t limit = s.Int(0), used = s.Int(1);
    if (used + order.amount <= limit) return "";
    return "rejected by the pre-check against the replica: an order of " +
           std::to_string(order.amount) + " does not fit, " + std::to_string(used) +
           " of the limit " + std::to_string(limit) + " is used by " + order.customer + "'s orders";
  }

  void PlaceOrder(const std::string& body, HttpResponse& response) {
    auto parsed = ParseOrder(body);
    if (!parsed.ok()) return response.SetError(400, "INVALID_ARGUMENT", parsed.status().message());
    Order order = std::move(parsed).value();
    if (order.id.empty()) order.id = NewOrderId();
    Poco::JSON::Object reply = order.ToJson();

    if (const std::string rejected = PreCheck(order); !rejected.empty()) {
      // Unless txcoord knows a saga for this order already (a retried POST: the order itself is
      // then among the customer's orders, or on its way there), it is rejected without one.
      auto known = coordinator_->Get(order.gtid());
      if (!known.ok() && known.status().code() == StatusCode::kNotFound) {
        reply.set("state", "rejected");
        reply.set("reason", rejected);
        return Reply(response, 409, reply);
      }
      if (!known.ok()) return CoordinatorTrouble(known.status(), order, response);
    }

    std::string self;
    {
      std::lock_guard lock(mu_);
      self = public_url_;
    }
    const std::string payload = Json(order.ToJson());
    auto saga = txcoord::participant::Saga(*coordinator_, order.gtid())
                    .Step("reserve-credit", customer_service_ + "/credit/reserve",
                          customer_service_ + "/credit/release", payload)
                    .Step("create-order", self + "/orders/create", self + "/orders/cancel", payload,
                          {"reserve-credit"})
                    .Timeout(kSagaTimeout)
                    .Submit(/*wait=*/true);
    if (!saga.ok()) return CoordinatorTrouble(saga.status(), order, response);

    const txcoord::v1::Transaction& t = saga->transaction;
    reply.set("saga", t.gtid());
    reply.set("state", t.state());
    reply.set("reason", t.reason());
    Poco::JSON::Array steps;
    for (const txcoord::v1::Step& step : t.steps()) {
      Poco::JSON::Object s;
      s.set("step", step.step_id());
      s.set("state", step.state());
      steps.add(s);
    }
    reply.set("steps", steps);
    const int status = !saga->terminal() ? 202 : t.state() == "committed" ? 201 : 409;
    Reply(response, status, reply);
  }

  static void CoordinatorTrouble(const Status& s, const Order& order, HttpResponse& response) {
    switch (s.code()) {
      case StatusCode::kConflict:  // the gtid's saga was begun with another body
        return response.SetError(
            409, "CONFLICT",
            "order " + order.id + " was placed before with another customer, item or amount");
      case StatusCode::kInvalidArgument:  // 400/403: this service's urls or flags are wrong
        return response.SetError(500, "INTERNAL",
                                 "the coordinator refused the saga: " + s.message());
      default:  // unavailable, unknown outcome: the same POST again is safe
        return response.SetError(503, "UNAVAILABLE",
                                 "the coordinator could not be asked (" + s.message() +
                                     "); retry the same POST, with order id " + order.id);
    }
  }

  void ListOrders(bool text, HttpResponse& response) {
    std::lock_guard lock(mu_);
    Statement s(db_, "SELECT id, customer, item, amount, status FROM orders ORDER BY id");
    Poco::JSON::Array orders;
    std::string lines;
    while (s.Step()) {
      Poco::JSON::Object o;
      o.set("order", s.Text(0));
      o.set("customer", s.Text(1));
      o.set("item", s.Text(2));
      o.set("amount", s.Int(3));
      o.set("status", s.Text(4));
      orders.add(o);
      lines += s.Text(0) + " " + s.Text(1) + " " + s.Text(2) + " " + std::to_string(s.Int(3)) +
               " " + s.Text(4) + "\n";
    }
    if (text) return ReplyText(response, lines);
    Poco::JSON::Object body;
    body.set("orders", orders);
    Reply(response, 200, body);
  }

  void ListStock(HttpResponse& response) {
    std::lock_guard lock(mu_);
    Statement s(db_, "SELECT item, quantity FROM stock ORDER BY item");
    Poco::JSON::Object stock;
    while (s.Step()) stock.set(s.Text(0), s.Int(1));
    Poco::JSON::Object body;
    body.set("stock", stock);
    Reply(response, 200, body);
  }

  void Replica(bool text, HttpResponse& response) {
    std::lock_guard lock(mu_);
    Statement s(db_,
                "SELECT customer, credit_limit, version FROM credit_replica ORDER BY customer");
    Poco::JSON::Array customers;
    std::string lines;
    while (s.Step()) {
      Poco::JSON::Object c;
      c.set("customer", s.Text(0));
      c.set("limit", s.Int(1));
      c.set("version", s.Int(2));
      customers.add(c);
      lines += s.Text(0) + " " + std::to_string(s.Int(1)) + " " + std::to_string(s.Int(2)) + "\n";
    }
    if (text) return ReplyText(response, lines);
    Poco::JSON::Object body;
    body.set("customers", customers);
    Reply(response, 200, body);
  }

  void Inbox(HttpResponse& response) {
    const auto stats = consumer_->Stats();
    Poco::JSON::Object body;
    body.set("applied", stats.applied);
    body.set("duplicates_skipped", stats.duplicates_skipped);
    body.set("handler_failures", stats.handler_failures);
    body.set("store_failures", stats.store_failures);
    body.set("dead_lettered", stats.dead_lettered);
    body.set("connected", stats.connected);
    body.set("last_error", stats.last_error);
    Reply(response, 200, body);
  }

  std::string customer_service_;  // its base URL, for the reserve-credit step
  std::mutex mu_;                 // held for every use of db_, the step's transactions included
  std::string public_url_;        // GUARDED_BY(mu_); set by Started when not given
  sqlite3* const db_;             // HTTP requests and the create-order step, under mu_
  sqlite3* const consumer_db_;    // the inbox consumer's thread only
  txcoord::participant::SqliteSagaStep create_order_;
  std::unique_ptr<txcoord::participant::CoordinatorClient> coordinator_;
  std::unique_ptr<txcoord::participant::InboxConsumer> consumer_;
};

}  // namespace
}  // namespace credit_limit

int main(int argc, char** argv) {
  credit_limit::BlockStopSignals();
  auto flags = credit_limit::ParseFlags(argc, argv,
                                        {{"listen", "127.0.0.1:0"},
                                         {"db", "order.db"},
                                         {"coordinator", "http://127.0.0.1:8470"},
                                         {"customer-service", ""},
                                         {"public-url", ""},
                                         {"stock", "widget=100"},
                                         {"nats", "nats://127.0.0.1:4222"},
                                         {"stream", "EVENTS"},
                                         {"subject-prefix", "events"}},
                                        credit_limit::kUsage);
  try {
    credit_limit::OrderService service(flags);
    txcoord::participant::CallbackServerOptions options;
    // A POST /orders holds its thread while the saga runs, and the saga's create-order callback
    // needs another one: keep plenty, so that concurrent orders cannot take them all.
    options.max_threads = 64;
    txcoord::participant::CallbackServer server(options);
    service.Register(server);
    return credit_limit::ServeUntilSignal("order-service", flags["listen"], server, [&](int port) {
      service.Started(flags["listen"], port);
    });
  } catch (const std::exception& e) {
    std::cerr << "order-service: " << e.what() << std::endl;
    return 1;
  }
}
