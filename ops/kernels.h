// The compute kernels the engine runs: fp32 NHWC activations at batch 1, weights viewed in place (fp16 or fp32)
// in the layouts of format/weight_layout.h. Every kernel here dispatches at run time to the best SIMD path of the CPU
// (AVX-512, AVX2+FMA, scalar/SSE2); ops/reference.h has the plain loops with the same semantics.
//
// Argument structs hold raw, non-owning pointers. Sizes are trusted: the caller (the engine's plan) gives buffers
// of the documented lengths. Kernels that can be split take a range ([begin, end) of output rows, pixels,
// channels or units) so a thread pool can divide one call; the union of the ranges gives the same bytes as one
// whole call. Unless a kernel says otherwise, outputs must not overlap inputs. Kernels keep no state: threads may
// run calls on disjoint ranges / outputs at once. Weights need no particular alignment (the file gives 64 bytes).
// Arguments are checked cheaply (null tensors, zero windows, ranges past the output, a non-elementwise
// activation) and rejected with effcam::Error; buffer lengths are not checked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "base/thread_pool.h"
#include "format/format.h"

namespace effcam::ops {

// The activations of the file format (format/format.h), one definition for both.
using Activation = format::Activation;

// A weight tensor in place: fp16 (uint16_t elements) or fp32.
struct WeightView {
  const void* data = nullptr;
  bool fp16 = false;
};

// y = act(conv(x * input_scale) + bias) + residual, dense (groups = 1) convolution.
// x: in_h x in_w x cin; y, residual: out_h x out_w x cout; kernel: BlockedOHWI {cout, kh, kw, cin}.
// Input positions outside the image (pad_top / pad_left before, whatever is needed after) read as 0.
// bias (cout), input_scale (cin, the squeeze-excite gate) and residual are optional (nullptr).
// With output_gradient (laid out as y; no residual then), y = output_gradient * act'(conv(x * input_scale) + bias)
// instead: a backward pass's rerun turns its output's gradient into its pre-activation's, with the bits of
// activation_backward (ops/backward.h) over the pre-activation, and never stores the pre-activation itself.
// pre_activation (optional, as y; no residual then) also receives conv(x * input_scale) + bias: a recomputation
// keeps it for its backward step in the same pass.
// Aliasing: y == residual and y == output_gradient are allowed (in place); y must not overlap x.
struct ConvArgs {
  const float* x = nullptr;
  uint32_t in_h = 0, in_w = 0, cin = 0;
  float* y = nullptr;
  uint32_t out_h = 0, out_w = 0, cout = 0;
  uint32_t kh = 1, kw = 1, stride_h = 1, stride_w = 1, pad_top = 0, pad_left = 0;
  WeightView kernel;
  const float* bias = nullptr;
  const float* input_scale = nullptr;
  const float* residual = nullptr;
  const float* output_gradient = nullptr;
  float* pre_activation = nullptr;
  // The backward pass of a gated conv (its input x * gate) runs its transposed conv with these: a linear conv
  // without bias, kept pre-activation or Winograd, writing y = conv * gate + residual (gate per output channel: the
  // gradient of x) and ADDING conv * gate_input (x, laid out as y) over the rows it computes, pixel after pixel, into
  // gate_sums (cout floats: the gate's gradient, in pieces as DepthwiseArgs::channel_sums). y may be nullptr then
  // (only the sums wanted).
  const float* gate = nullptr;
  const float* gate_input = nullptr;
  float* gate_sums = nullptr;
  Activation act = Activation::Linear;
  float act_max = 0;  // Relu's upper clip
  // Winograd F(4x4, 3x3), for the convs conv2d_winograd() accepts, when both are given: winograd_weights from
  // winograd_transform_weights() (shared by all threads), winograd_scratch of winograd_scratch_floats(cin) floats
  // per thread. Any split of the rows gives the same bytes (tiles are anchored at output rows 4k; a range that
  // starts or ends inside a tile computes the whole tile); the results differ from the direct convolution by
  // rounding only.
  const float* winograd_weights = nullptr;
  float* winograd_scratch = nullptr;
};
// Computes output rows [row_begin, row_end).
void conv2d(const ConvArgs& args, uint32_t row_begin, uint32_t row_end);

// Output rows (and columns) of one Winograd tile: row splits at multiples of it recompute no tile.
inline constexpr uint32_t kWinogradTile = 4;
// True for the convs the Winograd path computes: 3x3, stride 1.
bool conv2d_winograd(uint32_t kh, uint32_t kw, uint32_t stride_h, uint32_t stride_w);
size_t winograd_weight_floats(uint32_t cin, uint32_t cout);
size_t winograd_scratch_floats(uint32_t cin);
// Fills u (winograd_weight_floats(cin, cout) floats) with the transformed args.kernel, for the output channel
// blocks [block_begin, block_end) of 16 (threads may split them): once per op and kernel.
void winograd_transform_weights(const ConvArgs& args, float* u, uint32_t block_begin, uint32_t block_end);

// conv2d over all of args' output rows, split across the pool: a pointwise conv as one GEMM over the pixels
// (threads split pixels, not rows), a Winograd one (conv2d_winograd) after transforming its weights into `scratch`
// (conv2d_pooled_scratch_floats(args, pool.size()) floats: the transformed weights, then each worker's tiles; none
// for the other convs), threads splitting rows of tiles; without scratch, the direct conv. The bytes do not depend
// on the pool's size. With a gate, fixed pieces of rows (kGatePieces or fewer, as many whatever the pool; a
// pointwise conv's in whole register tiles) sum into their own rows of gate_sums (kGatePieces x cout floats, each row
// overwritten; rows past the pieces zero).
inline constexpr uint32_t kGatePieces = 8;
size_t conv2d_pooled_scratch_floats(const ConvArgs& args, uint32_t threads);
void conv2d_pooled(const ConvArgs& args, float* scratch, ThreadPool& pool);

// y = act(depthwise(x) + bias) + residual; output channel o reads input channel o / (cout / cin).
// kernel: DepthwiseHWC {cout, kh, kw}. channel_sums (optional, cout floats): the call ADDS the per-channel sums
// of the output rows it computes (the engine turns them into the squeeze-excite means; give each piece of rows its
// own buffer and add the pieces in a fixed order, so the bits do not depend on the threads). residual (optional,
// out_h x out_w x cout; the gradient kernels accumulate through it) may be y; y must not overlap x.
// output_gradient (optional, as y; no residual or channel sums then) may be y, and pre_activation (optional, as y;
// no residual then): as ConvArgs'. With output_gradient, output_gradient_means (optional, cout floats) is the
// gradient of y's per-channel spatial means (the squeeze-excite "squeeze"): its share, times mean_scale (1 / the
// pixels), is added to each pixel's output gradient first, with the bits of activation_backward given both.
struct DepthwiseArgs {
  const float* x = nullptr;
  uint32_t in_h = 0, in_w = 0, cin = 0;
  float* y = nullptr;
  uint32_t out_h = 0, out_w = 0, cout = 0;  // cout = cin * multiplier
  uint32_t kh = 1, kw = 1, stride_h = 1, stride_w = 1, pad_top = 0, pad_left = 0;
  WeightView kernel;
  const float* bias = nullptr;
  Activation act = Activation::Linear;
  float act_max = 0;
  float* channel_sums = nullptr;
  const float* residual = nullptr;
  const float* output_gradient = nullptr;
  float* pre_activation = nullptr;
  const float* output_gradient_means = nullptr;
  float mean_scale = 0;
};
void depthwise2d(const DepthwiseArgs& args, uint32_t row_begin, uint32_t row_end);

// y = act(W . x + bias): x has `inputs` floats (NHWC flatten order), y has `units`;
// kernel: BlockedOHWI {units, 1, 1, inputs}. y must not overlap x.
struct DenseArgs {
  const float* x = nullptr;
  uint32_t inputs = 0;
  float* y = nullptr;
  uint32_t units = 0;
  WeightView kernel;
  const float* bias = nullptr;
  Activation act = Activation::Linear;
  float act_max = 0;
};
// Computes units [unit_begin, unit_end).
void dense(const DenseArgs& args, uint32_t unit_begin, uint32_t unit_end);

// gate = act2(W2 . act(W1 . means + b1) + b2): channels -> reduced -> channels, both kernels BlockedOHWI with
// kh = kw = 1. hidden is caller scratch of `reduced` floats. gate must not overlap means or hidden.
struct SqueezeExciteArgs {
  const float* means = nullptr;
  uint32_t channels = 0, reduced = 0;
  WeightView w1;
  const float* b1 = nullptr;
  Activation act = Activation::Linear;
  float act_max = 0;
  WeightView w2;
  const float* b2 = nullptr;
  Activation act2 = Activation::Linear;
  float act2_max = 0;
  float* hidden = nullptr;
  float* gate = nullptr;
};
void squeeze_excite(const SqueezeExciteArgs& args);

// y = act(x * scale[c] + bias[c]) + residual over pixels x channels; scale, bias, residual optional.
// Aliasing: y == x and y == residual are allowed.
struct ChannelAffineArgs {
  const float* x = nullptr;
  float* y = nullptr;
  uint32_t pixels = 0, channels = 0;
  const float* scale = nullptr;
  const float* bias = nullptr;
  const float* residual = nullptr;
  Activation act = Activation::Linear;
  float act_max = 0;
};
void channel_affine(const ChannelAffineArgs& args, uint32_t pixel_begin, uint32_t pixel_end);

// y = act(a + b) or act(a * b) over pixels x channels; b_broadcast: b is one pixel (1x1xC) used for every pixel.
// (A flat tensor is pixels = n, channels = 1.) Aliasing: y == a and y == b are allowed.
struct ElementwiseArgs {
  const float* a = nullptr;
  const float* b = nullptr;
  float* y = nullptr;
  uint32_t pixels = 0, channels = 0;
  bool b_broadcast = false;
  Activation act = Activation::Linear;
  float act_max = 0;
};
void add(const ElementwiseArgs& args, uint32_t pixel_begin, uint32_t pixel_end);
void multiply(const ElementwiseArgs& args, uint32_t pixel_begin, uint32_t pixel_end);

// y[i] = act(x[i]) for i in [begin, end). Aliasing: y == x is allowed.
void activate(const float* x, float* y, size_t begin, size_t end, Activation act, float act_max);

// y[c] = mean over h x w of x[., ., c], for channels [channel_begin, channel_end). y must not overlap x.
struct GlobalPoolArgs {
  const float* x = nullptr;
  uint32_t h = 0, w = 0, channels = 0;
  float* y = nullptr;
};
void global_avg_pool(const GlobalPoolArgs& args, uint32_t channel_begin, uint32_t channel_end);

// Max / average over a kh x kw window with stride; windows start at -pad_top / -pad_left. Positions outside the
// image are not counted (TF semantics); a window with no position inside gives 0. y must not overlap x.
struct PoolArgs {
  const float* x = nullptr;
  uint32_t in_h = 0, in_w = 0, channels = 0;
  float* y = nullptr;
  uint32_t out_h = 0, out_w = 0;
  uint32_t kh = 1, kw = 1, stride_h = 1, stride_w = 1, pad_top = 0, pad_left = 0;
};
void max_pool2d(const PoolArgs& args, uint32_t row_begin, uint32_t row_end);
void avg_pool2d(const PoolArgs& args, uint32_t row_begin, uint32_t row_end);

// y = x surrounded by zeros: (in_h + pad_top + pad_bottom) x (in_w + pad_left + pad_right) x channels.
// y must not overlap x.
struct ZeroPadArgs {
  const float* x = nullptr;
  uint32_t in_h = 0, in_w = 0, channels = 0;
  float* y = nullptr;
  uint32_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
};
// Computes output rows [row_begin, row_end).
void zero_pad(const ZeroPadArgs& args, uint32_t row_begin, uint32_t row_end);

// In place, numerically stable (the maximum is subtracted before exp).
void softmax(float* x, size_t n);

// Dispatch: the path is process-wide, the best the CPU supports unless set_dispatch forces another. Names: "avx512"
// (F/BW/DQ/VL + F16C), "avx2" (AVX2 + FMA + F16C), "scalar". set_dispatch throws effcam::Error for a name that is
// unknown or that the CPU lacks; call it while no kernel is running.
void set_dispatch(std::string_view name);
std::string_view dispatch_name();
std::vector<std::string_view> available_dispatches();  // the paths this CPU can run, best first

}  // namespace effcam::ops
