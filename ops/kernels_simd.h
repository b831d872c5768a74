// Internal: the SIMD kernels as templates on the xsimd architecture. Included ONLY by the per-architecture
// translation units (kernels_avx512.cpp, kernels_avx2.cpp, kernels_scalar.cpp), each compiled with its -m flags.
// Everything sits in an anonymous namespace so no out-of-line copy compiled for a wider instruction set can be
// picked by the linker for another path; for the same reason this code avoids std:: function templates.
#pragma once

#include <immintrin.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <xsimd/xsimd.hpp>

#include "format/half.h"
#include "ops/kernel_table.h"
#include "format/weight_layout.h"

namespace effcam::ops::detail {
namespace {

template <class A>
using Vec = xsimd::batch<float, A>;
template <class A>
inline constexpr uint32_t kLanes = static_cast<uint32_t>(Vec<A>::size);
template <class A>
inline constexpr uint32_t kVecsPerBlock = format::kChannelBlock / kLanes<A>;

// Register tile of the dense convolution: up to kMaxPixels output pixels x up to kBlocks 16-channel blocks, with
// about kAccumulators vector accumulators. Fewer blocks (narrow outputs) take more pixels, so the loads of weights
// and broadcast inputs stay amortized over as many FMAs.
template <class A>
struct ConvTileShape {  // SSE2 (16 xmm): 12 accumulators; the fp16 widening dominates this path anyway
  static constexpr uint32_t kAccumulators = 12;
  static constexpr uint32_t kMaxPixels = 3;
  static constexpr uint32_t kBlocks = 1;
};
template <>
struct ConvTileShape<xsimd::fma3<xsimd::avx2>> {  // 16 ymm registers: 12 accumulators + 2 weights + input
  static constexpr uint32_t kAccumulators = 12;
  static constexpr uint32_t kMaxPixels = 6;
  static constexpr uint32_t kBlocks = 1;
};
template <>
struct ConvTileShape<xsimd::avx512bw> {  // 32 zmm registers: 24 accumulators + up to 4 weights + input
  static constexpr uint32_t kAccumulators = 24;
  static constexpr uint32_t kMaxPixels = 12;
  static constexpr uint32_t kBlocks = 4;
};

// Inputs of a pointwise conv are swept in chunks of about this many bytes, so they stay in L1 while every
// channel block passes over them (measured best on Zen 4 for 256 -> 1280 channels).
inline constexpr size_t kPointwiseChunkBytes = 16384;
// Room for one chunk of input-scaled pointwise inputs (on the stack): a chunk of up to P pixels of ~2700 channels.
inline constexpr size_t kPointwiseStagedFloats = 16384;

constexpr uint32_t min_u32(uint32_t a, uint32_t b) { return a < b ? a : b; }
constexpr int64_t max_i64(int64_t a, int64_t b) { return a > b ? a : b; }
constexpr int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }

// x * y + z, fused where the CPU can: xsimd 8.1 has no AVX-512 fma kernel (its generic x * y + z is only fused
// when the compiler contracts it, which clang does not across the operator calls).
template <class A>
Vec<A> multiply_add(const Vec<A>& x, const Vec<A>& y, const Vec<A>& z) {
  if constexpr (std::is_same_v<A, xsimd::avx512bw>) return _mm512_fmadd_ps(x, y, z);
  else return xsimd::fma(x, y, z);
}

// kLanes<A> weights starting at element `index`, widened from fp16 in the register when the view is fp16.
template <class A, bool F16>
Vec<A> load_weights(const void* data, size_t index) {
  if constexpr (!F16) {
    return Vec<A>::load_unaligned(static_cast<const float*>(data) + index);
  } else {
    const uint16_t* halves = static_cast<const uint16_t*>(data) + index;
    if constexpr (std::is_same_v<A, xsimd::avx512bw>) {
      return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(halves)));
    } else if constexpr (std::is_same_v<A, xsimd::fma3<xsimd::avx2>>) {
      return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(halves)));
    } else {
      alignas(64) float widened[kLanes<A>];
      for (uint32_t i = 0; i < kLanes<A>; ++i) widened[i] = format::half_to_float(halves[i]);
      return Vec<A>::load_aligned(widened);
    }
  }
}

// The first `count` (<= lanes) floats at p, zeros after: never reads past p + count.
template <class A>
Vec<A> load_partial(const float* p, uint32_t count) {
  if (count == kLanes<A>) return Vec<A>::load_unaligned(p);
  if constexpr (std::is_same_v<A, xsimd::avx512bw>) return _mm512_maskz_loadu_ps(__mmask16((1u << count) - 1), p);
  alignas(64) float part[kLanes<A>] = {};
  for (uint32_t i = 0; i < count; ++i) part[i] = p[i];
  return Vec<A>::load_aligned(part);
}

template <class A>
void store_partial(float* p, const Vec<A>& v, uint32_t count) {
  if (count == kLanes<A>) return v.store_unaligned(p);
  if constexpr (std::is_same_v<A, xsimd::avx512bw>) return _mm512_mask_storeu_ps(p, __mmask16((1u << count) - 1), v);
  alignas(64) float part[kLanes<A>];
  v.store_aligned(part);
  for (uint32_t i = 0; i < count; ++i) p[i] = part[i];
}

// e^x to a few ulp (Cephes' expf polynomial on x - n ln2) with none of xsimd::exp's special-case selects. Like
// std::exp it overflows to +inf past ~88.72 and underflows through the denormals to 0: 2^n is applied as two
// normal powers of two, which covers n in [-150, 128].
template <class A>
Vec<A> exp_fast(const Vec<A>& x) {
  using Int = xsimd::batch<int32_t, A>;
  const Vec<A> clamped = xsimd::min(xsimd::max(x, Vec<A>(-104.0f)), Vec<A>(89.0f));
  const Vec<A> n = xsimd::nearbyint(clamped * Vec<A>(1.44269504088896341f));
  Vec<A> r = multiply_add<A>(n, Vec<A>(-0.693359375f), clamped);  // ln 2 in two parts, the first exact
  r = multiply_add<A>(n, Vec<A>(2.12194440e-4f), r);
  Vec<A> poly(1.9875691500e-4f);
  poly = multiply_add<A>(poly, r, Vec<A>(1.3981999507e-3f));
  poly = multiply_add<A>(poly, r, Vec<A>(8.3334519073e-3f));
  poly = multiply_add<A>(poly, r, Vec<A>(4.1665795894e-2f));
  poly = multiply_add<A>(poly, r, Vec<A>(1.6666665459e-1f));
  poly = multiply_add<A>(poly, r, Vec<A>(5.0000001201e-1f));
  poly = multiply_add<A>(poly, r * r, r + Vec<A>(1.0f));
  if constexpr (std::is_same_v<A, xsimd::avx512bw>) return _mm512_scalef_ps(poly, n);  // one rounding, any n
  const Int k = xsimd::to_int(n);
  const Int half = k >> 1;
  auto power_of_two = [](const Int& e) { return xsimd::bitwise_cast<Vec<A>>((e + Int(127)) << 23); };
  return poly * power_of_two(half) * power_of_two(k - half);
}

