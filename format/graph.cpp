#include "format/graph.h"

#include <string>

#include "effcam/error.hpp"
#include "format/model_file.h"

namespace effcam {

using format::kNone;
using format::OpKind;

Window window(uint32_t in, uint32_t kernel, uint32_t stride, format::Padding padding) {
  if (in == 0 || kernel == 0 || stride == 0) throw Error("window of size 0");
  if (padding == format::Padding::Same) {
    const uint32_t out = (in + stride - 1) / stride;
    const uint64_t needed = uint64_t{out - 1} * stride + kernel;
    const uint32_t total = needed > in ? static_cast<uint32_t>(needed - in) : 0;
    return {out, total / 2, total - total / 2};
  }
  if (kernel > in) {
    throw Error("a " + std::to_string(kernel) + "-wide window does not fit " + std::to_string(in) +
                " pixels with valid padding");
  }
  return {(in - kernel) / stride + 1, 0, 0};
}

namespace {

std::string shape_text(const Shape& s) {
  return std::to_string(s.h) + "x" + std::to_string(s.w) + "x" + std::to_string(s.c);
}

class GraphBuilder {
 public:
  explicit GraphBuilder(const ModelFile& file) : file_(file) {}

  Graph build();

 private:
  [[noreturn]] void fail(size_t op, const std::string& what) const {
    throw Error("op " + std::to_string(op) + " '" + std::string(file_.string(file_.ops()[op].name)) + "': " + what);
  }
  const Shape& input(size_t op, size_t slot) const;
  const Shape* optional_input(size_t op, size_t slot) const;
  void check_kernel(size_t op, uint32_t id, format::WeightLayout layout, uint32_t d0, uint32_t d1, uint32_t d2,
                    uint32_t d3, const char* what) const;
  void check_vector(size_t op, uint32_t id, uint32_t length, const char* what) const;
  void check_window(size_t op, OpGeometry& geometry) const;
  void define(size_t op, uint32_t tensor, const Shape& shape);

