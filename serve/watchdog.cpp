#include "serve/watchdog.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace effcam::serve {

namespace {

// "address:port" of a socket's peer (as cpp-httplib reports it) when it is a TCP connection to local_port.
bool connection_peer(int fd, uint16_t local_port, std::string& peer) {
  sockaddr_storage local{}, remote{};
  socklen_t local_size = sizeof(local), remote_size = sizeof(remote);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_size) != 0) return false;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&remote), &remote_size) != 0) return false;  // listening
  char host[INET6_ADDRSTRLEN] = {};
  uint16_t port = 0, own_port = 0;
  if (local.ss_family == AF_INET) {
    own_port = ntohs(reinterpret_cast<sockaddr_in&>(local).sin_port);
    const auto& r = reinterpret_cast<sockaddr_in&>(remote);
    inet_ntop(AF_INET, &r.sin_addr, host, sizeof(host));
    port = ntohs(r.sin_port);
  } else if (local.ss_family == AF_INET6) {
    own_port = ntohs(reinterpret_cast<sockaddr_in6&>(local).sin6_port);
    const auto& r = reinterpret_cast<sockaddr_in6&>(remote);
    inet_ntop(AF_INET6, &r.sin6_addr, host, sizeof(host));
    port = ntohs(r.sin6_port);
  } else {
    return false;
  }
  if (own_port != local_port) return false;
  peer = std::string(host) + ":" + std::to_string(port);
  return true;
}

}  // namespace

void Watchdog::start(uint16_t local_port, Clock::duration timeout) {
  local_port_ = local_port;
  timeout_ = timeout;
  thread_ = std::thread([this] { run(); });
}

void Watchdog::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Watchdog::request_started(const std::string& peer) {
  std::lock_guard lock(mutex_);
  Busy& busy = busy_[peer];
  ++busy.requests;
  busy.since = Clock::now();
}

void Watchdog::request_finished(const std::string& peer) {
  std::lock_guard lock(mutex_);
  if (auto it = busy_.find(peer); it != busy_.end() && --it->second.requests <= 0) busy_.erase(it);
  done_[peer] = Clock::now();
}

void Watchdog::run() {
  // Sweeps often enough to drop a slow client within a fifth of the timeout past it.
  const auto period = std::max<Clock::duration>(timeout_ / 5, std::chrono::milliseconds(50));
  std::unique_lock lock(mutex_);
  while (!wake_.wait_for(lock, period, [this] { return stopping_; })) {
    lock.unlock();
    sweep();
    lock.lock();
  }
}

void Watchdog::sweep() {
  // The process's sockets (listening and connected) and their peers, read without the lock.
  const auto scan_started = Clock::now();
  std::vector<std::pair<int, std::string>> open;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (const dirent* entry = readdir(dir)) {
      const int fd = std::atoi(entry->d_name);
      struct stat st{};
      std::string peer;
      if (fd > 2 && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) && connection_peer(fd, local_port_, peer)) {
        open.emplace_back(fd, peer);
      }
    }
    closedir(dir);
  }
  const auto now = Clock::now();
  std::vector<std::pair<int, std::string>> late;
  {
    std::lock_guard lock(mutex_);
    std::map<int, Connection> seen;
    for (const auto& [fd, peer] : open) {
      auto it = seen_.find(fd);
      Connection connection = it != seen_.end() && it->second.peer == peer ? it->second : Connection{peer, now};
      if (auto done = done_.find(peer); done != done_.end() && done->second > connection.since) {
        connection.since = done->second;
      }
      if (busy_.count(peer) == 0 && now - connection.since > timeout_) late.emplace_back(fd, peer);
      seen.emplace(fd, connection);
    }
    // Forget the connections that are gone (a client that left mid-request never finishes it); a peer that began a
    // request after the scan is kept.
    auto gone = [&](const std::string& peer, Clock::time_point last) {
      return last < scan_started && std::none_of(seen.begin(), seen.end(),
                                                 [&](const auto& entry) { return entry.second.peer == peer; });
    };
    std::erase_if(done_, [&](const auto& entry) { return gone(entry.first, entry.second); });
    std::erase_if(busy_, [&](const auto& entry) { return gone(entry.first, entry.second.since); });
    seen_ = std::move(seen);
  }
  for (const auto& [fd, peer] : late) {
    std::string again;
    // The descriptor may have been closed and reused since the scan: only the same connection is dropped.
    if (connection_peer(fd, local_port_, again) && again == peer) {
      shutdown(fd, SHUT_RDWR);
      ++dropped_;
      std::fprintf(stderr, "effcam-serve: dropped %s: no complete request within the timeout\n", peer.c_str());
    }
  }
}

}  // namespace effcam::serve
