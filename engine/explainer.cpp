#include "engine/explainer.h"

#include <algorithm>
#include <chrono>

#include "effcam/error.hpp"
#include "engine/op_args.h"
#include "engine/op_table.h"
#include "ops/backward.h"

namespace effcam::engine {

using format::kNone;
using format::TapKind;

uint32_t Explainer::add_buffer(PlanRequest& request, uint64_t floats, uint32_t first, uint32_t last) {
  request.extra.push_back({floats * sizeof(float), first, last});
  buffer_floats_.resize(request.extra.size());
  buffer_floats_.back() = floats;
  return static_cast<uint32_t>(request.extra.size() - 1);
}

Explainer::Explainer(const Model& model, const std::string& layer, PlanRequest& request, uint64_t budget_bytes)
    : model_(model), tap_(model.find_tap(layer)), layer_(layer) {
  if (!tap_) {
    throw Error("Grad-CAM layer '" + layer +
                "' is not in the model, or was folded away (the model's CAM layers list those it has)");
  }
  const auto ops = model_.file().ops();
  const Graph& graph = model_.graph();
  const uint32_t n = static_cast<uint32_t>(ops.size()), target = tap_->op;
  if (tap_->kind == TapKind::SecondOutput || ops[target].outputs[0] == graph.output) {
    throw Error("Grad-CAM layer '" + layer + "' is not a spatial map (the model's CAM layers list those that are)");
  }

  // The ops the score depends on through the target, in execution order.
  std::vector<bool> downstream(graph.tensors.size(), false);
  for (uint32_t t : ops[target].outputs) {
    if (t != kNone) downstream[t] = true;
  }
  path_ = {target};
  for (uint32_t i = target + 1; i < n; ++i) {
    const bool reached = std::any_of(std::begin(ops[i].inputs), std::end(ops[i].inputs),
                                     [&](uint32_t t) { return t != kNone && downstream[t]; });
    if (!reached) continue;
    path_.push_back(i);
    for (uint32_t t : ops[i].outputs) {
      if (t != kNone) downstream[t] = true;
    }
  }
  if (!downstream[graph.output]) throw Error("Grad-CAM layer '" + layer + "' does not influence the model output");

  const std::vector<std::vector<uint32_t>> candidates = segmentations();
  const PlanRequest forward_request = request;
  const MemoryPlan forward_plan = plan_memory(ops, graph, forward_request);
  // Each segmentation twice: an op rerun for its pre-activation in its backward step, or its recomputation
  // keeping the pre-activation until then (no rerun, a longer-lived buffer). The cost is the multiply-adds run
  // again (recomputations and reruns); the liveness bound ranks plans cheaply, and only the few that may fit are
  // placed (placed arenas come within a few percent of it).
  struct Tried {
    size_t candidate;
    bool keep_pre_activations;
    uint64_t cost, live;
    uint64_t arena = 0;  // placed: 0 until then
  };
  // Each plan's sources: with keep_pre_activations, every op that splits its activation keeps it when recomputed.
  auto sources = [&](bool keep_pre_activations) {
    std::vector<PreActivation> where(n, PreActivation::Rerun);
    for (uint32_t op : path_) {
      if (keep_pre_activations && op != target && splits_activation(op)) where[op] = PreActivation::Recomputed;
    }
    return where;
  };
  const PlanRequest* base = &forward_request;  // the forward request of the plans searched last
  auto place = [&](Tried& t) {
    if (t.arena == 0) {
      PlanRequest trial = *base;
      schedule(candidates[t.candidate], sources(t.keep_pre_activations), trial);
      t.arena = plan_memory(ops, graph, trial).arena_bytes;
    }
    return t.arena;
  };
  // Every plan in one backward mode on a forward request, and their floor: the smallest placed arena among the plans
  // whose liveness bound is within 10% of the smallest.
  auto search = [&](bool winograd, const PlanRequest& forward, std::vector<Tried>& tried) {
    mode_ = {forward.threads, winograd};
    base = &forward;
    tried.clear();
    for (size_t k = 0; k < candidates.size(); ++k) {
      for (bool keep_pre_activations : {false, true}) {
        PlanRequest trial = forward;
        schedule(candidates[k], sources(keep_pre_activations), trial);
        tried.push_back({k, keep_pre_activations, plan_.recomputed_multiply_adds + plan_.rerun_multiply_adds,
                         plan_lower_bound(ops, graph, trial)});
      }
    }
    uint64_t least_live = ~uint64_t{0}, floor = ~uint64_t{0};
    for (const Tried& t : tried) least_live = std::min(least_live, t.live);
    for (Tried& t : tried) {
      if (t.live * 10 <= least_live * 11) floor = std::min(floor, place(t));
    }
    return floor;
  };
  // Winograd's gradients (about twice as fast) unless their scratch lifts the floor by more than 10% (S's and B0's
  // stage 1: 17% and 22%): then the direct ones. Decided on one thread's plans (per-thread scratch grows with the
  // threads), so that neither a budget nor the thread count changes the map's bits.
  PlanRequest one_thread = forward_request;
  one_thread.threads = 1;
  std::vector<Tried> tried, winograd;
  const uint64_t winograd_floor = search(true, one_thread, winograd);
  uint64_t floor = search(false, one_thread, tried);
  if (winograd_floor * 10 <= floor * 11) {
    tried.swap(winograd);
    floor = winograd_floor;
    mode_.winograd = true;
  }
  if (request.threads != 1) floor = search(mode_.winograd, forward_request, tried);
  // Without a budget: within twice the forward pass's arena (or the floor, when that is more).
  const uint64_t limit = budget_bytes > 0 ? budget_bytes : std::max(2 * forward_plan.arena_bytes, floor);
  if (floor > limit) {
    throw Error("Grad-CAM at '" + layer + "' needs an arena of at least " + std::to_string(floor) +
                " bytes (the forward pass alone " + std::to_string(forward_plan.arena_bytes) +
                "), over the memory budget of " + std::to_string(budget_bytes) + " bytes");
  }
  // The least cost that fits, trying the cheapest first (the floor's plan fits, so one does).
  std::stable_sort(tried.begin(), tried.end(), [](const Tried& a, const Tried& b) {
    return a.cost != b.cost ? a.cost < b.cost : a.live < b.live;
  });
  size_t best = 0;
  while (tried[best].live > limit || place(tried[best]) > limit) ++best;
  // Then more pre-activations kept while the arena fits (of ops that split their activation), each saving its op's
  // rerun, and kept by the forward step its recomputation too: the most multiply-adds saved per byte first, a later
  // op (a shorter life) first among equals. The forward step's buffer lives through the rest of the forward pass and
  // the backward pass down to the op; a recomputation's, from there to the op's backward step.
  const Tried& chosen = tried[best];
  std::vector<PreActivation> where = sources(chosen.keep_pre_activations);
  {
    PlanRequest trial = *base;
    schedule(candidates[chosen.candidate], where, trial);
  }
  std::vector<bool> recomputed(n, false);
  for (const Action& action : actions_) recomputed[action.op] = recomputed[action.op] || !action.backward;
  struct Option {
    uint32_t op;
    PreActivation source;
    double saved_per_byte;
  };
  std::vector<Option> options;
  for (uint32_t op : path_) {
    const double multiply_adds = static_cast<double>(op_multiply_adds(ops[op], graph.ops[op]));
    const double bytes = static_cast<double>(graph.ops[op].output.elements() * sizeof(float));
    if (op == target || multiply_adds == 0) continue;
    // Kept by the forward step, an op recomputed without keeping it saves twice.
    const bool twice = recomputed[op] && where[op] == PreActivation::Rerun;
    if (splits_activation(op)) options.push_back({op, PreActivation::Forward, multiply_adds * (twice ? 2 : 1) / bytes});
    if (splits_activation(op) && twice) options.push_back({op, PreActivation::Recomputed, multiply_adds / bytes});
  }
  std::stable_sort(options.begin(), options.end(), [](const Option& a, const Option& b) {
    return a.saved_per_byte != b.saved_per_byte ? a.saved_per_byte > b.saved_per_byte : a.op > b.op;
  });
  uint64_t arena = chosen.arena;
  for (const Option& option : options) {
    if (option.source == PreActivation::Recomputed && where[option.op] != PreActivation::Rerun) continue;
    const PreActivation before = where[option.op];
    where[option.op] = option.source;
    PlanRequest trial = *base;
    schedule(candidates[chosen.candidate], where, trial);
    const uint64_t placed = plan_lower_bound(ops, graph, trial) > limit ? limit + 1
                                                                        : plan_memory(ops, graph, trial).arena_bytes;
    if (placed <= limit) {
      arena = placed;
    } else {
      where[option.op] = before;
    }
  }
  schedule(candidates[chosen.candidate], where, request);
  plan_.arena_bytes = arena;
  plan_.floor_bytes = floor;
  plan_.forward_arena_bytes = forward_plan.arena_bytes;
  plan_.lower_bound_bytes = std::max(plan_.lower_bound_bytes, forward_plan.lower_bound_bytes);
  plan_.forward_multiply_adds = graph_multiply_adds(ops, graph);
}

std::vector<std::vector<uint32_t>> Explainer::segmentations() const {
  const auto ops = model_.file().ops();
  const Graph& graph = model_.graph();
  const uint32_t n = static_cast<uint32_t>(ops.size()), target = tap_->op;
  // The segmentations tried: every path op its own segment (nothing recomputed, the most kept), then segments grown
  // greedily up to a size threshold (Chen et al.'s family), cut only where one tensor crosses the cut (between
  // blocks: one checkpoint per segment; cutting anywhere as well never gave a smaller arena on EfficientNetV2).
  auto output_bytes = [&](uint32_t op) {
    uint64_t bytes = 0;
    for (uint32_t t : ops[op].outputs) {
      if (t != kNone) bytes += graph.tensors[t].elements() * sizeof(float);
    }
    return bytes;
  };
  std::vector<uint32_t> crossing(n + 1, 0);  // tensors made before op i and read at or after it
  for (uint32_t t = 0; t < graph.tensors.size(); ++t) {
    uint32_t last = 0;
    for (uint32_t i = 0; i < n; ++i) {
      for (uint32_t in : ops[i].inputs) {
        if (in == t) last = i;
      }
    }
    const uint32_t made = graph.producer[t] == kNone ? 0 : graph.producer[t] + 1;
    for (uint32_t i = made; i <= last && i < n; ++i) ++crossing[i];
  }
  // Two measures of a segment's size: the bytes its ops make (what recomputing saves), and their multiply-adds
  // (what it costs: long segments where activations are large for their work, short ones where they are small).
  auto multiply_adds = [&](uint32_t op) { return op_multiply_adds(ops[op], graph.ops[op]); };
  std::vector<std::vector<uint32_t>> candidates = {path_};
  auto grow = [&](auto size) {
    double total = 0;
    for (uint32_t op : path_) total += static_cast<double>(size(op));
    for (double threshold = total / 1024; threshold < 2 * total; threshold *= 1.1) {
      std::vector<uint32_t> starts = {target};
      double current = 0;
      for (uint32_t op : path_) {
        const double more = static_cast<double>(size(op));
        if (op != starts.back() && current + more > threshold && crossing[op] <= 1) {
          starts.push_back(op);
          current = 0;
        }
        current += more;
      }
      if (std::find(candidates.begin(), candidates.end(), starts) == candidates.end()) candidates.push_back(starts);
    }
  };
  grow(output_bytes);
  grow(multiply_adds);
  // The finest of them (a segment per block) with its first segments merged into one recomputed from the target: a
  // checkpoint is held through the backward pass of everything after it, so near a shallow target (the largest
  // activations) one long first segment beats many checkpoints (S at block1b_add: 13.4 MB of arena against 16.6).
  const std::vector<uint32_t> finest = candidates.size() > 1 ? candidates[1] : path_;
  for (size_t m = 2; m < finest.size(); ++m) {
    std::vector<uint32_t> merged = {target};
    merged.insert(merged.end(), finest.begin() + static_cast<std::ptrdiff_t>(m), finest.end());
    if (std::find(candidates.begin(), candidates.end(), merged) == candidates.end()) candidates.push_back(merged);
  }

  return candidates;
}

void Explainer::schedule(const std::vector<uint32_t>& starts, const std::vector<PreActivation>& pre_activations,
                         PlanRequest& request) {
  const auto ops = model_.file().ops();
  const Graph& graph = model_.graph();
  const uint32_t n = static_cast<uint32_t>(ops.size()), target = tap_->op;
  const uint32_t tensor_count = static_cast<uint32_t>(graph.tensors.size());
  actions_.clear();
  buffer_floats_.assign(request.extra.size(), 0);
  gradient_.assign(tensor_count, kNone);
  recomputed_.assign(tensor_count, kNone);
  pre_activations_ = pre_activations;
  plan_ = {};
  plan_.segments = static_cast<uint32_t>(starts.size());

  // The tensors a backward step reads: the op's inputs (rerun for its pre-activation, else those its backward
  // reads), and a target that is the op's own output.
  auto reads = [&](uint32_t op) {
    std::vector<uint32_t> tensors;
    for (uint32_t slot = 0; slot < format::kMaxOpInputs; ++slot) {
      const uint32_t t = ops[op].inputs[slot];
      if (t != kNone && backward_reads(op, slot)) tensors.push_back(t);
    }
    if (op == target && tap_->kind == TapKind::Output) tensors.push_back(ops[op].outputs[0]);
    return tensors;
  };
  auto step = [&] { return n + static_cast<uint32_t>(actions_.size()); };
  auto forward_scratch = [&](uint32_t op, PlanRequest& r) {
    const uint64_t floats = op_definition(ops[op].kind).scratch_floats(ops[op], graph.ops[op], r.threads);
    return floats > 0 ? add_buffer(r, floats, step(), step()) : kNone;
  };

  // Segments from the last to the first. A tensor a segment reads from before its start is kept by the forward pass
  // (a checkpoint), and so is one a later segment reads; the segment recomputes the rest of what it reads.
  std::vector<bool> kept(tensor_count, false);
  // A target that is its op's output is kept rather than recomputed from the op's inputs (which can be larger).
  if (tap_->kind == TapKind::Output) {
    kept[ops[target].outputs[0]] = true;
    plan_.checkpoints = 1;
  }
  std::vector<uint32_t> step_of(n, kNone);  // timeline step of each path op's backward
  // The pre-activation a forward step keeps: from that step to the op's backward step.
  std::vector<uint32_t> forward_kept(n, kNone);
  auto forward_pre_activation = [&](uint32_t op) {
    if (forward_kept[op] == kNone) {
      forward_kept[op] = add_buffer(request, graph.ops[op].output.elements(), op, op);
      request.forward_pre_activations.push_back({op, forward_kept[op]});
    }
    return forward_kept[op];
  };
  for (size_t k = starts.size(); k-- > 0;) {
    const uint32_t begin = starts[k], end = k + 1 < starts.size() ? starts[k + 1] : n;
    std::vector<uint32_t> backward_ops;
    for (uint32_t op : path_) {
      if (op >= begin && op < end) backward_ops.push_back(op);
    }
    std::reverse(backward_ops.begin(), backward_ops.end());
    std::vector<bool> recompute(n, false), needed(tensor_count, false);
    std::vector<uint32_t> pending;
    for (uint32_t op : backward_ops) {
      for (uint32_t t : reads(op)) pending.push_back(t);
    }
    while (!pending.empty()) {
      const uint32_t t = pending.back();
      pending.pop_back();
      if (needed[t]) continue;
      needed[t] = true;
      const uint32_t producer = graph.producer[t];
      if (kept[t] || producer == kNone || producer < begin || recompute[producer]) continue;
      recompute[producer] = true;
      if (pre_activations_[producer] == PreActivation::Forward) continue;  // recomputed from it alone
      for (uint32_t in : ops[producer].inputs) {
        if (in != kNone) pending.push_back(in);
      }
    }
    std::vector<uint32_t> made_at(tensor_count, kNone), last_read(tensor_count, 0);
    auto read = [&](uint32_t t, uint32_t at) {
      const uint32_t producer = graph.producer[t];
      if (!kept[t] && producer != kNone && producer >= begin) {
        last_read[t] = std::max(last_read[t], at);
      } else {
        request.extend.push_back({t, at});
      }
    };
    std::vector<uint32_t> recomputed_at(n, kNone);  // the step of an op recomputed keeping its pre-activation
    for (uint32_t op = begin; op < end; ++op) {
      if (!recompute[op]) continue;
      if (pre_activations_[op] == PreActivation::Forward) {
        // The activation over the pre-activation the forward pass kept: no multiply-adds.
        for (uint32_t t : ops[op].outputs) {
          if (t != kNone) made_at[t] = step();
        }
        Action action;
        action.op = op;
        action.pre_activation = forward_pre_activation(op);
        action.activation_only = true;
        actions_.push_back(std::move(action));
        ++plan_.recomputed_ops;
        continue;
      }
      for (uint32_t in : ops[op].inputs) {
        if (in != kNone) read(in, step());
      }
      for (uint32_t t : ops[op].outputs) {
        if (t != kNone) made_at[t] = step();
      }
      const bool backward_here = std::find(backward_ops.begin(), backward_ops.end(), op) != backward_ops.end();
      if (pre_activations_[op] == PreActivation::Recomputed && backward_here) recomputed_at[op] = step();
      Action action;
      action.op = op;
      action.forward_scratch = forward_scratch(op, request);
      actions_.push_back(std::move(action));
      ++plan_.recomputed_ops;
      plan_.recomputed_multiply_adds += op_multiply_adds(ops[op], graph.ops[op]);
    }
    for (uint32_t op : backward_ops) {
      for (uint32_t t : reads(op)) read(t, step());
      // A target that is its op's output is the result: read in place after the last step.
      if (op == target && tap_->kind == TapKind::Output) read(ops[op].outputs[0], step() + 1);
      step_of[op] = step();
      Action action;
      action.op = op;
      action.backward = true;
      if (pre_activations_[op] == PreActivation::Forward) {
        action.pre_activation = forward_pre_activation(op);
        request.extra[action.pre_activation].last = step();
        action.pre_activation_kept = true;
        ++plan_.pre_activations_kept_by_forward;
      } else if (recomputed_at[op] != kNone) {
        // The pre-activation its recomputation left: from there to here.
        action.pre_activation = add_buffer(request, graph.ops[op].output.elements(), recomputed_at[op], step());
        action.pre_activation_kept = true;
        ++plan_.pre_activations_kept_by_recomputation;
        actions_[recomputed_at[op] - n].pre_activation = action.pre_activation;
      } else if (op == target || reruns_for_gradient(op)) {
        action.forward_scratch = forward_scratch(op, request);
        if (op != target) plan_.rerun_multiply_adds += op_multiply_adds(ops[op], graph.ops[op]);
      }
      actions_.push_back(std::move(action));
    }
    // The recomputed tensors' buffers. An output that is kept, or unread, needs none; outputs[0] is always
    // written, to a buffer of this step alone when nothing reads it here.
    for (Action& action : actions_) {
      if (action.backward || action.op < begin || action.op >= end) continue;
      for (uint32_t slot = 0; slot < format::kMaxOpOutputs; ++slot) {
        const uint32_t t = ops[action.op].outputs[slot];
        if (t == kNone) continue;
        const bool read_here = needed[t] && !kept[t];
        if (!read_here && slot > 0) continue;
        const uint32_t buffer = add_buffer(request, graph.tensors[t].elements(), made_at[t],
                                           read_here ? std::max(made_at[t], last_read[t]) : made_at[t]);
        if (read_here) recomputed_[t] = buffer;
        (slot == 0 ? action.output : action.second_output) = buffer;
      }
    }
    for (uint32_t t = 0; t < tensor_count; ++t) {
      const uint32_t producer = graph.producer[t];
      if (needed[t] && (producer == kNone || producer < begin)) {
        plan_.checkpoints += kept[t] ? 0 : 1;
        kept[t] = true;
      }
    }
  }
  request.final_step = step();  // the caller reads the result after the last step

  // A gradient buffer for each downstream tensor that a path op reads: from its first consumer's backward step to its
  // producer's.
  std::vector<uint32_t> schedule_bound;  // buffers every schedule holds: gradients, shared scratch, the result
  std::vector<uint32_t> first_read(tensor_count, kNone);
  for (uint32_t op : path_) {
    for (uint32_t in : ops[op].inputs) {
      if (in != kNone) first_read[in] = std::min(first_read[in], step_of[op]);
    }
  }
  for (uint32_t t = 0; t < tensor_count; ++t) {
    const uint32_t producer = graph.producer[t];
    if (producer == kNone || step_of[producer] == kNone || first_read[t] == kNone) continue;
    gradient_[t] = add_buffer(request, graph.tensors[t].elements(), first_read[t], step_of[producer]);
    schedule_bound.push_back(gradient_[t]);
  }
  // The first share, at the first consumer's step, is written over the buffer where that step can (the residual's,
  // copied; a kernel's that overwrites, for inputs[0] alone; in backward_op's case of an op whose output has a
  // gradient); else the buffer is cleared first. Clearing S block3c_add's took 1.2 ms, at 1 and at 2 threads.
  for (uint32_t t = 0; t < tensor_count; ++t) {
    if (gradient_[t] == kNone) continue;
    Action& first = actions_[first_read[t] - n];
    const format::Op& op = ops[first.op];
    const OpDefinition& definition = op_definition(op.kind);
    const bool flows = first.op != target && op.outputs[0] != graph.output && gradient_[op.outputs[0]] != kNone;
    if (flows && definition.residual_input && op.inputs[1] == t) {
      first.copy_residual_gradient = true;
    } else if (flows && definition.backward_overwrites && op.inputs[0] == t && op.inputs[2] != t) {
      first.overwrite_input_gradient = true;
    } else {
      first.clear.push_back(gradient_[t]);
    }
  }
  // The target's recovery reruns its op (except for its own output) and needs the pre-activation as room for the
  // conv's raw output (BeforeAffine) or its own gradient (ScaledInput).
  const TapKind kind = tap_->kind;
  const bool target_reruns = kind != TapKind::Output;
  const bool target_needs_z = kind == TapKind::BeforeAffine || kind == TapKind::ScaledInput;
  uint64_t shared_floats = 0;
  uint32_t first_backward = kNone;
  for (Action& action : actions_) {
    if (!action.backward) continue;
    const uint32_t at = step_of[action.op];
    first_backward = std::min(first_backward, at);
    const format::Op& op = ops[action.op];
    const OpGeometry& geometry = graph.ops[action.op];
    const BackwardScratch scratch = op_definition(op.kind).backward_scratch(model_.file(), op, geometry, mode_);
    if (action.op == target) {
      // The target's step runs its own recovery (backward_target), not the op's backward; a ScaledInput target
      // goes back through its conv with the op's backward scratch.
      if (!target_reruns) action.forward_scratch = kNone;
      if (target_needs_z) action.pre_activation = add_buffer(request, geometry.output.elements(), at, at);
      if (kind == TapKind::ScaledInput) action.scratch = add_buffer(request, scratch.step_floats, at, at);
      continue;
    }
    // dz goes over the output's gradient, which dies here; a buffer of its own holds the seed's, one with no output
    // gradient, and the pre-activation of a rerun whose kernels cannot turn it into dz in their epilogue.
    const bool seed = op.outputs[0] == graph.output;
    action.dz_in_output_gradient = !seed && gradient_[op.outputs[0]] != kNone;
    const bool rerun_needs_z = reruns_for_gradient(action.op) && !action.pre_activation_kept &&
                               !backward_epilogues(action.op);
    if (action.pre_activation == kNone && (!action.dz_in_output_gradient || rerun_needs_z)) {
      action.pre_activation = add_buffer(request, geometry.output.elements(), at, at);
    }
    if (scratch.step_floats > 0) action.scratch = add_buffer(request, scratch.step_floats, at, at);
    shared_floats = std::max(shared_floats, scratch.shared_floats);
  }
  const uint32_t last = step() - 1;
  if (shared_floats > 0) schedule_bound.push_back(shared_scratch_ = add_buffer(request, shared_floats, first_backward, last));
  // The result, read after the last step. A target that is its op's output is read where it is; its gradient is
  // the output's own when the op has no squeeze-excite means (recovered in place, and before the residual or the
  // activation too).
  const uint64_t target_floats = model_.tap_shape(*tap_).elements();
  const format::Op& target_op = ops[target];
  activations_ = kNone;
  if (kind != TapKind::Output) {
    schedule_bound.push_back(activations_ = add_buffer(request, target_floats, step_of[target], step()));
  }
  const bool mean_gradient = target_op.outputs[1] != kNone && gradient_[target_op.outputs[1]] != kNone;
  const uint32_t output_gradient = gradient_[target_op.outputs[0]];
  if (!target_needs_z && !mean_gradient && output_gradient != kNone) {
    gradients_ = output_gradient;
    request.extra[gradients_].last = step();
  } else {
    schedule_bound.push_back(gradients_ = add_buffer(request, target_floats, step_of[target], step()));
  }

  // The lower bound: at each backward step, the buffers any schedule holds there plus what the step needs under any
  // schedule: its scratch, and a pre-activation or a rerun's forward scratch unless the other way (an op that
  // splits its activation either keeps its pre-activation or reruns into dz) needs neither.
  // (The held bytes per step by a sweep: +bytes where each buffer starts, -bytes after it ends.)
  std::vector<int64_t> held(step() + 2, 0);
  for (uint32_t b : schedule_bound) {
    const auto& buffer = request.extra[b];
    held[buffer.first] += static_cast<int64_t>(buffer.bytes);
    held[buffer.last + 1] -= static_cast<int64_t>(buffer.bytes);
  }
  for (size_t k = 1; k < held.size(); ++k) held[k] += held[k - 1];
  for (const Action& action : actions_) {
    if (!action.backward) continue;
    const uint32_t at = step_of[action.op];
    const bool either_way = action.op != target && splits_activation(action.op);
    uint64_t bytes = static_cast<uint64_t>(held[at]);
    for (uint32_t b : {either_way ? kNone : action.pre_activation, action.scratch,
                       either_way ? kNone : action.forward_scratch}) {
      if (b != kNone) bytes += request.extra[b].bytes;
    }
    for (uint32_t t : reads(action.op)) bytes += graph.tensors[t].elements() * sizeof(float);
    plan_.lower_bound_bytes = std::max(plan_.lower_bound_bytes, bytes);
  }
}

bool Explainer::backward_reads(uint32_t op, uint32_t slot) const {
  const format::Op& record = model_.file().ops()[op];
  if (op == tap_->op) return tap_->kind != TapKind::Output;  // the recovery reruns the op, except for its output
  const bool reruns = reruns_for_gradient(op) && pre_activations_[op] != PreActivation::Forward;
  return reruns || op_definition(record.kind).backward_reads_input(record, slot);
}

bool Explainer::splits_activation(uint32_t op) const {
  const format::Op& record = model_.file().ops()[op];
  const OpDefinition& definition = op_definition(record.kind);
  const bool residual = definition.residual_input && record.inputs[1] != kNone;
  return definition.activation_in_epilogue && reruns_for_gradient(op) && !residual && record.outputs[1] == kNone &&
         record.outputs[0] != model_.graph().output;
}

bool Explainer::backward_epilogues(uint32_t op) const {
  const format::Op& record = model_.file().ops()[op];
  return op_definition(record.kind).backward_epilogues && output_activation(record) != format::Activation::Softmax;
}

bool Explainer::reruns_for_gradient(uint32_t op) const {
  const format::Op& record = model_.file().ops()[op];
  return record.outputs[0] == model_.graph().output || output_activation(record) != format::Activation::Linear;
}

const float* Explainer::value(const Executor& executor, uint32_t tensor) const {
  return recomputed_[tensor] != kNone ? executor.extra(recomputed_[tensor]) : executor.tensor(tensor);
}

Recompute Explainer::rerun(const Executor& executor, const Action& action) const {
  const format::Op& op = model_.file().ops()[action.op];
  Recompute r;
  for (uint32_t slot = 0; slot < format::kMaxOpInputs; ++slot) {
    if (op.inputs[slot] != kNone) r.input[slot] = value(executor, op.inputs[slot]);
  }
  if (action.forward_scratch != kNone) r.scratch = executor.extra(action.forward_scratch);
  return r;
}

void Explainer::recompute_op(Executor& executor, const Action& action) const {
  float* y = executor.extra(action.output);
  if (action.activation_only) {
    // The same SIMD function as the forward kernel's epilogue (splits_activation): y has the forward's bits.
    executor.activate(action.op, executor.extra(action.pre_activation), y);
    return;
  }
  Recompute r = rerun(executor, action);
  r.output = y;
  if (action.second_output != kNone) r.second_output = executor.extra(action.second_output);
  // Kept for the op's backward step (splits_activation): written beside y, with the same bits.
  if (action.pre_activation != kNone) r.pre_activation = executor.extra(action.pre_activation);
  executor.run_op(action.op, r);
}

float* Explainer::gradient(const Executor& executor, uint32_t tensor) const {
  return tensor == kNone || gradient_[tensor] == kNone ? nullptr : executor.extra(gradient_[tensor]);
}

std::vector<ExplainStep> Explainer::steps() const {
  std::vector<ExplainStep> steps;
  for (const Action& action : actions_) steps.push_back({action.op, action.backward});
  return steps;
}

Explanation Explainer::explain(Executor& executor, uint32_t class_index, CamScore score,
                               std::span<double> step_ms) const {
  if (class_index >= model_.classes()) {
    throw Error("class " + std::to_string(class_index) + " is out of range: the model has " +
                std::to_string(model_.classes()) + " classes");
  }
  if (!step_ms.empty() && step_ms.size() != actions_.size()) {
    throw Error("a profiled explanation needs one time slot per step (" + std::to_string(actions_.size()) +
                "), got " + std::to_string(step_ms.size()));
  }
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  Clock::duration recomputing{};
  float score_value = 0;
  for (size_t k = 0; k < actions_.size(); ++k) {
    const Action& action = actions_[k];
    const Clock::time_point begin = Clock::now();
    for (uint32_t buffer : action.clear) std::fill_n(executor.extra(buffer), buffer_floats_[buffer], 0.0f);
    if (!action.backward) {
      recompute_op(executor, action);
      recomputing += Clock::now() - begin;
    } else if (action.op == tap_->op) {
      backward_target(executor, action);
    } else {
      backward_op(executor, action, class_index, score, score_value);
    }
    if (!step_ms.empty()) step_ms[k] = std::chrono::duration<double, std::milli>(Clock::now() - begin).count();
  }
  const Shape shape = model_.tap_shape(*tap_);
  const float* activations = activations_ != kNone ? executor.extra(activations_)
                                                  : value(executor, model_.file().ops()[tap_->op].outputs[0]);
  Explanation result{layer_, shape, class_index, score_value, {activations, shape.elements()},
                     {executor.extra(gradients_), shape.elements()}};
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  result.recompute_seconds = std::chrono::duration<double>(recomputing).count();
  return result;
}

void Explainer::backward_op(Executor& executor, const Action& action, uint32_t class_index, CamScore score,
                            float& score_value) const {
  const format::Op& op = model_.file().ops()[action.op];
  const OpGeometry& g = model_.graph().ops[action.op];
  const OpDefinition& definition = op_definition(op.kind);
  const bool seed = op.outputs[0] == model_.graph().output;
  float* dy = gradient(executor, op.outputs[0]);
  const float* dmean = gradient(executor, op.outputs[1]);
  if (!seed && !dy && !dmean) return;  // nothing from the score flows through this op

  const format::Activation act = output_activation(op);
  const size_t count = g.output.elements();
  const uint32_t pixels = g.output.h * g.output.w;
  float* residual_gradient = definition.residual_input ? gradient(executor, op.inputs[1]) : nullptr;
  float* z = action.pre_activation != kNone ? executor.extra(action.pre_activation) : nullptr;
  const bool reruns = reruns_for_gradient(action.op) && !action.pre_activation_kept;
  // The op rerun without its residual: into z, or (no z) straight into dz through the kernels' gradient epilogue,
  // which also adds the squeeze-excite means' share of the gradient.
  auto rerun_op = [&](float* output, const float* output_gradient, const float* output_mean_gradient) {
    Recompute pre_activation = rerun(executor, action);
    pre_activation.skip_activation = output_gradient == nullptr;
    pre_activation.skip_residual = true;
    pre_activation.output = output;
    pre_activation.output_gradient = output_gradient;
    pre_activation.output_mean_gradient = output_mean_gradient;
    executor.run_op(action.op, pre_activation);
  };
  // dz = (the output's gradient + the squeeze-excite means' share, spread over the pixels) x act'(z), each over its
  // pixels; a linear op reads no z.
  auto through_activation = [&](const float* z_in, const float* dy_in, const float* dmean_in, float* dz_out,
                                format::Activation a) {
    const ops::ActivationGradientArgs through{z_in, dy_in, dmean_in, 1.0f / static_cast<float>(pixels), dz_out,
                                              pixels, g.output.c, a, op.act_max};
    executor.pool().parallel_for(pixels,
                                 [&](uint32_t b, uint32_t e, uint32_t) { ops::activation_backward(through, b, e); });
  };
  float* dz = z;
  if (action.dz_in_output_gradient) {
    // In place over dy, after the residual's share (dy itself) is taken.
    if (residual_gradient && action.copy_residual_gradient) std::copy_n(dy, count, residual_gradient);
    else if (residual_gradient) ops::identity_backward(dy, residual_gradient, count);
    dz = dy;
    if (reruns && !z) {
      rerun_op(dy, dy, dmean);
    } else {
      if (reruns) rerun_op(z, nullptr, nullptr);
      if (z || dmean) through_activation(z, dy, dmean, dy, z ? act : format::Activation::Linear);
    }
  } else if (seed) {
    rerun_op(z, nullptr, nullptr);
    const float* y = executor.tensor(op.outputs[0]);
    const float z_c = z[class_index];
    std::fill_n(z, count, 0.0f);
    if (score == CamScore::Logit) {
      score_value = z_c;
      z[class_index] = 1.0f;
    } else if (act == format::Activation::Softmax) {
      score_value = y[class_index];
      for (size_t k = 0; k < count; ++k) z[k] = y[class_index] * ((k == class_index ? 1.0f : 0.0f) - y[k]);
    } else {
      score_value = y[class_index];
      z[class_index] = ops::activation_derivative(z_c, act, op.act_max);
    }
    if (residual_gradient && score == CamScore::Prob) residual_gradient[class_index] += 1.0f;
  } else {
    // Only the means' share flows (no output gradient): dz in the op's own buffer, over z.
    if (reruns) rerun_op(z, nullptr, nullptr);
    through_activation(z, nullptr, dmean, z, act);
  }

  BackwardCall call{model_.file(), op, g, executor.pool(), dz, {}, {}, {}, nullptr, nullptr, mode_.winograd,
                    action.overwrite_input_gradient};
  for (uint32_t slot = 0; slot < format::kMaxOpInputs; ++slot) {
    const uint32_t t = op.inputs[slot];
    if (t == kNone) continue;
    call.input[slot] = backward_reads(action.op, slot) ? value(executor, t) : nullptr;
    call.input_shape[slot] = model_.graph().tensors[t];
    // The residual's share was added above: the op's backward sees only what flows through its kernel.
    if (!(slot == 1 && definition.residual_input)) call.input_gradient[slot] = gradient(executor, t);
  }
  if (action.scratch != kNone) call.scratch = executor.extra(action.scratch);
  if (shared_scratch_ != kNone) call.shared_scratch = executor.extra(shared_scratch_);
  definition.backward(call);
}

void Explainer::backward_target(Executor& executor, const Action& action) const {
  const format::Tap& tap = *tap_;
  const uint32_t index = tap.op;
  const format::Op& op = model_.file().ops()[index];
  const OpGeometry& g = model_.graph().ops[index];
  float* a = activations_ != kNone ? executor.extra(activations_) : nullptr;  // kNone: the output, in place
  float* da = executor.extra(gradients_);                                     // may be the output's gradient
  float* z = action.pre_activation != kNone ? executor.extra(action.pre_activation) : nullptr;
  const float* dy = gradient(executor, op.outputs[0]);
  const float* dmean = gradient(executor, op.outputs[1]);
  const size_t count = g.output.elements();
  const uint32_t c = g.output.c;
  const float inv_pixels = 1.0f / static_cast<float>(g.output.h * g.output.w);
  // The gradient of the op's final output (its own output and, for a depthwise op, its squeeze-excite means).
  auto dy_total = [&](size_t i) { return (dy ? dy[i] : 0.0f) + (dmean ? dmean[i % c] * inv_pixels : 0.0f); };
  const ops::Activation act = output_activation(op);
  // The target op rerun from the values the backward pass reads, with its own scratch.
  auto run_target = [&](Recompute recompute) {
    const Recompute buffers = rerun(executor, action);
    std::copy(std::begin(buffers.input), std::end(buffers.input), std::begin(recompute.input));
    recompute.scratch = buffers.scratch;
    executor.run_op(index, recompute);
  };

  switch (tap.kind) {
    case TapKind::Output:
      for (size_t i = 0; i < count; ++i) da[i] = dy_total(i);
      break;
    case TapKind::BeforeResidual:
      run_target({.skip_residual = true, .output = a});
      for (size_t i = 0; i < count; ++i) da[i] = dy_total(i);
      break;
    case TapKind::BeforeActivation:
      run_target({.skip_activation = true, .skip_residual = true, .output = a});
      for (size_t i = 0; i < count; ++i) da[i] = dy_total(i) * ops::activation_derivative(a[i], act, op.act_max);
      break;
    case TapKind::BeforeAffine: {
      // a = the conv without its bias; the folded BatchNorm made z = a + bias = scale * keras_conv + const.
      run_target({.skip_activation = true, .skip_residual = true, .skip_bias = true, .output = a});
      const float* bias = executor.weight(op.bias);
      const float* scale = executor.weight(tap.scale);
      const float* shift = executor.weight(tap.shift);
      for (size_t i = 0; i < count; ++i) z[i] = dy_total(i);
      for (size_t p = 0; p < count; p += c) {
        for (uint32_t k = 0; k < c; ++k) da[p + k] = a[p + k] + (bias ? bias[k] : 0.0f);
      }
      ops::activation_backward(da, z, da, count, act, op.act_max);  // da = dy * act'(a + bias)
      for (size_t p = 0; p < count; p += c) {
        for (uint32_t k = 0; k < c; ++k) {
          da[p + k] *= scale[k];
          a[p + k] = a[p + k] / scale[k] + (shift ? shift[k] : 0.0f);
        }
      }
      break;
    }
    case TapKind::ScaledInput: {
      // The target is the conv's gated input x * gate; back through the conv itself.
      const uint32_t cin = g.input.c;
      const float* x = value(executor, op.inputs[0]);
      const float* gate = value(executor, op.inputs[2]);
      for (size_t i = 0; i < g.input.elements(); ++i) a[i] = x[i] * gate[i % cin];
      run_target({.skip_activation = true, .skip_residual = true, .output = z});
      for (size_t i = 0; i < count; ++i) z[i] = dy_total(i) * ops::activation_derivative(z[i], act, op.act_max);
      std::fill_n(da, g.input.elements(), 0.0f);
      const ops::ConvArgs args = conv_args(model_.file(), op, g);
      // (Its scratch is sized for the gated gradient, which has no Winograd.)
      ops::conv2d_backward_input(args, z, da, executor.extra(action.scratch), executor.pool(), false);
      break;
    }
    case TapKind::SecondOutput:
      break;  // refused when planning
  }
}

}  // namespace effcam::engine
