// The public kernels: argument checks, then the chosen SIMD path. Also the kernels no SIMD path needs
// (zero_pad copies rows, softmax runs once per image on a handful of values).
#include "ops/kernels.h"

#include <cpuid.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <string>
#include <xsimd/xsimd.hpp>

#include "effcam/error.hpp"
#include "ops/kernel_table.h"
#include "format/weight_layout.h"

namespace effcam::ops {
namespace {

struct Path {
  std::string_view name;
  std::string_view needs;  // the instruction sets, for the error when the CPU lacks them
  const detail::KernelTable& (*kernels)();
  bool (*supported)();
};

// F16C: CPUID leaf 1, ECX bit 29 (clang's __builtin_cpu_supports does not know it).
bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
}

// xsimd reports the instruction sets but not F16C or AVX-512 VL; __builtin_cpu_supports also checks that the OS
// saves the wide registers.
bool cpu_has_avx2() {
  auto arch = xsimd::available_architectures();
  return arch.fma3_avx2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
}

bool cpu_has_avx512() {
  auto arch = xsimd::available_architectures();
  return arch.avx512f && arch.avx512bw && arch.avx512dq && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl") && cpu_has_avx2();
}

bool always() { return true; }

constexpr Path kPaths[] = {  // best first
    {"avx512", "AVX-512 F/BW/DQ/VL and F16C", detail::avx512_kernels, cpu_has_avx512},
    {"avx2", "AVX2, FMA and F16C", detail::avx2_kernels, cpu_has_avx2},
    {"scalar", "SSE2", detail::scalar_kernels, always},
};

const Path& find_path(std::string_view name) {
  const std::string named = "kernel path '" + std::string(name) + "'";
  for (const Path& path : kPaths) {
    if (path.name != name) continue;
    if (!path.supported()) {
      std::string runnable;
      for (std::string_view other : available_dispatches()) {
        runnable += (runnable.empty() ? "" : ", ") + std::string(other);
      }
      throw Error(named + ": this CPU lacks " + std::string(path.needs) + " (it can run " + runnable + ")");
    }
    return path;
  }
  throw Error(named + " is not one of avx512, avx2, scalar");
}

// The best path this CPU supports.
const Path& startup_path() {
  static const Path& chosen = []() -> const Path& {
    for (const Path& path : kPaths)
      if (path.supported()) return path;
    return kPaths[std::size(kPaths) - 1];
  }();
  return chosen;
}

std::atomic<const Path*> g_forced{nullptr};

const Path& current_path() {
  const Path* forced = g_forced.load(std::memory_order_acquire);
  return forced ? *forced : startup_path();
}

const detail::KernelTable& kernels() { return current_path().kernels(); }

void require(bool condition, const char* kernel, const char* what) {
  if (!condition) throw Error(std::string("ops::") + kernel + ": " + what);
}

void check_activation(const char* kernel, Activation act) {
  require(static_cast<uint32_t>(act) <= static_cast<uint32_t>(Activation::Tanh), kernel,
          "activation is not elementwise (softmax has its own kernel) or unknown");
}

void check_window(const char* kernel, uint32_t kh, uint32_t kw, uint32_t stride_h, uint32_t stride_w) {
  require(kh > 0 && kw > 0, kernel, "kernel size is zero");
  require(stride_h > 0 && stride_w > 0, kernel, "stride is zero");
}

void check_range(const char* kernel, size_t begin, size_t end, size_t limit) {
  require(begin <= end && end <= limit, kernel, "range is outside the output");
}

}  // namespace

