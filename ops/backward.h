// Gradient kernels for the explanation pass (Grad-CAM): from the gradient of an op's output to the gradient of its
// input. No weight gradients are ever computed. Same layouts and argument structs as the forward kernels
// (ops/kernels.h); every kernel ACCUMULATES into its gradient output (+=), so several consumers of one tensor can
// add their shares. Plain loops over contiguous channels (the compiler vectorizes them); the cost is the same
// order as the forward op's and only the layers between the target and the output are ever differentiated.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ops/kernels.h"

namespace effcam::ops {

// d act(z) / dz at z (Softmax is not elementwise: callers handle it).
float activation_derivative(float z, Activation act, float act_max);
// dz[i] = dy[i] * act'(z[i]) for i in [0, n). dz may alias dy or z.
void activation_backward(const float* z, const float* dy, float* dz, size_t n, Activation act, float act_max);

// dx += conv2d^T(dz): the gradient of a dense conv's (scaled) input, geometry and kernel as in `args`
// (args.x, args.y, bias, residual, input_scale and activation are ignored). dz: out_h x out_w x cout,
// dx: in_h x in_w x cin.
void conv2d_backward_input(const ConvArgs& args, const float* dz, float* dx);

// dx += depthwise2d^T(dz), geometry and kernel as in `args`.
void depthwise2d_backward_input(const DepthwiseArgs& args, const float* dz, float* dx);

// dx[i] += sum_u W[u][i] dz[u], kernel as in `args` (BlockedOHWI {units, 1, 1, inputs}).
void dense_backward_input(const DenseArgs& args, const float* dz, float* dx);

}  // namespace effcam::ops
