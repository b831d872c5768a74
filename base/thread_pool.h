// A small fixed pool: the caller plus (threads - 1) workers. Work is split into more pieces than threads, taken
// one at a time from a shared counter, so a thread whose vCPU stalls (a shared VM) holds back only the piece it
// is on, not half the op. Between jobs a worker polls for the next one for a few tens of microseconds (a forward
// pass starts its ops back to back, and a futex wake-up costs about as long as a small op), then sleeps on a
// condition variable: an idle pool does not spin. The caller waits for the pieces, not for the workers: a worker
// that wakes late finds nothing left. With one thread nothing is started and work runs inline. An exception thrown
// by fn on any thread reaches the caller of parallel_for, once every piece has finished.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace effcam {

class ThreadPool {
 public:
  explicit ThreadPool(uint32_t threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  uint32_t size() const { return threads_; }

  // Splits [0, count) into contiguous pieces (one with one thread) and runs fn(begin, end, worker) on each, on
  // whichever thread is free; returns when all are done. `worker` < size() identifies the running thread's scratch.
  // Which thread runs a piece varies: fn's result must not depend on it. When pieces throw, the first exception
  // (the caller's own before a worker's) is rethrown after all pieces are done.
  using RangeFn = std::function<void(uint32_t begin, uint32_t end, uint32_t worker)>;
  void parallel_for(uint32_t count, const RangeFn& fn);

 private:
  struct Job {
    const RangeFn* fn = nullptr;
    uint32_t count = 0, pieces = 0;
    uint32_t generation = 0;
  };
  void worker_loop(uint32_t worker);
  // Takes and runs pieces of `job` until none is left. A piece's exception is kept for the caller: the caller's own
  // (worker 0) is returned, a worker's goes to worker_error_.
  std::exception_ptr run_pieces(const Job& job, uint32_t worker);

  uint32_t threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  Job job_;  // the current job, written under mutex_ before generation_ moves on; a worker copies it under mutex_
  std::atomic<uint32_t> generation_{0};
  // The next piece to take, tagged with its job's generation in the high half: a worker still holding an older
  // job cannot take a piece of the current one.
  std::atomic<uint64_t> next_piece_{0};
  std::atomic<uint32_t> finished_pieces_{0};
  std::exception_ptr worker_error_;  // the first exception a worker's piece threw (under mutex_)
  bool stopping_ = false;
};

}  // namespace effcam
