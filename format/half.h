// IEEE 754 binary16 <-> binary32 conversion (weights are stored as fp16, computed in fp32).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace effcam::format {

// Round to nearest, ties to even; overflow gives +-inf, NaN stays NaN (quiet).
uint16_t float_to_half(float value);
float half_to_float(uint16_t half);

std::vector<uint16_t> floats_to_halves(std::span<const float> values);

}  // namespace effcam::format
