// MaxPool and AvgPool: a kernel_h x kernel_w window with stride and padding like Conv; positions outside the image
// are not counted (TensorFlow semantics). Threads split the output rows.
#include "engine/op/definitions.h"
#include "engine/op_args.h"
#include "ops/backward.h"
#include "ops/kernels.h"

namespace effcam::engine::op {
namespace {

Shape shape(OpCheck& check) {
  const Shape out = check.window();
  check.unused_input(1);
  check.unused_input(2);
  return out;
}

template <bool kMax>
void forward(const ForwardCall& call) {
  ops::PoolArgs a = pool_args(call.op, call.geometry);
  a.x = call.input[0];
  a.y = call.output[0];
  call.pool.parallel_for(a.out_h, [&](uint32_t b, uint32_t e, uint32_t) {
    kMax ? ops::max_pool2d(a, b, e) : ops::avg_pool2d(a, b, e);
  });
  if (call.activation != ops::Activation::Linear) {
    ops::activate(a.y, a.y, 0, call.geometry.output.elements(), call.activation, call.op.act_max);
  }
}

template <bool kMax>
void backward(const BackwardCall& call) {
  if (!call.input_gradient[0]) return;
  ops::PoolArgs a = pool_args(call.op, call.geometry);
  a.x = call.input[0];
  (kMax ? ops::max_pool2d_backward : ops::avg_pool2d_backward)(a, call.dz, call.input_gradient[0]);
}

}  // namespace

const OpDefinition kMaxPool = {
    .kind = format::OpKind::MaxPool,
    .name = "MaxPool",
    .shape = shape,
    .forward = forward<true>,
    .backward = backward<true>,
};

const OpDefinition kAvgPool = {
    .kind = format::OpKind::AvgPool,
    .name = "AvgPool",
    .shape = shape,
    .forward = forward<false>,
    .backward = backward<false>,
};

}  // namespace effcam::engine::op
