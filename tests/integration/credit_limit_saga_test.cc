// The CreateOrder saga of the credit-limit example (examples/credit-limit), through real
// processes on loopback: txcoord on a SQLite store, customer-service, txrelay on its outbox,
// order-service, and the rig's nats-server (a stream of the test's own) for the replica.
//
// Each test drives orders through order-service's POST /orders and then reads both services'
// SQLite databases directly: the reservations and the barrier rows in customer.db, the orders,
// the stock and the barrier rows in order.db, and the saga's record at txcoord.
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/StreamCopier.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "txcoord/participant/client.h"
#include "txcoord/testing/nats_server.h"
#include "txcoord/testing/poll.h"
#include "txcoord_process.h"

namespace txcoord::integration {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

struct HttpReply {
  int status = 0;  // 0: no reply
  std::string body;
};

HttpReply Http(const std::string& method, int port, const std::string& path,
               const std::string& body = "") {
  try {
    Poco::Net::HTTPClientSession session("127.0.0.1", static_cast<Poco::UInt16>(port));
    session.setTimeout(Poco::Timespan(60, 0));  // a POST /orders waits for its saga
    Poco::Net::HTTPRequest request(method, path, Poco::Net::HTTPMessage::HTTP_1_1);
    request.setContentType("application/json");
    request.setContentLength64(static_cast<Poco::Int64>(body.size()));
    session.sendRequest(request) << body;
    Poco::Net::HTTPResponse response;
    std::istream& in = session.receiveResponse(response);
    HttpReply reply;
    reply.status = response.getStatus();
    Poco::StreamCopier::copyToString(in, reply.body);
    return reply;
  } catch (const std::exception& e) {
    return {0, e.what()};
  }
}

// order-service's reply to POST /orders.
struct OrderReply {
  int status = 0;
  std::string state;  // committed | aborted | rejected | running, "" for an error body
  std::string reason;
  std::string body;
};

OrderReply ParseOrderReply(const HttpReply& http) {
  OrderReply reply{http.status, "", "", http.body};
  try {
    auto o = Poco::JSON::Parser().parse(http.body).extract<Poco::JSON::Object::Ptr>();
    reply.state = o->optValue<std::string>("state", "");
    reply.reason = o->optValue<std::string>("reason", "");
  } catch (const std::exception&) {
  }
  return reply;
}

// The rows of a query, each row's columns joined by " ", read on a connection of its own (the
// services keep theirs open; WAL lets a reader in).
std::vector<std::string> Query(const std::filesystem::path& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  std::vector<std::string> rows;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << "cannot open " << db_path;
    sqlite3_close(db);
    return rows;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db);
  } else {
    int rc = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      std::string row;
      for (int i = 0; i < sqlite3_column_count(s); ++i) {
        const unsigned char* text = sqlite3_column_text(s, i);
        row += (i > 0 ? " " : "") +
               std::string(text != nullptr ? reinterpret_cast<const char*>(text) : "NULL");
      }
      rows.push_back(row);
    }
    if (rc != SQLITE_DONE) ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db);
  }
  sqlite3_finalize(s);
  sqlite3_close(db);
  return rows;
}

using Rows = std::vector<std::string>;

class CreditLimitSagaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/txcoord-credit-saga-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    stream_ = testing::NatsServer::UniqueStreamName("CLSAGA");
    const std::string nats = testing::SharedNats().Url();

    coordinator_ = Start("txcoord", TXCOORD_BIN,
                         {"--listen", "127.0.0.1:0", "--store", "sqlite://" + Path("txcoord.db")},
                         &coordinator_port_);
    customers_ = Start("customer-service", CUSTOMER_SERVICE_BIN,
                       {"--listen", "127.0.0.1:0", "--db", Path("customer.db")}, &customer_port_);
    relay_ = Start("txrelay", TXRELAY_BIN,
                   {"--source", "sqlite://" + Path("customer.db"), "--nats", nats, "--stream",
                    stream_, "--subject-prefix", stream_, "--listen", "127.0.0.1:0"},
                   &relay_port_);
    if (HasFailure()) return;
    // order-service's inbox consumer needs the stream, which txrelay creates once connected:
    // until then order-service exits at start, and is started again.
    const std::string coordinator = "http://127.0.0.1:" + std::to_string(coordinator_port_);
    const std::string customers = "http://127.0.0.1:" + std::to_string(customer_port_);
    std::vector<std::string> order_args = {"--listen", "127.0.0.1:0", "--db", Path("order.db")};
    order_args.insert(order_args.end(), {"--coordinator", coordinator, "--customer-service",
                                         customers, "--stock", "widget=5,gadget=0"});
    order_args.insert(order_args.end(),
                      {"--nats", nats, "--stream", stream_, "--subject-prefix", stream_});
    const bool started = testing::PollUntil(seconds(30), milliseconds(100), [&] {
      orders_ = std::make_unique<TxcoordProcess>(ORDER_SERVICE_BIN, order_args,
                                                 Path("order-service.log"));
      const auto port = orders_->WaitForListening(seconds(30));
      if (port) order_port_ = *port;
      return port.has_value();
    });
    ASSERT_TRUE(started) << "order-service did not start:\n" << orders_->Stderr();

    participant::CoordinatorClientOptions options;
    options.url = "http://127.0.0.1:" + std::to_string(coordinator_port_);
    auto client = participant::CoordinatorClient::Create(options);
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    client_ = std::move(client).value();
  }

  void TearDown() override {
    // Each process's log, for a failure's reader.
    if (HasFailure()) {
      for (TxcoordProcess* p :
           {coordinator_.get(), customers_.get(), relay_.get(), orders_.get()}) {
        if (p != nullptr) std::cerr << "--- pid " << p->pid() << ":\n" << p->Stderr() << "\n";
      }
    }
    orders_.reset();
    relay_.reset();
    customers_.reset();
    coordinator_.reset();
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  std::unique_ptr<TxcoordProcess> Start(const std::string& name, const std::string& binary,
                                        const std::vector<std::string>& args, int* port) {
    auto process = std::make_unique<TxcoordProcess>(binary, args, Path(name + ".log"));
    const auto listening = process->WaitForListening(seconds(30));
    if (!listening) {
      ADD_FAILURE() << name << " did not start:\n" << process->Stderr();
      return process;
    }
    *port = *listening;
    return process;
  }

  // Sets the limit at the source and waits until the replica has it.
  void SetLimit(const std::string& customer, int64_t limit, bool wait_for_replica = true) {
    const HttpReply r =
        Http("PUT", customer_port_, "/credit-limit",
             R"({"customer": ")" + customer + R"(", "limit": )" + std::to_string(limit) + "}");
    ASSERT_EQ(r.status, 200) << r.body;
    if (!wait_for_replica) return;
    const std::string version = Poco::JSON::Parser()
                                    .parse(r.body)
                                    .extract<Poco::JSON::Object::Ptr>()
                                    ->getValue<std::string>("version");
    const std::string line = customer + " " + std::to_string(limit) + " " + version + "\n";
    ASSERT_TRUE(testing::PollUntil(
        seconds(20), milliseconds(20),
        [&] {
          return Http("GET", order_port_, "/replica?format=text").body.find(line) !=
                 std::string::npos;
        }))
        << "the replica did not get " << line;
  }

  OrderReply PlaceOrder(const std::string& order, const std::string& customer,
                        const std::string& item, int64_t amount) {
    return ParseOrderReply(Http("POST", order_port_, "/orders",
                                R"({"order": ")" + order + R"(", "customer": ")" + customer +
                                    R"(", "item": ")" + item + R"(", "amount": )" +
                                    std::to_string(amount) + "}"));
  }

  // customer.db
  Rows Reservations() {
    return Query(Path("customer.db"),
                 "SELECT gtid, order_id, customer, amount FROM credit_reservations ORDER BY gtid");
  }
  // order.db
  Rows Orders() {
    return Query(Path("order.db"),
                 "SELECT id, gtid, customer, item, amount, status FROM orders ORDER BY id");
  }
  Rows Stock() { return Query(Path("order.db"), "SELECT item, quantity FROM stock ORDER BY item"); }
  // A step's barrier rows in either database: "op outcome" each, ordered by op.
  Rows Barrier(const std::string& db, const std::string& gtid, const std::string& step) {
    return Query(Path(db), "SELECT op, outcome FROM txcoord_barrier WHERE gtid = '" + gtid +
                               "' AND branch_id = '" + step + "' ORDER BY op");
  }

  std::filesystem::path dir_;
  std::string stream_;
  int coordinator_port_ = 0, customer_port_ = 0, relay_port_ = 0, order_port_ = 0;
  std::unique_ptr<TxcoordProcess> coordinator_, customers_, relay_, orders_;
  std::unique_ptr<participant::CoordinatorClient> client_;
};

