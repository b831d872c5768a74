// Reshape: the same bytes under new dims {reshape[0], reshape[1], reshape[2]}; planned as a view of its input, so
// the forward copies only when a recomputation asks for the values elsewhere.
#include <cstring>

#include "engine/op/definitions.h"
#include "ops/backward.h"

namespace effcam::engine::op {
namespace {

Shape shape(OpCheck& check) {
  const format::Op& op = check.op();
  const Shape out{op.reshape[0], op.reshape[1], op.reshape[2]};
  if (out.elements() != check.x().elements()) check.fail("reshape to " + shape_text(out) + " changes the element count");
  check.unused_input(1);
  check.unused_input(2);
  return out;
}

void forward(const ForwardCall& call) {
  if (call.output[0] != call.input[0]) {
    std::memcpy(call.output[0], call.input[0], call.geometry.output.elements() * sizeof(float));
  }
}

void backward(const BackwardCall& call) {
  if (call.input_gradient[0]) ops::identity_backward(call.dz, call.input_gradient[0], call.geometry.output.elements());
}

}  // namespace

const OpDefinition kReshape = {
    .kind = format::OpKind::Reshape,
    .name = "Reshape",
    .shape = shape,
    .view = true,
    .forward = forward,
    .backward = backward,
};

}  // namespace effcam::engine::op
