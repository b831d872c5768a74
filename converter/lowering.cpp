#include "converter/lowering.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <functional>
#include <numeric>
#include <set>

#include "effcam/error.hpp"
#include "format/graph.h"

namespace effcam::converter {
namespace {

using format::Activation;
using format::OpKind;
using format::Padding;
using format::TapKind;
using nlohmann::json;

constexpr float kInf = std::numeric_limits<float>::infinity();

std::string join_dims(const std::vector<int64_t>& dims) {
  std::string text;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i > 0) text += ',';
    text += std::to_string(dims[i]);
  }
  return text;
}

const std::set<std::string>& identity_classes() {
  // Identities at inference (training-only noise, dropout and augmentation).
  static const std::set<std::string> classes = {
      "Dropout",          "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
      "GaussianDropout",  "AlphaDropout",     "RandomFlip",       "RandomRotation",   "RandomZoom",
      "RandomTranslation", "RandomContrast",  "RandomBrightness", "ActivityRegularization"};
  return classes;
}

enum class NodeKind {
  Input, Identity, Affine, Conv, Depthwise, Dense, SqueezeExcite, Add, Multiply,
  GlobalAvgPool, MaxPool, AvgPool, ZeroPad, Reshape,
};

// One value-producing step of the graph while it is being fused. Weights stay in Keras layout, in double.
struct Node {
  NodeKind kind = NodeKind::Identity;
  std::string layer;        // the Keras layer that created it (the op's name)
  std::vector<int> inputs;  // node ids
  Shape shape;              // output shape
  size_t order = 0;         // emission position: the last Keras layer fused into it
  bool dead = false;

  uint32_t kh = 1, kw = 1, stride_h = 1, stride_w = 1;
  Padding padding = Padding::Valid;
  uint32_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;

  std::vector<double> kernel, bias;    // Conv (kh,kw,cin,cout) / Depthwise (kh,kw,cin,mult) / Dense (in,units)
  std::vector<double> kernel2, bias2;  // SqueezeExcite: the expand layer (hidden, cout)
  uint32_t cin = 0, cout = 0, multiplier = 1, hidden = 0;
  std::vector<double> scale, shift;    // Affine: y = x * scale + shift (empty = 1 / 0)

  Activation act = Activation::Linear;
  float act_max = kInf;
  Activation act2 = Activation::Linear;

  int residual = -1;          // Conv / Affine: added after the activation
  int input_scale = -1;       // Conv: per-input-channel gate (a folded squeeze-excite Multiply)
  int mean_output = -1;       // Depthwise: the GlobalAvgPool node computed as its second output
  int second_output_of = -1;  // GlobalAvgPool folded into that Depthwise node
  int alias = -1;             // Identity: the node whose value this is
};

struct TapInfo {
  int node = -1;
  TapKind kind = TapKind::Output;
  std::vector<double> scale, shift;  // BeforeAffine
};

class Lowering {
 public:
  Lowering(const keras::Model& model, const LoweringOptions& options) : model_(model), options_(options) {
    keras2_ = model.keras_version.rfind("2.", 0) == 0;
  }

  EffcamBuilder run(LoweringSummary& summary);

 private:
  // --- reading layers -----------------------------------------------------------------------------
  [[noreturn]] void fail(const keras::Layer& layer, const std::string& what) const {
    throw Error("layer '" + layer.name + "' (" + layer.class_name + "): " + what);
  }
  const json& field(const keras::Layer& layer, const char* key) const;
  uint32_t positive_int(const keras::Layer& layer, const json& value, const char* key) const;
  std::pair<uint32_t, uint32_t> int_pair(const keras::Layer& layer, const char* key) const;
  std::pair<uint32_t, uint32_t> optional_pair(const keras::Layer& layer, const char* key,
                                              std::pair<uint32_t, uint32_t> fallback) const;
  Padding padding_of(const keras::Layer& layer) const;
  bool flag(const keras::Layer& layer, const char* key, bool fallback) const;
  double number(const keras::Layer& layer, const char* key, double fallback) const;
  void check_channels_last(const keras::Layer& layer) const;
  void check_no_dilation(const keras::Layer& layer) const;
  std::pair<Activation, float> activation_of(const keras::Layer& layer, const json& value) const;
  std::pair<Activation, float> layer_activation(const keras::Layer& layer) const;
  const keras::Array& weight(const keras::Layer& layer, const char* name,
                             const std::vector<int64_t>& expected_shape) const;
  const keras::Array* optional_weight(const keras::Layer& layer, const char* name,
                                      const std::vector<int64_t>& expected_shape) const;
  std::vector<double> per_channel(const keras::Layer& layer, const json& value, uint32_t channels,
                                  const char* key) const;

  // The kernel (in Keras layout, shape checked), the optional bias and the activation of a conv or dense layer.
  void read_weights(const keras::Layer& layer, Node& node, const std::vector<int64_t>& kernel_shape) const;
  int add_node(Node node);
  int input_of(const keras::Layer& layer, size_t index) const;
  void translate(const keras::Layer& layer, size_t position);
  void translate_window(const keras::Layer& layer, Node& node, const Shape& in);

  // --- fusion passes ------------------------------------------------------------------------------
  int resolve(int id) const;
  std::vector<int> use_counts() const;
  void retarget_taps(int from, TapKind from_kind, int to, TapKind to_kind);
  // Every use of node `from`'s value (inputs, residual, gate, the model output) becomes a use of `to`'s.
  void redirect_uses(int from, int to);
  // Node `into` takes over node `absorbed` (an activation or BatchNorm after it): its activation, its place in the
  // execution order, its taps and its uses.
  void absorb(int absorbed, int into);
  void remove_identities();
  void fold_preprocessing();
  void fold_zero_padding();
  void fold_batchnorm_into_producers();
  void fold_affine_into_dense();
  void fuse_activations();
  void fold_channel_gates();
  void fuse_squeeze_excite();
  void fuse_depthwise_means();
  void fuse_residual_adds();

