// Packing Keras kernels into the layouts of format/format.h (WeightLayout).
#include "format/weight_layout.h"

#include <initializer_list>
#include <string>

#include "effcam/error.hpp"

namespace effcam::format {
namespace {

// Product of dimensions; a layout too large to address is an error, not a wrap-around.
size_t checked_product(std::initializer_list<uint64_t> factors) {
  size_t product = 1;
  for (uint64_t factor : factors) {
    if (__builtin_mul_overflow(product, factor, &product)) {
      throw Error("weight layout: element count overflows");
    }
  }
  return product;
}

void check_value_count(const char* what, size_t actual, size_t expected) {
  if (actual != expected) {
    throw Error(std::string(what) + " has " + std::to_string(actual) + " values, its dims need " +
                std::to_string(expected));
  }
}

uint64_t padded_channels(uint32_t channels) {
  return (uint64_t{channels} + kChannelBlock - 1) / kChannelBlock * kChannelBlock;
}

}  // namespace

size_t blocked_ohwi_elements(uint32_t cout, uint32_t kh, uint32_t kw, uint32_t cin) {
  return checked_product({padded_channels(cout), kh, kw, cin});
}

size_t depthwise_hwc_elements(uint32_t cout, uint32_t kh, uint32_t kw) {
  return checked_product({kh, kw, padded_channels(cout)});
}

std::vector<float> pack_conv_kernel(std::span<const float> hwio, uint32_t kh, uint32_t kw, uint32_t cin,
                                    uint32_t cout) {
  check_value_count("conv kernel", hwio.size(), checked_product({kh, kw, cin, cout}));
  std::vector<float> packed(blocked_ohwi_elements(cout, kh, kw, cin), 0.0f);
  const size_t taps = size_t{kh} * kw * cin;  // (y, x, c) flattened: the same order in both layouts
  for (size_t tap = 0; tap < taps; ++tap) {
    const float* source = hwio.data() + tap * cout;
    for (uint32_t o = 0; o < cout; ++o) {
      const size_t block = o / kChannelBlock;
      packed[(block * taps + tap) * kChannelBlock + o % kChannelBlock] = source[o];
    }
  }
  return packed;
}

std::vector<float> pack_dense_kernel(std::span<const float> io, uint32_t in, uint32_t units) {
  return pack_conv_kernel(io, 1, 1, in, units);  // (in, units) is HWIO with kh = kw = 1
}

std::vector<float> pack_depthwise_kernel(std::span<const float> hwcm, uint32_t kh, uint32_t kw, uint32_t cin,
                                         uint32_t multiplier) {
  const size_t channels = checked_product({cin, multiplier});
  check_value_count("depthwise kernel", hwcm.size(), checked_product({kh, kw, channels}));
  if (channels > UINT32_MAX) throw Error("depthwise kernel: cin * multiplier overflows");
  const size_t stride = padded_channels(static_cast<uint32_t>(channels));
  std::vector<float> packed(checked_product({kh, kw, stride}), 0.0f);
  // Keras' (cin, multiplier) pair flattens to c * multiplier + m, which is already the output channel.
  for (size_t position = 0; position < size_t{kh} * kw; ++position) {
    for (size_t o = 0; o < channels; ++o) packed[position * stride + o] = hwcm[position * channels + o];
  }
  return packed;
}

}  // namespace effcam::format
