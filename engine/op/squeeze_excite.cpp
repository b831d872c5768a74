// SqueezeExcite: gate = act2(W2 . act(W1 . m + b1) + b2) on a 1x1xC mean (weight/bias = W1/b1, weight2/bias2 =
// W2/b2); the hidden layer lives in the op's scratch.
#include <algorithm>

#include "engine/op/definitions.h"
#include "engine/op_args.h"
#include "ops/backward.h"
#include "ops/kernels.h"

namespace effcam::engine::op {
namespace {

Shape shape(OpCheck& check) {
  const format::Op& op = check.op();
  const Shape& x = check.x();
  if (x.h != 1 || x.w != 1) check.fail("squeeze-excite input must be 1x1xC, got " + shape_text(x));
  check.kernel(op.weight, format::WeightLayout::BlockedOHWI, op.out_channels, 1, 1, x.c, "reduce kernel");
  check.vector(op.bias, op.out_channels, "reduce bias");
  check.kernel(op.weight2, format::WeightLayout::BlockedOHWI, x.c, 1, 1, op.out_channels, "expand kernel");
  check.vector(op.bias2, x.c, "expand bias");
  check.unused_input(1);
  check.unused_input(2);
  return x;
}

uint64_t multiply_adds(const format::Op& op, const OpGeometry& g) { return 2 * uint64_t{g.input.c} * op.out_channels; }

uint64_t scratch_floats(const format::Op& op, const OpGeometry&, uint32_t) {
  return op.out_channels;  // the hidden layer
}

void forward(const ForwardCall& call) {
  const format::Op& op = call.op;
  ops::SqueezeExciteArgs a;
  a.means = call.input[0];
  a.channels = call.geometry.input.c;
  a.reduced = op.out_channels;
  a.w1 = weight_view(call.file, op.weight);
  a.b1 = call.weight(op.bias);
  a.act = op.activation;
  a.act_max = op.act_max;
  a.w2 = weight_view(call.file, op.weight2);
  a.b2 = call.weight(op.bias2);
  a.act2 = call.skip_activation ? ops::Activation::Linear : op.activation2;
  a.act2_max = op.act_max;
  a.hidden = call.scratch;
  a.gate = call.output[0];
  ops::squeeze_excite(a);
}

BackwardScratch backward_scratch(const ModelFile&, const format::Op& op, const OpGeometry&, const BackwardMode&) {
  return {0, 2 * uint64_t{op.out_channels}};  // the hidden pre-activation and its gradient
}

void backward(const BackwardCall& call) {
  float* gx = call.input_gradient[0];
  if (!gx) return;
  // gate = act2(W2 h + b2), h = act(W1 m + b1): dz is d/d(W2 h + b2); back through W2, act and W1.
  const format::Op& op = call.op;
  const uint32_t hidden = op.out_channels, channels = call.geometry.input.c;
  float* z1 = call.shared_scratch;
  float* dh = z1 + hidden;
  ops::DenseArgs first{call.input[0], channels, z1, hidden, weight_view(call.file, op.weight), call.weight(op.bias),
                       ops::Activation::Linear, 0};
  ops::dense(first, 0, hidden);
  std::fill_n(dh, hidden, 0.0f);
  ops::DenseArgs second{nullptr, hidden, nullptr, channels, weight_view(call.file, op.weight2), nullptr,
                        ops::Activation::Linear, 0};
  ops::dense_backward_input(second, call.dz, dh);
  ops::activation_backward(z1, dh, dh, hidden, op.activation, op.act_max);
  ops::dense_backward_input(first, dh, gx);
}

}  // namespace

const OpDefinition kSqueezeExcite = {
    .kind = format::OpKind::SqueezeExcite,
    .name = "SqueezeExcite",
    .shape = shape,
    .output_activation = &format::Op::activation2,
    .multiply_adds = multiply_adds,
    .scratch_floats = scratch_floats,
    .forward = forward,
    .backward_scratch = backward_scratch,
    .backward = backward,
};

}  // namespace effcam::engine::op
