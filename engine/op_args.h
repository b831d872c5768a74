// The kernels' view of a file's op: activation codes, weights in place, and the window geometry the graph computed.
// The forward pass (session.cpp) and the explanation's backward pass (explain.cpp) both build kernel arguments here.
#pragma once

#include <cstdint>

#include "format/format.h"
#include "format/graph.h"
#include "format/model_file.h"
#include "ops/kernels.h"

namespace effcam::engine {

// The activation at an op's output: a squeeze-excite op's gate activation is its second one.
inline format::Activation output_activation(const format::Op& op) {
  return op.kind == format::OpKind::SqueezeExcite ? op.activation2 : op.activation;
}

// A weight tensor viewed in the mapped file (fp16 or fp32).
ops::WeightView weight_view(const ModelFile& file, uint32_t id);

// Shapes, window, padding and kernel of a Conv / Depthwise op; tensors, bias and activation are the caller's.
ops::ConvArgs conv_args(const ModelFile& file, const format::Op& op, const OpGeometry& geometry);
ops::DepthwiseArgs depthwise_args(const ModelFile& file, const format::Op& op, const OpGeometry& geometry);
// Shapes, window and padding of a MaxPool / AvgPool op; tensors are the caller's.
ops::PoolArgs pool_args(const format::Op& op, const OpGeometry& geometry);

}  // namespace effcam::engine
