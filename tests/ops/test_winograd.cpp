// The Winograd F(4x4, 3x3) path of ops::conv2d on every SIMD path against the plain reference: odd image sizes
// (partial 4x4 tiles), channel counts off the vector width, more tiles than one run and more output channels
// than one group, "same" and "valid" padding, fp16 and fp32 weights, bias / input scale / residual / activations,
// row splits (same bytes as one call) and the in-place residual add. Scratch buffers are sized exactly as the
// API documents, so the sanitizer build catches any write past them.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "effcam/error.hpp"
#include "format/half.h"
#include "ops/kernels.h"
#include "ops/reference.h"
#include "format/weight_layout.h"

namespace ops = effcam::ops;
namespace format = effcam::format;

namespace {

std::vector<float> random_floats(std::mt19937& rng, size_t n, float scale) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

struct Shape {
  uint32_t h, w, cin, cout;
  bool same;  // pad 1 on every side; else no padding (out = in - 2)
};

constexpr Shape kShapes[] = {
    {7, 5, 7, 13, true},    // odd sizes: partial tiles on the right and at the bottom
    {6, 50, 5, 20, true},   // 13 tiles per row: more than one run of tiles
    {11, 9, 8, 16, true},   // three rows of tiles, the last partial; splits fall inside tiles
    {5, 6, 24, 24, false},  // valid padding; the 24-channel Fused-MBConv width
    {4, 3, 33, 70, true},   // 70 output channels: two channel groups, a partial vector in each
    {1, 1, 3, 17, true},    // a single pixel: every tap but the centre is padding
    {3, 3, 16, 16, false},  // one output pixel, whole vectors
};

constexpr ops::Activation kActivations[] = {ops::Activation::Linear, ops::Activation::Swish, ops::Activation::Relu,
                                            ops::Activation::Sigmoid};

bool close(float got, float want) { return std::fabs(got - want) <= 1e-5f * std::fabs(want) + 1e-5f; }

}  // namespace

TEST_CASE("conv2d Winograd F(4x4, 3x3): every path vs the reference, splits and in place") {
  std::mt19937 rng(7);
  for (auto path : ops::available_dispatches()) {
    ops::set_dispatch(path);
    size_t variant = 0;
    for (const Shape& s : kShapes) {
      const uint32_t out_h = s.same ? s.h : s.h - 2, out_w = s.same ? s.w : s.w - 2;
      const size_t out_size = size_t{out_h} * out_w * s.cout;
      std::vector<float> x = random_floats(rng, size_t{s.h} * s.w * s.cin, 1.0f);
      std::vector<float> hwio = random_floats(rng, size_t{9} * s.cin * s.cout, 1.0f / std::sqrt(9.0f * s.cin));
      std::vector<float> bias = random_floats(rng, s.cout, 1.0f), gate = random_floats(rng, s.cin, 1.0f);
      std::vector<float> residual = random_floats(rng, out_size, 1.0f);
      std::vector<float> packed = format::pack_conv_kernel(hwio, 3, 3, s.cin, s.cout);
      std::vector<uint16_t> halves = format::floats_to_halves(packed);
      for (uint32_t combo = 0; combo < 8; ++combo, ++variant) {
        const bool fp16 = combo & 1;
        ops::ConvArgs a;
        a.x = x.data();
        a.in_h = s.h, a.in_w = s.w, a.cin = s.cin, a.out_h = out_h, a.out_w = out_w, a.cout = s.cout;
        a.kh = a.kw = 3;
        a.pad_top = a.pad_left = s.same ? 1 : 0;
        a.kernel = fp16 ? ops::WeightView{halves.data(), true} : ops::WeightView{packed.data(), false};
        a.bias = combo & 2 ? bias.data() : nullptr;
        a.residual = combo & 4 ? residual.data() : nullptr;
        a.input_scale = variant % 3 == 0 ? gate.data() : nullptr;
        a.act = kActivations[variant % std::size(kActivations)];
        a.act_max = 6.0f;
        const std::string what = std::string(path) + " " + std::to_string(s.h) + "x" + std::to_string(s.w) + "x" +
                                 std::to_string(s.cin) + "->" + std::to_string(s.cout) + " combo " +
                                 std::to_string(combo);
        INFO(what);

        std::vector<float> want(out_size);
        a.y = want.data();
        ops::reference::conv2d(a, 0, out_h);

        std::vector<float> u(ops::winograd_weight_floats(s.cin, s.cout));
        std::vector<float> scratch(ops::winograd_scratch_floats(s.cin));
        const uint32_t blocks = (s.cout + 15) / 16;  // in two pieces, as threads would split it
        ops::winograd_transform_weights(a, u.data(), blocks / 2, blocks);
        ops::winograd_transform_weights(a, u.data(), 0, blocks / 2);
        a.winograd_weights = u.data();
        a.winograd_scratch = scratch.data();
        std::vector<float> whole(out_size);
        a.y = whole.data();
        ops::conv2d(a, 0, out_h);
        size_t bad = 0, first = 0;
        for (size_t i = 0; i < out_size; ++i) {
          if (!close(whole[i], want[i]) && bad++ == 0) first = i;
        }
        INFO(bad << " of " << out_size << " differ; first at " << first << ": got " << whole[first] << " want "
                 << want[first]);
        CHECK(bad == 0);

        // Splits at odd and even rows, an empty piece included: the same bytes as one call.
        std::vector<float> split(out_size, -1.0f);
        a.y = split.data();
        const uint32_t cuts[] = {0, out_h / 3, out_h / 3, out_h / 3 + 1, out_h};
        for (size_t k = 0; k + 1 < std::size(cuts); ++k) ops::conv2d(a, cuts[k], cuts[k + 1]);
        CHECK(std::memcmp(split.data(), whole.data(), out_size * sizeof(float)) == 0);

        if (a.residual) {  // y == residual, as the engine's residual add in place
          std::vector<float> inplace = residual;
          a.residual = a.y = inplace.data();
          ops::conv2d(a, 0, out_h);
          CHECK(std::memcmp(inplace.data(), whole.data(), out_size * sizeof(float)) == 0);
        }
      }
    }
  }
}

