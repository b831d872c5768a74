// A Session runs one Model: it plans every buffer once for the model's input size and then serves any number of
// images with no further allocation in the forward pass (flat memory). Sessions are independent, so a server can
// run one per worker over a single shared Model.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/memory_plan.h"
#include "engine/model.h"
#include "base/thread_pool.h"

namespace effcam::engine {

struct SessionOptions {
  uint32_t threads = 1;
  // Keras layers whose outputs stay readable after run() (parity checks). Planned up front.
  std::vector<std::string> probes;
  // The Keras layer explain() differentiates to (bare or "base/layer"); empty = no explanations. The backward pass
  // is planned with the forward one, in the same arena.
  std::string cam_layer;
};

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

class Session {
 public:
  // Plans the arena and allocates it. Throws effcam::Error for an unknown probe layer, or when EFFCAM_DISPATCH
  // names a kernel path that is unknown or that the CPU lacks.
  Session(const Model& model, const SessionOptions& options);

  const Model& model() const { return model_; }
  const MemoryPlan& plan() const { return plan_; }

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
  Explanation explain(uint32_t class_index, CamScore score);
  // The arena the forward pass alone needs (plan().arena_bytes includes the explanation's buffers).
  uint64_t forward_arena_bytes() const { return forward_arena_bytes_; }

 private:
  // How to run an op differently from the forward pass: to recover a fused Keras layer's own output.
  struct Variant {
    bool linear = false;         // skip the activation
    bool skip_residual = false;  // skip the residual add
    float* output = nullptr;     // write here instead of the op's tensor
    bool skip_bias = false;      // skip the (folded) bias
  };
  struct Probe {
    std::string layer;
    const format::Tap* tap;
    Shape shape;
    std::vector<float> values;  // empty for taps read in place from the arena
  };

  // The explanation's schedule: the ops between the target and the output, in backward order, and the arena
  // buffers of its gradients and recomputed pre-activations (indices into plan_.extra_offset).
  struct CamPlan {
    const format::Tap* tap = nullptr;
    std::string layer;
    std::vector<uint32_t> ops;            // backward order: the output's op first, the target's op last
    std::vector<uint32_t> gradient;       // per tensor: extra buffer of its gradient, or kNone
    std::vector<std::vector<uint32_t>> zero_at;  // per backward step: gradient buffers to clear first
    std::vector<uint32_t> pre_activation; // per backward step: buffer for the op's recomputed pre-activation
    std::vector<uint32_t> input_gradient; // per backward step: scratch for d(x * gate), or kNone
    uint32_t hidden = format::kNone;      // squeeze-excite hidden pre-activation + gradient (2 x the widest)
    uint32_t activations = format::kNone, gradients = format::kNone;
    std::vector<uint64_t> extra_floats;   // size of each extra buffer
  };
  void plan_explanation(const std::string& layer, PlanRequest& request);
  float* extra(uint32_t index) const;
  void backward_op(uint32_t step, uint32_t class_index, CamScore score, float& score_value);
  void backward_target(uint32_t step);

  float* tensor(uint32_t id) const;
  const float* weight(uint32_t id) const;
  void run_ops(double* op_ms);  // the forward pass and the probes; times each op when op_ms is not null
  void run_op(uint32_t index, const Variant& variant);
  void compute_probe(Probe& probe);
  const Probe& find_probe(std::string_view layer) const;

  const Model& model_;
  ThreadPool pool_;
  MemoryPlan plan_;
  std::unique_ptr<float[], void (*)(void*)> arena_;
  std::vector<float> logits_;
  std::vector<Probe> probes_;
  CamPlan cam_;
  uint64_t forward_arena_bytes_ = 0;
};

}  // namespace effcam::engine
