// BatchNormalization folds into the conv / dense before it, or into the dense after it.
#include "converter/lowering/passes.h"

#include <algorithm>

namespace effcam::converter::lowering {

using format::Activation;
using format::TapKind;

void fold_batchnorm_into_producers(Graph& g) {
  // conv/depthwise/dense -> affine (a BatchNormalization): W' = W * s, b' = b * s + t per output channel.
  std::vector<int> uses = g.use_counts();
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& affine = g.nodes[i];
    if (affine.dead || affine.kind != NodeKind::Affine || affine.scale.empty()) continue;
    const int producer_id = affine.inputs[0];
    Node& producer = g.at(producer_id);
    const bool foldable = producer.kind == NodeKind::Conv || producer.kind == NodeKind::Depthwise ||
                          producer.kind == NodeKind::Dense;
    if (!foldable || producer.act != Activation::Linear || producer.residual >= 0 || producer.input_scale >= 0 ||
        uses[static_cast<size_t>(producer_id)] != 1 || producer_id == g.output) {
      continue;
    }
    // The conv's own output stays recoverable: conv = folded_conv_without_bias / scale + its own bias.
    TapInfo& conv_tap = g.taps[producer.layer];
    if (conv_tap.node == producer_id && conv_tap.kind == TapKind::Output &&
        std::all_of(affine.scale.begin(), affine.scale.end(), [](double s) { return s != 0.0; })) {
      conv_tap.kind = TapKind::BeforeAffine;
      conv_tap.scale = affine.scale;
      conv_tap.shift = producer.bias;  // empty when the layer has no bias
    } else if (conv_tap.node == producer_id) {
      conv_tap.node = -1;
    }
    const uint32_t cout = producer.cout;
    for (size_t k = 0; k < producer.kernel.size(); ++k) producer.kernel[k] *= affine.scale[k % cout];
    if (producer.bias.empty()) producer.bias.assign(cout, 0.0);
    for (uint32_t c = 0; c < cout; ++c) producer.bias[c] = producer.bias[c] * affine.scale[c] + affine.shift[c];
    g.absorb(static_cast<int>(i), producer_id);
    uses = g.use_counts();
  }
}

void fold_affine_into_dense(Graph& g) {
  // affine -> dense (a BatchNormalization on a pooled vector): W'[i][u] = W[i][u] * s[i], b' = b + W^T t.
  std::vector<int> uses = g.use_counts();
  for (Node& dense : g.nodes) {
    if (dense.dead || dense.kind != NodeKind::Dense) continue;
    const int affine_id = dense.inputs[0];
    Node& affine = g.at(affine_id);
    if (affine.dead || affine.kind != NodeKind::Affine || affine.act != Activation::Linear ||
        affine.residual >= 0 || uses[static_cast<size_t>(affine_id)] != 1 || affine_id == g.output) {
      continue;
    }
    const uint32_t in = dense.cin, units = dense.cout;
    if (dense.bias.empty()) dense.bias.assign(units, 0.0);
    for (uint32_t i = 0; i < in; ++i) {
      const double s = affine.scale.empty() ? 1.0 : affine.scale[i];
      const double t = affine.shift.empty() ? 0.0 : affine.shift[i];
      for (uint32_t u = 0; u < units; ++u) {
        double& w = dense.kernel[size_t{i} * units + u];
        dense.bias[u] += w * t;
        w *= s;
      }
    }
    dense.inputs[0] = affine.inputs[0];
    affine.dead = true;
    g.drop_taps(affine_id);  // a folded 1-D affine is not a Grad-CAM target
    uses = g.use_counts();
  }
}

}  // namespace effcam::converter::lowering
