// Lowering: a Keras layer graph -> the fused ops of a .effcam file.
// BatchNorm folds into the conv/dense before it (in double, before any fp16 cast), activations, residual adds and
// squeeze-excite fuse into the ops the engine runs, leading Rescaling/Normalization become the preprocessing, and
// every Keras layer gets a tap saying where its own output can be recovered.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "converter/effcam_writer.h"
#include "converter/keras_model.h"

namespace effcam::converter {

// The largest input side the converter plans for (the model's own or LoweringOptions::input_size).
constexpr uint32_t kMaxInputSide = 8192;

struct LoweringOptions {
  format::DType kernel_dtype = format::DType::F16;
  std::optional<std::pair<uint32_t, uint32_t>> input_size;  // H, W; overrides the model's own
};

struct LoweringSummary {
  size_t keras_layers = 0;     // layers read (nested models flattened)
  size_t ops = 0;              // fused ops emitted
  uint64_t keras_parameters = 0;  // parameters in the Keras file (BatchNorm statistics included)
  uint64_t stored_parameters = 0; // parameters after folding (what the file stores, padding excluded)
  uint32_t input_h = 0, input_w = 0, input_c = 0;
  uint32_t classes = 0;
};

// Throws effcam::Error naming the layer for anything unsupported ("layer 'x' (Lambda) is not supported; ...").
EffcamBuilder lower(const keras::Model& model, const LoweringOptions& options, LoweringSummary& summary);

// The Keras classes the converter accepts, for messages and docs: the classes of the translation table
// (lowering/translate.cpp), in its order.
const std::vector<std::string>& supported_layer_classes();

}  // namespace effcam::converter