TEST_F(CreditLimitSagaTest, AnOrderThatFitsCommitsBothSteps) {
  SetLimit("c-1", 100);
  const OrderReply r = PlaceOrder("o-1", "c-1", "widget", 80);
  EXPECT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.state, "committed") << r.body;

  auto saga = client_->Get("order-o-1");
  ASSERT_TRUE(saga.ok()) << saga.status().ToString();
  EXPECT_EQ(saga->protocol(), "saga");
  EXPECT_EQ(saga->state(), "committed");
  ASSERT_EQ(saga->steps_size(), 2);
  EXPECT_EQ(saga->steps(0).step_id(), "reserve-credit");
  EXPECT_EQ(saga->steps(0).state(), "succeeded");
  EXPECT_EQ(saga->steps(1).step_id(), "create-order");
  EXPECT_EQ(saga->steps(1).state(), "succeeded");

  // The credit is reserved at the source, the order exists, the widget left the stock.
  EXPECT_EQ(Reservations(), Rows({"order-o-1 o-1 c-1 80"}));
  EXPECT_EQ(Orders(), Rows({"o-1 order-o-1 c-1 widget 80 created"}));
  EXPECT_EQ(Stock(), Rows({"gadget 0", "widget 4"}));
  EXPECT_EQ(Barrier("customer.db", "order-o-1", "reserve-credit"), Rows({"first done"}));
  EXPECT_EQ(Barrier("order.db", "order-o-1", "create-order"), Rows({"first done"}));
  const HttpReply credit = Http("GET", customer_port_, "/credit?customer=c-1");
  EXPECT_NE(credit.body.find(R"("available":20)"), std::string::npos) << credit.body;
}

TEST_F(CreditLimitSagaTest, AnOutOfStockOrderCompensatesAndReleasesTheReservation) {
  SetLimit("c-1", 100);
  const OrderReply r = PlaceOrder("o-2", "c-1", "gadget", 30);
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(r.state, "aborted") << r.body;
  EXPECT_NE(r.reason.find("create-order"), std::string::npos) << r.reason;
  EXPECT_NE(r.reason.find("out of stock"), std::string::npos) << r.reason;

  auto saga = client_->Get("order-o-2");
  ASSERT_TRUE(saga.ok()) << saga.status().ToString();
  EXPECT_EQ(saga->state(), "aborted");
  EXPECT_EQ(saga->reason(), r.reason);
  ASSERT_EQ(saga->steps_size(), 2);
  EXPECT_EQ(saga->steps(0).state(), "compensated");
  EXPECT_EQ(saga->steps(1).state(), "compensated");

  // The reservation was made (the action ran: first=done) and released (undo=done): nothing is
  // reserved any more. create-order refused, so its compensation was a null one.
  EXPECT_EQ(Barrier("customer.db", "order-o-2", "reserve-credit"),
            Rows({"first done", "undo done"}));
  EXPECT_EQ(Reservations(), Rows{});
  EXPECT_EQ(Barrier("order.db", "order-o-2", "create-order"), Rows({"first refused", "undo null"}));
  EXPECT_EQ(Orders(), Rows{});
  EXPECT_EQ(Stock(), Rows({"gadget 0", "widget 5"}));
  const HttpReply credit = Http("GET", customer_port_, "/credit?customer=c-1");
  EXPECT_NE(credit.body.find(R"("available":100)"), std::string::npos) << credit.body;

  // The credit released is there for the next order.
  const OrderReply next = PlaceOrder("o-3", "c-1", "widget", 100);
  EXPECT_EQ(next.state, "committed") << next.body;
}

