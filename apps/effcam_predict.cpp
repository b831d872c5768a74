// effcam-predict: classify images with a .effcam model and explain them with Grad-CAM. A client of the library API
// (include/effcam/effcam.hpp): arguments in, files and printing out.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "apps/cli.h"
#include "effcam/effcam.hpp"

namespace {

constexpr const char* kUsage =
    "usage: effcam-predict --model MODEL.effcam IMAGE... [--top-k K] [--json] [--threads N] [--stats]\n"
    "         [--dump-layer KERAS_LAYER]...        with --json: that layer's activations per image\n"
    "         [--cam gradcam|gradcam++|hirescam|xgradcam|layercam|eigencam] [--cam-layer KERAS_LAYER]\n"
    "         [--cam-score logit|prob] [--cam-class INDEX] [--overlay OUT.png|.jpg] [--overlay-size model|original]\n"
    "         [--heatmap OUT.png|.jpg]              {name} in OUT is the image's file name without extension\n"
    "         [--exif-orientation ignore|apply]     apply: turn the image upright first (ImageOps.exif_transpose)\n"
    "         [--decode exact|fast]                 fast: JPEG DCT scaling as PIL's Image.draft, then the resize\n"
    "         [--save-input OUT.png]                the 8-bit image the model receives ({name} as above)\n"
    "         [--max-image-mib MIB]                 refuse images whose decoding needs more (default 24 B/pixel\n"
    "                                               of the 100 MP cap + 4 MiB)\n"
    "         [--memory-budget BYTES]               the most the activation arena may take (e.g. 12MiB): a deep\n"
    "                                               CAM layer recomputes instead of keeping (default: twice\n"
    "                                               the forward pass's arena)\n"
    "       effcam-predict --model MODEL.effcam --list-layers\n"
    "environment: EFFCAM_DISPATCH=avx512|avx2|scalar forces a kernel path\n";

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
  effcam::CamMethod cam_method = effcam::CamMethod::GradCam;
  std::string cam_layer;  // empty: the model's default (last Conv2D / DepthwiseConv2D)
  effcam::CamScore cam_score = effcam::CamScore::Logit;
  std::optional<uint32_t> cam_class;
  std::string overlay, heatmap;
  bool overlay_original_size = false;
  bool apply_exif_orientation = false;
  bool fast_decode = false;
  std::string save_input;
  uint64_t max_image_bytes = 0;  // 0: the API's default
  uint64_t memory_budget_bytes = 0;  // 0: the API's default plan
  std::string dispatch;  // EFFCAM_DISPATCH
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

// PNG or JPEG by the output's extension.
effcam::ImageFormat picture_format(const std::string& path) {
  std::string extension = std::filesystem::path(path).extension().string();
  for (char& ch : extension) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (extension == ".png") return effcam::ImageFormat::Png;
  if (extension == ".jpg" || extension == ".jpeg") return effcam::ImageFormat::Jpeg;
  throw effcam::Error("cannot write image '" + path + "': the extension is not .png, .jpg or .jpeg");
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
      args.cam_method = effcam::parse_cam_method(value());
      if (args.cam_method == effcam::CamMethod::None) throw effcam::Error("--cam wants a method, not 'none'");
    } else if (arg == "--cam-layer") {
      args.cam = true;
      args.cam_layer = value();
    } else if (arg == "--cam-score") {
      args.cam = true;
      args.cam_score = effcam::parse_cam_score(value());
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
    } else if (arg == "--exif-orientation") {
      const std::string mode = value();
      if (mode != "ignore" && mode != "apply") throw effcam::Error("--exif-orientation must be ignore or apply");
      args.apply_exif_orientation = mode == "apply";
    } else if (arg == "--decode") {
      const std::string mode = value();
      if (mode != "exact" && mode != "fast") throw effcam::Error("--decode must be exact or fast");
      args.fast_decode = mode == "fast";
    } else if (arg == "--save-input") {
      args.save_input = value();
      if (picture_format(args.save_input) != effcam::ImageFormat::Png) {
        throw effcam::Error("--save-input writes PNG (lossless): '" + args.save_input + "' is not a .png");
      }
    } else if (arg == "--memory-budget") {
      args.memory_budget_bytes = effcam::parse_byte_size(value());
      if (args.memory_budget_bytes == 0) throw effcam::Error("--memory-budget must be more than 0 bytes");
    } else if (arg == "--max-image-mib") {
      args.max_image_bytes = uint64_t{effcam::cli::parse_count(arg, value(), 1, 1u << 20)} << 20;
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
  for (const std::string* path : {&args.overlay, &args.heatmap}) {
    if (!path->empty()) picture_format(*path);
  }
  if (const char* forced = std::getenv("EFFCAM_DISPATCH")) args.dispatch = forced;
  return args;
}

void list_layers(const effcam::Model& model) {
  for (const effcam::LayerInfo& layer : model.cam_layers()) {
    std::printf("%-40s %-24s %ux%ux%u\n", layer.name.c_str(), layer.class_name.c_str(), layer.height, layer.width,
                layer.channels);
  }
  if (model.default_cam_layer().empty()) {
    throw effcam::Error("the model has no Conv2D or DepthwiseConv2D layer to explain; name one with --cam-layer");
  }
  std::printf("default Grad-CAM layer: %s\n", model.default_cam_layer().c_str());
}

// Writes the prediction's pictures where the arguments say and records the paths in its CAM.
void write_pictures(effcam::Prediction& prediction, const Arguments& args, const std::string& image) {
  if (prediction.input_image) {
    effcam::save(*prediction.input_image, output_path(args.save_input, image, args.images.size()));
  }
  if (!prediction.cam) return;
  if (prediction.heatmap) {
    prediction.cam->files.push_back(output_path(args.heatmap, image, args.images.size()));
    effcam::save(*prediction.heatmap, prediction.cam->files.back());
  }
  if (prediction.overlay) {
    prediction.cam->files.push_back(output_path(args.overlay, image, args.images.size()));
    effcam::save(*prediction.overlay, prediction.cam->files.back());
  }
}

void print_human(const effcam::Prediction& p) {
  std::printf("%s\n", p.image.c_str());
  for (size_t k = 0; k < p.top_k.size(); ++k) {
    std::printf("  %2zu. %-28s %.4f\n", k + 1, p.top_k[k].label.c_str(), p.top_k[k].probability);
  }
  if (p.cam) {
    std::printf("  %s at %s for %s (%s %.4f)%s\n", effcam::cam_method_name(p.cam->method), p.cam->layer.c_str(),
                p.cam->label.c_str(), effcam::cam_score_name(p.cam->score_kind), p.cam->score,
                p.cam->empty ? ": empty map (no positive evidence)" : "");
    for (const std::string& file : p.cam->files) std::printf("  wrote %s\n", file.c_str());
  }
}

int run(const Arguments& args) {
  const effcam::Model model = effcam::Model::load(args.model);
  if (args.list_layers) {
    list_layers(model);
    return 0;
  }
  if (args.cam_class && *args.cam_class >= model.classes()) {
    throw effcam::Error("--cam-class " + std::to_string(*args.cam_class) + " is out of range: the model has " +
                        std::to_string(model.classes()) + " classes");
  }
  if (!args.dispatch.empty()) {
    try {
      effcam::set_dispatch(args.dispatch);
    } catch (const effcam::Error& e) {
      throw effcam::Error("EFFCAM_DISPATCH: " + std::string(e.what()));
    }
  }
  effcam::PredictorOptions predictor_options;
  predictor_options.threads = args.threads;
  predictor_options.dump_layers = args.dump_layers;
  predictor_options.explain = args.cam;
  predictor_options.max_image_bytes = args.max_image_bytes;
  predictor_options.memory_budget_bytes = args.memory_budget_bytes;
  if (!args.cam_layer.empty()) {
    try {
      model.cam_layer(args.cam_layer);
    } catch (const effcam::Error& e) {
      throw effcam::Error(std::string(e.what()) + "; --list-layers prints them", e.code());
    }
    predictor_options.cam_layers = {args.cam_layer};
  }
  effcam::Predictor predictor(model, predictor_options);

  effcam::PredictOptions options;
  options.top_k = args.top_k;
  options.apply_exif_orientation = args.apply_exif_orientation;
  options.fast_jpeg_decode = args.fast_decode;
  if (!args.save_input.empty()) options.input_image = effcam::ImageFormat::Png;
  if (args.cam) {
    options.cam = args.cam_method;
    options.cam_score = args.cam_score;
    options.cam_class = args.cam_class;
    if (!args.overlay.empty()) options.pictures.overlay = picture_format(args.overlay);
    if (!args.heatmap.empty()) options.pictures.heatmap = picture_format(args.heatmap);
    options.pictures.render_size = args.overlay_original_size ? effcam::RenderSize::Original : effcam::RenderSize::Model;
  }
  bool any_failed = false;
  std::optional<effcam::Prediction> last_explained;  // its plan figures for --stats
  for (const std::string& path : args.images) {
    try {
      effcam::Prediction prediction = predictor.predict(effcam::ImageSource::file(path), options);
      write_pictures(prediction, args, path);
      if (prediction.cam) last_explained = prediction;
      if (args.json) {
        std::printf("%s\n", effcam::to_json(prediction).c_str());
      } else {
        print_human(prediction);
      }
      std::fflush(stdout);
    } catch (const effcam::Error& e) {
      any_failed = true;
      std::fprintf(stderr, "effcam-predict: %s\n", e.what());
      if (args.json) std::printf("%s\n", effcam::error_json(path, e.what()).c_str());
    }
  }

  if (args.stats) {
    const effcam::ProcessMemory memory = effcam::process_memory();
    std::fprintf(stderr,
                 "stats: input %ux%ux%u, %u ops, %u thread(s), %s kernels; forward arena %llu bytes; "
                 "arena %llu bytes%s, liveness lower bound %llu bytes (%.3fx); weights file %llu bytes; "
                 "image bytes %llu (budget %llu); peak RSS %llu bytes\n",
                 model.input_height(), model.input_width(), model.input_channels(), model.ops(), args.threads,
                 predictor.dispatch().c_str(), static_cast<unsigned long long>(predictor.forward_arena_bytes()),
                 static_cast<unsigned long long>(predictor.arena_bytes()), args.cam ? " with the CAM" : "",
                 static_cast<unsigned long long>(predictor.arena_lower_bound_bytes()),
                 static_cast<double>(predictor.arena_bytes()) / static_cast<double>(predictor.arena_lower_bound_bytes()),
                 static_cast<unsigned long long>(model.file_bytes()),
                 static_cast<unsigned long long>(predictor.image_bytes()),
                 static_cast<unsigned long long>(predictor.max_image_bytes()),
                 static_cast<unsigned long long>(memory.peak_rss_bytes));
    if (last_explained) {
      const effcam::MemoryFigures& m = last_explained->memory;
      const effcam::Timings& t = last_explained->timing;
      std::fprintf(stderr,
                   "stats: CAM plan at %s: arena %llu bytes (%.2fx the forward's), floor %llu bytes, lower bound %llu "
                   "bytes; %u checkpoints, %u ops recomputed (%.1f%% of the forward's multiply-adds; reruns for "
                   "pre-activations %.1f%%; pre-activations kept by forward steps %u, by recomputations %u), recomputing "
                   "%.1f ms of the CAM's %.1f ms\n",
                   last_explained->cam->layer.c_str(), static_cast<unsigned long long>(m.arena_bytes),
                   static_cast<double>(m.arena_bytes) / static_cast<double>(m.forward_arena_bytes),
                   static_cast<unsigned long long>(m.arena_floor_bytes),
                   static_cast<unsigned long long>(m.arena_lower_bound_bytes), m.checkpoints, m.recomputed_ops,
                   100.0 * static_cast<double>(m.recomputed_multiply_adds) / static_cast<double>(m.forward_multiply_adds),
                   100.0 * static_cast<double>(m.rerun_multiply_adds) / static_cast<double>(m.forward_multiply_adds),
                   m.pre_activations_kept_by_forward, m.pre_activations_kept_by_recomputation, t.recompute_ms, t.cam_ms);
    }
  }
  return any_failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  return effcam::cli::main_with("effcam-predict", kUsage, argc, argv, parse_arguments, run);
}
