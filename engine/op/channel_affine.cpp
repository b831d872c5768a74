// ChannelAffine: y = act(x * scale[c] + bias[c]) [+ residual] (a BatchNorm left unfolded); scale and bias optional.
#include "engine/op/definitions.h"
#include "ops/backward.h"
#include "ops/kernels.h"

namespace effcam::engine::op {
namespace {

Shape shape(OpCheck& check) {
  const format::Op& op = check.op();
  const Shape& x = check.x();
  check.vector(op.weight, x.c, "scale");
  check.vector(op.bias, x.c, "shift");
  if (const Shape* residual = check.optional_input(1); residual && !(*residual == x)) {
    check.fail("residual does not match the input");
  }
  check.unused_input(2);
  return x;
}

void forward(const ForwardCall& call) {
  const uint32_t pixels = output_pixels(call.geometry);
  ops::ChannelAffineArgs a;
  a.x = call.input[0];
  a.y = call.output[0];
  a.pixels = pixels;
  a.channels = call.geometry.output.c;
  a.scale = call.weight(call.op.weight);
  a.bias = call.bias;
  a.residual = call.input[1];
  a.act = call.activation;
  a.act_max = call.op.act_max;
  call.pool.parallel_for(pixels, [&](uint32_t b, uint32_t e, uint32_t) { ops::channel_affine(a, b, e); });
}

void backward(const BackwardCall& call) {
  if (!call.input_gradient[0]) return;
  const ops::ChannelAffineArgs a{nullptr, nullptr, output_pixels(call.geometry), call.geometry.input.c,
                                 call.weight(call.op.weight), nullptr, nullptr, ops::Activation::Linear, 0};
  ops::channel_affine_backward(a, call.dz, call.input_gradient[0]);
}

}  // namespace

const OpDefinition kChannelAffine = {
    .kind = format::OpKind::ChannelAffine,
    .name = "ChannelAffine",
    .shape = shape,
    .residual_input = true,
    .in_place_inputs = {0, 1},
    .forward = forward,
    .backward = backward,
};

}  // namespace effcam::engine::op