TEST_F(CreditLimitSagaTest, TheSourceRefusesWhatAStaleReplicaLetsThrough) {
  SetLimit("c-1", 100);
  // With txrelay stopped, a lowered limit stays at the source: the replica still says 100.
  relay_->Signal(SIGTERM);
  ASSERT_EQ(relay_->WaitForExit(seconds(20)), 0) << relay_->Stderr();
  SetLimit("c-1", 50, /*wait_for_replica=*/false);
  ASSERT_NE(Http("GET", order_port_, "/replica?format=text").body.find("c-1 100 1\n"),
            std::string::npos);

  const OrderReply r = PlaceOrder("o-4", "c-1", "widget", 80);
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(r.state, "aborted") << r.body;
  EXPECT_NE(r.reason.find("reserve-credit"), std::string::npos) << r.reason;
  EXPECT_NE(r.reason.find("does not fit"), std::string::npos) << r.reason;
  EXPECT_EQ(Barrier("customer.db", "order-o-4", "reserve-credit"),
            Rows({"first refused", "undo null"}));
  EXPECT_EQ(Reservations(), Rows{});
  // create-order never ran: its compensation came anyway and blocked it.
  EXPECT_EQ(Barrier("order.db", "order-o-4", "create-order"), Rows({"first blocked", "undo null"}));
  EXPECT_EQ(Orders(), Rows{});
  EXPECT_EQ(Stock(), Rows({"gadget 0", "widget 5"}));
}

TEST_F(CreditLimitSagaTest, ThePreCheckRejectsWithoutASaga) {
  SetLimit("c-1", 100);
  const OrderReply r = PlaceOrder("o-5", "c-1", "widget", 150);
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(r.state, "rejected") << r.body;
  EXPECT_NE(r.reason.find("pre-check"), std::string::npos) << r.reason;
  auto saga = client_->Get("order-o-5");
  EXPECT_EQ(saga.status().code(), StatusCode::kNotFound) << saga.status().ToString();
  EXPECT_EQ(Reservations(), Rows{});
  EXPECT_EQ(Orders(), Rows{});
}

TEST_F(CreditLimitSagaTest, ARepeatedPostWithTheSameOrderIdCreatesOneOrder) {
  SetLimit("c-1", 100);
  // 70 of 100: without the order id's saga a repeat would not fit (70 + 70), yet it is the same
  // order and gets the same answer. Sequential repeats, then concurrent ones.
  for (int i = 0; i < 3; ++i) {
    const OrderReply r = PlaceOrder("o-6", "c-1", "widget", 70);
    EXPECT_EQ(r.status, 201) << "repeat " << i << ": " << r.body;
    EXPECT_EQ(r.state, "committed") << "repeat " << i << ": " << r.body;
  }
  std::vector<OrderReply> concurrent(4);
  {
    std::vector<std::thread> posts;
    for (auto& reply : concurrent) {
      posts.emplace_back([&] { reply = PlaceOrder("o-7", "c-1", "widget", 20); });
    }
    for (auto& t : posts) t.join();
  }
  for (const OrderReply& r : concurrent) EXPECT_EQ(r.state, "committed") << r.body;

  EXPECT_EQ(Orders(),
            Rows({"o-6 order-o-6 c-1 widget 70 created", "o-7 order-o-7 c-1 widget 20 created"}));
  EXPECT_EQ(Reservations(), Rows({"order-o-6 o-6 c-1 70", "order-o-7 o-7 c-1 20"}));
  EXPECT_EQ(Stock(), Rows({"gadget 0", "widget 3"}));

  // The same order id for another order is refused, and changes nothing.
  const OrderReply other = PlaceOrder("o-6", "c-1", "widget", 5);
  EXPECT_EQ(other.status, 409) << other.body;
  EXPECT_NE(other.body.find("another customer, item or amount"), std::string::npos) << other.body;
  EXPECT_EQ(Orders().size(), 2u);
  EXPECT_EQ(Reservations().size(), 2u);
}

}  // namespace
}  // namespace txcoord::integration