template <class A>
Vec<A> sigmoid(const Vec<A>& x) {
  return Vec<A>(1.0f) / (Vec<A>(1.0f) + exp_fast<A>(-x));
}

template <class A>
Vec<A> relu6(const Vec<A>& x) {
  return xsimd::min(xsimd::max(x, Vec<A>(0.0f)), Vec<A>(6.0f));
}

// One elementwise activation, chosen at compile time so loops over it are free of branches.
template <class A, Activation Act>
Vec<A> activate(const Vec<A>& x, float act_max) {
  if constexpr (Act == Activation::Relu) return xsimd::min(xsimd::max(x, Vec<A>(0.0f)), Vec<A>(act_max));
  else if constexpr (Act == Activation::Sigmoid) return sigmoid<A>(x);
  else if constexpr (Act == Activation::Swish) return x / (Vec<A>(1.0f) + exp_fast<A>(-x));
  else if constexpr (Act == Activation::HardSigmoid) return relu6<A>(x + Vec<A>(3.0f)) / Vec<A>(6.0f);
  else if constexpr (Act == Activation::HardSigmoidKeras2)
    return xsimd::min(xsimd::max(multiply_add<A>(x, Vec<A>(0.2f), Vec<A>(0.5f)), Vec<A>(0.0f)), Vec<A>(1.0f));
  else if constexpr (Act == Activation::HardSwish) return x * relu6<A>(x + Vec<A>(3.0f)) / Vec<A>(6.0f);
  else if constexpr (Act == Activation::Tanh) return xsimd::tanh(x);
  else return x;
}

// Calls f(std::integral_constant<Activation, act>): the switch happens once, outside f's loops.
// (The public wrappers have rejected Softmax and unknown values.)
template <class F>
void with_activation(Activation act, F&& f) {
  using enum Activation;
  switch (act) {
    case Relu: return f(std::integral_constant<Activation, Relu>{});
    case Sigmoid: return f(std::integral_constant<Activation, Sigmoid>{});
    case Swish: return f(std::integral_constant<Activation, Swish>{});
    case HardSigmoid: return f(std::integral_constant<Activation, HardSigmoid>{});
    case HardSigmoidKeras2: return f(std::integral_constant<Activation, HardSigmoidKeras2>{});
    case HardSwish: return f(std::integral_constant<Activation, HardSwish>{});
    case Tanh: return f(std::integral_constant<Activation, Tanh>{});
    case Linear:
    case Softmax: break;
  }
  f(std::integral_constant<Activation, Linear>{});
}

// The shared epilogue: y[r * y_stride + i] = act(raw[r * raw_stride + i]) + residual[r * y_stride + i] for
// r < rows, i < n; residual is optional. raw may be y, and residual may be y (each element is read before written).
template <class A>
void finish_rows(const float* raw, size_t raw_stride, float* y, const float* residual, size_t y_stride,
                 uint32_t rows, size_t n, Activation act, float act_max) {
  with_activation(act, [&](auto tag) {
    for (uint32_t r = 0; r < rows; ++r) {
      const float* in = raw + r * raw_stride;
      float* out = y + r * y_stride;
      const float* res = residual ? residual + r * y_stride : nullptr;
      for (size_t i = 0; i < n; i += kLanes<A>) {
        uint32_t count = static_cast<uint32_t>(n - i < kLanes<A> ? n - i : kLanes<A>);
        Vec<A> v = activate<A, decltype(tag)::value>(load_partial<A>(in + i, count), act_max);
        if (res) v += load_partial<A>(res + i, count);
        store_partial<A>(out + i, v, count);
      }
    }
  });
}

// ---- dense convolution -------------------------------------------------------------------------------------

// Pixels of one register tile over nb channel blocks.
template <class A>
constexpr uint32_t conv_tile_pixels(uint32_t nb) {
  return min_u32(ConvTileShape<A>::kMaxPixels, ConvTileShape<A>::kAccumulators / (nb * kVecsPerBlock<A>));
}

// Where one register tile of output pixels reads and writes.
struct ConvTile {
  int64_t in_origin;      // offset of pixel 0's input at tap (0, 0) (may lie in the padding)
  int64_t in_step;        // input offset between consecutive pixels of the tile
  uint32_t ky0, ky1;      // the taps [ky0, ky1) x [kx0, kx1) to accumulate
  uint32_t kx0, kx1;
  size_t out_offset;      // offset of pixel 0's output (channel 0); consecutive pixels are cout apart
  int64_t ix0;            // input column of pixel 0 at tap kx = 0 (clipped tiles only)
};

