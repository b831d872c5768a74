// A Prediction as JSON: the one serialization every front end prints (effcam-predict --json, effcam-serve, the
// Python package's to_dict()).
#include <nlohmann/json.hpp>

#include "effcam/effcam.hpp"

namespace effcam {
namespace {

std::string dump(const nlohmann::json& object) {
  return object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string base64(const std::vector<uint8_t>& bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const uint32_t chunk = uint32_t{bytes[i]} << 16 | (i + 1 < bytes.size() ? uint32_t{bytes[i + 1]} << 8 : 0) |
                           (i + 2 < bytes.size() ? uint32_t{bytes[i + 2]} : 0);
    out += kAlphabet[chunk >> 18 & 63];
    out += kAlphabet[chunk >> 12 & 63];
    out += i + 1 < bytes.size() ? kAlphabet[chunk >> 6 & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[chunk & 63] : '=';
  }
  return out;
}

nlohmann::json picture(const EncodedImage& image) {
  return {{"mime", image.mime()}, {"width", image.width}, {"height", image.height}, {"base64", base64(image.bytes)}};
}

}  // namespace

std::string to_json(const Prediction& p, const JsonOptions& options) {
  nlohmann::json top = nlohmann::json::array();
  for (const ClassScore& score : p.top_k) {
    top.push_back({{"index", score.index}, {"label", score.label}, {"probability", score.probability}});
  }
  nlohmann::json line = {
      {"image", p.image},
      {"input",
       {{"height", p.input_height},
        {"width", p.input_width},
        {"exif_orientation", p.exif_orientation},
        {"applied_orientation", p.applied_orientation},
        {"jpeg_scale", p.jpeg_scale_denominator}}},
      {"top_k", top},
      {"probabilities", p.probabilities},
      {"timing_ms", {{"decode", p.timing.decode_ms}, {"preprocess", p.timing.preprocess_ms},
                     {"forward", p.timing.forward_ms}, {"cam", p.timing.cam_ms}, {"recompute", p.timing.recompute_ms},
                     {"total", p.timing.total_ms}}},
      {"dispatch", p.dispatch},
      {"peak_rss_bytes", p.memory.peak_rss_bytes},
      {"rss_bytes", p.memory.rss_bytes},
      {"arena_bytes", p.memory.arena_bytes},
      {"forward_arena_bytes", p.memory.forward_arena_bytes},
      {"arena_lower_bound_bytes", p.memory.arena_lower_bound_bytes}};
  if (!p.logits.empty()) line["logits"] = p.logits;
  if (p.cam) {
    const CamResult& cam = *p.cam;
    line["cam"] = {{"method", cam_method_name(cam.method)},
                   {"layer", cam.layer},
                   {"class_index", cam.class_index},
                   {"label", cam.label},
                   {"score", cam.score},
                   {"score_kind", cam_score_name(cam.score_kind)},
                   {"height", cam.height},
                   {"width", cam.width},
                   {"values", cam.values},
                   {"raw", cam.raw},
                   {"cam_empty", cam.empty},
                   {"files", cam.files},
                   {"plan",
                    {{"arena_floor_bytes", p.memory.arena_floor_bytes},
                     {"checkpoints", p.memory.checkpoints},
                     {"recomputed_ops", p.memory.recomputed_ops},
                     {"recomputed_multiply_adds", p.memory.recomputed_multiply_adds},
                     {"rerun_multiply_adds", p.memory.rerun_multiply_adds},
                     {"forward_multiply_adds", p.memory.forward_multiply_adds}}}};
  }
  for (const LayerDump& layer : p.layers) {
    line["layers"][layer.name] = {{"shape", {layer.height, layer.width, layer.channels}}, {"values", layer.values}};
  }
  if (!options.model.empty()) line["model"] = options.model;
  if (options.embed_images) {
    if (p.overlay) line["overlay"] = picture(*p.overlay);
    if (p.heatmap) line["heatmap"] = picture(*p.heatmap);
  }
  return dump(line);
}

std::string error_json(const std::string& image, const std::string& message) {
  return dump({{"image", image}, {"error", message}});
}

}  // namespace effcam