TEST_CASE("conv2d Winograd: only 3x3 stride-1 convs take it; the transform rejects the others") {
  CHECK(ops::conv2d_winograd(3, 3, 1, 1));
  CHECK_FALSE(ops::conv2d_winograd(3, 3, 2, 2));
  CHECK_FALSE(ops::conv2d_winograd(1, 1, 1, 1));
  CHECK_FALSE(ops::conv2d_winograd(5, 5, 1, 1));
  CHECK(ops::winograd_weight_floats(5, 20) == size_t{36} * 5 * 32);  // cout padded to whole 16-channel blocks

  std::vector<float> kernel(format::blocked_ohwi_elements(16, 1, 1, 4), 0.5f), u(36 * 4 * 16);
  ops::ConvArgs a;
  a.cin = 4, a.cout = 16, a.kh = a.kw = 1;
  a.kernel = {kernel.data(), false};
  CHECK_THROWS_AS(ops::winograd_transform_weights(a, u.data(), 0, 1), effcam::Error);
  a.kh = a.kw = 3;
  CHECK_THROWS_AS(ops::winograd_transform_weights(a, nullptr, 0, 1), effcam::Error);
  CHECK_THROWS_AS(ops::winograd_transform_weights(a, u.data(), 0, 2), effcam::Error);  // 16 channels: 1 block

  // A 3x3 conv reads the transformed weights, not the kernel: all-zero ones leave the bias.
  std::vector<float> image(5 * 4 * 4, 1.0f), bias(16), out(5 * 4 * 16), zeros(ops::winograd_weight_floats(4, 16));
  std::vector<float> work(ops::winograd_scratch_floats(4));
  for (uint32_t o = 0; o < 16; ++o) bias[o] = float(o);
  a.x = image.data(), a.y = out.data(), a.bias = bias.data();
  a.in_h = a.out_h = 5, a.in_w = a.out_w = 4, a.pad_top = a.pad_left = 1;
  a.winograd_weights = zeros.data(), a.winograd_scratch = work.data();
  ops::conv2d(a, 0, 5);
  for (size_t i = 0; i < out.size(); ++i) CHECK(out[i] == bias[i % 16]);

  // A 1x1 conv given Winograd buffers still runs directly (the buffers are not touched).
  std::vector<float> x(4, 1.0f), y(16), scratch(ops::winograd_scratch_floats(4), 7.0f);
  a.kh = a.kw = 1;
  a.x = x.data(), a.y = y.data(), a.bias = nullptr;
  a.in_h = a.in_w = a.out_h = a.out_w = 1, a.pad_top = a.pad_left = 0;
  a.winograd_weights = u.data(), a.winograd_scratch = scratch.data();
  ops::conv2d(a, 0, 1);
  for (float v : y) CHECK(v == doctest::Approx(2.0f));
  for (float v : scratch) CHECK(v == 7.0f);
}
