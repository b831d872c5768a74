#include "engine/model.h"

#include "effcam/error.hpp"

namespace effcam::engine {

Model Model::load(const std::string& path) { return Model(ModelFile::open(path)); }

Model::Model(ModelFile file) : file_(std::move(file)), graph_(build_graph(file_)) {}

std::string Model::label(uint32_t index) const {
  if (index < file_.labels().size()) return std::string(file_.string(file_.labels()[index]));
  return "class_" + std::to_string(index);
}

bool Model::has_logits() const {
  const uint32_t producer = graph_.producer[graph_.output];
  return producer != format::kNone && file_.ops()[producer].activation == format::Activation::Softmax;
}

const format::Tap* Model::find_tap(std::string_view layer) const {
  const format::Tap* suffix_match = nullptr;
  size_t suffix_matches = 0;
  for (const format::Tap& tap : file_.taps()) {
    const std::string_view name = file_.string(tap.layer);
    if (name == layer) return &tap;
    // A bare name also finds "base/name" when exactly one nested layer has it.
    if (name.size() > layer.size() && name.ends_with(layer) && name[name.size() - layer.size() - 1] == '/') {
      suffix_match = &tap;
      ++suffix_matches;
    }
  }
  return suffix_matches == 1 ? suffix_match : nullptr;
}

Shape Model::tap_shape(const format::Tap& tap) const {
  const format::Op& op = file_.ops()[tap.op];
  switch (tap.kind) {
    case format::TapKind::SecondOutput:
      return graph_.tensors[op.outputs[1]];
    case format::TapKind::ScaledInput:
      return graph_.tensors[op.inputs[0]];
    default:
      return graph_.tensors[op.outputs[0]];
  }
}

std::vector<Model::TargetableLayer> Model::targetable_layers() const {
  std::vector<TargetableLayer> layers;
  for (const format::Tap& tap : file_.taps()) {
    const format::Op& op = file_.ops()[tap.op];
    if (tap.kind == format::TapKind::SecondOutput || op.outputs[0] == graph_.output) continue;
    const Shape shape = tap_shape(tap);
    if (shape.h * shape.w <= 1) continue;
    layers.push_back({std::string(file_.string(tap.layer)), std::string(file_.string(tap.class_name)), shape});
  }
  return layers;
}

std::string Model::default_cam_layer() const {
  std::string last;
  for (const TargetableLayer& layer : targetable_layers()) {
    if (layer.class_name == "Conv2D" || layer.class_name == "DepthwiseConv2D") last = layer.name;
  }
  if (last.empty()) throw Error("the model has no Conv2D or DepthwiseConv2D layer to explain; name the CAM layer");
  return last;
}

}  // namespace effcam::engine