  // --- emission -----------------------------------------------------------------------------------
  EffcamBuilder emit(LoweringSummary& summary);

  const keras::Model& model_;
  const LoweringOptions& options_;
  bool keras2_ = false;
  std::vector<Node> nodes_;
  std::map<std::string, int> value_of_;  // Keras layer name -> node id
  std::map<std::string, TapInfo> taps_;
  int input_node_ = -1;
  int output_node_ = -1;
  double pre_scale_[4] = {1, 1, 1, 1}, pre_offset_[4] = {0, 0, 0, 0};
  uint64_t keras_parameters_ = 0;
};

// ------------------------------------------------------------------------------------------------
// Reading layer configs

const json& Lowering::field(const keras::Layer& layer, const char* key) const {
  if (!layer.config.is_object() || !layer.config.contains(key)) fail(layer, std::string("config has no '") + key + "'");
  return layer.config.at(key);
}

uint32_t Lowering::positive_int(const keras::Layer& layer, const json& value, const char* key) const {
  if (!value.is_number_integer() || value.get<int64_t>() <= 0 || value.get<int64_t>() > (1 << 20)) {
    fail(layer, std::string("'") + key + "' must be a positive integer, got " + value.dump());
  }
  return static_cast<uint32_t>(value.get<int64_t>());
}

std::pair<uint32_t, uint32_t> Lowering::int_pair(const keras::Layer& layer, const char* key) const {
  const json& value = field(layer, key);
  if (value.is_number_integer()) {
    uint32_t v = positive_int(layer, value, key);
    return {v, v};
  }
  if (!value.is_array() || value.size() != 2) fail(layer, std::string("'") + key + "' must be 2 integers");
  return {positive_int(layer, value[0], key), positive_int(layer, value[1], key)};
}

std::pair<uint32_t, uint32_t> Lowering::optional_pair(const keras::Layer& layer, const char* key,
                                                      std::pair<uint32_t, uint32_t> fallback) const {
  if (!layer.config.contains(key) || layer.config.at(key).is_null()) return fallback;
  return int_pair(layer, key);
}

Padding Lowering::padding_of(const keras::Layer& layer) const {
  const json& value = field(layer, "padding");
  if (value == "same") return Padding::Same;
  if (value == "valid") return Padding::Valid;
  fail(layer, "padding " + value.dump() + " is not supported (same, valid)");
}

bool Lowering::flag(const keras::Layer& layer, const char* key, bool fallback) const {
  if (!layer.config.contains(key)) return fallback;
  const json& value = layer.config.at(key);
  if (!value.is_boolean()) fail(layer, std::string("'") + key + "' must be true or false");
  return value.get<bool>();
}

double Lowering::number(const keras::Layer& layer, const char* key, double fallback) const {
  if (!layer.config.contains(key) || layer.config.at(key).is_null()) return fallback;
  const json& value = layer.config.at(key);
  if (!value.is_number() || !std::isfinite(value.get<double>())) {
    fail(layer, std::string("'") + key + "' must be a finite number");
  }
  return value.get<double>();
}

void Lowering::check_channels_last(const keras::Layer& layer) const {
  if (layer.config.contains("data_format") && !layer.config.at("data_format").is_null() &&
      layer.config.at("data_format") != "channels_last") {
    fail(layer, "data_format " + layer.config.at("data_format").dump() + " is not supported (channels_last)");
  }
}

void Lowering::check_no_dilation(const keras::Layer& layer) const {
  if (optional_pair(layer, "dilation_rate", {1, 1}) != std::pair<uint32_t, uint32_t>{1, 1}) {
    fail(layer, "dilation_rate other than 1 is not supported");
  }
  if (layer.config.contains("groups") && layer.config.at("groups") != 1) {
    fail(layer, "groups other than 1 are not supported");
  }
}

std::pair<Activation, float> Lowering::activation_of(const keras::Layer& layer, const json& value) const {
  if (value.is_null()) return {Activation::Linear, kInf};
  if (!value.is_string()) {
    const bool named = value.is_object() && value.contains("class_name") && value["class_name"].is_string();
    fail(layer, "activation " + (named ? value["class_name"].get<std::string>() : value.dump()) +
                    " is not supported (a layer or custom object as activation)");
  }
  const std::string name = value.get<std::string>();
  if (name == "linear") return {Activation::Linear, kInf};
  if (name == "relu") return {Activation::Relu, kInf};
  if (name == "relu6") return {Activation::Relu, 6.0f};
  if (name == "sigmoid") return {Activation::Sigmoid, kInf};
  if (name == "swish" || name == "silu") return {Activation::Swish, kInf};
  if (name == "hard_sigmoid") return {keras2_ ? Activation::HardSigmoidKeras2 : Activation::HardSigmoid, kInf};
  if (name == "hard_swish" || name == "hard_silu") return {Activation::HardSwish, kInf};
  if (name == "tanh") return {Activation::Tanh, kInf};
  if (name == "softmax") return {Activation::Softmax, kInf};
  fail(layer, "activation '" + name +
                  "' is not supported (linear, relu, relu6, sigmoid, swish/silu, hard_sigmoid, hard_swish, tanh, "
                  "softmax)");
}

std::pair<Activation, float> Lowering::layer_activation(const keras::Layer& layer) const {
  if (!layer.config.contains("activation")) return {Activation::Linear, kInf};
  return activation_of(layer, layer.config.at("activation"));
}

const keras::Array* Lowering::optional_weight(const keras::Layer& layer, const char* name,
                                              const std::vector<int64_t>& expected_shape) const {
  auto it = layer.weights.find(name);
  if (it == layer.weights.end()) return nullptr;
  const keras::Array& array = it->second;
  int64_t expected = 1;
  for (int64_t d : expected_shape) expected *= d;
  int64_t stored = 1;
  for (int64_t d : array.shape) stored *= d;
  if (stored != expected || static_cast<int64_t>(array.values.size()) != expected) {
    fail(layer, std::string("weight '") + name + "' has shape (" + join_dims(array.shape) +
                    "), the config implies (" + join_dims(expected_shape) + ")");
  }
  return &array;
}

