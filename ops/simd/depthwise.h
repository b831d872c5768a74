// The depthwise convolution, with its activation and the squeeze-excite channel sums in the epilogue.
// Internal: part of the SIMD kernels, included only through ops/kernels_simd.h (see there).
#pragma once

#include "ops/simd/common.h"

namespace effcam::ops::detail {
namespace {

// Where a run of output pixels of a depthwise conv reads: the input offset of the first pixel's tap (0, 0), the
// offset between consecutive pixels, and the taps that are inside the image for every pixel of the run.
struct DepthwiseTaps {
  int64_t origin, step;
  uint32_t ky0, ky1, kx0, kx1;
};

// One output vector of a depthwise conv through the shared epilogue, stored (n lanes) and returned for the channel
// sums. Inlined: as a call, each output waited for its activation's division before the next began (measured 5% of
// S's forward pass in this function on Zen 3).
template <class A, Activation Act>
[[gnu::always_inline]] inline Vec<A> depthwise_output(const DepthwiseArgs& a, const Vec<A>& acc, const Vec<A>& bias,
                                                      float* out, uint32_t channel, uint32_t n) {
  const Vec<A> v = epilogue<A, Act, false>(a, acc + bias, out - a.y, n, channel);
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
      sum += depthwise_output<A, Act>(a, acc[k][q], bias, out + q * size_t{a.cout} + c, c, n);
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
    uint32_t source[kLanes<A>];  // the input channel of each lane, divided once rather than at every tap
    for (uint32_t i = 0; i < n; ++i) source[i] = (o + i) / multiplier;
    Vec<A> acc(0.0f);
    for (uint32_t ky = t.ky0; ky < t.ky1; ++ky)
      for (uint32_t kx = t.kx0; kx < t.kx1; ++kx) {
        const float* in = a.x + (t.origin + (int64_t{ky} * a.in_w + kx) * a.cin);
        alignas(64) float spread[kLanes<A>] = {};
        for (uint32_t i = 0; i < n; ++i) spread[i] = in[source[i]];
        acc = multiply_add<A>(Vec<A>::load_aligned(spread),
                              load_weights<A, F16>(a.kernel.data, (size_t{ky} * a.kw + kx) * padded + o), acc);
      }
    const Vec<A> bias = a.bias ? load_partial<A>(a.bias + o, n) : Vec<A>(0.0f);
    const Vec<A> v = depthwise_output<A, Act>(a, acc, bias, out + o, o, n);
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
  with_epilogue_activation(a.act, [&](auto tag) {
    if (a.kernel.fp16) return depthwise2d_typed<A, true, decltype(tag)::value>(a, row_begin, row_end);
    depthwise2d_typed<A, false, decltype(tag)::value>(a, row_begin, row_end);
  });
}

}  // namespace
}  // namespace effcam::ops::detail
