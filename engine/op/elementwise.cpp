// Add and Multiply: y = act(a + b) / act(a * b); a Multiply's b may be 1x1xC (a squeeze-excite gate, broadcast over
// the pixels). Both may write over either operand.
#include "engine/op/definitions.h"
#include "ops/backward.h"
#include "ops/kernels.h"

namespace effcam::engine::op {
namespace {

template <bool kMultiply>
Shape shape(OpCheck& check) {
  const Shape& x = check.x();
  const Shape& b = check.input(1);
  const bool broadcast = kMultiply && b == Shape{1, 1, x.c};
  if (!(b == x) && !broadcast) check.fail("operand shapes " + shape_text(x) + " and " + shape_text(b) + " differ");
  check.unused_input(2);
  return x;
}

template <bool kMultiply>
void forward(const ForwardCall& call) {
  const OpGeometry& g = call.geometry;
  const uint32_t pixels = output_pixels(g);
  ops::ElementwiseArgs a;
  a.a = call.input[0];
  a.b = call.input[1];
  a.y = call.output[0];
  a.pixels = pixels;
  a.channels = g.output.c;
  a.b_broadcast = call.input_shape[1].elements() != g.output.elements();
  a.act = call.activation;
  a.act_max = call.op.act_max;
  call.pool.parallel_for(pixels, [&](uint32_t b, uint32_t e, uint32_t) {
    kMultiply ? ops::multiply(a, b, e) : ops::add(a, b, e);
  });
}

void add_backward(const BackwardCall& call) {
  ops::add_backward(call.dz, call.input_gradient[0], call.input_gradient[1], call.geometry.output.elements());
}

void multiply_backward(const BackwardCall& call) {
  const OpGeometry& g = call.geometry;
  const bool broadcast = call.input_shape[1].elements() != g.output.elements();
  const ops::ElementwiseArgs a{call.input[0], call.input[1], nullptr, output_pixels(g), g.output.c, broadcast,
                               ops::Activation::Linear, 0};
  call.pool.parallel_for(g.output.c, [&](uint32_t b, uint32_t e, uint32_t) {
    ops::multiply_backward(a, call.dz, call.input_gradient[0], call.input_gradient[1], b, e);
  });
}

}  // namespace

const OpDefinition kAdd = {
    .kind = format::OpKind::Add,
    .name = "Add",
    .shape = shape<false>,
    .in_place_inputs = {0, 1},
    .forward = forward<false>,
    .backward = add_backward,
};

const OpDefinition kMultiply = {
    .kind = format::OpKind::Multiply,
    .name = "Multiply",
    .shape = shape<true>,
    .in_place_inputs = {0, 1},
    .forward = forward<true>,
    .backward = multiply_backward,
};

}  // namespace effcam::engine::op
