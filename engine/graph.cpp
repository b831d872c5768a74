#include "engine/graph.h"

#include <string>

#include "effcam/error.hpp"
#include "engine/op_table.h"

namespace effcam::engine {

using format::kNone;

const Shape* OpCheck::optional_input(uint32_t slot) const {
  const uint32_t t = op_.inputs[slot];
  if (t == kNone) return nullptr;
  if (t >= defined_.size() || !defined_[t]) fail("input " + std::to_string(slot) + " is used before it is computed");
  return &graph_.tensors[t];
}

const Shape& OpCheck::input(uint32_t slot) const {
  const Shape* shape = optional_input(slot);
  if (!shape) fail("input " + std::to_string(slot) + " is missing");
  return *shape;
}

void OpCheck::unused_input(uint32_t slot) const {
  if (op_.inputs[slot] != kNone) fail("input " + std::to_string(slot) + " is not used by this op kind");
}

void OpCheck::kernel(uint32_t id, format::WeightLayout layout, uint32_t d0, uint32_t d1, uint32_t d2, uint32_t d3,
                     const char* what) const {
  if (id == kNone) fail(std::string(what) + " is missing");
  const format::WeightRecord& w = file_.weight_records()[id];
  const uint32_t want[4] = {d0, d1, d2, d3};
  bool same = w.layout == layout && w.dtype != format::DType{0};
  for (int i = 0; i < 4; ++i) same = same && w.dims[i] == want[i];
  if (!same) {
    fail(std::string(what) + " has dims " + std::to_string(w.dims[0]) + "x" + std::to_string(w.dims[1]) + "x" +
         std::to_string(w.dims[2]) + "x" + std::to_string(w.dims[3]) + ", the graph needs " + std::to_string(d0) +
         "x" + std::to_string(d1) + "x" + std::to_string(d2) + "x" + std::to_string(d3));
  }
}

void OpCheck::vector(uint32_t id, uint32_t length, const char* what) const {
  if (id == kNone) return;
  const format::WeightRecord& w = file_.weight_records()[id];
  if (w.layout != format::WeightLayout::Vector || w.dtype != format::DType::F32 || w.dims[0] != length) {
    fail(std::string(what) + " must be an fp32 vector of " + std::to_string(length));
  }
}

Shape OpCheck::window() {
  const uint64_t padded_h = uint64_t{geometry_.input.h} + op_.pad_top + op_.pad_bottom;
  const uint64_t padded_w = uint64_t{geometry_.input.w} + op_.pad_left + op_.pad_right;
  if (padded_h > (1u << 16) || padded_w > (1u << 16)) fail("padded input is too large");
  try {
    const Window rows = effcam::window(static_cast<uint32_t>(padded_h), op_.kernel_h, op_.stride_h, op_.padding);
    const Window cols = effcam::window(static_cast<uint32_t>(padded_w), op_.kernel_w, op_.stride_w, op_.padding);
    geometry_.pad_top = op_.pad_top + rows.pad_before;
    geometry_.pad_bottom = op_.pad_bottom + rows.pad_after;
    geometry_.pad_left = op_.pad_left + cols.pad_before;
    geometry_.pad_right = op_.pad_right + cols.pad_after;
    return {rows.out, cols.out, geometry_.input.c};
  } catch (const Error& e) {
    fail(e.what());
  }
}

void OpCheck::fail(const std::string& what) const {
  throw Error("op " + std::to_string(index_) + " '" + std::string(file_.string(op_.name)) + "': " + what);
}

namespace {

class GraphBuilder {
 public:
  explicit GraphBuilder(const ModelFile& file) : file_(file) {}

  Graph build();

 private:
  void define(const OpCheck& check, uint32_t tensor, const Shape& shape, uint32_t op);
  void check_tap(const format::Tap& tap) const;

