// Internal: the SIMD kernels as templates on the xsimd architecture. Included ONLY by the per-architecture
// translation units (kernels_avx512.cpp, kernels_avx2.cpp, kernels_scalar.cpp), each compiled with its -m flags.
// Everything sits in an anonymous namespace so no out-of-line copy compiled for a wider instruction set can be
// picked by the linker for another path; for the same reason this code avoids std:: function templates.
// One header per kernel family under ops/simd/ (common.h holds what they share); this one gathers them into the
// KernelTable of architecture A.
#pragma once

#include "ops/simd/backward.h"
#include "ops/simd/common.h"
#include "ops/simd/conv.h"
#include "ops/simd/dense.h"
#include "ops/simd/depthwise.h"
#include "ops/simd/elementwise.h"
#include "ops/simd/pool.h"
#include "ops/simd/winograd.h"

namespace effcam::ops::detail {
namespace {

template <class A>
constexpr KernelTable make_kernel_table() {
  return {conv2d<A>,         winograd_conv2d<A>, winograd_transform_weights<A>, depthwise2d<A>,
          dense<A>,          channel_affine<A>,  add<A>,                        multiply<A>,
          activate_range<A>, global_avg_pool<A>, max_pool2d<A>,                 avg_pool2d<A>,
          activation_backward<A>, dense_backward_input<A>};
}

}  // namespace
}  // namespace effcam::ops::detail
