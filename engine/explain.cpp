// The explanation pass of a Session: a backward pass from one class score down to the Grad-CAM target layer,
// through only the ops between them. It reuses the forward: each op's pre-activation is recomputed from its kept
// inputs (cheaper in memory than keeping every pre-activation), and its gradients and scratch are planned in the same
// arena as the forward tensors, on one timeline (engine/memory_plan.h).
#include <algorithm>
#include <cstring>

#include "effcam/error.hpp"
#include "engine/op_args.h"
#include "engine/session.h"
#include "ops/backward.h"

namespace effcam::engine {

using format::kNone;
using format::OpKind;
using format::TapKind;

void Session::plan_explanation(const std::string& layer, PlanRequest& request) {
  const format::Tap* tap = model_.find_tap(layer);
  if (!tap) {
    throw Error("Grad-CAM layer '" + layer + "' is not in the model, or was folded away (see --list-layers)");
  }
  const auto ops = model_.file().ops();
  const Graph& graph = model_.graph();
  const uint32_t n = static_cast<uint32_t>(ops.size()), target = tap->op;
  if (tap->kind == TapKind::SecondOutput || ops[target].outputs[0] == graph.output) {
    throw Error("Grad-CAM layer '" + layer + "' is not a spatial map (see --list-layers)");
  }

  // The ops the score depends on through the target, in execution order.
  std::vector<bool> downstream(graph.tensors.size(), false);
  for (uint32_t t : ops[target].outputs) {
    if (t != kNone) downstream[t] = true;
  }
  std::vector<uint32_t> path = {target};
  for (uint32_t i = target + 1; i < n; ++i) {
    const bool reached = std::any_of(std::begin(ops[i].inputs), std::end(ops[i].inputs),
                                     [&](uint32_t t) { return t != kNone && downstream[t]; });
    if (!reached) continue;
    path.push_back(i);
    for (uint32_t t : ops[i].outputs) {
      if (t != kNone) downstream[t] = true;
    }
  }
  if (!downstream[graph.output]) throw Error("Grad-CAM layer '" + layer + "' does not influence the model output");

  cam_ = CamPlan{};
  cam_.tap = tap;
  cam_.layer = layer;
  cam_.ops.assign(path.rbegin(), path.rend());
  const uint32_t steps = static_cast<uint32_t>(cam_.ops.size());
  std::vector<uint32_t> step_of(n, kNone);  // timeline step of each op's backward
  for (uint32_t j = 0; j < steps; ++j) step_of[cam_.ops[j]] = n + j;
  request.final_step = n + steps;  // the caller reads the result after the last backward step

  auto add = [&](uint64_t floats, uint32_t first, uint32_t last) {
    request.extra.push_back({floats * sizeof(float), first, last});
    cam_.extra_floats.push_back(floats);
    return static_cast<uint32_t>(request.extra.size() - 1);
  };

  // A gradient buffer for each downstream tensor that a path op reads: from its first consumer's backward step
  // (cleared there) to its producer's.
  cam_.gradient.assign(graph.tensors.size(), kNone);
  cam_.zero_at.assign(steps, {});
  for (uint32_t t = 0; t < graph.tensors.size(); ++t) {
    if (!downstream[t]) continue;
    uint32_t first = kNone;
    for (uint32_t op : path) {
      for (uint32_t in : ops[op].inputs) {
        if (in == t) first = std::min(first, step_of[op]);
      }
    }
    if (first == kNone) continue;
    cam_.gradient[t] = add(graph.tensors[t].elements(), first, step_of[graph.producer[t]]);
    cam_.zero_at[first - n].push_back(cam_.gradient[t]);
  }
  // Every path op is rerun from its forward inputs (and with its forward scratch) in its backward step; a target
  // that is an op's own output is read in the last step.
  for (uint32_t op : path) {
    for (uint32_t in : ops[op].inputs) {
      if (in != kNone) request.extend.push_back({in, step_of[op]});
    }
  }
  for (uint32_t op : path) request.extend_scratch.push_back({op, step_of[op]});
  if (tap->kind == TapKind::Output) request.extend.push_back({ops[target].outputs[0], step_of[target]});
  uint32_t widest_hidden = 0;
  for (uint32_t j = 0; j < steps; ++j) {
    const uint32_t op = cam_.ops[j];
    const OpGeometry& geometry = graph.ops[op];
    cam_.pre_activation.push_back(add(geometry.output.elements(), n + j, n + j));
    const bool gated = ops[op].kind == OpKind::Conv && ops[op].inputs[2] != kNone && op != target;
    cam_.input_gradient.push_back(gated ? add(geometry.input.elements(), n + j, n + j) : kNone);
    if (ops[op].kind == OpKind::SqueezeExcite) widest_hidden = std::max(widest_hidden, ops[op].out_channels);
  }
  if (widest_hidden > 0) cam_.hidden = add(2 * uint64_t{widest_hidden}, n, n + steps - 1);
  const uint64_t target_floats = model_.tap_shape(*tap).elements();
  cam_.activations = add(target_floats, n + steps - 1, n + steps);
  cam_.gradients = add(target_floats, n + steps - 1, n + steps);
}

float* Session::extra(uint32_t index) const {
  return reinterpret_cast<float*>(reinterpret_cast<char*>(arena_.get()) + plan_.extra_offset[index]);
}

Explanation Session::explain(uint32_t class_index, CamScore score) {
  if (!cam_.tap) throw Error("this session was made without a Grad-CAM layer");
  if (class_index >= model_.classes()) {
    throw Error("class " + std::to_string(class_index) + " is out of range: the model has " +
                std::to_string(model_.classes()) + " classes");
  }
  float score_value = 0;
  for (uint32_t step = 0; step < cam_.ops.size(); ++step) {
    for (uint32_t buffer : cam_.zero_at[step]) std::fill_n(extra(buffer), cam_.extra_floats[buffer], 0.0f);
    if (cam_.ops[step] == cam_.tap->op) {
      backward_target(step);
    } else {
      backward_op(step, class_index, score, score_value);
    }
  }
  const Shape shape = model_.tap_shape(*cam_.tap);
  return {cam_.layer, shape, class_index, score_value, {extra(cam_.activations), shape.elements()},
          {extra(cam_.gradients), shape.elements()}};
}

void Session::backward_op(uint32_t step, uint32_t class_index, CamScore score, float& score_value) {
  const uint32_t index = cam_.ops[step];
  const format::Op& op = model_.file().ops()[index];
  const OpGeometry& g = model_.graph().ops[index];
  const ModelFile& file = model_.file();
  auto gradient = [&](uint32_t t) { return t == kNone || cam_.gradient[t] == kNone ? nullptr : extra(cam_.gradient[t]); };
  const bool seed = op.outputs[0] == model_.graph().output;
  const float* dy = gradient(op.outputs[0]);
  const float* dmean = gradient(op.outputs[1]);
  if (!seed && !dy && !dmean) return;  // nothing from the score flows through this op

  // z: the pre-activation, recomputed without the residual; then turned into dz in place.
  float* dz = extra(cam_.pre_activation[step]);
  run_op(index, Variant{true, true, dz});
  const size_t count = g.output.elements();
  const format::Activation act = output_activation(op);
  const bool has_residual = (op.kind == OpKind::Conv || op.kind == OpKind::ChannelAffine) && op.inputs[1] != kNone;
  if (seed) {
    const float* y = tensor(op.outputs[0]);
    const float z_c = dz[class_index];
    std::fill_n(dz, count, 0.0f);
    if (score == CamScore::Logit) {
      score_value = z_c;
      dz[class_index] = 1.0f;
    } else if (act == format::Activation::Softmax) {
      score_value = y[class_index];
      for (size_t k = 0; k < count; ++k) dz[k] = y[class_index] * ((k == class_index ? 1.0f : 0.0f) - y[k]);
    } else {
      score_value = y[class_index];
      dz[class_index] = ops::activation_derivative(z_c, act, op.act_max);
    }
    if (has_residual && score == CamScore::Prob) {
      if (float* gr = gradient(op.inputs[1])) gr[class_index] += 1.0f;
    }
  } else {
    // The output's gradient (plus the squeeze-excite means' share, spread over the pixels), a chunk at a time,
    // times the activation's derivative through the SIMD path; dz holds z until the chunk is done.
    const uint32_t c = g.output.c;
    const float inv_pixels = 1.0f / static_cast<float>(g.output.h * g.output.w);
    constexpr size_t kChunk = 1024;
    float total[kChunk];
    uint32_t channel = 0;
    for (size_t begin = 0; begin < count; begin += kChunk) {
      const size_t m = std::min(kChunk, count - begin);
      for (size_t k = 0; k < m; ++k) {
        total[k] = (dy ? dy[begin + k] : 0.0f) + (dmean ? dmean[channel] * inv_pixels : 0.0f);
        channel = channel + 1 == c ? 0 : channel + 1;
      }
      ops::activation_backward(dz + begin, total, dz + begin, m, act, op.act_max);
    }
    if (has_residual && dy) {
      if (float* gr = gradient(op.inputs[1])) {
        for (size_t i = 0; i < count; ++i) gr[i] += dy[i];
      }
    }
  }

  float* gx = gradient(op.inputs[0]);
  const float* x = tensor(op.inputs[0]);
  const uint32_t in_pixels = g.input.h * g.input.w, cin = g.input.c;
  switch (op.kind) {
    case OpKind::Conv: {
      float* gg = gradient(op.inputs[2]);
      if (!gx && !gg) break;
      const ops::ConvArgs a = conv_args(file, op, g);
      if (op.inputs[2] == kNone) {
        ops::conv2d_backward_input(a, dz, gx);
        break;
      }
      // The gate scales the conv's input: d(x * gate) splits into dx = d * gate and dgate = sum over pixels d * x.
      float* scaled = extra(cam_.input_gradient[step]);
      std::fill_n(scaled, g.input.elements(), 0.0f);
      ops::conv2d_backward_input(a, dz, scaled);
      const float* gate = tensor(op.inputs[2]);
      for (size_t i = 0; i < g.input.elements(); ++i) {
        if (gx) gx[i] += scaled[i] * gate[i % cin];
        if (gg) gg[i % cin] += scaled[i] * x[i];
      }
      break;
    }
    case OpKind::Depthwise: {
      if (!gx) break;
      const ops::DepthwiseArgs a = depthwise_args(file, op, g);
      ops::depthwise2d_backward_input(a, dz, gx);
      break;
    }
    case OpKind::SqueezeExcite: {
      if (!gx) break;
      // gate = act2(W2 h + b2), h = act(W1 m + b1): dz is d/d(W2 h + b2); back through W2, act and W1.
      const uint32_t hidden = op.out_channels;
      float* z1 = extra(cam_.hidden);
      float* dh = z1 + hidden;
      ops::DenseArgs first{x, cin, z1, hidden, weight_view(file, op.weight), weight(op.bias), ops::Activation::Linear, 0};
      ops::dense(first, 0, hidden);
      std::fill_n(dh, hidden, 0.0f);
      ops::DenseArgs second{nullptr, hidden, nullptr, cin, weight_view(file, op.weight2), nullptr, ops::Activation::Linear, 0};
      ops::dense_backward_input(second, dz, dh);
      ops::activation_backward(z1, dh, dh, hidden, op.activation, op.act_max);
      ops::dense_backward_input(first, dh, gx);
      break;
    }
    case OpKind::Dense: {
      if (!gx) break;
      ops::DenseArgs a{nullptr, static_cast<uint32_t>(g.input.elements()), nullptr, op.out_channels,
                       weight_view(file, op.weight), nullptr, ops::Activation::Linear, 0};
      ops::dense_backward_input(a, dz, gx);
      break;
    }
    case OpKind::ChannelAffine: {
      if (!gx) break;
      const float* scale = weight(op.weight);
      for (size_t i = 0; i < count; ++i) gx[i] += dz[i] * (scale ? scale[i % cin] : 1.0f);
      break;
    }
    case OpKind::Add: {
      float* gb = gradient(op.inputs[1]);
      for (size_t i = 0; i < count; ++i) {
        if (gx) gx[i] += dz[i];
        if (gb) gb[i] += dz[i];
      }
      break;
    }
    case OpKind::Multiply: {
      float* gb = gradient(op.inputs[1]);
      const float* b = tensor(op.inputs[1]);
      const bool broadcast = model_.graph().tensors[op.inputs[1]].elements() != count;
      const uint32_t c = g.output.c;
      for (size_t i = 0; i < count; ++i) {
        const size_t bi = broadcast ? i % c : i;
        if (gx) gx[i] += dz[i] * b[bi];
        if (gb) gb[bi] += dz[i] * x[i];
      }
      break;
    }
    case OpKind::GlobalAvgPool: {
      if (!gx) break;
      const float inv = 1.0f / static_cast<float>(in_pixels);
      for (size_t i = 0; i < g.input.elements(); ++i) gx[i] += dz[i % cin] * inv;
      break;
    }
    case OpKind::MaxPool:
    case OpKind::AvgPool: {
      if (!gx) break;
      for (uint32_t oy = 0; oy < g.output.h; ++oy)
        for (uint32_t ox = 0; ox < g.output.w; ++ox)
          for (uint32_t ch = 0; ch < cin; ++ch) {
            const float d = dz[(size_t{oy} * g.output.w + ox) * cin + ch];
            size_t best = 0, valid = 0;
            float best_value = 0;
            std::vector<size_t> window;  // at most kh * kw positions, small
            for (uint32_t ky = 0; ky < op.kernel_h; ++ky)
              for (uint32_t kx = 0; kx < op.kernel_w; ++kx) {
                const int64_t iy = int64_t{oy} * op.stride_h + ky - g.pad_top;
                const int64_t ix = int64_t{ox} * op.stride_w + kx - g.pad_left;
                if (iy < 0 || ix < 0 || iy >= g.input.h || ix >= g.input.w) continue;
                const size_t at = (static_cast<size_t>(iy) * g.input.w + static_cast<size_t>(ix)) * cin + ch;
                if (valid == 0 || x[at] > best_value) {
                  best = at;
                  best_value = x[at];
                }
                ++valid;
                window.push_back(at);
              }
            if (valid == 0) continue;
            if (op.kind == OpKind::MaxPool) {
              gx[best] += d;
            } else {
              for (size_t at : window) gx[at] += d / static_cast<float>(valid);
            }
          }
      break;
    }
    case OpKind::ZeroPad: {
      if (!gx) break;
      for (uint32_t iy = 0; iy < g.input.h; ++iy)
        for (uint32_t ix = 0; ix < g.input.w; ++ix)
          for (uint32_t ch = 0; ch < cin; ++ch) {
            gx[(size_t{iy} * g.input.w + ix) * cin + ch] +=
                dz[((size_t{iy} + op.pad_top) * g.output.w + ix + op.pad_left) * cin + ch];
          }
      break;
    }
    case OpKind::Reshape:
      if (gx) {
        for (size_t i = 0; i < count; ++i) gx[i] += dz[i];
      }
      break;
  }
}

void Session::backward_target(uint32_t step) {
  const format::Tap& tap = *cam_.tap;
  const uint32_t index = tap.op;
  const format::Op& op = model_.file().ops()[index];
  const OpGeometry& g = model_.graph().ops[index];
  float* a = extra(cam_.activations);
  float* da = extra(cam_.gradients);
  float* z = extra(cam_.pre_activation[step]);
  const float* dy = cam_.gradient[op.outputs[0]] == kNone ? nullptr : extra(cam_.gradient[op.outputs[0]]);
  const float* dmean =
      op.outputs[1] == kNone || cam_.gradient[op.outputs[1]] == kNone ? nullptr : extra(cam_.gradient[op.outputs[1]]);
  const size_t count = g.output.elements();
  const uint32_t c = g.output.c;
  const float inv_pixels = 1.0f / static_cast<float>(g.output.h * g.output.w);
  // The gradient of the op's final output (its own output and, for a depthwise op, its squeeze-excite means).
  auto dy_total = [&](size_t i) { return (dy ? dy[i] : 0.0f) + (dmean ? dmean[i % c] * inv_pixels : 0.0f); };
  const ops::Activation act = output_activation(op);

  switch (tap.kind) {
    case TapKind::Output:
      std::memcpy(a, tensor(op.outputs[0]), count * sizeof(float));
      for (size_t i = 0; i < count; ++i) da[i] = dy_total(i);
      break;
    case TapKind::BeforeResidual:
      run_op(index, Variant{false, true, a});
      for (size_t i = 0; i < count; ++i) da[i] = dy_total(i);
      break;
    case TapKind::BeforeActivation:
      run_op(index, Variant{true, true, a});
      for (size_t i = 0; i < count; ++i) da[i] = dy_total(i) * ops::activation_derivative(a[i], act, op.act_max);
      break;
    case TapKind::BeforeAffine: {
      // a = the conv without its bias; the folded BatchNorm made z = a + bias = scale * keras_conv + const.
      run_op(index, Variant{true, true, a, true});
      const float* bias = weight(op.bias);
      const float* scale = weight(tap.scale);
      const float* shift = weight(tap.shift);
      for (size_t i = 0; i < count; ++i) z[i] = dy_total(i);
      for (size_t p = 0; p < count; p += c) {
        for (uint32_t k = 0; k < c; ++k) da[p + k] = a[p + k] + (bias ? bias[k] : 0.0f);
      }
      ops::activation_backward(da, z, da, count, act, op.act_max);  // da = dy * act'(a + bias)
      for (size_t p = 0; p < count; p += c) {
        for (uint32_t k = 0; k < c; ++k) {
          da[p + k] *= scale[k];
          a[p + k] = a[p + k] / scale[k] + (shift ? shift[k] : 0.0f);
        }
      }
      break;
    }
    case TapKind::ScaledInput: {
      // The target is the conv's gated input x * gate; back through the conv itself.
      const uint32_t cin = g.input.c;
      const float* x = tensor(op.inputs[0]);
      const float* gate = tensor(op.inputs[2]);
      for (size_t i = 0; i < g.input.elements(); ++i) a[i] = x[i] * gate[i % cin];
      run_op(index, Variant{true, true, z});
      for (size_t i = 0; i < count; ++i) z[i] = dy_total(i) * ops::activation_derivative(z[i], act, op.act_max);
      std::fill_n(da, g.input.elements(), 0.0f);
      const ops::ConvArgs args = conv_args(model_.file(), op, g);
      ops::conv2d_backward_input(args, z, da);
      break;
    }
    case TapKind::SecondOutput:
      break;  // refused when planning
  }
}

}  // namespace effcam::engine
