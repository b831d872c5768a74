// Dense: y = act(W . flatten(x) + b), threads split the units.
#include "engine/op/definitions.h"
#include "engine/op_args.h"
#include "ops/backward.h"
#include "ops/kernels.h"

namespace effcam::engine::op {
namespace {

Shape shape(OpCheck& check) {
  const format::Op& op = check.op();
  const Shape& x = check.x();
  if (x.elements() > 0xFFFFFFFFu) check.fail("input too large");
  check.kernel(op.weight, format::WeightLayout::BlockedOHWI, op.out_channels, 1, 1, static_cast<uint32_t>(x.elements()),
               "kernel");
  check.vector(op.bias, op.out_channels, "bias");
  check.unused_input(1);
  check.unused_input(2);
  return {1, 1, op.out_channels};
}

uint64_t multiply_adds(const format::Op& op, const OpGeometry& g) { return g.input.elements() * op.out_channels; }

void forward(const ForwardCall& call) {
  const format::Op& op = call.op;
  ops::DenseArgs a;
  a.x = call.input[0];
  a.inputs = static_cast<uint32_t>(call.geometry.input.elements());
  a.y = call.output[0];
  a.units = op.out_channels;
  a.kernel = weight_view(call.file, op.weight);
  a.bias = call.bias;
  a.act = call.activation;
  a.act_max = op.act_max;
  call.pool.parallel_for(a.units, [&](uint32_t b, uint32_t e, uint32_t) { ops::dense(a, b, e); });
}

void backward(const BackwardCall& call) {
  if (!call.input_gradient[0]) return;
  const ops::DenseArgs a{nullptr, static_cast<uint32_t>(call.geometry.input.elements()), nullptr, call.op.out_channels,
                         weight_view(call.file, call.op.weight), nullptr, ops::Activation::Linear, 0};
  ops::dense_backward_input(a, call.dz, call.input_gradient[0]);
}

}  // namespace

const OpDefinition kDense = {
    .kind = format::OpKind::Dense,
    .name = "Dense",
    .shape = shape,
    .kernel = true,
    .activation_in_epilogue = true,
    .multiply_adds = multiply_adds,
    .forward = forward,
    .backward = backward,
};

}  // namespace effcam::engine::op