void conv2d(const ConvArgs& a, uint32_t row_begin, uint32_t row_end) {
  require(a.x && (a.y || a.gate) && a.kernel.data, "conv2d", "null tensor");
  require(a.cin > 0 && a.cout > 0, "conv2d", "zero channels");
  check_window("conv2d", a.kh, a.kw, a.stride_h, a.stride_w);
  check_activation("conv2d", a.act);
  require(!(a.output_gradient && a.residual), "conv2d", "a gradient rerun has no residual");
  require(!(a.pre_activation && a.residual), "conv2d", "a kept pre-activation has no residual");
  require(!a.gate || (a.gate_input && a.gate_sums && a.act == Activation::Linear && !a.bias && !a.output_gradient &&
                      !a.pre_activation && !a.winograd_weights),
          "conv2d", "a gated gradient is linear, without bias, kept pre-activation or Winograd, and has its sums");
  check_range("conv2d", row_begin, row_end, a.out_h);
  if (a.winograd_weights && a.winograd_scratch && conv2d_winograd(a.kh, a.kw, a.stride_h, a.stride_w)) {
    return kernels().winograd_conv2d(a, row_begin, row_end);
  }
  kernels().conv2d(a, row_begin, row_end);
}

bool conv2d_winograd(uint32_t kh, uint32_t kw, uint32_t stride_h, uint32_t stride_w) {
  return kh == 3 && kw == 3 && stride_h == 1 && stride_w == 1;
}

size_t winograd_weight_floats(uint32_t cin, uint32_t cout) {
  return size_t{detail::kWinogradPositions} * cin * format::round_up_to_block(cout);
}

size_t winograd_scratch_floats(uint32_t cin) {
  // The transformed inputs of a run of tiles (cin padded to whole vectors) and their products for one group of
  // output channels, each for the 36 positions of the 6x6 transform.
  return size_t{detail::kWinogradPositions} * detail::kWinogradTiles *
         (format::round_up_to_block(cin) + detail::kWinogradChannels);
}

void winograd_transform_weights(const ConvArgs& a, float* u, uint32_t block_begin, uint32_t block_end) {
  require(a.kernel.data && u, "winograd_transform_weights", "null tensor");
  require(a.cin > 0 && a.cout > 0, "winograd_transform_weights", "zero channels");
  require(conv2d_winograd(a.kh, a.kw, a.stride_h, a.stride_w), "winograd_transform_weights",
          "only 3x3 stride-1 convs have a Winograd path");
  check_range("winograd_transform_weights", block_begin, block_end, format::round_up_to_block(a.cout) / format::kChannelBlock);
  kernels().winograd_transform_weights(a, u, block_begin, block_end);
}

size_t conv2d_pooled_scratch_floats(const ConvArgs& a, uint32_t threads) {
  if (!conv2d_winograd(a.kh, a.kw, a.stride_h, a.stride_w)) return 0;
  return winograd_weight_floats(a.cin, a.cout) + size_t{threads} * winograd_scratch_floats(a.cin);
}