// P pixels x NB channel blocks (from block0): accumulate over the taps and cin, then the epilogue. Clip: some
// pixels of the tile have kx taps outside the image (left / right border); each tap skips those pixels.
// Accumulation order per output (taps, then cin) is the same for every P, so any tiling gives the same bytes.
template <class A, bool F16, int P, int NB, bool Clip>
void conv_tile(const ConvArgs& a, const ConvTile& t, uint32_t block0) {
  constexpr uint32_t V = kVecsPerBlock<A>;
  Vec<A> acc[P][NB * V];
  for (int p = 0; p < P; ++p)
    for (uint32_t j = 0; j < NB * V; ++j) acc[p][j] = Vec<A>(0.0f);

  const size_t cin = a.cin;
  const size_t block_stride = size_t{a.kh} * a.kw * cin * format::kChannelBlock;
  const int64_t row_step = int64_t{a.in_w} * a.cin;
  const int64_t sw = a.stride_w;
  for (uint32_t ky = t.ky0; ky < t.ky1; ++ky) {
    for (uint32_t kx = t.kx0; kx < t.kx1; ++kx) {
      // The tile's pixels [p_lo, p_hi) read this tap inside the image.
      int64_t p_lo = 0, p_hi = P;
      if constexpr (Clip) {
        const int64_t left = -(t.ix0 + kx), right = int64_t{a.in_w} - 1 - (t.ix0 + kx);
        p_lo = left > 0 ? (left + sw - 1) / sw : 0;
        p_hi = right < 0 ? 0 : min_i64(right / sw + 1, P);
        if (p_lo >= p_hi) continue;
      }
      const int64_t tap = t.in_origin + ky * row_step + int64_t{kx} * a.cin;
      size_t w_tap = ((size_t{block0} * a.kh + ky) * a.kw + kx) * cin * format::kChannelBlock;
      for (size_t c = 0; c < cin; ++c) {
        Vec<A> w[NB * V];
        for (int b = 0; b < NB; ++b)
          for (uint32_t v = 0; v < V; ++v)
            w[b * V + v] =
                load_weights<A, F16>(a.kernel.data, w_tap + b * block_stride + c * format::kChannelBlock + v * kLanes<A>);
        if (a.input_scale) {
          Vec<A> s(a.input_scale[c]);
          for (uint32_t j = 0; j < NB * V; ++j) w[j] *= s;
        }
        for (int p = 0; p < P; ++p) {
          if (Clip && (p < p_lo || p >= p_hi)) continue;
          Vec<A> in(a.x[tap + p * t.in_step + static_cast<int64_t>(c)]);
          for (uint32_t j = 0; j < NB * V; ++j) acc[p][j] = multiply_add<A>(in, w[j], acc[p][j]);
        }
      }
    }
  }

  // conv + bias into a scratch tile, then activation and residual through the shared epilogue.
  const uint32_t o0 = block0 * format::kChannelBlock;
  const uint32_t n = min_u32(NB * format::kChannelBlock, a.cout - o0);
  // (Constant trip counts here keep acc[][] in registers: clang spills the whole tile otherwise.)
  size_t out = t.out_offset + o0;
  if (n == NB * format::kChannelBlock) {  // whole blocks: the epilogue straight from the accumulators
    with_activation(a.act, [&](auto tag) {
      for (uint32_t j = 0; j < NB * V; ++j) {
        const Vec<A> bias = a.bias ? Vec<A>::load_unaligned(a.bias + o0 + j * kLanes<A>) : Vec<A>(0.0f);
        for (int p = 0; p < P; ++p) {
          const size_t at = out + size_t(p) * a.cout + j * kLanes<A>;
          Vec<A> v = activate<A, decltype(tag)::value>(acc[p][j] + bias, a.act_max);
          if (a.residual) v += Vec<A>::load_unaligned(a.residual + at);
          v.store_unaligned(a.y + at);
        }
      }
    });
    return;
  }
  alignas(64) float raw[P][NB * format::kChannelBlock];
  for (uint32_t j = 0; j < NB * V; ++j) {
    uint32_t o = o0 + j * kLanes<A>;
    Vec<A> bias = a.bias && o < a.cout ? load_partial<A>(a.bias + o, min_u32(kLanes<A>, a.cout - o)) : Vec<A>(0.0f);
    for (int p = 0; p < P; ++p) (acc[p][j] + bias).store_aligned(&raw[p][j * kLanes<A>]);
  }
  finish_rows<A>(&raw[0][0], NB * format::kChannelBlock, a.y + out, a.residual ? a.residual + out : nullptr, a.cout, P, n,
                 a.act, a.act_max);
}

// `count` (1..P) pixels: the tile of exactly that width.
template <class A, bool F16, int P, int NB, bool Clip>
void conv_pixels(const ConvArgs& a, const ConvTile& t, uint32_t block0, uint32_t count) {
  if constexpr (P > 1) {
    if (count < P) return conv_pixels<A, F16, P - 1, NB, Clip>(a, t, block0, count);
  }
  conv_tile<A, F16, P, NB, Clip>(a, t, block0);
}

// `blocks` (1..NB) channel blocks from block0, `count` (1..conv_tile_pixels(blocks)) pixels.
template <class A, bool F16, int NB, bool Clip>
void conv_blocks(const ConvArgs& a, const ConvTile& t, uint32_t block0, uint32_t blocks, uint32_t count) {
  if constexpr (NB > 1) {
    if (blocks < NB) return conv_blocks<A, F16, NB - 1, Clip>(a, t, block0, blocks, count);
  }
  conv_pixels<A, F16, static_cast<int>(conv_tile_pixels<A>(NB)), NB, Clip>(a, t, block0, count);
}

template <class A, bool F16>
void conv2d_typed(const ConvArgs& a, uint32_t row_begin, uint32_t row_end) {
  constexpr uint32_t NB = ConvTileShape<A>::kBlocks;
  const uint32_t blocks = (a.cout + format::kChannelBlock - 1) / format::kChannelBlock;

  bool pointwise = a.kh == 1 && a.kw == 1 && a.stride_h == 1 && a.stride_w == 1 && a.pad_top == 0 &&
                   a.pad_left == 0 && a.in_h == a.out_h && a.in_w == a.out_w;
  if (pointwise) {
    // A GEMM over the rows' pixels (contiguous in NHWC): chunks of pixels whose inputs stay in L1 while every
    // channel block sweeps them.
    size_t begin = size_t{row_begin} * a.out_w, end = size_t{row_end} * a.out_w;
    constexpr uint32_t P = conv_tile_pixels<A>(NB);
    size_t chunk = (kPointwiseChunkBytes / (size_t{a.cin} * sizeof(float)) / P + 1) * P;
    // An input scale (the squeeze-excite gate) is applied to each chunk's inputs once, here, rather than to the
    // weights in every tile (NB x V multiplies per input channel); channels too many for `staged` keep the latter.
    alignas(64) float staged[kPointwiseStagedFloats];
    const bool stage = a.input_scale && chunk * a.cin <= kPointwiseStagedFloats;
    ConvArgs chunk_args = a;
    if (stage) chunk_args.x = staged, chunk_args.input_scale = nullptr;
    for (size_t c0 = begin; c0 < end; c0 += chunk) {
      size_t c1 = c0 + chunk < end ? c0 + chunk : end;
      const size_t x0 = stage ? c0 : 0;  // first pixel of chunk_args.x
      if (stage) {
        for (size_t p = c0; p < c1; ++p)
          for (uint32_t c = 0; c < a.cin; c += kLanes<A>) {
            const uint32_t n = min_u32(kLanes<A>, a.cin - c);
            store_partial<A>(staged + (p - c0) * a.cin + c,
                             load_partial<A>(a.x + p * a.cin + c, n) * load_partial<A>(a.input_scale + c, n), n);
          }
      }
      for (uint32_t b = 0; b < blocks; b += NB) {
        const uint32_t nb = min_u32(NB, blocks - b), pixels = conv_tile_pixels<A>(nb);
        for (size_t p = c0; p < c1; p += pixels) {
          ConvTile t{static_cast<int64_t>((p - x0) * a.cin), a.cin, 0, 1, 0, 1, p * a.cout, 0};
          conv_blocks<A, F16, NB, false>(chunk_args, t, b, nb,
                                         static_cast<uint32_t>(c1 - p < pixels ? c1 - p : pixels));
        }
      }
    }
    return;
  }

  // Direct convolution: tiles of whole rows' pixels. Tiles inside the interior columns [ox_lo, ox_hi) read every
  // kx tap inside the image; the border columns go one pixel at a time and clip their taps (a wide clipped tile
  // keeps its accumulators in memory: measured 25% slower on a padded 75x75 stride-2 conv).
  const int64_t sw = a.stride_w, pl = a.pad_left;
  int64_t ox_lo = min_i64((pl + sw - 1) / sw, a.out_w);
  int64_t ox_hi = int64_t{a.in_w} + pl >= a.kw ? (int64_t{a.in_w} + pl - a.kw) / sw + 1 : 0;
  ox_hi = min_i64(ox_hi, a.out_w);

  for (uint32_t oy = row_begin; oy < row_end; ++oy) {
    int64_t iy = int64_t{oy} * a.stride_h - a.pad_top;
    uint32_t ky0 = static_cast<uint32_t>(min_i64(max_i64(0, -iy), a.kh));
    uint32_t ky1 = static_cast<uint32_t>(max_i64(min_i64(a.kh, int64_t{a.in_h} - iy), ky0));
    size_t row_out = size_t{oy} * a.out_w * a.cout;
    for (uint32_t b = 0; b < blocks; b += NB) {
      const uint32_t nb = min_u32(NB, blocks - b), pixels = conv_tile_pixels<A>(nb);
      for (int64_t ox = 0; ox < a.out_w;) {
        const bool interior = ox >= ox_lo && ox < ox_hi;
        const uint32_t count = interior ? static_cast<uint32_t>(min_i64(pixels, ox_hi - ox)) : 1;
        ConvTile t{(iy * a.in_w + ox * sw - pl) * a.cin, sw * a.cin, ky0, ky1, 0, a.kw,
                   row_out + size_t(ox) * a.cout, ox * sw - pl};
        if (interior) conv_blocks<A, F16, NB, false>(a, t, b, nb, count);
        else conv_blocks<A, F16, NB, true>(a, t, b, nb, count);
        ox += count;
      }
    }
  }
}

