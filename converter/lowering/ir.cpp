#include "converter/lowering/ir.h"

#include <algorithm>

namespace effcam::converter::lowering {

int Graph::add(Node node) {
  nodes.push_back(std::move(node));
  return static_cast<int>(nodes.size()) - 1;
}

int Graph::resolve(int id) const {
  while (id >= 0 && at(id).kind == NodeKind::Identity) id = at(id).alias;
  return id;
}

std::vector<int> Graph::use_counts() const {
  std::vector<int> uses(nodes.size(), 0);
  for (const Node& node : nodes) {
    if (node.dead) continue;
    for (int in : node.inputs) ++uses[static_cast<size_t>(in)];
    if (node.residual >= 0) ++uses[static_cast<size_t>(node.residual)];
    if (node.input_scale >= 0) ++uses[static_cast<size_t>(node.input_scale)];
  }
  ++uses[static_cast<size_t>(output)];
  return uses;
}

void Graph::retarget_taps(int from, format::TapKind from_kind, int to, format::TapKind to_kind) {
  for (auto& [name, tap] : taps) {
    if (tap.node == from && tap.kind == from_kind) {
      tap.node = to;
      tap.kind = to_kind;
    }
  }
}

void Graph::redirect_uses(int from, int to) {
  for (Node& node : nodes) {
    for (int& in : node.inputs) {
      if (in == from) in = to;
    }
    if (node.residual == from) node.residual = to;
    if (node.input_scale == from) node.input_scale = to;
  }
  if (output == from) output = to;
}

void Graph::absorb(int absorbed, int into) {
  Node& gone = at(absorbed);
  Node& node = at(into);
  node.act = gone.act;
  node.act_max = gone.act_max;
  node.order = std::max(node.order, gone.order);
  retarget_taps(absorbed, format::TapKind::Output, into, format::TapKind::Output);
  redirect_uses(absorbed, into);
  gone.dead = true;
}

void Graph::drop_taps(int id) {
  for (auto& [name, tap] : taps) {
    if (tap.node == id) tap.node = -1;
  }
}

}  // namespace effcam::converter::lowering
