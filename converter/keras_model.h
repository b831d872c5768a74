// A Keras model as read from a .keras or .h5 file: one flat graph of layers with their fp32 weights.
// Nested Functional / Sequential models are flattened here; the lowering never sees containers.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace effcam::keras {

struct Array {
  std::vector<int64_t> shape;  // as stored by Keras (e.g. Conv2D kernel: kh, kw, in, out)
  std::vector<float> values;   // row-major; float16 / bfloat16 / float64 datasets are converted to fp32
};

struct Layer {
  // Unique within the model. Layers of a nested model are "base_name/layer_name"
  // (recursively for deeper nesting); outer layers keep their bare name.
  std::string name;
  std::string class_name;  // the Keras class, e.g. "Conv2D", "BatchNormalization"
  nlohmann::json config;   // the layer's own config dict as Keras serialized it
  std::vector<std::string> inputs;  // producer layer names, in call order (Add/Multiply have several)
  // Variables by their Keras attribute name: "kernel", "bias", "gamma", "beta", "moving_mean",
  // "moving_variance", "mean", "variance" (legacy "depthwise_kernel" is stored as "kernel").
  // Conv2D / DepthwiseConv2D / Dense / BatchNormalization always carry exactly the variables their config
  // implies (bias iff use_bias; gamma iff scale, beta iff center), with shapes checked against the config.
  // Normalization has mean, variance (and count) only when it was adapted; otherwise they are in `config`.
  // Any other class keeps its variables, if it has some, under "0", "1", ... in Keras' order.
  std::map<std::string, Array> weights;
};

struct Model {
  std::string source_format;  // "keras-zip" (.keras) or "legacy-h5" (.h5)
  std::string keras_version;  // e.g. "3.8.0"; "" when the file does not say
  std::string name;           // the outer model's name
  // Topological order. The first layer is the single InputLayer. No Functional/Sequential entries remain:
  // a nested model's InputLayer is replaced by the tensor the caller passed in.
  std::vector<Layer> layers;
  std::string output;             // name of the layer producing the model output
  std::vector<int64_t> input_shape;  // H, W, C from the InputLayer (-1 where Keras has None)
                                     // (any rank: the InputLayer's batch shape without the batch axis)
};

// Reads a Keras 3 `.keras` archive or a legacy `.h5` full-model file.
// Throws effcam::Error with a one-line message on anything it cannot read.
Model read_model(const std::string& path);

}  // namespace effcam::keras
