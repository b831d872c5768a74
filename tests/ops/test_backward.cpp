// The gradient kernels of ops/backward.h against their plain twins in ops/reference.h (written the other way round:
// each input gathers its contributions), and both against the forward kernels they differentiate: for an op linear
// in its input, <dy, F(x)> = <F^T(dy), x> (the adjoint identity), which pins the gradient to the forward semantics
// without a hand-written expected value. Gradients accumulate (+=): every call starts from a random dx.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "base/thread_pool.h"
#include "effcam/error.hpp"
#include "format/weight_layout.h"
#include "ops/backward.h"
#include "ops/kernels.h"
#include "ops/reference.h"
#include "tests/ops/kernel_test_support.h"

namespace ops = effcam::ops;
namespace format = effcam::format;
namespace ref = effcam::ops::reference;
using effcam::test::check_close;
using effcam::test::random_floats;
using effcam::test::Same;
using effcam::test::Weights;

namespace {

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += double{a[i]} * b[i];
  return sum;
}

// Runs the fast and the reference gradient from the same random starting dx; checks they agree (within 1e-5
// relative plus `abs`) and returns what the fast kernel added (dx_after - dx_before).
std::vector<float> gradient(size_t n, const std::function<void(float*)>& fast, const std::function<void(float*)>& plain,
                            const std::string& what, float abs = 1e-5f) {
  const std::vector<float> start = random_floats(n);
  std::vector<float> got = start, want = start;
  fast(got.data());
  plain(want.data());
  check_close(got, want, what, 1e-5f, abs);
  std::vector<float> added(n);
  for (size_t i = 0; i < n; ++i) added[i] = got[i] - start[i];
  return added;
}

// <dy, F(x)> == <F^T(dy), x> for a forward F linear in x.
void check_adjoint(const std::vector<float>& dy, const std::vector<float>& y, const std::vector<float>& dx,
                   const std::vector<float>& x, const std::string& what) {
  const double forward = dot(dy, y), backward = dot(dx, x);
  INFO(what << ": <dy, F(x)> = " << forward << ", <F^T dy, x> = " << backward);
  CHECK(std::fabs(forward - backward) <= 1e-4 * (std::fabs(forward) + 1.0));
}

// Runs f(" on <path>, <n> threads", pool) on every dispatch path of this CPU with a pool of 1 and of 3 threads; leaves
// the best path set.
void for_each_path_and_pool(const std::function<void(const std::string&, effcam::ThreadPool&)>& f) {
  for (uint32_t threads : {1u, 3u}) {
    effcam::ThreadPool pool(threads);
    for (auto path : ops::available_dispatches()) {
      ops::set_dispatch(path);
      f(" on " + std::string(path) + ", " + std::to_string(threads) + " threads", pool);
    }
  }
  ops::set_dispatch(ops::available_dispatches().front());
}

struct Window {
  uint32_t h, w, c, k, stride;
  bool same;
};
constexpr Window kWindows[] = {{9, 7, 5, 3, 2, true}, {8, 8, 17, 2, 2, false}, {7, 5, 3, 5, 1, true},
                               {6, 9, 16, 3, 1, false}, {3, 3, 4, 5, 2, true}, {10, 7, 24, 1, 1, false},
                               {8, 7, 6, 1, 2, false},  {11, 9, 7, 3, 3, true},
                               {9, 61, 20, 3, 1, true}};  // 3x3 stride 1: Winograd, 16 tiles a row (two runs)

// Output size and leading padding of one window dimension.
std::pair<uint32_t, uint32_t> window_out(uint32_t in, const Window& s) {
  if (!s.same) return {(in - s.k) / s.stride + 1, 0};
  const Same same(in, s.k, s.stride);
  return {same.out, same.pad_before};
}

