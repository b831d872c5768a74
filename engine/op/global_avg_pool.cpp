// GlobalAvgPool: y[0, 0, c] = act(mean over H x W of x[., ., c]); threads split the channels.
#include "engine/op/definitions.h"
#include "ops/backward.h"
#include "ops/kernels.h"

namespace effcam::engine::op {
namespace {

Shape shape(OpCheck& check) {
  check.unused_input(1);
  check.unused_input(2);
  return {1, 1, check.x().c};
}

void forward(const ForwardCall& call) {
  const Shape& in = call.geometry.input;
  float* y = call.output[0];
  ops::GlobalPoolArgs a{call.input[0], in.h, in.w, in.c, y};
  call.pool.parallel_for(in.c, [&](uint32_t b, uint32_t e, uint32_t) { ops::global_avg_pool(a, b, e); });
  if (call.activation != ops::Activation::Linear) ops::activate(y, y, 0, in.c, call.activation, call.op.act_max);
}

void backward(const BackwardCall& call) {
  if (!call.input_gradient[0]) return;
  const Shape& in = call.geometry.input;
  const ops::GlobalPoolArgs a{call.input[0], in.h, in.w, in.c, nullptr};
  ops::global_avg_pool_backward(a, call.dz, call.input_gradient[0]);
}

}  // namespace

const OpDefinition kGlobalAvgPool = {
    .kind = format::OpKind::GlobalAvgPool,
    .name = "GlobalAvgPool",
    .shape = shape,
    .forward = forward,
    .backward = backward,
};

}  // namespace effcam::engine::op
