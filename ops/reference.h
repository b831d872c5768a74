// Plain scalar references of every kernel in ops/kernels.h and ops/backward.h: straightforward loops over the logical
// layouts, double accumulation; the gradients are written the other way round from ops/backward.cpp (each input
// element gathers what it contributed to). Same arguments and semantics (including ranges, and += for gradients);
// the tests hold the fast kernels to them.
#pragma once

#include "ops/backward.h"
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

void activation_backward(const ActivationGradientArgs& args, uint32_t pixel_begin, uint32_t pixel_end);
void conv2d_backward_input(const ConvArgs& args, const float* dz, float* dx);
void depthwise2d_backward_input(const DepthwiseArgs& args, const float* dz, float* dx);
void dense_backward_input(const DenseArgs& args, const float* dz, float* dx);
void identity_backward(const float* dy, float* dx, size_t n);
void add_backward(const float* dy, float* da, float* db, size_t n);
void multiply_backward(const ElementwiseArgs& args, const float* dy, float* da, float* db);
void channel_affine_backward(const ChannelAffineArgs& args, const float* dy, float* dx);
void global_avg_pool_backward(const GlobalPoolArgs& args, const float* dy, float* dx);
void max_pool2d_backward(const PoolArgs& args, const float* dy, float* dx);
void avg_pool2d_backward(const PoolArgs& args, const float* dy, float* dx);
void zero_pad_backward(const ZeroPadArgs& args, const float* dy, float* dx);

}  // namespace effcam::ops::reference
