// ZeroPad: x surrounded by pad_top / pad_bottom / pad_left / pad_right zeros (the converter folds most of them into
// the next conv's padding). Threads split the output rows.
#include "engine/op/definitions.h"
#include "ops/backward.h"
#include "ops/kernels.h"

namespace effcam::engine::op {
namespace {

Shape shape(OpCheck& check) {
  const format::Op& op = check.op();
  const Shape& x = check.x();
  check.unused_input(1);
  check.unused_input(2);
  return {x.h + op.pad_top + op.pad_bottom, x.w + op.pad_left + op.pad_right, x.c};
}

ops::ZeroPadArgs pad_args(const format::Op& op, const Shape& in, const float* x, float* y) {
  return {x, in.h, in.w, in.c, y, op.pad_top, op.pad_bottom, op.pad_left, op.pad_right};
}

void forward(const ForwardCall& call) {
  const ops::ZeroPadArgs a = pad_args(call.op, call.geometry.input, call.input[0], call.output[0]);
  call.pool.parallel_for(call.geometry.output.h, [&](uint32_t b, uint32_t e, uint32_t) { ops::zero_pad(a, b, e); });
}

void backward(const BackwardCall& call) {
  if (!call.input_gradient[0]) return;
  ops::zero_pad_backward(pad_args(call.op, call.geometry.input, call.input[0], nullptr), call.dz,
                         call.input_gradient[0]);
}

}  // namespace

const OpDefinition kZeroPad = {
    .kind = format::OpKind::ZeroPad,
    .name = "ZeroPad",
    .shape = shape,
    .forward = forward,
    .backward = backward,
};

}  // namespace effcam::engine::op
