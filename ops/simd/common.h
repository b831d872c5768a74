// What every SIMD kernel shares: the vector type of architecture A, fused multiply-add, fp16 weight loads,
// partial loads and stores, exp and the activations, and the activation + residual epilogue.
// Internal: part of the SIMD kernels, included only through ops/kernels_simd.h (see there).
#pragma once

#include <immintrin.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <xsimd/xsimd.hpp>

#include "ops/kernel_table.h"
#include "format/weight_layout.h"

namespace effcam::ops::detail {
namespace {

template <class A>
using Vec = xsimd::batch<float, A>;
template <class A>
inline constexpr uint32_t kLanes = static_cast<uint32_t>(Vec<A>::size);
template <class A>
inline constexpr uint32_t kVecsPerBlock = format::kChannelBlock / kLanes<A>;

constexpr uint32_t min_u32(uint32_t a, uint32_t b) { return a < b ? a : b; }
constexpr int64_t max_i64(int64_t a, int64_t b) { return a > b ? a : b; }
constexpr int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }

// x * y + z, fused where the CPU can: xsimd 8.1 has no AVX-512 fma kernel (its generic x * y + z is only fused
// when the compiler contracts it, which clang does not across the operator calls).
template <class A>
Vec<A> multiply_add(const Vec<A>& x, const Vec<A>& y, const Vec<A>& z) {
  if constexpr (std::is_same_v<A, xsimd::avx512bw>) return _mm512_fmadd_ps(x, y, z);
  else return xsimd::fma(x, y, z);
}

// kLanes<A> weights starting at element `index`, widened from fp16 in the register when the view is fp16.
template <class A, bool F16>
Vec<A> load_weights(const void* data, size_t index) {
  if constexpr (!F16) {
    return Vec<A>::load_unaligned(static_cast<const float*>(data) + index);
  } else {
    const uint16_t* halves = static_cast<const uint16_t*>(data) + index;
    if constexpr (std::is_same_v<A, xsimd::avx512bw>) {
      return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(halves)));
    } else if constexpr (std::is_same_v<A, xsimd::fma3<xsimd::avx2>>) {
      return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(halves)));
    } else {
      // SSE2, the x86-64 baseline, has no F16C: the bits moved into a float's place, then scaled by 2^112 (15 -> 127
      // exponent bias; also exact for subnormal halves), the sign put back and infinities / NaNs given the top exponent.
      static_assert(std::is_same_v<A, xsimd::sse2>);
      const __m128i h = _mm_unpacklo_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(halves)),
                                           _mm_setzero_si128());
      const __m128i magnitude = _mm_and_si128(h, _mm_set1_epi32(0x7fff));
      const __m128 scaled = _mm_mul_ps(_mm_castsi128_ps(_mm_slli_epi32(magnitude, 13)),
                                       _mm_castsi128_ps(_mm_set1_epi32((254 - 15) << 23)));
      const __m128i sign = _mm_slli_epi32(_mm_xor_si128(h, magnitude), 16);
      const __m128i inf_nan = _mm_and_si128(_mm_cmpgt_epi32(magnitude, _mm_set1_epi32(0x7bff)),
                                            _mm_set1_epi32(255 << 23));
      return _mm_or_ps(scaled, _mm_castsi128_ps(_mm_or_si128(sign, inf_nan)));
    }
  }
}

// The first `count` (<= lanes) floats at p, zeros after: never reads past p + count.
template <class A>
Vec<A> load_partial(const float* p, uint32_t count) {
  if (count == kLanes<A>) return Vec<A>::load_unaligned(p);
  if constexpr (std::is_same_v<A, xsimd::avx512bw>) return _mm512_maskz_loadu_ps(__mmask16((1u << count) - 1), p);
  alignas(64) float part[kLanes<A>] = {};
  for (uint32_t i = 0; i < count; ++i) part[i] = p[i];
  return Vec<A>::load_aligned(part);
}

