// The per-op profile of a model: where the forward pass spends its time, per op and per op kind.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "format/format.h"
#include "engine/explainer.h"
#include "engine/graph.h"
#include "engine/model.h"

namespace effcam::bench {

struct OpProfile {
  uint32_t index = 0;
  format::OpKind kind{};
  std::string name;  // Keras layer of the op's main (first fused) layer
  Shape output;
  double ms = 0;  // median over the runs
  uint64_t multiply_adds = 0;
  double share = 0;  // of the sum over all ops
};

struct KindProfile {
  format::OpKind kind{};
  uint32_t count = 0;
  double ms = 0;  // sum of its ops' medians
  uint64_t multiply_adds = 0;
  double share = 0;
};

struct Profile {
  std::vector<OpProfile> ops;     // slowest first
  std::vector<KindProfile> kinds; // slowest first
  double total_ms = 0;            // sum of the ops' medians
};

// `op_ms` holds `runs` rows of one time per op, as Session::run_profiled writes them, run after run.
// Throws effcam::Error when its size is not runs x the model's op count or runs is 0.
Profile summarize_profile(const engine::Model& model, std::span<const double> op_ms, size_t runs);

// Where an explanation's time goes: its steps grouped by what they do (a recomputation or a backward step) and by
// their op's kind, a conv's 1x1 and larger kernels apart.
struct CamStepProfile {
  bool backward = false;
  std::string kind;    // "Conv 1x1", "Conv KxK", "Depthwise", ...
  uint32_t count = 0;  // steps of the group in one explanation
  double ms = 0;       // sum of its steps' medians
  double share = 0;    // of the sum over all steps
};

struct CamProfile {
  std::vector<CamStepProfile> groups;  // slowest first
  double total_ms = 0;                 // sum of the steps' medians
};

// `step_ms` holds `runs` rows of one time per step of `steps`, as Session::explain writes them, run after run.
// Throws effcam::Error when its size is not runs x the steps or runs is 0.
CamProfile summarize_cam_profile(const engine::Model& model, std::span<const engine::ExplainStep> steps,
                                 std::span<const double> step_ms, size_t runs);

// "Conv", "Depthwise", ... as in format::OpKind (the op table's names); "unknown" for others.
const char* op_kind_name(format::OpKind kind);

// Achieved GFLOP/s of `multiply_adds` (2 FLOP each) done in `ms` milliseconds; 0 when ms is not positive.
double gflops(uint64_t multiply_adds, double ms);

}  // namespace effcam::bench