template <class A>
void conv2d(const ConvArgs& a, uint32_t row_begin, uint32_t row_end) {
  if (a.kernel.fp16) return conv2d_typed<A, true>(a, row_begin, row_end);
  conv2d_typed<A, false>(a, row_begin, row_end);
}

// ---- Winograd F(4x4, 3x3) ----------------------------------------------------------------------------------
// Y = A^T [ (G g G^T) . (B^T d B) ] A on 6x6 input tiles d giving 4x4 outputs (interpolation points 0, +-1, +-2,
// inf), vectorized over channels. The 36 elementwise products summed over cin are 36 small GEMMs (tiles x cin ->
// channels), run by the dense conv tile.
constexpr uint32_t kWinogradOut = kWinogradTile, kWinogradIn = kWinogradOut + 2;
static_assert(kWinogradIn * kWinogradIn == kWinogradPositions);

// The 1-D transforms, applied to the rows and then to the columns of a tile; `stride` steps between outputs.
template <class A>
void winograd_input_1d(const Vec<A>* d, size_t d_stride, Vec<A>* out, size_t stride) {  // B^T d
  const Vec<A> d0 = d[0], d1 = d[d_stride], d2 = d[2 * d_stride], d3 = d[3 * d_stride], d4 = d[4 * d_stride],
               d5 = d[5 * d_stride];
  const Vec<A> four(4.0f), two(2.0f), minus_four(-4.0f), minus_five(-5.0f);
  const Vec<A> p = multiply_add<A>(minus_four, d2, d4), q = multiply_add<A>(minus_four, d1, d3);
  const Vec<A> r = d4 - d2, t = two * (d3 - d1);
  out[0] = multiply_add<A>(four, d0, multiply_add<A>(minus_five, d2, d4));
  out[stride] = p + q;
  out[2 * stride] = p - q;
  out[3 * stride] = r + t;
  out[4 * stride] = r - t;
  out[5 * stride] = multiply_add<A>(four, d1, multiply_add<A>(minus_five, d3, d5));
}

template <class A>
void winograd_kernel_1d(const Vec<A>& g0, const Vec<A>& g1, const Vec<A>& g2, Vec<A>* out, size_t stride) {  // G g
  const Vec<A> sum = g0 + g2;
  const Vec<A> quarter_sum = multiply_add<A>(g0, Vec<A>(1.0f / 24), g2 * Vec<A>(1.0f / 6));
  out[0] = g0 * Vec<A>(0.25f);
  out[stride] = (sum + g1) * Vec<A>(-1.0f / 6);
  out[2 * stride] = (sum - g1) * Vec<A>(-1.0f / 6);
  out[3 * stride] = multiply_add<A>(g1, Vec<A>(1.0f / 12), quarter_sum);
  out[4 * stride] = multiply_add<A>(g1, Vec<A>(-1.0f / 12), quarter_sum);
  out[5 * stride] = g2;
}

template <class A>
void winograd_output_1d(const Vec<A>* m, size_t m_stride, Vec<A>* out, size_t stride) {  // A^T m
  const Vec<A> m1 = m[m_stride], m2 = m[2 * m_stride], m3 = m[3 * m_stride], m4 = m[4 * m_stride];
  const Vec<A> sum12 = m1 + m2, diff12 = m1 - m2, sum34 = m3 + m4, diff34 = m3 - m4;
  out[0] = m[0] + sum12 + sum34;
  out[stride] = multiply_add<A>(Vec<A>(2.0f), diff34, diff12);
  out[2 * stride] = multiply_add<A>(Vec<A>(4.0f), sum34, sum12);
  out[3 * stride] = multiply_add<A>(Vec<A>(8.0f), diff34, diff12) + m[5 * m_stride];
}

template <class A, bool F16>
void winograd_transform_weights_typed(const ConvArgs& a, float* u, uint32_t block_begin, uint32_t block_end) {
  const uint32_t blocks = (a.cout + format::kChannelBlock - 1) / format::kChannelBlock;
  for (uint32_t b = block_begin; b < block_end; ++b)
    for (uint32_t c = 0; c < a.cin; ++c)
      for (uint32_t v = 0; v < kVecsPerBlock<A>; ++v) {
        auto tap = [&](uint32_t ky, uint32_t kx) {
          return load_weights<A, F16>(a.kernel.data, ((size_t{b} * 3 + ky) * 3 + kx) * a.cin * format::kChannelBlock +
                                                         size_t{c} * format::kChannelBlock + v * kLanes<A>);
        };
        Vec<A> rows[kWinogradIn][3], t[kWinogradIn][kWinogradIn];  // rows = G g, t = rows G^T
        for (uint32_t kx = 0; kx < 3; ++kx) winograd_kernel_1d<A>(tap(0, kx), tap(1, kx), tap(2, kx), &rows[0][kx], 3);
        for (uint32_t i = 0; i < kWinogradIn; ++i)
          winograd_kernel_1d<A>(rows[i][0], rows[i][1], rows[i][2], &t[i][0], 1);
        for (uint32_t xi = 0; xi < kWinogradPositions; ++xi)
          t[xi / kWinogradIn][xi % kWinogradIn].store_unaligned(
              u + ((size_t{xi} * blocks + b) * a.cin + c) * format::kChannelBlock + v * kLanes<A>);
      }
}