template <class A>
void store_partial(float* p, const Vec<A>& v, uint32_t count) {
  if (count == kLanes<A>) return v.store_unaligned(p);
  if constexpr (std::is_same_v<A, xsimd::avx512bw>) return _mm512_mask_storeu_ps(p, __mmask16((1u << count) - 1), v);
  alignas(64) float part[kLanes<A>];
  v.store_aligned(part);
  for (uint32_t i = 0; i < count; ++i) p[i] = part[i];
}

// e^x to a few ulp (Cephes' expf polynomial on x - n ln2) with none of xsimd::exp's special-case selects. Like
// std::exp it overflows to +inf past ~88.72 and underflows through the denormals to 0: 2^n is applied as two
// normal powers of two, which covers n in [-150, 128].
template <class A>
[[gnu::always_inline]] inline Vec<A> exp_fast(const Vec<A>& x) {
  using Int = xsimd::batch<int32_t, A>;
  const Vec<A> clamped = xsimd::min(xsimd::max(x, Vec<A>(-104.0f)), Vec<A>(89.0f));
  const Vec<A> n = xsimd::nearbyint(clamped * Vec<A>(1.44269504088896341f));
  Vec<A> r = multiply_add<A>(n, Vec<A>(-0.693359375f), clamped);  // ln 2 in two parts, the first exact
  r = multiply_add<A>(n, Vec<A>(2.12194440e-4f), r);
  Vec<A> poly(1.9875691500e-4f);
  poly = multiply_add<A>(poly, r, Vec<A>(1.3981999507e-3f));
  poly = multiply_add<A>(poly, r, Vec<A>(8.3334519073e-3f));
  poly = multiply_add<A>(poly, r, Vec<A>(4.1665795894e-2f));
  poly = multiply_add<A>(poly, r, Vec<A>(1.6666665459e-1f));
  poly = multiply_add<A>(poly, r, Vec<A>(5.0000001201e-1f));
  poly = multiply_add<A>(poly, r * r, r + Vec<A>(1.0f));
  if constexpr (std::is_same_v<A, xsimd::avx512bw>) return _mm512_scalef_ps(poly, n);  // one rounding, any n
  const Int k = xsimd::to_int(n);
  const Int half = k >> 1;
  auto power_of_two = [](const Int& e) { return xsimd::bitwise_cast<Vec<A>>((e + Int(127)) << 23); };
  return poly * power_of_two(half) * power_of_two(k - half);
}

template <class A>
[[gnu::always_inline]] inline Vec<A> sigmoid(const Vec<A>& x) {
  return Vec<A>(1.0f) / (Vec<A>(1.0f) + exp_fast<A>(-x));
}

template <class A>
Vec<A> relu6(const Vec<A>& x) {
  return xsimd::min(xsimd::max(x, Vec<A>(0.0f)), Vec<A>(6.0f));
}

// One elementwise activation, chosen at compile time so loops over it are free of branches.
template <class A, Activation Act>
[[gnu::always_inline]] inline Vec<A> activate(const Vec<A>& x, float act_max) {
  if constexpr (Act == Activation::Relu) return xsimd::min(xsimd::max(x, Vec<A>(0.0f)), Vec<A>(act_max));
  else if constexpr (Act == Activation::Sigmoid) return sigmoid<A>(x);
  else if constexpr (Act == Activation::Swish) return x / (Vec<A>(1.0f) + exp_fast<A>(-x));
  else if constexpr (Act == Activation::HardSigmoid) return relu6<A>(x + Vec<A>(3.0f)) / Vec<A>(6.0f);
  else if constexpr (Act == Activation::HardSigmoidKeras2)
    return xsimd::min(xsimd::max(multiply_add<A>(x, Vec<A>(0.2f), Vec<A>(0.5f)), Vec<A>(0.0f)), Vec<A>(1.0f));
  else if constexpr (Act == Activation::HardSwish) return x * relu6<A>(x + Vec<A>(3.0f)) / Vec<A>(6.0f);
  else if constexpr (Act == Activation::Tanh) return xsimd::tanh(x);
  else return x;
}

