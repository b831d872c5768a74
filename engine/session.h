// A Session runs one Model: it plans every buffer once for the model's input size and then serves any number of
// images with no further allocation in the forward pass (flat memory). Sessions are independent, so a server can
// run one per worker over a single shared Model. A Session composes the executor (engine/executor.h: the forward
// pass in the arena), the probes it recovers after each run, and the explainer (engine/explainer.h: Grad-CAM's
// backward pass), all planned in one arena.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/executor.h"
#include "engine/explainer.h"
#include "engine/memory_plan.h"
#include "engine/model.h"

namespace effcam::engine {

struct SessionOptions {
  uint32_t threads = 1;
  // Keras layers whose outputs stay readable after run() (parity checks). Planned up front.
  std::vector<std::string> probes;
  // The Keras layer explain() differentiates to (bare or "base/layer"); empty = no explanations. The backward pass
  // is planned with the forward one, in the same arena.
  std::string cam_layer;
  // The most bytes the arena may take (0: the explainer's default, twice the forward pass's). The explainer
  // recomputes instead of keeping to fit it; a session that cannot fit fails with the smallest arena it found.
  uint64_t memory_budget_bytes = 0;
};

class Session {
 public:
  // Plans the arena and allocates it. Throws effcam::Error for an unknown probe layer, or when EFFCAM_DISPATCH
  // names a kernel path that is unknown or that the CPU lacks.
  Session(const Model& model, const SessionOptions& options);

  const Model& model() const { return model_; }
  const MemoryPlan& plan() const { return executor_.plan(); }

  // 8-bit pixels, HWC at exactly the model's input size and channel count, through the model's preprocessing into
  // the input tensor.
  void set_input(std::span<const uint8_t> hwc);
  // Raw 0..255 values, HWC at exactly the model's input size.
  void set_input_pixels(std::span<const float> hwc);

  // The forward pass. It consumes its input (the plan reuses the input tensor's memory once it is read): call
  // set_input / set_input_pixels before every run.
  void run();
  // run() that also records each op's wall time in milliseconds (op_ms[i] for op i; the size must be the op
  // count), for benchmarks. Probe computations are not timed.
  void run_profiled(std::span<double> op_ms);

  std::span<const float> probabilities() const;  // the model output
  std::span<const float> logits() const;         // pre-softmax, empty when the model does not end in softmax
  // A probe's values (HWC) after run(); throws effcam::Error when `layer` was not requested.
  std::span<const float> probe(std::string_view layer) const;
  Shape probe_shape(std::string_view layer) const;

  // After run(): backward from the score of `class_index` through only the ops between the CAM layer and the output
  // (no weight gradients). Throws effcam::Error when the session has no cam_layer or the class is out of range.
  // step_ms, when given, gets each of explain_steps()' wall time in milliseconds (benchmarks).
  Explanation explain(uint32_t class_index, CamScore score, std::span<double> step_ms = {});
  // The explanation's timeline: its recomputations and backward steps in order; empty without a cam_layer.
  std::vector<ExplainStep> explain_steps() const;
  // The arena the forward pass alone needs (plan().arena_bytes includes the explanation's buffers).
  uint64_t forward_arena_bytes() const { return forward_arena_bytes_; }
  // The explanation's plan (segments, checkpoints, recomputation, floor); nullptr without a cam_layer.
  const ExplainPlan* explain_plan() const { return explainer_ ? &explainer_->plan() : nullptr; }

 private:
  struct Probe {
    std::string layer;
    const format::Tap* tap;
    Shape shape;
    std::vector<float> values;  // empty for taps read in place from the arena
  };
  void compute_probe(Probe& probe);
  const Probe& find_probe(std::string_view layer) const;

  const Model& model_;
  Executor executor_;
  std::vector<Probe> probes_;
  std::optional<Explainer> explainer_;  // when the options name a CAM layer
  uint64_t forward_arena_bytes_ = 0;
};

}  // namespace effcam::engine
