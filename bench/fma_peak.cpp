#include "bench/fma_peak.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace effcam::bench {

namespace {

// Each accumulator is one dependent FMA chain: acc = acc * kDecay + kStep converges to kStep / (1 - kDecay),
// so values stay normal (no denormal or overflow slowdown) however long the loop runs.
constexpr float kDecay = 0.999f;
constexpr float kStep = 0.001f;
constexpr double kRoundSeconds = 0.002;  // one round of the loop on each thread
constexpr int kMinRounds = 10;

#if defined(__x86_64__)
// 16 chains of 512-bit FMAs: covers a 4-cycle latency on two FMA ports with room to spare (32 zmm registers).
constexpr int kChains512 = 16;
// 12 chains of 256-bit FMAs leave 4 of the 16 ymm registers for the constants.
constexpr int kChains256 = 12;

// Every lane of every chain summed: the loops' result, only so that they cannot be dropped as unused.
template <class Vector, int kChains>
float sum_chains(const Vector (&acc)[kChains]) {
  float total = 0;
  for (const Vector& chain : acc) {
    float lanes[sizeof(Vector) / sizeof(float)];
    std::memcpy(lanes, &chain, sizeof(Vector));
    for (float lane : lanes) total += lane;
  }
  return total;
}

__attribute__((target("avx512f"))) float fma_loop_avx512(uint64_t iterations) {
  const __m512 decay = _mm512_set1_ps(kDecay);
  const __m512 step = _mm512_set1_ps(kStep);
  __m512 acc[kChains512];
  for (int c = 0; c < kChains512; ++c) acc[c] = _mm512_set1_ps(static_cast<float>(c));
  for (uint64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 16
    for (int c = 0; c < kChains512; ++c) acc[c] = _mm512_fmadd_ps(acc[c], decay, step);
  }
  return sum_chains(acc);
}

// The bf16 dot products' chains add a tiny product (2^-20 x 2^-20, two per lane) each step: a sum that stays normal
// and far from overflow for any run (FMA's decay has no counterpart here: VDPBF16PS only adds).
__attribute__((target("avx512f,avx512bf16"))) float dot_loop_avx512_bf16(uint64_t iterations) {
  const __m512 tiny = _mm512_set1_ps(0x1p-20f);
  const __m512bh a = _mm512_cvtne2ps_pbh(tiny, tiny);
  __m512 acc[kChains512];
  for (int c = 0; c < kChains512; ++c) acc[c] = _mm512_set1_ps(static_cast<float>(c));
  for (uint64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 16
    for (int c = 0; c < kChains512; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], a, a);
  }
  return sum_chains(acc);
}

__attribute__((target("avx2,fma"))) float fma_loop_avx2(uint64_t iterations) {
  const __m256 decay = _mm256_set1_ps(kDecay);
  const __m256 step = _mm256_set1_ps(kStep);
  __m256 acc[kChains256];
  for (int c = 0; c < kChains256; ++c) acc[c] = _mm256_set1_ps(static_cast<float>(c));
  for (uint64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 12
    for (int c = 0; c < kChains256; ++c) acc[c] = _mm256_fmadd_ps(acc[c], decay, step);
  }
  return sum_chains(acc);
}
#endif

struct Kernel {
  const char* isa;
  float (*loop)(uint64_t iterations);
  double flops_per_iteration;  // chains x lanes x multiply-adds per lane x 2
};

Kernel widest_kernel() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f")) return {"avx512", fma_loop_avx512, kChains512 * 16 * 2.0};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    return {"avx2", fma_loop_avx2, kChains256 * 8 * 2.0};
  }
#endif
  return {"none", nullptr, 0};
}

Kernel bf16_kernel() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16")) {
    return {"avx512_bf16", dot_loop_avx512_bf16, kChains512 * 16 * 2 * 2.0};
  }
#endif
  return {"none", nullptr, 0};
}

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Where the loops' results go, so that the compiler cannot drop the loops as unused.
std::atomic<float> loop_results{0};

// `threads` threads (the caller and threads - 1 workers started once) that run the loop together, round after
// round; a round's time is the wall time from the start signal until the last thread is done. Workers spin
// between rounds so that a round starts on all of them at once.
class LoopTeam {
 public:
  LoopTeam(const Kernel& kernel, uint32_t threads, uint64_t iterations)
      : kernel_(kernel), iterations_(iterations) {
    for (uint32_t t = 1; t < threads; ++t) workers_.emplace_back([this] { work(); });
  }
  ~LoopTeam() {
    stop_.store(true);
    for (std::thread& worker : workers_) worker.join();
  }
  LoopTeam(const LoopTeam&) = delete;
  LoopTeam& operator=(const LoopTeam&) = delete;

  double round_seconds() {
    finished_.store(0);
    const Clock::time_point start = Clock::now();
    round_.fetch_add(1, std::memory_order_release);
    loop_results.store(kernel_.loop(iterations_), std::memory_order_relaxed);
    while (finished_.load(std::memory_order_acquire) < workers_.size()) std::this_thread::yield();
    return seconds_since(start);
  }

 private:
  void work() {
    uint64_t seen = 0;
    while (true) {
      while (round_.load(std::memory_order_acquire) == seen) {
        if (stop_.load()) return;
        std::this_thread::yield();
      }
      ++seen;
      loop_results.store(kernel_.loop(iterations_), std::memory_order_relaxed);
      finished_.fetch_add(1, std::memory_order_release);
    }
  }

  const Kernel& kernel_;
  const uint64_t iterations_;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> round_{0};
  std::atomic<uint32_t> finished_{0};
  std::atomic<bool> stop_{false};
};

FmaPeak measure_peak(const Kernel& kernel, uint32_t threads, double seconds) {
  threads = std::max(threads, 1u);
  FmaPeak peak{kernel.isa, threads, 0, 0};
  if (!kernel.loop) return peak;

  // Short rounds, best of many: on a shared machine most rounds run undisturbed, and the best one shows what
  // the cores can do. Calibrate the round length on one thread first.
  uint64_t iterations = 1 << 10;
  {
    LoopTeam one(kernel, 1, iterations);
    double best = one.round_seconds();
    for (int i = 0; i < 4; ++i) best = std::min(best, one.round_seconds());
    iterations = std::max<uint64_t>(iterations, static_cast<uint64_t>(iterations * kRoundSeconds / best));
  }
  LoopTeam team(kernel, threads, iterations);
  double best = 0;
  const Clock::time_point start = Clock::now();
  for (int round = 0; round < kMinRounds || seconds_since(start) < seconds; ++round) {
    best = std::max(best, kernel.flops_per_iteration * static_cast<double>(iterations) * threads / team.round_seconds());
  }
  peak.gflops_total = best / 1e9;
  peak.gflops_per_core = peak.gflops_total / threads;
  return peak;
}

}  // namespace

FmaPeak measure_fma_peak(uint32_t threads, double seconds) { return measure_peak(widest_kernel(), threads, seconds); }

FmaPeak measure_bf16_peak(uint32_t threads, double seconds) { return measure_peak(bf16_kernel(), threads, seconds); }

}  // namespace effcam::bench
