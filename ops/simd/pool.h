// Global average pooling and windowed max / average pooling.
// Internal: part of the SIMD kernels, included only through ops/kernels_simd.h (see there).
#pragma once

#include "ops/simd/common.h"

namespace effcam::ops::detail {
namespace {

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

}  // namespace
}  // namespace effcam::ops::detail
