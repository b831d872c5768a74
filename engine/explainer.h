// The explainer: Grad-CAM's backward pass, from one class score down to the target layer, through only the ops
// between them (no weight gradients). Its buffers are planned in the same arena as the forward tensors, on one
// timeline after the forward ops (engine/memory_plan.h), and it fits a memory budget by recomputing instead of
// keeping (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost"): the ops from the target to the output
// are cut into segments; the forward pass keeps only the tensors a segment reads from before its start (its
// checkpoints), and the segment's own tensors are recomputed, with the same kernels in the same order (the same
// values to the bit), just before its backward steps. Each backward step of an op with an activation reruns it for
// its pre-activation (conv and depthwise kernels turn the output's gradient into the pre-activation's in their
// epilogue, in place, with no pre-activation buffer); the op's gradient comes from its row of the op table
// (engine/op_table.h; the kernels are in ops/backward.h).
//
// The schedule is data (Action, one per timeline step: a recomputation or a backward step, with the buffers it
// reads and writes). The plan is chosen before anything runs, among those it tries (segmentations: none, greedy
// families by segment size in bytes and in multiply-adds, cut between blocks, and the finest of those with its
// first segments merged; each with reruns, or keeping the pre-activations that recomputations make): the least work
// done again (multiply-adds recomputed and rerun) whose arena fits the budget, by default twice the forward pass's
// arena. Then, while the arena still fits, more pre-activations are kept, most work saved per byte first: by the
// forward step (the executor writes them beside its outputs; the op then needs no rerun, and its recomputation is
// the activation alone) or by a recomputation. Every plan recomputes each op after the target at most once. One
// backward mode holds for the layer (Winograd's gradients unless they lift the floor by more than 10%), whatever the
// budget and threads.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/executor.h"
#include "engine/memory_plan.h"
#include "engine/model.h"
#include "engine/op_table.h"

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
  double seconds = 0;            // the backward pass's wall time, recomputation included
  double recompute_seconds = 0;  // of which recomputing the forward tensors it did not keep
};

// The chosen plan's figures (--stats, JSON).
struct ExplainPlan {
  uint64_t arena_bytes = 0;             // the whole arena: the forward pass and the explanation
  uint64_t forward_arena_bytes = 0;     // the forward pass's alone
  uint64_t floor_bytes = 0;             // the smallest arena of the segmentations tried (what a budget can reach)
  uint64_t lower_bound_bytes = 0;       // the largest working set of one step: no schedule holds less
  uint32_t segments = 0;
  uint32_t checkpoints = 0;             // forward tensors kept for the backward pass
  uint32_t recomputed_ops = 0;
  uint64_t recomputed_multiply_adds = 0;
  uint64_t rerun_multiply_adds = 0;     // backward steps rerunning their op for its pre-activation
  // Backward steps reading their op's pre-activation kept instead: by the op's forward step, by its recomputation.
  uint32_t pre_activations_kept_by_forward = 0, pre_activations_kept_by_recomputation = 0;
  uint64_t forward_multiply_adds = 0;   // of the whole forward pass, for scale
};

// One step of an explanation's timeline after the forward pass: an op's recomputation or its backward step.
struct ExplainStep {
  uint32_t op = 0;
  bool backward = false;
};

class Explainer {
 public:
  // Finds `layer`'s tap and schedules the backward pass inside `budget_bytes` of arena (0: twice the forward pass's,
  // or the smallest arena found when that is more): appends to
  // `request` the forward tensors it keeps, its buffers and the run's last step. Throws effcam::Error for a layer
  // that is unknown, not a spatial map or not on the way to the output, and when no segmentation fits the budget
  // (naming the smallest arena it found).
  Explainer(const Model& model, const std::string& layer, PlanRequest& request, uint64_t budget_bytes);

  // After the executor's forward run (its arena allocated from that request): the backward pass from the score of
  // `class_index`; step_ms[k], when given, gets the wall time in milliseconds of steps()[k] (benchmarks). Throws
  // effcam::Error when the class is out of range or step_ms is neither empty nor one slot per step.
  Explanation explain(Executor& executor, uint32_t class_index, CamScore score, std::span<double> step_ms = {}) const;

  const ExplainPlan& plan() const { return plan_; }
  // The timeline's steps in order.
  std::vector<ExplainStep> steps() const;

