// effcam-serve: one process (or P pre-forked workers sharing the socket and the mmap'd weights) serving predictions
// and Grad-CAM explanations of .effcam models over HTTP, in a memory bound printed at start.
#include <malloc.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <new>
#include <optional>
#include <thread>

#include <httplib.h>

#include "effcam/effcam.hpp"
#include "serve/options.h"
#include "serve/service.h"

namespace effcam::serve {
namespace {

// An allowance per connection thread for the pages of its stack and cpp-httplib's buffers that it touches (an
// estimate, not a per-thread measurement: the load, overload and bound tests check the total against the bound).
constexpr uint64_t kConnectionBytes = 96 * 1024;

sigset_t handled_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGCHLD);
  return set;
}

// Serves until SIGTERM / SIGINT, then lets every request in flight finish; returns the exit status.
int serve(Service& service, httplib::Server& server, int port, const char* who) {
  service.install(server);
  service.start_watchdog(static_cast<uint16_t>(port));
  std::thread signals([&server, who] {
    const sigset_t set = handled_signals();
    for (;;) {
      int signal = 0;
      sigwait(&set, &signal);
      if (signal == SIGTERM || signal == SIGINT) {
        std::fprintf(stderr, "effcam-serve%s: %s: draining (finishing the requests in flight)\n", who,
                     signal == SIGTERM ? "SIGTERM" : "SIGINT");
        server.stop();
        return;
      }
    }
  });
  const bool ok = server.listen_after_bind();
  signals.join();
  return ok ? 0 : 1;
}

// The supervisor holds no model: each worker maps the files itself, so the page cache's one copy is shared by the
// workers alone (Pss = the weights / P each) and the supervisor stays small.
int supervise(const ServeOptions& options, uint64_t process_bytes, httplib::Server& server, int port) {
  struct Worker {
    uint32_t number;
    std::chrono::steady_clock::time_point started;
  };
  std::map<pid_t, Worker> workers;
  auto start = [&](uint32_t number) {
    const pid_t pid = fork();
    if (pid < 0) throw Error("cannot fork a worker");
    if (pid == 0) {
      const std::string who = " [worker " + std::to_string(number) + "]";
      int status = 1;
      try {
        std::vector<Model> models;
        for (const ModelSpec& spec : options.models) models.push_back(Model::load(spec.path));
        Service service(options, models, process_bytes);  // its own sessions: threads do not survive fork()
        status = serve(service, server, port, who.c_str());
      } catch (const std::exception& e) {
        std::fprintf(stderr, "effcam-serve%s: %s\n", who.c_str(), e.what());
      }
      std::fflush(stdout);
      _exit(status);
    }
    workers[pid] = {number, std::chrono::steady_clock::now()};
    std::printf("worker %u started (pid %d)\n", number, static_cast<int>(pid));
    std::fflush(stdout);
  };
  for (uint32_t i = 0; i < options.workers; ++i) start(i);
  const sigset_t set = handled_signals();
  bool stopping = false;
  while (!workers.empty()) {
    int signal = 0;
    sigwait(&set, &signal);
    if ((signal == SIGTERM || signal == SIGINT) && !stopping) {
      stopping = true;
      std::fprintf(stderr, "effcam-serve: %s: draining %zu workers\n", signal == SIGTERM ? "SIGTERM" : "SIGINT",
                   workers.size());
      for (const auto& [pid, worker] : workers) kill(pid, SIGTERM);
    }
    int status = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      const auto it = workers.find(pid);
      if (it == workers.end()) continue;
      const Worker worker = it->second;
      const uint32_t number = worker.number;
      workers.erase(it);
      if (stopping) continue;
      if (WIFSIGNALED(status)) {
        std::fprintf(stderr, "effcam-serve: worker %u (pid %d) killed by signal %d; restarting it\n", number,
                     static_cast<int>(pid), WTERMSIG(status));
      } else {
        std::fprintf(stderr, "effcam-serve: worker %u (pid %d) exited with status %d; restarting it\n", number,
                     static_cast<int>(pid), WEXITSTATUS(status));
      }
      // A worker that cannot even start (its model file gone) is not restarted in a tight loop.
      if (std::chrono::steady_clock::now() - worker.started < std::chrono::seconds(1)) sleep(1);
      start(number);
    }
  }
  return 0;
}

int run(int argc, char** argv) {
  // Signals go to the thread that waits for them, never to a handler interrupting a request.
  const sigset_t set = handled_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // Large buffers (bodies, decoded images, encoded pictures) are mmap'd and returned to the kernel when freed, so
  // resident memory stays flat from one request to the next (a fixed threshold also stops glibc from raising it).
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  mallopt(M_ARENA_MAX, 2);

  ServeOptions options;
  try {
    options = parse_options(argc, argv);
  } catch (const Error& e) {
    std::fprintf(stderr, "effcam-serve: %s\n%s", e.what(), kUsage);
    return 2;
  }
  const uint64_t process_bytes = process_memory().rss_bytes + uint64_t{options.connections} * kConnectionBytes;
  std::vector<Model> models;
  for (const ModelSpec& spec : options.models) models.push_back(Model::load(spec.path));
  // The sessions are planned (and checked: layers, threads) before the port opens; workers make their own after
  // the fork.
  std::optional<Service> service(std::in_place, options, models, process_bytes);
  std::printf("effcam-serve %s: %zu model(s), %u session(s) x %u thread(s) each, queue %u, %u worker(s)\n%s",
              version(), models.size(), options.sessions, options.threads_per_session, options.queue,
              std::max(1u, options.workers), service->plan_text().c_str());
  httplib::Server server;
  // Answers go out as headers then body: without TCP_NODELAY (inherited by every accepted socket from the listening
  // one, so set before binding) Nagle holds the body until the client's delayed ACK, ~40 ms a request.
  server.set_tcp_nodelay(true);
  const int port = options.port == 0 ? server.bind_to_any_port(options.host)
                                     : (server.bind_to_port(options.host, options.port) ? options.port : -1);
  if (port < 0) throw Error("cannot listen on " + options.host + ":" + std::to_string(options.port), ErrorCode::Io);
  std::printf("listening on http://%s:%d\n", options.host.c_str(), port);
  std::fflush(stdout);
  if (options.workers == 0) return serve(*service, server, port, "");
  service.reset();
  models.clear();
  return supervise(options, process_bytes, server, port);
}

}  // namespace
}  // namespace effcam::serve

int main(int argc, char** argv) {
  try {
    return effcam::serve::run(argc, argv);
  } catch (const effcam::Error& e) {
    std::fprintf(stderr, "effcam-serve: %s\n", e.what());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "effcam-serve: out of memory\n");
  }
  return 1;
}