// A conv's or depthwise conv's input gradient of dy on every path and pool (a conv's through Winograd too) against
// its reference twin; returns it (the direct conv's: Winograd's rounding is checked against the reference only).
template <class Args>
std::vector<float> check_input_gradient(const Args& a, const std::vector<float>& dy, size_t x_size,
                                        const std::string& what) {
  constexpr bool conv = std::is_same_v<Args, ops::ConvArgs>;
  std::vector<float> scratch;
  std::vector<float> dx;
  for (bool winograd : conv ? std::vector<bool>{true, false} : std::vector<bool>{false}) {
    for_each_path_and_pool([&](const std::string& path, effcam::ThreadPool& pool) {
      if constexpr (conv) {
        scratch.assign(ops::conv2d_backward_scratch_floats(a, pool.size(), winograd, false), 0.0f);
      } else {
        scratch.assign(ops::depthwise2d_backward_scratch_floats(a), 0.0f);
      }
      auto fast = [&](float* g, ops::GradientWrite write) {
        if constexpr (conv) {
          ops::conv2d_backward_input(a, dy.data(), g, scratch.data(), pool, winograd, {}, write);
        } else {
          ops::depthwise2d_backward_input(a, dy.data(), g, scratch.data(), pool, write);
        }
      };
      dx = gradient(
          x_size, [&](float* g) { fast(g, ops::GradientWrite::Accumulate); },
          [&](float* g) {
            if constexpr (conv) {
              ref::conv2d_backward_input(a, dy.data(), g);
            } else {
              ref::depthwise2d_backward_input(a, dy.data(), g);
            }
          },
          // Winograd's transforms round at ~1e-5 of the unit-sized terms (cancelling to smaller sums): an absolute
          // margin of that order.
          what + path + (winograd ? " winograd" : ""), winograd ? 1e-4f : 1e-5f);
      // Written over a buffer of NaNs (a first share): the values of adding to zeros (-0 and +0 compare equal).
      std::vector<float> over(x_size, std::nanf("")), added(x_size, 0.0f);
      fast(over.data(), ops::GradientWrite::Overwrite);
      fast(added.data(), ops::GradientWrite::Accumulate);
      size_t differ = 0;
      for (size_t i = 0; i < x_size; ++i) differ += over[i] == added[i] ? 0 : 1;
      INFO(what << path << (winograd ? " winograd" : "") << " overwriting");
      CHECK(differ == 0);
    });
  }
  return dx;
}

}  // namespace

TEST_CASE("conv2d_backward_input: matches its reference and is the forward conv's adjoint") {
  for (const Window& s : kWindows) {
    for (uint32_t cout : {5u, 16u, 33u}) {
      for (bool fp16 : {false, true}) {
        const auto [out_h, pad_top] = window_out(s.h, s);
        const auto [out_w, pad_left] = window_out(s.w, s);
        Weights w(format::pack_conv_kernel(random_floats(size_t{s.k} * s.k * s.c * cout), s.k, s.k, s.c, cout), fp16);
        ops::ConvArgs a;
        a.in_h = s.h, a.in_w = s.w, a.cin = s.c, a.out_h = out_h, a.out_w = out_w, a.cout = cout;
        a.kh = a.kw = s.k, a.stride_h = a.stride_w = s.stride, a.pad_top = pad_top, a.pad_left = pad_left;
        a.kernel = w.view();
        const std::string what = "conv " + std::to_string(s.h) + "x" + std::to_string(s.w) + "x" + std::to_string(s.c) +
                                 "->" + std::to_string(cout) + " k" + std::to_string(s.k) + " s" +
                                 std::to_string(s.stride) + (fp16 ? " fp16" : " fp32");
        const std::vector<float> x = random_floats(size_t{s.h} * s.w * s.c);
        const std::vector<float> dy = random_floats(size_t{out_h} * out_w * cout);
        const std::vector<float> dx = check_input_gradient(a, dy, x.size(), what);
        std::vector<float> y(dy.size());
        a.x = x.data(), a.y = y.data();
        ref::conv2d(a, 0, out_h);
        check_adjoint(dy, y, dx, x, what);
      }
    }
  }
}

TEST_CASE("depthwise2d_backward_input: matches its reference and is the forward's adjoint, with multipliers") {
  for (const Window& s : kWindows) {
    for (uint32_t multiplier : {1u, 3u}) {
      const auto [out_h, pad_top] = window_out(s.h, s);
      const auto [out_w, pad_left] = window_out(s.w, s);
      const uint32_t cout = s.c * multiplier;
      Weights w(format::pack_depthwise_kernel(random_floats(size_t{s.k} * s.k * cout), s.k, s.k, s.c, multiplier),
                multiplier == 3);
      ops::DepthwiseArgs a;
      a.in_h = s.h, a.in_w = s.w, a.cin = s.c, a.out_h = out_h, a.out_w = out_w, a.cout = cout;
      a.kh = a.kw = s.k, a.stride_h = a.stride_w = s.stride, a.pad_top = pad_top, a.pad_left = pad_left;
      a.kernel = w.view();
      const std::string what = "depthwise " + std::to_string(s.h) + "x" + std::to_string(s.w) + "x" +
                               std::to_string(s.c) + " x" + std::to_string(multiplier) + " k" + std::to_string(s.k);
      const std::vector<float> x = random_floats(size_t{s.h} * s.w * s.c);
      const std::vector<float> dy = random_floats(size_t{out_h} * out_w * cout);
      const std::vector<float> dx = check_input_gradient(a, dy, x.size(), what);
      std::vector<float> y(dy.size());
      a.x = x.data(), a.y = y.data();
      ref::depthwise2d(a, 0, out_h);
      check_adjoint(dy, y, dx, x, what);
    }
  }
}

