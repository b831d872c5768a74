// The op table: everything the engine knows about one op kind, in one row per format::OpKind. Each row lives in its
// own file, engine/op/<kind>.cpp, which states the kind's shape rule and checks, multiply-adds, scratch, in-place rule,
// forward and backward; engine/op_table.cpp indexes the rows by kind. The graph builder (engine/graph.cpp), the
// memory planner (engine/memory_plan.cpp), the executor (engine/executor.cpp), the explainer (engine/explainer.cpp)
// and the profiler (bench/profile.cpp) loop over this table and never switch on the kind. A row is plain data and
// function pointers (TFLite's TfLiteRegistration, ggml's forward_<op>): no virtual calls, no state.
//
// Adding an op kind: its record in format/format.h, its kernels (forward, backward, reference twins) in ops/, one
// file here and its line in op_table.cpp, and the converter's lowering that emits it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "format/format.h"
#include "format/graph.h"
#include "format/model_file.h"

namespace effcam::engine {

// The graph builder's view of one op while the op's shape rule runs: the op's record, its inputs' shapes and checks
// that throw effcam::Error naming the op (engine/graph.cpp defines them).
class OpCheck {
 public:
  OpCheck(const ModelFile& file, const Graph& graph, const std::vector<bool>& defined, uint32_t index,
          OpGeometry& geometry)
      : file_(file), graph_(graph), defined_(defined), index_(index), op_(file.ops()[index]), geometry_(geometry) {}

  const format::Op& op() const { return op_; }
  // inputs[0]'s shape (the graph builder has checked that it exists).
  const Shape& x() const { return geometry_.input; }
  // The shape of inputs[slot]; fails when it is missing or not yet computed.
  const Shape& input(uint32_t slot) const;
  // nullptr when inputs[slot] is kNone.
  const Shape* optional_input(uint32_t slot) const;
  // Fails when inputs[slot] is given: the kind does not read it.
  void unused_input(uint32_t slot) const;
  // Fails unless weight `id` exists with this layout and these logical dims.
  void kernel(uint32_t id, format::WeightLayout layout, uint32_t d0, uint32_t d1, uint32_t d2, uint32_t d3,
              const char* what) const;
  // Fails unless weight `id` is kNone or an fp32 vector of `length`.
  void vector(uint32_t id, uint32_t length, const char* what) const;
  // The TensorFlow window of a conv or pooling op over x() (explicit padding included): records the total padding in
  // the geometry and returns the output's height and width (channels as x()).
  Shape window();
  [[noreturn]] void fail(const std::string& what) const;

 private:
  const ModelFile& file_;
  const Graph& graph_;
  const std::vector<bool>& defined_;
  uint32_t index_;
  const format::Op& op_;
  OpGeometry& geometry_;
};

// One forward call of an op, its tensors resolved in the arena by the executor.
struct ForwardCall {
  const ModelFile& file;
  const format::Op& op;
  const OpGeometry& geometry;
  ThreadPool& pool;
  const float* input[format::kMaxOpInputs];  // nullptr when absent, or skipped (the residual of a recomputation)
  Shape input_shape[format::kMaxOpInputs];
  float* output[format::kMaxOpOutputs];      // nullptr when absent, or not wanted (a recomputation's outputs[1])
  float* scratch;                            // the op's planned scratch (OpDefinition::scratch_floats)
  const float* bias;                         // the op's bias, nullptr when absent or skipped
  format::Activation activation;             // the activation to apply: Linear when skipped (softmax is the executor's)
  bool skip_activation;                      // a recomputation without the activation (the gate's too)
  const float* output_gradient;              // a gradient rerun's (Recompute::output_gradient), else nullptr
  float* pre_activation;                     // Recompute::pre_activation, else nullptr
  const float* output_mean_gradient;         // Recompute::output_mean_gradient, else nullptr

  // A weight vector of the file (fp32), nullptr for kNone.
  const float* weight(uint32_t id) const {
    return id == format::kNone ? nullptr : static_cast<const float*>(file.weight_data(id));
  }
};

// One backward step of an op: d score / d its pre-activation in, d score / d its inputs accumulated (+=; or, for
// inputs[0] with overwrite_input_gradient, written over).
struct BackwardCall {
  const ModelFile& file;
  const format::Op& op;
  const OpGeometry& geometry;
  ThreadPool& pool;
  const float* dz;                                    // the gradient of the op's pre-activation, output shape
  const float* input[format::kMaxOpInputs];           // the forward inputs
  Shape input_shape[format::kMaxOpInputs];
  float* input_gradient[format::kMaxOpInputs];        // nullptr when the score does not need it
  float* scratch;                                     // BackwardScratch::step_floats floats, this step only
  float* shared_scratch;                              // BackwardScratch::shared_floats floats (see there)
  bool winograd;                                      // BackwardMode::winograd of the scratch's sizing
  // The first share of inputs[0]'s gradient: written over its buffer, not added (OpDefinition::backward_overwrites).
  bool overwrite_input_gradient;