const keras::Array& Lowering::weight(const keras::Layer& layer, const char* name,
                                     const std::vector<int64_t>& expected_shape) const {
  const keras::Array* array = optional_weight(layer, name, expected_shape);
  if (!array) fail(layer, std::string("weight '") + name + "' is missing from the file");
  return *array;
}

std::vector<double> Lowering::per_channel(const keras::Layer& layer, const json& value, uint32_t channels,
                                          const char* key) const {
  std::vector<double> out;
  auto push = [&](const json& v) {
    if (!v.is_number()) fail(layer, std::string("'") + key + "' must be numbers");
    out.push_back(v.get<double>());
  };
  std::function<void(const json&)> flatten = [&](const json& v) {
    if (v.is_array()) {
      for (const json& item : v) flatten(item);
    } else {
      push(v);
    }
  };
  flatten(value);
  if (out.size() == 1) out.assign(channels, out[0]);
  if (out.size() != channels) {
    fail(layer, std::string("'") + key + "' has " + std::to_string(out.size()) + " values for " +
                    std::to_string(channels) + " channels");
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// Translation: one node per Keras layer

void Lowering::read_weights(const keras::Layer& layer, Node& node, const std::vector<int64_t>& kernel_shape) const {
  const keras::Array& k = weight(layer, "kernel", kernel_shape);
  node.kernel.assign(k.values.begin(), k.values.end());
  if (flag(layer, "use_bias", true)) {
    const keras::Array& b = weight(layer, "bias", {node.cout});
    node.bias.assign(b.values.begin(), b.values.end());
  }
  std::tie(node.act, node.act_max) = layer_activation(layer);
}

int Lowering::add_node(Node node) {
  nodes_.push_back(std::move(node));
  return static_cast<int>(nodes_.size()) - 1;
}

int Lowering::input_of(const keras::Layer& layer, size_t index) const {
  if (index >= layer.inputs.size()) fail(layer, "has too few inputs");
  auto it = value_of_.find(layer.inputs[index]);
  if (it == value_of_.end()) fail(layer, "input '" + layer.inputs[index] + "' is not produced before it");
  return it->second;
}

void Lowering::translate_window(const keras::Layer& layer, Node& node, const Shape& in) {
  const uint32_t padded_h = in.h + node.pad_top + node.pad_bottom;
  const uint32_t padded_w = in.w + node.pad_left + node.pad_right;
  try {
    node.shape.h = window(padded_h, node.kh, node.stride_h, node.padding).out;
    node.shape.w = window(padded_w, node.kw, node.stride_w, node.padding).out;
  } catch (const Error& e) {
    fail(layer, e.what());
  }
}

void Lowering::translate(const keras::Layer& layer, size_t position) {
  const std::string& cls = layer.class_name;
  for (const auto& [name, array] : layer.weights) keras_parameters_ += array.values.size();
  Node node;
  node.layer = layer.name;
  node.order = position;
  taps_[layer.name] = TapInfo{};

  if (cls == "InputLayer") {
    if (input_node_ >= 0) fail(layer, "a second input is not supported (one image input)");
    node.kind = NodeKind::Input;
    const auto& shape = model_.input_shape;
    if (shape.size() != 3) fail(layer, "input must be an image (H, W, C)");
    int64_t h = shape[0], w = shape[1], c = shape[2];
    if (options_.input_size) {
      h = options_.input_size->first;
      w = options_.input_size->second;
    }
    if (h <= 0 || w <= 0) fail(layer, "the input size is not fixed in the model: pass --input-size H,W");
    if (h > 8192 || w > 8192) fail(layer, "input size above 8192 is not supported");
    if (c != 1 && c != 3) fail(layer, "input with " + std::to_string(c) + " channels is not supported (1 or 3)");
    node.shape = {static_cast<uint32_t>(h), static_cast<uint32_t>(w), static_cast<uint32_t>(c)};
    input_node_ = add_node(std::move(node));
    value_of_[layer.name] = input_node_;
    taps_.erase(layer.name);
    return;
  }
  if (input_node_ < 0) fail(layer, "appears before the model's InputLayer");

  const int x = input_of(layer, 0);
  const Shape in = nodes_[static_cast<size_t>(x)].shape;
  node.inputs = {x};
  node.shape = in;
  node.cin = in.c;

  if (identity_classes().count(cls)) {
    node.kind = NodeKind::Identity;
    node.alias = x;
  } else if (cls == "Rescaling") {
    node.kind = NodeKind::Affine;
    node.scale = per_channel(layer, field(layer, "scale"), in.c, "scale");
    node.shift = per_channel(layer, layer.config.contains("offset") ? layer.config.at("offset") : json(0.0), in.c,
                             "offset");
  } else if (cls == "Normalization") {
    if (flag(layer, "invert", false)) fail(layer, "invert=True is not supported");
    if (layer.config.contains("axis")) {
      const json& axis = layer.config.at("axis");
      const bool last = axis == -1 || axis == 3 || axis == json::array({-1}) || axis == json::array({3});
      if (!last) fail(layer, "only normalization over the channel axis is supported, axis " + axis.dump());
    }
    std::vector<double> mean, variance;
    if (layer.config.contains("mean") && !layer.config.at("mean").is_null()) {
      mean = per_channel(layer, layer.config.at("mean"), in.c, "mean");
      variance = per_channel(layer, field(layer, "variance"), in.c, "variance");
    } else {
      auto flat = [&](const char* name) {
        auto it = layer.weights.find(name);
        if (it == layer.weights.end()) fail(layer, std::string("weight '") + name + "' is missing from the file");
        std::vector<double> values(it->second.values.begin(), it->second.values.end());
        if (values.size() == 1) values.assign(in.c, values[0]);
        if (values.size() != in.c) fail(layer, std::string("weight '") + name + "' does not match the channels");
        return values;
      };
      mean = flat("mean");
      variance = flat("variance");
    }
    node.kind = NodeKind::Affine;
    for (uint32_t c = 0; c < in.c; ++c) {
      if (!(variance[c] >= 0)) fail(layer, "negative variance");
      const double inv_std = 1.0 / std::max(std::sqrt(variance[c]), 1e-7);
      node.scale.push_back(inv_std);
      node.shift.push_back(-mean[c] * inv_std);
    }
  } else if (cls == "BatchNormalization") {
    const json axis = layer.config.contains("axis") ? layer.config.at("axis") : json(-1);
    const bool last = axis == -1 || axis == 3 || axis == json::array({-1}) || axis == json::array({3}) ||
                      (in.h == 1 && in.w == 1 && (axis == 1 || axis == json::array({1})));
    if (!last) fail(layer, "only BatchNormalization over the channel axis is supported, axis " + axis.dump());
    const double epsilon = number(layer, "epsilon", 1e-3);
    const std::vector<int64_t> vec = {in.c};
    const keras::Array* gamma = flag(layer, "scale", true) ? &weight(layer, "gamma", vec) : nullptr;
    const keras::Array* beta = flag(layer, "center", true) ? &weight(layer, "beta", vec) : nullptr;
    const keras::Array& mean = weight(layer, "moving_mean", vec);
    const keras::Array& var = weight(layer, "moving_variance", vec);
    node.kind = NodeKind::Affine;
    for (uint32_t c = 0; c < in.c; ++c) {
      if (!(var.values[c] + epsilon > 0)) fail(layer, "moving_variance + epsilon is not positive");
      const double s = (gamma ? gamma->values[c] : 1.0) / std::sqrt(double{var.values[c]} + epsilon);
      node.scale.push_back(s);
      node.shift.push_back((beta ? beta->values[c] : 0.0) - mean.values[c] * s);
    }
  } else if (cls == "Conv2D" || (cls == "Dense" && in.elements() != in.c)) {
    // Dense on a spatial tensor acts on the last axis: a 1x1 convolution.
    check_channels_last(layer);
    node.kind = NodeKind::Conv;
    if (cls == "Conv2D") {
      check_no_dilation(layer);
      node.cout = positive_int(layer, field(layer, "filters"), "filters");
      std::tie(node.kh, node.kw) = int_pair(layer, "kernel_size");
      std::tie(node.stride_h, node.stride_w) = optional_pair(layer, "strides", {1, 1});
      node.padding = padding_of(layer);
    } else {
      node.cout = positive_int(layer, field(layer, "units"), "units");
    }
    read_weights(layer, node, cls == "Conv2D" ? std::vector<int64_t>{node.kh, node.kw, in.c, node.cout}
                                              : std::vector<int64_t>{in.c, node.cout});
    translate_window(layer, node, in);
    node.shape.c = node.cout;
  } else if (cls == "DepthwiseConv2D") {
    check_channels_last(layer);
    check_no_dilation(layer);
    node.kind = NodeKind::Depthwise;
    node.multiplier = layer.config.contains("depth_multiplier")
                          ? positive_int(layer, layer.config.at("depth_multiplier"), "depth_multiplier")
                          : 1;
    node.cout = in.c * node.multiplier;
    std::tie(node.kh, node.kw) = int_pair(layer, "kernel_size");
    std::tie(node.stride_h, node.stride_w) = optional_pair(layer, "strides", {1, 1});
    node.padding = padding_of(layer);
    read_weights(layer, node, {node.kh, node.kw, in.c, node.multiplier});
    translate_window(layer, node, in);
    node.shape.c = node.cout;
  } else if (cls == "Dense") {
    node.kind = NodeKind::Dense;
    node.cout = positive_int(layer, field(layer, "units"), "units");
    read_weights(layer, node, {in.c, node.cout});
    node.shape = {1, 1, node.cout};
  } else if (cls == "Activation") {
    node.kind = NodeKind::Affine;
    std::tie(node.act, node.act_max) = activation_of(layer, field(layer, "activation"));
  } else if (cls == "ReLU") {
    if (number(layer, "negative_slope", 0) != 0 || number(layer, "threshold", 0) != 0) {
      fail(layer, "negative_slope and threshold other than 0 are not supported");
    }
    node.kind = NodeKind::Affine;
    node.act = Activation::Relu;
    node.act_max = static_cast<float>(number(layer, "max_value", kInf));
    if (!(node.act_max > 0)) fail(layer, "max_value must be positive");
  } else if (cls == "Softmax") {
    node.kind = NodeKind::Affine;
    node.act = Activation::Softmax;
  } else if (cls == "Add" || cls == "Multiply") {
    if (layer.inputs.size() < 2) fail(layer, "needs at least 2 inputs");
    if (cls == "Multiply" && layer.inputs.size() != 2) fail(layer, "only 2 inputs are supported");
    // Several inputs become a chain of binary ops; only the last one carries the layer's name as its value.
    int accumulated = x;
    for (size_t i = 1; i < layer.inputs.size(); ++i) {
      const int y = input_of(layer, i);
      Shape a = nodes_[static_cast<size_t>(accumulated)].shape, b = nodes_[static_cast<size_t>(y)].shape;
      Node binary;
      binary.layer = layer.name;
      binary.order = position;
      binary.kind = cls == "Add" ? NodeKind::Add : NodeKind::Multiply;
      binary.inputs = {accumulated, y};
      const bool b_is_gate = b.h == 1 && b.w == 1 && b.c == a.c;
      const bool a_is_gate = a.h == 1 && a.w == 1 && a.c == b.c;
      if (a == b) {
        binary.shape = a;
      } else if (cls == "Multiply" && (a_is_gate || b_is_gate)) {
        if (a_is_gate) std::swap(binary.inputs[0], binary.inputs[1]);  // the broadcast operand goes second
        binary.shape = a_is_gate ? b : a;
      } else {
        fail(layer, "input shapes differ and do not broadcast per channel");
      }
      accumulated = add_node(std::move(binary));
    }
    value_of_[layer.name] = accumulated;
    taps_[layer.name].node = accumulated;
    return;
  } else if (cls == "GlobalAveragePooling2D") {
    check_channels_last(layer);
    node.kind = NodeKind::GlobalAvgPool;
    node.shape = {1, 1, in.c};
  } else if (cls == "MaxPooling2D" || cls == "AveragePooling2D") {
    check_channels_last(layer);
    node.kind = cls == "MaxPooling2D" ? NodeKind::MaxPool : NodeKind::AvgPool;
    std::tie(node.kh, node.kw) = int_pair(layer, "pool_size");
    std::tie(node.stride_h, node.stride_w) = optional_pair(layer, "strides", {node.kh, node.kw});
    node.padding = padding_of(layer);
    translate_window(layer, node, in);
  } else if (cls == "ZeroPadding2D") {
    check_channels_last(layer);
    node.kind = NodeKind::ZeroPad;
    const json& p = field(layer, "padding");
    auto amount = [&](const json& v) -> uint32_t {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 4096) {
        fail(layer, "padding must be non-negative integers");
      }
      return static_cast<uint32_t>(v.get<int64_t>());
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
      fail(layer, "padding " + p.dump() + " is not understood");
    }
    node.shape.h = in.h + node.pad_top + node.pad_bottom;
    node.shape.w = in.w + node.pad_left + node.pad_right;
  } else if (cls == "Reshape" || cls == "Flatten") {
    Shape target{1, 1, static_cast<uint32_t>(in.elements())};
    if (cls == "Reshape") {
      const json& t = field(layer, "target_shape");
      if (!t.is_array() || t.empty() || t.size() > 3) fail(layer, "target_shape must have 1 to 3 dims");
      std::vector<int64_t> dims;
      int unknown = -1;
      int64_t known = 1;
      for (size_t i = 0; i < t.size(); ++i) {
        if (!t[i].is_number_integer()) fail(layer, "target_shape must be integers");
        int64_t d = t[i].get<int64_t>();
        if (d == -1 && unknown < 0) {
          unknown = static_cast<int>(i);
        } else if (d <= 0) {
          fail(layer, "target_shape " + t.dump() + " is not supported");
        } else {
          known *= d;
        }
        dims.push_back(d);
      }
      const int64_t total = static_cast<int64_t>(in.elements());
      if (unknown >= 0) {
        if (total % known != 0) fail(layer, "target_shape " + t.dump() + " does not fit the input");
        dims[static_cast<size_t>(unknown)] = total / known;
        known = total;
      }
      if (known != total) fail(layer, "target_shape " + t.dump() + " does not fit the input");
      while (dims.size() < 3) dims.insert(dims.begin(), 1);
      target = {static_cast<uint32_t>(dims[0]), static_cast<uint32_t>(dims[1]), static_cast<uint32_t>(dims[2])};
    }
    node.shape = target;
    if (target == in) {
      node.kind = NodeKind::Identity;  // e.g. the squeeze-excite (C) -> (1, 1, C): same bytes, same shape
      node.alias = x;
    } else {
      node.kind = NodeKind::Reshape;
    }
  } else {
    std::string supported;
    for (const std::string& name : supported_layer_classes()) {
      if (!supported.empty()) supported += ", ";
      supported += name;
    }
    fail(layer, "is not supported; supported layers: " + supported);
  }
  const int id = add_node(std::move(node));
  value_of_[layer.name] = id;
  taps_[layer.name].node = id;
}

// ------------------------------------------------------------------------------------------------
// Fusion passes

int Lowering::resolve(int id) const {
  while (id >= 0 && nodes_[static_cast<size_t>(id)].kind == NodeKind::Identity) {
    id = nodes_[static_cast<size_t>(id)].alias;
  }
  return id;
}

std::vector<int> Lowering::use_counts() const {
  std::vector<int> uses(nodes_.size(), 0);
  for (const Node& node : nodes_) {
    if (node.dead) continue;
    for (int in : node.inputs) ++uses[static_cast<size_t>(in)];
    if (node.residual >= 0) ++uses[static_cast<size_t>(node.residual)];
    if (node.input_scale >= 0) ++uses[static_cast<size_t>(node.input_scale)];
  }
  ++uses[static_cast<size_t>(output_node_)];
  return uses;
}

void Lowering::retarget_taps(int from, TapKind from_kind, int to, TapKind to_kind) {
  for (auto& [name, tap] : taps_) {
    if (tap.node == from && tap.kind == from_kind) {
      tap.node = to;
      tap.kind = to_kind;
    }
  }
}

void Lowering::redirect_uses(int from, int to) {
  for (Node& node : nodes_) {
    for (int& in : node.inputs) {
      if (in == from) in = to;
    }
    if (node.residual == from) node.residual = to;
    if (node.input_scale == from) node.input_scale = to;
  }
  if (output_node_ == from) output_node_ = to;
}

void Lowering::absorb(int absorbed, int into) {
  Node& gone = nodes_[static_cast<size_t>(absorbed)];
  Node& node = nodes_[static_cast<size_t>(into)];
  node.act = gone.act;
  node.act_max = gone.act_max;
  node.order = std::max(node.order, gone.order);
  retarget_taps(absorbed, TapKind::Output, into, TapKind::Output);
  redirect_uses(absorbed, into);
  gone.dead = true;
}

void Lowering::remove_identities() {
  for (Node& node : nodes_) {
    for (int& in : node.inputs) in = resolve(in);
  }
  output_node_ = resolve(output_node_);
  for (auto& [name, tap] : taps_) tap.node = resolve(tap.node);
  for (Node& node : nodes_) {
    if (node.kind == NodeKind::Identity) node.dead = true;
  }
}

void Lowering::fold_preprocessing() {
  // Leading affine layers (Rescaling, Normalization) on the raw image fold into the preprocessing, in double.
  const uint32_t channels = nodes_[static_cast<size_t>(input_node_)].shape.c;
  for (bool changed = true; changed;) {
    changed = false;
    std::vector<int> uses = use_counts();
    if (uses[static_cast<size_t>(input_node_)] != 1) return;
    for (size_t i = 0; i < nodes_.size(); ++i) {
      Node& node = nodes_[i];
      if (node.dead || node.kind != NodeKind::Affine || node.inputs[0] != input_node_) continue;
      if (node.act != Activation::Linear || node.residual >= 0 || static_cast<int>(i) == output_node_) return;
      for (uint32_t c = 0; c < channels; ++c) {
        const double s = node.scale.empty() ? 1.0 : node.scale[c];
        const double t = node.shift.empty() ? 0.0 : node.shift[c];
        pre_scale_[c] *= s;
        pre_offset_[c] = pre_offset_[c] * s + t;
      }
      redirect_uses(static_cast<int>(i), input_node_);
      node.dead = true;
      for (auto& [name, tap] : taps_) {
        if (tap.node == static_cast<int>(i)) tap.node = -1;  // the preprocessed image is not a layer output
      }
      changed = true;
      break;
    }
  }
}

void Lowering::fold_zero_padding() {
  // ZeroPadding2D feeding only a conv becomes that conv's explicit padding (pooling pads differently).
  std::vector<int> uses = use_counts();
  for (Node& node : nodes_) {
    if (node.dead || (node.kind != NodeKind::Conv && node.kind != NodeKind::Depthwise)) continue;
    Node& pad = nodes_[static_cast<size_t>(node.inputs[0])];
    if (pad.kind != NodeKind::ZeroPad || pad.dead || uses[static_cast<size_t>(node.inputs[0])] != 1) continue;
    node.pad_top += pad.pad_top;
    node.pad_bottom += pad.pad_bottom;
    node.pad_left += pad.pad_left;
    node.pad_right += pad.pad_right;
    const int dead_id = node.inputs[0];
    node.inputs[0] = pad.inputs[0];
    pad.dead = true;
    for (auto& [name, tap] : taps_) {
      if (tap.node == dead_id) tap.node = -1;  // the padded tensor is never materialized
    }
  }
}

void Lowering::fold_batchnorm_into_producers() {
  // conv/depthwise/dense -> affine (a BatchNormalization): W' = W * s, b' = b * s + t per output channel.
  std::vector<int> uses = use_counts();
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Node& affine = nodes_[i];
    if (affine.dead || affine.kind != NodeKind::Affine || affine.scale.empty()) continue;
    const int producer_id = affine.inputs[0];
    Node& producer = nodes_[static_cast<size_t>(producer_id)];
    const bool foldable = producer.kind == NodeKind::Conv || producer.kind == NodeKind::Depthwise ||
                          producer.kind == NodeKind::Dense;
    if (!foldable || producer.act != Activation::Linear || producer.residual >= 0 || producer.input_scale >= 0 ||
        uses[static_cast<size_t>(producer_id)] != 1 || producer_id == output_node_) {
      continue;
    }
    // The conv's own output stays recoverable: conv = folded_conv_without_bias / scale + its own bias.
    TapInfo& conv_tap = taps_[producer.layer];
    if (conv_tap.node == producer_id && conv_tap.kind == TapKind::Output &&
        std::all_of(affine.scale.begin(), affine.scale.end(), [](double s) { return s != 0.0; })) {
      conv_tap.kind = TapKind::BeforeAffine;
      conv_tap.scale = affine.scale;
      conv_tap.shift = producer.bias;  // empty when the layer has no bias
    } else if (conv_tap.node == producer_id) {
      conv_tap.node = -1;
    }
    const uint32_t cout = producer.cout;
    for (size_t k = 0; k < producer.kernel.size(); ++k) producer.kernel[k] *= affine.scale[k % cout];
    if (producer.bias.empty()) producer.bias.assign(cout, 0.0);
    for (uint32_t c = 0; c < cout; ++c) producer.bias[c] = producer.bias[c] * affine.scale[c] + affine.shift[c];
    absorb(static_cast<int>(i), producer_id);
    uses = use_counts();
  }
}

