// Helpers the kernel suites share (tests/ops): seeded random data, packed weights in fp32 or fp16, tolerant
// comparison, and TensorFlow's "same" padding arithmetic.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "format/half.h"
#include "ops/kernels.h"

namespace effcam::test {

inline std::mt19937& rng() {
  static std::mt19937 engine(20240611);
  return engine;
}

inline std::vector<float> random_floats(size_t n, float scale = 1.0f) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng());
  return v;
}

// A packed weight tensor as fp32 or as its fp16 image; view() points into it.
struct Weights {
  std::vector<float> f32;
  std::vector<uint16_t> f16;
  bool fp16 = false;
  Weights(std::vector<float> packed, bool half) : fp16(half) {
    if (half) f16 = effcam::format::floats_to_halves(packed);
    else f32 = std::move(packed);
  }
  effcam::ops::WeightView view() const {
    return fp16 ? effcam::ops::WeightView{f16.data(), true} : effcam::ops::WeightView{f32.data(), false};
  }
};

// |got - want| within 1e-5 relative (plus a small absolute floor for values near zero).
inline void check_close(const std::vector<float>& got, const std::vector<float>& want, const std::string& what,
                        float rel = 1e-5f, float abs = 1e-5f) {
  REQUIRE(got.size() == want.size());
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    bool ok = std::fabs(got[i] - want[i]) <= rel * std::fabs(want[i]) + abs;
    if (!ok && bad++ == 0) first = i;
  }
  INFO(what << ": " << bad << " of " << got.size() << " differ; first at " << first << ": got "
            << (bad ? got[first] : 0.0f) << " want " << (bad ? want[first] : 0.0f));
  CHECK(bad == 0);
}

// TF "same" padding: out = ceil(in / stride), the odd pixel goes after.
struct Same {
  uint32_t out, pad_before;
  Same(uint32_t in, uint32_t k, uint32_t stride) {
    out = (in + stride - 1) / stride;
    int64_t total = std::max<int64_t>(int64_t(out - 1) * stride + k - in, 0);
    pad_before = static_cast<uint32_t>(total / 2);
  }
};

}  // namespace effcam::test
