// Every SIMD path of ops/kernels.h against the plain references of ops/reference.h, on awkward shapes (odd
// sizes, channel counts off the vector width, borders), fp16 and fp32 weights, every activation, row-range
// splits (must give the same bytes as one call) and the in-place uses the engine relies on.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "effcam/error.hpp"
#include "format/half.h"
#include "ops/kernels.h"
#include "ops/reference.h"
#include "tests/ops/kernel_test_support.h"
#include "format/weight_layout.h"

#if defined(__SANITIZE_ADDRESS__)
#define EFFCAM_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EFFCAM_TEST_SANITIZED 1
#endif
#endif
#ifndef EFFCAM_TEST_SANITIZED
#define EFFCAM_TEST_SANITIZED 0
#endif

namespace ops = effcam::ops;
namespace format = effcam::format;
namespace ref = effcam::ops::reference;
using ops::Activation;
using effcam::test::check_close;
using effcam::test::random_floats;
using effcam::test::rng;
using effcam::test::Same;
using effcam::test::Weights;

namespace {

constexpr Activation kElementwise[] = {Activation::Linear, Activation::Relu, Activation::Sigmoid,
                                       Activation::Swish, Activation::HardSigmoid, Activation::HardSigmoidKeras2,
                                       Activation::HardSwish, Activation::Tanh};
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr bool kSanitized = EFFCAM_TEST_SANITIZED;

// Each activation, with relu alternating between plain (+inf) and relu6.
Activation activation_for(size_t i) { return kElementwise[i % std::size(kElementwise)]; }
float act_max_for(size_t i) { return (i / std::size(kElementwise)) % 2 ? 6.0f : kInf; }

void check_same_bytes(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  INFO(what);
  REQUIRE(a.size() == b.size());
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Calls f(begin, end) over [0, n) in uneven pieces, including an empty one.
template <class F>
void in_pieces(uint32_t n, F f) {
  uint32_t cuts[] = {0, n / 3, n / 3, n / 3 + 1, n};
  for (size_t i = 0; i + 1 < std::size(cuts); ++i) f(std::min(cuts[i], n), std::min(cuts[i + 1], n));
}

struct ConvShape {
  uint32_t h, w, cin, cout, k, stride;
  bool same;
};

constexpr ConvShape kConvShapes[] = {
    {75, 75, 3, 17, 3, 2, true},  // 75 -> 38, stem-like
    {7, 5, 7, 13, 3, 1, true},    {7, 5, 13, 40, 5, 1, true},   {9, 11, 17, 7, 5, 2, true},
    {8, 8, 40, 33, 1, 1, false},  // pointwise GEMM
    {7, 5, 17, 40, 1, 1, true},   {6, 6, 13, 16, 1, 2, true},   {10, 9, 16, 48, 3, 2, false},
    {3, 3, 8, 20, 5, 1, true},    // kernel wider than the image
};

}  // namespace

TEST_CASE("dispatch: the best path by default; paths are listed, forced and validated") {
  // This must be the first test case of the process: the others force paths.
  auto paths = ops::available_dispatches();
  REQUIRE(!paths.empty());
  CHECK(ops::dispatch_name() == paths.front());
  CHECK(paths.back() == "scalar");
  for (auto path : paths) {
    ops::set_dispatch(path);
    CHECK(ops::dispatch_name() == path);
  }
  CHECK_THROWS_AS(ops::set_dispatch("sse9"), effcam::Error);
  MESSAGE("dispatch paths on this CPU: " << paths.size() << ", best " << std::string(paths.front()));
}

TEST_CASE("activations: every path matches the std:: formulas at extreme inputs") {
  std::vector<float> x = {-100.0f, -88.0f, -87.5f, -20.0f, -3.0f, -1.0f, -1e-3f, -0.0f, 0.0f, 1e-7f,
                          1e-3f,   0.5f,   1.0f,   2.9f,   3.0f,  6.0f,  20.0f, 88.0f, 100.0f};
  for (float v : random_floats(61, 12.0f)) x.push_back(v);
  for (auto path : ops::available_dispatches()) {
    ops::set_dispatch(path);
    for (size_t i = 0; i < 2 * std::size(kElementwise); ++i) {
      Activation act = activation_for(i);
      std::vector<float> got(x.size()), want(x.size());
      ops::activate(x.data(), got.data(), 0, x.size(), act, act_max_for(i));
      for (size_t j = 0; j < x.size(); ++j) {
        double v = x[j], s = 1.0 / (1.0 + std::exp(-v));
        double r6 = std::min(std::max(v + 3.0, 0.0), 6.0);
        double expect[] = {v, std::min(std::max(v, 0.0), double(act_max_for(i))), s, v * s, r6 / 6.0,
                           std::min(std::max(0.2 * v + 0.5, 0.0), 1.0), v * r6 / 6.0, std::tanh(v)};
        want[j] = static_cast<float>(expect[static_cast<uint32_t>(act)]);
        INFO(std::string(path) << " act " << static_cast<int>(act) << " x " << x[j]);
        CHECK(!std::isnan(got[j]));
      }
      check_close(got, want, std::string(path) + " act " + std::to_string(static_cast<int>(act)), 1e-6f,
                  std::numeric_limits<float>::min());
      // In place (y == x) gives the same result.
      std::vector<float> inplace = x;
      ops::activate(inplace.data(), inplace.data(), 0, x.size(), act, act_max_for(i));
      check_same_bytes(inplace, got, "activate in place");
    }
  }
}

TEST_CASE("conv2d: every path vs the reference") {
  size_t variant = 0;
  for (auto path : ops::available_dispatches()) {
    ops::set_dispatch(path);
    for (const ConvShape& s : kConvShapes) {
      Same sh(s.h, s.k, s.stride), sw(s.w, s.k, s.stride);
      uint32_t out_h = s.same ? sh.out : (s.h - s.k) / s.stride + 1;
      uint32_t out_w = s.same ? sw.out : (s.w - s.k) / s.stride + 1;
      std::vector<float> x = random_floats(size_t{s.h} * s.w * s.cin);
      float scale = 1.0f / std::sqrt(float(s.k * s.k * s.cin));
      std::vector<float> hwio = random_floats(size_t{s.k} * s.k * s.cin * s.cout, scale);
      std::vector<float> bias = random_floats(s.cout), gate = random_floats(s.cin);
      std::vector<float> residual = random_floats(size_t{out_h} * out_w * s.cout);
      for (uint32_t combo = 0; combo < 16; ++combo, ++variant) {
        Weights w(format::pack_conv_kernel(hwio, s.k, s.k, s.cin, s.cout), combo & 1);
        ops::ConvArgs a;
        a.x = x.data();
        a.in_h = s.h, a.in_w = s.w, a.cin = s.cin, a.out_h = out_h, a.out_w = out_w, a.cout = s.cout;
        a.kh = a.kw = s.k, a.stride_h = a.stride_w = s.stride;
        a.pad_top = s.same ? sh.pad_before : 0, a.pad_left = s.same ? sw.pad_before : 0;
        a.kernel = w.view();
        a.bias = combo & 2 ? bias.data() : nullptr;
        a.residual = combo & 4 ? residual.data() : nullptr;
        a.input_scale = combo & 8 ? gate.data() : nullptr;
        a.act = activation_for(variant), a.act_max = act_max_for(variant);
        std::string what = std::string(path) + " conv " + std::to_string(s.h) + "x" + std::to_string(s.w) + "x" +
                           std::to_string(s.cin) + "->" + std::to_string(s.cout) + " k" + std::to_string(s.k) +
                           " s" + std::to_string(s.stride) + " combo " + std::to_string(combo);

        std::vector<float> want(residual.size()), whole(residual.size()), split(residual.size(), -1.0f);
        a.y = want.data();
        ref::conv2d(a, 0, out_h);
        a.y = whole.data();
        ops::conv2d(a, 0, out_h);
        check_close(whole, want, what);
        a.y = split.data();
        in_pieces(out_h, [&](uint32_t b, uint32_t e) { ops::conv2d(a, b, e); });
        check_same_bytes(split, whole, what + " split rows");
        if (a.residual) {  // the engine's in-place residual add: y == residual
          std::vector<float> inplace = residual;
          a.residual = a.y = inplace.data();
          ops::conv2d(a, 0, out_h);
          check_same_bytes(inplace, whole, what + " in place");
        }
      }
    }
  }
}

TEST_CASE("fp16 weights: every path widens every half exactly (subnormals, infinities, NaNs)") {
  // A 1x1 conv of one pixel of 1.0 into 65536 channels whose weights are every fp16 bit pattern: y = 1 x w + 0.
  constexpr uint32_t kHalves = 65536;
  Weights w(std::vector<float>(kHalves), true);
  for (uint32_t h = 0; h < kHalves; ++h) w.f16[h] = static_cast<uint16_t>(h);  // cin 1: packed index = channel
  const float one = 1.0f;
  for (auto path : ops::available_dispatches()) {
    ops::set_dispatch(path);
    ops::ConvArgs a;
    a.x = &one;
    a.in_h = a.in_w = a.out_h = a.out_w = a.cin = 1, a.cout = kHalves;
    a.kh = a.kw = a.stride_h = a.stride_w = 1;
    a.kernel = w.view();
    a.act = Activation::Linear;
    std::vector<float> y(kHalves);
    a.y = y.data();
    ops::conv2d(a, 0, 1);
    size_t bad = 0;
    for (uint32_t h = 0; h < kHalves; ++h) {
      const float want = format::half_to_float(static_cast<uint16_t>(h));  // -0 comes out +0: equal as numbers
      if (std::isnan(want) ? !std::isnan(y[h]) : y[h] != want) ++bad;
    }
    INFO(path);
    CHECK(bad == 0);
  }
}

TEST_CASE("depthwise2d: every path vs the reference, with channel sums") {
  struct Shape {
    uint32_t h, w, cin, mult, k, stride;
  };
  const Shape shapes[] = {{75, 75, 3, 1, 3, 2}, {7, 5, 17, 1, 5, 1}, {7, 5, 40, 1, 3, 2},
                          {9, 8, 13, 2, 3, 1},  {6, 7, 7, 3, 5, 2},  {4, 4, 16, 1, 1, 1}};
  size_t variant = 0;
  for (auto path : ops::available_dispatches()) {
    ops::set_dispatch(path);
    for (const Shape& s : shapes) {
      uint32_t cout = s.cin * s.mult;
      Same sh(s.h, s.k, s.stride), sw(s.w, s.k, s.stride);
      std::vector<float> x = random_floats(size_t{s.h} * s.w * s.cin);
      std::vector<float> hwcm = random_floats(size_t{s.k} * s.k * cout, 1.0f / float(s.k));
      std::vector<float> bias = random_floats(cout);
      for (uint32_t combo = 0; combo < 4; ++combo, ++variant) {
        Weights w(format::pack_depthwise_kernel(hwcm, s.k, s.k, s.cin, s.mult), combo & 1);
        ops::DepthwiseArgs a;
        a.x = x.data(), a.in_h = s.h, a.in_w = s.w, a.cin = s.cin;
        a.out_h = sh.out, a.out_w = sw.out, a.cout = cout;
        a.kh = a.kw = s.k, a.stride_h = a.stride_w = s.stride, a.pad_top = sh.pad_before, a.pad_left = sw.pad_before;
        a.kernel = w.view();
        a.bias = combo & 2 ? bias.data() : nullptr;
        a.act = activation_for(variant), a.act_max = act_max_for(variant);
        std::string what = std::string(path) + " depthwise " + std::to_string(s.h) + "x" + std::to_string(s.w) +
                           "x" + std::to_string(s.cin) + "*" + std::to_string(s.mult) + " k" + std::to_string(s.k) +
                           " s" + std::to_string(s.stride) + " combo " + std::to_string(combo);
        size_t out_size = size_t{sh.out} * sw.out * cout;
        std::vector<float> want(out_size), got(out_size), split(out_size, -1.0f);
        std::vector<float> want_sums(cout, 1.0f), sums(cout, 1.0f), split_sums(cout, 1.0f);
        a.y = want.data(), a.channel_sums = want_sums.data();
        ref::depthwise2d(a, 0, sh.out);
        a.y = got.data(), a.channel_sums = sums.data();
        ops::depthwise2d(a, 0, sh.out);
        check_close(got, want, what);
        check_close(sums, want_sums, what + " sums", 1e-5f, 1e-4f);
        a.y = split.data(), a.channel_sums = split_sums.data();
        in_pieces(sh.out, [&](uint32_t b, uint32_t e) { ops::depthwise2d(a, b, e); });
        check_same_bytes(split, got, what + " split rows");
        check_same_bytes(split_sums, sums, what + " split sums");
        a.channel_sums = nullptr;  // optional
        std::vector<float> no_sums(out_size);
        a.y = no_sums.data();
        ops::depthwise2d(a, 0, sh.out);
        check_same_bytes(no_sums, got, what + " without sums");
      }
    }
  }
}

TEST_CASE("dense and squeeze_excite: every path vs the reference, unit splits") {
  const uint32_t sizes[][2] = {{1, 1}, {3, 17}, {40, 7}, {1280, 101}, {13, 40}, {257, 16}};
  size_t variant = 0;
  for (auto path : ops::available_dispatches()) {
    ops::set_dispatch(path);
    for (auto [in, units] : sizes) {
      std::vector<float> x = random_floats(in), bias = random_floats(units);
      std::vector<float> io = random_floats(size_t{in} * units, 1.0f / std::sqrt(float(in)));
      for (uint32_t combo = 0; combo < 4; ++combo, ++variant) {
        Weights w(format::pack_dense_kernel(io, in, units), combo & 1);
        ops::DenseArgs a{x.data(), in, nullptr, units, w.view(), combo & 2 ? bias.data() : nullptr,
                         activation_for(variant), act_max_for(variant)};
        std::string what = std::string(path) + " dense " + std::to_string(in) + "->" + std::to_string(units) +
                           " combo " + std::to_string(combo);
        std::vector<float> want(units), got(units), split(units, -1.0f);
        a.y = want.data();
        ref::dense(a, 0, units);
        a.y = got.data();
        ops::dense(a, 0, units);
        check_close(got, want, what);
        a.y = split.data();
        in_pieces(units, [&](uint32_t b, uint32_t e) { ops::dense(a, b, e); });
        check_same_bytes(split, got, what + " split units");
      }
    }
    for (auto [channels, reduced] : {std::pair<uint32_t, uint32_t>{40, 10}, {17, 3}, {96, 4}}) {
      std::vector<float> means = random_floats(channels), b1 = random_floats(reduced), b2 = random_floats(channels);
      for (bool fp16 : {false, true}) {
        Weights w1(format::pack_dense_kernel(random_floats(size_t{channels} * reduced), channels, reduced), fp16);
        Weights w2(format::pack_dense_kernel(random_floats(size_t{channels} * reduced), reduced, channels), fp16);
        std::vector<float> hidden(reduced), want(channels), got(channels);
        ops::SqueezeExciteArgs a{means.data(), channels, reduced, w1.view(), b1.data(), Activation::Swish, kInf,
                                 w2.view(), b2.data(), Activation::Sigmoid, kInf, hidden.data(), want.data()};
        ref::squeeze_excite(a);
        a.gate = got.data();
        ops::squeeze_excite(a);
        check_close(got, want, std::string(path) + " squeeze_excite " + std::to_string(channels));
      }
    }
  }
}

TEST_CASE("elementwise: channel_affine, add, multiply, in place and split") {
  const uint32_t shapes[][2] = {{35, 13}, {35, 40}, {4, 3}, {1, 1}, {49, 17}};
  size_t variant = 0;
  for (auto path : ops::available_dispatches()) {
    ops::set_dispatch(path);
    for (auto [pixels, channels] : shapes) {
      size_t n = size_t{pixels} * channels;
      std::vector<float> x = random_floats(n, 4.0f), b = random_floats(n, 4.0f), res = random_floats(n);
      std::vector<float> scale = random_floats(channels), bias = random_floats(channels);
      for (uint32_t combo = 0; combo < 8; ++combo, ++variant) {
        std::string what = std::string(path) + " " + std::to_string(pixels) + "x" + std::to_string(channels) +
                           " combo " + std::to_string(combo);
        ops::ChannelAffineArgs a{x.data(), nullptr, pixels, channels, combo & 1 ? scale.data() : nullptr,
                                 combo & 2 ? bias.data() : nullptr, combo & 4 ? res.data() : nullptr,
                                 activation_for(variant), act_max_for(variant)};
        std::vector<float> want(n), got(n, -1.0f);
        a.y = want.data();
        ref::channel_affine(a, 0, pixels);
        a.y = got.data();
        in_pieces(pixels, [&](uint32_t b0, uint32_t e0) { ops::channel_affine(a, b0, e0); });
        check_close(got, want, what + " channel_affine", 1e-6f, 1e-6f);
        std::vector<float> inplace = x;  // y == x
        a.x = a.y = inplace.data();
        ops::channel_affine(a, 0, pixels);
        check_same_bytes(inplace, got, what + " channel_affine y == x");
        if (a.residual) {  // y == residual
          inplace = res;
          a.x = x.data(), a.residual = a.y = inplace.data();
          ops::channel_affine(a, 0, pixels);
          check_same_bytes(inplace, got, what + " channel_affine y == residual");
        }

        bool broadcast = combo & 1;
        for (bool product : {false, true}) {
          ops::ElementwiseArgs e{x.data(), b.data(), nullptr, pixels, channels, broadcast, activation_for(variant),
                                 act_max_for(variant)};
          auto run = product ? ops::multiply : ops::add;
          std::string op = what + (product ? " multiply" : " add") + (broadcast ? " broadcast" : "");
          std::vector<float> want_e(n), got_e(n, -1.0f);
          e.y = want_e.data();
          (product ? ref::multiply : ref::add)(e, 0, pixels);
          e.y = got_e.data();
          in_pieces(pixels, [&](uint32_t b0, uint32_t e0) { run(e, b0, e0); });
          check_close(got_e, want_e, op, 1e-6f, 1e-6f);
          std::vector<float> in_a = x;  // y == a
          e.a = e.y = in_a.data();
          run(e, 0, pixels);
          check_same_bytes(in_a, got_e, op + " y == a");
          if (!broadcast) {  // y == b
            std::vector<float> in_b = b;
            e.a = x.data(), e.b = e.y = in_b.data();
            run(e, 0, pixels);
            check_same_bytes(in_b, got_e, op + " y == b");
          }
        }
      }
    }
  }
}

TEST_CASE("pooling, zero_pad and softmax: every path vs the reference") {
  struct Shape {
    uint32_t h, w, c, k, stride;
    bool same;
  };
  const Shape shapes[] = {{75, 75, 3, 3, 2, true}, {7, 5, 17, 3, 1, true}, {8, 6, 13, 2, 2, false},
                          {5, 7, 40, 5, 2, true},  {1, 1, 7, 1, 1, false}};
  for (auto path : ops::available_dispatches()) {
    ops::set_dispatch(path);
    for (const Shape& s : shapes) {
      std::string what = std::string(path) + " " + std::to_string(s.h) + "x" + std::to_string(s.w) + "x" +
                         std::to_string(s.c) + " k" + std::to_string(s.k) + " s" + std::to_string(s.stride);
      std::vector<float> x = random_floats(size_t{s.h} * s.w * s.c, 3.0f);
      Same sh(s.h, s.k, s.stride), sw(s.w, s.k, s.stride);
      uint32_t out_h = s.same ? sh.out : (s.h - s.k) / s.stride + 1;
      uint32_t out_w = s.same ? sw.out : (s.w - s.k) / s.stride + 1;
      ops::PoolArgs p{x.data(), s.h, s.w, s.c, nullptr, out_h, out_w, s.k, s.k, s.stride, s.stride,
                      s.same ? sh.pad_before : 0, s.same ? sw.pad_before : 0};
      for (bool max : {true, false}) {
        std::vector<float> want(size_t{out_h} * out_w * s.c), got(want.size(), -1.0f);
        p.y = want.data();
        (max ? ref::max_pool2d : ref::avg_pool2d)(p, 0, out_h);
        p.y = got.data();
        in_pieces(out_h, [&](uint32_t b, uint32_t e) { (max ? ops::max_pool2d : ops::avg_pool2d)(p, b, e); });
        check_close(got, want, what + (max ? " max_pool" : " avg_pool"), 1e-6f, 1e-6f);
      }

      ops::GlobalPoolArgs g{x.data(), s.h, s.w, s.c, nullptr};
      std::vector<float> want(s.c), got(s.c, -1.0f);
      g.y = want.data();
      ref::global_avg_pool(g, 0, s.c);
      g.y = got.data();
      in_pieces(s.c, [&](uint32_t b, uint32_t e) { ops::global_avg_pool(g, b, e); });
      check_close(got, want, what + " global_avg_pool", 1e-5f, 1e-6f);

      ops::ZeroPadArgs z{x.data(), s.h, s.w, s.c, nullptr, s.k % 3, s.k / 2, s.stride, 1};
      uint32_t pad_h = s.h + z.pad_top + z.pad_bottom;
      std::vector<float> want_pad(size_t{pad_h} * (s.w + z.pad_left + z.pad_right) * s.c);
      std::vector<float> got_pad(want_pad.size(), -1.0f);
      z.y = want_pad.data();
      ref::zero_pad(z, 0, pad_h);
      z.y = got_pad.data();
      in_pieces(pad_h, [&](uint32_t b, uint32_t e) { ops::zero_pad(z, b, e); });
      check_same_bytes(got_pad, want_pad, what + " zero_pad");
    }
  }
  for (std::vector<float> logits : {random_floats(101, 10.0f), std::vector<float>{1000.0f, -1000.0f, 999.0f},
                                    std::vector<float>{-5.0f}}) {
    std::vector<float> want = logits;
    ref::softmax(want.data(), want.size());
    ops::softmax(logits.data(), logits.size());
    check_close(logits, want, "softmax", 1e-6f, 1e-7f);
    double total = 0;
    for (float v : logits) total += v;
    CHECK(total == doctest::Approx(1.0).epsilon(1e-6));
  }
}

TEST_CASE("kernels reject bad arguments with effcam::Error") {
  std::vector<float> x(16), y(16), w(16);
  ops::ConvArgs a;
  a.x = x.data(), a.y = y.data(), a.in_h = a.in_w = a.out_h = a.out_w = 2, a.cin = a.cout = 1;
  a.kernel = {w.data(), false};
  CHECK_NOTHROW(ops::conv2d(a, 0, 2));
  CHECK_THROWS_AS(ops::conv2d(a, 1, 3), effcam::Error);  // rows past the output
  CHECK_THROWS_AS(ops::conv2d(a, 2, 1), effcam::Error);  // reversed
  a.act = Activation::Softmax;
  CHECK_THROWS_AS(ops::conv2d(a, 0, 2), effcam::Error);
  a.act = static_cast<Activation>(99);
  CHECK_THROWS_AS(ops::conv2d(a, 0, 2), effcam::Error);
  a.act = Activation::Linear, a.stride_h = 0;
  CHECK_THROWS_AS(ops::conv2d(a, 0, 2), effcam::Error);
  ops::DepthwiseArgs d;
  d.x = x.data(), d.y = y.data(), d.kernel = {w.data(), false}, d.in_h = d.in_w = d.out_h = d.out_w = 1;
  d.cin = 2, d.cout = 3;  // not a multiple
  CHECK_THROWS_AS(ops::depthwise2d(d, 0, 1), effcam::Error);
  ops::DenseArgs n{x.data(), 4, y.data(), 4, {nullptr, false}, nullptr, Activation::Linear, 0};
  CHECK_THROWS_AS(ops::dense(n, 0, 4), effcam::Error);  // no weights
  CHECK_THROWS_AS(ref::activate(1.0f, Activation::Softmax, 0), effcam::Error);
}

TEST_CASE("bench: 1x1 conv 48x48x256 -> 1280 (fp16 weights), single thread, SIMD paths") {
  const uint32_t h = 48, w = 48, cin = 256, cout = 1280;
  std::vector<float> x = random_floats(size_t{h} * w * cin), y(size_t{h} * w * cout), bias = random_floats(cout);
  Weights k(format::pack_conv_kernel(random_floats(size_t{cin} * cout, 0.06f), 1, 1, cin, cout), true);
  ops::ConvArgs a;
  a.x = x.data(), a.in_h = h, a.in_w = w, a.cin = cin, a.y = y.data(), a.out_h = h, a.out_w = w, a.cout = cout;
  a.kernel = k.view(), a.bias = bias.data(), a.act = Activation::Swish;
  const double flops = 2.0 * h * w * cin * cout;
  if (kSanitized) {
    MESSAGE("SKIP: timing a sanitizer build means nothing");
    return;
  }
  for (auto path : ops::available_dispatches()) {
    if (path == "scalar") continue;  // the fallback; too slow to time in sanitizer builds
    ops::set_dispatch(path);
    // Best of a few runs, wall and CPU time: the machine is shared, CPU time is the steadier number.
    double wall = 1e30, cpu = 1e30;
    for (int rep = 0; rep < 5; ++rep) {
      auto start = std::chrono::steady_clock::now();
      std::clock_t cpu_start = std::clock();
      ops::conv2d(a, 0, h);
      cpu = std::min(cpu, double(std::clock() - cpu_start) / CLOCKS_PER_SEC);
      wall = std::min(wall, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    MESSAGE(std::string(path) << ": " << wall * 1e3 << " ms wall, " << flops / wall * 1e-9 << " GFLOP/s wall, "
                              << flops / cpu * 1e-9 << " GFLOP/s cpu");
    CHECK(std::isfinite(y[12345]));
  }
}