void Lowering::fold_affine_into_dense() {
  // affine -> dense (a BatchNormalization on a pooled vector): W'[i][u] = W[i][u] * s[i], b' = b + W^T t.
  std::vector<int> uses = use_counts();
  for (Node& dense : nodes_) {
    if (dense.dead || dense.kind != NodeKind::Dense) continue;
    const int affine_id = dense.inputs[0];
    Node& affine = nodes_[static_cast<size_t>(affine_id)];
    if (affine.dead || affine.kind != NodeKind::Affine || affine.act != Activation::Linear ||
        affine.residual >= 0 || uses[static_cast<size_t>(affine_id)] != 1 || affine_id == output_node_) {
      continue;
    }
    const uint32_t in = dense.cin, units = dense.cout;
    if (dense.bias.empty()) dense.bias.assign(units, 0.0);
    for (uint32_t i = 0; i < in; ++i) {
      const double s = affine.scale.empty() ? 1.0 : affine.scale[i];
      const double t = affine.shift.empty() ? 0.0 : affine.shift[i];
      for (uint32_t u = 0; u < units; ++u) {
        double& w = dense.kernel[size_t{i} * units + u];
        dense.bias[u] += w * t;
        w *= s;
      }
    }
    dense.inputs[0] = affine.inputs[0];
    affine.dead = true;
    for (auto& [name, tap] : taps_) {
      if (tap.node == affine_id) tap.node = -1;  // a folded 1-D affine is not a Grad-CAM target
    }
    uses = use_counts();
  }
}

