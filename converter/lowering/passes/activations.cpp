// Activation layers fuse into their producer.
#include "converter/lowering/passes.h"

namespace effcam::converter::lowering {

using format::Activation;
using format::TapKind;

void fuse_activations(Graph& g) {
  // A pure activation (affine without scale/shift) fuses into a producer that has none yet.
  std::vector<int> uses = g.use_counts();
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& act = g.nodes[i];
    if (act.dead || act.kind != NodeKind::Affine || !act.scale.empty() || !act.shift.empty() || act.residual >= 0) {
      continue;
    }
    const int producer_id = act.inputs[0];
    Node& producer = g.at(producer_id);
    const bool fusable = producer.kind == NodeKind::Conv || producer.kind == NodeKind::Depthwise ||
                         producer.kind == NodeKind::Dense || producer.kind == NodeKind::Affine ||
                         producer.kind == NodeKind::Add || producer.kind == NodeKind::Multiply;
    if (!fusable || producer.dead || producer.act != Activation::Linear || producer.residual >= 0 ||
        uses[static_cast<size_t>(producer_id)] != 1 || producer_id == g.output) {
      continue;
    }
    if (act.act == Activation::Softmax && producer.shape.elements() != producer.shape.c) continue;
    g.retarget_taps(producer_id, TapKind::Output, producer_id, TapKind::BeforeActivation);
    g.absorb(static_cast<int>(i), producer_id);
    uses = g.use_counts();
  }
}

}  // namespace effcam::converter::lowering
