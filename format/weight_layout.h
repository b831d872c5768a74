// The weight layouts the kernels read (format/format.h WeightLayout), and packing into them.
// One home for the layout: the converter packs with these functions, the kernels and their tests read the result.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "format/format.h"

namespace effcam::format {


inline constexpr uint32_t round_up_to_block(uint32_t channels) {
  return (channels + kChannelBlock - 1) / kChannelBlock * kChannelBlock;
}

// Number of stored elements for each layout (padding included).
size_t blocked_ohwi_elements(uint32_t cout, uint32_t kh, uint32_t kw, uint32_t cin);
size_t depthwise_hwc_elements(uint32_t cout, uint32_t kh, uint32_t kw);

// Conv2D kernel in Keras layout (kh, kw, cin, cout) -> [ceil(cout/16)][kh][kw][cin][16], zero padded.
std::vector<float> pack_conv_kernel(std::span<const float> hwio, uint32_t kh, uint32_t kw, uint32_t cin,
                                    uint32_t cout);
// Dense kernel in Keras layout (in, units) -> BlockedOHWI with kh = kw = 1.
std::vector<float> pack_dense_kernel(std::span<const float> io, uint32_t in, uint32_t units);
// DepthwiseConv2D kernel in Keras layout (kh, kw, cin, multiplier) -> [kh][kw][round_up_to_block(cin*mult)],
// output channel o = c * multiplier + m.
std::vector<float> pack_depthwise_kernel(std::span<const float> hwcm, uint32_t kh, uint32_t kw, uint32_t cin,
                                         uint32_t multiplier);

}  // namespace effcam::format
