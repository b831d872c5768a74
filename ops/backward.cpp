#include "ops/backward.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "effcam/error.hpp"
#include "format/half.h"
#include "format/weight_layout.h"

namespace effcam::ops {

namespace {

// One 16-wide output-channel row of a blocked kernel, widened to fp32.
void load_block_row(const WeightView& w, size_t offset, float (&row)[format::kChannelBlock]) {
  if (w.fp16) {
    const uint16_t* halves = static_cast<const uint16_t*>(w.data) + offset;
    for (uint32_t j = 0; j < format::kChannelBlock; ++j) row[j] = format::half_to_float(halves[j]);
  } else {
    const float* floats = static_cast<const float*>(w.data) + offset;
    for (uint32_t j = 0; j < format::kChannelBlock; ++j) row[j] = floats[j];
  }
}

float load_weight(const WeightView& w, size_t index) {
  return w.fp16 ? format::half_to_float(static_cast<const uint16_t*>(w.data)[index]) : static_cast<const float*>(w.data)[index];
}

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace

float activation_derivative(float z, Activation act, float act_max) {
  switch (act) {
    case Activation::Linear: return 1.0f;
    case Activation::Relu: return z > 0.0f && z < act_max ? 1.0f : 0.0f;
    case Activation::Sigmoid: {
      const float s = sigmoid(z);
      return s * (1.0f - s);
    }
    case Activation::Swish: {
      const float s = sigmoid(z);
      return s * (1.0f + z * (1.0f - s));
    }
    case Activation::HardSigmoid: return z > -3.0f && z < 3.0f ? 1.0f / 6.0f : 0.0f;
    case Activation::HardSigmoidKeras2: return z > -2.5f && z < 2.5f ? 0.2f : 0.0f;
    case Activation::HardSwish:
      if (z <= -3.0f) return 0.0f;
      if (z >= 3.0f) return 1.0f;
      return (2.0f * z + 3.0f) / 6.0f;
    case Activation::Tanh: {
      const float t = std::tanh(z);
      return 1.0f - t * t;
    }
    case Activation::Softmax: break;
  }
  throw Error("ops: softmax has no elementwise derivative");
}

void activation_backward(const float* z, const float* dy, float* dz, size_t n, Activation act, float act_max) {
  if (act == Activation::Linear) {
    if (dz != dy) std::copy(dy, dy + n, dz);
    return;
  }
  if (act == Activation::Sigmoid || act == Activation::Swish) {
    // sigmoid through the SIMD kernel, a chunk at a time; each z[i] is read before dz[i] is written.
    constexpr size_t kChunk = 256;
    float s[kChunk];
    for (size_t begin = 0; begin < n; begin += kChunk) {
      const size_t m = std::min(kChunk, n - begin);
      activate(z + begin, s, 0, m, Activation::Sigmoid, 0.0f);
      for (size_t k = 0; k < m; ++k) {
        const float x = z[begin + k];
        const float derivative = act == Activation::Sigmoid ? s[k] * (1.0f - s[k]) : s[k] * (1.0f + x * (1.0f - s[k]));
        dz[begin + k] = dy[begin + k] * derivative;
      }
    }
    return;
  }
  for (size_t i = 0; i < n; ++i) dz[i] = dy[i] * activation_derivative(z[i], act, act_max);
}

void conv2d_backward_input(const ConvArgs& a, const float* dz, float* dx) {
  const uint32_t blocks = format::round_up_to_block(a.cout) / format::kChannelBlock;
  float row[format::kChannelBlock];
  for (uint32_t b = 0; b < blocks; ++b) {
    const uint32_t co0 = b * format::kChannelBlock;
    const uint32_t width = std::min(format::kChannelBlock, a.cout - co0);
    for (uint32_t ky = 0; ky < a.kh; ++ky)
      for (uint32_t kx = 0; kx < a.kw; ++kx)
        for (uint32_t ci = 0; ci < a.cin; ++ci) {
          const size_t offset = ((((size_t{b} * a.kh + ky) * a.kw + kx) * a.cin) + ci) * format::kChannelBlock;
          load_block_row(a.kernel, offset, row);
          for (uint32_t oy = 0; oy < a.out_h; ++oy) {
            const int64_t iy = int64_t{oy} * a.stride_h + ky - a.pad_top;
            if (iy < 0 || iy >= a.in_h) continue;
            for (uint32_t ox = 0; ox < a.out_w; ++ox) {
              const int64_t ix = int64_t{ox} * a.stride_w + kx - a.pad_left;
              if (ix < 0 || ix >= a.in_w) continue;
              const float* g = dz + (size_t{oy} * a.out_w + ox) * a.cout + co0;
              float sum = 0.0f;
              for (uint32_t j = 0; j < width; ++j) sum += g[j] * row[j];
              dx[(static_cast<size_t>(iy) * a.in_w + static_cast<size_t>(ix)) * a.cin + ci] += sum;
            }
          }
        }
  }
}

void depthwise2d_backward_input(const DepthwiseArgs& a, const float* dz, float* dx) {
  const uint32_t multiplier = a.cout / a.cin;
  const size_t padded = format::round_up_to_block(a.cout);
  std::vector<float> taps(padded);
  for (uint32_t ky = 0; ky < a.kh; ++ky)
    for (uint32_t kx = 0; kx < a.kw; ++kx) {
      for (uint32_t o = 0; o < a.cout; ++o) taps[o] = load_weight(a.kernel, (size_t{ky} * a.kw + kx) * padded + o);
      for (uint32_t oy = 0; oy < a.out_h; ++oy) {
        const int64_t iy = int64_t{oy} * a.stride_h + ky - a.pad_top;
        if (iy < 0 || iy >= a.in_h) continue;
        for (uint32_t ox = 0; ox < a.out_w; ++ox) {
          const int64_t ix = int64_t{ox} * a.stride_w + kx - a.pad_left;
          if (ix < 0 || ix >= a.in_w) continue;
          const float* g = dz + (size_t{oy} * a.out_w + ox) * a.cout;
          float* d = dx + (static_cast<size_t>(iy) * a.in_w + static_cast<size_t>(ix)) * a.cin;
          if (multiplier == 1) {
            for (uint32_t c = 0; c < a.cout; ++c) d[c] += g[c] * taps[c];
          } else {
            for (uint32_t o = 0; o < a.cout; ++o) d[o / multiplier] += g[o] * taps[o];
          }
        }
      }
    }
}

void dense_backward_input(const DenseArgs& a, const float* dz, float* dx) {
  const uint32_t blocks = format::round_up_to_block(a.units) / format::kChannelBlock;
  float row[format::kChannelBlock];
  for (uint32_t b = 0; b < blocks; ++b) {
    const uint32_t u0 = b * format::kChannelBlock;
    const uint32_t width = std::min(format::kChannelBlock, a.units - u0);
    for (uint32_t i = 0; i < a.inputs; ++i) {
      load_block_row(a.kernel, (size_t{b} * a.inputs + i) * format::kChannelBlock, row);
      float sum = 0.0f;
      for (uint32_t j = 0; j < width; ++j) sum += dz[u0 + j] * row[j];
      dx[i] += sum;
    }
  }
}

void identity_backward(const float* dy, float* dx, size_t n) {
  for (size_t i = 0; i < n; ++i) dx[i] += dy[i];
}

void add_backward(const float* dy, float* da, float* db, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (da) da[i] += dy[i];
    if (db) db[i] += dy[i];
  }
}

void multiply_backward(const ElementwiseArgs& a, const float* dy, float* da, float* db) {
  const size_t count = size_t{a.pixels} * a.channels;
  // One loop for both: a and b may be the same tensor (x * x), and then da and db are one buffer.
  for (size_t i = 0; i < count; ++i) {
    const size_t bi = a.b_broadcast ? i % a.channels : i;
    if (da) da[i] += dy[i] * a.b[bi];
    if (db) db[bi] += dy[i] * a.a[i];
  }
}

void channel_affine_backward(const ChannelAffineArgs& a, const float* dy, float* dx) {
  if (!a.scale) {
    identity_backward(dy, dx, size_t{a.pixels} * a.channels);
    return;
  }
  for (size_t p = 0; p < a.pixels; ++p) {
    const size_t at = p * a.channels;
    for (uint32_t c = 0; c < a.channels; ++c) dx[at + c] += dy[at + c] * a.scale[c];
  }
}

void global_avg_pool_backward(const GlobalPoolArgs& a, const float* dy, float* dx) {
  const size_t pixels = size_t{a.h} * a.w;
  const float inv = 1.0f / static_cast<float>(pixels);
  for (size_t p = 0; p < pixels; ++p) {
    for (uint32_t c = 0; c < a.channels; ++c) dx[p * a.channels + c] += dy[c] * inv;
  }
}

namespace {

// The rows / columns [begin, end) of the input a window at output coordinate `out` covers.
struct Span {
  uint32_t begin, end;
};
Span window_span(uint32_t out, uint32_t stride, uint32_t pad, uint32_t kernel, uint32_t size) {
  const int64_t first = int64_t{out} * stride - pad;
  const int64_t last = first + kernel;
  return {static_cast<uint32_t>(std::clamp<int64_t>(first, 0, size)), static_cast<uint32_t>(std::clamp<int64_t>(last, 0, size))};
}

}  // namespace

void max_pool2d_backward(const PoolArgs& a, const float* dy, float* dx) {
  for (uint32_t oy = 0; oy < a.out_h; ++oy) {
    const Span rows = window_span(oy, a.stride_h, a.pad_top, a.kh, a.in_h);
    for (uint32_t ox = 0; ox < a.out_w; ++ox) {
      const Span cols = window_span(ox, a.stride_w, a.pad_left, a.kw, a.in_w);
      if (rows.begin == rows.end || cols.begin == cols.end) continue;
      for (uint32_t c = 0; c < a.channels; ++c) {
        size_t best = (size_t{rows.begin} * a.in_w + cols.begin) * a.channels + c;
        for (uint32_t iy = rows.begin; iy < rows.end; ++iy)
          for (uint32_t ix = cols.begin; ix < cols.end; ++ix) {
            const size_t at = (size_t{iy} * a.in_w + ix) * a.channels + c;
            if (a.x[at] > a.x[best]) best = at;
          }
        dx[best] += dy[(size_t{oy} * a.out_w + ox) * a.channels + c];
      }
    }
  }
}

void avg_pool2d_backward(const PoolArgs& a, const float* dy, float* dx) {
  for (uint32_t oy = 0; oy < a.out_h; ++oy) {
    const Span rows = window_span(oy, a.stride_h, a.pad_top, a.kh, a.in_h);
    for (uint32_t ox = 0; ox < a.out_w; ++ox) {
      const Span cols = window_span(ox, a.stride_w, a.pad_left, a.kw, a.in_w);
      const size_t valid = size_t{rows.end - rows.begin} * (cols.end - cols.begin);
      if (valid == 0) continue;
      for (uint32_t c = 0; c < a.channels; ++c) {
        const float share = dy[(size_t{oy} * a.out_w + ox) * a.channels + c] / static_cast<float>(valid);
        for (uint32_t iy = rows.begin; iy < rows.end; ++iy)
          for (uint32_t ix = cols.begin; ix < cols.end; ++ix) dx[(size_t{iy} * a.in_w + ix) * a.channels + c] += share;
      }
    }
  }
}

void zero_pad_backward(const ZeroPadArgs& a, const float* dy, float* dx) {
  const size_t out_w = size_t{a.in_w} + a.pad_left + a.pad_right;
  for (uint32_t iy = 0; iy < a.in_h; ++iy) {
    const float* from = dy + ((size_t{iy} + a.pad_top) * out_w + a.pad_left) * a.channels;
    float* to = dx + size_t{iy} * a.in_w * a.channels;
    for (size_t k = 0; k < size_t{a.in_w} * a.channels; ++k) to[k] += from[k];
  }
}

}  // namespace effcam::ops