template <class A>
void winograd_transform_weights(const ConvArgs& a, float* u, uint32_t block_begin, uint32_t block_end) {
  if (a.kernel.fp16) return winograd_transform_weights_typed<A, true>(a, u, block_begin, block_end);
  winograd_transform_weights_typed<A, false>(a, u, block_begin, block_end);
}

template <class A>
void winograd_conv2d(const ConvArgs& a, uint32_t row_begin, uint32_t row_end) {
  constexpr uint32_t L = kLanes<A>, T = kWinogradTiles, NB = ConvTileShape<A>::kBlocks;
  constexpr uint32_t N = kWinogradIn, R = kWinogradOut, kGroupBlocks = kWinogradChannels / format::kChannelBlock;
  const size_t ld = format::round_up_to_block(a.cin);  // floats per tile in v
  const uint32_t blocks = (a.cout + format::kChannelBlock - 1) / format::kChannelBlock;
  const uint32_t tiles_w = (a.out_w + R - 1) / R;
  float* const v = a.winograd_scratch;                         // [36][T][ld]: B^T d B per tile
  float* const m = v + size_t{kWinogradPositions} * T * ld;    // [36][T][group blocks x 16]: sum over cin of U . V
  const float* const x = a.x;

  for (uint32_t ty = row_begin / R; R * ty < row_end; ++ty) {
    const int64_t iy0 = int64_t{R} * ty - a.pad_top;
    for (uint32_t tx0 = 0; tx0 < tiles_w; tx0 += T) {
      const uint32_t nt = min_u32(T, tiles_w - tx0);
      // Input transform of nt tiles; positions outside the image read 0, lanes past cin stay 0. Tiles inside the
      // image with whole vectors of channels (Fast) load without checks.
      auto input_tile = [&](auto fast, uint32_t t, int64_t ix0, uint32_t c, uint32_t n) {
        Vec<A> d[N][N], rows[N][N], out[N][N];
#pragma GCC unroll 6
        for (uint32_t i = 0; i < N; ++i)
#pragma GCC unroll 6
          for (uint32_t j = 0; j < N; ++j) {
            const int64_t iy = iy0 + i, ix = ix0 + j;
            if constexpr (decltype(fast)::value) {
              d[i][j] = Vec<A>::load_unaligned(x + (iy * a.in_w + ix) * a.cin + c);
            } else {
              const bool inside = iy >= 0 && iy < a.in_h && ix >= 0 && ix < a.in_w;
              d[i][j] = inside ? load_partial<A>(x + (iy * a.in_w + ix) * a.cin + c, n) : Vec<A>(0.0f);
            }
          }
        for (uint32_t i = 0; i < N; ++i) winograd_input_1d<A>(&d[i][0], 1, &rows[i][0], 1);  // d B, row i
        for (uint32_t j = 0; j < N; ++j) winograd_input_1d<A>(&rows[0][j], N, &out[0][j], N);
        if (a.input_scale) {  // B^T (d s) B = (B^T d B) s: the scale is per channel
          const Vec<A> scale = load_partial<A>(a.input_scale + c, n);
#pragma GCC unroll 36
          for (uint32_t xi = 0; xi < kWinogradPositions; ++xi) out[xi / N][xi % N] *= scale;
        }
#pragma GCC unroll 36
        for (uint32_t xi = 0; xi < kWinogradPositions; ++xi)
          out[xi / N][xi % N].store_unaligned(v + (size_t{xi} * T + t) * ld + c);
      };
      const bool rows_inside = iy0 >= 0 && iy0 + N <= a.in_h;
      for (uint32_t t = 0; t < nt; ++t) {
        const int64_t ix0 = int64_t{R} * (tx0 + t) - a.pad_left;
        const bool inside = rows_inside && ix0 >= 0 && ix0 + N <= a.in_w;
        for (uint32_t c = 0; c < a.cin; c += L) {
          const uint32_t n = min_u32(L, a.cin - c);
          if (inside && n == L) input_tile(std::true_type{}, t, ix0, c, n);
          else input_tile(std::false_type{}, t, ix0, c, n);
        }
      }

      for (uint32_t g0 = 0; g0 < blocks; g0 += kGroupBlocks) {
        const uint32_t gb = min_u32(kGroupBlocks, blocks - g0);
        const uint32_t gw = min_u32(kWinogradChannels, a.cout - g0 * format::kChannelBlock);
        const uint32_t ldm = gb * format::kChannelBlock;  // m rows hold whole blocks, so the GEMM tiles store directly
        // The 36 GEMMs: m[xi] (nt x gw) = v[xi] (nt x cin) . u[xi] (cin x gw), as 1x1 convs over the tiles.
        for (uint32_t xi = 0; xi < kWinogradPositions; ++xi) {
          ConvArgs gemm;
          gemm.x = v + size_t{xi} * T * ld;
          gemm.in_h = gemm.out_h = 1;
          gemm.in_w = gemm.out_w = nt;
          gemm.cin = a.cin;
          gemm.y = m + size_t{xi} * T * ldm;
          gemm.cout = ldm;
          gemm.kernel = {a.winograd_weights + (size_t{xi} * blocks + g0) * a.cin * format::kChannelBlock, false};
          for (uint32_t b = 0; b < gb; b += NB) {
            const uint32_t nb = min_u32(NB, gb - b), pixels = conv_tile_pixels<A>(nb);
            for (uint32_t p = 0; p < nt; p += pixels) {
              const int64_t row = static_cast<int64_t>(ld);
              ConvTile tile{p * row, row, 0, 1, 0, 1, size_t{p} * ldm, 0};
              conv_blocks<A, false, NB, false>(gemm, tile, b, nb, min_u32(pixels, nt - p));
            }
          }
        }
        // Output transform A^T m A, bias, activation, residual; rows outside [row_begin, row_end) and columns past
        // out_w are not written.
        // (m holds whole blocks, so its loads are whole vectors.) Tiles whose 4x4 outputs are all written, with
        // whole vectors of channels (Fast), store without checks.
        const bool rows_written = R * ty >= row_begin && R * ty + R <= row_end;
        with_activation(a.act, [&](auto tag) {
          auto output_tile = [&](auto fast, uint32_t t, uint32_t ox, uint32_t ol, uint32_t n) {
            const uint32_t o = g0 * format::kChannelBlock + ol;
            Vec<A> mt[N][N], s[R][N], y[R][R];
#pragma GCC unroll 36
            for (uint32_t xi = 0; xi < kWinogradPositions; ++xi)
              mt[xi / N][xi % N] = Vec<A>::load_unaligned(m + (size_t{xi} * T + t) * ldm + ol);
            for (uint32_t j = 0; j < N; ++j) winograd_output_1d<A>(&mt[0][j], N, &s[0][j], N);
            for (uint32_t r = 0; r < R; ++r) winograd_output_1d<A>(&s[r][0], 1, &y[r][0], 1);
            const Vec<A> bias = a.bias ? load_partial<A>(a.bias + o, n) : Vec<A>(0.0f);
#pragma GCC unroll 4
            for (uint32_t r = 0; r < R; ++r) {
              const uint32_t oy = R * ty + r;
              if (!decltype(fast)::value && (oy < row_begin || oy >= row_end)) continue;
#pragma GCC unroll 4
              for (uint32_t k = 0; k < R; ++k) {
                if (!decltype(fast)::value && ox + k >= a.out_w) break;
                const size_t at = (size_t{oy} * a.out_w + ox + k) * a.cout + o;
                Vec<A> out = activate<A, decltype(tag)::value>(y[r][k] + bias, a.act_max);
                if constexpr (decltype(fast)::value) {
                  if (a.residual) out += Vec<A>::load_unaligned(a.residual + at);
                  out.store_unaligned(a.y + at);
                } else {
                  if (a.residual) out += load_partial<A>(a.residual + at, n);
                  store_partial<A>(a.y + at, out, n);
                }
              }
            }
          };
          for (uint32_t t = 0; t < nt; ++t) {
            const uint32_t ox = R * (tx0 + t);
            const bool written = rows_written && ox + R <= a.out_w;
            for (uint32_t ol = 0; ol < gw; ol += L) {
              const uint32_t n = min_u32(L, gw - ol);
              if (written && n == L) output_tile(std::true_type{}, t, ox, ol, n);
              else output_tile(std::false_type{}, t, ox, ol, n);
            }
          }
        });
      }
    }
  }
}