TEST_CASE("conv and depthwise gradients: explicit padding wider than the kernel (phases with zero taps)") {
  // 1x1 and 3x3 kernels, strides 1 to 3, leading padding up to 4: some phases read no tap, others need zero taps
  // so that their padding as a forward conv stays non-negative.
  for (uint32_t k : {1u, 3u})
    for (uint32_t stride : {1u, 2u, 3u})
      for (uint32_t pad : {2u, 4u}) {
        const uint32_t in_h = 7, in_w = 6, c = 5, cout = 18;
        const uint32_t out_h = (in_h + pad + 1 - k) / stride + 1, out_w = (in_w + pad - k) / stride + 1;
        const std::string what = "k" + std::to_string(k) + " s" + std::to_string(stride) + " pad " + std::to_string(pad);
        const std::vector<float> x = random_floats(size_t{in_h} * in_w * c);
        Weights w(format::pack_conv_kernel(random_floats(size_t{k} * k * c * cout), k, k, c, cout), true);
        ops::ConvArgs a;
        a.in_h = in_h, a.in_w = in_w, a.cin = c, a.out_h = out_h, a.out_w = out_w, a.cout = cout;
        a.kh = a.kw = k, a.stride_h = a.stride_w = stride, a.pad_top = pad, a.pad_left = pad - 1;
        a.kernel = w.view();
        check_input_gradient(a, random_floats(size_t{out_h} * out_w * cout), x.size(), "conv " + what);
        Weights dw(format::pack_depthwise_kernel(random_floats(size_t{k} * k * c), k, k, c, 1), false);
        ops::DepthwiseArgs d;
        d.in_h = in_h, d.in_w = in_w, d.cin = d.cout = c, d.out_h = out_h, d.out_w = out_w;
        d.kh = d.kw = k, d.stride_h = d.stride_w = stride, d.pad_top = pad, d.pad_left = pad - 1;
        d.kernel = dw.view();
        check_input_gradient(d, random_floats(size_t{out_h} * out_w * c), x.size(), "depthwise " + what);
      }
}

TEST_CASE("activation_backward: every activation's derivative on every path, with a mean's share, in place too") {
  const uint32_t pixels = 53, channels = 19;  // not a multiple of any vector width
  const size_t n = size_t{pixels} * channels;
  const std::vector<float> z = random_floats(n, 7.0f);  // past every kink (+-2.5, +-3, 6)
  const std::vector<float> dy = random_floats(n), dmean = random_floats(channels);
  using A = ops::Activation;
  for (A act : {A::Linear, A::Relu, A::Sigmoid, A::Swish, A::HardSigmoid, A::HardSigmoidKeras2, A::HardSwish, A::Tanh}) {
    for (int terms = 0; terms < 3; ++terms) {  // dy, dy + the mean's, the mean's only
      const std::string what = "activation " + std::to_string(static_cast<int>(act)) + " terms " + std::to_string(terms);
      std::vector<float> want(n);
      ops::ActivationGradientArgs args{z.data(), terms < 2 ? dy.data() : nullptr, terms > 0 ? dmean.data() : nullptr,
                                       1.0f / pixels, want.data(), pixels, channels, act, 6.0f};
      ref::activation_backward(args, 0, pixels);
      if (act == A::Linear) args.z = nullptr;  // not read
      for_each_path_and_pool([&](const std::string& path, effcam::ThreadPool& pool) {
        std::vector<float> got(n);
        ops::ActivationGradientArgs fast = args;
        fast.dz = got.data();
        pool.parallel_for(pixels, [&](uint32_t b, uint32_t e, uint32_t) { ops::activation_backward(fast, b, e); });
        check_close(got, want, what + path, 1e-5f, 1e-5f);
        if (terms == 0) {  // the flat form, in place over dy
          got = dy;
          ops::activation_backward(z.data(), got.data(), got.data(), n, act, 6.0f);
          check_close(got, want, what + " in place" + path, 1e-5f, 1e-5f);
        }
      });
    }
  }
  std::vector<float> dz(n);
  CHECK_THROWS_AS(ops::activation_backward(z.data(), dy.data(), dz.data(), n, A::Softmax, 0.0f), effcam::Error);
}

