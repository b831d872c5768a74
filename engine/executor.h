// The executor: the forward interpreter of one Model. It owns the thread pool and the arena of one memory plan, and
// runs ops through the op table (engine/op_table.h): the whole forward pass, or one op again with a Recompute (a
// fused Keras layer's own output, an op's pre-activation for the backward pass). It keeps no other state, so the
// Session's probes and the Explainer's backward pass are clients of it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/thread_pool.h"
#include "engine/memory_plan.h"
#include "engine/model.h"

namespace effcam::engine {

// How one forward call differs from the plain forward pass. Buffers left nullptr are the op's planned ones.
struct Recompute {
  bool skip_activation = false;  // no activation (a squeeze-excite's gate activation, a final softmax) applied
  bool skip_residual = false;    // no fused residual add
  bool skip_bias = false;        // no (folded) bias added
  float* output = nullptr;       // write outputs[0] here instead of its tensor; outputs[1] then goes to second_output
  float* second_output = nullptr;  // with output: outputs[1] here (nullptr: not computed)
  const float* input[format::kMaxOpInputs] = {};  // read an input from here instead of its tensor
  float* scratch = nullptr;      // the op's scratch here instead of its planned one (a rerun while it is not live)
  // With output, a backward step's rerun (OpDefinition::backward_epilogues; no residual or outputs[1]): output =
  // output_gradient * act'(pre-activation), d score / d pre-activation. output may be output_gradient.
  const float* output_gradient = nullptr;
  // With output_gradient, of an op with OpDefinition::mean_output: d score / d outputs[1] (the per-channel means),
  // whose share of each pixel is added to output_gradient's in the same pass.
  const float* output_mean_gradient = nullptr;
  // Also write the pre-activation here (no residual or outputs[1]; OpDefinition::activation_in_epilogue): a forward
  // step or a recomputation keeping it for the op's backward step. The output has the same bits either way.
  float* pre_activation = nullptr;
};

class Executor {
 public:
  // Starts the pool. Resolves the kernels' dispatch path on the caller's thread first: an EFFCAM_DISPATCH that is
  // unknown or that this CPU lacks fails here as one effcam::Error, not later inside a worker thread (which would
  // terminate the process).
  Executor(const Model& model, uint32_t threads);

  uint32_t threads() const { return pool_.size(); }
  ThreadPool& pool() { return pool_; }
  // Plans the arena for `request` (made for threads() workers) and allocates it: once, before anything runs.
  void allocate(const PlanRequest& request);
  const MemoryPlan& plan() const { return plan_; }

  // 8-bit pixels (or raw 0..255 values), HWC at exactly the model's input size, through the model's preprocessing
  // into the input tensor. Throws effcam::Error for a wrong size.
  void set_input(std::span<const uint8_t> hwc);
  void set_input_pixels(std::span<const float> hwc);

  // Every op in order (with the pre-activations the request keeps); op_ms[i] gets op i's wall time in milliseconds
  // when op_ms is not null.
  void run(double* op_ms);
  void run_op(uint32_t index, const Recompute& recompute = {});
  // y = op `index`'s activation over its pre-activation z (both its output's shape), split over the pool by rows like
  // its kernels: an output from its kept pre-activation, with the bits of their epilogue
  // (OpDefinition::activation_in_epilogue).
  void activate(uint32_t index, const float* z, float* y);

  // Arena views: a tensor, a PlanRequest::extra buffer; a weight vector of the file (nullptr for kNone).
  float* tensor(uint32_t id) const;
  float* extra(uint32_t index) const;
  const float* weight(uint32_t id) const;
  // Pre-softmax logits of the last run, empty when the model does not end in softmax.
  std::span<const float> logits() const { return logits_; }

 private:
  float* at(uint64_t offset) const;

  const Model& model_;
  ThreadPool pool_;
  MemoryPlan plan_;
  std::unique_ptr<float[], void (*)(void*)> arena_;
  std::vector<uint32_t> forward_pre_activation_;  // per op: the extra buffer its forward step also writes, or kNone
  std::vector<float> logits_;
};

}  // namespace effcam::engine