// ---- depthwise convolution ---------------------------------------------------------------------------------

// Where a run of output pixels of a depthwise conv reads: the input offset of the first pixel's tap (0, 0), the
// offset between consecutive pixels, and the taps that are inside the image for every pixel of the run.
struct DepthwiseTaps {
  int64_t origin, step;
  uint32_t ky0, ky1, kx0, kx1;
};

// One output vector of a depthwise conv: act(acc + bias) stored (n lanes), and returned for the channel sums.
template <class A, Activation Act>
Vec<A> depthwise_output(const DepthwiseArgs& a, const Vec<A>& acc, const Vec<A>& bias, float* out, uint32_t n) {
  const Vec<A> v = activate<A, Act>(acc + bias, a.act_max);
  store_partial<A>(out, v, n);
  return v;
}

// Channels [o, o + K * lanes) of Q consecutive pixels (multiplier 1): K x Q accumulators over the taps, each
// weight vector widened once for the Q pixels. Every vector is full except possibly the last (`last` lanes).
template <class A, bool F16, Activation Act, uint32_t K, uint32_t Q>
void depthwise_tile(const DepthwiseArgs& a, const DepthwiseTaps& t, float* out, uint32_t o, uint32_t last) {
  Vec<A> acc[K][Q];
  const size_t padded = format::round_up_to_block(a.cout);
  for (uint32_t k = 0; k < K; ++k)
    for (uint32_t q = 0; q < Q; ++q) acc[k][q] = Vec<A>(0.0f);
  for (uint32_t ky = t.ky0; ky < t.ky1; ++ky)
    for (uint32_t kx = t.kx0; kx < t.kx1; ++kx) {
      const float* in = a.x + (t.origin + (int64_t{ky} * a.in_w + kx) * a.cin) + o;
      size_t w = (size_t{ky} * a.kw + kx) * padded + o;
      for (uint32_t k = 0; k < K; ++k) {
        Vec<A> weight = load_weights<A, F16>(a.kernel.data, w + k * kLanes<A>);
        for (uint32_t q = 0; q < Q; ++q) {
          const float* x = in + q * t.step + k * kLanes<A>;
          Vec<A> xv = k + 1 < K ? Vec<A>::load_unaligned(x) : load_partial<A>(x, last);
          acc[k][q] = multiply_add<A>(xv, weight, acc[k][q]);
        }
      }
    }
  // The epilogue while the sums are in registers (activation, and the squeeze-excite channel sums, pixel by pixel).
  for (uint32_t k = 0; k < K; ++k) {
    const uint32_t c = o + k * kLanes<A>, n = k + 1 < K ? kLanes<A> : last;
    const Vec<A> bias = a.bias ? load_partial<A>(a.bias + c, n) : Vec<A>(0.0f);
    Vec<A> sum = a.channel_sums ? load_partial<A>(a.channel_sums + c, n) : Vec<A>(0.0f);
    for (uint32_t q = 0; q < Q; ++q)
      sum += depthwise_output<A, Act>(a, acc[k][q], bias, out + q * size_t{a.cout} + c, n);
    if (a.channel_sums) store_partial<A>(a.channel_sums + c, sum, n);
  }
}

// All channels of `count` (1..Q) consecutive pixels.
template <class A, bool F16, Activation Act, uint32_t Q>
void depthwise_pixels(const DepthwiseArgs& a, const DepthwiseTaps& t, float* out, uint32_t count) {
  if constexpr (Q > 1) {
    if (count < Q) return depthwise_pixels<A, F16, Act, Q - 1>(a, t, out, count);
  }
  constexpr uint32_t K = 4;
  const uint32_t vectors = (a.cout + kLanes<A> - 1) / kLanes<A>;
  const uint32_t last = a.cout - (vectors - 1) * kLanes<A>;
  uint32_t v = 0;
  for (; v + K < vectors; v += K) depthwise_tile<A, F16, Act, K, Q>(a, t, out, v * kLanes<A>, kLanes<A>);
  for (; v + 1 < vectors; ++v) depthwise_tile<A, F16, Act, 1, Q>(a, t, out, v * kLanes<A>, kLanes<A>);
  depthwise_tile<A, F16, Act, 1, Q>(a, t, out, v * kLanes<A>, last);
}

