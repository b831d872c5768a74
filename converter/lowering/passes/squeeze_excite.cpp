// Squeeze-excite: the gate, the pooled MLP and the pooled depthwise output fuse into the ops around them.
#include "converter/lowering/passes.h"

#include <algorithm>

namespace effcam::converter::lowering {

using format::Activation;
using format::TapKind;

void fold_channel_gates(Graph& g) {
  // x * gate (gate 1x1xC) feeding only a conv: the conv scales its input channels (squeeze-excite).
  std::vector<int> uses = g.use_counts();
  for (Node& conv : g.nodes) {
    if (conv.dead || conv.kind != NodeKind::Conv || conv.input_scale >= 0) continue;
    const int mul_id = conv.inputs[0];
    Node& mul = g.at(mul_id);
    if (mul.dead || mul.kind != NodeKind::Multiply || mul.act != Activation::Linear ||
        uses[static_cast<size_t>(mul_id)] != 1 || mul_id == g.output) {
      continue;
    }
    const Shape gate = g.at(mul.inputs[1]).shape;
    if (gate.h != 1 || gate.w != 1 || mul.shape.h * mul.shape.w == 1) continue;
    conv.inputs[0] = mul.inputs[0];
    conv.input_scale = mul.inputs[1];
    conv.order = std::max(conv.order, mul.order);
    g.retarget_taps(mul_id, TapKind::Output, static_cast<int>(&conv - g.nodes.data()), TapKind::ScaledInput);
    mul.dead = true;
    uses = g.use_counts();
  }
}

void fuse_squeeze_excite(Graph& g) {
  // GAP -> 1x1 conv (+act) -> 1x1 conv (+act) on a 1x1 map: one SqueezeExcite op producing the gate.
  std::vector<int> uses = g.use_counts();
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& expand = g.nodes[i];
    if (expand.dead || expand.kind != NodeKind::Conv || expand.shape.h != 1 || expand.shape.w != 1) continue;
    const int reduce_id = expand.inputs[0];
    Node& reduce = g.at(reduce_id);
    if (reduce.dead || reduce.kind != NodeKind::Conv || reduce.shape.h != 1 || reduce.shape.w != 1 ||
        reduce.kh != 1 || reduce.kw != 1 || expand.kh != 1 || expand.kw != 1 ||
        uses[static_cast<size_t>(reduce_id)] != 1 || reduce.residual >= 0 || reduce.input_scale >= 0 ||
        expand.residual >= 0 || expand.input_scale >= 0) {
      continue;
    }
    const Node& pooled = g.at(reduce.inputs[0]);
    if (pooled.kind != NodeKind::GlobalAvgPool) continue;
    expand.kind = NodeKind::SqueezeExcite;
    expand.kernel2 = std::move(expand.kernel);
    expand.bias2 = std::move(expand.bias);
    expand.act2 = expand.act;
    expand.hidden = reduce.cout;
    expand.cin = reduce.cin;
    expand.kernel = std::move(reduce.kernel);
    expand.bias = std::move(reduce.bias);
    expand.act = reduce.act;
    expand.act_max = reduce.act_max;
    expand.inputs[0] = reduce.inputs[0];
    reduce.dead = true;
    g.drop_taps(reduce_id);  // the SE hidden layer lives inside the op
    for (auto& [name, tap] : g.taps) {
      if (tap.node == static_cast<int>(i) && tap.kind != TapKind::Output) tap.node = -1;
    }
    uses = g.use_counts();
  }
}

void fuse_depthwise_means(Graph& g) {
  // A GlobalAvgPool of a depthwise output is computed by the depthwise op in the same pass.
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& pool = g.nodes[i];
    if (pool.dead || pool.kind != NodeKind::GlobalAvgPool || static_cast<int>(i) == g.output) continue;
    const int dw_id = pool.inputs[0];
    Node& dw = g.at(dw_id);
    if (dw.kind != NodeKind::Depthwise || dw.mean_output >= 0) continue;
    dw.mean_output = static_cast<int>(i);
    pool.second_output_of = dw_id;
    g.retarget_taps(static_cast<int>(i), TapKind::Output, dw_id, TapKind::SecondOutput);
  }
}

}  // namespace effcam::converter::lowering
