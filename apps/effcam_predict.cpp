// effcam-predict: classify images with a .effcam model.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "imaging/cam.h"
#include "apps/cli.h"
#include "effcam/error.hpp"
#include "imaging/image.h"
#include "engine/model.h"
#include "imaging/overlay.h"
#include "base/process_memory.h"
#include "imaging/resize.h"
#include "engine/session.h"
#include "ops/kernels.h"

namespace {

constexpr const char* kUsage =
    "usage: effcam-predict --model MODEL.effcam IMAGE... [--top-k K] [--json] [--threads N] [--stats]\n"
    "         [--dump-layer KERAS_LAYER]...        with --json: that layer's activations per image\n"
    "         [--cam gradcam|gradcam++|hirescam|xgradcam|layercam|eigencam] [--cam-layer KERAS_LAYER]\n"
    "         [--cam-score logit|prob] [--cam-class INDEX] [--overlay OUT.png|.jpg] [--overlay-size model|original]\n"
    "         [--heatmap OUT.png|.jpg]              {name} in OUT is the image's file name without extension\n"
    "       effcam-predict --model MODEL.effcam --list-layers\n";

struct Arguments {
  std::string model;
  std::vector<std::string> images;
  uint32_t top_k = 5;
  uint32_t threads = 1;
  bool json = false;
  bool stats = false;
  std::vector<std::string> dump_layers;
  bool list_layers = false;
  // Grad-CAM: on when any of its options is given.
  bool cam = false;
  effcam::imaging::CamMethod cam_method = effcam::imaging::CamMethod::GradCam;
  std::string cam_layer;  // empty: the model's default (last Conv2D / DepthwiseConv2D)
  effcam::engine::CamScore cam_score = effcam::engine::CamScore::Logit;
  std::optional<uint32_t> cam_class;
  std::string overlay, heatmap;
  bool overlay_original_size = false;
};

// The output path for one image: {name} becomes the image's file stem; with several images and no {name},
// the stem is added before the extension so outputs do not overwrite each other.
std::string output_path(const std::string& pattern, const std::string& image, size_t image_count) {
  const std::string stem = std::filesystem::path(image).stem().string();
  std::string path = pattern;
  if (const size_t at = path.find("{name}"); at != std::string::npos) return path.replace(at, 6, stem);
  if (image_count == 1) return path;
  const std::filesystem::path p(pattern);
  return (p.parent_path() / (p.stem().string() + "_" + stem + p.extension().string())).string();
}

Arguments parse_arguments(int argc, char** argv) {
  Arguments args;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw effcam::Error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--model") {
      args.model = value();
    } else if (arg == "--top-k") {
      args.top_k = effcam::cli::parse_count(arg, value(), 1, 1000000);
    } else if (arg == "--threads") {
      args.threads = effcam::cli::parse_count(arg, value(), 1, 256);
    } else if (arg == "--json") {
      args.json = true;
    } else if (arg == "--stats") {
      args.stats = true;
    } else if (arg == "--dump-layer") {
      args.dump_layers.push_back(value());
    } else if (arg == "--list-layers") {
      args.list_layers = true;
    } else if (arg == "--cam") {
      args.cam = true;
      args.cam_method = effcam::imaging::parse_cam_method(value());
    } else if (arg == "--cam-layer") {
      args.cam = true;
      args.cam_layer = value();
    } else if (arg == "--cam-score") {
      args.cam = true;
      const std::string score = value();
      if (score != "logit" && score != "prob") throw effcam::Error("--cam-score must be logit or prob, got '" + score + "'");
      args.cam_score = score == "logit" ? effcam::engine::CamScore::Logit : effcam::engine::CamScore::Prob;
    } else if (arg == "--cam-class") {
      args.cam = true;
      args.cam_class = effcam::cli::parse_count(arg, value(), 0, (1u << 30) - 1);
    } else if (arg == "--overlay") {
      args.cam = true;
      args.overlay = value();
    } else if (arg == "--heatmap") {
      args.cam = true;
      args.heatmap = value();
    } else if (arg == "--overlay-size") {
      const std::string size = value();
      if (size != "model" && size != "original") throw effcam::Error("--overlay-size must be model or original");
      args.overlay_original_size = size == "original";
    } else if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (!arg.empty() && arg[0] == '-') {
      throw effcam::Error("unknown option " + arg);
    } else {
      args.images.push_back(arg);
    }
  }
  if (args.model.empty()) throw effcam::Error("--model is required");
  if (args.list_layers) return args;
  if (args.images.empty()) throw effcam::Error("no images given");
  if (!args.dump_layers.empty() && !args.json) throw effcam::Error("--dump-layer needs --json");
  return args;
}

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

}  // namespace

