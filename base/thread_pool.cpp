#include "base/thread_pool.h"

#include <immintrin.h>

#include <chrono>

namespace effcam {

namespace {

// Polls `ready` for up to kPollTime before the caller falls back to sleeping; true when it became ready.
constexpr std::chrono::microseconds kPollTime{50};

template <class Ready>
bool poll(const Ready& ready) {
  const auto deadline = std::chrono::steady_clock::now() + kPollTime;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (ready()) return true;
      _mm_pause();
    }
    if (std::chrono::steady_clock::now() >= deadline) return ready();
  }
}

// Chunk k of `count` items split into `chunks` near-equal parts.
void chunk_bounds(uint32_t count, uint32_t chunks, uint32_t k, uint32_t& begin, uint32_t& end) {
  begin = static_cast<uint32_t>(uint64_t{count} * k / chunks);
  end = static_cast<uint32_t>(uint64_t{count} * (k + 1) / chunks);
}
}  // namespace

ThreadPool::ThreadPool(uint32_t threads) : threads_(threads == 0 ? 1 : threads) {
  workers_.reserve(threads_ - 1);
  for (uint32_t w = 1; w < threads_; ++w) workers_.emplace_back([this, w] { worker_loop(w); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::parallel_for(uint32_t count, const RangeFn& fn) {
  const uint32_t chunks = count < threads_ ? count : threads_;
  if (chunks <= 1) {
    if (count > 0) fn(0, count, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    job_count_ = count;
    chunks_ = chunks;
    pending_.store(chunks - 1);
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  uint32_t begin = 0, end = 0;
  chunk_bounds(count, chunks, 0, begin, end);
  std::exception_ptr error;
  try {
    fn(begin, end, 0);
  } catch (...) {
    error = std::current_exception();  // the workers still use fn: wait for them before leaving
  }
  auto finished = [this] { return pending_.load() == 0; };
  if (!poll(finished)) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, finished);
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!error) error = worker_error_;
    worker_error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

void ThreadPool::worker_loop(uint32_t worker) {
  uint64_t seen = 0;
  for (;;) {
    const RangeFn* job = nullptr;
    uint32_t count = 0, chunks = 0;
    poll([&] { return generation_.load() != seen; });  // stopping_ is seen below, after at most kPollTime
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_.load() != seen; });
      if (stopping_) return;
      seen = generation_.load();
      job = job_;
      count = job_count_;
      chunks = chunks_;
    }
    if (worker < chunks) {
      uint32_t begin = 0, end = 0;
      chunk_bounds(count, chunks, worker, begin, end);
      try {
        (*job)(begin, end, worker);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!worker_error_) worker_error_ = std::current_exception();
      }
      if (pending_.fetch_sub(1) == 1) {
        std::lock_guard<std::mutex> lock(mutex_);  // the caller may be between its check and its wait
        done_.notify_one();
      }
    }
  }
}

}  // namespace effcam
