// Internal: one SIMD path's kernels, as the dispatcher (kernels.cpp) sees them. Each table is defined in a
// translation unit compiled for its instruction set (kernels_avx512.cpp, kernels_avx2.cpp, kernels_scalar.cpp).
#pragma once

#include "ops/backward.h"
#include "ops/kernels.h"

namespace effcam::ops::detail {

// Winograd F(4x4, 3x3) work layout, the same on every path (the engine sizes the scratch): 36 transform positions;
// tiles are taken kWinogradTiles at a time along a tile row, and output channels kWinogradChannels at a time.
inline constexpr uint32_t kWinogradPositions = 36;
inline constexpr uint32_t kWinogradTiles = 12;
inline constexpr uint32_t kWinogradChannels = 64;

// The pointwise convs' pixels are split between threads in runs of this many: a multiple of the register tile's
// width in pixels on avx2 (6) and scalar (3), and on avx512 for 1, 2 or 4 channel blocks (12, 12, 6); a group of 3
// blocks (8 pixels, only when the output's blocks leave 3 over) ends a run with a 4-pixel tile.
inline constexpr uint32_t kPointwisePieceGrain = 12;

struct KernelTable {
  void (*conv2d)(const ConvArgs&, uint32_t, uint32_t);
  void (*winograd_conv2d)(const ConvArgs&, uint32_t, uint32_t);
  void (*winograd_transform_weights)(const ConvArgs&, float*, uint32_t, uint32_t);
  void (*depthwise2d)(const DepthwiseArgs&, uint32_t, uint32_t);
  void (*dense)(const DenseArgs&, uint32_t, uint32_t);
  void (*channel_affine)(const ChannelAffineArgs&, uint32_t, uint32_t);
  void (*add)(const ElementwiseArgs&, uint32_t, uint32_t);
  void (*multiply)(const ElementwiseArgs&, uint32_t, uint32_t);
  void (*activate)(const float*, float*, size_t, size_t, Activation, float);
  void (*global_avg_pool)(const GlobalPoolArgs&, uint32_t, uint32_t);
  void (*max_pool2d)(const PoolArgs&, uint32_t, uint32_t);
  void (*avg_pool2d)(const PoolArgs&, uint32_t, uint32_t);
  // The gradient kernels of ops/backward.h that have SIMD of their own.
  void (*activation_backward)(const ActivationGradientArgs&, uint32_t, uint32_t);
  void (*dense_backward_input)(const DenseArgs&, const float*, float*, uint32_t, uint32_t);
};

// The table of the process's dispatch path (ops/kernels.h: set_dispatch).
const KernelTable& current_kernels();

const KernelTable& avx512_kernels();  // AVX-512 F/BW/DQ/VL + F16C
const KernelTable& avx2_kernels();    // AVX2 + FMA + F16C
const KernelTable& scalar_kernels();  // SSE2 (the x86-64 baseline)

}  // namespace effcam::ops::detail