void Lowering::fuse_activations() {
  // A pure activation (affine without scale/shift) fuses into a producer that has none yet.
  std::vector<int> uses = use_counts();
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Node& act = nodes_[i];
    if (act.dead || act.kind != NodeKind::Affine || !act.scale.empty() || !act.shift.empty() || act.residual >= 0) {
      continue;
    }
    const int producer_id = act.inputs[0];
    Node& producer = nodes_[static_cast<size_t>(producer_id)];
    const bool fusable = producer.kind == NodeKind::Conv || producer.kind == NodeKind::Depthwise ||
                         producer.kind == NodeKind::Dense || producer.kind == NodeKind::Affine ||
                         producer.kind == NodeKind::Add || producer.kind == NodeKind::Multiply;
    if (!fusable || producer.dead || producer.act != Activation::Linear || producer.residual >= 0 ||
        uses[static_cast<size_t>(producer_id)] != 1 || producer_id == output_node_) {
      continue;
    }
    if (act.act == Activation::Softmax && producer.shape.elements() != producer.shape.c) continue;
    retarget_taps(producer_id, TapKind::Output, producer_id, TapKind::BeforeActivation);
    absorb(static_cast<int>(i), producer_id);
    uses = use_counts();
  }
}

void Lowering::fold_channel_gates() {
  // x * gate (gate 1x1xC) feeding only a conv: the conv scales its input channels (squeeze-excite).
  std::vector<int> uses = use_counts();
  for (Node& conv : nodes_) {
    if (conv.dead || conv.kind != NodeKind::Conv || conv.input_scale >= 0) continue;
    const int mul_id = conv.inputs[0];
    Node& mul = nodes_[static_cast<size_t>(mul_id)];
    if (mul.dead || mul.kind != NodeKind::Multiply || mul.act != Activation::Linear ||
        uses[static_cast<size_t>(mul_id)] != 1 || mul_id == output_node_) {
      continue;
    }
    const Shape gate = nodes_[static_cast<size_t>(mul.inputs[1])].shape;
    if (gate.h != 1 || gate.w != 1 || mul.shape.h * mul.shape.w == 1) continue;
    conv.inputs[0] = mul.inputs[0];
    conv.input_scale = mul.inputs[1];
    conv.order = std::max(conv.order, mul.order);
    retarget_taps(mul_id, TapKind::Output, static_cast<int>(&conv - nodes_.data()), TapKind::ScaledInput);
    mul.dead = true;
    uses = use_counts();
  }
}

