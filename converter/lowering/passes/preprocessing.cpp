// Leading affine layers fold into the preprocessing.
#include "converter/lowering/passes.h"

namespace effcam::converter::lowering {

using format::Activation;

void fold_preprocessing(Graph& g) {
  // Leading affine layers (Rescaling, Normalization) on the raw image fold into the preprocessing, in double.
  const uint32_t channels = g.at(g.input).shape.c;
  for (bool changed = true; changed;) {
    changed = false;
    std::vector<int> uses = g.use_counts();
    if (uses[static_cast<size_t>(g.input)] != 1) return;
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      Node& node = g.nodes[i];
      if (node.dead || node.kind != NodeKind::Affine || node.inputs[0] != g.input) continue;
      if (node.act != Activation::Linear || node.residual >= 0 || static_cast<int>(i) == g.output) return;
      for (uint32_t c = 0; c < channels; ++c) {
        const double s = node.scale.empty() ? 1.0 : node.scale[c];
        const double t = node.shift.empty() ? 0.0 : node.shift[c];
        g.pre_scale[c] *= s;
        g.pre_offset[c] = g.pre_offset[c] * s + t;
      }
      g.redirect_uses(static_cast<int>(i), g.input);
      node.dead = true;
      g.drop_taps(static_cast<int>(i));  // the preprocessed image is not a layer output
      changed = true;
      break;
    }
  }
}

}  // namespace effcam::converter::lowering
