// effcam-predict: classify images with a .effcam model.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/image.h"
#include "engine/model.h"
#include "engine/process_memory.h"
#include "engine/session.h"

namespace {

constexpr const char* kUsage =
    "usage: effcam-predict --model MODEL.effcam IMAGE... [--top-k K] [--json] [--threads N] [--stats]\n"
    "                      [--dump-layer KERAS_LAYER]...   (with --json: that layer's activations per image)\n";

struct Arguments {
  std::string model;
  std::vector<std::string> images;
  uint32_t top_k = 5;
  uint32_t threads = 1;
  bool json = false;
  bool stats = false;
  std::vector<std::string> dump_layers;
};

uint32_t parse_count(const std::string& option, const std::string& text, uint32_t max) {
  uint32_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value == 0 || value > max) {
    throw effcam::Error(option + " wants a whole number from 1 to " + std::to_string(max) + ", got '" + text + "'");
  }
  return value;
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
      args.top_k = parse_count(arg, value(), 1000000);
    } else if (arg == "--threads") {
      args.threads = parse_count(arg, value(), 256);
    } else if (arg == "--json") {
      args.json = true;
    } else if (arg == "--stats") {
      args.stats = true;
    } else if (arg == "--dump-layer") {
      args.dump_layers.push_back(value());
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
  if (args.images.empty()) throw effcam::Error("no images given");
  if (!args.dump_layers.empty() && !args.json) throw effcam::Error("--dump-layer needs --json");
  return args;
}

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  Arguments args;
  try {
    args = parse_arguments(argc, argv);
  } catch (const effcam::Error& e) {
    std::fprintf(stderr, "effcam-predict: %s\n%s", e.what(), kUsage);
    return 2;
  }

  try {
    const effcam::Model model = effcam::Model::load(args.model);
    effcam::SessionOptions options;
    options.threads = args.threads;
    options.probes = args.dump_layers;
    effcam::Session session(model, options);
    const effcam::MemoryPlan& plan = session.plan();
    const uint32_t classes = model.classes();
    const uint32_t top_k = std::min(args.top_k, classes);
    bool any_failed = false;

    for (const std::string& path : args.images) {
      try {
        const Clock::time_point start = Clock::now();
        const effcam::Image image = effcam::load_image(path, model.input_channels());
        const double decode_ms = ms_since(start);
        const Clock::time_point preprocess_start = Clock::now();
        session.set_input(image);
        const double preprocess_ms = ms_since(preprocess_start);
        const Clock::time_point forward_start = Clock::now();
        session.run();
        const double forward_ms = ms_since(forward_start);
        const double total_ms = ms_since(start);

        const std::span<const float> probabilities = session.probabilities();
        std::vector<uint32_t> order(classes);
        std::iota(order.begin(), order.end(), 0u);
        std::partial_sort(order.begin(), order.begin() + top_k, order.end(),
                          [&](uint32_t a, uint32_t b) { return probabilities[a] > probabilities[b]; });

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
                             {"total", total_ms}}},
              {"peak_rss_bytes", effcam::peak_rss_bytes()},
              {"rss_bytes", effcam::current_rss_bytes()},
              {"arena_bytes", plan.arena_bytes},
              {"arena_lower_bound_bytes", plan.lower_bound_bytes}};
          if (model.has_logits()) {
            line["logits"] = std::vector<float>(session.logits().begin(), session.logits().end());
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
                   "stats: input %ux%ux%u, %zu ops, %u thread(s); arena %llu bytes, liveness lower bound %llu bytes "
                   "(%.3fx); weights file %llu bytes; peak RSS %llu bytes\n",
                   model.input_height(), model.input_width(), model.input_channels(), model.file().ops().size(),
                   args.threads, static_cast<unsigned long long>(plan.arena_bytes),
                   static_cast<unsigned long long>(plan.lower_bound_bytes),
                   static_cast<double>(plan.arena_bytes) / static_cast<double>(plan.lower_bound_bytes),
                   static_cast<unsigned long long>(model.file().file_size()),
                   static_cast<unsigned long long>(effcam::peak_rss_bytes()));
    }
    return any_failed ? 1 : 0;
  } catch (const effcam::Error& e) {
    std::fprintf(stderr, "effcam-predict: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "effcam-predict: out of memory\n");
    return 1;
  }
}