void conv2d_pooled(const ConvArgs& args, float* scratch, ThreadPool& pool) {
  ConvArgs a = args;
  // Rows go to the threads (and to a gate's pieces) in runs of `grain`: a pointwise conv's pixels (one column of
  // them) in whole register tiles, since a piece ending inside a tile leaves a narrow one (1 pixel costs about a
  // quarter of 6; a gated 10x10 gradient's 8 pieces of 12 or 13 pixels took 1.27 ms per op at S block3c_add, 1.06
  // in whole tiles).
  uint32_t grain = 1;
  if (a.kh == 1 && a.kw == 1 && a.stride_h == 1 && a.stride_w == 1 && a.pad_top == 0 && a.pad_left == 0 &&
      a.in_h == a.out_h && a.in_w == a.out_w) {
    a.in_h = a.out_h = a.out_h * a.out_w;  // one column of pixels
    a.in_w = a.out_w = 1;
    grain = detail::kPointwisePieceGrain;
  }
  const uint32_t units = (a.out_h + grain - 1) / grain;
  if (a.gate) {
    const uint32_t pieces = std::min(units, kGatePieces);
    float* const sums = a.gate_sums;
    std::fill(sums, sums + size_t{kGatePieces} * a.cout, 0.0f);
    pool.parallel_for(pieces, [&](uint32_t b, uint32_t e, uint32_t) {
      for (uint32_t k = b; k < e; ++k) {
        ConvArgs piece = a;
        piece.gate_sums = sums + size_t{k} * a.cout;
        const uint32_t first = static_cast<uint32_t>(uint64_t{units} * k / pieces) * grain;
        conv2d(piece, first, std::min(static_cast<uint32_t>(uint64_t{units} * (k + 1) / pieces) * grain, a.out_h));
      }
    });
    return;
  }
  if (!scratch || !conv2d_winograd(a.kh, a.kw, a.stride_h, a.stride_w)) {
    pool.parallel_for(units, [&](uint32_t b, uint32_t e, uint32_t) {
      conv2d(a, b * grain, std::min(e * grain, a.out_h));
    });
    return;
  }
  pool.parallel_for(format::round_up_to_block(a.cout) / format::kChannelBlock,
                    [&](uint32_t b, uint32_t e, uint32_t) { winograd_transform_weights(a, scratch, b, e); });
  a.winograd_weights = scratch;
  float* const work = scratch + winograd_weight_floats(a.cin, a.cout);
  // Split by rows of tiles: a range starting inside one would recompute that row of tiles.
  pool.parallel_for((a.out_h + kWinogradTile - 1) / kWinogradTile, [&](uint32_t b, uint32_t e, uint32_t worker) {
    ConvArgs mine = a;
    mine.winograd_scratch = work + worker * winograd_scratch_floats(a.cin);
    conv2d(mine, kWinogradTile * b, std::min(kWinogradTile * e, a.out_h));
  });
}

void depthwise2d(const DepthwiseArgs& a, uint32_t row_begin, uint32_t row_end) {
  require(a.x && a.y && a.kernel.data, "depthwise2d", "null tensor");
  require(a.cin > 0 && a.cout > 0 && a.cout % a.cin == 0, "depthwise2d", "cout is not a multiple of cin");
  check_window("depthwise2d", a.kh, a.kw, a.stride_h, a.stride_w);
  check_activation("depthwise2d", a.act);
  require(!(a.output_gradient && (a.residual || a.channel_sums)), "depthwise2d",
          "a gradient rerun has no residual or channel sums");
  require(!(a.pre_activation && a.residual), "depthwise2d", "a kept pre-activation has no residual");
  require(!a.output_gradient_means || a.output_gradient, "depthwise2d", "the means' gradient comes with the output's");
  check_range("depthwise2d", row_begin, row_end, a.out_h);
  kernels().depthwise2d(a, row_begin, row_end);
}

void dense(const DenseArgs& a, uint32_t unit_begin, uint32_t unit_end) {
  require(a.x && a.y && a.kernel.data, "dense", "null tensor");
  check_activation("dense", a.act);
  check_range("dense", unit_begin, unit_end, a.units);
  kernels().dense(a, unit_begin, unit_end);
}

void squeeze_excite(const SqueezeExciteArgs& a) {
  require(a.means && a.hidden && a.gate && a.w1.data && a.w2.data, "squeeze_excite", "null tensor");
  check_activation("squeeze_excite", a.act);
  check_activation("squeeze_excite", a.act2);
  const detail::KernelTable& k = kernels();
  k.dense({a.means, a.channels, a.hidden, a.reduced, a.w1, a.b1, a.act, a.act_max}, 0, a.reduced);
  k.dense({a.hidden, a.reduced, a.gate, a.channels, a.w2, a.b2, a.act2, a.act2_max}, 0, a.channels);
}

void channel_affine(const ChannelAffineArgs& a, uint32_t pixel_begin, uint32_t pixel_end) {
  require(a.x && a.y, "channel_affine", "null tensor");
  check_activation("channel_affine", a.act);
  check_range("channel_affine", pixel_begin, pixel_end, a.pixels);
  kernels().channel_affine(a, pixel_begin, pixel_end);
}

