#include "converter/lowering/emit.h"

#include <algorithm>

#include "effcam/error.hpp"

namespace effcam::convert::lowering {
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

}  // namespace

EffcamBuilder emit(const Graph& g, const keras::Model& model, const LoweringOptions& options,
                   LoweringSummary& summary) {
  EffcamBuilder builder(options.kernel_dtype);
  std::vector<int> order;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& node = g.nodes[i];
    if (!node.dead && node.kind != NodeKind::Input && node.second_output_of < 0) order.push_back(static_cast<int>(i));
  }
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return g.at(a).order < g.at(b).order;
  });

  std::vector<uint32_t> tensor_of(g.nodes.size(), format::kNone);
  std::vector<uint32_t> op_of(g.nodes.size(), format::kNone);
  const Node& input = g.at(g.input);
  tensor_of[static_cast<size_t>(g.input)] = builder.add_tensor(input.layer);
  uint64_t stored = 0;
  auto tensor = [&](int id) {
    if (id < 0) return format::kNone;
    const uint32_t t = tensor_of[static_cast<size_t>(id)];
    if (t == format::kNone) throw Error("internal: '" + g.at(id).layer + "' used before it is computed");
    return t;
  };
  auto vector = [&](const std::string& name, const std::vector<double>& values) {
    stored += values.size();
    return builder.add_vector(name, to_float(values));
  };

  for (int id : order) {
    const Node& node = g.at(id);
    format::Op op{};
    op.kind = op_kind(node.kind);
    op.activation = node.act;
    op.activation2 = node.act2;
    op.padding = node.padding;
    op.name = builder.add_string(node.layer);
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
    op.out_channels = node.cout;
    op.act_max = node.act_max;
    op.reshape[0] = node.shape.h;
    op.reshape[1] = node.shape.w;
    op.reshape[2] = node.shape.c;
    const std::string& name = node.layer;
    switch (node.kind) {
      case NodeKind::Conv:
        op.weight = builder.add_conv_kernel(name + "/kernel", to_float(node.kernel), node.kh, node.kw, node.cin,
                                            node.cout);
        stored += node.kernel.size();
        break;
      case NodeKind::Depthwise:
        op.weight = builder.add_depthwise_kernel(name + "/kernel", to_float(node.kernel), node.kh, node.kw,
                                                 node.cin, node.multiplier);
        stored += node.kernel.size();
        break;
      case NodeKind::Dense:
        op.weight = builder.add_dense_kernel(name + "/kernel", to_float(node.kernel), node.cin, node.cout);
        stored += node.kernel.size();
        break;
      case NodeKind::SqueezeExcite:
        op.out_channels = node.hidden;  // the expand layer restores cin channels
        op.weight = builder.add_dense_kernel(name + "/reduce_kernel", to_float(node.kernel), node.cin, node.hidden);
        op.weight2 = builder.add_dense_kernel(name + "/kernel", to_float(node.kernel2), node.hidden, node.cin);
        stored += node.kernel.size() + node.kernel2.size();
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
    tensor_of[static_cast<size_t>(id)] = builder.add_tensor(name);
    op.outputs[0] = tensor_of[static_cast<size_t>(id)];
    if (node.mean_output >= 0) {
      const uint32_t mean = builder.add_tensor(g.at(node.mean_output).layer);
      tensor_of[static_cast<size_t>(node.mean_output)] = mean;
      op.outputs[1] = mean;
    }
    op_of[static_cast<size_t>(id)] = static_cast<uint32_t>(builder.ops().size());
    builder.add_op(op);
  }

  for (const keras::Layer& layer : model.layers) {
    auto it = g.taps.find(layer.name);
    if (it == g.taps.end() || it->second.node < 0) continue;
    const TapInfo& info = it->second;
    const uint32_t op = op_of[static_cast<size_t>(info.node)];
    if (op == format::kNone) continue;
    format::Tap tap{};
    tap.layer = builder.add_string(layer.name);
    tap.class_name = builder.add_string(layer.class_name);
    tap.kind = info.kind;
    tap.op = op;
    tap.scale = tap.shift = format::kNone;
    if (info.kind == TapKind::BeforeAffine) {
      tap.scale = builder.add_vector(layer.name + "/tap_scale", to_float(info.scale));
      if (!info.shift.empty()) tap.shift = builder.add_vector(layer.name + "/tap_shift", to_float(info.shift));
    }
    builder.add_tap(tap);
  }

  const Node& output = g.at(g.output);
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
    pre.scale[c] = c < input.shape.c ? static_cast<float>(g.pre_scale[c]) : 1.0f;
    pre.offset[c] = c < input.shape.c ? static_cast<float>(g.pre_offset[c]) : 0.0f;
  }
  pre.input_tensor = tensor_of[static_cast<size_t>(g.input)];
  pre.output_tensor = tensor(g.output);
  builder.set_preprocess(pre);

  if (!options.labels.empty() && options.labels.size() != output.shape.c) {
    throw Error(std::to_string(options.labels.size()) + " labels were given but the model has " +
                std::to_string(output.shape.c) + " classes");
  }
  builder.set_labels(options.labels);

  summary.keras_layers = model.layers.size();
  summary.ops = builder.ops().size();
  summary.keras_parameters = g.keras_parameters;
  summary.stored_parameters = stored;
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
  builder.set_metadata_json(meta.dump());
  return builder;
}

}  // namespace effcam::convert::lowering
