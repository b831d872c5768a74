// What the public handles (include/effcam/effcam.hpp) hold: a loaded engine model with the API's view of it, and a
// predictor's engine session. Internal to api/.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "effcam/effcam.hpp"
#include "engine/model.h"
#include "engine/session.h"
#include "imaging/cam.h"

namespace effcam::detail {

// The public CAM method as imaging computes it; throws effcam::Error for CamMethod::None.
imaging::CamMethod imaging_method(CamMethod method);

struct ModelState {
  // A model loaded from a buffer views this copy (8-byte aligned, as the loader requires); empty for an mmap'd file.
  std::unique_ptr<uint64_t[]> owned_bytes;
  engine::Model engine;
  std::string path;
  std::vector<std::string> labels;
  bool has_labels = false;
  std::vector<LayerInfo> cam_layers;
  std::string default_cam_layer;

  ModelState(std::unique_ptr<uint64_t[]> bytes, engine::Model model, std::string name);
};

struct PredictorState {
  Model model;
  std::shared_ptr<const ModelState> state;  // = model's
  PredictorOptions options;
  std::vector<std::string> cam_layers;       // resolved names; empty without explanations
  std::unique_ptr<engine::Session> session;  // planned for session_layer
  std::string session_layer;
  uint64_t arena_bytes = 0, forward_arena_bytes = 0, lower_bound_bytes = 0;
  std::string dispatch;

  PredictorState(Model m, std::shared_ptr<const ModelState> s, const PredictorOptions& o)
      : model(std::move(m)), state(std::move(s)), options(o) {}
  // The session planned for `layer` ("" = forward only): the current one, or a new one replacing it (the old arena
  // is freed first, so memory never holds two).
  engine::Session& session_for(const std::string& layer);
};

}  // namespace effcam::detail