  const ModelFile& file_;
  Graph graph_;
  std::vector<bool> defined_;
};

void GraphBuilder::define(const OpCheck& check, uint32_t tensor, const Shape& shape, uint32_t op) {
  if (tensor == kNone) check.fail("has no output tensor");
  if (defined_[tensor]) check.fail("writes tensor " + std::to_string(tensor) + " which is already computed");
  if (shape.elements() == 0 || shape.elements() > (uint64_t{1} << 28)) {
    check.fail("output shape " + shape_text(shape) + " is out of range");
  }
  defined_[tensor] = true;
  graph_.tensors[tensor] = shape;
  graph_.producer[tensor] = op;
}

void GraphBuilder::check_tap(const format::Tap& tap) const {
  const format::Op& op = file_.ops()[tap.op];
  const OpDefinition& definition = op_definition(op.kind);
  const std::string name(file_.string(tap.layer));
  auto bad = [&](const char* why) { throw Error("tap '" + name + "': " + why); };
  switch (tap.kind) {
    case format::TapKind::Output:
    case format::TapKind::BeforeActivation:
      break;
    case format::TapKind::BeforeResidual:
      if (op.inputs[1] == kNone || !definition.residual_input) bad("op has no residual");
      break;
    case format::TapKind::BeforeAffine: {
      if (!definition.kernel) bad("op has no kernel");
      OpGeometry unused;
      const OpCheck check(file_, graph_, defined_, tap.op, unused);
      check.vector(tap.scale, op.out_channels, "tap scale");
      check.vector(tap.shift, op.out_channels, "tap shift");
      if (tap.scale == kNone) bad("a scale is required");
      break;
    }
    case format::TapKind::ScaledInput:
      if (!definition.input_scale || op.inputs[2] == kNone) bad("op has no input scale");
      break;
    case format::TapKind::SecondOutput:
      if (op.outputs[1] == kNone) bad("op has no second output");
      break;
    default:
      bad("unknown kind");
  }
}

Graph GraphBuilder::build() {
  const format::Preprocess& pre = file_.preprocess();
  const size_t tensor_count = file_.tensors().size();
  graph_.tensors.assign(tensor_count, Shape{});
  graph_.producer.assign(tensor_count, kNone);
  defined_.assign(tensor_count, false);
  if (pre.input_tensor >= tensor_count) throw Error("the preprocessing names a missing input tensor");
  graph_.input = pre.input_tensor;
  graph_.tensors[pre.input_tensor] = {pre.height, pre.width, pre.channels};
  defined_[pre.input_tensor] = true;

  const auto ops = file_.ops();
  for (uint32_t i = 0; i < ops.size(); ++i) {
    const format::Op& op = ops[i];
    OpGeometry geometry;
    OpCheck check(file_, graph_, defined_, i, geometry);
    geometry.input = check.input(0);
    const OpDefinition* definition = find_op_definition(op.kind);
    if (!definition) check.fail("unknown op kind " + std::to_string(static_cast<uint32_t>(op.kind)));
    const Shape out = definition->shape(check);
    if ((op.activation == format::Activation::Softmax) && (out.h != 1 || out.w != 1)) {
      check.fail("softmax needs a vector output");
    }
    if (op.activation == format::Activation::Relu && !(op.act_max > 0)) check.fail("relu upper bound must be positive");
    geometry.output = out;
    define(check, op.outputs[0], out, i);
    if (op.outputs[1] != kNone) {
      if (!definition->mean_output) check.fail("only a depthwise op has a second output");
      define(check, op.outputs[1], Shape{1, 1, out.c}, i);
    }
    graph_.ops.push_back(geometry);
  }

  for (const format::Tap& tap : file_.taps()) check_tap(tap);

  if (pre.output_tensor >= tensor_count || !defined_[pre.output_tensor]) {
    throw Error("the model output tensor is never computed");
  }
  graph_.output = pre.output_tensor;
  const Shape& result = graph_.tensors[graph_.output];
  if (result.h != 1 || result.w != 1) throw Error("the model output is not a vector of classes");
  graph_.classes = result.c;
  if (!file_.labels().empty() && file_.labels().size() != graph_.classes) {
    throw Error("the file has " + std::to_string(file_.labels().size()) + " labels for " +
                std::to_string(graph_.classes) + " classes");
  }
  return graph_;
}

}  // namespace

Graph build_graph(const ModelFile& file) { return GraphBuilder(file).build(); }

uint64_t op_multiply_adds(const format::Op& op, const OpGeometry& geometry) {
  return op_definition(op.kind).multiply_adds(op, geometry);
}

uint64_t graph_multiply_adds(std::span<const format::Op> ops, const Graph& graph) {
  if (ops.size() != graph.ops.size()) throw Error("the graph was not built from these ops");
  uint64_t total = 0;
  for (size_t i = 0; i < ops.size(); ++i) total += op_multiply_adds(ops[i], graph.ops[i]);
  return total;
}

}  // namespace effcam::engine
