// Drops connections that take longer than the request timeout to deliver their headers (slowloris clients).
// cpp-httplib's read timeout applies to each recv(), so a client sending one byte a second would hold a connection
// thread forever; this thread finds such sockets among the process's own descriptors and shuts them down. A
// connection is busy (never dropped) from its headers' arrival to its answer; between requests it is idle, which
// cpp-httplib's keep-alive timeout already ends.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace effcam::serve {

class Watchdog {
 public:
  using Clock = std::chrono::steady_clock;

  // Connections to local_port that are not busy for longer than `timeout` are shut down.
  void start(uint16_t local_port, Clock::duration timeout);
  void stop();
  ~Watchdog() { stop(); }

  // From the HTTP layer, keyed by the client's "address:port".
  void request_started(const std::string& peer);
  void request_finished(const std::string& peer);
  uint64_t dropped() const { return dropped_; }

 private:
  void run();
  void sweep();

  struct Connection {
    std::string peer;
    Clock::time_point since;  // first seen, or the end of its last request
  };
  uint16_t local_port_ = 0;
  Clock::duration timeout_{};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
  struct Busy {
    int requests = 0;  // being handled
    Clock::time_point since;
  };
  std::map<std::string, Busy> busy_;               // peer -> its requests being handled
  std::map<std::string, Clock::time_point> done_;  // peer -> end of its last request
  std::map<int, Connection> seen_;                 // socket descriptor -> connection
  std::atomic<uint64_t> dropped_{0};
};

}  // namespace effcam::serve