// d act(z) / dz, chosen at compile time (the formulas of ops::activation_derivative).
template <class A, Activation Act>
[[gnu::always_inline]] inline Vec<A> activation_derivative(const Vec<A>& z, float act_max) {
  const Vec<A> zero(0.0f), one(1.0f);
  if constexpr (Act == Activation::Relu) {
    return xsimd::select((z > zero) & (z < Vec<A>(act_max)), one, zero);
  } else if constexpr (Act == Activation::Sigmoid) {
    const Vec<A> s = sigmoid<A>(z);
    return s * (one - s);
  } else if constexpr (Act == Activation::Swish) {
    const Vec<A> s = sigmoid<A>(z);
    return s * multiply_add<A>(z, one - s, one);
  } else if constexpr (Act == Activation::HardSigmoid) {
    return xsimd::select((z > Vec<A>(-3.0f)) & (z < Vec<A>(3.0f)), Vec<A>(1.0f / 6.0f), zero);
  } else if constexpr (Act == Activation::HardSigmoidKeras2) {
    return xsimd::select((z > Vec<A>(-2.5f)) & (z < Vec<A>(2.5f)), Vec<A>(0.2f), zero);
  } else if constexpr (Act == Activation::HardSwish) {
    const Vec<A> inside = multiply_add<A>(z, Vec<A>(2.0f), Vec<A>(3.0f)) / Vec<A>(6.0f);
    return xsimd::select(z <= Vec<A>(-3.0f), zero, xsimd::select(z >= Vec<A>(3.0f), one, inside));
  } else if constexpr (Act == Activation::Tanh) {
    const Vec<A> t = xsimd::tanh(z);
    return one - t * t;
  } else {
    return one;
  }
}

// Calls f(std::integral_constant<Activation, act>): the switch happens once, outside f's loops.
// (The public wrappers have rejected Softmax and unknown values.)
template <class F>
void with_activation(Activation act, F&& f) {
  using enum format::Activation;  // clang 14 refuses `using enum` through the ops::Activation alias
  switch (act) {
    case Relu: return f(std::integral_constant<Activation, Relu>{});
    case Sigmoid: return f(std::integral_constant<Activation, Sigmoid>{});
    case Swish: return f(std::integral_constant<Activation, Swish>{});
    case HardSigmoid: return f(std::integral_constant<Activation, HardSigmoid>{});
    case HardSigmoidKeras2: return f(std::integral_constant<Activation, HardSigmoidKeras2>{});
    case HardSwish: return f(std::integral_constant<Activation, HardSwish>{});
    case Tanh: return f(std::integral_constant<Activation, Tanh>{});
    case Linear:
    case Softmax: break;
  }
  f(std::integral_constant<Activation, Linear>{});
}

// The activations the fused epilogues of the register tiles (conv, Winograd, depthwise) compile into their loops:
// EfficientNetV2's Swish and Linear, and Relu, common in user heads. Any other is kAnyActivation there, applied
// by one out-of-line switch per vector with the same bits: eight inlined copies of every tile took most of the
// kernels' build time.
inline constexpr Activation kAnyActivation = static_cast<Activation>(0xff);

template <class F>
void with_epilogue_activation(Activation act, F&& f) {
  using enum format::Activation;
  switch (act) {
    case Relu: return f(std::integral_constant<Activation, Relu>{});
    case Swish: return f(std::integral_constant<Activation, Swish>{});
    case Linear: return f(std::integral_constant<Activation, Linear>{});
    default: return f(std::integral_constant<Activation, kAnyActivation>{});
  }
}

template <class A>
[[gnu::noinline]] Vec<A> activate_any(Activation act, Vec<A> x, float act_max) {
  Vec<A> out;
  with_activation(act, [&](auto tag) { out = activate<A, decltype(tag)::value>(x, act_max); });
  return out;
}

