#include "converter/lowering/emit.h"

#include <algorithm>

#include "effcam/error.hpp"

namespace effcam::converter::lowering {
namespace {

using format::OpKind;
using format::TapKind;
using nlohmann::json;

std::vector<float> to_float(const std::vector<double>& values) { return {values.begin(), values.end()}; }

OpKind op_kind(NodeKind kind) {
  switch (kind) {
    case NodeKind::Affine: return OpKind::ChannelAffine;
    case NodeKind::Conv: return OpKind::Conv;
    case NodeKind::Depthwise: return OpKind::Depthwise;
    case NodeKind::Dense: return OpKind::Dense;
    case NodeKind::SqueezeExcite: return OpKind::SqueezeExcite;
    case NodeKind::Add: return OpKind::Add;
    case NodeKind::Multiply: return OpKind::Multiply;
    case NodeKind::GlobalAvgPool: return OpKind::GlobalAvgPool;
    case NodeKind::MaxPool: return OpKind::MaxPool;
    case NodeKind::AvgPool: return OpKind::AvgPool;
    case NodeKind::ZeroPad: return OpKind::ZeroPad;
    case NodeKind::Reshape: return OpKind::Reshape;
    case NodeKind::Input:
    case NodeKind::Identity: break;
  }
  throw Error("internal: node kind has no op");
}

// Appends the graph's records to one builder, in the order the file stores them: ops (each with its weights and
// output tensors), taps, preprocessing, labels, metadata.
class Emitter {
 public:
  Emitter(const Graph& g, format::DType kernel_dtype)
      : g_(g), builder_(kernel_dtype), tensor_of_(g.nodes.size(), format::kNone),
        op_of_(g.nodes.size(), format::kNone) {}

  void ops();
  void taps(const keras::Model& model);
  void preprocessing();
  EffcamBuilder finish(const keras::Model& model, const LoweringOptions& options, LoweringSummary& summary);

 private:
  // Live nodes in the order of the Keras layers they end with (stable: ties keep graph order).
  std::vector<int> execution_order() const;
  uint32_t tensor(int id) const;  // the tensor holding node id's value (kNone for -1)
  uint32_t vector(const std::string& name, const std::vector<double>& values);
  // The kernels and vectors of a conv / depthwise / dense / squeeze-excite / affine node, into op.
  void weights(const Node& node, format::Op& op);
  void op(int id);

  const Graph& g_;
  EffcamBuilder builder_;
  std::vector<uint32_t> tensor_of_;  // by node id
  std::vector<uint32_t> op_of_;      // by node id
  uint64_t stored_ = 0;              // parameters written (padding excluded)
};

std::vector<int> Emitter::execution_order() const {
  std::vector<int> order;
  for (size_t i = 0; i < g_.nodes.size(); ++i) {
    const Node& node = g_.nodes[i];
    if (!node.dead && node.kind != NodeKind::Input && node.second_output_of < 0) order.push_back(static_cast<int>(i));
  }
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return g_.at(a).order < g_.at(b).order; });
  return order;
}

uint32_t Emitter::tensor(int id) const {
  if (id < 0) return format::kNone;
  const uint32_t t = tensor_of_[static_cast<size_t>(id)];
  if (t == format::kNone) throw Error("internal: '" + g_.at(id).layer + "' used before it is computed");
  return t;
}

uint32_t Emitter::vector(const std::string& name, const std::vector<double>& values) {
  stored_ += values.size();
  return builder_.add_vector(name, to_float(values));
}

void Emitter::weights(const Node& node, format::Op& op) {
  const std::string& name = node.layer;
  switch (node.kind) {
    case NodeKind::Conv:
      op.weight = builder_.add_conv_kernel(name + "/kernel", to_float(node.kernel), node.kh, node.kw, node.cin,
                                           node.cout);
      stored_ += node.kernel.size();
      break;
    case NodeKind::Depthwise:
      op.weight = builder_.add_depthwise_kernel(name + "/kernel", to_float(node.kernel), node.kh, node.kw, node.cin,
                                                node.multiplier);
      stored_ += node.kernel.size();
      break;
    case NodeKind::Dense:
      op.weight = builder_.add_dense_kernel(name + "/kernel", to_float(node.kernel), node.cin, node.cout);
      stored_ += node.kernel.size();
      break;
    case NodeKind::SqueezeExcite:
      op.weight = builder_.add_dense_kernel(name + "/reduce_kernel", to_float(node.kernel), node.cin, node.hidden);
      op.weight2 = builder_.add_dense_kernel(name + "/kernel", to_float(node.kernel2), node.hidden, node.cin);
      stored_ += node.kernel.size() + node.kernel2.size();
      if (!node.bias2.empty()) op.bias2 = vector(name + "/bias", node.bias2);
      break;
    case NodeKind::Affine:
      if (!node.scale.empty()) op.weight = vector(name + "/scale", node.scale);
      if (!node.shift.empty()) op.bias = vector(name + "/shift", node.shift);
      break;
    default:
      break;
  }
  if (!node.bias.empty() && node.kind != NodeKind::Affine) {
    op.bias = vector(name + (node.kind == NodeKind::SqueezeExcite ? "/reduce_bias" : "/bias"), node.bias);
  }
}