// A depth multiplier > 1: output channel o reads input channel o / multiplier, gathered one vector at a time.
template <class A, bool F16, Activation Act>
void depthwise_spread(const DepthwiseArgs& a, const DepthwiseTaps& t, float* out) {
  const uint32_t multiplier = a.cout / a.cin;
  const size_t padded = format::round_up_to_block(a.cout);
  for (uint32_t o = 0; o < a.cout; o += kLanes<A>) {
    uint32_t n = min_u32(kLanes<A>, a.cout - o);
    Vec<A> acc(0.0f);
    for (uint32_t ky = t.ky0; ky < t.ky1; ++ky)
      for (uint32_t kx = t.kx0; kx < t.kx1; ++kx) {
        const float* in = a.x + (t.origin + (int64_t{ky} * a.in_w + kx) * a.cin);
        alignas(64) float spread[kLanes<A>] = {};
        for (uint32_t i = 0; i < n; ++i) spread[i] = in[(o + i) / multiplier];
        acc = multiply_add<A>(Vec<A>::load_aligned(spread),
                              load_weights<A, F16>(a.kernel.data, (size_t{ky} * a.kw + kx) * padded + o), acc);
      }
    const Vec<A> bias = a.bias ? load_partial<A>(a.bias + o, n) : Vec<A>(0.0f);
    const Vec<A> v = depthwise_output<A, Act>(a, acc, bias, out + o, n);
    if (a.channel_sums) store_partial<A>(a.channel_sums + o, load_partial<A>(a.channel_sums + o, n) + v, n);
  }
}

template <class A, bool F16, Activation Act>
void depthwise2d_typed(const DepthwiseArgs& a, uint32_t row_begin, uint32_t row_end) {
  constexpr uint32_t Q = 4;
  // As for conv2d: interior columns [ox_lo, ox_hi) see every kx tap and go Q pixels at a time.
  const int64_t sw = a.stride_w, pl = a.pad_left;
  int64_t ox_lo = min_i64((pl + sw - 1) / sw, a.out_w);
  int64_t ox_hi = int64_t{a.in_w} + pl >= a.kw ? (int64_t{a.in_w} + pl - a.kw) / sw + 1 : 0;
  ox_hi = min_i64(ox_hi, a.out_w);
  if (ox_hi < ox_lo || a.cout != a.cin) ox_hi = ox_lo = a.out_w;  // multiplier > 1 goes pixel by pixel
  for (uint32_t oy = row_begin; oy < row_end; ++oy) {
    int64_t iy = int64_t{oy} * a.stride_h - a.pad_top;
    uint32_t ky0 = static_cast<uint32_t>(min_i64(max_i64(0, -iy), a.kh));
    uint32_t ky1 = static_cast<uint32_t>(max_i64(min_i64(a.kh, int64_t{a.in_h} - iy), ky0));
    float* row = a.y + size_t{oy} * a.out_w * a.cout;
    auto one_pixel = [&](int64_t ox) {
      int64_t ix = ox * sw - pl;
      uint32_t kx0 = static_cast<uint32_t>(min_i64(max_i64(0, -ix), a.kw));
      uint32_t kx1 = static_cast<uint32_t>(max_i64(min_i64(a.kw, int64_t{a.in_w} - ix), kx0));
      DepthwiseTaps t{(iy * a.in_w + ix) * a.cin, 0, ky0, ky1, kx0, kx1};
      float* out = row + size_t(ox) * a.cout;
      if (a.cout != a.cin) depthwise_spread<A, F16, Act>(a, t, out);
      else depthwise_pixels<A, F16, Act, 1>(a, t, out, 1);
    };
    for (int64_t ox = 0; ox < ox_lo; ++ox) one_pixel(ox);
    for (int64_t ox = ox_lo; ox < ox_hi; ox += Q) {
      DepthwiseTaps t{(iy * a.in_w + ox * sw - pl) * a.cin, sw * a.cin, ky0, ky1, 0, a.kw};
      uint32_t count = static_cast<uint32_t>(min_i64(Q, ox_hi - ox));
      depthwise_pixels<A, F16, Act, Q>(a, t, row + size_t(ox) * a.cout, count);
    }
    for (int64_t ox = ox_hi; ox < a.out_w; ++ox) one_pixel(ox);
  }
}

template <class A>
void depthwise2d(const DepthwiseArgs& a, uint32_t row_begin, uint32_t row_end) {
  with_activation(a.act, [&](auto tag) {
    if (a.kernel.fp16) return depthwise2d_typed<A, true, decltype(tag)::value>(a, row_begin, row_end);
    depthwise2d_typed<A, false, decltype(tag)::value>(a, row_begin, row_end);
  });
}

// ---- dense -------------------------------------------------------------------------------------------------

// Units in blocks of 16; inputs are summed in kChains interleaved chains (fixed order, so splits do not matter)
// to hide the FMA latency of a single output vector.
template <class A, bool F16>
void dense_typed(const DenseArgs& a, uint32_t unit_begin, uint32_t unit_end) {
  constexpr uint32_t V = kVecsPerBlock<A>;
  constexpr uint32_t kChains = V >= 4 ? 1 : 4 / V;
  for (uint32_t b = unit_begin / format::kChannelBlock; b * format::kChannelBlock < unit_end; ++b) {
    Vec<A> acc[kChains][V];
    for (uint32_t k = 0; k < kChains; ++k)
      for (uint32_t v = 0; v < V; ++v) acc[k][v] = Vec<A>(0.0f);
    size_t w_block = size_t{b} * a.inputs * format::kChannelBlock;
    auto accumulate = [&](uint32_t chain, uint32_t input) {
      Vec<A> x(a.x[input]);
      size_t row = w_block + size_t{input} * format::kChannelBlock;
      for (uint32_t v = 0; v < V; ++v)
        acc[chain][v] = multiply_add<A>(x, load_weights<A, F16>(a.kernel.data, row + v * kLanes<A>), acc[chain][v]);
    };
    uint32_t i = 0;
    for (; i + kChains <= a.inputs; i += kChains)
      for (uint32_t k = 0; k < kChains; ++k) accumulate(k, i + k);
    for (; i < a.inputs; ++i) accumulate(0, i);
    alignas(64) float result[format::kChannelBlock];
    for (uint32_t v = 0; v < V; ++v) {
      Vec<A> sum = acc[0][v];
      for (uint32_t k = 1; k < kChains; ++k) sum += acc[k][v];
      uint32_t o = b * format::kChannelBlock + v * kLanes<A>;
      if (a.bias && o < a.units) sum += load_partial<A>(a.bias + o, min_u32(kLanes<A>, a.units - o));
      sum.store_aligned(result + v * kLanes<A>);
    }
    uint32_t first = b * format::kChannelBlock > unit_begin ? b * format::kChannelBlock : unit_begin;
    uint32_t last = min_u32(unit_end, (b + 1) * format::kChannelBlock);
    for (uint32_t u = first; u < last; ++u) a.y[u] = result[u - b * format::kChannelBlock];
  }
  finish_rows<A>(a.y + unit_begin, 0, a.y + unit_begin, nullptr, 0, 1, unit_end - unit_begin, a.act, a.act_max);
}

