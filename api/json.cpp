// A Prediction as JSON: the one serialization every front end prints (effcam-predict --json, effcam-serve, the
// Python package's to_dict()).
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <string>

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

// A JSON object written field by field in nlohmann's order (sorted keys), with the same bytes as its dump: small
// values go through nlohmann, while the large float arrays (CAM maps, layer dumps) are written straight from their
// spans. As a document they cost 16 bytes a float plus the copies of a growing string (2 MB for a 150x150 map,
// after effcam-predict has read its peak RSS); written so, about the output alone.
class ObjectWriter {
 public:
  void value(const std::string& key, nlohmann::json value) {
    fields_[key] = [value = std::move(value)](std::string& out) { out += dump(value); };
  }
  void floats(const std::string& key, std::span<const float> values) {
    floats_ += values.size();
    fields_[key] = [values](std::string& out) {
      out += '[';
      for (size_t i = 0; i < values.size(); ++i) {
        if (i > 0) out += ',';
        out += dump(nlohmann::json(static_cast<double>(values[i])));  // as a document holds a float
      }
      out += ']';
    };
  }
  void object(const std::string& key, ObjectWriter object) {
    floats_ += object.floats_;
    fields_[key] = [object = std::move(object)](std::string& out) { object.write(out); };
  }
  void write(std::string& out) const {
    out += '{';
    bool first = true;
    for (const auto& [key, field] : fields_) {
      if (!first) out += ',';
      first = false;
      out += dump(nlohmann::json(key));
      out += ':';
      field(out);
    }
    out += '}';
  }
  // The floats written from spans, for reserving the output (a float takes at most 24 bytes with its comma).
  size_t floats() const { return floats_; }

 private:
  std::map<std::string, std::function<void(std::string&)>> fields_;
  size_t floats_ = 0;
};

}  // namespace

std::string to_json(const Prediction& p, const JsonOptions& options) {
  nlohmann::json top = nlohmann::json::array();
  for (const ClassScore& score : p.top_k) {
    top.push_back({{"index", score.index}, {"label", score.label}, {"probability", score.probability}});
  }
  ObjectWriter line;
  line.value("image", p.image);
  line.value("input", {{"height", p.input_height},
                       {"width", p.input_width},
                       {"exif_orientation", p.exif_orientation},
                       {"applied_orientation", p.applied_orientation},
                       {"jpeg_scale", p.jpeg_scale_denominator}});
  line.value("top_k", std::move(top));
  line.value("probabilities", p.probabilities);
  line.value("timing_ms", {{"decode", p.timing.decode_ms}, {"preprocess", p.timing.preprocess_ms},
                           {"forward", p.timing.forward_ms}, {"cam", p.timing.cam_ms},
                           {"recompute", p.timing.recompute_ms}, {"total", p.timing.total_ms}});
  line.value("dispatch", p.dispatch);
  line.value("peak_rss_bytes", p.memory.peak_rss_bytes);
  line.value("rss_bytes", p.memory.rss_bytes);
  line.value("arena_bytes", p.memory.arena_bytes);
  line.value("forward_arena_bytes", p.memory.forward_arena_bytes);
  line.value("arena_lower_bound_bytes", p.memory.arena_lower_bound_bytes);
  if (!p.logits.empty()) line.value("logits", p.logits);
  if (p.cam) {
    const CamResult& cam = *p.cam;
    ObjectWriter object;
    object.value("method", cam_method_name(cam.method));
    object.value("layer", cam.layer);
    object.value("class_index", cam.class_index);
    object.value("label", cam.label);
    object.value("score", cam.score);
    object.value("score_kind", cam_score_name(cam.score_kind));
    object.value("height", cam.height);
    object.value("width", cam.width);
    object.floats("values", cam.values);
    object.floats("raw", cam.raw);
    object.value("cam_empty", cam.empty);
    object.value("files", cam.files);
    object.value("plan", {{"arena_floor_bytes", p.memory.arena_floor_bytes},
                          {"checkpoints", p.memory.checkpoints},
                          {"recomputed_ops", p.memory.recomputed_ops},
                          {"recomputed_multiply_adds", p.memory.recomputed_multiply_adds},
                          {"rerun_multiply_adds", p.memory.rerun_multiply_adds},
                          {"pre_activations_kept_by_forward", p.memory.pre_activations_kept_by_forward},
                          {"pre_activations_kept_by_recomputation", p.memory.pre_activations_kept_by_recomputation},
                          {"forward_multiply_adds", p.memory.forward_multiply_adds}});
    line.object("cam", std::move(object));
  }
  if (!p.layers.empty()) {
    ObjectWriter layers;
    for (const LayerDump& layer : p.layers) {
      ObjectWriter dumped;
      dumped.value("shape", {layer.height, layer.width, layer.channels});
      dumped.floats("values", layer.values);
      layers.object(layer.name, std::move(dumped));
    }
    line.object("layers", std::move(layers));
  }
  if (!options.model.empty()) line.value("model", options.model);
  if (options.embed_images) {
    if (p.overlay) line.value("overlay", picture(*p.overlay));
    if (p.heatmap) line.value("heatmap", picture(*p.heatmap));
  }
  std::string out;
  out.reserve(4096 + 24 * line.floats());
  line.write(out);
  return out;
}

std::string error_json(const std::string& image, const std::string& message) {
  return dump({{"image", image}, {"error", message}});
}

}  // namespace effcam