// The backward pass reruns a conv straight into its pre-activation's gradient (ConvArgs::output_gradient), and a
// recomputation keeps its pre-activation beside its output (ConvArgs::pre_activation): the bytes must be those of
// the two-step forms they replace (the pre-activation alone, then activation_backward or the activation over it),
// in place over dy too, on every kernel path (pointwise GEMM, direct, strided, Winograd, depthwise).
TEST_CASE("backward epilogues: convs rerun into dz or keeping their pre-activation give the two-step forms' bytes") {
  using A = ops::Activation;
  struct Shape {
    uint32_t h, w, cin, cout, k, stride;
    bool depthwise;
  };
  const Shape shapes[] = {{7, 9, 24, 40, 1, 1, false}, {9, 10, 8, 20, 3, 1, false}, {9, 7, 5, 16, 3, 2, false},
                          {7, 6, 19, 19, 3, 1, true},  {8, 9, 21, 21, 5, 2, true}};
  size_t variant = 0;
  for (const Shape& s : shapes) {
    const Same sh(s.h, s.k, s.stride), sw(s.w, s.k, s.stride);
    const size_t out = size_t{sh.out} * sw.out * s.cout;
    const std::vector<float> x = random_floats(size_t{s.h} * s.w * s.cin, 2.0f);  // past the activations' kinks
    const std::vector<float> bias = random_floats(s.cout), dy = random_floats(out), dmean = random_floats(s.cout);
    const Weights w(s.depthwise ? format::pack_depthwise_kernel(random_floats(size_t{s.k} * s.k * s.cout), s.k, s.k,
                                                                 s.cin, 1)
                                : format::pack_conv_kernel(random_floats(size_t{s.k} * s.k * s.cin * s.cout), s.k, s.k,
                                                           s.cin, s.cout),
                    variant % 2 == 1);
    for (A act : {A::Linear, A::Relu, A::Sigmoid, A::Swish, A::HardSigmoid, A::HardSigmoidKeras2, A::HardSwish,
                  A::Tanh}) {
      ++variant;
      const std::string what = "shape " + std::to_string(&s - shapes) + " activation " +
                               std::to_string(static_cast<int>(act));
      ops::ConvArgs c;
      c.x = x.data(), c.in_h = s.h, c.in_w = s.w, c.cin = s.cin, c.out_h = sh.out, c.out_w = sw.out, c.cout = s.cout;
      c.kh = c.kw = s.k, c.stride_h = c.stride_w = s.stride, c.pad_top = sh.pad_before, c.pad_left = sw.pad_before;
      c.kernel = w.view(), c.bias = bias.data(), c.act = act, c.act_max = 6.0f;
      ops::DepthwiseArgs d;
      d.x = x.data(), d.in_h = s.h, d.in_w = s.w, d.cin = s.cin, d.out_h = sh.out, d.out_w = sw.out, d.cout = s.cout;
      d.kh = d.kw = s.k, d.stride_h = d.stride_w = s.stride, d.pad_top = sh.pad_before, d.pad_left = sw.pad_before;
      d.kernel = w.view(), d.bias = bias.data(), d.act = act, d.act_max = 6.0f;
      // y (and pre_activation) through the conv with this activation and output gradient, on this path (Winograd
      // where it applies, the pool splitting it) or the reference's.
      auto run = [&](float* y, A a, const float* output_gradient, float* pre_activation, effcam::ThreadPool& pool,
                     bool reference) {
        if (s.depthwise) {
          ops::DepthwiseArgs r = d;
          r.y = y, r.act = a, r.output_gradient = output_gradient, r.pre_activation = pre_activation;
          if (reference) return ref::depthwise2d(r, 0, r.out_h);
          pool.parallel_for(r.out_h, [&](uint32_t b, uint32_t e, uint32_t) { ops::depthwise2d(r, b, e); });
        } else {
          ops::ConvArgs r = c;
          r.y = y, r.act = a, r.output_gradient = output_gradient, r.pre_activation = pre_activation;
          if (reference) return ref::conv2d(r, 0, r.out_h);
          std::vector<float> scratch(ops::conv2d_pooled_scratch_floats(r, pool.size()));
          ops::conv2d_pooled(r, scratch.empty() ? nullptr : scratch.data(), pool);
        }
      };
      std::vector<float> want(out), want_z(out), want_y(out);
      effcam::ThreadPool one(1);
      run(want.data(), act, dy.data(), nullptr, one, true);
      run(want_y.data(), act, nullptr, want_z.data(), one, true);
      for_each_path_and_pool([&](const std::string& path, effcam::ThreadPool& pool) {
        INFO(what << path);
        std::vector<float> z(out), two_step(out), fused(out);
        run(z.data(), A::Linear, nullptr, nullptr, pool, false);
        ops::ActivationGradientArgs through{z.data(), dy.data(), nullptr, 0.0f, two_step.data(), sh.out * sw.out,
                                            s.cout, act, 6.0f};
        ops::activation_backward(through, 0, sh.out * sw.out);
        run(fused.data(), act, dy.data(), nullptr, pool, false);
        CHECK(std::memcmp(fused.data(), two_step.data(), out * sizeof(float)) == 0);
        std::vector<float> in_place = dy;
        run(in_place.data(), act, in_place.data(), nullptr, pool, false);
        CHECK(std::memcmp(in_place.data(), two_step.data(), out * sizeof(float)) == 0);
        check_close(fused, want, what + path, 1e-4f, 1e-4f);
        if (s.depthwise) {
          // With the squeeze-excite means' gradient, its share added to each pixel's in the same epilogue.
          const float mean_scale = 1.0f / static_cast<float>(sh.out * sw.out);
          ops::ActivationGradientArgs with_means = through;
          with_means.dmean = dmean.data(), with_means.mean_scale = mean_scale;
          ops::activation_backward(with_means, 0, sh.out * sw.out);
          ops::DepthwiseArgs r = d;
          r.y = fused.data(), r.act = act, r.output_gradient = dy.data();
          r.output_gradient_means = dmean.data(), r.mean_scale = mean_scale;
          pool.parallel_for(r.out_h, [&](uint32_t b, uint32_t e, uint32_t) { ops::depthwise2d(r, b, e); });
          CHECK(std::memcmp(fused.data(), two_step.data(), out * sizeof(float)) == 0);
          std::vector<float> reference(out);
          r.y = reference.data();
          ref::depthwise2d(r, 0, r.out_h);
          check_close(fused, reference, what + " with means" + path, 1e-4f, 1e-4f);
        }
        // Keeping the pre-activation: y as the plain forward's, the pre-activation as the linear run's.
        std::vector<float> y(out), kept(out), plain(out);
        run(y.data(), act, nullptr, kept.data(), pool, false);
        run(plain.data(), act, nullptr, nullptr, pool, false);
        CHECK(std::memcmp(y.data(), plain.data(), out * sizeof(float)) == 0);
        CHECK(std::memcmp(kept.data(), z.data(), out * sizeof(float)) == 0);
        check_close(kept, want_z, what + " pre-activation" + path, 1e-4f, 1e-4f);
        check_close(y, want_y, what + " kept" + path, 1e-4f, 1e-4f);
      });
    }
  }
  // A rerun into dz, or one keeping its pre-activation, has no residual: refused, not silently mixed.
  const std::vector<float> x = random_floats(16), y(16);
  const Weights w(format::pack_conv_kernel(random_floats(16), 1, 1, 4, 4), false);
  ops::ConvArgs c;
  c.x = x.data(), c.in_h = c.in_w = 2, c.cin = 4, c.out_h = c.out_w = 2, c.cout = 4, c.kernel = w.view();
  std::vector<float> out(16);
  c.y = out.data(), c.output_gradient = y.data(), c.residual = y.data();
  CHECK_THROWS_AS(ops::conv2d(c, 0, 2), effcam::Error);
  std::vector<float> kept(16);
  c.output_gradient = nullptr, c.pre_activation = kept.data();
  CHECK_THROWS_AS(ops::conv2d(c, 0, 2), effcam::Error);
  // A depthwise conv's means' gradient comes with its output's gradient, never alone.
  const Weights dw(format::pack_depthwise_kernel(random_floats(4), 1, 1, 4, 1), false);
  const std::vector<float> means = random_floats(4);
  ops::DepthwiseArgs d;
  d.x = x.data(), d.in_h = d.in_w = 2, d.cin = 4, d.out_h = d.out_w = 2, d.cout = 4, d.kernel = dw.view();
  d.y = out.data(), d.output_gradient_means = means.data(), d.mean_scale = 0.25f;
  CHECK_THROWS_AS(ops::depthwise2d(d, 0, 2), effcam::Error);
  d.output_gradient = y.data();
  CHECK_NOTHROW(ops::depthwise2d(d, 0, 2));
}