  const ModelFile& file_;
  Graph graph_;
  std::vector<bool> defined_;
};

const Shape* GraphBuilder::optional_input(size_t op, size_t slot) const {
  const uint32_t t = file_.ops()[op].inputs[slot];
  if (t == kNone) return nullptr;
  if (t >= defined_.size() || !defined_[t]) fail(op, "input " + std::to_string(slot) + " is used before it is computed");
  return &graph_.tensors[t];
}

const Shape& GraphBuilder::input(size_t op, size_t slot) const {
  const Shape* shape = optional_input(op, slot);
  if (!shape) fail(op, "input " + std::to_string(slot) + " is missing");
  return *shape;
}

void GraphBuilder::check_kernel(size_t op, uint32_t id, format::WeightLayout layout, uint32_t d0, uint32_t d1,
                                uint32_t d2, uint32_t d3, const char* what) const {
  if (id == kNone) fail(op, std::string(what) + " is missing");
  const format::WeightRecord& w = file_.weight_records()[id];
  const uint32_t want[4] = {d0, d1, d2, d3};
  bool same = w.layout == layout && w.dtype != format::DType{0};
  for (int i = 0; i < 4; ++i) same = same && w.dims[i] == want[i];
  if (!same) {
    fail(op, std::string(what) + " has dims " + std::to_string(w.dims[0]) + "x" + std::to_string(w.dims[1]) + "x" +
                 std::to_string(w.dims[2]) + "x" + std::to_string(w.dims[3]) + ", the graph needs " +
                 std::to_string(d0) + "x" + std::to_string(d1) + "x" + std::to_string(d2) + "x" + std::to_string(d3));
  }
}

void GraphBuilder::check_vector(size_t op, uint32_t id, uint32_t length, const char* what) const {
  if (id == kNone) return;
  const format::WeightRecord& w = file_.weight_records()[id];
  if (w.layout != format::WeightLayout::Vector || w.dtype != format::DType::F32 || w.dims[0] != length) {
    fail(op, std::string(what) + " must be an fp32 vector of " + std::to_string(length));
  }
}

void GraphBuilder::check_window(size_t op, OpGeometry& geometry) const {
  const format::Op& record = file_.ops()[op];
  const uint64_t padded_h = uint64_t{geometry.input.h} + record.pad_top + record.pad_bottom;
  const uint64_t padded_w = uint64_t{geometry.input.w} + record.pad_left + record.pad_right;
  if (padded_h > (1u << 16) || padded_w > (1u << 16)) fail(op, "padded input is too large");
  try {
    const Window rows = window(static_cast<uint32_t>(padded_h), record.kernel_h, record.stride_h, record.padding);
    const Window cols = window(static_cast<uint32_t>(padded_w), record.kernel_w, record.stride_w, record.padding);
    geometry.output = {rows.out, cols.out, geometry.input.c};
    geometry.pad_top = record.pad_top + rows.pad_before;
    geometry.pad_bottom = record.pad_bottom + rows.pad_after;
    geometry.pad_left = record.pad_left + cols.pad_before;
    geometry.pad_right = record.pad_right + cols.pad_after;
  } catch (const Error& e) {
    fail(op, e.what());
  }
}

void GraphBuilder::define(size_t op, uint32_t tensor, const Shape& shape) {
  if (tensor == kNone) fail(op, "has no output tensor");
  if (defined_[tensor]) fail(op, "writes tensor " + std::to_string(tensor) + " which is already computed");
  if (shape.elements() == 0 || shape.elements() > (uint64_t{1} << 28)) {
    fail(op, "output shape " + shape_text(shape) + " is out of range");
  }
  defined_[tensor] = true;
  graph_.tensors[tensor] = shape;
  graph_.producer[tensor] = static_cast<uint32_t>(op);
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
  for (size_t i = 0; i < ops.size(); ++i) {
    const format::Op& op = ops[i];
    OpGeometry geometry;
    geometry.input = input(i, 0);
    const Shape& x = geometry.input;
    Shape out = x;
    auto no_input = [&](size_t slot) {
      if (op.inputs[slot] != kNone) fail(i, "input " + std::to_string(slot) + " is not used by this op kind");
    };
    switch (op.kind) {
      case OpKind::Conv: {
        check_window(i, geometry);
        out = {geometry.output.h, geometry.output.w, op.out_channels};
        check_kernel(i, op.weight, format::WeightLayout::BlockedOHWI, op.out_channels, op.kernel_h, op.kernel_w, x.c,
                     "kernel");
        check_vector(i, op.bias, op.out_channels, "bias");
        if (const Shape* residual = optional_input(i, 1); residual && !(*residual == out)) {
          fail(i, "residual " + shape_text(*residual) + " does not match the output " + shape_text(out));
        }
        if (const Shape* gate = optional_input(i, 2); gate && !(*gate == Shape{1, 1, x.c})) {
          fail(i, "input scale must be 1x1x" + std::to_string(x.c));
        }
        break;
      }
      case OpKind::Depthwise: {
        check_window(i, geometry);
        if (op.out_channels == 0 || op.out_channels % x.c != 0) fail(i, "output channels are not a multiple of the input's");
        out = {geometry.output.h, geometry.output.w, op.out_channels};
        check_kernel(i, op.weight, format::WeightLayout::DepthwiseHWC, op.out_channels, op.kernel_h, op.kernel_w, 1,
                     "kernel");
        check_vector(i, op.bias, op.out_channels, "bias");
        no_input(1);
        no_input(2);
        break;
      }
      case OpKind::SqueezeExcite: {
        if (x.h != 1 || x.w != 1) fail(i, "squeeze-excite input must be 1x1xC, got " + shape_text(x));
        check_kernel(i, op.weight, format::WeightLayout::BlockedOHWI, op.out_channels, 1, 1, x.c, "reduce kernel");
        check_vector(i, op.bias, op.out_channels, "reduce bias");
        check_kernel(i, op.weight2, format::WeightLayout::BlockedOHWI, x.c, 1, 1, op.out_channels, "expand kernel");
        check_vector(i, op.bias2, x.c, "expand bias");
        no_input(1);
        no_input(2);
        break;
      }
      case OpKind::Dense: {
        if (x.elements() > 0xFFFFFFFFu) fail(i, "input too large");
        check_kernel(i, op.weight, format::WeightLayout::BlockedOHWI, op.out_channels, 1, 1,
                     static_cast<uint32_t>(x.elements()), "kernel");
        check_vector(i, op.bias, op.out_channels, "bias");
        out = {1, 1, op.out_channels};
        no_input(1);
        no_input(2);
        break;
      }
      case OpKind::ChannelAffine: {
        check_vector(i, op.weight, x.c, "scale");
        check_vector(i, op.bias, x.c, "shift");
        if (const Shape* residual = optional_input(i, 1); residual && !(*residual == x)) {
          fail(i, "residual does not match the input");
        }
        no_input(2);
        break;
      }
      case OpKind::Add:
      case OpKind::Multiply: {
        const Shape& b = input(i, 1);
        const bool broadcast = op.kind == OpKind::Multiply && b == Shape{1, 1, x.c};
        if (!(b == x) && !broadcast) fail(i, "operand shapes " + shape_text(x) + " and " + shape_text(b) + " differ");
        no_input(2);
        break;
      }
      case OpKind::GlobalAvgPool:
        out = {1, 1, x.c};
        no_input(1);
        no_input(2);
        break;
      case OpKind::MaxPool:
      case OpKind::AvgPool:
        check_window(i, geometry);
        out = geometry.output;
        no_input(1);
        no_input(2);
        break;
      case OpKind::ZeroPad:
        out = {x.h + op.pad_top + op.pad_bottom, x.w + op.pad_left + op.pad_right, x.c};
        no_input(1);
        no_input(2);
        break;
      case OpKind::Reshape:
        out = {op.reshape[0], op.reshape[1], op.reshape[2]};
        if (out.elements() != x.elements()) fail(i, "reshape to " + shape_text(out) + " changes the element count");
        no_input(1);
        no_input(2);
        break;
      default:
        fail(i, "unknown op kind " + std::to_string(static_cast<uint32_t>(op.kind)));
    }
    if ((op.activation == format::Activation::Softmax) && (out.h != 1 || out.w != 1)) {
      fail(i, "softmax needs a vector output");
    }
    if (op.activation == format::Activation::Relu && !(op.act_max > 0)) fail(i, "relu upper bound must be positive");
    geometry.output = out;
    define(i, op.outputs[0], out);
    if (op.outputs[1] != kNone) {
      if (op.kind != OpKind::Depthwise) fail(i, "only a depthwise op has a second output");
      define(i, op.outputs[1], Shape{1, 1, out.c});
    }
    graph_.ops.push_back(geometry);
  }

  for (const format::Tap& tap : file_.taps()) {
    const format::Op& op = ops[tap.op];
    const std::string name(file_.string(tap.layer));
    auto bad = [&](const char* why) { throw Error("tap '" + name + "': " + why); };
    switch (tap.kind) {
      case format::TapKind::Output:
      case format::TapKind::BeforeActivation:
        break;
      case format::TapKind::BeforeResidual:
        if (op.inputs[1] == kNone || (op.kind != OpKind::Conv && op.kind != OpKind::ChannelAffine)) bad("op has no residual");
        break;
      case format::TapKind::BeforeAffine:
        if (op.kind != OpKind::Conv && op.kind != OpKind::Depthwise && op.kind != OpKind::Dense) bad("op has no kernel");
        check_vector(tap.op, tap.scale, op.out_channels, "tap scale");
        check_vector(tap.op, tap.shift, op.out_channels, "tap shift");
        if (tap.scale == kNone) bad("a scale is required");
        break;
      case format::TapKind::ScaledInput:
        if (op.kind != OpKind::Conv || op.inputs[2] == kNone) bad("op has no input scale");
        break;
      case format::TapKind::SecondOutput:
        if (op.outputs[1] == kNone) bad("op has no second output");
        break;
      default:
        bad("unknown kind");
    }
  }

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
  const uint64_t window = uint64_t{op.kernel_h} * op.kernel_w;
  switch (op.kind) {
    case OpKind::Conv:
      return geometry.output.elements() * window * geometry.input.c;
    case OpKind::Depthwise:
      return geometry.output.elements() * window;
    case OpKind::SqueezeExcite:
      return 2 * uint64_t{geometry.input.c} * op.out_channels;
    case OpKind::Dense:
      return geometry.input.elements() * op.out_channels;
    default:
      return 0;
  }
}

uint64_t graph_multiply_adds(std::span<const format::Op> ops, const Graph& graph) {
  if (ops.size() != graph.ops.size()) throw Error("the graph was not built from these ops");
  uint64_t total = 0;
  for (size_t i = 0; i < ops.size(); ++i) total += op_multiply_adds(ops[i], graph.ops[i]);
  return total;
}

}  // namespace effcam
