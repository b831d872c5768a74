// effcam::Model: a loaded .effcam file and the API's view of it (labels, CAM layers, sizes).
#include <algorithm>
#include <cstring>

#include "api/state.h"
#include "base/error_code.h"
#include "base/process_memory.h"
#include "format/model_file.h"

namespace effcam {

const char* version() { return EFFCAM_VERSION_STRING; }

ProcessMemory process_memory() { return {current_rss_bytes(), peak_rss_bytes(), pss_bytes()}; }

namespace detail {

ModelState::ModelState(std::unique_ptr<uint64_t[]> bytes, engine::Model model, std::string name)
    : owned_bytes(std::move(bytes)), engine(std::move(model)), path(std::move(name)) {
  has_labels = !engine.file().labels().empty();
  labels.reserve(engine.classes());
  for (uint32_t i = 0; i < engine.classes(); ++i) labels.push_back(engine.label(i));
  for (const engine::Model::TargetableLayer& layer : engine.targetable_layers()) {
    cam_layers.push_back({layer.name, layer.class_name, layer.shape.h, layer.shape.w, layer.shape.c});
  }
  // The last Conv2D / DepthwiseConv2D; a model without one has no default (the engine says so by throwing).
  const bool has_conv = std::any_of(cam_layers.begin(), cam_layers.end(), [](const LayerInfo& layer) {
    return layer.class_name == "Conv2D" || layer.class_name == "DepthwiseConv2D";
  });
  if (has_conv) default_cam_layer = engine.default_cam_layer();
}

}  // namespace detail

Model::Model(std::shared_ptr<const detail::ModelState> state) : state_(std::move(state)) {}

Model Model::load(const std::string& path) {
  return with_error_code(ErrorCode::Format, [&] {
    return Model(std::make_shared<const detail::ModelState>(nullptr, engine::Model::load(path), path));
  });
}

Model Model::from_buffer(std::span<const uint8_t> bytes, const std::string& name) {
  const size_t words = (bytes.size() + sizeof(uint64_t) - 1) / sizeof(uint64_t);
  std::unique_ptr<uint64_t[]> copy(new uint64_t[words == 0 ? 1 : words]());
  if (!bytes.empty()) std::memcpy(copy.get(), bytes.data(), bytes.size());
  const std::span<const uint8_t> view(reinterpret_cast<const uint8_t*>(copy.get()), bytes.size());
  return with_error_code(ErrorCode::Format, [&] {
    try {
      engine::Model model(ModelFile::from_bytes(view));
      return Model(std::make_shared<const detail::ModelState>(std::move(copy), std::move(model), name));
    } catch (const Error& e) {
      throw Error(name + ": " + e.what(), e.code());
    }
  });
}

const std::string& Model::path() const { return state_->path; }
uint32_t Model::input_height() const { return state_->engine.input_height(); }
uint32_t Model::input_width() const { return state_->engine.input_width(); }
uint32_t Model::input_channels() const { return state_->engine.input_channels(); }
uint32_t Model::classes() const { return state_->engine.classes(); }
const std::vector<std::string>& Model::labels() const { return state_->labels; }
bool Model::has_labels() const { return state_->has_labels; }
bool Model::has_logits() const { return state_->engine.has_logits(); }
const std::vector<LayerInfo>& Model::cam_layers() const { return state_->cam_layers; }
const std::string& Model::default_cam_layer() const { return state_->default_cam_layer; }
uint64_t Model::file_bytes() const { return state_->engine.file().file_size(); }
uint64_t Model::weight_bytes() const { return state_->engine.file().weight_bytes(); }
uint32_t Model::ops() const { return static_cast<uint32_t>(state_->engine.file().ops().size()); }

const LayerInfo& Model::cam_layer(const std::string& name) const {
  for (const LayerInfo& layer : state_->cam_layers) {
    if (layer.name == name) return layer;
  }
  // A bare name inside a nested model, as the engine resolves it.
  if (const format::Tap* tap = state_->engine.find_tap(name)) {
    const std::string_view full = state_->engine.file().string(tap->layer);
    for (const LayerInfo& layer : state_->cam_layers) {
      if (layer.name == full) return layer;
    }
  }
  throw Error("layer '" + name + "' is not in the model, was folded away, or is not a spatial map (" +
              std::to_string(state_->cam_layers.size()) + " layers can be explained: Model::cam_layers)");
}

}  // namespace effcam
