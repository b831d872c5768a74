// Reading one Keras layer for the lowering: its config fields and weights, every problem an effcam::Error naming the
// layer ("layer 'x' (Conv2D): 'filters' must be a positive integer, got 3.5").
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "converter/keras_model.h"
#include "format/format.h"

namespace effcam::converter::lowering {

class LayerConfig {
 public:
  // keras2: the file was written by Keras 2, whose hard_sigmoid differs from Keras 3's.
  LayerConfig(const keras::Layer& layer, bool keras2) : layer_(layer), keras2_(keras2) {}

  const keras::Layer& layer() const { return layer_; }
  [[noreturn]] void fail(const std::string& what) const;

  bool has(const char* key) const;  // present and not null
  const nlohmann::json& field(const char* key) const;  // required
  uint32_t positive_int(const nlohmann::json& value, const char* key) const;
  uint32_t positive_int(const char* key) const { return positive_int(field(key), key); }
  std::pair<uint32_t, uint32_t> int_pair(const char* key) const;  // an int or 2 ints
  std::pair<uint32_t, uint32_t> optional_pair(const char* key, std::pair<uint32_t, uint32_t> fallback) const;
  format::Padding padding() const;  // "same" / "valid"
  bool flag(const char* key, bool fallback) const;
  double number(const char* key, double fallback) const;  // finite
  // A number or nested list of numbers: one per channel, a single one repeated.
  std::vector<double> per_channel(const nlohmann::json& value, uint32_t channels, const char* key) const;

  void check_channels_last() const;
  void check_no_dilation() const;
  std::pair<format::Activation, float> activation(const nlohmann::json& value) const;  // and its max (relu6)
  std::pair<format::Activation, float> layer_activation() const;  // the 'activation' field, linear if absent

  // The weight, its element count checked against the shape the config implies.
  const keras::Array& weight(const char* name, const std::vector<int64_t>& expected_shape) const;
  const keras::Array* optional_weight(const char* name, const std::vector<int64_t>& expected_shape) const;

 private:
  const keras::Layer& layer_;
  bool keras2_;
};

}  // namespace effcam::converter::lowering
