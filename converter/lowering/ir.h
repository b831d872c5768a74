// The lowering's intermediate graph: one node per value while Keras layers are fused into effcam ops, and the taps
// saying where each Keras layer's own output can be recovered. Weights stay in Keras layout, in double, until emit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "format/graph.h"

namespace effcam::converter::lowering {

inline constexpr float kInf = std::numeric_limits<float>::infinity();

enum class NodeKind {
  Input, Identity, Affine, Conv, Depthwise, Dense, SqueezeExcite, Add, Multiply,
  GlobalAvgPool, MaxPool, AvgPool, ZeroPad, Reshape,
};

// One value-producing step of the graph while it is being fused.
struct Node {
  NodeKind kind = NodeKind::Identity;
  std::string layer;        // the Keras layer that created it (the op's name)
  std::vector<int> inputs;  // node ids
  Shape shape;              // output shape
  size_t order = 0;         // emission position: the last Keras layer fused into it
  bool dead = false;

  uint32_t kh = 1, kw = 1, stride_h = 1, stride_w = 1;
  format::Padding padding = format::Padding::Valid;
  uint32_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;

  std::vector<double> kernel, bias;    // Conv (kh,kw,cin,cout) / Depthwise (kh,kw,cin,mult) / Dense (in,units)
  std::vector<double> kernel2, bias2;  // SqueezeExcite: the expand layer (hidden, cout)
  uint32_t cin = 0, cout = 0, multiplier = 1, hidden = 0;
  std::vector<double> scale, shift;    // Affine: y = x * scale + shift (empty = 1 / 0)

  format::Activation act = format::Activation::Linear;
  float act_max = kInf;
  format::Activation act2 = format::Activation::Linear;

  int residual = -1;          // Conv / Affine: added after the activation
  int input_scale = -1;       // Conv: per-input-channel gate (a folded squeeze-excite Multiply)
  int mean_output = -1;       // Depthwise: the GlobalAvgPool node computed as its second output
  int second_output_of = -1;  // GlobalAvgPool folded into that Depthwise node
  int alias = -1;             // Identity: the node whose value this is
};

// Where a Keras layer's output can be recovered: node -1 when it was folded away.
struct TapInfo {
  int node = -1;
  format::TapKind kind = format::TapKind::Output;
  std::vector<double> scale, shift;  // BeforeAffine
};

struct Graph {
  std::vector<Node> nodes;
  std::map<std::string, TapInfo> taps;  // by Keras layer name
  int input = -1;   // the image
  int output = -1;  // the model output
  // The preprocessing the leading affine layers fold into (per channel, up to 4).
  double pre_scale[4] = {1, 1, 1, 1}, pre_offset[4] = {0, 0, 0, 0};
  uint64_t keras_parameters = 0;  // parameters of the Keras layers, BatchNorm statistics included

  Node& at(int id) { return nodes[static_cast<size_t>(id)]; }
  const Node& at(int id) const { return nodes[static_cast<size_t>(id)]; }
  int add(Node node);
  // The node whose value `id` is, through identities.
  int resolve(int id) const;
  // How often each node's value is used (inputs, residuals, gates, the model output).
  std::vector<int> use_counts() const;
  void retarget_taps(int from, format::TapKind from_kind, int to, format::TapKind to_kind);
  // Every use of node `from`'s value (inputs, residual, gate, the model output) becomes a use of `to`'s.
  void redirect_uses(int from, int to);
  // Node `into` takes over node `absorbed` (an activation or BatchNorm after it): its activation, its place in the
  // execution order, its taps and its uses.
  void absorb(int absorbed, int into);
  // Taps of node `id` are dropped: its value is never materialized.
  void drop_taps(int id);
};

}  // namespace effcam::converter::lowering