  const float* weight(uint32_t id) const {
    return id == format::kNone ? nullptr : static_cast<const float*>(file.weight_data(id));
  }
};

// How one backward pass runs its kernels (the explainer's choice for its plan; every step the same).
struct BackwardMode {
  uint32_t threads = 1;   // per-thread scratch is sized for this many workers
  bool winograd = false;  // stride-1 3x3 conv gradients through Winograd (more scratch, about twice as fast)
};

// The buffers an op's backward step needs besides the gradients, in floats.
struct BackwardScratch {
  uint64_t step_floats = 0;    // a buffer of its own, live during the step
  uint64_t shared_floats = 0;  // room in one buffer shared by every step of the pass (sized for the widest op)
};

inline constexpr uint8_t kNoSlot = 0xFF;

// The defaults of a row, for kinds without kernels, scratch or backward scratch.
inline uint64_t no_multiply_adds(const format::Op&, const OpGeometry&) { return 0; }
inline uint64_t no_scratch(const format::Op&, const OpGeometry&, uint32_t) { return 0; }
inline BackwardScratch no_backward_scratch(const ModelFile&, const format::Op&, const OpGeometry&,
                                           const BackwardMode&) {
  return {};
}
inline bool reads_every_input(const format::Op&, uint32_t) { return true; }

// A row states its kind, name, shape rule, forward and backward, and only the properties that differ from these
// defaults.
struct OpDefinition {
  format::OpKind kind;
  const char* name;  // as in format::OpKind: "Conv", "Depthwise", ...

  // Shape rule and checks: validates the op's inputs and weights through `check` and returns outputs[0]'s shape.
  Shape (*shape)(OpCheck& check);
  // outputs[1] may hold the spatial mean of outputs[0] per channel (1x1xC).
  bool mean_output = false;
  // inputs[1], when given, is a residual added after the activation (BeforeResidual taps; its gradient is dy).
  bool residual_input = false;
  // inputs[2], when given, scales the input per channel before the op (ScaledInput taps).
  bool input_scale = false;
  // A kernel whose output a folded BatchNorm scaled: BeforeAffine taps undo it.
  bool kernel = false;
  // Without a residual or second output, outputs[0] is the activation applied element-wise to the pre-activation
  // through the kernels' shared epilogue: ops::activate over the pre-activation gives the same bits.
  bool activation_in_epilogue = false;
  // The forward call honours ForwardCall::output_gradient and ::pre_activation (the kernels' epilogues serve the
  // backward pass): a backward step reruns the op straight into its pre-activation's gradient, and a recomputation
  // keeps its pre-activation in the same pass as its output. With mean_output, ::output_mean_gradient too.
  bool backward_epilogues = false;
  // The activation at outputs[0]: &format::Op::activation, or the squeeze-excite gate's &format::Op::activation2.
  format::Activation format::Op::*output_activation = &format::Op::activation;

  // Multiply-adds at batch 1, counted for kernels only (element-wise ops, pooling, padding count zero: the usual
  // convention of CNN FLOP figures).
  uint64_t (*multiply_adds)(const format::Op& op, const OpGeometry& geometry) = no_multiply_adds;
  // Scratch of the forward call besides its tensors (floats), for `threads` workers.
  uint64_t (*scratch_floats)(const format::Op& op, const OpGeometry& geometry, uint32_t threads) = no_scratch;
  // In-place rule: input slots whose buffer outputs[0] may take over when that input dies at this op (the kernel
  // allows y == that input), in order of preference; kNoSlot ends the list.
  uint8_t in_place_inputs[2] = {kNoSlot, kNoSlot};
  // outputs[0] is inputs[0]'s bytes under another shape (always shared, never copied).
  bool view = false;

  void (*forward)(const ForwardCall& call);
  // The backward call's scratch (BackwardScratch) in that mode.
  BackwardScratch (*backward_scratch)(const ModelFile& file, const format::Op& op, const OpGeometry& geometry,
                                      const BackwardMode& mode) = no_backward_scratch;
  // Whether the backward reads the forward value of inputs[slot] (BackwardCall::input): an input it does not read
  // need not be kept or recomputed for a linear op, whose backward step does not rerun it.
  bool (*backward_reads_input)(const format::Op& op, uint32_t slot) = reads_every_input;
  // Accumulates the gradients of the op's inputs from dz (the residual's share is the explainer's).
  void (*backward)(const BackwardCall& call);
  // The backward call honours BackwardCall::overwrite_input_gradient: a first share needs no cleared buffer.
  bool backward_overwrites = false;
};

// The row of a kind; nullptr for a kind the engine does not know.
const OpDefinition* find_op_definition(format::OpKind kind);
// The row of a kind the graph has validated.
const OpDefinition& op_definition(format::OpKind kind);

// The activation at an op's output.
inline format::Activation output_activation(const format::Op& op) {
  return op.*(op_definition(op.kind).output_activation);
}

}  // namespace effcam::engine
