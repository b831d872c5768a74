#include "converter/lowering/translate.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <map>

#include "converter/keras_json.h"
#include "converter/lowering/layer_config.h"
#include "effcam/error.hpp"

namespace effcam::converter {
namespace lowering {
namespace {

using format::Activation;
using nlohmann::json;

class Translator {
 public:
  Translator(const keras::Model& model, const LoweringOptions& options)
      : model_(model), options_(options), keras2_(model.keras_version.rfind("2.", 0) == 0) {}

  Graph run();

  // One Keras class and how it becomes nodes: the handler gets the node prepared with the layer's name, position and
  // (but for InputLayer) its first input, and returns the id of the node holding the layer's output.
  using Handler = int (Translator::*)(const LayerConfig& config, Node node);
  struct Rule {
    const char* class_name;
    Handler handler;
  };
  static const std::vector<Rule>& rules();

 private:
  void translate(const keras::Layer& layer, size_t position);
  int input_of(const LayerConfig& config, size_t index) const;
  // The kernel (in Keras layout, shape checked), the optional bias and the activation of a conv or dense layer.
  void read_weights(const LayerConfig& config, Node& node, const std::vector<int64_t>& kernel_shape) const;
  // The spatial output size of a window (conv, pooling) over `in`.
  void set_window(const LayerConfig& config, Node& node, const Shape& in) const;

  int input(const LayerConfig& config, Node node);
  int identity(const LayerConfig& config, Node node);
  int rescaling(const LayerConfig& config, Node node);
  int normalization(const LayerConfig& config, Node node);
  int batch_normalization(const LayerConfig& config, Node node);
  int conv2d(const LayerConfig& config, Node node);
  int depthwise_conv2d(const LayerConfig& config, Node node);
  int dense(const LayerConfig& config, Node node);
  int activation(const LayerConfig& config, Node node);
  int relu(const LayerConfig& config, Node node);
  int softmax(const LayerConfig& config, Node node);
  int add_or_multiply(const LayerConfig& config, Node node);
  int global_average_pooling(const LayerConfig& config, Node node);
  int pooling(const LayerConfig& config, Node node);
  int zero_padding(const LayerConfig& config, Node node);
  int reshape(const LayerConfig& config, Node node);

