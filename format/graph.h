// The shapes of a .effcam file's graph: tensor shapes at batch 1, the TensorFlow window arithmetic the converter and
// the engine share, and the Graph record the engine's graph builder fills (engine/graph.h: each op kind's shape rule
// lives in its row of the op table).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/format.h"

namespace effcam {

// An activation tensor at batch 1, NHWC. Vectors are 1 x 1 x C.
struct Shape {
  uint32_t h = 1, w = 1, c = 1;
  uint64_t elements() const { return uint64_t{h} * w * c; }
  bool operator==(const Shape&) const = default;
};
// "HxWxC", for messages.
std::string shape_text(const Shape& shape);

// One spatial dimension of a window op (conv, pooling) on an input of `in` pixels (explicit padding included).
struct Window {
  uint32_t out;         // output size
  uint32_t pad_before;  // implicit zero padding (TF "same": floor(total / 2))
  uint32_t pad_after;   // the odd pixel goes after (bottom / right)
};
// Throws effcam::Error when the window does not fit (valid padding on a too-small input, zero sizes).
Window window(uint32_t in, uint32_t kernel, uint32_t stride, format::Padding padding);

struct OpGeometry {
  Shape input;    // the op's first input (before padding)
  Shape output;   // outputs[0]
  // Total zero padding of window ops: explicit pad_* of the record plus the implicit "same" padding.
  uint32_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
};

struct Graph {
  std::vector<Shape> tensors;         // shape of every activation tensor
  std::vector<uint32_t> producer;     // op index producing each tensor (format::kNone for the input)
  std::vector<OpGeometry> ops;        // per op, in execution order
  uint32_t input = format::kNone;     // graph input tensor
  uint32_t output = format::kNone;    // graph output tensor
  uint32_t classes = 0;               // channels of the output
};

}  // namespace effcam