void Lowering::fuse_squeeze_excite() {
  // GAP -> 1x1 conv (+act) -> 1x1 conv (+act) on a 1x1 map: one SqueezeExcite op producing the gate.
  std::vector<int> uses = use_counts();
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Node& expand = nodes_[i];
    if (expand.dead || expand.kind != NodeKind::Conv || expand.shape.h != 1 || expand.shape.w != 1) continue;
    const int reduce_id = expand.inputs[0];
    Node& reduce = nodes_[static_cast<size_t>(reduce_id)];
    if (reduce.dead || reduce.kind != NodeKind::Conv || reduce.shape.h != 1 || reduce.shape.w != 1 ||
        reduce.kh != 1 || reduce.kw != 1 || expand.kh != 1 || expand.kw != 1 ||
        uses[static_cast<size_t>(reduce_id)] != 1 || reduce.residual >= 0 || reduce.input_scale >= 0 ||
        expand.residual >= 0 || expand.input_scale >= 0) {
      continue;
    }
    const Node& pooled = nodes_[static_cast<size_t>(reduce.inputs[0])];
    if (pooled.kind != NodeKind::GlobalAvgPool) continue;
    expand.kind = NodeKind::SqueezeExcite;
    expand.kernel2 = std::move(expand.kernel);
    expand.bias2 = std::move(expand.bias);
    expand.act2 = expand.act;
    expand.hidden = reduce.cout;
    expand.cin = reduce.cin;
    expand.kernel = std::move(reduce.kernel);
    expand.bias = std::move(reduce.bias);
    expand.act = reduce.act;
    expand.act_max = reduce.act_max;
    expand.inputs[0] = reduce.inputs[0];
    reduce.dead = true;
    for (auto& [name, tap] : taps_) {
      if (tap.node == reduce_id) tap.node = -1;  // the SE hidden layer lives inside the op
      if (tap.node == static_cast<int>(i) && tap.kind != TapKind::Output) tap.node = -1;
    }
    uses = use_counts();
  }
}

