#include "base/thread_pool.h"

#include <immintrin.h>

#include <chrono>

namespace effcam {

namespace {

// Polls `ready` for up to kPollTime before the caller falls back to sleeping; true when it became ready.
constexpr std::chrono::microseconds kPollTime{50};

// Pieces per thread: a stalled thread holds back at most one piece, while each piece stays long enough for the
// kernels' per-call work (a partial register tile, a Winograd row of tiles) to stay small beside it (S at 2 threads
// on Zen 3: 4 per thread cost 3 ms over a static split in the best runs; 2 match it, and cut the slow medians).
constexpr uint32_t kPiecesPerThread = 2;
// Up to this many items per thread, items that do not split evenly into those pieces are each a piece: a few items
// of much work each (a Winograd conv's rows of tiles: 10 at 38x38) in 2 uneven pieces per thread leave one thread
// a piece behind (6 rows against 4; S's block3b..d_expand_conv 1.55 -> 1.30 ms at 2 threads on Zen 3), while even
// splits keep their fewer pieces (8 squeeze-excite mean pieces of a depthwise conv: 4 pieces measured faster).
constexpr uint32_t kItemPiecesPerThread = 8;

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

// Piece k of `count` items split into `pieces` near-equal parts.
void piece_bounds(uint32_t count, uint32_t pieces, uint32_t k, uint32_t& begin, uint32_t& end) {
  begin = static_cast<uint32_t>(uint64_t{count} * k / pieces);
  end = static_cast<uint32_t>(uint64_t{count} * (k + 1) / pieces);
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
  uint32_t pieces = count < threads_ * kPiecesPerThread ? count : threads_ * kPiecesPerThread;
  if (pieces > 0 && count % pieces != 0 && count <= threads_ * kItemPiecesPerThread) pieces = count;
  if (threads_ == 1 || pieces <= 1) {
    if (count > 0) fn(0, count, 0);
    return;
  }
  Job job{&fn, count, pieces, 0};
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job.generation = generation_.load() + 1;
    job_ = job;
    finished_pieces_.store(0);
    next_piece_.store(uint64_t{job.generation} << 32);
    generation_.store(job.generation);
  }
  wake_.notify_all();
  std::exception_ptr error = run_pieces(job, 0);  // fn is in use until all are done
  auto finished = [&] { return finished_pieces_.load() == pieces; };
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

std::exception_ptr ThreadPool::run_pieces(const Job& job, uint32_t worker) {
  std::exception_ptr own_error;
  for (;;) {
    uint64_t next = next_piece_.load();
    do {
      if (next >> 32 != job.generation || static_cast<uint32_t>(next) >= job.pieces) return own_error;
    } while (!next_piece_.compare_exchange_weak(next, next + 1));
    uint32_t begin = 0, end = 0;
    piece_bounds(job.count, job.pieces, static_cast<uint32_t>(next), begin, end);
    try {
      (*job.fn)(begin, end, worker);
    } catch (...) {
      if (worker == 0) {
        if (!own_error) own_error = std::current_exception();
      } else {
        std::lock_guard<std::mutex> lock(mutex_);  // before the piece counts as finished: the caller reads it then
        if (!worker_error_) worker_error_ = std::current_exception();
      }
    }
    if (finished_pieces_.fetch_add(1) + 1 == job.pieces) {
      std::lock_guard<std::mutex> lock(mutex_);  // the caller may be between its check and its wait
      done_.notify_one();
    }
  }
}

void ThreadPool::worker_loop(uint32_t worker) {
  uint32_t seen = 0;
  for (;;) {
    poll([&] { return generation_.load() != seen; });  // stopping_ is seen below, after at most kPollTime
    Job job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_.load() != seen; });
      if (stopping_) return;
      seen = generation_.load();
      job = job_;
    }
    run_pieces(job, worker);
  }
}

}  // namespace effcam
