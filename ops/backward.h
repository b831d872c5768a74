// Gradient kernels for the explanation pass (Grad-CAM): from the gradient of an op's output to the gradient of its
// inputs, for every op kind. No weight gradients are ever computed. Same layouts and argument structs as the forward
// kernels (ops/kernels.h; a kernel reads only the fields it names, the forward tensors x / a / b where the gradient
// needs them); every kernel ACCUMULATES into its gradient outputs (+=), so several consumers of one tensor can add
// their shares (the convolutions can also write the first share over dx: GradientWrite), and a gradient output
// that is nullptr is not wanted. No allocation; the cost is the same order as the forward op's and only the layers
// between the target and the output are ever differentiated. The convolutions
// run as forward convolutions over dz (through the SIMD dispatch of ops/kernels.h, split over a thread pool) with
// the kernel flipped and transposed into caller scratch: one per stride phase, i.e. per offset (ry, rx) of the
// input pixels (ry + stride_h * j, rx + stride_w * i), whose gradients gather dz through the taps of that phase
// only. The other kernels are plain loops over contiguous channels (the compiler vectorizes them).
// ops/reference.h has their plain twins.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/thread_pool.h"
#include "ops/kernels.h"

namespace effcam::ops {

// d act(z) / dz at z (Softmax is not elementwise: callers handle it).
float activation_derivative(float z, Activation act, float act_max);
// dz[i] = dy[i] * act'(z[i]) for i in [0, n). dz may alias dy or z.
void activation_backward(const float* z, const float* dy, float* dz, size_t n, Activation act, float act_max);

// The gradient through the activation of an op whose output y = act(z) (pixels x channels) may also feed its
// per-channel spatial mean: dz = (dy + dmean[c] * mean_scale) * act'(z), dy and dmean optional (nullptr = 0).
// dz may alias z or dy; z is not read for Linear (it may be nullptr then). Split by pixels like the forward kernels.
struct ActivationGradientArgs {
  const float* z = nullptr;
  const float* dy = nullptr;
  const float* dmean = nullptr;
  float mean_scale = 0;  // 1 / pixels for a mean
  float* dz = nullptr;
  uint32_t pixels = 0, channels = 0;
  Activation act = Activation::Linear;
  float act_max = 0;
};
void activation_backward(const ActivationGradientArgs& args, uint32_t pixel_begin, uint32_t pixel_end);

// A conv whose input is x * gate (the squeeze-excite gate, one value per input channel, ConvArgs::input_scale):
// its backward pass also gives the gate's gradient. Without a gate, dx is the gradient of the conv's input itself.
struct InputGate {
  const float* gate = nullptr;      // cin floats (nullptr: no gate)
  const float* x = nullptr;         // in_h x in_w x cin, the input before the gate
  float* gradient = nullptr;        // cin floats: += the sum over the pixels of d(x * gate) * x (nullptr: not wanted)
};

// How a conv's gradient kernel writes its share of dx: added to it (several consumers' shares), or written over it
// (the first share: dx needs no clearing before, nor reading in the epilogue; a strided conv, whose phases add up,
// clears dx itself).
enum class GradientWrite { Accumulate, Overwrite };

// Scratch of conv2d_backward_input for `args` (its geometry and kernel type) and a pool of `threads`, in floats: the
// transposed kernels, and for a strided conv one phase's gradient, else, with `winograd`, its forward conv's
// (conv2d_pooled: Winograd's transformed kernel and tiles for a 3x3 one, about twice as fast as the direct conv).
// `gated`: room for a gate's gradient too (then no Winograd).
size_t conv2d_backward_scratch_floats(const ConvArgs& args, uint32_t threads, bool winograd, bool gated);
// dx += conv2d^T(dz) (times the gate, per input channel, with one): the gradient of a dense conv's input, geometry
// and kernel as in `args` (args.x, args.y, bias, residual, input_scale and activation are ignored). dz:
// out_h x out_w x cout, dx (nullptr when only the gate's gradient is wanted): in_h x in_w x cin; scratch:
// conv2d_backward_scratch_floats(args, pool.size(), winograd, gate.gate != nullptr) floats. The pool's threads split
// the work; the bytes do not depend on their number. Winograd's bytes differ from the direct conv's by rounding only.
// Without stride, the gate is applied in the transposed conv's epilogue, which also sums the gate's gradient.
// With GradientWrite::Overwrite, dx = instead of dx += (the gate's gradient still accumulates).
void conv2d_backward_input(const ConvArgs& args, const float* dz, float* dx, float* scratch, ThreadPool& pool,
                           bool winograd, const InputGate& gate = {},
                           GradientWrite write = GradientWrite::Accumulate);

// The same for a depthwise conv, geometry and kernel as in `args`. A depth multiplier > 1 (no EfficientNet has one)
// runs plain loops on the calling thread and needs no scratch.
size_t depthwise2d_backward_scratch_floats(const DepthwiseArgs& args);
void depthwise2d_backward_input(const DepthwiseArgs& args, const float* dz, float* dx, float* scratch,
                                ThreadPool& pool, GradientWrite write = GradientWrite::Accumulate);

// dx[i] += sum_u W[u][i] dz[u], kernel as in `args` (BlockedOHWI {units, 1, 1, inputs}).
void dense_backward_input(const DenseArgs& args, const float* dz, float* dx);

// dx += dy over n floats: the gradient through a reshape (the same bytes) and to the residual of a fused add.
void identity_backward(const float* dy, float* dx, size_t n);
// y = a + b over n floats: da += dy, db += dy. da and db may alias (a + a).
void add_backward(const float* dy, float* da, float* db, size_t n);
// y = a * b over args.pixels x args.channels (b one pixel when args.b_broadcast): da += dy * b, db += dy * a
// (summed over the pixels when broadcast), for channels [channel_begin, channel_end): threads may split the channels
// (each channel sums its pixels in order, whatever the split). Reads args.a and args.b.
void multiply_backward(const ElementwiseArgs& args, const float* dy, float* da, float* db, uint32_t channel_begin,
                       uint32_t channel_end);
// y = x * scale[c] + ...: dx += dy * scale over args.pixels x args.channels (args.scale nullptr = 1).
void channel_affine_backward(const ChannelAffineArgs& args, const float* dy, float* dx);
// y[c] = mean over h x w: dx[., ., c] += dy[c] / (h * w).
void global_avg_pool_backward(const GlobalPoolArgs& args, const float* dy, float* dx);
// The whole gradient of a window goes to its first maximum in args.x (row-major window order); geometry as in args.
void max_pool2d_backward(const PoolArgs& args, const float* dy, float* dx);
// A window's gradient is shared equally by its positions inside the image (TF semantics, as the forward).
void avg_pool2d_backward(const PoolArgs& args, const float* dy, float* dx);
// dx += the part of dy inside the padding.
void zero_pad_backward(const ZeroPadArgs& args, const float* dy, float* dx);

}  // namespace effcam::ops