TEST_CASE("conv2d_backward_input with a gate: the epilogue's dx is the two-step form's, the gate's gradient its sum") {
  // The gate applied in the transposed conv's epilogue (stride 1), or after it (strided), against zeroing a buffer,
  // the gradient of the gated input into it, then multiply_backward: dx to the bit, the gate's gradient (summed in
  // fixed pieces of rows) close to the reference's and the same bytes on 1 and 3 threads; also without dx.
  struct Shape {
    uint32_t h, w, cin, cout, k, stride;
  };
  const Shape shapes[] = {{19, 19, 40, 16, 1, 1}, {5, 3, 21, 7, 1, 1}, {9, 10, 8, 20, 3, 1}, {9, 7, 5, 16, 3, 2},
                          {2, 1, 16, 16, 1, 1}};  // fewer rows than pieces
  for (const Shape& s : shapes) {
    const Same sh(s.h, s.k, s.stride), sw(s.w, s.k, s.stride);
    const size_t in = size_t{s.h} * s.w * s.cin, out = size_t{sh.out} * sw.out * s.cout;
    const std::vector<float> x = random_floats(in), gate = random_floats(s.cin), dy = random_floats(out);
    const std::vector<float> dx_start = random_floats(in), dgate_start = random_floats(s.cin);
    const bool fp16 = (&s - shapes) % 2 == 1;
    const Weights w(format::pack_conv_kernel(random_floats(size_t{s.k} * s.k * s.cin * s.cout), s.k, s.k, s.cin,
                                             s.cout),
                    fp16);
    ops::ConvArgs a;
    a.in_h = s.h, a.in_w = s.w, a.cin = s.cin, a.out_h = sh.out, a.out_w = sw.out, a.cout = s.cout;
    a.kh = a.kw = s.k, a.stride_h = a.stride_w = s.stride, a.pad_top = sh.pad_before, a.pad_left = sw.pad_before;
    a.kernel = w.view();
    const std::string what = "shape " + std::to_string(&s - shapes);
    const ops::ElementwiseArgs gating{x.data(), gate.data(), nullptr, s.h * s.w, s.cin, true, ops::Activation::Linear, 0};
    std::vector<float> want_dx = dx_start, want_dgate = dgate_start, scaled(in, 0.0f);
    ref::conv2d_backward_input(a, dy.data(), scaled.data());
    ref::multiply_backward(gating, scaled.data(), want_dx.data(), want_dgate.data());
    std::map<std::string, std::vector<float>> first_dgate;  // the first pool's, per dispatch path
    for_each_path_and_pool([&](const std::string& path, effcam::ThreadPool& pool) {
      INFO(what << path);
      for (bool winograd : {false, true}) {  // a gated gradient ignores Winograd
        std::vector<float> scratch(ops::conv2d_backward_scratch_floats(a, pool.size(), winograd, true));
        std::vector<float> dx = dx_start, dgate = dgate_start;
        ops::conv2d_backward_input(a, dy.data(), dx.data(), scratch.data(), pool, winograd,
                                   {gate.data(), x.data(), dgate.data()});
        std::vector<float> two_step_dx = dx_start, two_step_dgate = dgate_start, gated(in, 0.0f);
        std::vector<float> plain(ops::conv2d_backward_scratch_floats(a, pool.size(), false, false));
        ops::conv2d_backward_input(a, dy.data(), gated.data(), plain.data(), pool, false);
        ops::multiply_backward(gating, gated.data(), two_step_dx.data(), two_step_dgate.data(), 0, s.cin);
        CHECK(std::memcmp(dx.data(), two_step_dx.data(), in * sizeof(float)) == 0);
        check_close(dx, want_dx, what + " dx" + path, 1e-5f, 1e-5f);
        check_close(dgate, want_dgate, what + " dgate" + path, 1e-5f, 1e-4f);
        std::vector<float>& first = first_dgate[path.substr(0, path.find(','))];
        if (first.empty()) first = dgate;
        else CHECK(std::memcmp(dgate.data(), first.data(), s.cin * sizeof(float)) == 0);
        // Only the gate's gradient wanted: the same bytes.
        std::vector<float> alone = dgate_start;
        ops::conv2d_backward_input(a, dy.data(), nullptr, scratch.data(), pool, winograd,
                                   {gate.data(), x.data(), alone.data()});
        CHECK(std::memcmp(alone.data(), dgate.data(), s.cin * sizeof(float)) == 0);
        // dx written over a buffer of NaNs (its first share): the values of adding to zeros, the same gate sums.
        std::vector<float> over(in, std::nanf("")), added(in, 0.0f), over_dgate = dgate_start;
        ops::conv2d_backward_input(a, dy.data(), over.data(), scratch.data(), pool, winograd,
                                   {gate.data(), x.data(), over_dgate.data()}, ops::GradientWrite::Overwrite);
        ops::conv2d_backward_input(a, dy.data(), added.data(), scratch.data(), pool, winograd,
                                   {gate.data(), x.data(), alone.data()});
        CHECK(over == added);  // float ==: -0 equals +0, a NaN left behind equals nothing
        CHECK(std::memcmp(over_dgate.data(), dgate.data(), s.cin * sizeof(float)) == 0);
      }
    });
  }
  // The gated epilogue serves a linear transposed conv only: an activation, a bias or missing sums are refused.
  const std::vector<float> x = random_floats(16), gate = random_floats(4);
  const Weights w(format::pack_conv_kernel(random_floats(16), 1, 1, 4, 4), false);
  std::vector<float> y(16), sums(4);
  ops::ConvArgs c;
  c.x = x.data(), c.y = y.data(), c.in_h = c.in_w = 2, c.cin = 4, c.out_h = c.out_w = 2, c.cout = 4;
  c.kernel = w.view(), c.gate = gate.data(), c.gate_input = x.data(), c.gate_sums = sums.data();
  CHECK_NOTHROW(ops::conv2d(c, 0, 2));
  c.act = ops::Activation::Relu;
  CHECK_THROWS_AS(ops::conv2d(c, 0, 2), effcam::Error);
  c.act = ops::Activation::Linear, c.bias = gate.data();
  CHECK_THROWS_AS(ops::conv2d(c, 0, 2), effcam::Error);
  c.bias = nullptr, c.gate_sums = nullptr;
  CHECK_THROWS_AS(ops::conv2d(c, 0, 2), effcam::Error);
}

