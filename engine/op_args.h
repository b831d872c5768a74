// The kernels' view of a file's op: weights in place and the window geometry the graph computed. The op table's rows
// (engine/op/) build their forward and backward kernel arguments here, and the explainer its target's.
#pragma once

#include <cstdint>

#include "format/format.h"
#include "format/graph.h"
#include "engine/op_table.h"
#include "format/model_file.h"
#include "ops/backward.h"
#include "ops/kernels.h"

namespace effcam::engine {

// A weight tensor viewed in the mapped file (fp16 or fp32).
ops::WeightView weight_view(const ModelFile& file, uint32_t id);

// Shapes, window, padding and kernel of a Conv / Depthwise op; tensors, bias and activation are the caller's.
ops::ConvArgs conv_args(const ModelFile& file, const format::Op& op, const OpGeometry& geometry);
// The same without the kernel, for what depends on the shapes alone (scratch sizes).
ops::ConvArgs conv_shape_args(const format::Op& op, const OpGeometry& geometry);
ops::DepthwiseArgs depthwise_args(const ModelFile& file, const format::Op& op, const OpGeometry& geometry);
// Shapes, window and padding of a MaxPool / AvgPool op; tensors are the caller's.
ops::PoolArgs pool_args(const format::Op& op, const OpGeometry& geometry);
// How a backward call's kernels write inputs[0]'s gradient (BackwardCall::overwrite_input_gradient).
ops::GradientWrite input_gradient_write(const BackwardCall& call);

}  // namespace effcam::engine
