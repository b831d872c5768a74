#include "format/graph.h"

#include <string>

#include "effcam/error.hpp"

namespace effcam {

Window window(uint32_t in, uint32_t kernel, uint32_t stride, format::Padding padding) {
  if (in == 0 || kernel == 0 || stride == 0) throw Error("window of size 0");
  if (padding == format::Padding::Same) {
    const uint32_t out = (in + stride - 1) / stride;
    const uint64_t needed = uint64_t{out - 1} * stride + kernel;
    const uint32_t total = needed > in ? static_cast<uint32_t>(needed - in) : 0;
    return {out, total / 2, total - total / 2};
  }
  if (kernel > in) {
    throw Error("a " + std::to_string(kernel) + "-wide window does not fit " + std::to_string(in) +
                " pixels with valid padding");
  }
  return {(in - kernel) / stride + 1, 0, 0};
}

std::string shape_text(const Shape& s) {
  return std::to_string(s.h) + "x" + std::to_string(s.w) + "x" + std::to_string(s.c);
}

}  // namespace effcam