TEST_CASE("dense_backward_input: matches its reference and is the forward's adjoint") {
  for (auto [in, units] : {std::pair<uint32_t, uint32_t>{1, 1}, {40, 7}, {13, 40}, {257, 16}, {66, 1536}}) {
    Weights w(format::pack_dense_kernel(random_floats(size_t{in} * units), in, units), units == 7 || units == 1536);
    ops::DenseArgs a{nullptr, in, nullptr, units, w.view(), nullptr, ops::Activation::Linear, 0};
    const std::string what = "dense " + std::to_string(in) + "->" + std::to_string(units);
    const std::vector<float> x = random_floats(in), dy = random_floats(units);
    std::vector<float> dx;
    for_each_path_and_pool([&](const std::string& path, effcam::ThreadPool&) {
      dx = gradient(
          x.size(), [&](float* g) { ops::dense_backward_input(a, dy.data(), g); },
          [&](float* g) { ref::dense_backward_input(a, dy.data(), g); }, what + path);
    });
    std::vector<float> y(units);
    a.x = x.data(), a.y = y.data();
    ref::dense(a, 0, units);
    check_adjoint(dy, y, dx, x, what);
  }
}

TEST_CASE("pooling, zero padding and global pooling gradients: reference and adjoint") {
  for (const Window& s : kWindows) {
    const auto [out_h, pad_top] = window_out(s.h, s);
    const auto [out_w, pad_left] = window_out(s.w, s);
    const std::vector<float> x = random_floats(size_t{s.h} * s.w * s.c);
    const std::vector<float> dy = random_floats(size_t{out_h} * out_w * s.c);
    std::vector<float> y(dy.size());
    ops::PoolArgs a{x.data(), s.h, s.w, s.c, y.data(), out_h, out_w, s.k, s.k, s.stride, s.stride, pad_top, pad_left};
    const std::string shape = std::to_string(s.h) + "x" + std::to_string(s.w) + "x" + std::to_string(s.c) + " k" +
                              std::to_string(s.k) + " s" + std::to_string(s.stride);
    // Max pooling is linear in x around x (it picks one input per window): the adjoint identity holds there too.
    std::vector<float> dx = gradient(
        x.size(), [&](float* g) { ops::max_pool2d_backward(a, dy.data(), g); },
        [&](float* g) { ref::max_pool2d_backward(a, dy.data(), g); }, "max pool " + shape);
    ref::max_pool2d(a, 0, out_h);
    check_adjoint(dy, y, dx, x, "max pool " + shape);
    dx = gradient(
        x.size(), [&](float* g) { ops::avg_pool2d_backward(a, dy.data(), g); },
        [&](float* g) { ref::avg_pool2d_backward(a, dy.data(), g); }, "avg pool " + shape);
    ref::avg_pool2d(a, 0, out_h);
    check_adjoint(dy, y, dx, x, "avg pool " + shape);

    const uint32_t pads[4] = {s.k / 2, s.stride, 0, s.k};
    std::vector<float> padded(size_t{s.h + pads[0] + pads[1]} * (s.w + pads[2] + pads[3]) * s.c);
    const ops::ZeroPadArgs z{x.data(), s.h, s.w, s.c, padded.data(), pads[0], pads[1], pads[2], pads[3]};
    const std::vector<float> dpadded = random_floats(padded.size());
    dx = gradient(
        x.size(), [&](float* g) { ops::zero_pad_backward(z, dpadded.data(), g); },
        [&](float* g) { ref::zero_pad_backward(z, dpadded.data(), g); }, "zero pad " + shape);
    ref::zero_pad(z, 0, s.h + pads[0] + pads[1]);
    check_adjoint(dpadded, padded, dx, x, "zero pad " + shape);

    std::vector<float> mean(s.c);
    const ops::GlobalPoolArgs gp{x.data(), s.h, s.w, s.c, mean.data()};
    const std::vector<float> dmean = random_floats(s.c);
    dx = gradient(
        x.size(), [&](float* g) { ops::global_avg_pool_backward(gp, dmean.data(), g); },
        [&](float* g) { ref::global_avg_pool_backward(gp, dmean.data(), g); }, "global pool " + shape);
    ref::global_avg_pool(gp, 0, s.c);
    check_adjoint(dmean, mean, dx, x, "global pool " + shape);
  }
}

