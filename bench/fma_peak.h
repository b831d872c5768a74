// The machine's measured fp32 FMA peak: the ceiling that effcam-bench's achieved GFLOP/s is a share of; and, where
// the CPU has AVX-512 BF16, the peak of its bf16 dot products, what a BF16 kernel path could at most reach.
#pragma once

#include <cstdint>
#include <string>

namespace effcam::bench {

struct FmaPeak {
  std::string isa;             // the instruction set measured: "avx512", "avx2", "avx512_bf16" ("none": the CPU lacks it)
  uint32_t threads = 0;        // threads run at once, one FMA loop each
  double gflops_total = 0;     // all threads together, 1 multiply-add = 2 FLOP
  double gflops_per_core = 0;  // gflops_total / threads
};

// Runs `threads` copies of a tight loop of independent FMA chains (enough accumulators to hide the FMA latency)
// with the widest vectors the CPU has, in short rounds for about `seconds` of wall time, and returns the best
// round's rate: what the cores can do when nothing else runs on them.
FmaPeak measure_fma_peak(uint32_t threads, double seconds = 0.3);

// The same with VDPBF16PS on 512-bit vectors (each lane adds two bf16 products to an fp32 sum: 2 multiply-adds);
// isa "none" where the CPU lacks AVX-512 BF16.
FmaPeak measure_bf16_peak(uint32_t threads, double seconds = 0.3);

}  // namespace effcam::bench
