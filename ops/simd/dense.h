// The fully connected layer.
// Internal: part of the SIMD kernels, included only through ops/kernels_simd.h (see there).
#pragma once

#include "ops/simd/common.h"

namespace effcam::ops::detail {
namespace {

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
  finish_rows<A>(a.y + unit_begin, 0, a.y + unit_begin, EpilogueOperands{.act_max = a.act_max}, 0, 1,
                 unit_end - unit_begin, a.act);
}

template <class A>
void dense(const DenseArgs& a, uint32_t unit_begin, uint32_t unit_end) {
  if (a.kernel.fp16) return dense_typed<A, true>(a, unit_begin, unit_end);
  dense_typed<A, false>(a, unit_begin, unit_end);
}

}  // namespace
}  // namespace effcam::ops::detail
