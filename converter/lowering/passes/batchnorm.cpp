// BatchNormalization folds into the conv / dense before it. One that follows a pooled vector (a classifier head:
// pool -> BatchNormalization -> Dense) stays a ChannelAffine op: folding it into the Dense after it would scale that
// kernel's rows, and an fp16 file would then round products W[i][u] * s[i] that the Keras kernel alone does not need
// (a kernel trained or stored in fp16 is exact in fp16, its product with s is not), which Grad-CAM++ amplifies.
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

}  // namespace effcam::converter::lowering