template <class A>
void dense(const DenseArgs& a, uint32_t unit_begin, uint32_t unit_end) {
  if (a.kernel.fp16) return dense_typed<A, true>(a, unit_begin, unit_end);
  dense_typed<A, false>(a, unit_begin, unit_end);
}

// ---- elementwise -------------------------------------------------------------------------------------------

template <class A>
void channel_affine(const ChannelAffineArgs& a, uint32_t pixel_begin, uint32_t pixel_end) {
  with_activation(a.act, [&](auto tag) {
    for (uint32_t p = pixel_begin; p < pixel_end; ++p) {
      size_t base = size_t{p} * a.channels;
      for (uint32_t c = 0; c < a.channels; c += kLanes<A>) {
        uint32_t n = min_u32(kLanes<A>, a.channels - c);
        Vec<A> v = load_partial<A>(a.x + base + c, n);
        if (a.scale) v *= load_partial<A>(a.scale + c, n);
        if (a.bias) v += load_partial<A>(a.bias + c, n);
        v = activate<A, decltype(tag)::value>(v, a.act_max);
        if (a.residual) v += load_partial<A>(a.residual + base + c, n);
        store_partial<A>(a.y + base + c, v, n);
      }
    }
  });
}

template <class A, bool Multiply>
void binary(const ElementwiseArgs& a, uint32_t pixel_begin, uint32_t pixel_end) {
  with_activation(a.act, [&](auto tag) {
    auto combine = [&](const float* pa, const float* pb, float* py, uint32_t n) {
      Vec<A> x = load_partial<A>(pa, n), y = load_partial<A>(pb, n);
      store_partial<A>(py, activate<A, decltype(tag)::value>(Multiply ? x * y : x + y, a.act_max), n);
    };
    if (a.b_broadcast) {
      for (uint32_t p = pixel_begin; p < pixel_end; ++p)
        for (uint32_t c = 0; c < a.channels; c += kLanes<A>) {
          size_t at = size_t{p} * a.channels + c;
          combine(a.a + at, a.b + c, a.y + at, min_u32(kLanes<A>, a.channels - c));
        }
      return;
    }
    size_t end = size_t{pixel_end} * a.channels;
    for (size_t i = size_t{pixel_begin} * a.channels; i < end; i += kLanes<A>)
      combine(a.a + i, a.b + i, a.y + i, static_cast<uint32_t>(end - i < kLanes<A> ? end - i : kLanes<A>));
  });
}

template <class A>
void add(const ElementwiseArgs& a, uint32_t pixel_begin, uint32_t pixel_end) {
  binary<A, false>(a, pixel_begin, pixel_end);
}

template <class A>
void multiply(const ElementwiseArgs& a, uint32_t pixel_begin, uint32_t pixel_end) {
  binary<A, true>(a, pixel_begin, pixel_end);
}

template <class A>
void activate_range(const float* x, float* y, size_t begin, size_t end, Activation act, float act_max) {
  finish_rows<A>(x + begin, 0, y + begin, nullptr, 0, 1, end - begin, act, act_max);
}

// ---- pooling -----------------------------------------------------------------------------------------------

template <class A>
void global_avg_pool(const GlobalPoolArgs& a, uint32_t channel_begin, uint32_t channel_end) {
  size_t pixels = size_t{a.h} * a.w;
  for (uint32_t c = channel_begin; c < channel_end; c += kLanes<A>) {
    uint32_t n = min_u32(kLanes<A>, channel_end - c);
    Vec<A> sum(0.0f);
    for (size_t p = 0; p < pixels; ++p) sum += load_partial<A>(a.x + p * a.channels + c, n);
    store_partial<A>(a.y + c, pixels ? sum / Vec<A>(static_cast<float>(pixels)) : sum, n);
  }
}

template <class A, bool Max>
void pool2d(const PoolArgs& a, uint32_t row_begin, uint32_t row_end) {
  for (uint32_t oy = row_begin; oy < row_end; ++oy) {
    int64_t iy = int64_t{oy} * a.stride_h - a.pad_top;
    uint32_t ky0 = static_cast<uint32_t>(min_i64(max_i64(0, -iy), a.kh));
    uint32_t ky1 = static_cast<uint32_t>(max_i64(min_i64(a.kh, int64_t{a.in_h} - iy), ky0));
    for (uint32_t ox = 0; ox < a.out_w; ++ox) {
      int64_t ix = int64_t{ox} * a.stride_w - a.pad_left;
      uint32_t kx0 = static_cast<uint32_t>(min_i64(max_i64(0, -ix), a.kw));
      uint32_t kx1 = static_cast<uint32_t>(max_i64(min_i64(a.kw, int64_t{a.in_w} - ix), kx0));
      uint32_t count = (ky1 - ky0) * (kx1 - kx0);
      float* out = a.y + (size_t{oy} * a.out_w + ox) * a.channels;
      for (uint32_t c = 0; c < a.channels; c += kLanes<A>) {
        uint32_t n = min_u32(kLanes<A>, a.channels - c);
        Vec<A> acc(Max ? -INFINITY : 0.0f);
        for (uint32_t ky = ky0; ky < ky1; ++ky)
          for (uint32_t kx = kx0; kx < kx1; ++kx) {
            Vec<A> x = load_partial<A>(a.x + ((iy + ky) * a.in_w + ix + kx) * a.channels + c, n);
            acc = Max ? xsimd::max(acc, x) : acc + x;
          }
        if (count == 0) acc = Vec<A>(0.0f);
        else if (!Max) acc /= Vec<A>(static_cast<float>(count));
        store_partial<A>(out + c, acc, n);
      }
    }
  }
}

template <class A>
void max_pool2d(const PoolArgs& a, uint32_t row_begin, uint32_t row_end) {
  pool2d<A, true>(a, row_begin, row_end);
}

template <class A>
void avg_pool2d(const PoolArgs& a, uint32_t row_begin, uint32_t row_end) {
  pool2d<A, false>(a, row_begin, row_end);
}

template <class A>
constexpr KernelTable make_kernel_table() {
  return {conv2d<A>,         winograd_conv2d<A>, winograd_transform_weights<A>, depthwise2d<A>,
          dense<A>,          channel_affine<A>,  add<A>,                        multiply<A>,
          activate_range<A>, global_avg_pool<A>, max_pool2d<A>,                 avg_pool2d<A>};
}

}  // namespace
}  // namespace effcam::ops::detail
