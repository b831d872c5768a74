// The rows of the op table (engine/op_table.h), one per file of this folder, and the defaults rows share.
#pragma once

#include "engine/op_table.h"

namespace effcam::engine::op {

extern const OpDefinition kConv;           // conv.cpp
extern const OpDefinition kDepthwise;      // depthwise.cpp
extern const OpDefinition kSqueezeExcite;  // squeeze_excite.cpp
extern const OpDefinition kDense;          // dense.cpp
extern const OpDefinition kChannelAffine;  // channel_affine.cpp
extern const OpDefinition kAdd;            // elementwise.cpp
extern const OpDefinition kMultiply;       // elementwise.cpp
extern const OpDefinition kGlobalAvgPool;  // global_avg_pool.cpp
extern const OpDefinition kMaxPool;        // pool.cpp
extern const OpDefinition kAvgPool;        // pool.cpp
extern const OpDefinition kZeroPad;        // zero_pad.cpp
extern const OpDefinition kReshape;        // reshape.cpp

// Pixels of an op's output.
inline uint32_t output_pixels(const OpGeometry& g) { return g.output.h * g.output.w; }

}  // namespace effcam::engine::op
