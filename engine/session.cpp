#include "engine/session.h"

#include "effcam/error.hpp"
#include "ops/kernels.h"

namespace effcam::engine {

using format::kNone;
using format::TapKind;

namespace {

// The tensors a tap needs after the run: its own tensor, or the op's inputs when the layer is recomputed.
std::vector<uint32_t> tensors_for(const format::Tap& tap, const format::Op& op) {
  switch (tap.kind) {
    case TapKind::Output:
      return {op.outputs[0]};
    case TapKind::SecondOutput:
      return {op.outputs[1]};
    default: {
      std::vector<uint32_t> keep;
      for (uint32_t t : op.inputs) {
        if (t != kNone) keep.push_back(t);
      }
      return keep;
    }
  }
}

}  // namespace

Session::Session(const Model& model, const SessionOptions& options)
    : model_(model), executor_(model, options.threads) {
  PlanRequest request;
  request.threads = executor_.threads();
  for (const std::string& layer : options.probes) {
    const format::Tap* tap = model_.find_tap(layer);
    if (!tap) throw Error("layer '" + layer + "' is not in the model, or was folded away (e.g. into the preprocessing)");
    const format::Op& op = model_.file().ops()[tap->op];
    for (uint32_t t : tensors_for(*tap, op)) request.keep_alive.push_back(t);
    // A recomputed tap reruns its op after the run: with its scratch, kept to the end too.
    request.extend_scratch.push_back({tap->op, ~uint32_t{0}});
    Probe probe{layer, tap, model_.tap_shape(*tap), {}};
    if (tap->kind != TapKind::Output && tap->kind != TapKind::SecondOutput) probe.values.resize(probe.shape.elements());
    probes_.push_back(std::move(probe));
  }
  const uint64_t budget = options.memory_budget_bytes;
  if (!options.cam_layer.empty()) explainer_.emplace(model_, options.cam_layer, request, budget);
  // The arena is reserved, not yet touched, when a forward-only plan turns out over the budget.
  executor_.allocate(request);
  forward_arena_bytes_ = explainer_ ? explainer_->plan().forward_arena_bytes : executor_.plan().arena_bytes;
  if (!explainer_ && budget > 0 && forward_arena_bytes_ > budget) {
    throw Error("the forward pass needs an arena of " + std::to_string(forward_arena_bytes_) +
                " bytes, over the memory budget of " + std::to_string(budget) + " bytes");
  }
}

void Session::set_input(std::span<const uint8_t> hwc) { executor_.set_input(hwc); }

void Session::set_input_pixels(std::span<const float> hwc) { executor_.set_input_pixels(hwc); }

void Session::run() {
  executor_.run(nullptr);
  for (Probe& probe : probes_) compute_probe(probe);
}

void Session::run_profiled(std::span<double> op_ms) {
  if (op_ms.size() != model_.file().ops().size()) {
    throw Error("run_profiled needs one time slot per op (" + std::to_string(model_.file().ops().size()) +
                "), got " + std::to_string(op_ms.size()));
  }
  executor_.run(op_ms.data());
  for (Probe& probe : probes_) compute_probe(probe);
}

Explanation Session::explain(uint32_t class_index, CamScore score, std::span<double> step_ms) {
  if (!explainer_) throw Error("this session was made without a Grad-CAM layer");
  return explainer_->explain(executor_, class_index, score, step_ms);
}

std::vector<ExplainStep> Session::explain_steps() const {
  return explainer_ ? explainer_->steps() : std::vector<ExplainStep>{};
}

void Session::compute_probe(Probe& probe) {
  const format::Tap& tap = *probe.tap;
  if (probe.values.empty()) return;  // read in place
  const format::Op& op = model_.file().ops()[tap.op];
  float* out = probe.values.data();
  switch (tap.kind) {
    case TapKind::BeforeResidual:
      executor_.run_op(tap.op, {.skip_residual = true, .output = out});
      break;
    case TapKind::BeforeActivation:
      executor_.run_op(tap.op, {.skip_activation = true, .skip_residual = true, .output = out});
      break;
    case TapKind::BeforeAffine: {
      executor_.run_op(tap.op, {.skip_activation = true, .skip_residual = true, .skip_bias = true, .output = out});
      const float* scale = executor_.weight(tap.scale);
      const float* shift = executor_.weight(tap.shift);
      const uint32_t c = probe.shape.c;
      for (size_t i = 0; i < probe.values.size(); ++i) {
        const size_t k = i % c;
        out[i] = out[i] / scale[k] + (shift ? shift[k] : 0.0f);
      }
      break;
    }
    case TapKind::ScaledInput: {
      ops::ElementwiseArgs a;
      a.a = executor_.tensor(op.inputs[0]);
      a.b = executor_.tensor(op.inputs[2]);
      a.y = out;
      a.pixels = probe.shape.h * probe.shape.w;
      a.channels = probe.shape.c;
      a.b_broadcast = true;
      ops::multiply(a, 0, a.pixels);
      break;
    }
    default:
      break;
  }
}

const Session::Probe& Session::find_probe(std::string_view layer) const {
  for (const Probe& probe : probes_) {
    if (probe.layer == layer) return probe;
  }
  throw Error("layer '" + std::string(layer) + "' was not requested as a probe when the session was made");
}

std::span<const float> Session::probe(std::string_view layer) const {
  const Probe& probe = find_probe(layer);
  if (!probe.values.empty()) return probe.values;
  const format::Op& op = model_.file().ops()[probe.tap->op];
  const uint32_t t = probe.tap->kind == TapKind::SecondOutput ? op.outputs[1] : op.outputs[0];
  return {executor_.tensor(t), probe.shape.elements()};
}

Shape Session::probe_shape(std::string_view layer) const { return find_probe(layer).shape; }

std::span<const float> Session::probabilities() const {
  return {executor_.tensor(model_.graph().output), model_.classes()};
}

std::span<const float> Session::logits() const { return executor_.logits(); }

}  // namespace effcam::engine
