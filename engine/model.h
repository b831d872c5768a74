// A loaded model: the mmap'd .effcam file (weights stay fp16 in shared page cache) and its validated graph.
// Immutable after loading, so one Model can serve any number of Sessions (each with its own arena).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "format/graph.h"
#include "format/model_file.h"

namespace effcam::engine {

class Model {
 public:
  // Maps and validates the file, then checks the graph. Throws effcam::Error naming the problem.
  static Model load(const std::string& path);
  explicit Model(ModelFile file);

  const ModelFile& file() const { return file_; }
  const Graph& graph() const { return graph_; }

  uint32_t input_height() const { return file_.preprocess().height; }
  uint32_t input_width() const { return file_.preprocess().width; }
  uint32_t input_channels() const { return file_.preprocess().channels; }
  uint32_t classes() const { return graph_.classes; }
  // The class name from the file's labels, or "class_<index>" when it has none.
  std::string label(uint32_t index) const;
  // True when the last op ends in softmax, so pre-softmax logits exist.
  bool has_logits() const;

  // The tap of a Keras layer: its bare name ("top_conv") or qualified inside a nested model
  // ("efficientnetv2-s/top_conv"). nullptr when the layer is unknown or not recoverable.
  const format::Tap* find_tap(std::string_view layer) const;
  // Shape of a tap's tensor.
  Shape tap_shape(const format::Tap& tap) const;

  // Layers Grad-CAM can target: spatial maps (H x W > 1) a tap recovers, in execution order.
  struct TargetableLayer {
    std::string name;
    std::string class_name;
    Shape shape;
  };
  std::vector<TargetableLayer> targetable_layers() const;
  // The default Grad-CAM target, the target users' rule: the last Conv2D / DepthwiseConv2D layer
  // (top_conv for EfficientNetV2). Throws effcam::Error when the model has none.
  std::string default_cam_layer() const;

 private:
  ModelFile file_;
  Graph graph_;
};

}  // namespace effcam::engine
