#include "engine/executor.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>

#include "effcam/error.hpp"
#include "engine/op_table.h"
#include "ops/kernels.h"

namespace effcam::engine {

using format::kNone;

namespace {

float* allocate_arena(uint64_t bytes) {
  const uint64_t size = std::max<uint64_t>(kArenaAlignment, bytes);
  void* memory = std::aligned_alloc(kArenaAlignment, size);
  if (!memory) throw Error("cannot allocate the " + std::to_string(size) + "-byte activation arena");
  return static_cast<float*>(memory);
}

}  // namespace

Executor::Executor(const Model& model, uint32_t threads) : model_(model), pool_(threads), arena_(nullptr, std::free) {
  ops::dispatch_name();
}

void Executor::allocate(const PlanRequest& request) {
  plan_ = plan_memory(model_.file().ops(), model_.graph(), request);
  arena_.reset(allocate_arena(plan_.arena_bytes));
  forward_pre_activation_.assign(model_.file().ops().size(), kNone);
  for (const auto& [op, buffer] : request.forward_pre_activations) forward_pre_activation_[op] = buffer;
  if (model_.has_logits()) logits_.resize(model_.classes());
}

float* Executor::at(uint64_t offset) const {
  return reinterpret_cast<float*>(reinterpret_cast<char*>(arena_.get()) + offset);
}

float* Executor::tensor(uint32_t id) const { return at(plan_.tensor_offset[id]); }

float* Executor::extra(uint32_t index) const { return at(plan_.extra_offset[index]); }

const float* Executor::weight(uint32_t id) const {
  return id == kNone ? nullptr : static_cast<const float*>(model_.file().weight_data(id));
}

void Executor::set_input(std::span<const uint8_t> hwc) {
  const format::Preprocess& pre = model_.file().preprocess();
  const size_t expected = size_t{pre.width} * pre.height * pre.channels;
  if (hwc.size() != expected) {
    throw Error("input has " + std::to_string(hwc.size()) + " pixel values, the model takes " +
                std::to_string(expected));
  }
  float* x = tensor(model_.graph().input);
  const uint32_t c = pre.channels;
  for (size_t i = 0; i < expected; i += c) {
    for (uint32_t k = 0; k < c; ++k) x[i + k] = hwc[i + k] * pre.scale[k] + pre.offset[k];
  }
}

void Executor::set_input_pixels(std::span<const float> hwc) {
  const format::Preprocess& pre = model_.file().preprocess();
  const size_t expected = size_t{pre.width} * pre.height * pre.channels;
  if (hwc.size() != expected) {
    throw Error("input has " + std::to_string(hwc.size()) + " values, the model takes " + std::to_string(expected));
  }
  float* x = tensor(model_.graph().input);
  for (size_t i = 0; i < expected; ++i) {
    const uint32_t k = static_cast<uint32_t>(i % pre.channels);
    x[i] = hwc[i] * pre.scale[k] + pre.offset[k];
  }
}

void Executor::run(double* op_ms) {
  using Clock = std::chrono::steady_clock;
  const size_t count = model_.file().ops().size();
  for (uint32_t i = 0; i < count; ++i) {
    const Clock::time_point start = op_ms ? Clock::now() : Clock::time_point{};
    Recompute keeping;
    if (forward_pre_activation_[i] != kNone) keeping.pre_activation = extra(forward_pre_activation_[i]);
    run_op(i, keeping);
    if (op_ms) op_ms[i] = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  }
}

void Executor::activate(uint32_t index, const float* z, float* y) {
  const format::Op& op = model_.file().ops()[index];
  const Shape& shape = model_.graph().ops[index].output;
  const size_t row = size_t{shape.w} * shape.c;
  pool_.parallel_for(shape.h, [&](uint32_t b, uint32_t e, uint32_t) {
    ops::activate(z, y, b * row, e * row, output_activation(op), op.act_max);
  });
}

void Executor::run_op(uint32_t index, const Recompute& recompute) {
  const format::Op& op = model_.file().ops()[index];
  const OpGeometry& g = model_.graph().ops[index];
  const OpDefinition& definition = op_definition(op.kind);
  const bool softmax = op.activation == format::Activation::Softmax;
  if (recompute.output_mean_gradient && !(definition.mean_output && recompute.output_gradient)) {
    throw Error("op " + std::to_string(index) + ": a means' gradient needs an op with means and an output gradient");
  }
  if (recompute.pre_activation && !definition.backward_epilogues) {
    // The kernels cannot write it beside the output: run into it alone, then the activation over it through the
    // same SIMD function their epilogue applies (OpDefinition::activation_in_epilogue), so the output has the same
    // bits.
    Recompute linear = recompute;
    linear.pre_activation = nullptr;
    linear.skip_activation = true;
    linear.output = recompute.pre_activation;
    run_op(index, linear);
    float* y = recompute.output ? recompute.output : tensor(op.outputs[0]);
    activate(index, recompute.pre_activation, y);
    return;
  }
  ForwardCall call{model_.file(), op, g, pool_, {}, {}, {}, nullptr, nullptr, format::Activation::Linear,
                   recompute.skip_activation, recompute.output_gradient, recompute.pre_activation,
                   recompute.output_mean_gradient};
  for (uint32_t slot = 0; slot < format::kMaxOpInputs; ++slot) {
    const uint32_t t = op.inputs[slot];
    if (t == kNone) continue;
    call.input[slot] = recompute.input[slot] ? recompute.input[slot] : tensor(t);
    call.input_shape[slot] = model_.graph().tensors[t];
  }
  if (recompute.skip_residual && definition.residual_input) call.input[1] = nullptr;
  float* y = recompute.output ? recompute.output : tensor(op.outputs[0]);
  call.output[0] = y;
  if (op.outputs[1] != kNone) call.output[1] = recompute.output ? recompute.second_output : tensor(op.outputs[1]);
  if (plan_.scratch_bytes[index] > 0) call.scratch = recompute.scratch ? recompute.scratch : at(plan_.scratch_offset[index]);
  call.bias = recompute.skip_bias ? nullptr : weight(op.bias);
  call.activation = recompute.skip_activation || softmax ? format::Activation::Linear : op.activation;
  definition.forward(call);

  if (softmax && !recompute.skip_activation) {
    if (op.outputs[0] == model_.graph().output && !recompute.output) std::copy(y, y + g.output.c, logits_.begin());
    ops::softmax(y, g.output.elements());
  }
}

}  // namespace effcam::engine
