#include "engine/memory_plan.h"

#include <algorithm>
#include <numeric>

#include "engine/op_table.h"

namespace effcam::engine {

using format::kNone;

namespace {

uint64_t align_up(uint64_t bytes) { return (bytes + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment; }

// One arena buffer: a group of tensors sharing storage (in-place ops, views) or one op's scratch.
struct Buffer {
  uint64_t bytes = 0;
  uint32_t first = 0, last = 0;  // live during ops [first, last]
  uint64_t offset = 0;
};

class Planner {
 public:
  Planner(std::span<const format::Op> ops, const Graph& graph, const PlanRequest& request)
      : ops_(ops), graph_(graph), request_(request) {}

  // The plan; with place = false only its lower bound (no offsets), for comparing requests cheaply.
  MemoryPlan run(bool place);

 private:
  uint32_t group_of(uint32_t tensor) {
    while (group_[tensor] != tensor) tensor = group_[tensor] = group_[group_[tensor]];
    return tensor;
  }
  bool dies_at(uint32_t tensor, uint32_t op) { return buffer_of_group_[group_of(tensor)].last == op; }
  void join(uint32_t output, uint32_t input) {
    const uint32_t root = group_of(input);
    group_[output] = root;
    Buffer& b = buffer_of_group_[root];
    b.last = std::max(b.last, last_use_[output]);
  }
  void place(std::vector<Buffer*>& buffers);

  std::span<const format::Op> ops_;
  const Graph& graph_;
  const PlanRequest& request_;
  std::vector<uint32_t> group_;
  std::vector<uint32_t> last_use_;
  std::vector<Buffer> buffer_of_group_;  // indexed by group root tensor
};

MemoryPlan Planner::run(bool place_buffers) {
  const uint32_t tensor_count = static_cast<uint32_t>(graph_.tensors.size());
  const uint32_t end = std::max(static_cast<uint32_t>(ops_.size()), request_.final_step);  // the run is over
  std::vector<uint32_t> first_use(tensor_count, kNone);
  last_use_.assign(tensor_count, 0);
  first_use[graph_.input] = 0;
  for (uint32_t i = 0; i < ops_.size(); ++i) {
    for (uint32_t t : ops_[i].inputs) {
      if (t != kNone) last_use_[t] = std::max(last_use_[t], i);
    }
    for (uint32_t t : ops_[i].outputs) {
      if (t != kNone) {
        first_use[t] = i;
        last_use_[t] = std::max(last_use_[t], i);
      }
    }
  }
  last_use_[graph_.output] = end;
  for (uint32_t t : request_.keep_alive) last_use_[t] = end;
  for (const auto& [t, step] : request_.extend) last_use_[t] = std::max(last_use_[t], std::min(step, end));

  group_.resize(tensor_count);
  std::iota(group_.begin(), group_.end(), 0u);
  buffer_of_group_.assign(tensor_count, Buffer{});
  for (uint32_t t = 0; t < tensor_count; ++t) {
    if (first_use[t] == kNone) continue;
    buffer_of_group_[t] = {align_up(graph_.tensors[t].elements() * sizeof(float)), first_use[t], last_use_[t], 0};
  }

  MemoryPlan plan;
  plan.in_place.assign(ops_.size(), 0);
  for (uint32_t i = 0; i < ops_.size(); ++i) {
    const format::Op& op = ops_[i];
    const uint32_t y = op.outputs[0];
    auto can_reuse = [&](uint32_t input) {
      return input != kNone && dies_at(input, i) && graph_.tensors[input].elements() == graph_.tensors[y].elements() &&
             (op.inputs[0] == input || group_of(op.inputs[0]) != group_of(input));
    };
    // A view shares its input's bytes; otherwise the first input the op's in-place rule allows, and never the
    // buffer of inputs[0] through another slot (a conv's residual that is also its input).
    const OpDefinition& definition = op_definition(op.kind);
    uint32_t reuse = definition.view ? op.inputs[0] : kNone;
    for (uint8_t slot : definition.in_place_inputs) {
      if (reuse != kNone || slot == kNoSlot) break;
      const uint32_t input = op.inputs[slot];
      if (can_reuse(input) && (slot == 0 || group_of(input) != group_of(op.inputs[0]))) reuse = input;
    }
    if (reuse != kNone) {
      join(y, reuse);
      plan.in_place[i] = 1;
    }
  }

  // Buffers: tensor groups, then per-op scratch (alive for that op only).
  std::vector<Buffer> scratch(ops_.size());
  std::vector<Buffer*> buffers;
  for (uint32_t t = 0; t < tensor_count; ++t) {
    if (group_of(t) == t && first_use[t] != kNone) buffers.push_back(&buffer_of_group_[t]);
  }
  plan.scratch_bytes.assign(ops_.size(), 0);
  plan.scratch_offset.assign(ops_.size(), 0);
  for (uint32_t i = 0; i < ops_.size(); ++i) {
    const uint64_t bytes =
        op_definition(ops_[i].kind).scratch_floats(ops_[i], graph_.ops[i], request_.threads) * sizeof(float);
    if (bytes == 0) continue;
    scratch[i] = {align_up(bytes), i, i, 0};
    for (const auto& [op, step] : request_.extend_scratch) {
      if (op == i) scratch[i].last = std::max(scratch[i].last, std::min(step, end));
    }
    plan.scratch_bytes[i] = bytes;
    buffers.push_back(&scratch[i]);
  }

  std::vector<Buffer> extra(request_.extra.size());
  for (size_t k = 0; k < extra.size(); ++k) {
    const ExtraBuffer& want = request_.extra[k];
    extra[k] = {align_up(std::max<uint64_t>(want.bytes, 1)), want.first, std::min(std::max(want.first, want.last), end), 0};
    buffers.push_back(&extra[k]);
  }

  // The liveness lower bound: the most bytes alive during any one step (a buffer adds at its first step and
  // leaves after its last).
  std::vector<int64_t> change(end + 2, 0);
  for (const Buffer* b : buffers) {
    change[b->first] += static_cast<int64_t>(b->bytes);
    change[b->last + 1] -= static_cast<int64_t>(b->bytes);
  }
  int64_t live = 0;
  for (int64_t delta : change) {
    live += delta;
    plan.lower_bound_bytes = std::max(plan.lower_bound_bytes, static_cast<uint64_t>(live));
  }
  if (!place_buffers) return plan;

  place(buffers);
  for (const Buffer* b : buffers) plan.arena_bytes = std::max(plan.arena_bytes, b->offset + b->bytes);
  plan.tensor_offset.assign(tensor_count, MemoryPlan::kUnplanned);
  for (uint32_t t = 0; t < tensor_count; ++t) {
    if (first_use[t] != kNone) plan.tensor_offset[t] = buffer_of_group_[group_of(t)].offset;
  }
  for (uint32_t i = 0; i < ops_.size(); ++i) {
    if (plan.scratch_bytes[i] > 0) plan.scratch_offset[i] = scratch[i].offset;
  }
  for (const Buffer& b : extra) plan.extra_offset.push_back(b.offset);
  return plan;
}

void Planner::place(std::vector<Buffer*>& buffers) {
  // Largest first (ties: earlier first use), each into the smallest gap between already placed buffers whose
  // lifetimes overlap it, else above the highest of them.
  std::stable_sort(buffers.begin(), buffers.end(), [](const Buffer* a, const Buffer* b) {
    return a->bytes != b->bytes ? a->bytes > b->bytes : a->first < b->first;
  });
  std::vector<Buffer*> placed;  // sorted by offset
  for (Buffer* buffer : buffers) {
    uint64_t best_offset = 0, best_gap = ~uint64_t{0}, cursor = 0;
    bool found = false;
    for (const Buffer* other : placed) {
      if (other->last < buffer->first || other->first > buffer->last) continue;
      if (other->offset >= cursor) {
        const uint64_t gap = other->offset - cursor;
        if (gap >= buffer->bytes && gap < best_gap) {
          best_gap = gap;
          best_offset = cursor;
          found = true;
        }
      }
      cursor = std::max(cursor, other->offset + other->bytes);
    }
    buffer->offset = found ? best_offset : cursor;
    placed.insert(std::upper_bound(placed.begin(), placed.end(), buffer,
                                   [](const Buffer* a, const Buffer* b) { return a->offset < b->offset; }),
                  buffer);
  }
}

}  // namespace

MemoryPlan plan_memory(std::span<const format::Op> ops, const Graph& graph, const PlanRequest& request) {
  return Planner(ops, graph, request).run(true);
}

uint64_t plan_lower_bound(std::span<const format::Op> ops, const Graph& graph, const PlanRequest& request) {
  return Planner(ops, graph, request).run(false).lower_bound_bytes;
}

}  // namespace effcam::engine