void Lowering::fuse_depthwise_means() {
  // A GlobalAvgPool of a depthwise output is computed by the depthwise op in the same pass.
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Node& pool = nodes_[i];
    if (pool.dead || pool.kind != NodeKind::GlobalAvgPool || static_cast<int>(i) == output_node_) continue;
    const int dw_id = pool.inputs[0];
    Node& dw = nodes_[static_cast<size_t>(dw_id)];
    if (dw.kind != NodeKind::Depthwise || dw.mean_output >= 0) continue;
    dw.mean_output = static_cast<int>(i);
    pool.second_output_of = dw_id;
    retarget_taps(static_cast<int>(i), TapKind::Output, dw_id, TapKind::SecondOutput);
  }
}

void Lowering::fuse_residual_adds() {
  // add(x, y) where x comes from a conv/affine used only here: that op adds y after its activation.
  std::vector<int> uses = use_counts();
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Node& add = nodes_[i];
    if (add.dead || add.kind != NodeKind::Add || add.act != Activation::Linear) continue;
    int best = -1;
    for (int k = 0; k < 2; ++k) {
      const int candidate = add.inputs[static_cast<size_t>(k)];
      const Node& producer = nodes_[static_cast<size_t>(candidate)];
      const bool fusable = (producer.kind == NodeKind::Conv || producer.kind == NodeKind::Affine) &&
                           producer.residual < 0 && uses[static_cast<size_t>(candidate)] == 1 &&
                           candidate != output_node_ && producer.second_output_of < 0;
      if (fusable && (best < 0 || producer.order > nodes_[static_cast<size_t>(best)].order)) best = candidate;
    }
    if (best < 0) continue;
    Node& producer = nodes_[static_cast<size_t>(best)];
    producer.residual = add.inputs[0] == best ? add.inputs[1] : add.inputs[0];
    producer.order = std::max(producer.order, add.order);
    retarget_taps(best, TapKind::Output, best, TapKind::BeforeResidual);
    retarget_taps(static_cast<int>(i), TapKind::Output, best, TapKind::Output);
    redirect_uses(static_cast<int>(i), best);
    add.dead = true;
    uses = use_counts();
  }
}