void add(const ElementwiseArgs& a, uint32_t pixel_begin, uint32_t pixel_end) {
  require(a.a && a.b && a.y, "add", "null tensor");
  check_activation("add", a.act);
  check_range("add", pixel_begin, pixel_end, a.pixels);
  kernels().add(a, pixel_begin, pixel_end);
}

void multiply(const ElementwiseArgs& a, uint32_t pixel_begin, uint32_t pixel_end) {
  require(a.a && a.b && a.y, "multiply", "null tensor");
  check_activation("multiply", a.act);
  check_range("multiply", pixel_begin, pixel_end, a.pixels);
  kernels().multiply(a, pixel_begin, pixel_end);
}

void activate(const float* x, float* y, size_t begin, size_t end, Activation act, float act_max) {
  require(x && y, "activate", "null tensor");
  check_activation("activate", act);
  require(begin <= end, "activate", "range is reversed");
  kernels().activate(x, y, begin, end, act, act_max);
}

void global_avg_pool(const GlobalPoolArgs& a, uint32_t channel_begin, uint32_t channel_end) {
  require(a.x && a.y, "global_avg_pool", "null tensor");
  check_range("global_avg_pool", channel_begin, channel_end, a.channels);
  kernels().global_avg_pool(a, channel_begin, channel_end);
}

void max_pool2d(const PoolArgs& a, uint32_t row_begin, uint32_t row_end) {
  require(a.x && a.y, "max_pool2d", "null tensor");
  check_window("max_pool2d", a.kh, a.kw, a.stride_h, a.stride_w);
  check_range("max_pool2d", row_begin, row_end, a.out_h);
  kernels().max_pool2d(a, row_begin, row_end);
}

void avg_pool2d(const PoolArgs& a, uint32_t row_begin, uint32_t row_end) {
  require(a.x && a.y, "avg_pool2d", "null tensor");
  check_window("avg_pool2d", a.kh, a.kw, a.stride_h, a.stride_w);
  check_range("avg_pool2d", row_begin, row_end, a.out_h);
  kernels().avg_pool2d(a, row_begin, row_end);
}

void zero_pad(const ZeroPadArgs& a, uint32_t row_begin, uint32_t row_end) {
  require(a.x && a.y, "zero_pad", "null tensor");
  check_range("zero_pad", row_begin, row_end, size_t{a.in_h} + a.pad_top + a.pad_bottom);
  const size_t c = a.channels;
  const size_t out_w = size_t{a.in_w} + a.pad_left + a.pad_right;
  for (uint32_t oy = row_begin; oy < row_end; ++oy) {
    float* row = a.y + oy * out_w * c;
    if (oy < a.pad_top || oy >= a.pad_top + a.in_h) {
      std::memset(row, 0, out_w * c * sizeof(float));
      continue;
    }
    std::memset(row, 0, a.pad_left * c * sizeof(float));
    std::memcpy(row + a.pad_left * c, a.x + size_t{oy - a.pad_top} * a.in_w * c, a.in_w * c * sizeof(float));
    std::memset(row + (a.pad_left + size_t{a.in_w}) * c, 0, a.pad_right * c * sizeof(float));
  }
}

void softmax(float* x, size_t n) {
  require(x || n == 0, "softmax", "null tensor");
  if (n == 0) return;
  float top = x[0];
  for (size_t i = 1; i < n; ++i) top = x[i] > top ? x[i] : top;
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - top);
    sum += x[i];
  }
  const float inverse = static_cast<float>(1.0 / sum);
  for (size_t i = 0; i < n; ++i) x[i] *= inverse;
}

namespace detail {
const KernelTable& current_kernels() { return kernels(); }
}  // namespace detail

void set_dispatch(std::string_view name) {
  g_forced.store(&find_path(name), std::memory_order_release);
}

std::string_view dispatch_name() { return current_path().name; }

std::vector<std::string_view> available_dispatches() {
  std::vector<std::string_view> names;
  for (const Path& path : kPaths)
    if (path.supported()) names.push_back(path.name);
  return names;
}

}  // namespace effcam::ops
