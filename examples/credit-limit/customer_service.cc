// customer-service: owns each customer's credit limit. A change and its CreditLimitChanged event
// commit in one local SQLite transaction (the transactional outbox); txrelay publishes the event.
//
//   PUT /customers/{id}/credit-limit  {"limit": 100}  ->
//   {"customer":"c-17","limit":100,"version":1} GET /customers                     ->
//   {"customers":[{"customer":..,"limit":..,"version":..}]} GET /customers?format=text         ->
//   one "customer limit version" line each, sorted GET /healthz
//
// TODO(saga issue): POST /credit/reserve and /credit/release, the CreateOrder saga's step and
// compensation, arrive with the saga engine.
#include <mutex>

#include "service_common.h"
#include "txcoord/outbox/outbox.h"

namespace credit_limit {
namespace {

constexpr char kUsage[] =
    "usage: customer-service [--listen HOST:PORT] [--db PATH]\n"
    "Owns credit limits; writes CreditLimitChanged to its outbox in the same transaction.\n";

class CustomerService {
 public:
  explicit CustomerService(const std::string& path) : db_(OpenDatabase(path)) {
    Exec(db_,
         "CREATE TABLE IF NOT EXISTS customers (id TEXT PRIMARY KEY, credit_limit INTEGER NOT "
         "NULL, version INTEGER NOT NULL)");
    if (!txcoord::outbox::EnsureSchema(db_).ok()) throw std::runtime_error("outbox schema");
  }
  ~CustomerService() { sqlite3_close(db_); }

  Reply Route(const std::string& method, const std::string& path, const std::string& query,
              const std::string& body) {
    if (path == "/healthz") return {200, R"({"status":"ok"})"};
    if (path == "/customers" && method == "GET") return List(query == "format=text");
    const std::string prefix = "/customers/", suffix = "/credit-limit";
    if (path.starts_with(prefix) && path.ends_with(suffix) &&
        path.size() > prefix.size() + suffix.size()) {
      if (method != "PUT") return Error(405, "INVALID_ARGUMENT", "use PUT");
      return SetLimit(path.substr(prefix.size(), path.size() - prefix.size() - suffix.size()),
                      body);
    }
    return Error(404, "NOT_FOUND", "no such path");
  }

 private:
  Reply SetLimit(const std::string& customer, const std::string& body) {
    int64_t limit = 0;
    try {
      limit = ParseObject(body)->getValue<int64_t>("limit");
    } catch (const std::exception&) {
      return Error(400, "INVALID_ARGUMENT", "the body must be {\"limit\": <whole number>}");
    }
    if (limit < 0) return Error(400, "INVALID_ARGUMENT", "limit must not be negative");
    std::lock_guard lock(mu_);
    // The business change and its event: one transaction, so both commit or neither does.
    Exec(db_, "BEGIN IMMEDIATE");
    try {
      sqlite3_stmt* s = nullptr;
      sqlite3_prepare_v2(db_,
                         "INSERT INTO customers (id, credit_limit, version) VALUES (?1, ?2, 1) "
                         "ON CONFLICT (id) DO UPDATE SET credit_limit = excluded.credit_limit, "
                         "version = customers.version + 1 RETURNING version",
                         -1, &s, nullptr);
      sqlite3_bind_text(s, 1, customer.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_int64(s, 2, limit);
      const bool ok = sqlite3_step(s) == SQLITE_ROW;
      const int64_t version = ok ? sqlite3_column_int64(s, 0) : 0;
      sqlite3_finalize(s);
      if (!ok) throw std::runtime_error(sqlite3_errmsg(db_));

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
        return Error(400, "INVALID_ARGUMENT", appended.status().message());
      }
      Exec(db_, "COMMIT");
      return {200, Json(payload)};
    } catch (const std::exception&) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
  }

  Reply List(bool text) {
    std::lock_guard lock(mu_);
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db_, "SELECT id, credit_limit, version FROM customers ORDER BY id", -1, &s,
                       nullptr);
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

  std::mutex mu_;
  sqlite3* const db_;
};

}  // namespace
}  // namespace credit_limit

int main(int argc, char** argv) {
  credit_limit::BlockStopSignals();
  auto flags = credit_limit::ParseFlags(
      argc, argv, {{"listen", "127.0.0.1:0"}, {"db", "customer.db"}}, credit_limit::kUsage);
  try {
    credit_limit::CustomerService service(flags["db"]);
    credit_limit::Route route = [&](const std::string& m, const std::string& p,
                                    const std::string& q,
                                    const std::string& b) { return service.Route(m, p, q, b); };
    return credit_limit::ServeUntilSignal("customer-service", flags["listen"], route);
  } catch (const std::exception& e) {
    std::cerr << "customer-service: " << e.what() << std::endl;
    return 1;
  }
}
