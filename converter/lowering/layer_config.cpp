#include "converter/lowering/layer_config.h"

#include <cmath>
#include <functional>

#include "converter/keras_json.h"
#include "converter/lowering/ir.h"
#include "effcam/error.hpp"

namespace effcam::converter::lowering {
namespace {

using format::Activation;
using nlohmann::json;

std::string join_dims(const std::vector<int64_t>& dims) {
  std::string text;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i > 0) text += ',';
    text += std::to_string(dims[i]);
  }
  return text;
}

}  // namespace

void LayerConfig::fail(const std::string& what) const {
  throw Error("layer '" + layer_.name + "' (" + layer_.class_name + "): " + what);
}

bool LayerConfig::has(const char* key) const {
  return layer_.config.contains(key) && !layer_.config.at(key).is_null();
}

const json& LayerConfig::field(const char* key) const {
  if (!layer_.config.is_object() || !layer_.config.contains(key)) fail(std::string("config has no '") + key + "'");
  return layer_.config.at(key);
}

uint32_t LayerConfig::positive_int(const json& value, const char* key) const {
  const std::optional<int64_t> v = keras::config_int(value, 1, int64_t{1} << 20);
  if (!v) fail(std::string("'") + key + "' must be a positive integer, got " + value.dump());
  return static_cast<uint32_t>(*v);
}

std::pair<uint32_t, uint32_t> LayerConfig::int_pair(const char* key) const {
  const json& value = field(key);
  if (value.is_number_integer()) {
    uint32_t v = positive_int(value, key);
    return {v, v};
  }
  if (!value.is_array() || value.size() != 2) fail(std::string("'") + key + "' must be 2 integers");
  return {positive_int(value[0], key), positive_int(value[1], key)};
}

std::pair<uint32_t, uint32_t> LayerConfig::optional_pair(const char* key,
                                                         std::pair<uint32_t, uint32_t> fallback) const {
  if (!has(key)) return fallback;
  return int_pair(key);
}

format::Padding LayerConfig::padding() const {
  const json& value = field("padding");
  if (value == "same") return format::Padding::Same;
  if (value == "valid") return format::Padding::Valid;
  fail("padding " + value.dump() + " is not supported (same, valid)");
}

bool LayerConfig::flag(const char* key, bool fallback) const {
  if (!layer_.config.contains(key)) return fallback;
  const json& value = layer_.config.at(key);
  if (!value.is_boolean()) fail(std::string("'") + key + "' must be true or false");
  return value.get<bool>();
}

double LayerConfig::number(const char* key, double fallback) const {
  if (!has(key)) return fallback;
  const json& value = layer_.config.at(key);
  if (!value.is_number() || !std::isfinite(value.get<double>())) {
    fail(std::string("'") + key + "' must be a finite number");
  }
  return value.get<double>();
}

void LayerConfig::check_channels_last() const {
  if (has("data_format") && layer_.config.at("data_format") != "channels_last") {
    fail("data_format " + layer_.config.at("data_format").dump() + " is not supported (channels_last)");
  }
}

void LayerConfig::check_no_dilation() const {
  if (optional_pair("dilation_rate", {1, 1}) != std::pair<uint32_t, uint32_t>{1, 1}) {
    fail("dilation_rate other than 1 is not supported");
  }
  if (layer_.config.contains("groups") && layer_.config.at("groups") != 1) {
    fail("groups other than 1 are not supported");
  }
}

std::pair<Activation, float> LayerConfig::activation(const json& value) const {
  if (value.is_null()) return {Activation::Linear, kInf};
  if (!value.is_string()) {
    const bool named = value.is_object() && value.contains("class_name") && value["class_name"].is_string();
    fail("activation " + (named ? value["class_name"].get<std::string>() : value.dump()) +
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
  fail("activation '" + name +
       "' is not supported (linear, relu, relu6, sigmoid, swish/silu, hard_sigmoid, hard_swish, tanh, softmax)");
}

std::pair<Activation, float> LayerConfig::layer_activation() const {
  if (!layer_.config.contains("activation")) return {Activation::Linear, kInf};
  return activation(layer_.config.at("activation"));
}

const keras::Array* LayerConfig::optional_weight(const char* name, const std::vector<int64_t>& expected_shape) const {
  auto it = layer_.weights.find(name);
  if (it == layer_.weights.end()) return nullptr;
  const keras::Array& array = it->second;
  int64_t expected = 1;
  for (int64_t d : expected_shape) expected *= d;
  int64_t stored = 1;
  for (int64_t d : array.shape) stored *= d;
  if (stored != expected || static_cast<int64_t>(array.values.size()) != expected) {
    fail(std::string("weight '") + name + "' has shape (" + join_dims(array.shape) + "), the config implies (" +
         join_dims(expected_shape) + ")");
  }
  return &array;
}

const keras::Array& LayerConfig::weight(const char* name, const std::vector<int64_t>& expected_shape) const {
  const keras::Array* array = optional_weight(name, expected_shape);
  if (!array) fail(std::string("weight '") + name + "' is missing from the file");
  return *array;
}

std::vector<double> LayerConfig::per_channel(const json& value, uint32_t channels, const char* key) const {
  std::vector<double> out;
  std::function<void(const json&)> flatten = [&](const json& v) {
    if (v.is_array()) {
      for (const json& item : v) flatten(item);
    } else if (!v.is_number()) {
      fail(std::string("'") + key + "' must be numbers");
    } else {
      out.push_back(v.get<double>());
    }
  };
  flatten(value);
  if (out.size() == 1) out.assign(channels, out[0]);
  if (out.size() != channels) {
    fail(std::string("'") + key + "' has " + std::to_string(out.size()) + " values for " + std::to_string(channels) +
         " channels");
  }
  return out;
}

}  // namespace effcam::converter::lowering
