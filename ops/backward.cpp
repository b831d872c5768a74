#include "ops/backward.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "effcam/error.hpp"
#include "format/half.h"
#include "format/weight_layout.h"
#include "ops/kernel_table.h"

namespace effcam::ops {

namespace {

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
  // As one row of n channels (n < 2^32: no tensor of the engine is larger).
  activation_backward({z, dy, nullptr, 0.0f, dz, 1, static_cast<uint32_t>(n), act, act_max}, 0, 1);
}

void activation_backward(const ActivationGradientArgs& a, uint32_t pixel_begin, uint32_t pixel_end) {
  if ((!a.z && a.act != Activation::Linear) || !a.dz || (!a.dy && !a.dmean)) {
    throw Error("ops::activation_backward: null tensor");
  }
  if (static_cast<uint32_t>(a.act) > static_cast<uint32_t>(Activation::Tanh)) {
    throw Error("ops: softmax has no elementwise derivative");
  }
  if (pixel_begin > pixel_end || pixel_end > a.pixels) throw Error("ops::activation_backward: range is outside the output");
  detail::current_kernels().activation_backward(a, pixel_begin, pixel_end);
}

namespace {

// One axis of a stride phase: the input coordinates r, r + stride, ... (`out` of them) gather dz through the kernel
// taps first_tap, first_tap + stride, ... (`real` of them). As a stride-1 forward conv over dz, the phase reads
// `taps` flipped taps with `pad` leading padding: flipped tap t is kernel tap first_tap + stride * (taps - 1 - t),
// a zero tap when that is past the kernel (only a padding wider than the kernel needs those, so `pad` is never
// negative).
struct PhaseAxis {
  uint32_t out = 0, first_tap = 0, real = 0, taps = 0, pad = 0;
};

PhaseAxis phase_axis(uint32_t r, uint32_t stride, uint32_t pad, uint32_t kernel, uint32_t in) {
  PhaseAxis p;
  p.first_tap = (r + pad) % stride;
  p.real = p.first_tap < kernel ? (kernel - p.first_tap + stride - 1) / stride : 0;
  p.out = r < in && p.real > 0 ? (in - r + stride - 1) / stride : 0;
  if (p.out == 0) return p;
  // Output j at (unflipped) tap m reads dz at j + q - m.
  const uint32_t q = (r + pad) / stride;
  p.taps = std::max(p.real, q + 1);
  p.pad = p.taps - 1 - q;
  return p;
}

// The kernel tap of flipped tap t, or -1 for a zero tap.
int64_t phase_tap(const PhaseAxis& p, uint32_t stride, uint32_t t) {
  const uint32_t m = p.taps - 1 - t;
  return m < p.real ? int64_t{p.first_tap} + int64_t{stride} * m : -1;
}

struct Phase {
  PhaseAxis rows, cols;
  uint32_t ry, rx;
};

// Calls f(phase) for each phase with input pixels and taps, in (ry, rx) order.
template <class F>
void for_each_phase(uint32_t stride_h, uint32_t stride_w, uint32_t pad_top, uint32_t pad_left, uint32_t kh,
                    uint32_t kw, uint32_t in_h, uint32_t in_w, F&& f) {
  for (uint32_t ry = 0; ry < stride_h; ++ry) {
    const PhaseAxis rows = phase_axis(ry, stride_h, pad_top, kh, in_h);
    if (rows.out == 0) continue;
    for (uint32_t rx = 0; rx < stride_w; ++rx) {
      const PhaseAxis cols = phase_axis(rx, stride_w, pad_left, kw, in_w);
      if (cols.out > 0) f(Phase{rows, cols, ry, rx});
    }
  }
}

// Floats holding `elements` weights of the kernel's type, rounded up to 64 bytes.
size_t weight_floats(size_t elements, bool fp16) {
  const size_t floats = fp16 ? (elements + 1) / 2 : elements;
  return (floats + 15) / 16 * 16;
}

size_t conv_phase_kernel_elements(const ConvArgs& a, const Phase& p) {
  return size_t{format::round_up_to_block(a.cin)} * p.rows.taps * p.cols.taps * a.cout;
}

// One 16 x 16 tile of a kernel transposed: to[c][j] = from[j][c] for the `rows` input channels j of the block
// (zero past them) and the `columns` output channels c. Both tiles are contiguous in their layouts.
template <class T>
void transpose_tile(const T* from, T* to, uint32_t rows, uint32_t columns) {
  constexpr uint32_t B = format::kChannelBlock;
  if (rows == B && columns == B) {  // fixed trip counts: the compiler unrolls and vectorizes the whole tile
    for (uint32_t c = 0; c < B; ++c)
      for (uint32_t j = 0; j < B; ++j) to[c * B + j] = from[j * B + c];
    return;
  }
  for (uint32_t c = 0; c < columns; ++c)
    for (uint32_t j = 0; j < B; ++j) to[c * B + j] = j < rows ? from[j * B + c] : T{0};
}

// The phase's kernel as a BlockedOHWI {cin, taps_h, taps_w, cout} (the forward conv from dz to dx), for the blocks
// [block_begin, block_end) of 16 input channels; the same type as the kernel (a copy of its values). Tile by tile:
// a tap's 16 input x 16 output channels are contiguous in both layouts (2.2x faster than gathering each output
// channel's 16 values: 2.9% -> 1.3% of S's forward + Grad-CAM at block3c_add on Zen 3).
template <class T>
void transpose_conv_kernel(const ConvArgs& a, const Phase& p, T* to, uint32_t block_begin, uint32_t block_end) {
  const T* from = static_cast<const T*>(a.kernel.data);
  constexpr uint32_t B = format::kChannelBlock;
  for (uint32_t b = block_begin; b < block_end; ++b)
    for (uint32_t ty = 0; ty < p.rows.taps; ++ty)
      for (uint32_t tx = 0; tx < p.cols.taps; ++tx) {
        T* row = to + ((size_t{b} * p.rows.taps + ty) * p.cols.taps + tx) * a.cout * B;
        const int64_t ky = phase_tap(p.rows, a.stride_h, ty), kx = phase_tap(p.cols, a.stride_w, tx);
        if (ky < 0 || kx < 0) {
          std::fill(row, row + size_t{a.cout} * B, T{0});
          continue;
        }
        const uint32_t rows = std::min(B, a.cin - b * B);
        for (uint32_t c0 = 0; c0 < a.cout; c0 += B) {
          const T* tile = from + (((size_t{c0 / B} * a.kh + static_cast<size_t>(ky)) * a.kw + static_cast<size_t>(kx)) *
                                      a.cin + size_t{b} * B) * B;
          transpose_tile(tile, row + size_t{c0} * B, rows, std::min(B, a.cout - c0));
        }
      }
}

// The phase's depthwise kernel as a DepthwiseHWC {cin, taps_h, taps_w} (multiplier 1), for channels
// [begin, end) of the padded round_up_to_block(cin).
template <class T>
void transpose_depthwise_kernel(const DepthwiseArgs& a, const Phase& p, T* to, uint32_t begin, uint32_t end) {
  const T* from = static_cast<const T*>(a.kernel.data);
  const size_t padded = format::round_up_to_block(a.cout);
  for (uint32_t ty = 0; ty < p.rows.taps; ++ty)
    for (uint32_t tx = 0; tx < p.cols.taps; ++tx) {
      T* out = to + (size_t{ty} * p.cols.taps + tx) * padded;
      const int64_t ky = phase_tap(p.rows, a.stride_h, ty), kx = phase_tap(p.cols, a.stride_w, tx);
      for (uint32_t c = begin; c < end; ++c) {
        out[c] = ky < 0 || kx < 0 ? T{0} : from[(static_cast<size_t>(ky) * a.kw + static_cast<size_t>(kx)) * padded + c];
      }
    }
}

// dx rows [row_begin, row_end) of a phase: dx[ry + stride_h * j][rx + stride_w * i] += phase[j][i] per channel.
void scatter_phase(const float* phase, const Phase& p, uint32_t stride_h, uint32_t stride_w, uint32_t in_w,
                   uint32_t channels, float* dx, uint32_t row_begin, uint32_t row_end) {
  for (uint32_t j = row_begin; j < row_end; ++j)
    for (uint32_t i = 0; i < p.cols.out; ++i) {
      const float* from = phase + (size_t{j} * p.cols.out + i) * channels;
      float* to = dx + ((size_t{p.ry} + size_t{stride_h} * j) * in_w + p.rx + size_t{stride_w} * i) * channels;
      for (uint32_t c = 0; c < channels; ++c) to[c] += from[c];
    }
}

// The floats of the largest phase's gradient (the phase at (0, 0) has the most pixels), or 0 without stride.
size_t phase_buffer_floats(uint32_t stride_h, uint32_t stride_w, uint32_t in_h, uint32_t in_w, uint32_t channels) {
  if (stride_h == 1 && stride_w == 1) return 0;
  return size_t{(in_h + stride_h - 1) / stride_h} * ((in_w + stride_w - 1) / stride_w) * channels;
}

// Zeroes dx (rows of row_floats) over the pool, split by rows like the kernels: before the phases of a strided
// gradient that overwrites it add up into it.
void clear_gradient(float* dx, uint32_t rows, size_t row_floats, ThreadPool& pool) {
  pool.parallel_for(rows, [&](uint32_t b, uint32_t e, uint32_t) {
    std::fill(dx + b * row_floats, dx + e * row_floats, 0.0f);
  });
}

// Runs a phase's forward op (`run(args, row_begin, row_end)` on rows of its output) over the pool: straight into dx
// (as the residual, or over it) without stride, else into `buffer` and added to dx row by row.
template <class Args, class Run>
void run_phase(Args args, const Phase& p, uint32_t stride_h, uint32_t stride_w, uint32_t in_w, uint32_t channels,
               float* dx, GradientWrite write, float* buffer, ThreadPool& pool, Run run) {
  if (stride_h == 1 && stride_w == 1) {
    args.y = dx;
    args.residual = write == GradientWrite::Overwrite ? nullptr : dx;
    pool.parallel_for(args.out_h, [&](uint32_t b, uint32_t e, uint32_t) { run(args, b, e); });
    return;
  }
  args.y = buffer;
  args.residual = nullptr;
  pool.parallel_for(args.out_h, [&](uint32_t b, uint32_t e, uint32_t) {
    run(args, b, e);
    scatter_phase(buffer, p, stride_h, stride_w, in_w, channels, dx, b, e);
  });
}

// The phase's forward conv, from dz to the phase's dx, without its output or kernel.
ConvArgs phase_conv(const ConvArgs& a, const Phase& p) {
  ConvArgs t;
  t.in_h = a.out_h, t.in_w = a.out_w, t.cin = a.cout;
  t.out_h = p.rows.out, t.out_w = p.cols.out, t.cout = a.cin;
  t.kh = p.rows.taps, t.kw = p.cols.taps, t.pad_top = p.rows.pad, t.pad_left = p.cols.pad;
  return t;
}

}  // namespace

size_t conv2d_backward_scratch_floats(const ConvArgs& a, uint32_t threads, bool winograd, bool gated) {
  const bool strided = a.stride_h != 1 || a.stride_w != 1;
  // A gated conv's first: the pieces of the gate's sums, and for a strided one the gradient of x * gate (its phases
  // add into it; the gate is applied after them).
  size_t floats = gated ? size_t{kGatePieces} * a.cin + (strided ? size_t{a.in_h} * a.in_w * a.cin : 0) : 0;
  floats += phase_buffer_floats(a.stride_h, a.stride_w, a.in_h, a.in_w, a.cin);
  for_each_phase(a.stride_h, a.stride_w, a.pad_top, a.pad_left, a.kh, a.kw, a.in_h, a.in_w, [&](const Phase& p) {
    floats += weight_floats(conv_phase_kernel_elements(a, p), a.kernel.fp16);
    // Without stride, the one phase is a whole forward conv, with its own scratch (Winograd's) after the kernel.
    if (winograd && !gated && !strided) floats += conv2d_pooled_scratch_floats(phase_conv(a, p), threads);
  });
  return floats;
}

void conv2d_backward_input(const ConvArgs& a, const float* dz, float* dx, float* scratch, ThreadPool& pool,
                           bool winograd, const InputGate& gate, GradientWrite write) {
  if (!a.kernel.data || !dz || !scratch || (!dx && !gate.gradient)) {
    throw Error("ops::conv2d_backward_input: null tensor");
  }
  if (gate.gate && !gate.x) throw Error("ops::conv2d_backward_input: a gate without its input");
  const bool strided = a.stride_h != 1 || a.stride_w != 1;
  if (strided && dx && write == GradientWrite::Overwrite) {
    clear_gradient(dx, a.in_h, size_t{a.in_w} * a.cin, pool);
    write = GradientWrite::Accumulate;
  }
  float* sums = nullptr;
  float* gated = nullptr;  // a strided conv's gradient of x * gate
  if (gate.gate) {
    sums = scratch;
    scratch += size_t{kGatePieces} * a.cin;
    if (strided) {
      gated = scratch;
      scratch += size_t{a.in_h} * a.in_w * a.cin;
      std::fill(gated, scratch, 0.0f);
    }
  }
  float* buffer = scratch;
  float* kernel = scratch + phase_buffer_floats(a.stride_h, a.stride_w, a.in_h, a.in_w, a.cin);
  const uint32_t blocks = format::round_up_to_block(a.cin) / format::kChannelBlock;
  for_each_phase(a.stride_h, a.stride_w, a.pad_top, a.pad_left, a.kh, a.kw, a.in_h, a.in_w, [&](const Phase& p) {
    pool.parallel_for(blocks, [&](uint32_t b, uint32_t e, uint32_t) {
      if (a.kernel.fp16) transpose_conv_kernel(a, p, reinterpret_cast<uint16_t*>(kernel), b, e);
      else transpose_conv_kernel(a, p, kernel, b, e);
    });
    ConvArgs t = phase_conv(a, p);
    t.x = dz;
    t.kernel = {kernel, a.kernel.fp16};
    kernel += weight_floats(conv_phase_kernel_elements(a, p), a.kernel.fp16);
    if (!strided) {  // straight into dx (as the residual, or none: only the gate's sums); a gate in the epilogue
      t.y = dx;
      t.residual = write == GradientWrite::Overwrite ? nullptr : dx;
      if (gate.gate) t.gate = gate.gate, t.gate_input = gate.x, t.gate_sums = sums;
      conv2d_pooled(t, winograd && !gate.gate ? kernel : nullptr, pool);
      return;
    }
    run_phase(t, p, a.stride_h, a.stride_w, a.in_w, a.cin, gated ? gated : dx, GradientWrite::Accumulate, buffer,
              pool, [](const ConvArgs& args, uint32_t b, uint32_t e) { conv2d(args, b, e); });
  });
  if (!gate.gate) return;
  if (!strided) {  // the pieces' sums, in order
    if (!gate.gradient) return;
    for (uint32_t c = 0; c < a.cin; ++c) {
      float sum = sums[c];
      for (uint32_t k = 1; k < kGatePieces; ++k) sum += sums[size_t{k} * a.cin + c];
      gate.gradient[c] += sum;
    }
    return;
  }
  // Strided: the gate applied to the phases' sum (dx += d * gate, gradient += sum over pixels d * x).
  const ElementwiseArgs gating{gate.x, gate.gate, nullptr, a.in_h * a.in_w, a.cin, true, Activation::Linear, 0};
  pool.parallel_for(a.cin, [&](uint32_t b, uint32_t e, uint32_t) {
    multiply_backward(gating, gated, dx, gate.gradient, b, e);
  });
}

namespace {

// A depth multiplier > 1: each input channel gathers its multiplier outputs, plain loops.
void depthwise2d_backward_spread(const DepthwiseArgs& a, const float* dz, float* dx) {
  const uint32_t multiplier = a.cout / a.cin;
  const size_t padded = format::round_up_to_block(a.cout);
  for (uint32_t ky = 0; ky < a.kh; ++ky)
    for (uint32_t kx = 0; kx < a.kw; ++kx) {
      const size_t taps = (size_t{ky} * a.kw + kx) * padded;
      for (uint32_t oy = 0; oy < a.out_h; ++oy) {
        const int64_t iy = int64_t{oy} * a.stride_h + ky - a.pad_top;
        if (iy < 0 || iy >= a.in_h) continue;
        for (uint32_t ox = 0; ox < a.out_w; ++ox) {
          const int64_t ix = int64_t{ox} * a.stride_w + kx - a.pad_left;
          if (ix < 0 || ix >= a.in_w) continue;
          const float* g = dz + (size_t{oy} * a.out_w + ox) * a.cout;
          float* d = dx + (static_cast<size_t>(iy) * a.in_w + static_cast<size_t>(ix)) * a.cin;
          for (uint32_t o = 0; o < a.cout; ++o) d[o / multiplier] += g[o] * load_weight(a.kernel, taps + o);
        }
      }
    }
}

size_t depthwise_phase_kernel_elements(const DepthwiseArgs& a, const Phase& p) {
  return size_t{p.rows.taps} * p.cols.taps * format::round_up_to_block(a.cout);
}

}  // namespace

size_t depthwise2d_backward_scratch_floats(const DepthwiseArgs& a) {
  if (a.cout != a.cin) return 0;
  size_t floats = phase_buffer_floats(a.stride_h, a.stride_w, a.in_h, a.in_w, a.cin);
  for_each_phase(a.stride_h, a.stride_w, a.pad_top, a.pad_left, a.kh, a.kw, a.in_h, a.in_w,
                 [&](const Phase& p) { floats += weight_floats(depthwise_phase_kernel_elements(a, p), a.kernel.fp16); });
  return floats;
}

void depthwise2d_backward_input(const DepthwiseArgs& a, const float* dz, float* dx, float* scratch,
                                ThreadPool& pool, GradientWrite write) {
  if (!a.kernel.data || !dz || !dx) throw Error("ops::depthwise2d_backward_input: null tensor");
  if (write == GradientWrite::Overwrite && (a.stride_h != 1 || a.stride_w != 1 || a.cout != a.cin)) {
    clear_gradient(dx, a.in_h, size_t{a.in_w} * a.cin, pool);
    write = GradientWrite::Accumulate;
  }
  if (a.cout != a.cin) return depthwise2d_backward_spread(a, dz, dx);
  if (!scratch) throw Error("ops::depthwise2d_backward_input: null scratch");
  float* buffer = scratch;
  float* kernel = scratch + phase_buffer_floats(a.stride_h, a.stride_w, a.in_h, a.in_w, a.cin);
  const uint32_t padded = format::round_up_to_block(a.cin);
  for_each_phase(a.stride_h, a.stride_w, a.pad_top, a.pad_left, a.kh, a.kw, a.in_h, a.in_w, [&](const Phase& p) {
    if (a.kernel.fp16) transpose_depthwise_kernel(a, p, reinterpret_cast<uint16_t*>(kernel), 0, padded);
    else transpose_depthwise_kernel(a, p, kernel, 0, padded);
    DepthwiseArgs t;
    t.x = dz;
    t.in_h = a.out_h, t.in_w = a.out_w, t.cin = t.cout = a.cin;
    t.out_h = p.rows.out, t.out_w = p.cols.out;
    t.kh = p.rows.taps, t.kw = p.cols.taps, t.pad_top = p.rows.pad, t.pad_left = p.cols.pad;
    t.kernel = {kernel, a.kernel.fp16};
    run_phase(t, p, a.stride_h, a.stride_w, a.in_w, a.cin, dx, write, buffer, pool,
              [](const DepthwiseArgs& args, uint32_t b, uint32_t e) { depthwise2d(args, b, e); });
    kernel += weight_floats(depthwise_phase_kernel_elements(a, p), a.kernel.fp16);
  });
}

void dense_backward_input(const DenseArgs& a, const float* dz, float* dx) {
  if (!a.kernel.data || !dz || !dx) throw Error("ops::dense_backward_input: null tensor");
  detail::current_kernels().dense_backward_input(a, dz, dx, 0, a.inputs);
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

void multiply_backward(const ElementwiseArgs& a, const float* dy, float* da, float* db, uint32_t channel_begin,
                       uint32_t channel_end) {
  if (channel_begin > channel_end || channel_end > a.channels) {
    throw Error("ops::multiply_backward: channels outside the tensor");
  }
  const size_t count = size_t{a.pixels} * a.channels;
  // a and b may be the same tensor (x * x), and then da and db are one buffer: each loop reads only a, b and dy.
  for (size_t at = 0; at < count; at += a.channels) {
    const size_t b_at = a.b_broadcast ? 0 : at;
    if (da) {
      for (uint32_t c = channel_begin; c < channel_end; ++c) da[at + c] += dy[at + c] * a.b[b_at + c];
    }
    if (db) {
      for (uint32_t c = channel_begin; c < channel_end; ++c) db[b_at + c] += dy[at + c] * a.a[at + c];
    }
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
