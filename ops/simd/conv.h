// The dense (direct) convolution: register tiles of output pixels x channel blocks, pointwise chunks in L1.
// Internal: part of the SIMD kernels, included only through ops/kernels_simd.h (see there).
#pragma once

#include "ops/simd/common.h"

namespace effcam::ops::detail {
namespace {

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

  // conv + bias into a scratch tile, then the shared epilogue.
  const uint32_t o0 = block0 * format::kChannelBlock;
  const uint32_t n = min_u32(NB * format::kChannelBlock, a.cout - o0);
  // (Constant trip counts here keep acc[][] in registers: clang spills the whole tile otherwise.)
  size_t out = t.out_offset + o0;
  if (n == NB * format::kChannelBlock) {  // whole blocks: the epilogue straight from the accumulators
    with_epilogue_activation(a.act, [&](auto tag) {
      for (uint32_t j = 0; j < NB * V; ++j) {
        const uint32_t o = o0 + j * kLanes<A>;
        const Vec<A> bias = a.bias ? Vec<A>::load_unaligned(a.bias + o) : Vec<A>(0.0f);
        if (a.gate) {  // a gated conv's gradient: the gate's sums in a register over the tile's pixels, in order
          const Vec<A> gate = Vec<A>::load_unaligned(a.gate + o);
          Vec<A> sum = Vec<A>::load_unaligned(a.gate_sums + o);
          for (int p = 0; p < P; ++p) {
            const size_t at = out + size_t(p) * a.cout + j * kLanes<A>;
            const Vec<A> v = acc[p][j] + bias;
            sum += v * Vec<A>::load_unaligned(a.gate_input + at);
            if (a.y) epilogue<A, decltype(tag)::value, true>(a, v * gate, at, kLanes<A>).store_unaligned(a.y + at);
          }
          sum.store_unaligned(a.gate_sums + o);
          continue;
        }
        for (int p = 0; p < P; ++p) {
          const size_t at = out + size_t(p) * a.cout + j * kLanes<A>;
          epilogue<A, decltype(tag)::value, true>(a, acc[p][j] + bias, at, kLanes<A>).store_unaligned(a.y + at);
        }
      }
    });
    return;
  }
  alignas(64) float raw[P][NB * format::kChannelBlock];
  for (uint32_t j = 0; j < NB * V; ++j) {
    const uint32_t o = o0 + j * kLanes<A>;
    if (o >= a.cout) break;
    const uint32_t lanes = min_u32(kLanes<A>, a.cout - o);
    const Vec<A> bias = a.bias ? load_partial<A>(a.bias + o, lanes) : Vec<A>(0.0f);
    if (a.gate) {  // as above, through the tile: raw holds the gated sums
      const Vec<A> gate = load_partial<A>(a.gate + o, lanes);
      Vec<A> sum = load_partial<A>(a.gate_sums + o, lanes);
      for (int p = 0; p < P; ++p) {
        const Vec<A> v = acc[p][j] + bias;
        sum += v * load_partial<A>(a.gate_input + out + size_t(p) * a.cout + j * kLanes<A>, lanes);
        (v * gate).store_aligned(&raw[p][j * kLanes<A>]);
      }
      store_partial<A>(a.gate_sums + o, sum, lanes);
      continue;
    }
    for (int p = 0; p < P; ++p) (acc[p][j] + bias).store_aligned(&raw[p][j * kLanes<A>]);
  }
  if (!a.y) return;  // a gated gradient wanting only the gate's sums
  auto from_out = [&](auto* p) { return p ? p + out : nullptr; };
  const EpilogueOperands operands{from_out(a.residual), from_out(a.output_gradient), from_out(a.pre_activation),
                                  a.act_max};
  finish_rows<A>(&raw[0][0], NB * format::kChannelBlock, a.y + out, operands, a.cout, P, n, a.act);
}

// `count` (1..P) pixels: the tile of exactly that width.
template <class A, bool F16, int P, int NB>
void conv_pixels(const ConvArgs& a, const ConvTile& t, uint32_t block0, uint32_t count) {
  if constexpr (P > 1) {
    if (count < P) return conv_pixels<A, F16, P - 1, NB>(a, t, block0, count);
  }
  conv_tile<A, F16, P, NB, false>(a, t, block0);
}

// `blocks` (1..NB) channel blocks from block0, `count` (1..conv_tile_pixels(blocks)) pixels; clipped tiles are
// single border pixels (count 1), so only those are instantiated (the kernels' build time).
template <class A, bool F16, int NB, bool Clip>
void conv_blocks(const ConvArgs& a, const ConvTile& t, uint32_t block0, uint32_t blocks, uint32_t count) {
  if constexpr (NB > 1) {
    if (blocks < NB) return conv_blocks<A, F16, NB - 1, Clip>(a, t, block0, blocks, count);
  }
  if constexpr (Clip) conv_tile<A, F16, 1, NB, true>(a, t, block0);
  else conv_pixels<A, F16, static_cast<int>(conv_tile_pixels<A>(NB)), NB>(a, t, block0, count);
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
        for (size_t p = c0; p < c1; ++p) {
          const float* in = a.x + p * a.cin;
          float* out = staged + (p - c0) * a.cin;
          uint32_t c = 0;  // whole vectors skip the partial path's checks: 4% of a 38x38 256 -> 64 conv on Zen 3
          for (; c + kLanes<A> <= a.cin; c += kLanes<A>)
            (Vec<A>::load_unaligned(in + c) * Vec<A>::load_unaligned(a.input_scale + c)).store_unaligned(out + c);
          if (c < a.cin) {
            const uint32_t n = a.cin - c;
            store_partial<A>(out + c, load_partial<A>(in + c, n) * load_partial<A>(a.input_scale + c, n), n);
          }
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

}  // namespace
}  // namespace effcam::ops::detail
