// effcam-fma-peak: the machine's measured fp32 FMA peak, per core and in total, and its BF16 dot products' where
// the CPU has them.
#include <algorithm>
#include <cstdio>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "apps/cli.h"
#include "bench/fma_peak.h"
#include "effcam/error.hpp"

namespace {

constexpr const char* kUsage =
    "usage: effcam-fma-peak [--threads N] [--json]\n"
    "Runs N threads (default: all CPUs) of independent fp32 FMA chains with the widest vectors the CPU has\n"
    "(AVX-512, else AVX2) and prints the achieved GFLOP/s per core and in total (1 FMA = 2 FLOP). Where the CPU\n"
    "has AVX-512 BF16 it measures VDPBF16PS the same way (two bf16 products per fp32 lane = 4 FLOP).\n";

}  // namespace

int main(int argc, char** argv) {
  uint32_t threads = std::max(1u, std::thread::hardware_concurrency());
  bool json = false;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--threads") {
        if (i + 1 >= argc) throw effcam::Error("--threads needs a value");
        threads = effcam::cli::parse_count(arg, argv[++i], 1, 1024);
      } else if (arg == "--json") {
        json = true;
      } else if (arg == "-h" || arg == "--help") {
        std::fputs(kUsage, stdout);
        return 0;
      } else {
        throw effcam::Error("unknown argument " + arg);
      }
    }
  } catch (const effcam::Error& e) {
    std::fprintf(stderr, "effcam-fma-peak: %s\n%s", e.what(), kUsage);
    return 2;
  }

  const effcam::bench::FmaPeak peak = effcam::bench::measure_fma_peak(threads);
  if (peak.isa == "none") {
    std::fprintf(stderr, "effcam-fma-peak: this CPU has neither AVX-512 nor AVX2 with FMA\n");
    return 1;
  }
  const effcam::bench::FmaPeak bf16 = effcam::bench::measure_bf16_peak(threads);
  const bool has_bf16 = bf16.isa != "none";
  if (json) {
    nlohmann::json out = {{"isa", peak.isa},
                          {"threads", peak.threads},
                          {"gflops_per_core", peak.gflops_per_core},
                          {"gflops_total", peak.gflops_total},
                          {"bf16", nullptr}};
    if (has_bf16) {
      out["bf16"] = {{"isa", bf16.isa}, {"gflops_per_core", bf16.gflops_per_core}, {"gflops_total", bf16.gflops_total}};
    }
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  const char* plural = peak.threads == 1 ? "" : "s";
  std::printf("fp32 FMA peak (%s, %u thread%s): %.1f GFLOP/s per core, %.1f GFLOP/s total\n", peak.isa.c_str(),
              peak.threads, plural, peak.gflops_per_core, peak.gflops_total);
  if (has_bf16) {
    std::printf("bf16 dot-product peak (%s, %u thread%s): %.1f GFLOP/s per core, %.1f GFLOP/s total (%.2fx fp32's)\n",
                bf16.isa.c_str(), bf16.threads, plural, bf16.gflops_per_core, bf16.gflops_total,
                bf16.gflops_total / peak.gflops_total);
  }
  return 0;
}