namespace {

int run(const Arguments& args) {
  const effcam::engine::Model model = effcam::engine::Model::load(args.model);
  if (args.list_layers) {
    for (const effcam::engine::Model::TargetableLayer& layer : model.targetable_layers()) {
      std::printf("%-40s %-24s %ux%ux%u\n", layer.name.c_str(), layer.class_name.c_str(), layer.shape.h,
                  layer.shape.w, layer.shape.c);
    }
    std::printf("default Grad-CAM layer: %s\n", model.default_cam_layer().c_str());
    return 0;
  }
  effcam::engine::SessionOptions options;
  options.threads = args.threads;
  options.probes = args.dump_layers;
  if (args.cam) options.cam_layer = args.cam_layer.empty() ? model.default_cam_layer() : args.cam_layer;
  if (args.cam_class && *args.cam_class >= model.classes()) {
    throw effcam::Error("--cam-class " + std::to_string(*args.cam_class) + " is out of range: the model has " +
                        std::to_string(model.classes()) + " classes");
  }
  effcam::engine::Session session(model, options);
  const effcam::engine::MemoryPlan& plan = session.plan();
  const uint32_t classes = model.classes();
  const uint32_t top_k = std::min(args.top_k, classes);
  bool any_failed = false;

  for (const std::string& path : args.images) {
    try {
      const Clock::time_point start = Clock::now();
      const effcam::imaging::Image image = effcam::imaging::load_image(path, model.input_channels());
      const double decode_ms = ms_since(start);
      const Clock::time_point preprocess_start = Clock::now();
      const bool model_size = image.width == model.input_width() && image.height == model.input_height();
      const effcam::imaging::Image resized =
          model_size ? effcam::imaging::Image{} : effcam::imaging::resize_lanczos(image, model.input_width(), model.input_height());
      const effcam::imaging::Image& model_image = model_size ? image : resized;
      session.set_input(model_image.pixels);
      const double preprocess_ms = ms_since(preprocess_start);
      const Clock::time_point forward_start = Clock::now();
      session.run();
      const double forward_ms = ms_since(forward_start);

      const std::span<const float> probabilities = session.probabilities();
      std::vector<uint32_t> order(classes);
      std::iota(order.begin(), order.end(), 0u);
      std::partial_sort(order.begin(), order.begin() + top_k, order.end(),
                        [&](uint32_t a, uint32_t b) { return probabilities[a] > probabilities[b]; });

      // Grad-CAM: the backward pass to the target layer, the map, and the images.
      std::optional<effcam::engine::Explanation> explanation;
      effcam::imaging::CamMap cam;
      double cam_ms = 0;
      std::vector<std::string> written;
      if (args.cam) {
        const Clock::time_point cam_start = Clock::now();
        const uint32_t class_index = args.cam_class.value_or(order[0]);
        explanation = session.explain(class_index, args.cam_score);
        cam = effcam::imaging::compute_cam(args.cam_method, explanation->activations, explanation->gradients,
                                  explanation->shape.h, explanation->shape.w, explanation->shape.c);
        cam_ms = ms_since(cam_start);
        const effcam::imaging::Image& base = args.overlay_original_size ? image : model_image;
        if (!args.overlay.empty() || !args.heatmap.empty()) {
          const effcam::imaging::Image heatmap = effcam::imaging::render_heatmap(cam, base.width, base.height);
          if (!args.heatmap.empty()) {
            written.push_back(output_path(args.heatmap, path, args.images.size()));
            effcam::imaging::write_image(heatmap, written.back());
          }
          if (!args.overlay.empty()) {
            written.push_back(output_path(args.overlay, path, args.images.size()));
            effcam::imaging::write_image(effcam::imaging::blend_overlay(base, heatmap), written.back());
          }
        }
      }
      const double total_ms = ms_since(start);

      if (args.json) {
        nlohmann::json top = nlohmann::json::array();
        for (uint32_t k = 0; k < top_k; ++k) {
          top.push_back({{"index", order[k]}, {"label", model.label(order[k])}, {"probability", probabilities[order[k]]}});
        }
        nlohmann::json line = {
            {"image", path},
            {"input", {{"height", model.input_height()}, {"width", model.input_width()}}},
            {"top_k", top},
            {"probabilities", std::vector<float>(probabilities.begin(), probabilities.end())},
            {"timing_ms", {{"decode", decode_ms}, {"preprocess", preprocess_ms}, {"forward", forward_ms},
                           {"cam", cam_ms}, {"total", total_ms}}},
            {"dispatch", std::string(effcam::ops::dispatch_name())},
            {"peak_rss_bytes", effcam::peak_rss_bytes()},
            {"rss_bytes", effcam::current_rss_bytes()},
            {"arena_bytes", plan.arena_bytes},
            {"arena_lower_bound_bytes", plan.lower_bound_bytes}};
        if (model.has_logits()) {
          line["logits"] = std::vector<float>(session.logits().begin(), session.logits().end());
        }
        if (explanation) {
          line["cam"] = {{"method", effcam::imaging::cam_method_name(args.cam_method)},
                         {"layer", explanation->layer},
                         {"class_index", explanation->class_index},
                         {"label", model.label(explanation->class_index)},
                         {"score", explanation->score},
                         {"score_kind", args.cam_score == effcam::engine::CamScore::Logit ? "logit" : "prob"},
                         {"height", cam.height},
                         {"width", cam.width},
                         {"values", cam.normalized},
                         {"raw", cam.raw},
                         {"cam_empty", cam.empty},
                         {"files", written}};
        }
        for (const std::string& layer : args.dump_layers) {
          const effcam::Shape shape = session.probe_shape(layer);
          const std::span<const float> values = session.probe(layer);
          line["layers"][layer] = {{"shape", {shape.h, shape.w, shape.c}},
                                   {"values", std::vector<float>(values.begin(), values.end())}};
        }
        std::printf("%s\n", line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      } else {
        std::printf("%s\n", path.c_str());
        for (uint32_t k = 0; k < top_k; ++k) {
          std::printf("  %2u. %-28s %.4f\n", k + 1, model.label(order[k]).c_str(), probabilities[order[k]]);
        }
        if (explanation) {
          std::printf("  %s at %s for %s (%s %.4f)%s\n", std::string(effcam::imaging::cam_method_name(args.cam_method)).c_str(),
                      explanation->layer.c_str(), model.label(explanation->class_index).c_str(),
                      args.cam_score == effcam::engine::CamScore::Logit ? "logit" : "prob", explanation->score,
                      cam.empty ? ": empty map (no positive evidence)" : "");
          for (const std::string& file : written) std::printf("  wrote %s\n", file.c_str());
        }
      }
      std::fflush(stdout);
    } catch (const effcam::Error& e) {
      any_failed = true;
      std::fprintf(stderr, "effcam-predict: %s\n", e.what());
      if (args.json) {
        std::printf("%s\n", nlohmann::json({{"image", path}, {"error", e.what()}})
                                .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                                .c_str());
      }
    }
  }

  if (args.stats) {
    std::fprintf(stderr,
                 "stats: input %ux%ux%u, %zu ops, %u thread(s), %s kernels; forward arena %llu bytes; "
                 "arena %llu bytes%s, liveness lower bound %llu bytes (%.3fx); weights file %llu bytes; "
                 "peak RSS %llu bytes\n",
                 model.input_height(), model.input_width(), model.input_channels(), model.file().ops().size(),
                 args.threads, std::string(effcam::ops::dispatch_name()).c_str(),
                 static_cast<unsigned long long>(session.forward_arena_bytes()),
                 static_cast<unsigned long long>(plan.arena_bytes), args.cam ? " with the CAM" : "",
                 static_cast<unsigned long long>(plan.lower_bound_bytes),
                 static_cast<double>(plan.arena_bytes) / static_cast<double>(plan.lower_bound_bytes),
                 static_cast<unsigned long long>(model.file().file_size()),
                 static_cast<unsigned long long>(effcam::peak_rss_bytes()));
  }
  return any_failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  return effcam::cli::main_with("effcam-predict", kUsage, argc, argv, parse_arguments, run);
}
