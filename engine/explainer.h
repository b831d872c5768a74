// The explainer: Grad-CAM's backward pass, from one class score down to the target layer, through only the ops
// between them (no weight gradients). It reuses the forward pass instead of keeping more of it: each op's
// pre-activation is recomputed from its kept inputs by the executor (a Recompute), and its gradients and scratch are
// planned in the same arena as the forward tensors, on one timeline after the forward ops (engine/memory_plan.h).
// Each op's gradient comes from its row of the op table (engine/op_table.h); the kernels are in ops/backward.h.
//
// The schedule is data (Step, one per op, in backward order, with the buffers it reads and writes), so a planner
// that checkpoints and recomputes segments can rewrite it without touching how one step runs.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/executor.h"
#include "engine/memory_plan.h"
#include "engine/model.h"

namespace effcam::engine {

// The score explain() differentiates: the class's pre-softmax logit (the Grad-CAM paper's and the Keras tutorial's
// choice) or its output probability (what the target users' app used).
enum class CamScore { Logit, Prob };

// A target layer's activations and d(score)/d(activations), HWC; valid until the next run() or explain().
struct Explanation {
  std::string layer;
  Shape shape;
  uint32_t class_index = 0;
  float score = 0;
  std::span<const float> activations;
  std::span<const float> gradients;
};

class Explainer {
 public:
  // Finds `layer`'s tap and schedules the backward pass: appends to `request` the forward tensors and scratch it
  // reads (kept alive through the step that reads them), its gradient and scratch buffers and the run's last step.
  // Throws effcam::Error for a layer that is unknown, not a spatial map or not on the way to the output.
  Explainer(const Model& model, const std::string& layer, PlanRequest& request);

  // After the executor's forward run (its arena allocated from that request): the backward pass from the score of
  // `class_index`. Throws effcam::Error when the class is out of range.
  Explanation explain(Executor& executor, uint32_t class_index, CamScore score) const;

 private:
  // One backward step: the op it differentiates and the arena buffers (PlanRequest::extra indices) it uses.
  struct Step {
    uint32_t op = format::kNone;
    std::vector<uint32_t> clear;            // gradient buffers that first receive a share in this step: zeroed first
    uint32_t pre_activation = format::kNone;  // the op's recomputed pre-activation, turned into its gradient
    uint32_t scratch = format::kNone;       // the op's own backward scratch (BackwardScratch::step_floats)
  };

  uint32_t add_buffer(PlanRequest& request, uint64_t floats, uint32_t first, uint32_t last);
  float* gradient(const Executor& executor, uint32_t tensor) const;
  void backward_op(Executor& executor, const Step& step, uint32_t class_index, CamScore score, float& score_value) const;
  void backward_target(Executor& executor, const Step& step) const;

  const Model& model_;
  const format::Tap* tap_ = nullptr;
  std::string layer_;
  std::vector<Step> steps_;                // backward order: the output's op first, the target's op last
  std::vector<uint32_t> gradient_;         // per tensor: the buffer of d score / d tensor, or kNone
  uint32_t shared_scratch_ = format::kNone;  // BackwardScratch::shared_floats of the widest op, all steps long
  uint32_t activations_ = format::kNone, gradients_ = format::kNone;  // the result
  std::vector<uint64_t> buffer_floats_;    // size of each PlanRequest::extra buffer (those of others: 0)
};

}  // namespace effcam::engine
