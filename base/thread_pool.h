// A small fixed pool: the caller plus (threads - 1) workers. Between jobs a worker polls for the next one for a
// few tens of microseconds (a forward pass starts its ops back to back, and a futex wake-up costs about as long
// as a small op), then sleeps on a condition variable: an idle pool does not spin. The caller waits for the
// workers the same way. With one thread nothing is started and work runs inline. An exception thrown by fn on any
// thread reaches the caller of parallel_for, once every chunk has finished.
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

  // Splits [0, count) into at most size() contiguous chunks and runs fn(begin, end, worker) on each, the caller
  // taking chunk 0; returns when all are done. `worker` < size() identifies per-thread scratch. When chunks throw,
  // the first exception (the caller's own before a worker's) is rethrown after all chunks are done.
  using RangeFn = std::function<void(uint32_t begin, uint32_t end, uint32_t worker)>;
  void parallel_for(uint32_t count, const RangeFn& fn);

 private:
  void worker_loop(uint32_t worker);

  uint32_t threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const RangeFn* job_ = nullptr;
  uint32_t job_count_ = 0;
  uint32_t chunks_ = 0;
  std::atomic<uint64_t> generation_{0};  // written under mutex_, polled without it
  std::atomic<uint32_t> pending_{0};     // workers still running the current job
  std::exception_ptr worker_error_;      // the first exception a worker's chunk threw (under mutex_)
  bool stopping_ = false;
};

}  // namespace effcam