  const keras::Model& model_;
  const LoweringOptions& options_;
  const bool keras2_;
  Graph graph_;
  std::map<std::string, int> value_of_;  // Keras layer name -> node id
};

const std::vector<Translator::Rule>& Translator::rules() {
  // The order is the one supported_layer_classes() reports.
  static const std::vector<Rule> table = {
      {"InputLayer", &Translator::input},
      {"Rescaling", &Translator::rescaling},
      {"Normalization", &Translator::normalization},
      {"Conv2D", &Translator::conv2d},
      {"DepthwiseConv2D", &Translator::depthwise_conv2d},
      {"BatchNormalization", &Translator::batch_normalization},
      {"Activation", &Translator::activation},
      {"ReLU", &Translator::relu},
      {"Softmax", &Translator::softmax},
      {"Add", &Translator::add_or_multiply},
      {"Multiply", &Translator::add_or_multiply},
      {"GlobalAveragePooling2D", &Translator::global_average_pooling},
      {"Reshape", &Translator::reshape},
      {"Flatten", &Translator::reshape},
      {"Dense", &Translator::dense},
      {"MaxPooling2D", &Translator::pooling},
      {"AveragePooling2D", &Translator::pooling},
      {"ZeroPadding2D", &Translator::zero_padding},
      // Identities at inference: training-only noise, dropout and augmentation.
      {"ActivityRegularization", &Translator::identity},
      {"AlphaDropout", &Translator::identity},
      {"Dropout", &Translator::identity},
      {"GaussianDropout", &Translator::identity},
      {"GaussianNoise", &Translator::identity},
      {"RandomBrightness", &Translator::identity},
      {"RandomContrast", &Translator::identity},
      {"RandomFlip", &Translator::identity},
      {"RandomRotation", &Translator::identity},
      {"RandomTranslation", &Translator::identity},
      {"RandomZoom", &Translator::identity},
      {"SpatialDropout1D", &Translator::identity},
      {"SpatialDropout2D", &Translator::identity},
      {"SpatialDropout3D", &Translator::identity},
  };
  return table;
}

Graph Translator::run() {
  if (model_.layers.empty()) throw Error("the model has no layers");
  for (size_t i = 0; i < model_.layers.size(); ++i) translate(model_.layers[i], i);
  auto it = value_of_.find(model_.output);
  if (it == value_of_.end()) throw Error("the model output '" + model_.output + "' is not a layer of the model");
  graph_.output = it->second;
  return std::move(graph_);
}

void Translator::translate(const keras::Layer& layer, size_t position) {
  for (const auto& [name, array] : layer.weights) graph_.keras_parameters += array.values.size();
  const LayerConfig config(layer, keras2_);
  Node node;
  node.layer = layer.name;
  node.order = position;
  const bool is_input = layer.class_name == "InputLayer";
  if (!is_input) {
    if (graph_.input < 0) config.fail("appears before the model's InputLayer");
    const int x = input_of(config, 0);
    node.inputs = {x};
    node.shape = graph_.at(x).shape;
    node.cin = node.shape.c;
  }
  const std::vector<Rule>& table = rules();
  const auto rule = std::find_if(table.begin(), table.end(),
                                 [&](const Rule& r) { return layer.class_name == r.class_name; });
  if (rule == table.end()) {
    std::string supported;
    for (const std::string& name : supported_layer_classes()) supported += (supported.empty() ? "" : ", ") + name;
    config.fail("is not supported; supported layers: " + supported);
  }
  const int id = (this->*rule->handler)(config, std::move(node));
  value_of_[layer.name] = id;
  if (!is_input) graph_.taps[layer.name].node = id;  // the image itself is not a layer output
}

int Translator::input_of(const LayerConfig& config, size_t index) const {
  const keras::Layer& layer = config.layer();
  if (index >= layer.inputs.size()) config.fail("has too few inputs");
  auto it = value_of_.find(layer.inputs[index]);
  if (it == value_of_.end()) config.fail("input '" + layer.inputs[index] + "' is not produced before it");
  return it->second;
}

void Translator::read_weights(const LayerConfig& config, Node& node, const std::vector<int64_t>& kernel_shape) const {
  const keras::Array& k = config.weight("kernel", kernel_shape);
  node.kernel.assign(k.values.begin(), k.values.end());
  if (config.flag("use_bias", true)) {
    const keras::Array& b = config.weight("bias", {node.cout});
    node.bias.assign(b.values.begin(), b.values.end());
  }
  std::tie(node.act, node.act_max) = config.layer_activation();
}

void Translator::set_window(const LayerConfig& config, Node& node, const Shape& in) const {
  const uint32_t padded_h = in.h + node.pad_top + node.pad_bottom;
  const uint32_t padded_w = in.w + node.pad_left + node.pad_right;
  try {
    node.shape.h = window(padded_h, node.kh, node.stride_h, node.padding).out;
    node.shape.w = window(padded_w, node.kw, node.stride_w, node.padding).out;
  } catch (const Error& e) {
    config.fail(e.what());
  }
}

int Translator::input(const LayerConfig& config, Node node) {
  if (graph_.input >= 0) config.fail("a second input is not supported (one image input)");
  node.kind = NodeKind::Input;
  const auto& shape = model_.input_shape;
  if (shape.size() != 3) config.fail("input must be an image (H, W, C)");
  int64_t h = shape[0], w = shape[1], c = shape[2];
  if (options_.input_size) {
    h = options_.input_size->first;
    w = options_.input_size->second;
  }
  if (h <= 0 || w <= 0) config.fail("the input size is not fixed in the model: give one (the input size option, H and W)");
  if (h > kMaxInputSide || w > kMaxInputSide) {
    config.fail("input size above " + std::to_string(kMaxInputSide) + " is not supported");
  }
  if (c != 1 && c != 3) config.fail("input with " + std::to_string(c) + " channels is not supported (1 or 3)");
  node.shape = {static_cast<uint32_t>(h), static_cast<uint32_t>(w), static_cast<uint32_t>(c)};
  graph_.input = graph_.add(std::move(node));
  return graph_.input;
}

int Translator::identity(const LayerConfig&, Node node) {
  node.kind = NodeKind::Identity;
  node.alias = node.inputs[0];
  return graph_.add(std::move(node));
}

int Translator::rescaling(const LayerConfig& config, Node node) {
  const json& layer_config = config.layer().config;
  node.kind = NodeKind::Affine;
  node.scale = config.per_channel(config.field("scale"), node.cin, "scale");
  node.shift = config.per_channel(layer_config.contains("offset") ? layer_config.at("offset") : json(0.0), node.cin,
                                  "offset");
  return graph_.add(std::move(node));
}

int Translator::normalization(const LayerConfig& config, Node node) {
  const keras::Layer& layer = config.layer();
  const uint32_t channels = node.cin;
  if (config.flag("invert", false)) config.fail("invert=True is not supported");
  if (layer.config.contains("axis")) {
    const json& axis = layer.config.at("axis");
    const bool last = axis == -1 || axis == 3 || axis == json::array({-1}) || axis == json::array({3});
    if (!last) config.fail("only normalization over the channel axis is supported, axis " + axis.dump());
  }
  std::vector<double> mean, variance;
  if (config.has("mean")) {
    mean = config.per_channel(layer.config.at("mean"), channels, "mean");
    variance = config.per_channel(config.field("variance"), channels, "variance");
  } else {
    auto flat = [&](const char* name) {
      auto it = layer.weights.find(name);
      if (it == layer.weights.end()) config.fail(std::string("weight '") + name + "' is missing from the file");
      std::vector<double> values(it->second.values.begin(), it->second.values.end());
      if (values.size() == 1) values.assign(channels, values[0]);
      if (values.size() != channels) config.fail(std::string("weight '") + name + "' does not match the channels");
      return values;
    };
    mean = flat("mean");
    variance = flat("variance");
  }
  node.kind = NodeKind::Affine;
  for (uint32_t c = 0; c < channels; ++c) {
    if (!(variance[c] >= 0)) config.fail("negative variance");
    const double inv_std = 1.0 / std::max(std::sqrt(variance[c]), 1e-7);
    node.scale.push_back(inv_std);
    node.shift.push_back(-mean[c] * inv_std);
  }
  return graph_.add(std::move(node));
}

int Translator::batch_normalization(const LayerConfig& config, Node node) {
  const json& layer_config = config.layer().config;
  const Shape in = node.shape;
  const json axis = layer_config.contains("axis") ? layer_config.at("axis") : json(-1);
  const bool last = axis == -1 || axis == 3 || axis == json::array({-1}) || axis == json::array({3}) ||
                    (in.h == 1 && in.w == 1 && (axis == 1 || axis == json::array({1})));
  if (!last) config.fail("only BatchNormalization over the channel axis is supported, axis " + axis.dump());
  const double epsilon = config.number("epsilon", 1e-3);
  const std::vector<int64_t> vec = {in.c};
  const keras::Array* gamma = config.flag("scale", true) ? &config.weight("gamma", vec) : nullptr;
  const keras::Array* beta = config.flag("center", true) ? &config.weight("beta", vec) : nullptr;
  const keras::Array& mean = config.weight("moving_mean", vec);
  const keras::Array& var = config.weight("moving_variance", vec);
  node.kind = NodeKind::Affine;
  for (uint32_t c = 0; c < in.c; ++c) {
    if (!(var.values[c] + epsilon > 0)) config.fail("moving_variance + epsilon is not positive");
    const double s = (gamma ? gamma->values[c] : 1.0) / std::sqrt(double{var.values[c]} + epsilon);
    node.scale.push_back(s);
    node.shift.push_back((beta ? beta->values[c] : 0.0) - mean.values[c] * s);
  }
  return graph_.add(std::move(node));
}

int Translator::conv2d(const LayerConfig& config, Node node) {
  const Shape in = node.shape;
  config.check_channels_last();
  config.check_no_dilation();
  node.kind = NodeKind::Conv;
  node.cout = config.positive_int("filters");
  std::tie(node.kh, node.kw) = config.int_pair("kernel_size");
  std::tie(node.stride_h, node.stride_w) = config.optional_pair("strides", {1, 1});
  node.padding = config.padding();
  read_weights(config, node, {node.kh, node.kw, in.c, node.cout});
  set_window(config, node, in);
  node.shape.c = node.cout;
  return graph_.add(std::move(node));
}

int Translator::depthwise_conv2d(const LayerConfig& config, Node node) {
  const Shape in = node.shape;
  config.check_channels_last();
  config.check_no_dilation();
  node.kind = NodeKind::Depthwise;
  node.multiplier = config.layer().config.contains("depth_multiplier") ? config.positive_int("depth_multiplier") : 1;
  node.cout = in.c * node.multiplier;
  std::tie(node.kh, node.kw) = config.int_pair("kernel_size");
  std::tie(node.stride_h, node.stride_w) = config.optional_pair("strides", {1, 1});
  node.padding = config.padding();
  read_weights(config, node, {node.kh, node.kw, in.c, node.multiplier});
  set_window(config, node, in);
  node.shape.c = node.cout;
  return graph_.add(std::move(node));
}

int Translator::dense(const LayerConfig& config, Node node) {
  const Shape in = node.shape;
  const bool spatial = in.elements() != in.c;
  if (spatial) {
    // Dense on a spatial tensor acts on the last axis: a 1x1 convolution (same height and width).
    config.check_channels_last();
    node.kind = NodeKind::Conv;
  } else {
    node.kind = NodeKind::Dense;
  }
  node.cout = config.positive_int("units");
  read_weights(config, node, {in.c, node.cout});
  node.shape = {spatial ? in.h : 1, spatial ? in.w : 1, node.cout};
  return graph_.add(std::move(node));
}

int Translator::activation(const LayerConfig& config, Node node) {
  node.kind = NodeKind::Affine;
  std::tie(node.act, node.act_max) = config.activation(config.field("activation"));
  return graph_.add(std::move(node));
}

int Translator::relu(const LayerConfig& config, Node node) {
  if (config.number("negative_slope", 0) != 0 || config.number("threshold", 0) != 0) {
    config.fail("negative_slope and threshold other than 0 are not supported");
  }
  node.kind = NodeKind::Affine;
  node.act = Activation::Relu;
  node.act_max = static_cast<float>(config.number("max_value", kInf));
  if (!(node.act_max > 0)) config.fail("max_value must be positive");
  return graph_.add(std::move(node));
}

int Translator::softmax(const LayerConfig&, Node node) {
  node.kind = NodeKind::Affine;
  node.act = Activation::Softmax;
  return graph_.add(std::move(node));
}

int Translator::add_or_multiply(const LayerConfig& config, Node node) {
  const keras::Layer& layer = config.layer();
  const bool add = layer.class_name == "Add";
  if (layer.inputs.size() < 2) config.fail("needs at least 2 inputs");
  if (!add && layer.inputs.size() != 2) config.fail("only 2 inputs are supported");
  // Several inputs become a chain of binary ops; only the last one carries the layer's name as its value.
  int accumulated = node.inputs[0];
  for (size_t i = 1; i < layer.inputs.size(); ++i) {
    const int y = input_of(config, i);
    const Shape a = graph_.at(accumulated).shape, b = graph_.at(y).shape;
    Node binary;
    binary.layer = layer.name;
    binary.order = node.order;
    binary.kind = add ? NodeKind::Add : NodeKind::Multiply;
    binary.inputs = {accumulated, y};
    const bool b_is_gate = b.h == 1 && b.w == 1 && b.c == a.c;
    const bool a_is_gate = a.h == 1 && a.w == 1 && a.c == b.c;
    if (a == b) {
      binary.shape = a;
    } else if (!add && (a_is_gate || b_is_gate)) {
      if (a_is_gate) std::swap(binary.inputs[0], binary.inputs[1]);  // the broadcast operand goes second
      binary.shape = a_is_gate ? b : a;
    } else {
      config.fail("input shapes differ and do not broadcast per channel");
    }
    accumulated = graph_.add(std::move(binary));
  }
  return accumulated;
}

int Translator::global_average_pooling(const LayerConfig& config, Node node) {
  config.check_channels_last();
  node.kind = NodeKind::GlobalAvgPool;
  node.shape = {1, 1, node.cin};
  return graph_.add(std::move(node));
}

int Translator::pooling(const LayerConfig& config, Node node) {
  const Shape in = node.shape;
  config.check_channels_last();
  node.kind = config.layer().class_name == "MaxPooling2D" ? NodeKind::MaxPool : NodeKind::AvgPool;
  std::tie(node.kh, node.kw) = config.int_pair("pool_size");
  std::tie(node.stride_h, node.stride_w) = config.optional_pair("strides", {node.kh, node.kw});
  node.padding = config.padding();
  set_window(config, node, in);
  return graph_.add(std::move(node));
}

int Translator::zero_padding(const LayerConfig& config, Node node) {
  const Shape in = node.shape;
  config.check_channels_last();
  node.kind = NodeKind::ZeroPad;
  const json& p = config.field("padding");
  auto amount = [&](const json& v) -> uint32_t {
    const std::optional<int64_t> pixels = keras::config_int(v, 0, 4096);
    if (!pixels) config.fail("padding must be non-negative integers");
    return static_cast<uint32_t>(*pixels);
  };
  if (p.is_number_integer()) {
    node.pad_top = node.pad_bottom = node.pad_left = node.pad_right = amount(p);
  } else if (p.is_array() && p.size() == 2 && p[0].is_array() && p[1].is_array() && p[0].size() == 2 &&
             p[1].size() == 2) {
    node.pad_top = amount(p[0][0]);
    node.pad_bottom = amount(p[0][1]);
    node.pad_left = amount(p[1][0]);
    node.pad_right = amount(p[1][1]);
  } else if (p.is_array() && p.size() == 2) {
    node.pad_top = node.pad_bottom = amount(p[0]);
    node.pad_left = node.pad_right = amount(p[1]);
  } else {
    config.fail("padding " + p.dump() + " is not understood");
  }
  node.shape.h = in.h + node.pad_top + node.pad_bottom;
  node.shape.w = in.w + node.pad_left + node.pad_right;
  return graph_.add(std::move(node));
}

int Translator::reshape(const LayerConfig& config, Node node) {
  const Shape in = node.shape;
  Shape target{1, 1, static_cast<uint32_t>(in.elements())};
  if (config.layer().class_name == "Reshape") {
    const json& t = config.field("target_shape");
    if (!t.is_array() || t.empty() || t.size() > 3) config.fail("target_shape must have 1 to 3 dims");
    std::vector<int64_t> dims;
    int unknown = -1;
    int64_t known = 1;
    for (size_t i = 0; i < t.size(); ++i) {
      const std::optional<int64_t> d = keras::config_int(t[i], std::numeric_limits<int64_t>::min(),
                                                         std::numeric_limits<int64_t>::max());
      if (!d) config.fail("target_shape must be integers");
      if (*d == -1 && unknown < 0) {
        unknown = static_cast<int>(i);
      } else if (*d <= 0) {
        config.fail("target_shape " + t.dump() + " is not supported");
      } else {
        known *= *d;
      }
      dims.push_back(*d);
    }
    const int64_t total = static_cast<int64_t>(in.elements());
    if (unknown >= 0) {
      if (total % known != 0) config.fail("target_shape " + t.dump() + " does not fit the input");
      dims[static_cast<size_t>(unknown)] = total / known;
      known = total;
    }
    if (known != total) config.fail("target_shape " + t.dump() + " does not fit the input");
    std::array<int64_t, 3> hwc = {1, 1, 1};  // fewer dims fill the trailing axes
    std::copy(dims.begin(), dims.end(), hwc.end() - static_cast<std::ptrdiff_t>(dims.size()));
    target = {static_cast<uint32_t>(hwc[0]), static_cast<uint32_t>(hwc[1]), static_cast<uint32_t>(hwc[2])};
  }
  node.shape = target;
  if (target == in) {
    node.kind = NodeKind::Identity;  // e.g. the squeeze-excite (C) -> (1, 1, C): same bytes, same shape
    node.alias = node.inputs[0];
  } else {
    node.kind = NodeKind::Reshape;
  }
  return graph_.add(std::move(node));
}

}  // namespace

Graph translate(const keras::Model& model, const LoweringOptions& options) {
  return Translator(model, options).run();
}

}  // namespace lowering

const std::vector<std::string>& supported_layer_classes() {
  static const std::vector<std::string> classes = [] {
    std::vector<std::string> names;
    for (const lowering::Translator::Rule& rule : lowering::Translator::rules()) names.emplace_back(rule.class_name);
    return names;
  }();
  return classes;
}

}  // namespace effcam::converter
