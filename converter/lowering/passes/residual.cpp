// Residual adds fuse into the op producing one of their inputs.
#include "converter/lowering/passes.h"

#include <algorithm>

namespace effcam::converter::lowering {

using format::Activation;
using format::TapKind;

void fuse_residual_adds(Graph& g) {
  // add(x, y) where x comes from a conv/affine used only here: that op adds y after its activation.
  std::vector<int> uses = g.use_counts();
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& add = g.nodes[i];
    if (add.dead || add.kind != NodeKind::Add || add.act != Activation::Linear) continue;
    int best = -1;
    for (int k = 0; k < 2; ++k) {
      const int candidate = add.inputs[static_cast<size_t>(k)];
      const Node& producer = g.at(candidate);
      const bool fusable = (producer.kind == NodeKind::Conv || producer.kind == NodeKind::Affine) &&
                           producer.residual < 0 && uses[static_cast<size_t>(candidate)] == 1 &&
                           candidate != g.output && producer.second_output_of < 0;
      if (fusable && (best < 0 || producer.order > g.at(best).order)) best = candidate;
    }
    if (best < 0) continue;
    Node& producer = g.at(best);
    producer.residual = add.inputs[0] == best ? add.inputs[1] : add.inputs[0];
    producer.order = std::max(producer.order, add.order);
    g.retarget_taps(best, TapKind::Output, best, TapKind::BeforeResidual);
    g.retarget_taps(static_cast<int>(i), TapKind::Output, best, TapKind::Output);
    g.redirect_uses(static_cast<int>(i), best);
    add.dead = true;
    uses = g.use_counts();
  }
}

}  // namespace effcam::converter::lowering
