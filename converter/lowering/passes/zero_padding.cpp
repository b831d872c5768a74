// ZeroPadding2D before a conv becomes its explicit padding.
#include "converter/lowering/passes.h"

namespace effcam::converter::lowering {

void fold_zero_padding(Graph& g) {
  // ZeroPadding2D feeding only a conv becomes that conv's explicit padding (pooling pads differently).
  std::vector<int> uses = g.use_counts();
  for (Node& node : g.nodes) {
    if (node.dead || (node.kind != NodeKind::Conv && node.kind != NodeKind::Depthwise)) continue;
    Node& pad = g.at(node.inputs[0]);
    if (pad.kind != NodeKind::ZeroPad || pad.dead || uses[static_cast<size_t>(node.inputs[0])] != 1) continue;
    node.pad_top += pad.pad_top;
    node.pad_bottom += pad.pad_bottom;
    node.pad_left += pad.pad_left;
    node.pad_right += pad.pad_right;
    const int dead_id = node.inputs[0];
    node.inputs[0] = pad.inputs[0];
    pad.dead = true;
    g.drop_taps(dead_id);  // the padded tensor is never materialized
  }
}

}  // namespace effcam::converter::lowering
