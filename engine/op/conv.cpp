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
  return ops::conv2d_pooled_scratch_floats(conv_shape_args(op, g), threads);  // Winograd's
}

void forward(const ForwardCall& call) {
  const format::Op& op = call.op;
  ops::ConvArgs a = conv_args(call.file, op, call.geometry);
  a.x = call.input[0];
  a.y = call.output[0];
  a.bias = call.bias;
  a.input_scale = call.input[2];
  a.residual = call.input[1];
  a.output_gradient = call.output_gradient;
  a.pre_activation = call.pre_activation;
  a.act = call.activation;
  a.act_max = op.act_max;
  ops::conv2d_pooled(a, call.scratch, call.pool);
}

BackwardScratch backward_scratch(const ModelFile& file, const format::Op& op, const OpGeometry& g,
                                 const BackwardMode& mode) {
  return {ops::conv2d_backward_scratch_floats(conv_args(file, op, g), mode.threads, mode.winograd,
                                              op.inputs[2] != kNone),
          0};
}

void backward(const BackwardCall& call) {
  float* gx = call.input_gradient[0];
  float* gate_gradient = call.input_gradient[2];
  if (!gx && !gate_gradient) return;
  const ops::InputGate gate{call.input[2], call.input[0], gate_gradient};  // no gate: input[2] is nullptr
  ops::conv2d_backward_input(conv_args(call.file, call.op, call.geometry), call.dz, gx, call.scratch, call.pool,
                             call.winograd, gate, input_gradient_write(call));
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
    .backward_epilogues = true,
    .multiply_adds = multiply_adds,
    .scratch_floats = scratch_floats,
    .in_place_inputs = {1, kNoSlot},  // the residual add in place; never over the conv's own input
    .forward = forward,
    .backward_scratch = backward_scratch,
    .backward_reads_input = backward_reads_input,
    .backward = backward,
    .backward_overwrites = true,
};

}  // namespace effcam::engine::op
