// Winograd F(4x4, 3x3) convolution: tile transforms around the dense convolution's register tile.
// Internal: part of the SIMD kernels, included only through ops/kernels_simd.h (see there).
#pragma once

#include "ops/simd/common.h"
#include "ops/simd/conv.h"

namespace effcam::ops::detail {
namespace {

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
  // A row of tiles goes in runs of balanced lengths (at most T), so no run is left with a tile or two.
  const uint32_t runs = (tiles_w + T - 1) / T;
  float* const v = a.winograd_scratch;                         // [36][T][ld]: B^T d B per tile
  float* const m = v + size_t{kWinogradPositions} * T * ld;    // [36][T][group blocks x 16]: sum over cin of U . V
  const float* const x = a.x;

  for (uint32_t ty = row_begin / R; R * ty < row_end; ++ty) {
    const int64_t iy0 = int64_t{R} * ty - a.pad_top;
    for (uint32_t run = 0; run < runs; ++run) {
      const uint32_t tx0 = tiles_w * run / runs, nt = tiles_w * (run + 1) / runs - tx0;
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
            // The run's tiles in register tiles of balanced widths: a narrow last one costs nearly a whole one.
            const uint32_t nb = min_u32(NB, gb - b), pixels = conv_tile_pixels<A>(nb);
            const uint32_t pieces = (nt + pixels - 1) / pixels;
            for (uint32_t k = 0; k < pieces; ++k) {
              const uint32_t p = nt * k / pieces, count = nt * (k + 1) / pieces - p;
              const int64_t row = static_cast<int64_t>(ld);
              ConvTile tile{p * row, row, 0, 1, 0, 1, size_t{p} * ldm, 0};
              conv_blocks<A, false, NB, false>(gemm, tile, b, nb, count);
            }
          }
        }
        // Output transform A^T m A, bias, then the shared epilogue; rows outside [row_begin, row_end) and columns past
        // out_w are not written.
        // (m holds whole blocks, so its loads are whole vectors.) Tiles whose 4x4 outputs are all written, with
        // whole vectors of channels (Fast), store without checks.
        const bool rows_written = R * ty >= row_begin && R * ty + R <= row_end;
        with_epilogue_activation(a.act, [&](auto tag) {
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
                const Vec<A> out = epilogue<A, decltype(tag)::value, decltype(fast)::value>(a, y[r][k] + bias, at, n);
                if constexpr (decltype(fast)::value) out.store_unaligned(a.y + at);
                else store_partial<A>(a.y + at, out, n);
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

}  // namespace
}  // namespace effcam::ops::detail
