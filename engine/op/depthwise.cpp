// Depthwise: y = act(depthwise(x) + bias); output channel o reads input channel o / multiplier. outputs[1], when
// given, is the spatial mean of y per channel: the squeeze-excite "squeeze", summed in the kernel's epilogue.
#include <algorithm>

#include "engine/op/definitions.h"
#include "engine/op_args.h"
#include "ops/backward.h"
#include "ops/kernels.h"

namespace effcam::engine::op {
namespace {

using format::kNone;

Shape shape(OpCheck& check) {
  const format::Op& op = check.op();
  const Shape window = check.window();
  if (op.out_channels == 0 || op.out_channels % check.x().c != 0) {
    check.fail("output channels are not a multiple of the input's");
  }
  check.kernel(op.weight, format::WeightLayout::DepthwiseHWC, op.out_channels, op.kernel_h, op.kernel_w, 1, "kernel");
  check.vector(op.bias, op.out_channels, "bias");
  check.unused_input(1);
  check.unused_input(2);
  return {window.h, window.w, op.out_channels};
}

uint64_t multiply_adds(const format::Op& op, const OpGeometry& g) {
  return g.output.elements() * op.kernel_h * op.kernel_w;
}

// The squeeze-excite mean is summed over fixed pieces of rows, each into its own sums, then the pieces in order:
// the same bits whichever thread runs a piece, and on any thread count.
uint32_t mean_pieces(const OpGeometry& g) { return std::min(g.output.h, 8u); }

uint64_t scratch_floats(const format::Op& op, const OpGeometry& g, uint32_t) {
  return op.outputs[1] != kNone ? uint64_t{mean_pieces(g)} * g.output.c : 0;
}

void forward(const ForwardCall& call) {
  const format::Op& op = call.op;
  ThreadPool& pool = call.pool;
  ops::DepthwiseArgs a = depthwise_args(call.file, op, call.geometry);
  a.x = call.input[0];
  a.y = call.output[0];
  a.bias = call.bias;
  a.act = call.activation;
  a.act_max = op.act_max;
  a.output_gradient = call.output_gradient;
  a.pre_activation = call.pre_activation;
  a.output_gradient_means = call.output_mean_gradient;
  a.mean_scale = 1.0f / static_cast<float>(output_pixels(call.geometry));
  float* mean = call.output[1];
  if (!mean) {
    pool.parallel_for(a.out_h, [&](uint32_t b, uint32_t e, uint32_t) { ops::depthwise2d(a, b, e); });
    return;
  }
  const uint32_t c = a.cout, pieces = mean_pieces(call.geometry);
  float* sums = call.scratch;
  std::fill(sums, sums + size_t{pieces} * c, 0.0f);
  pool.parallel_for(pieces, [&](uint32_t b, uint32_t e, uint32_t) {
    for (uint32_t k = b; k < e; ++k) {
      ops::DepthwiseArgs piece = a;
      piece.channel_sums = sums + size_t{k} * c;
      ops::depthwise2d(piece, a.out_h * k / pieces, a.out_h * (k + 1) / pieces);
    }
  });
  std::copy(sums, sums + c, mean);
  for (uint32_t k = 1; k < pieces; ++k) {
    for (uint32_t o = 0; o < c; ++o) mean[o] += sums[size_t{k} * c + o];
  }
  const float inv = 1.0f / static_cast<float>(output_pixels(call.geometry));
  for (uint32_t o = 0; o < c; ++o) mean[o] *= inv;
}

BackwardScratch backward_scratch(const ModelFile& file, const format::Op& op, const OpGeometry& g,
                                 const BackwardMode&) {
  return {ops::depthwise2d_backward_scratch_floats(depthwise_args(file, op, g)), 0};  // transposed kernels, a phase
}

void backward(const BackwardCall& call) {
  if (!call.input_gradient[0]) return;
  const ops::DepthwiseArgs a = depthwise_args(call.file, call.op, call.geometry);
  ops::depthwise2d_backward_input(a, call.dz, call.input_gradient[0], call.scratch, call.pool,
                                  input_gradient_write(call));
}

}  // namespace

const OpDefinition kDepthwise = {
    .kind = format::OpKind::Depthwise,
    .name = "Depthwise",
    .shape = shape,
    .mean_output = true,
    .kernel = true,
    .backward_epilogues = true,
    .multiply_adds = multiply_adds,
    .scratch_floats = scratch_floats,
    .forward = forward,
    .backward_scratch = backward_scratch,
    .backward = backward,
    .backward_overwrites = true,
};

}  // namespace effcam::engine::op
