#include "engine/session.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "effcam/error.hpp"
#include "engine/op_args.h"
#include "ops/kernels.h"
#include "format/weight_layout.h"

namespace effcam::engine {

using format::kNone;
using format::OpKind;
using format::TapKind;

namespace {

float* allocate_arena(uint64_t bytes) {
  const uint64_t size = std::max<uint64_t>(kArenaAlignment, bytes);
  void* memory = std::aligned_alloc(kArenaAlignment, size);
  if (!memory) throw Error("cannot allocate the " + std::to_string(size) + "-byte activation arena");
  return static_cast<float*>(memory);
}

// The tensors a tap needs after the run: its own tensor, or the op's inputs when the layer is recomputed.
std::vector<uint32_t> tensors_for(const format::Tap& tap, const format::Op& op) {
  switch (tap.kind) {
    case TapKind::Output:
      return {op.outputs[0]};
    case TapKind::SecondOutput:
      return {op.outputs[1]};
    default: {
      std::vector<uint32_t> keep;
      for (uint32_t t : op.inputs) {
        if (t != kNone) keep.push_back(t);
      }
      return keep;
    }
  }
}

}  // namespace

Session::Session(const Model& model, const SessionOptions& options)
    : model_(model), pool_(options.threads), arena_(nullptr, std::free) {
  // Resolves the kernels' dispatch path on the caller's thread: an EFFCAM_DISPATCH that is unknown or that this CPU
  // lacks fails here as one effcam::Error, not later inside a worker thread (which would terminate the process).
  ops::dispatch_name();
  PlanRequest request;
  request.threads = pool_.size();
  for (const std::string& layer : options.probes) {
    const format::Tap* tap = model_.find_tap(layer);
    if (!tap) throw Error("layer '" + layer + "' is not in the model, or was folded away (e.g. into the preprocessing)");
    const format::Op& op = model_.file().ops()[tap->op];
    for (uint32_t t : tensors_for(*tap, op)) request.keep_alive.push_back(t);
    Probe probe{layer, tap, model_.tap_shape(*tap), {}};
    if (tap->kind != TapKind::Output && tap->kind != TapKind::SecondOutput) probe.values.resize(probe.shape.elements());
    probes_.push_back(std::move(probe));
  }
  if (!options.cam_layer.empty()) {
    forward_arena_bytes_ = plan_memory(model_.file().ops(), model_.graph(), request).arena_bytes;
    plan_explanation(options.cam_layer, request);
  }
  plan_ = plan_memory(model_.file().ops(), model_.graph(), request);
  if (options.cam_layer.empty()) forward_arena_bytes_ = plan_.arena_bytes;
  arena_.reset(allocate_arena(plan_.arena_bytes));
  if (model_.has_logits()) logits_.resize(model_.classes());
}

float* Session::tensor(uint32_t id) const {
  return reinterpret_cast<float*>(reinterpret_cast<char*>(arena_.get()) + plan_.tensor_offset[id]);
}

const float* Session::weight(uint32_t id) const {
  return id == kNone ? nullptr : static_cast<const float*>(model_.file().weight_data(id));
}

void Session::set_input(std::span<const uint8_t> hwc) {
  const format::Preprocess& pre = model_.file().preprocess();
  const size_t expected = size_t{pre.width} * pre.height * pre.channels;
  if (hwc.size() != expected) {
    throw Error("input has " + std::to_string(hwc.size()) + " pixel values, the model takes " +
                std::to_string(expected));
  }
  float* x = tensor(model_.graph().input);
  const uint32_t c = pre.channels;
  for (size_t i = 0; i < expected; i += c) {
    for (uint32_t k = 0; k < c; ++k) x[i + k] = hwc[i + k] * pre.scale[k] + pre.offset[k];
  }
}

void Session::set_input_pixels(std::span<const float> hwc) {
  const format::Preprocess& pre = model_.file().preprocess();
  const size_t expected = size_t{pre.width} * pre.height * pre.channels;
  if (hwc.size() != expected) {
    throw Error("input has " + std::to_string(hwc.size()) + " values, the model takes " + std::to_string(expected));
  }
  float* x = tensor(model_.graph().input);
  for (size_t i = 0; i < expected; ++i) {
    const uint32_t k = static_cast<uint32_t>(i % pre.channels);
    x[i] = hwc[i] * pre.scale[k] + pre.offset[k];
  }
}

void Session::run() { run_ops(nullptr); }

void Session::run_profiled(std::span<double> op_ms) {
  if (op_ms.size() != model_.file().ops().size()) {
    throw Error("run_profiled needs one time slot per op (" + std::to_string(model_.file().ops().size()) +
                "), got " + std::to_string(op_ms.size()));
  }
  run_ops(op_ms.data());
}

void Session::run_ops(double* op_ms) {
  using Clock = std::chrono::steady_clock;
  const size_t count = model_.file().ops().size();
  for (uint32_t i = 0; i < count; ++i) {
    const Clock::time_point start = op_ms ? Clock::now() : Clock::time_point{};
    run_op(i, Variant{});
    if (op_ms) op_ms[i] = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  }
  for (Probe& probe : probes_) compute_probe(probe);
}

void Session::run_op(uint32_t index, const Variant& variant) {
  const format::Op& op = model_.file().ops()[index];
  const OpGeometry& g = model_.graph().ops[index];
  const ModelFile& file = model_.file();
  const bool softmax = op.activation == format::Activation::Softmax;
  const ops::Activation act = variant.linear || softmax ? ops::Activation::Linear : op.activation;
  float* y = variant.output ? variant.output : tensor(op.outputs[0]);
  const float* x = tensor(op.inputs[0]);
  const float* residual = op.inputs[1] == kNone || variant.skip_residual ? nullptr : tensor(op.inputs[1]);
  const uint32_t pixels = g.output.h * g.output.w;

  switch (op.kind) {
    case OpKind::Conv: {
      ops::ConvArgs a = conv_args(file, op, g);
      a.x = x;
      a.y = y;
      a.bias = variant.skip_bias ? nullptr : weight(op.bias);
      a.input_scale = op.inputs[2] == kNone ? nullptr : tensor(op.inputs[2]);
      a.residual = residual;
      a.act = act;
      a.act_max = op.act_max;
      if (a.kh == 1 && a.kw == 1 && a.stride_h == 1 && a.stride_w == 1 && a.pad_top == 0 && a.pad_left == 0 &&
          a.in_h == a.out_h && a.in_w == a.out_w) {
        // A pointwise conv is a GEMM over the pixels: as one column of them, threads split pixels, not rows.
        a.in_h = a.out_h = pixels;
        a.in_w = a.out_w = 1;
      }
      if (!ops::conv2d_winograd(a.kh, a.kw, a.stride_h, a.stride_w)) {
        pool_.parallel_for(a.out_h, [&](uint32_t b, uint32_t e, uint32_t) { ops::conv2d(a, b, e); });
        break;
      }
      // Scratch (memory_plan.cpp): the transformed weights, then one work area per worker.
      float* u = reinterpret_cast<float*>(reinterpret_cast<char*>(arena_.get()) + plan_.scratch_offset[index]);
      pool_.parallel_for(format::round_up_to_block(a.cout) / format::kChannelBlock,
                         [&](uint32_t b, uint32_t e, uint32_t) { ops::winograd_transform_weights(a, u, b, e); });
      a.winograd_weights = u;
      float* work = u + ops::winograd_weight_floats(a.cin, a.cout);
      // Split by rows of tiles: a range starting inside one would recompute that row of tiles.
      constexpr uint32_t tile = ops::kWinogradTile;
      pool_.parallel_for((a.out_h + tile - 1) / tile, [&](uint32_t b, uint32_t e, uint32_t worker) {
        ops::ConvArgs mine = a;
        mine.winograd_scratch = work + worker * ops::winograd_scratch_floats(a.cin);
        ops::conv2d(mine, tile * b, std::min(tile * e, a.out_h));
      });
      break;
    }
    case OpKind::Depthwise: {
      ops::DepthwiseArgs a = depthwise_args(file, op, g);
      a.x = x;
      a.y = y;
      a.bias = variant.skip_bias ? nullptr : weight(op.bias);
      a.act = act;
      a.act_max = op.act_max;
      const bool means = op.outputs[1] != kNone && !variant.output;
      if (!means) {
        pool_.parallel_for(a.out_h, [&](uint32_t b, uint32_t e, uint32_t) { ops::depthwise2d(a, b, e); });
        break;
      }
      float* mean = tensor(op.outputs[1]);
      const uint32_t c = a.cout;
      if (pool_.size() == 1) {
        std::fill(mean, mean + c, 0.0f);
        a.channel_sums = mean;
        ops::depthwise2d(a, 0, a.out_h);
      } else {
        float* sums = reinterpret_cast<float*>(reinterpret_cast<char*>(arena_.get()) + plan_.scratch_offset[index]);
        std::fill(sums, sums + size_t{pool_.size()} * c, 0.0f);
        pool_.parallel_for(a.out_h, [&](uint32_t b, uint32_t e, uint32_t worker) {
          ops::DepthwiseArgs mine = a;
          mine.channel_sums = sums + size_t{worker} * c;
          ops::depthwise2d(mine, b, e);
        });
        std::copy(sums, sums + c, mean);
        for (uint32_t w = 1; w < pool_.size(); ++w) {
          for (uint32_t k = 0; k < c; ++k) mean[k] += sums[size_t{w} * c + k];
        }
      }
      const float inv = 1.0f / static_cast<float>(pixels);
      for (uint32_t k = 0; k < c; ++k) mean[k] *= inv;
      break;
    }
    case OpKind::SqueezeExcite: {
      ops::SqueezeExciteArgs a;
      a.means = x;
      a.channels = g.input.c;
      a.reduced = op.out_channels;
      a.w1 = weight_view(file, op.weight);
      a.b1 = weight(op.bias);
      a.act = op.activation;
      a.act_max = op.act_max;
      a.w2 = weight_view(file, op.weight2);
      a.b2 = weight(op.bias2);
      a.act2 = variant.linear ? ops::Activation::Linear : op.activation2;
      a.act2_max = op.act_max;
      a.hidden = reinterpret_cast<float*>(reinterpret_cast<char*>(arena_.get()) + plan_.scratch_offset[index]);
      a.gate = y;
      ops::squeeze_excite(a);
      break;
    }
    case OpKind::Dense: {
      ops::DenseArgs a;
      a.x = x;
      a.inputs = static_cast<uint32_t>(g.input.elements());
      a.y = y;
      a.units = op.out_channels;
      a.kernel = weight_view(file, op.weight);
      a.bias = variant.skip_bias ? nullptr : weight(op.bias);
      a.act = act;
      a.act_max = op.act_max;
      pool_.parallel_for(a.units, [&](uint32_t b, uint32_t e, uint32_t) { ops::dense(a, b, e); });
      break;
    }
    case OpKind::ChannelAffine: {
      ops::ChannelAffineArgs a;
      a.x = x;
      a.y = y;
      a.pixels = pixels;
      a.channels = g.output.c;
      a.scale = weight(op.weight);
      a.bias = variant.skip_bias ? nullptr : weight(op.bias);
      a.residual = residual;
      a.act = act;
      a.act_max = op.act_max;
      pool_.parallel_for(pixels, [&](uint32_t b, uint32_t e, uint32_t) { ops::channel_affine(a, b, e); });
      break;
    }
    case OpKind::Add:
    case OpKind::Multiply: {
      ops::ElementwiseArgs a;
      a.a = x;
      a.b = tensor(op.inputs[1]);
      a.y = y;
      a.pixels = pixels;
      a.channels = g.output.c;
      a.b_broadcast = model_.graph().tensors[op.inputs[1]].elements() != g.output.elements();
      a.act = act;
      a.act_max = op.act_max;
      const bool is_add = op.kind == OpKind::Add;
      pool_.parallel_for(pixels, [&](uint32_t b, uint32_t e, uint32_t) {
        is_add ? ops::add(a, b, e) : ops::multiply(a, b, e);
      });
      break;
    }
    case OpKind::GlobalAvgPool: {
      ops::GlobalPoolArgs a{x, g.input.h, g.input.w, g.input.c, y};
      pool_.parallel_for(g.input.c, [&](uint32_t b, uint32_t e, uint32_t) { ops::global_avg_pool(a, b, e); });
      if (act != ops::Activation::Linear) ops::activate(y, y, 0, g.input.c, act, op.act_max);
      break;
    }
    case OpKind::MaxPool:
    case OpKind::AvgPool: {
      ops::PoolArgs a = pool_args(op, g);
      a.x = x;
      a.y = y;
      const bool is_max = op.kind == OpKind::MaxPool;
      pool_.parallel_for(a.out_h, [&](uint32_t b, uint32_t e, uint32_t) {
        is_max ? ops::max_pool2d(a, b, e) : ops::avg_pool2d(a, b, e);
      });
      if (act != ops::Activation::Linear) ops::activate(y, y, 0, g.output.elements(), act, op.act_max);
      break;
    }
    case OpKind::ZeroPad: {
      ops::ZeroPadArgs a{x, g.input.h, g.input.w, g.input.c, y, op.pad_top, op.pad_bottom, op.pad_left, op.pad_right};
      pool_.parallel_for(g.output.h, [&](uint32_t b, uint32_t e, uint32_t) { ops::zero_pad(a, b, e); });
      break;
    }
    case OpKind::Reshape:
      if (y != x) std::memcpy(y, x, g.output.elements() * sizeof(float));
      break;
  }

  if (softmax && !variant.linear) {
    if (op.outputs[0] == model_.graph().output && !variant.output) std::copy(y, y + g.output.c, logits_.begin());
    ops::softmax(y, g.output.elements());
  }
}

void Session::compute_probe(Probe& probe) {
  const format::Tap& tap = *probe.tap;
  if (probe.values.empty()) return;  // read in place
  const format::Op& op = model_.file().ops()[tap.op];
  float* out = probe.values.data();
  switch (tap.kind) {
    case TapKind::BeforeResidual:
      run_op(tap.op, Variant{false, true, out});
      break;
    case TapKind::BeforeActivation:
      run_op(tap.op, Variant{true, true, out});
      break;
    case TapKind::BeforeAffine: {
      run_op(tap.op, Variant{true, true, out, true});
      const float* scale = weight(tap.scale);
      const float* shift = weight(tap.shift);
      const uint32_t c = probe.shape.c;
      for (size_t i = 0; i < probe.values.size(); ++i) {
        const size_t k = i % c;
        out[i] = out[i] / scale[k] + (shift ? shift[k] : 0.0f);
      }
      break;
    }
    case TapKind::ScaledInput: {
      ops::ElementwiseArgs a;
      a.a = tensor(op.inputs[0]);
      a.b = tensor(op.inputs[2]);
      a.y = out;
      a.pixels = probe.shape.h * probe.shape.w;
      a.channels = probe.shape.c;
      a.b_broadcast = true;
      ops::multiply(a, 0, a.pixels);
      break;
    }
    default:
      break;
  }
}

const Session::Probe& Session::find_probe(std::string_view layer) const {
  for (const Probe& probe : probes_) {
    if (probe.layer == layer) return probe;
  }
  throw Error("layer '" + std::string(layer) + "' was not requested as a probe when the session was made");
}

std::span<const float> Session::probe(std::string_view layer) const {
  const Probe& probe = find_probe(layer);
  if (!probe.values.empty()) return probe.values;
  const format::Op& op = model_.file().ops()[probe.tap->op];
  const uint32_t t = probe.tap->kind == TapKind::SecondOutput ? op.outputs[1] : op.outputs[0];
  return {tensor(t), probe.shape.elements()};
}

Shape Session::probe_shape(std::string_view layer) const { return find_probe(layer).shape; }

std::span<const float> Session::probabilities() const { return {tensor(model_.graph().output), model_.classes()}; }

std::span<const float> Session::logits() const { return logits_; }

}  // namespace effcam::engine
