// Identities (Dropout, same-shape Reshape...) disappear: their uses read the aliased value.
#include "converter/lowering/passes.h"

namespace effcam::converter::lowering {

void remove_identities(Graph& g) {
  for (Node& node : g.nodes) {
    for (int& in : node.inputs) in = g.resolve(in);
  }
  g.output = g.resolve(g.output);
  for (auto& [name, tap] : g.taps) tap.node = g.resolve(tap.node);
  for (Node& node : g.nodes) {
    if (node.kind == NodeKind::Identity) node.dead = true;
  }
}

}  // namespace effcam::converter::lowering