// ------------------------------------------------------------------------------------------------
// Emission

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

EffcamBuilder Lowering::emit(LoweringSummary& summary) {
  EffcamBuilder builder(options_.kernel_dtype);
  std::vector<int> order;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const Node& node = nodes_[i];
    if (!node.dead && node.kind != NodeKind::Input && node.second_output_of < 0) order.push_back(static_cast<int>(i));
  }
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return nodes_[static_cast<size_t>(a)].order < nodes_[static_cast<size_t>(b)].order;
  });

  std::vector<uint32_t> tensor_of(nodes_.size(), format::kNone);
  std::vector<uint32_t> op_of(nodes_.size(), format::kNone);
  const Node& input = nodes_[static_cast<size_t>(input_node_)];
  tensor_of[static_cast<size_t>(input_node_)] = builder.add_tensor(input.layer);
  uint64_t stored = 0;
  auto tensor = [&](int id) {
    if (id < 0) return format::kNone;
    const uint32_t t = tensor_of[static_cast<size_t>(id)];
    if (t == format::kNone) throw Error("internal: '" + nodes_[static_cast<size_t>(id)].layer + "' used before it is computed");
    return t;
  };
  auto vector = [&](const std::string& name, const std::vector<double>& values) {
    stored += values.size();
    return builder.add_vector(name, to_float(values));
  };

  for (int id : order) {
    const Node& node = nodes_[static_cast<size_t>(id)];
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
      const uint32_t mean = builder.add_tensor(nodes_[static_cast<size_t>(node.mean_output)].layer);
      tensor_of[static_cast<size_t>(node.mean_output)] = mean;
      op.outputs[1] = mean;
    }
    op_of[static_cast<size_t>(id)] = static_cast<uint32_t>(builder.ops().size());
    builder.add_op(op);
  }

  for (const keras::Layer& layer : model_.layers) {
    auto it = taps_.find(layer.name);
    if (it == taps_.end() || it->second.node < 0) continue;
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

  const Node& output = nodes_[static_cast<size_t>(output_node_)];
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
    pre.scale[c] = c < input.shape.c ? static_cast<float>(pre_scale_[c]) : 1.0f;
    pre.offset[c] = c < input.shape.c ? static_cast<float>(pre_offset_[c]) : 0.0f;
  }
  pre.input_tensor = tensor_of[static_cast<size_t>(input_node_)];
  pre.output_tensor = tensor(output_node_);
  builder.set_preprocess(pre);

  if (!options_.labels.empty() && options_.labels.size() != output.shape.c) {
    throw Error("the labels file has " + std::to_string(options_.labels.size()) + " names but the model has " +
                std::to_string(output.shape.c) + " classes");
  }
  builder.set_labels(options_.labels);

  summary.keras_layers = model_.layers.size();
  summary.ops = builder.ops().size();
  summary.keras_parameters = keras_parameters_;
  summary.stored_parameters = stored;
  summary.input_h = input.shape.h;
  summary.input_w = input.shape.w;
  summary.input_c = input.shape.c;
  summary.classes = output.shape.c;
  json meta = {{"source_format", model_.source_format},
               {"keras_version", model_.keras_version},
               {"model_name", model_.name},
               {"keras_layers", summary.keras_layers},
               {"ops", summary.ops},
               {"keras_parameters", summary.keras_parameters},
               {"stored_parameters", summary.stored_parameters},
               {"kernel_dtype", options_.kernel_dtype == format::DType::F16 ? "fp16" : "fp32"}};
  builder.set_metadata_json(meta.dump());
  return builder;
}

EffcamBuilder Lowering::run(LoweringSummary& summary) {
  if (model_.layers.empty()) throw Error("the model has no layers");
  for (size_t i = 0; i < model_.layers.size(); ++i) translate(model_.layers[i], i);
  auto it = value_of_.find(model_.output);
  if (it == value_of_.end()) throw Error("the model output '" + model_.output + "' is not a layer of the model");
  output_node_ = it->second;
  remove_identities();
  if (output_node_ == input_node_) throw Error("the model has no layer between its input and output");
  fold_preprocessing();
  fold_zero_padding();
  fold_batchnorm_into_producers();
  fold_affine_into_dense();
  fuse_activations();
  fold_channel_gates();
  fuse_squeeze_excite();
  fuse_depthwise_means();
  fuse_residual_adds();
  return emit(summary);
}

}  // namespace

const std::vector<std::string>& supported_layer_classes() {
  static const std::vector<std::string> classes = [] {
    std::vector<std::string> list = {"InputLayer", "Rescaling", "Normalization", "Conv2D", "DepthwiseConv2D",
                                     "BatchNormalization", "Activation", "ReLU", "Softmax", "Add", "Multiply",
                                     "GlobalAveragePooling2D", "Reshape", "Flatten", "Dense", "MaxPooling2D",
                                     "AveragePooling2D", "ZeroPadding2D"};
    list.insert(list.end(), identity_classes().begin(), identity_classes().end());
    return list;
  }();
  return classes;
}

EffcamBuilder lower(const keras::Model& model, const LoweringOptions& options, LoweringSummary& summary) {
  return Lowering(model, options).run(summary);
}

}  // namespace effcam::converter