TEST_CASE("max pool gradient: a tie goes to the window's first maximum, an empty window to no one") {
  // 2x2 input, one channel, 2x2 window: all equal, so the first position (0, 0) takes the whole gradient.
  const std::vector<float> x = {1, 1, 1, 1};
  std::vector<float> y(1), dx(4, 0.0f);
  const float dy = 3.0f;
  const ops::PoolArgs a{x.data(), 2, 2, 1, y.data(), 1, 1, 2, 2, 1, 1, 0, 0};
  ops::max_pool2d_backward(a, &dy, dx.data());
  CHECK(dx == std::vector<float>{3, 0, 0, 0});
  // A window entirely in the padding (pad_top 3 on a 2-row input) passes nothing on.
  const ops::PoolArgs outside{x.data(), 2, 2, 1, y.data(), 1, 1, 2, 2, 1, 1, 3, 0};
  ops::max_pool2d_backward(outside, &dy, dx.data());
  ops::avg_pool2d_backward(outside, &dy, dx.data());
  CHECK(dx == std::vector<float>{3, 0, 0, 0});
}

TEST_CASE("element-wise gradients: add (aliased operands), multiply (broadcast), affine, identity") {
  const uint32_t pixels = 37, channels = 19;
  const size_t n = size_t{pixels} * channels;
  const std::vector<float> dy = random_floats(n), a = random_floats(n), b = random_floats(n), gate = random_floats(channels);

  // add: each operand receives dy; a + a (one buffer for both) receives it twice.
  std::vector<float> da = gradient(
      n, [&](float* g) { ops::add_backward(dy.data(), g, nullptr, n); },
      [&](float* g) { ref::add_backward(dy.data(), g, nullptr, n); }, "add");
  check_close(da, dy, "add: da = dy");
  std::vector<float> twice = gradient(
      n, [&](float* g) { ops::add_backward(dy.data(), g, g, n); }, [&](float* g) { ref::add_backward(dy.data(), g, g, n); },
      "add aliased");
  for (size_t i = 0; i < n; ++i) twice[i] *= 0.5f;
  check_close(twice, dy, "add aliased: da = 2 dy");
  check_close(gradient(n, [&](float* g) { ops::identity_backward(dy.data(), g, n); },
                       [&](float* g) { ref::identity_backward(dy.data(), g, n); }, "identity"),
              dy, "identity: dx = dy");

  // multiply: the adjoint identity in each operand (the product is linear in each).
  for (bool broadcast : {false, true}) {
    const std::string what = broadcast ? "multiply by a 1x1xC gate" : "multiply";
    const std::vector<float>& bv = broadcast ? gate : b;
    ops::ElementwiseArgs m{a.data(), bv.data(), nullptr, pixels, channels, broadcast, ops::Activation::Linear, 0};
    std::vector<float> y(n);
    m.y = y.data();
    ref::multiply(m, 0, pixels);
    da = gradient(
        n, [&](float* g) { ops::multiply_backward(m, dy.data(), g, nullptr, 0, channels); },
        [&](float* g) { ref::multiply_backward(m, dy.data(), g, nullptr); }, what + " da");
    check_adjoint(dy, y, da, a, what + " in a");
    const std::vector<float> db = gradient(
        bv.size(), [&](float* g) { ops::multiply_backward(m, dy.data(), nullptr, g, 0, channels); },
        [&](float* g) { ref::multiply_backward(m, dy.data(), nullptr, g); }, what + " db");
    check_adjoint(dy, y, db, bv, what + " in b");
    // Channels split in uneven pieces give the whole call's bytes (each channel sums its pixels in order).
    std::vector<float> whole_a(n, 0.5f), whole_b(bv.size(), 0.5f), split_a = whole_a, split_b = whole_b;
    ops::multiply_backward(m, dy.data(), whole_a.data(), whole_b.data(), 0, channels);
    for (auto [begin, end] : {std::pair<uint32_t, uint32_t>{0, 3}, {3, 3}, {3, channels}}) {
      ops::multiply_backward(m, dy.data(), split_a.data(), split_b.data(), begin, end);
    }
    CHECK(std::memcmp(split_a.data(), whole_a.data(), n * sizeof(float)) == 0);
    CHECK(std::memcmp(split_b.data(), whole_b.data(), bv.size() * sizeof(float)) == 0);
    CHECK_THROWS_AS(ops::multiply_backward(m, dy.data(), split_a.data(), nullptr, 2, channels + 1), effcam::Error);
  }

  // channel affine without its shift: linear in x, with and without a scale.
  for (bool scaled : {false, true}) {
    std::vector<float> y(n);
    const ops::ChannelAffineArgs f{a.data(), y.data(), pixels, channels, scaled ? gate.data() : nullptr, nullptr,
                                   nullptr, ops::Activation::Linear, 0};
    ref::channel_affine(f, 0, pixels);
    const std::string what = scaled ? "affine" : "affine without scale";
    const std::vector<float> dx = gradient(
        n, [&](float* g) { ops::channel_affine_backward(f, dy.data(), g); },
        [&](float* g) { ref::channel_affine_backward(f, dy.data(), g); }, what);
    check_adjoint(dy, y, dx, a, what);
  }
}