template <class A>
[[gnu::noinline]] Vec<A> activation_derivative_any(Activation act, Vec<A> z, float act_max) {
  Vec<A> out;
  with_activation(act, [&](auto tag) { out = activation_derivative<A, decltype(tag)::value>(z, act_max); });
  return out;
}

// What the shared epilogue reads and writes besides y, laid out as y, each optional: ConvArgs and DepthwiseArgs
// have these members (ops/kernels.h), and finish_rows' callers give them in this. (kAnyActivation's epilogue also
// reads `act`, which the kernels' arguments have: finish_rows dispatches every activation itself.)
struct EpilogueOperands {
  const float* residual = nullptr;
  const float* output_gradient = nullptr;
  float* pre_activation = nullptr;
  float act_max = 0;
};

// The epilogue of one output vector v (the sum and its bias) for y's elements [at, at + n) (Full: n = lanes):
// act(v) + residual, or, given output_gradient (a backward pass's rerun), output_gradient * act'(v): the gradient of
// the pre-activation, with the bits of activation_backward over the same v. v is also stored in pre_activation.
// Operands with output_gradient_means (DepthwiseArgs) add the means' share of channels [channel, channel + n) to
// output_gradient first, as activation_backward does.
template <class A, Activation Act, bool Full, class Operands>
[[gnu::always_inline]] inline Vec<A> epilogue(const Operands& e, const Vec<A>& v, size_t at, uint32_t n,
                                              uint32_t channel = 0) {
  auto load = [&](const float* p) { return Full ? Vec<A>::load_unaligned(p + at) : load_partial<A>(p + at, n); };
  if (e.pre_activation) {
    if constexpr (Full) v.store_unaligned(e.pre_activation + at);
    else store_partial<A>(e.pre_activation + at, v, n);
  }
  // kAnyActivation: the out-of-line switch on the kernels' own act (only their arguments reach it).
  auto derivative = [&] {
    if constexpr (Act == kAnyActivation) return activation_derivative_any<A>(e.act, v, e.act_max);
    else return activation_derivative<A, Act>(v, e.act_max);
  };
  auto activated = [&] {
    if constexpr (Act == kAnyActivation) return activate_any<A>(e.act, v, e.act_max);
    else return activate<A, Act>(v, e.act_max);
  };
  if (e.output_gradient) {
    if constexpr (requires { e.output_gradient_means; }) {
      if (e.output_gradient_means) {
        const Vec<A> means = load_partial<A>(e.output_gradient_means + channel, n);
        return multiply_add<A>(means, Vec<A>(e.mean_scale), load(e.output_gradient)) * derivative();
      }
    }
    return load(e.output_gradient) * derivative();
  }
  Vec<A> out = activated();
  if (e.residual) out += load(e.residual);
  return out;
}

// The shared epilogue over rows: y[r * y_stride + i] = epilogue(raw[r * raw_stride + i]) for r < rows, i < n, the
// operands laid out as y. raw may be y, and so may the residual and the output gradient (each element is read
// before it is written).
template <class A>
void finish_rows(const float* raw, size_t raw_stride, float* y, const EpilogueOperands& e, size_t y_stride,
                 uint32_t rows, size_t n, Activation act) {
  with_activation(act, [&](auto tag) {
    for (uint32_t r = 0; r < rows; ++r) {
      const float* in = raw + r * raw_stride;
      const size_t row = r * y_stride;
      for (size_t i = 0; i < n; i += kLanes<A>) {
        const uint32_t count = static_cast<uint32_t>(n - i < kLanes<A> ? n - i : kLanes<A>);
        const Vec<A> v =
            epilogue<A, decltype(tag)::value, false>(e, load_partial<A>(in + i, count), row + i, count);
        store_partial<A>(y + row + i, v, count);
      }
    }
  });
}

}  // namespace
}  // namespace effcam::ops::detail
