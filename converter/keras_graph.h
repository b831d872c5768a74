// Graph flattening: a Keras model config (Functional, Sequential, nested models) -> one flat list of layers in
// topological order. Layers of a nested model are named "base/layer"; a nested model's InputLayer is replaced by
// the tensor its caller passes in.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "converter/h5_file.h"
#include "converter/keras_model.h"

namespace effcam::keras {

enum class Format { KerasZip, LegacyH5 };

// A layer as the config describes it, before its weights are read: where to find them.
struct Pending {
  Layer layer;
  std::string local_name;  // the name inside its own (possibly nested) model
  std::string group;       // KerasZip: the layer's H5 group ("" = none found)
  std::string legacy_top;  // LegacyH5: the top-level model_weights group holding its variables
  bool legacy_nested = false;
};

struct FlatGraph {
  std::vector<Pending> layers;  // topological order
  std::vector<int64_t> input_shape;
  bool has_input = false;
  std::string output;  // the layer producing the model output
};

// The outer model's name in a model config ("" when it has none).
std::string model_name(const nlohmann::json& top);

// top: {"class_name": "Functional"|"Sequential", "config": {...}}. keras2: Keras 2 group naming. container
// (KerasZip): the H5 group of `weights` holding the top model's layer groups, "" when there is none.
FlatGraph flatten(const nlohmann::json& top, Format format, bool keras2, const h5::File& weights,
                  const std::string& container);

}  // namespace effcam::keras
