// The gradient kernels with SIMD of their own: the activation gradient and the fully connected layer's
// transpose (the convolutions' gradients run as forward convolutions, ops/backward.cpp).
// Internal: part of the SIMD kernels, included only through ops/kernels_simd.h (see there).
#pragma once

#include "ops/simd/common.h"

namespace effcam::ops::detail {
namespace {

template <class A>
void activation_backward(const ActivationGradientArgs& a, uint32_t pixel_begin, uint32_t pixel_end) {
  with_activation(a.act, [&](auto tag) {
    // dz over [begin, begin + count) from dy and the means' gradient `means` of those channels: the bits of the
    // gradient epilogue's (ops/simd/common.h), whose one fused multiply-add the compiler cannot split or contract
    // differently.
    constexpr Activation Act = decltype(tag)::value;
    auto run = [&](size_t begin, uint32_t count, const Vec<A>& means) {
      const Vec<A> scale(a.mean_scale);
      const Vec<A> g = !a.dy ? means * scale
                       : a.dmean ? multiply_add<A>(means, scale, load_partial<A>(a.dy + begin, count))
                                 : load_partial<A>(a.dy + begin, count);
      if constexpr (Act == Activation::Linear) {
        store_partial<A>(a.dz + begin, g, count);  // z is not read
      } else {
        const Vec<A> z = load_partial<A>(a.z + begin, count);
        store_partial<A>(a.dz + begin, g * activation_derivative<A, Act>(z, a.act_max), count);
      }
    };
    if (!a.dmean) {
      const size_t end = size_t{pixel_end} * a.channels;
      for (size_t i = size_t{pixel_begin} * a.channels; i < end; i += kLanes<A>) {
        run(i, static_cast<uint32_t>(end - i < kLanes<A> ? end - i : kLanes<A>), Vec<A>(0.0f));
      }
      return;
    }
    for (uint32_t p = pixel_begin; p < pixel_end; ++p)
      for (uint32_t c = 0; c < a.channels; c += kLanes<A>) {
        const uint32_t count = min_u32(kLanes<A>, a.channels - c);
        run(size_t{p} * a.channels + c, count, load_partial<A>(a.dmean + c, count));
      }
  });
}

// dx[i] += sum_u W[u][i] dz[u] for inputs [input_begin, input_end): kInputs inputs at a time (their rows of a
// block are adjacent), each summing over the unit blocks in vectors and reduced at the end.
template <class A, bool F16>
void dense_backward_typed(const DenseArgs& a, const float* dz, float* dx, uint32_t input_begin, uint32_t input_end) {
  constexpr uint32_t V = kVecsPerBlock<A>;
  constexpr uint32_t kInputs = 4;
  const uint32_t blocks = format::round_up_to_block(a.units) / format::kChannelBlock;
  auto inputs = [&](auto count_tag, uint32_t i) {
    constexpr uint32_t Q = decltype(count_tag)::value;
    Vec<A> acc[Q][V];
    for (uint32_t q = 0; q < Q; ++q)
      for (uint32_t v = 0; v < V; ++v) acc[q][v] = Vec<A>(0.0f);
    for (uint32_t b = 0; b < blocks; ++b) {
      Vec<A> g[V];
      for (uint32_t v = 0; v < V; ++v) {
        const uint32_t u = b * format::kChannelBlock + v * kLanes<A>;
        g[v] = u < a.units ? load_partial<A>(dz + u, min_u32(kLanes<A>, a.units - u)) : Vec<A>(0.0f);
      }
      const size_t row = (size_t{b} * a.inputs + i) * format::kChannelBlock;
      for (uint32_t q = 0; q < Q; ++q)
        for (uint32_t v = 0; v < V; ++v)
          acc[q][v] = multiply_add<A>(
              load_weights<A, F16>(a.kernel.data, row + q * format::kChannelBlock + v * kLanes<A>), g[v], acc[q][v]);
    }
    for (uint32_t q = 0; q < Q; ++q) {
      Vec<A> sum = acc[q][0];
      for (uint32_t v = 1; v < V; ++v) sum += acc[q][v];
      dx[i + q] += xsimd::hadd(sum);
    }
  };
  uint32_t i = input_begin;
  for (; i + kInputs <= input_end; i += kInputs) inputs(std::integral_constant<uint32_t, kInputs>{}, i);
  for (; i < input_end; ++i) inputs(std::integral_constant<uint32_t, 1>{}, i);
}

template <class A>
void dense_backward_input(const DenseArgs& a, const float* dz, float* dx, uint32_t input_begin, uint32_t input_end) {
  if (a.kernel.fp16) return dense_backward_typed<A, true>(a, dz, dx, input_begin, input_end);
  dense_backward_typed<A, false>(a, dz, dx, input_begin, input_end);
}

}  // namespace
}  // namespace effcam::ops::detail
