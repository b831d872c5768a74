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

#include "engine/image.h"
#include "engine/memory_plan.h"
#include "engine/model.h"
#include "engine/thread_pool.h"

namespace effcam {

struct SessionOptions {
  uint32_t threads = 1;
  // Keras layers whose outputs stay readable after run() (parity checks, explanations). Planned up front.
  std::vector<std::string> probes;
};

class Session {
 public:
  // Plans the arena and allocates it. Throws effcam::Error for an unknown probe layer.
  Session(const Model& model, const SessionOptions& options);

  const Model& model() const { return model_; }
  const MemoryPlan& plan() const { return plan_; }

  // Resizes the image to the model's input size the way PIL's Image.resize(size, LANCZOS) does, then applies
  // the model's preprocessing into the input tensor. The image must have the model's channel count.
  void set_input(const Image& image);
  // Raw 0..255 values, HWC at exactly the model's input size.
  void set_input_pixels(std::span<const float> hwc);

  void run();

  std::span<const float> probabilities() const;  // the model output
  std::span<const float> logits() const;         // pre-softmax, empty when the model does not end in softmax
  // A probe's values (HWC) after run(); throws effcam::Error when `layer` was not requested.
  std::span<const float> probe(std::string_view layer) const;
  Shape probe_shape(std::string_view layer) const;

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

  float* tensor(uint32_t id) const;
  const float* weight(uint32_t id) const;
  void run_op(uint32_t index, const Variant& variant);
  void compute_probe(Probe& probe);
  const Probe& find_probe(std::string_view layer) const;

  const Model& model_;
  ThreadPool pool_;
  MemoryPlan plan_;
  std::unique_ptr<float[], void (*)(void*)> arena_;
  std::vector<float> logits_;
  std::vector<Probe> probes_;
};

}  // namespace effcam
