// Plain scalar references of every kernel in ops/kernels.h: straightforward loops over the logical layouts,
// double accumulation. Same arguments and semantics (including ranges); the tests hold the SIMD paths to them.
#pragma once

#include "ops/kernels.h"

namespace effcam::ops::reference {

// One value through an elementwise activation (the std:: formulas; Softmax is not elementwise and throws).
float activate(float x, Activation act, float act_max);

void conv2d(const ConvArgs& args, uint32_t row_begin, uint32_t row_end);
void depthwise2d(const DepthwiseArgs& args, uint32_t row_begin, uint32_t row_end);
void dense(const DenseArgs& args, uint32_t unit_begin, uint32_t unit_end);
void squeeze_excite(const SqueezeExciteArgs& args);
void channel_affine(const ChannelAffineArgs& args, uint32_t pixel_begin, uint32_t pixel_end);
void add(const ElementwiseArgs& args, uint32_t pixel_begin, uint32_t pixel_end);
void multiply(const ElementwiseArgs& args, uint32_t pixel_begin, uint32_t pixel_end);
void activate(const float* x, float* y, size_t begin, size_t end, Activation act, float act_max);
void global_avg_pool(const GlobalPoolArgs& args, uint32_t channel_begin, uint32_t channel_end);
void max_pool2d(const PoolArgs& args, uint32_t row_begin, uint32_t row_end);
void avg_pool2d(const PoolArgs& args, uint32_t row_begin, uint32_t row_end);
void zero_pad(const ZeroPadArgs& args, uint32_t row_begin, uint32_t row_end);
void softmax(float* x, size_t n);

}  // namespace effcam::ops::reference