void Emitter::op(int id) {
  const Node& node = g_.at(id);
  format::Op op{};
  op.kind = op_kind(node.kind);
  op.activation = node.act;
  op.activation2 = node.act2;
  op.padding = node.padding;
  op.name = builder_.add_string(node.layer);
  for (uint32_t& in : op.inputs) in = format::kNone;
  for (uint32_t& out : op.outputs) out = format::kNone;
  op.weight = op.bias = op.weight2 = op.bias2 = format::kNone;
  for (size_t k = 0; k < node.inputs.size() && k < 2; ++k) op.inputs[k] = tensor(node.inputs[k]);
  if (node.kind == NodeKind::Conv || node.kind == NodeKind::Affine) {
    op.inputs[1] = tensor(node.residual);
    op.inputs[2] = tensor(node.input_scale);
  }
  op.kernel_h = node.kh;
  op.kernel_w = node.kw;
  op.stride_h = node.stride_h;
  op.stride_w = node.stride_w;
  op.pad_top = node.pad_top;
  op.pad_bottom = node.pad_bottom;
  op.pad_left = node.pad_left;
  op.pad_right = node.pad_right;
  // A squeeze-excite op's out_channels is its hidden width: the expand layer restores cin channels.
  op.out_channels = node.kind == NodeKind::SqueezeExcite ? node.hidden : node.cout;
  op.act_max = node.act_max;
  op.reshape[0] = node.shape.h;
  op.reshape[1] = node.shape.w;
  op.reshape[2] = node.shape.c;
  weights(node, op);
  tensor_of_[static_cast<size_t>(id)] = builder_.add_tensor(node.layer);
  op.outputs[0] = tensor_of_[static_cast<size_t>(id)];
  if (node.mean_output >= 0) {
    const uint32_t mean = builder_.add_tensor(g_.at(node.mean_output).layer);
    tensor_of_[static_cast<size_t>(node.mean_output)] = mean;
    op.outputs[1] = mean;
  }
  op_of_[static_cast<size_t>(id)] = static_cast<uint32_t>(builder_.ops().size());
  builder_.add_op(op);
}

void Emitter::ops() {
  tensor_of_[static_cast<size_t>(g_.input)] = builder_.add_tensor(g_.at(g_.input).layer);
  for (int id : execution_order()) op(id);
}

void Emitter::taps(const keras::Model& model) {
  for (const keras::Layer& layer : model.layers) {
    auto it = g_.taps.find(layer.name);
    if (it == g_.taps.end() || it->second.node < 0) continue;
    const TapInfo& info = it->second;
    const uint32_t op = op_of_[static_cast<size_t>(info.node)];
    if (op == format::kNone) continue;
    format::Tap tap{};
    tap.layer = builder_.add_string(layer.name);
    tap.class_name = builder_.add_string(layer.class_name);
    tap.kind = info.kind;
    tap.op = op;
    tap.scale = tap.shift = format::kNone;
    if (info.kind == TapKind::BeforeAffine) {
      tap.scale = builder_.add_vector(layer.name + "/tap_scale", to_float(info.scale));
      if (!info.shift.empty()) tap.shift = builder_.add_vector(layer.name + "/tap_shift", to_float(info.shift));
    }
    builder_.add_tap(tap);
  }
}

void Emitter::preprocessing() {
  const Node& input = g_.at(g_.input);
  const Node& output = g_.at(g_.output);
  if (output.shape.h != 1 || output.shape.w != 1) {
    throw Error("model output '" + output.layer + "' is a " + std::to_string(output.shape.h) + "x" +
                std::to_string(output.shape.w) + " map; effcam serves classifiers ending in a vector of classes");
  }
  format::Preprocess pre{};
  pre.height = input.shape.h;
  pre.width = input.shape.w;
  pre.channels = input.shape.c;
  pre.resize = format::ResizeFilter::Lanczos3;
  for (uint32_t c = 0; c < 4; ++c) {
    pre.scale[c] = c < input.shape.c ? static_cast<float>(g_.pre_scale[c]) : 1.0f;
    pre.offset[c] = c < input.shape.c ? static_cast<float>(g_.pre_offset[c]) : 0.0f;
  }
  pre.input_tensor = tensor_of_[static_cast<size_t>(g_.input)];
  pre.output_tensor = tensor(g_.output);
  builder_.set_preprocess(pre);
}

EffcamBuilder Emitter::finish(const keras::Model& model, const LoweringOptions& options, LoweringSummary& summary) {
  const Node& input = g_.at(g_.input);
  const Node& output = g_.at(g_.output);
  summary.keras_layers = model.layers.size();
  summary.ops = builder_.ops().size();
  summary.keras_parameters = g_.keras_parameters;
  summary.stored_parameters = stored_;
  summary.input_h = input.shape.h;
  summary.input_w = input.shape.w;
  summary.input_c = input.shape.c;
  summary.classes = output.shape.c;
  json meta = {{"source_format", model.source_format},
               {"keras_version", model.keras_version},
               {"model_name", model.name},
               {"keras_layers", summary.keras_layers},
               {"ops", summary.ops},
               {"keras_parameters", summary.keras_parameters},
               {"stored_parameters", summary.stored_parameters},
               {"kernel_dtype", options.kernel_dtype == format::DType::F16 ? "fp16" : "fp32"}};
  builder_.set_metadata_json(meta.dump());
  return std::move(builder_);
}

}  // namespace

EffcamBuilder emit(const Graph& g, const keras::Model& model, const LoweringOptions& options,
                   LoweringSummary& summary) {
  Emitter emitter(g, options.kernel_dtype);
  emitter.ops();
  emitter.taps(model);
  emitter.preprocessing();
  return emitter.finish(model, options, summary);
}

}  // namespace effcam::converter::lowering
