// fp32 <-> fp16 by bit manipulation: portable (no F16C needed) and exact for every input.
#include "format/half.h"

#include <bit>

namespace effcam::format {

uint16_t float_to_half(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7FFFFFFFu;

  if (magnitude > 0x7F800000u) {  // NaN: keep the top payload bits, force the quiet bit
    return static_cast<uint16_t>(sign | 0x7E00u | ((magnitude & 0x7FFFFFu) >> 13));
  }
  // 65520 is the midpoint between 65504 (the largest half) and 65536; the tie goes to the even
  // neighbour, which is 65536, i.e. it overflows.
  if (magnitude >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);

  const uint32_t exponent = magnitude >> 23;
  uint32_t half;
  uint32_t remainder;
  uint32_t midpoint;
  if (exponent >= 113) {  // normal half: rebias 127 -> 15, drop 13 mantissa bits
    half = ((exponent - 112) << 10) | ((magnitude & 0x7FFFFFu) >> 13);
    remainder = magnitude & 0x1FFFu;
    midpoint = 0x1000u;
  } else if (exponent >= 101) {  // subnormal half: the value in units of 2^-24
    const uint32_t mantissa = (magnitude & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126 - exponent;  // 14..25
    half = mantissa >> shift;
    remainder = mantissa & ((1u << shift) - 1);
    midpoint = 1u << (shift - 1);
  } else {  // below 2^-25: rounds to zero
    return sign;
  }
  // Round to nearest, ties to even. A carry out of the mantissa correctly bumps the exponent.
  if (remainder > midpoint || (remainder == midpoint && (half & 1u))) ++half;
  return static_cast<uint16_t>(sign | half);
}

float half_to_float(uint16_t half) {
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1Fu;
  uint32_t mantissa = half & 0x3FFu;
  uint32_t bits;
  if (exponent == 0x1F) {
    bits = sign | 0x7F800000u | (mantissa << 13);  // inf or NaN (payload kept)
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal half: normalize, it is a normal float
    uint32_t float_exponent = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --float_exponent;
    }
    bits = sign | (float_exponent << 23) | ((mantissa & 0x3FFu) << 13);
  }
  return std::bit_cast<float>(bits);
}

std::vector<uint16_t> floats_to_halves(std::span<const float> values) {
  std::vector<uint16_t> halves(values.size());
  for (size_t i = 0; i < values.size(); ++i) halves[i] = float_to_half(values[i]);
  return halves;
}

}  // namespace effcam::format
