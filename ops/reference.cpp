#include "ops/reference.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "effcam/error.hpp"
#include "format/half.h"
#include "format/weight_layout.h"

namespace effcam::ops::reference {
namespace {

float weight_at(const WeightView& w, size_t index) {
  return w.fp16 ? format::half_to_float(static_cast<const uint16_t*>(w.data)[index])
                : static_cast<const float*>(w.data)[index];
}

// BlockedOHWI element (o, ky, kx, c): [o / 16][ky][kx][c][o % 16].
float blocked_at(const WeightView& w, uint32_t kh, uint32_t kw, uint32_t cin, uint32_t o, uint32_t ky, uint32_t kx,
                 uint32_t c) {
  size_t index = ((static_cast<size_t>(o / format::kChannelBlock) * kh + ky) * kw + kx) * cin + c;
  return weight_at(w, index * format::kChannelBlock + o % format::kChannelBlock);
}

// DepthwiseHWC element (o, ky, kx): [ky][kx][round_up(cout)].
float depthwise_at(const WeightView& w, uint32_t kw, uint32_t cout, uint32_t o, uint32_t ky, uint32_t kx) {
  return weight_at(w, (static_cast<size_t>(ky) * kw + kx) * format::round_up_to_block(cout) + o);
}

// The input coordinate of output coordinate `out` at tap `k`, or -1 when it falls in the padding.
int64_t input_coord(uint32_t out, uint32_t stride, uint32_t pad, uint32_t k, uint32_t size) {
  int64_t at = static_cast<int64_t>(out) * stride - pad + k;
  return at >= 0 && at < size ? at : -1;
}

size_t pixel_offset(uint32_t y, uint32_t x, uint32_t w, uint32_t channels) {
  return (static_cast<size_t>(y) * w + x) * channels;
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double relu6(double x) { return std::min(std::max(x, 0.0), 6.0); }

template <class Pick>
void pool2d(const PoolArgs& a, uint32_t row_begin, uint32_t row_end, Pick pick) {
  for (uint32_t oy = row_begin; oy < row_end; ++oy)
    for (uint32_t ox = 0; ox < a.out_w; ++ox)
      for (uint32_t c = 0; c < a.channels; ++c) {
        std::vector<double> window;
        for (uint32_t ky = 0; ky < a.kh; ++ky)
          for (uint32_t kx = 0; kx < a.kw; ++kx) {
            int64_t iy = input_coord(oy, a.stride_h, a.pad_top, ky, a.in_h);
            int64_t ix = input_coord(ox, a.stride_w, a.pad_left, kx, a.in_w);
            if (iy >= 0 && ix >= 0)
              window.push_back(a.x[pixel_offset(static_cast<uint32_t>(iy), static_cast<uint32_t>(ix), a.in_w,
                                                a.channels) + c]);
          }
        a.y[pixel_offset(oy, ox, a.out_w, a.channels) + c] = window.empty() ? 0.0f : static_cast<float>(pick(window));
      }
}

double derivative(double v, Activation act, float act_max) {
  switch (act) {
    case Activation::Linear: return 1;
    case Activation::Relu: return v > 0 && v < act_max ? 1 : 0;
    case Activation::Sigmoid: return sigmoid(v) * (1 - sigmoid(v));
    case Activation::Swish: return sigmoid(v) * (1 + v * (1 - sigmoid(v)));
    case Activation::HardSigmoid: return v > -3 && v < 3 ? 1.0 / 6 : 0;
    case Activation::HardSigmoidKeras2: return v > -2.5 && v < 2.5 ? 0.2 : 0;
    case Activation::HardSwish: return v <= -3 ? 0 : v >= 3 ? 1 : (2 * v + 3) / 6;
    case Activation::Tanh: return 1 - std::tanh(v) * std::tanh(v);
    case Activation::Softmax: break;
  }
  throw Error("ops: softmax has no elementwise derivative");
}

// A conv's output element (channel o) from its sum (bias included): act(sum) + residual, or the gradient rerun's
// output_gradient * act'(sum) (ConvArgs::output_gradient; for DepthwiseArgs with the means' share added to it); the
// sum kept in pre_activation too.
template <class Args>
float conv_output(const Args& a, double sum, size_t out, uint32_t o) {
  if (a.pre_activation) a.pre_activation[out] = static_cast<float>(sum);
  if (a.output_gradient) {
    double gradient = a.output_gradient[out];
    if constexpr (requires { a.output_gradient_means; }) {
      if (a.output_gradient_means) gradient += double{a.output_gradient_means[o]} * a.mean_scale;
    }
    return static_cast<float>(gradient * derivative(static_cast<float>(sum), a.act, a.act_max));
  }
  const float v = activate(static_cast<float>(sum), a.act, a.act_max);
  return a.residual ? v + a.residual[out] : v;
}

}  // namespace

float activate(float x, Activation act, float act_max) {
  double v = x;
  switch (act) {
    case Activation::Linear: return x;
    case Activation::Relu: return std::min(std::max(x, 0.0f), act_max);
    case Activation::Sigmoid: return static_cast<float>(sigmoid(v));
    case Activation::Swish: return static_cast<float>(v * sigmoid(v));
    case Activation::HardSigmoid: return static_cast<float>(relu6(v + 3.0) / 6.0);
    case Activation::HardSigmoidKeras2: return static_cast<float>(std::min(std::max(0.2 * v + 0.5, 0.0), 1.0));
    case Activation::HardSwish: return static_cast<float>(v * relu6(v + 3.0) / 6.0);
    case Activation::Tanh: return static_cast<float>(std::tanh(v));
    case Activation::Softmax: break;
  }
  throw Error("ops: activation " + std::to_string(static_cast<uint32_t>(act)) + " is not elementwise");
}

void conv2d(const ConvArgs& a, uint32_t row_begin, uint32_t row_end) {
  for (uint32_t oy = row_begin; oy < row_end; ++oy)
    for (uint32_t ox = 0; ox < a.out_w; ++ox)
      for (uint32_t o = 0; o < a.cout; ++o) {
        double sum = a.bias ? a.bias[o] : 0.0;
        for (uint32_t ky = 0; ky < a.kh; ++ky)
          for (uint32_t kx = 0; kx < a.kw; ++kx) {
            int64_t iy = input_coord(oy, a.stride_h, a.pad_top, ky, a.in_h);
            int64_t ix = input_coord(ox, a.stride_w, a.pad_left, kx, a.in_w);
            if (iy < 0 || ix < 0) continue;
            const float* px = a.x + pixel_offset(static_cast<uint32_t>(iy), static_cast<uint32_t>(ix), a.in_w, a.cin);
            for (uint32_t c = 0; c < a.cin; ++c) {
              double in = static_cast<double>(px[c]) * (a.input_scale ? a.input_scale[c] : 1.0f);
              sum += in * blocked_at(a.kernel, a.kh, a.kw, a.cin, o, ky, kx, c);
            }
          }
        const size_t out = pixel_offset(oy, ox, a.out_w, a.cout) + o;
        a.y[out] = conv_output(a, sum, out, o);
      }
}

void depthwise2d(const DepthwiseArgs& a, uint32_t row_begin, uint32_t row_end) {
  uint32_t multiplier = a.cout / a.cin;
  for (uint32_t oy = row_begin; oy < row_end; ++oy)
    for (uint32_t ox = 0; ox < a.out_w; ++ox)
      for (uint32_t o = 0; o < a.cout; ++o) {
        double sum = a.bias ? a.bias[o] : 0.0;
        for (uint32_t ky = 0; ky < a.kh; ++ky)
          for (uint32_t kx = 0; kx < a.kw; ++kx) {
            int64_t iy = input_coord(oy, a.stride_h, a.pad_top, ky, a.in_h);
            int64_t ix = input_coord(ox, a.stride_w, a.pad_left, kx, a.in_w);
            if (iy < 0 || ix < 0) continue;
            float in = a.x[pixel_offset(static_cast<uint32_t>(iy), static_cast<uint32_t>(ix), a.in_w, a.cin) +
                           o / multiplier];
            sum += static_cast<double>(in) * depthwise_at(a.kernel, a.kw, a.cout, o, ky, kx);
          }
        const size_t out = pixel_offset(oy, ox, a.out_w, a.cout) + o;
        const float v = conv_output(a, sum, out, o);
        a.y[out] = v;
        if (a.channel_sums) a.channel_sums[o] += v;
      }
}

void dense(const DenseArgs& a, uint32_t unit_begin, uint32_t unit_end) {
  for (uint32_t u = unit_begin; u < unit_end; ++u) {
    double sum = a.bias ? a.bias[u] : 0.0;
    for (uint32_t i = 0; i < a.inputs; ++i)
      sum += static_cast<double>(a.x[i]) * blocked_at(a.kernel, 1, 1, a.inputs, u, 0, 0, i);
    a.y[u] = activate(static_cast<float>(sum), a.act, a.act_max);
  }
}

void squeeze_excite(const SqueezeExciteArgs& a) {
  dense({a.means, a.channels, a.hidden, a.reduced, a.w1, a.b1, a.act, a.act_max}, 0, a.reduced);
  dense({a.hidden, a.reduced, a.gate, a.channels, a.w2, a.b2, a.act2, a.act2_max}, 0, a.channels);
}

void channel_affine(const ChannelAffineArgs& a, uint32_t pixel_begin, uint32_t pixel_end) {
  for (size_t i = static_cast<size_t>(pixel_begin) * a.channels; i < static_cast<size_t>(pixel_end) * a.channels;
       ++i) {
    size_t c = i % a.channels;
    double v = static_cast<double>(a.x[i]) * (a.scale ? a.scale[c] : 1.0f) + (a.bias ? a.bias[c] : 0.0f);
    float out = activate(static_cast<float>(v), a.act, a.act_max);
    a.y[i] = a.residual ? out + a.residual[i] : out;
  }
}

void add(const ElementwiseArgs& a, uint32_t pixel_begin, uint32_t pixel_end) {
  for (size_t i = static_cast<size_t>(pixel_begin) * a.channels; i < static_cast<size_t>(pixel_end) * a.channels; ++i)
    a.y[i] = activate(a.a[i] + a.b[a.b_broadcast ? i % a.channels : i], a.act, a.act_max);
}

void multiply(const ElementwiseArgs& a, uint32_t pixel_begin, uint32_t pixel_end) {
  for (size_t i = static_cast<size_t>(pixel_begin) * a.channels; i < static_cast<size_t>(pixel_end) * a.channels; ++i)
    a.y[i] = activate(a.a[i] * a.b[a.b_broadcast ? i % a.channels : i], a.act, a.act_max);
}

void activate(const float* x, float* y, size_t begin, size_t end, Activation act, float act_max) {
  for (size_t i = begin; i < end; ++i) y[i] = activate(x[i], act, act_max);
}

void global_avg_pool(const GlobalPoolArgs& a, uint32_t channel_begin, uint32_t channel_end) {
  size_t pixels = static_cast<size_t>(a.h) * a.w;
  for (uint32_t c = channel_begin; c < channel_end; ++c) {
    double sum = 0;
    for (size_t p = 0; p < pixels; ++p) sum += a.x[p * a.channels + c];
    a.y[c] = pixels ? static_cast<float>(sum / static_cast<double>(pixels)) : 0.0f;
  }
}

void max_pool2d(const PoolArgs& a, uint32_t row_begin, uint32_t row_end) {
  pool2d(a, row_begin, row_end, [](const std::vector<double>& w) { return *std::max_element(w.begin(), w.end()); });
}

void avg_pool2d(const PoolArgs& a, uint32_t row_begin, uint32_t row_end) {
  pool2d(a, row_begin, row_end, [](const std::vector<double>& w) {
    double sum = 0;
    for (double v : w) sum += v;
    return sum / static_cast<double>(w.size());
  });
}

void zero_pad(const ZeroPadArgs& a, uint32_t row_begin, uint32_t row_end) {
  uint32_t out_w = a.in_w + a.pad_left + a.pad_right;
  for (uint32_t oy = row_begin; oy < row_end; ++oy)
    for (uint32_t ox = 0; ox < out_w; ++ox)
      for (uint32_t c = 0; c < a.channels; ++c) {
        bool inside = oy >= a.pad_top && oy < a.pad_top + a.in_h && ox >= a.pad_left && ox < a.pad_left + a.in_w;
        a.y[pixel_offset(oy, ox, out_w, a.channels) + c] =
            inside ? a.x[pixel_offset(oy - a.pad_top, ox - a.pad_left, a.in_w, a.channels) + c] : 0.0f;
      }
}

void softmax(float* x, size_t n) {
  if (n == 0) return;
  double top = *std::max_element(x, x + n);
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += std::exp(x[i] - top);
  for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(std::exp(x[i] - top) / sum);
}

namespace {

// The output coordinate whose window reads input coordinate `in` at tap `k`, or -1 when none does.
int64_t output_coord(uint32_t in, uint32_t stride, uint32_t pad, uint32_t k, uint32_t size) {
  const int64_t at = int64_t{in} + pad - k;
  if (at < 0 || at % stride != 0 || at / stride >= size) return -1;
  return at / stride;
}

// Whether input (iy, ix) lies in the window of output (oy, ox).
bool in_window(const PoolArgs& a, uint32_t oy, uint32_t ox, uint32_t iy, uint32_t ix) {
  const int64_t y0 = int64_t{oy} * a.stride_h - a.pad_top, x0 = int64_t{ox} * a.stride_w - a.pad_left;
  return iy >= y0 && iy < y0 + a.kh && ix >= x0 && ix < x0 + a.kw;
}

}  // namespace

void activation_backward(const ActivationGradientArgs& a, uint32_t pixel_begin, uint32_t pixel_end) {
  const Activation act = a.act;
  const float act_max = a.act_max;
  for (size_t i = size_t{pixel_begin} * a.channels; i < size_t{pixel_end} * a.channels; ++i) {
    const double d = act == Activation::Linear ? 1.0 : derivative(a.z[i], act, act_max);  // z unread for Linear
    const double g = (a.dy ? a.dy[i] : 0.0) + (a.dmean ? double{a.dmean[i % a.channels]} * a.mean_scale : 0.0);
    a.dz[i] = static_cast<float>(g * d);
  }
}

namespace {

// The gradient of a windowed op's input, gathered: dx[iy][ix][c] += the sum, over the taps (ky, kx) whose output
// (oy, ox) reads input (iy, ix), of tap_sum(dz at (oy, ox), c, ky, kx). Args: ConvArgs or DepthwiseArgs.
template <class Args, class TapSum>
void gather_input_gradient(const Args& a, const float* dz, float* dx, TapSum tap_sum) {
  for (uint32_t iy = 0; iy < a.in_h; ++iy)
    for (uint32_t ix = 0; ix < a.in_w; ++ix)
      for (uint32_t c = 0; c < a.cin; ++c) {
        double sum = 0;
        for (uint32_t ky = 0; ky < a.kh; ++ky)
          for (uint32_t kx = 0; kx < a.kw; ++kx) {
            const int64_t oy = output_coord(iy, a.stride_h, a.pad_top, ky, a.out_h);
            const int64_t ox = output_coord(ix, a.stride_w, a.pad_left, kx, a.out_w);
            if (oy < 0 || ox < 0) continue;
            sum += tap_sum(dz + pixel_offset(static_cast<uint32_t>(oy), static_cast<uint32_t>(ox), a.out_w, a.cout), c,
                           ky, kx);
          }
        dx[pixel_offset(iy, ix, a.in_w, a.cin) + c] += static_cast<float>(sum);
      }
}

}  // namespace

void conv2d_backward_input(const ConvArgs& a, const float* dz, float* dx) {
  gather_input_gradient(a, dz, dx, [&](const float* g, uint32_t c, uint32_t ky, uint32_t kx) {
    double sum = 0;
    for (uint32_t o = 0; o < a.cout; ++o) sum += double{g[o]} * blocked_at(a.kernel, a.kh, a.kw, a.cin, o, ky, kx, c);
    return sum;
  });
}

void depthwise2d_backward_input(const DepthwiseArgs& a, const float* dz, float* dx) {
  const uint32_t multiplier = a.cout / a.cin;
  gather_input_gradient(a, dz, dx, [&](const float* g, uint32_t c, uint32_t ky, uint32_t kx) {
    double sum = 0;
    for (uint32_t o = c * multiplier; o < (c + 1) * multiplier; ++o) {
      sum += double{g[o]} * depthwise_at(a.kernel, a.kw, a.cout, o, ky, kx);
    }
    return sum;
  });
}

void dense_backward_input(const DenseArgs& a, const float* dz, float* dx) {
  for (uint32_t i = 0; i < a.inputs; ++i) {
    double sum = 0;
    for (uint32_t u = 0; u < a.units; ++u) sum += double{dz[u]} * blocked_at(a.kernel, 1, 1, a.inputs, u, 0, 0, i);
    dx[i] += static_cast<float>(sum);
  }
}

void identity_backward(const float* dy, float* dx, size_t n) {
  for (size_t i = 0; i < n; ++i) dx[i] = static_cast<float>(double{dx[i]} + dy[i]);
}

void add_backward(const float* dy, float* da, float* db, size_t n) {
  if (da) identity_backward(dy, da, n);
  if (db) identity_backward(dy, db, n);
}

void multiply_backward(const ElementwiseArgs& a, const float* dy, float* da, float* db) {
  const size_t count = size_t{a.pixels} * a.channels;
  if (da) {
    for (size_t i = 0; i < count; ++i) da[i] += static_cast<float>(double{dy[i]} * a.b[a.b_broadcast ? i % a.channels : i]);
  }
  if (!db) return;
  if (!a.b_broadcast) {
    for (size_t i = 0; i < count; ++i) db[i] += static_cast<float>(double{dy[i]} * a.a[i]);
    return;
  }
  for (uint32_t c = 0; c < a.channels; ++c) {
    double sum = 0;
    for (size_t p = 0; p < a.pixels; ++p) sum += double{dy[p * a.channels + c]} * a.a[p * a.channels + c];
    db[c] += static_cast<float>(sum);
  }
}

void channel_affine_backward(const ChannelAffineArgs& a, const float* dy, float* dx) {
  for (size_t i = 0; i < size_t{a.pixels} * a.channels; ++i) {
    dx[i] += static_cast<float>(double{dy[i]} * (a.scale ? a.scale[i % a.channels] : 1.0f));
  }
}

void global_avg_pool_backward(const GlobalPoolArgs& a, const float* dy, float* dx) {
  const double pixels = static_cast<double>(a.h) * a.w;
  for (size_t i = 0; i < size_t{a.h} * a.w * a.channels; ++i) dx[i] += static_cast<float>(dy[i % a.channels] / pixels);
}

void max_pool2d_backward(const PoolArgs& a, const float* dy, float* dx) {
  // Each output's window, scanned in row-major order; its gradient goes to the first position holding the maximum.
  for (uint32_t oy = 0; oy < a.out_h; ++oy)
    for (uint32_t ox = 0; ox < a.out_w; ++ox)
      for (uint32_t c = 0; c < a.channels; ++c) {
        int64_t best = -1;
        for (uint32_t ky = 0; ky < a.kh; ++ky)
          for (uint32_t kx = 0; kx < a.kw; ++kx) {
            const int64_t iy = input_coord(oy, a.stride_h, a.pad_top, ky, a.in_h);
            const int64_t ix = input_coord(ox, a.stride_w, a.pad_left, kx, a.in_w);
            if (iy < 0 || ix < 0) continue;
            const int64_t at = static_cast<int64_t>(
                pixel_offset(static_cast<uint32_t>(iy), static_cast<uint32_t>(ix), a.in_w, a.channels) + c);
            if (best < 0 || a.x[at] > a.x[best]) best = at;
          }
        if (best >= 0) dx[best] += dy[pixel_offset(oy, ox, a.out_w, a.channels) + c];
      }
}

void avg_pool2d_backward(const PoolArgs& a, const float* dy, float* dx) {
  // Each input position gathers the share of every output whose window holds it.
  for (uint32_t iy = 0; iy < a.in_h; ++iy)
    for (uint32_t ix = 0; ix < a.in_w; ++ix)
      for (uint32_t c = 0; c < a.channels; ++c) {
        double sum = 0;
        for (uint32_t oy = 0; oy < a.out_h; ++oy)
          for (uint32_t ox = 0; ox < a.out_w; ++ox) {
            if (!in_window(a, oy, ox, iy, ix)) continue;
            uint32_t valid = 0;
            for (uint32_t y = 0; y < a.in_h; ++y)
              for (uint32_t x = 0; x < a.in_w; ++x) valid += in_window(a, oy, ox, y, x) ? 1 : 0;
            sum += dy[pixel_offset(oy, ox, a.out_w, a.channels) + c] / double(valid);
          }
        dx[pixel_offset(iy, ix, a.in_w, a.channels) + c] += static_cast<float>(sum);
      }
}

void zero_pad_backward(const ZeroPadArgs& a, const float* dy, float* dx) {
  const uint32_t out_w = a.in_w + a.pad_left + a.pad_right;
  for (uint32_t iy = 0; iy < a.in_h; ++iy)
    for (uint32_t ix = 0; ix < a.in_w; ++ix)
      for (uint32_t c = 0; c < a.channels; ++c) {
        dx[pixel_offset(iy, ix, a.in_w, a.channels) + c] +=
            dy[pixel_offset(iy + a.pad_top, ix + a.pad_left, out_w, a.channels) + c];
      }
}

}  // namespace effcam::ops::reference
