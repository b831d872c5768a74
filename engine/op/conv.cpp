// Conv: y = act(conv(x * input_scale) + bias) [+ residual]; dense (groups = 1), any kernel and stride. Pointwise convs
// run as one GEMM over the pixels; 3x3 stride-1 convs through Winograd F(4x4, 3x3) with planned scratch.
#include <algorithm>

#include "engine/op/definitions.h"
#include "engine/op_args.h"
#include "format/weight_layout.h"
#include "ops/backward.h"
#include "ops/kernels.h"

namespace effcam::engine::op {
namespace {

using format::kNone;

Shape shape(OpCheck& check) {
  const format::Op& op = check.op();
  const Shape window = check.window();
  const Shape out{window.h, window.w, op.out_channels};
  check.kernel(op.weight, format::WeightLayout::BlockedOHWI, op.out_channels, op.kernel_h, op.kernel_w, check.x().c,
               "kernel");
  check.vector(op.bias, op.out_channels, "bias");
  if (const Shape* residual = check.optional_input(1); residual && !(*residual == out)) {
    check.fail("residual " + shape_text(*residual) + " does not match the output " + shape_text(out));
  }
  if (const Shape* gate = check.optional_input(2); gate && !(*gate == Shape{1, 1, check.x().c})) {
    check.fail("input scale must be 1x1x" + std::to_string(check.x().c));
  }
  return out;
}

uint64_t multiply_adds(const format::Op& op, const OpGeometry& g) {
  return g.output.elements() * op.kernel_h * op.kernel_w * g.input.c;
}

uint64_t scratch_floats(const format::Op& op, const OpGeometry& g, uint32_t threads) {
  // Winograd: the transformed weights, shared, and each worker's tiles.
  if (!ops::conv2d_winograd(op.kernel_h, op.kernel_w, op.stride_h, op.stride_w)) return 0;
  return ops::winograd_weight_floats(g.input.c, g.output.c) + uint64_t{threads} * ops::winograd_scratch_floats(g.input.c);
}

void forward(const ForwardCall& call) {
  const format::Op& op = call.op;
  ops::ConvArgs a = conv_args(call.file, op, call.geometry);
  a.x = call.input[0];
  a.y = call.output[0];
  a.bias = call.bias;
  a.input_scale = call.input[2];
  a.residual = call.input[1];
  a.act = call.activation;
  a.act_max = op.act_max;
  if (a.kh == 1 && a.kw == 1 && a.stride_h == 1 && a.stride_w == 1 && a.pad_top == 0 && a.pad_left == 0 &&
      a.in_h == a.out_h && a.in_w == a.out_w) {
    // A pointwise conv is a GEMM over the pixels: as one column of them, threads split pixels, not rows.
    a.in_h = a.out_h = output_pixels(call.geometry);
    a.in_w = a.out_w = 1;
  }
  ThreadPool& pool = call.pool;
  if (!ops::conv2d_winograd(a.kh, a.kw, a.stride_h, a.stride_w)) {
    pool.parallel_for(a.out_h, [&](uint32_t b, uint32_t e, uint32_t) { ops::conv2d(a, b, e); });
    return;
  }
  // Scratch (scratch_floats): the transformed weights, then one work area per worker.
  float* u = call.scratch;
  pool.parallel_for(format::round_up_to_block(a.cout) / format::kChannelBlock,
                    [&](uint32_t b, uint32_t e, uint32_t) { ops::winograd_transform_weights(a, u, b, e); });
  a.winograd_weights = u;
  float* work = u + ops::winograd_weight_floats(a.cin, a.cout);
  // Split by rows of tiles: a range starting inside one would recompute that row of tiles.
  constexpr uint32_t tile = ops::kWinogradTile;
  pool.parallel_for((a.out_h + tile - 1) / tile, [&](uint32_t b, uint32_t e, uint32_t worker) {
    ops::ConvArgs mine = a;
    mine.winograd_scratch = work + worker * ops::winograd_scratch_floats(a.cin);
    ops::conv2d(mine, tile * b, std::min(tile * e, a.out_h));
  });
}

BackwardScratch backward_scratch(const ModelFile& file, const format::Op& op, const OpGeometry& g) {
  // The conv's own (transposed kernels, a stride phase's gradient), after d(x * gate) when the input is gated.
  const uint64_t conv = ops::conv2d_backward_scratch_floats(conv_args(file, op, g));
  return {(op.inputs[2] == kNone ? 0 : g.input.elements()) + conv, 0};
}

void backward(const BackwardCall& call) {
  float* gx = call.input_gradient[0];
  float* gate_gradient = call.input_gradient[2];
  if (!gx && !gate_gradient) return;
  const OpGeometry& g = call.geometry;
  const ops::ConvArgs a = conv_args(call.file, call.op, g);
  if (call.op.inputs[2] == kNone) {
    ops::conv2d_backward_input(a, call.dz, gx, call.scratch, call.pool);
    return;
  }
  // The gate scales the conv's input: d(x * gate) splits into dx = d * gate and dgate = sum over pixels d * x.
  float* scaled = call.scratch;
  std::fill_n(scaled, g.input.elements(), 0.0f);
  ops::conv2d_backward_input(a, call.dz, scaled, scaled + g.input.elements(), call.pool);
  const ops::ElementwiseArgs gating{call.input[0], call.input[2], nullptr, g.input.h * g.input.w, g.input.c, true,
                                    ops::Activation::Linear, 0};
  ops::multiply_backward(gating, scaled, gx, gate_gradient);
}

// Only a gated conv reads its forward inputs (the input and the gate, for the gate's gradient).
bool backward_reads_input(const format::Op& op, uint32_t slot) { return op.inputs[2] != kNone && slot != 1; }

}  // namespace

const OpDefinition kConv = {
    .kind = format::OpKind::Conv,
    .name = "Conv",
    .shape = shape,
    .residual_input = true,
    .input_scale = true,
    .kernel = true,
    .activation_in_epilogue = true,
    .multiply_adds = multiply_adds,
    .scratch_floats = scratch_floats,
    .in_place_inputs = {1, kNoSlot},  // the residual add in place; never over the conv's own input
    .forward = forward,
    .backward_scratch = backward_scratch,
    .backward_reads_input = backward_reads_input,
    .backward = backward,
};

}  // namespace effcam::engine::op