 private:
  // One timeline step after the forward pass: an op's forward recomputed into its segment's buffers, or its
  // backward step. Buffers are PlanRequest::extra indices.
  struct Action {
    uint32_t op = format::kNone;
    bool backward = false;
    std::vector<uint32_t> clear;               // gradient buffers that first receive a share here: zeroed first
    // backward: the first share of inputs[0]'s gradient, written over its buffer by the op's kernels
    // (OpDefinition::backward_overwrites), and of the residual's (inputs[1]) copied into it: neither buffer cleared
    bool overwrite_input_gradient = false, copy_residual_gradient = false;
    // backward: the op's pre-activation (kNone when a gradient rerun needs none), turned into dz unless
    // dz_in_output_gradient
    uint32_t pre_activation = format::kNone;
    uint32_t scratch = format::kNone;          // backward: the op's own backward scratch (BackwardScratch::step_floats)
    uint32_t forward_scratch = format::kNone;  // the scratch of the op's forward call (OpDefinition::scratch_floats)
    uint32_t output = format::kNone, second_output = format::kNone;  // a recomputation's outputs (kNone: unread)
    // backward: pre_activation was kept by the op's forward step or its recomputation (written beside the output),
    // so the step does not rerun the op
    bool pre_activation_kept = false;
    // a recomputation: the activation over the pre-activation its forward step kept (no rerun)
    bool activation_only = false;
    // backward: dz is written over the gradient of the op's output, which dies at this step (no buffer of its own)
    bool dz_in_output_gradient = false;
  };

  // Where a backward step finds its op's pre-activation: by rerunning the op there, or kept by the op's recomputation
  // or by its forward step (which then spares the recomputation too: the activation over it gives the output).
  enum class PreActivation : uint8_t { Rerun, Recomputed, Forward };

  // The segmentations tried (segment starts, ascending, the first the target): every path op its own segment, then
  // greedy families by segment size (bytes made, multiply-adds), cut between blocks, and the finest of those with
  // its first segments merged.
  std::vector<std::vector<uint32_t>> segmentations() const;
  // Builds the schedule of one segmentation (segment starts, ascending, the first the target) into `request`, each
  // op's pre-activation from where `pre_activations` says (per op; Recomputed holds only if the op is recomputed,
  // Forward and Recomputed only for ops that splits_activation).
  void schedule(const std::vector<uint32_t>& starts, const std::vector<PreActivation>& pre_activations,
                PlanRequest& request);
  uint32_t add_buffer(PlanRequest& request, uint64_t floats, uint32_t first, uint32_t last);
  // Whether an op's backward step reruns it for its pre-activation (the seed and every op with an activation).
  bool reruns_for_gradient(uint32_t op) const;
  // Whether the op's kernels serve the backward pass in their epilogue (OpDefinition::backward_epilogues): a rerun
  // writes dz itself, needing no pre-activation.
  bool backward_epilogues(uint32_t op) const;
  // Whether an op's output is its activation applied element-wise to its pre-activation by the kernels' shared
  // epilogue (no residual, no second output), so a forward step or a recomputation can write both with the same bits.
  bool splits_activation(uint32_t op) const;
  // Whether an op's backward step reads the forward value of inputs[slot] (its rerun's, or its backward's).
  bool backward_reads(uint32_t op, uint32_t slot) const;
  // Where a tensor's value is read during the backward pass: its recomputed buffer, else its forward tensor.
  const float* value(const Executor& executor, uint32_t tensor) const;
  Recompute rerun(const Executor& executor, const Action& action) const;
  float* gradient(const Executor& executor, uint32_t tensor) const;
  void recompute_op(Executor& executor, const Action& action) const;
  void backward_op(Executor& executor, const Action& action, uint32_t class_index, CamScore score,
                   float& score_value) const;
  void backward_target(Executor& executor, const Action& action) const;

  const Model& model_;
  const format::Tap* tap_ = nullptr;
  std::string layer_;
  std::vector<uint32_t> path_;             // the ops the score depends on through the target, ascending
  std::vector<Action> actions_;            // timeline order; action k runs at step ops + k
  std::vector<uint32_t> gradient_;         // per tensor: the buffer of d score / d tensor, or kNone
  std::vector<uint32_t> recomputed_;       // per tensor: its recomputed buffer, or kNone (read from the forward pass)
  std::vector<PreActivation> pre_activations_;  // per op: where its backward step finds it (schedule's)
  uint32_t shared_scratch_ = format::kNone;  // BackwardScratch::shared_floats of the widest op, all steps long
  uint32_t activations_ = format::kNone, gradients_ = format::kNone;  // the result
  std::vector<uint64_t> buffer_floats_;    // size of each PlanRequest::extra buffer (those of others: 0)
  ExplainPlan plan_;
  BackwardMode mode_;  // the backward kernels' mode, one for the layer whatever the budget
};

}  // namespace effcam::engine
