// Channel affine, add, multiply (with per-channel broadcast) and activations over a range.
// Internal: part of the SIMD kernels, included only through ops/kernels_simd.h (see there).
#pragma once

#include "ops/simd/common.h"

namespace effcam::ops::detail {
namespace {

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
  finish_rows<A>(x + begin, 0, y + begin, EpilogueOperands{.act_max = act_max}, 0, 1, end - begin, act);
}

}  // namespace
}  // namespace effcam::ops::detail
