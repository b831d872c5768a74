// The static memory plan: every activation tensor and per-op scratch gets an offset in one arena before anything
// runs. Lifetimes come from the execution order; buffers are placed greedy-by-size with best fit (TensorFlow
// Lite's ArenaPlanner, Pisarchyk & Lee 2020), 64-byte aligned; some ops write in place over an input that dies
// at that op (activations, residual adds, element-wise ops) and reshapes are views.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/graph.h"

namespace effcam {

inline constexpr uint64_t kArenaAlignment = 64;

struct PlanRequest {
  uint32_t threads = 1;                      // per-thread scratch is sized for this many workers
  std::vector<uint32_t> keep_alive;          // tensors that must survive to the end of the run (probes, CAM)
};

struct MemoryPlan {
  std::vector<uint64_t> tensor_offset;  // byte offset of each tensor in the arena (kUnplanned if unused)
  std::vector<uint64_t> scratch_offset; // per op: byte offset of its scratch (valid when scratch_bytes > 0)
  std::vector<uint64_t> scratch_bytes;
  std::vector<uint8_t> in_place;        // per op: 1 when outputs[0] shares its buffer with an input
  uint64_t arena_bytes = 0;             // the arena size the plan needs
  uint64_t lower_bound_bytes = 0;       // the largest sum of simultaneously live buffers (no planner can do less)
  static constexpr uint64_t kUnplanned = ~uint64_t{0};
};

// Scratch each op needs besides its tensors (floats), for `threads` workers.
uint64_t op_scratch_floats(const format::Op& op, const OpGeometry& geometry, uint32_t threads);

MemoryPlan plan_memory(std::span<const format::Op> ops, const Graph& graph, const PlanRequest& request);

}  // namespace effcam
