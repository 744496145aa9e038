// A consumer process for the inbox kill test: applies the test workload's events to a SQLite
// replica through InboxConsumer until SIGTERM (exit 0) or until it is killed. Writes
// DB_PATH.ready once it consumes.
//
//   inbox_consumer_child NATS_URL STREAM CONSUMER DB_PATH ACK_WAIT_MS
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <iostream>

#include "inbox_test_util.h"

int main(int argc, char** argv) {
  if (argc != 6) {
    std::cerr << "usage: inbox_consumer_child NATS_URL STREAM CONSUMER DB_PATH ACK_WAIT_MS\n";
    return 2;
  }
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  sqlite3* db = nullptr;
  if (sqlite3_open(argv[4], &db) != SQLITE_OK) return 1;
  // The test polls the replica meanwhile, and the killed consumer before this one may have left
  // a WAL to recover: the schema statements wait for the lock instead of failing at once.
  sqlite3_busy_timeout(db, 10000);
  txcoord::participant::testing::CreateReplicaTables(db);
  txcoord::participant::InboxConsumerOptions options;
  options.nats_url = argv[1];
  options.stream = argv[2];
  options.consumer = argv[3];
  options.filter_subject = std::string(argv[2]) + ".item.>";
  options.ack_wait = std::chrono::milliseconds(std::stoll(argv[5]));
  options.fetch_batch = 16;
  auto consumer = txcoord::participant::InboxConsumer::Create(
      options, db, txcoord::participant::testing::ApplyToReplica);
  if (!consumer.ok()) {
    std::cerr << consumer.status().ToString() << std::endl;
    return 1;
  }
  (*consumer)->Start();
  // Tells the test that SIGTERM now means a clean stop.
  std::ofstream(std::string(argv[4]) + ".ready") << getpid() << "\n";
  int signal = 0;
  sigwait(&stop, &signal);
  (*consumer)->Stop();
  consumer->reset();
  sqlite3_close(db);
  return 0;
}
