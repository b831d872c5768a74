// Translation: each Keras layer becomes one node of the lowering graph (Add / Multiply with several inputs a chain),
// through a table by Keras class. That table is also the list of supported layers (supported_layer_classes()).
#pragma once

#include "converter/keras_model.h"
#include "converter/lowering.h"
#include "converter/lowering/ir.h"

namespace effcam::converter::lowering {

// Throws effcam::Error naming the layer for anything unsupported. The result has its input and output nodes set.
Graph translate(const keras::Model& model, const LoweringOptions& options);

}  // namespace effcam::converter::lowering
