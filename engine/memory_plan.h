// The static memory plan: every activation tensor and per-op scratch gets an offset in one arena before anything
// runs. Lifetimes come from the execution order; buffers are placed greedy-by-size with best fit (TensorFlow
// Lite's ArenaPlanner, Pisarchyk & Lee 2020), 64-byte aligned; some ops write in place over an input that dies
// at that op (activations, residual adds, element-wise ops) and reshapes are views. Each op kind's scratch and
// in-place rule come from its row of the op table (engine/op_table.h).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "format/graph.h"

namespace effcam::engine {

inline constexpr uint64_t kArenaAlignment = 64;

// A buffer placed besides the tensors, live during steps [first, last] of the run.
struct ExtraBuffer {
  uint64_t bytes = 0;
  uint32_t first = 0, last = 0;
};

// Steps 0 .. ops.size()-1 are the forward ops. A backward pass (Grad-CAM) continues the same timeline after them,
// up to final_step: the forward tensors it reads are kept alive through the step that reads them (`extend`), and
// its gradient and scratch buffers are `extra` buffers, all placed in the one arena.
struct PlanRequest {
  uint32_t threads = 1;                      // per-thread scratch is sized for this many workers
  std::vector<uint32_t> keep_alive;          // tensors that must survive to the end of the run (probes)
  uint32_t final_step = 0;                   // the run's last step; 0 = the forward pass's end
  std::vector<std::pair<uint32_t, uint32_t>> extend;  // (tensor, step): alive at least through that step
  std::vector<std::pair<uint32_t, uint32_t>> extend_scratch;  // (op, step): its scratch too (the op is rerun)
  std::vector<ExtraBuffer> extra;
  // (op, extra buffer): the forward pass also writes the op's pre-activation there (kept for a backward step).
  std::vector<std::pair<uint32_t, uint32_t>> forward_pre_activations;
};

struct MemoryPlan {
  std::vector<uint64_t> tensor_offset;  // byte offset of each tensor in the arena (kUnplanned if unused)
  std::vector<uint64_t> scratch_offset; // per op: byte offset of its scratch (valid when scratch_bytes > 0)
  std::vector<uint64_t> scratch_bytes;
  std::vector<uint8_t> in_place;        // per op: 1 when outputs[0] shares its buffer with an input
  std::vector<uint64_t> extra_offset;   // per PlanRequest::extra buffer
  uint64_t arena_bytes = 0;             // the arena size the plan needs
  uint64_t lower_bound_bytes = 0;       // the largest sum of simultaneously live buffers (no planner can do less)
  static constexpr uint64_t kUnplanned = ~uint64_t{0};
};

MemoryPlan plan_memory(std::span<const format::Op> ops, const Graph& graph, const PlanRequest& request);
// plan_memory(...).lower_bound_bytes without placing anything: a cheap way to compare requests.
uint64_t plan_lower_bound(std::span<const format::Op> ops, const Graph& graph, const PlanRequest& request);

}  // namespace effcam::engine
