#include "engine/explainer.h"

#include <algorithm>
#include <cstring>

#include "effcam/error.hpp"
#include "engine/op_args.h"
#include "engine/op_table.h"
#include "ops/backward.h"

namespace effcam::engine {

using format::kNone;
using format::TapKind;

uint32_t Explainer::add_buffer(PlanRequest& request, uint64_t floats, uint32_t first, uint32_t last) {
  request.extra.push_back({floats * sizeof(float), first, last});
  buffer_floats_.resize(request.extra.size());
  buffer_floats_.back() = floats;
  return static_cast<uint32_t>(request.extra.size() - 1);
}

Explainer::Explainer(const Model& model, const std::string& layer, PlanRequest& request)
    : model_(model), tap_(model.find_tap(layer)), layer_(layer) {
  if (!tap_) {
    throw Error("Grad-CAM layer '" + layer +
                "' is not in the model, or was folded away (the model's CAM layers list those it has)");
  }
  const auto ops = model_.file().ops();
  const Graph& graph = model_.graph();
  const uint32_t n = static_cast<uint32_t>(ops.size()), target = tap_->op;
  if (tap_->kind == TapKind::SecondOutput || ops[target].outputs[0] == graph.output) {
    throw Error("Grad-CAM layer '" + layer + "' is not a spatial map (the model's CAM layers list those that are)");
  }

  // The ops the score depends on through the target, in execution order.
  std::vector<bool> downstream(graph.tensors.size(), false);
  for (uint32_t t : ops[target].outputs) {
    if (t != kNone) downstream[t] = true;
  }
  std::vector<uint32_t> path = {target};
  for (uint32_t i = target + 1; i < n; ++i) {
    const bool reached = std::any_of(std::begin(ops[i].inputs), std::end(ops[i].inputs),
                                     [&](uint32_t t) { return t != kNone && downstream[t]; });
    if (!reached) continue;
    path.push_back(i);
    for (uint32_t t : ops[i].outputs) {
      if (t != kNone) downstream[t] = true;
    }
  }
  if (!downstream[graph.output]) throw Error("Grad-CAM layer '" + layer + "' does not influence the model output");

  // The backward pass continues the forward's timeline: step j runs at n + j.
  steps_.resize(path.size());
  for (size_t j = 0; j < path.size(); ++j) steps_[j].op = path[path.size() - 1 - j];
  const uint32_t steps = static_cast<uint32_t>(steps_.size());
  std::vector<uint32_t> step_of(n, kNone);  // timeline step of each op's backward
  for (uint32_t j = 0; j < steps; ++j) step_of[steps_[j].op] = n + j;
  request.final_step = n + steps;  // the caller reads the result after the last backward step

  // A gradient buffer for each downstream tensor that a path op reads: from its first consumer's backward step
  // (cleared there) to its producer's.
  gradient_.assign(graph.tensors.size(), kNone);
  for (uint32_t t = 0; t < graph.tensors.size(); ++t) {
    if (!downstream[t]) continue;
    uint32_t first = kNone;
    for (uint32_t op : path) {
      for (uint32_t in : ops[op].inputs) {
        if (in == t) first = std::min(first, step_of[op]);
      }
    }
    if (first == kNone) continue;
    gradient_[t] = add_buffer(request, graph.tensors[t].elements(), first, step_of[graph.producer[t]]);
    steps_[first - n].clear.push_back(gradient_[t]);
  }
  // Every path op is rerun from its forward inputs (and with its forward scratch) in its backward step; a target
  // that is an op's own output is read in the last step.
  for (uint32_t op : path) {
    for (uint32_t in : ops[op].inputs) {
      if (in != kNone) request.extend.push_back({in, step_of[op]});
    }
  }
  for (uint32_t op : path) request.extend_scratch.push_back({op, step_of[op]});
  if (tap_->kind == TapKind::Output) request.extend.push_back({ops[target].outputs[0], step_of[target]});
  uint64_t shared_floats = 0;
  for (uint32_t j = 0; j < steps; ++j) {
    Step& step = steps_[j];
    const format::Op& op = ops[step.op];
    const OpGeometry& geometry = graph.ops[step.op];
    step.pre_activation = add_buffer(request, geometry.output.elements(), n + j, n + j);
    const BackwardScratch scratch = op_definition(op.kind).backward_scratch(model_.file(), op, geometry);
    // The target's step runs its own recovery (backward_target), not the op's backward; a ScaledInput target goes
    // back through its conv with that scratch.
    if (scratch.step_floats > 0 && (step.op != target || tap_->kind == TapKind::ScaledInput)) {
      step.scratch = add_buffer(request, scratch.step_floats, n + j, n + j);
    }
    shared_floats = std::max(shared_floats, scratch.shared_floats);
  }
  if (shared_floats > 0) shared_scratch_ = add_buffer(request, shared_floats, n, n + steps - 1);
  const uint64_t target_floats = model_.tap_shape(*tap_).elements();
  activations_ = add_buffer(request, target_floats, n + steps - 1, n + steps);
  gradients_ = add_buffer(request, target_floats, n + steps - 1, n + steps);
}

float* Explainer::gradient(const Executor& executor, uint32_t tensor) const {
  return tensor == kNone || gradient_[tensor] == kNone ? nullptr : executor.extra(gradient_[tensor]);
}

Explanation Explainer::explain(Executor& executor, uint32_t class_index, CamScore score) const {
  if (class_index >= model_.classes()) {
    throw Error("class " + std::to_string(class_index) + " is out of range: the model has " +
                std::to_string(model_.classes()) + " classes");
  }
  float score_value = 0;
  for (const Step& step : steps_) {
    for (uint32_t buffer : step.clear) std::fill_n(executor.extra(buffer), buffer_floats_[buffer], 0.0f);
    if (step.op == tap_->op) {
      backward_target(executor, step);
    } else {
      backward_op(executor, step, class_index, score, score_value);
    }
  }
  const Shape shape = model_.tap_shape(*tap_);
  return {layer_, shape, class_index, score_value, {executor.extra(activations_), shape.elements()},
          {executor.extra(gradients_), shape.elements()}};
}

void Explainer::backward_op(Executor& executor, const Step& step, uint32_t class_index, CamScore score,
                            float& score_value) const {
  const format::Op& op = model_.file().ops()[step.op];
  const OpGeometry& g = model_.graph().ops[step.op];
  const OpDefinition& definition = op_definition(op.kind);
  const bool seed = op.outputs[0] == model_.graph().output;
  const float* dy = gradient(executor, op.outputs[0]);
  const float* dmean = gradient(executor, op.outputs[1]);
  if (!seed && !dy && !dmean) return;  // nothing from the score flows through this op

  // z: the pre-activation, recomputed without the residual; then turned into dz in place.
  float* dz = executor.extra(step.pre_activation);
  executor.run_op(step.op, {.skip_activation = true, .skip_residual = true, .output = dz});
  const size_t count = g.output.elements();
  const format::Activation act = output_activation(op);
  float* residual_gradient = definition.residual_input ? gradient(executor, op.inputs[1]) : nullptr;
  if (seed) {
    const float* y = executor.tensor(op.outputs[0]);
    const float z_c = dz[class_index];
    std::fill_n(dz, count, 0.0f);
    if (score == CamScore::Logit) {
      score_value = z_c;
      dz[class_index] = 1.0f;
    } else if (act == format::Activation::Softmax) {
      score_value = y[class_index];
      for (size_t k = 0; k < count; ++k) dz[k] = y[class_index] * ((k == class_index ? 1.0f : 0.0f) - y[k]);
    } else {
      score_value = y[class_index];
      dz[class_index] = ops::activation_derivative(z_c, act, op.act_max);
    }
    if (residual_gradient && score == CamScore::Prob) residual_gradient[class_index] += 1.0f;
  } else {
    // The output's gradient (plus the squeeze-excite means' share, spread over the pixels) times the activation's
    // derivative, in place over z.
    const uint32_t pixels = g.output.h * g.output.w;
    const ops::ActivationGradientArgs through{dz, dy, dmean, 1.0f / static_cast<float>(pixels), dz, pixels,
                                              g.output.c, act, op.act_max};
    executor.pool().parallel_for(pixels, [&](uint32_t b, uint32_t e, uint32_t) { ops::activation_backward(through, b, e); });
    if (residual_gradient && dy) ops::identity_backward(dy, residual_gradient, count);
  }

  BackwardCall call{model_.file(), op, g, executor.pool(), dz, {}, {}, {}, nullptr, nullptr};
  for (uint32_t slot = 0; slot < format::kMaxOpInputs; ++slot) {
    const uint32_t t = op.inputs[slot];
    if (t == kNone) continue;
    call.input[slot] = executor.tensor(t);
    call.input_shape[slot] = model_.graph().tensors[t];
    // The residual's share was added above: the op's backward sees only what flows through its kernel.
    if (!(slot == 1 && definition.residual_input)) call.input_gradient[slot] = gradient(executor, t);
  }
  if (step.scratch != kNone) call.scratch = executor.extra(step.scratch);
  if (shared_scratch_ != kNone) call.shared_scratch = executor.extra(shared_scratch_);
  definition.backward(call);
}

void Explainer::backward_target(Executor& executor, const Step& step) const {
  const format::Tap& tap = *tap_;
  const uint32_t index = tap.op;
  const format::Op& op = model_.file().ops()[index];
  const OpGeometry& g = model_.graph().ops[index];
  float* a = executor.extra(activations_);
  float* da = executor.extra(gradients_);
  float* z = executor.extra(step.pre_activation);
  const float* dy = gradient(executor, op.outputs[0]);
  const float* dmean = gradient(executor, op.outputs[1]);
  const size_t count = g.output.elements();
  const uint32_t c = g.output.c;
  const float inv_pixels = 1.0f / static_cast<float>(g.output.h * g.output.w);
  // The gradient of the op's final output (its own output and, for a depthwise op, its squeeze-excite means).
  auto dy_total = [&](size_t i) { return (dy ? dy[i] : 0.0f) + (dmean ? dmean[i % c] * inv_pixels : 0.0f); };
  const ops::Activation act = output_activation(op);

  switch (tap.kind) {
    case TapKind::Output:
      std::memcpy(a, executor.tensor(op.outputs[0]), count * sizeof(float));
      for (size_t i = 0; i < count; ++i) da[i] = dy_total(i);
      break;
    case TapKind::BeforeResidual:
      executor.run_op(index, {.skip_residual = true, .output = a});
      for (size_t i = 0; i < count; ++i) da[i] = dy_total(i);
      break;
    case TapKind::BeforeActivation:
      executor.run_op(index, {.skip_activation = true, .skip_residual = true, .output = a});
      for (size_t i = 0; i < count; ++i) da[i] = dy_total(i) * ops::activation_derivative(a[i], act, op.act_max);
      break;
    case TapKind::BeforeAffine: {
      // a = the conv without its bias; the folded BatchNorm made z = a + bias = scale * keras_conv + const.
      executor.run_op(index, {.skip_activation = true, .skip_residual = true, .skip_bias = true, .output = a});
      const float* bias = executor.weight(op.bias);
      const float* scale = executor.weight(tap.scale);
      const float* shift = executor.weight(tap.shift);
      for (size_t i = 0; i < count; ++i) z[i] = dy_total(i);
      for (size_t p = 0; p < count; p += c) {
        for (uint32_t k = 0; k < c; ++k) da[p + k] = a[p + k] + (bias ? bias[k] : 0.0f);
      }
      ops::activation_backward(da, z, da, count, act, op.act_max);  // da = dy * act'(a + bias)
      for (size_t p = 0; p < count; p += c) {
        for (uint32_t k = 0; k < c; ++k) {
          da[p + k] *= scale[k];
          a[p + k] = a[p + k] / scale[k] + (shift ? shift[k] : 0.0f);
        }
      }
      break;
    }
    case TapKind::ScaledInput: {
      // The target is the conv's gated input x * gate; back through the conv itself.
      const uint32_t cin = g.input.c;
      const float* x = executor.tensor(op.inputs[0]);
      const float* gate = executor.tensor(op.inputs[2]);
      for (size_t i = 0; i < g.input.elements(); ++i) a[i] = x[i] * gate[i % cin];
      executor.run_op(index, {.skip_activation = true, .skip_residual = true, .output = z});
      for (size_t i = 0; i < count; ++i) z[i] = dy_total(i) * ops::activation_derivative(z[i], act, op.act_max);
      std::fill_n(da, g.input.elements(), 0.0f);
      const ops::ConvArgs args = conv_args(model_.file(), op, g);
      ops::conv2d_backward_input(args, z, da, executor.extra(step.scratch), executor.pool());
      break;
    }
    case TapKind::SecondOutput:
      break;  // refused when planning
  }
}

}  // namespace effcam::engine
