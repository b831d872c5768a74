// effcam-bench: forward-pass latency, throughput, peak memory and achieved FLOP rate of a .effcam model.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/cli.h"
#include "bench/fma_peak.h"
#include "bench/profile.h"
#include "bench/stats.h"
#include "imaging/cam.h"
#include "effcam/error.hpp"
#include "engine/model.h"
#include "base/process_memory.h"
#include "engine/session.h"
#include "ops/kernels.h"

namespace {

using Json = nlohmann::ordered_json;  // keeps the fields in the documented order

constexpr const char* kDefaultModel = "out/food101.effcam";

constexpr const char* kUsage =
    "usage: effcam-bench [--model M.effcam] [--threads N] [--iters N] [--warmup N] [--json] [--profile]\n"
    "                    [--cam] [--cam-layer KERAS_LAYER] [--memory-budget BYTES]\n"
    "Times Session::run (the forward pass, preprocessing excluded) on a fixed pseudo-random image and prints\n"
    "min / median / p90 latency, images per second, peak RSS (VmHWM), achieved GFLOP/s (2 x the graph's\n"
    "multiply-adds / median) and its share of the measured fp32 FMA peak of N threads (effcam-fma-peak).\n"
    "  --model M    the model (default out/food101.effcam: scripts/main.sh writes it from the bundled\n"
    "               models/food101-effv2b0 Keras model, which must be converted before it can run)\n"
    "  --threads N  worker threads (default 1)\n"
    "  --iters N    timed forward passes, 1 to 10000 (default 20)\n"
    "  --warmup N   untimed forward passes before them, up to 10000 (default 3)\n"
    "  --json       one JSON object instead of text\n"
    "  --profile    per-op times (median over the iterations) sorted by time, and totals per op kind;\n"
    "               its buffer of iters x ops times counts in the peak RSS\n"
    "  --cam        time the forward pass plus Grad-CAM (the backward pass for the top-1 class's logit and the\n"
    "               map) at the default layer (the last Conv2D / DepthwiseConv2D: top_conv for EfficientNetV2);\n"
    "               (GFLOP/s still counts the forward's multiply-adds; --profile times the forward's ops, then\n"
    "               the explanation's steps: recomputations and backward steps per op kind)\n"
    "  --cam-layer L\n"
    "               Grad-CAM at Keras layer L instead (implies --cam; effcam-predict --list-layers lists them)\n"
    "  --memory-budget BYTES\n"
    "               the arena's budget in bytes, as effcam-predict's (1073741824 keeps every activation)\n";

struct Arguments {
  std::string model = kDefaultModel;
  uint32_t threads = 1;
  uint32_t iters = 20;
  uint32_t warmup = 3;
  bool json = false;
  bool profile = false;
  bool cam = false;
  std::string cam_layer;  // empty: the model's default
  uint64_t memory_budget_bytes = 0;  // 0: the default plan
};

Arguments parse_arguments(int argc, char** argv) {
  using effcam::cli::parse_count;
  Arguments args;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw effcam::Error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--model") {
      args.model = value();
    } else if (arg == "--threads") {
      args.threads = parse_count(arg, value(), 1, 256);
    } else if (arg == "--iters") {
      args.iters = parse_count(arg, value(), 1, 10000);
    } else if (arg == "--warmup") {
      args.warmup = parse_count(arg, value(), 0, 10000);
    } else if (arg == "--json") {
      args.json = true;
    } else if (arg == "--profile") {
      args.profile = true;
    } else if (arg == "--cam") {
      args.cam = true;
    } else if (arg == "--cam-layer") {
      args.cam = true;
      args.cam_layer = value();
    } else if (arg == "--memory-budget") {
      const std::string text = value();
      const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), args.memory_budget_bytes);
      if (error != std::errc() || end != text.data() + text.size() || args.memory_budget_bytes == 0) {
        throw effcam::Error("--memory-budget wants a whole number of bytes, got '" + text + "'");
      }
    } else if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else {
      throw effcam::Error("unknown argument " + arg);
    }
  }
  return args;
}

// Deterministic 0..255 pixels (a linear congruential generator): every run sees the same input.
std::vector<float> test_pixels(size_t count) {
  std::vector<float> pixels(count);
  uint32_t state = 12345;
  for (float& p : pixels) {
    state = state * 1664525u + 1013904223u;
    p = static_cast<float>(state >> 24);
  }
  return pixels;
}

Json profile_json(const effcam::bench::Profile& profile) {
  using effcam::bench::gflops;
  using effcam::bench::op_kind_name;
  Json ops = Json::array();
  for (const auto& op : profile.ops) {
    ops.push_back({{"index", op.index}, {"kind", op_kind_name(op.kind)}, {"name", op.name},
                   {"output", {op.output.h, op.output.w, op.output.c}}, {"ms", op.ms},
                   {"multiply_adds", op.multiply_adds}, {"gflops", gflops(op.multiply_adds, op.ms)},
                   {"share", op.share}});
  }
  Json kinds = Json::array();
  for (const auto& kind : profile.kinds) {
    kinds.push_back({{"kind", op_kind_name(kind.kind)}, {"count", kind.count}, {"ms", kind.ms},
                     {"multiply_adds", kind.multiply_adds}, {"gflops", gflops(kind.multiply_adds, kind.ms)},
                     {"share", kind.share}});
  }
  return {{"ops", ops}, {"kinds", kinds}, {"total_ms", profile.total_ms}};
}

// GFLOP/s for the text table; "-" for ops without multiply-adds.
std::string rate_text(uint64_t multiply_adds, double ms) {
  if (multiply_adds == 0) return "-";
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", effcam::bench::gflops(multiply_adds, ms));
  return text;
}

Json cam_profile_json(const effcam::bench::CamProfile& profile) {
  Json groups = Json::array();
  for (const auto& group : profile.groups) {
    groups.push_back({{"step", group.backward ? "backward" : "recompute"}, {"kind", group.kind},
                      {"count", group.count}, {"ms", group.ms}, {"share", group.share}});
  }
  return {{"groups", groups}, {"total_ms", profile.total_ms}};
}

void print_cam_profile(const effcam::bench::CamProfile& profile) {
  std::printf("\nper explanation step kind (sum of the steps' median ms over the iterations), slowest first:\n");
  std::printf("%-10s  %-13s  %5s  %9s  %6s\n", "step", "kind", "steps", "ms", "share");
  for (const auto& group : profile.groups) {
    std::printf("%-10s  %-13s  %5u  %9.4f  %5.1f%%\n", group.backward ? "backward" : "recompute", group.kind.c_str(),
                group.count, group.ms, 100 * group.share);
  }
  std::printf("%-10s  %-13s  %5s  %9.4f\n", "total", "", "", profile.total_ms);
}

void print_profile(const effcam::bench::Profile& profile) {
  using effcam::bench::op_kind_name;
  std::printf("\nper op (median ms over the iterations), slowest first:\n");
  std::printf("%5s  %-13s  %-44s  %-13s  %9s  %8s  %6s\n", "index", "kind", "Keras name", "output", "ms", "GFLOP/s",
              "share");
  for (const auto& op : profile.ops) {
    std::printf("%5u  %-13s  %-44s  %-13s  %9.4f  %8s  %5.1f%%\n", op.index, op_kind_name(op.kind), op.name.c_str(),
                shape_text(op.output).c_str(), op.ms, rate_text(op.multiply_adds, op.ms).c_str(), 100 * op.share);
  }
  std::printf("\nper op kind:\n%-13s  %5s  %9s  %8s  %6s\n", "kind", "ops", "ms", "GFLOP/s", "share");
  for (const auto& kind : profile.kinds) {
    std::printf("%-13s  %5u  %9.4f  %8s  %5.1f%%\n", op_kind_name(kind.kind), kind.count, kind.ms,
                rate_text(kind.multiply_adds, kind.ms).c_str(), 100 * kind.share);
  }
  std::printf("%-13s  %5zu  %9.4f\n", "total", profile.ops.size(), profile.total_ms);
}

int run(const Arguments& args) {
  // The kernel path is the library's explicit option; the tool takes it from the environment like effcam-predict.
  if (const char* forced = std::getenv("EFFCAM_DISPATCH"); forced && *forced) effcam::ops::set_dispatch(forced);
  if (args.model == kDefaultModel && !std::filesystem::exists(args.model)) {
    throw effcam::Error(std::string(kDefaultModel) +
                        " does not exist: run scripts/main.sh (it converts the bundled model) or pass --model");
  }
  const effcam::engine::Model model = effcam::engine::Model::load(args.model);
  effcam::engine::SessionOptions options;
  options.threads = args.threads;
  if (args.cam) options.cam_layer = args.cam_layer.empty() ? model.default_cam_layer() : args.cam_layer;
  options.memory_budget_bytes = args.memory_budget_bytes;
  effcam::engine::Session session(model, options);
  // The plan may reuse the input tensor's memory, so every run gets its input again (outside the timing).
  const std::vector<float> pixels =
      test_pixels(size_t{model.input_height()} * model.input_width() * model.input_channels());
  const uint64_t multiply_adds = effcam::engine::graph_multiply_adds(model.file().ops(), model.graph());
  const size_t op_count = model.file().ops().size();

  // One timed unit: the forward pass and, with --cam, Grad-CAM for the top-1 class's logit as effcam-predict does
  // it (backward pass and map; no image output).
  auto iteration = [&](std::span<double> profile_op_ms, std::span<double> profile_step_ms) {
    if (profile_op_ms.empty()) {
      session.run();
    } else {
      session.run_profiled(profile_op_ms);
    }
    if (!args.cam) return;
    const std::span<const float> probabilities = session.probabilities();
    const auto top1 =
        static_cast<uint32_t>(std::max_element(probabilities.begin(), probabilities.end()) - probabilities.begin());
    const effcam::engine::Explanation explanation =
        session.explain(top1, effcam::engine::CamScore::Logit, profile_step_ms);
    effcam::imaging::compute_cam(effcam::imaging::CamMethod::GradCam, explanation.activations, explanation.gradients,
                        explanation.shape.h, explanation.shape.w, explanation.shape.c);
  };
  for (uint32_t i = 0; i < args.warmup; ++i) {
    session.set_input_pixels(pixels);
    iteration({}, {});
  }
  using Clock = std::chrono::steady_clock;
  std::vector<double> latency_ms(args.iters);
  std::vector<double> op_ms(args.profile ? size_t{args.iters} * op_count : 0);
  const std::vector<effcam::engine::ExplainStep> steps = session.explain_steps();
  std::vector<double> step_ms(args.profile ? size_t{args.iters} * steps.size() : 0);
  for (uint32_t i = 0; i < args.iters; ++i) {
    session.set_input_pixels(pixels);
    const Clock::time_point start = Clock::now();
    if (args.profile) {
      iteration(std::span<double>(op_ms).subspan(size_t{i} * op_count, op_count),
                std::span<double>(step_ms).subspan(size_t{i} * steps.size(), steps.size()));
    } else {
      iteration({}, {});
    }
    latency_ms[i] = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  }
  const uint64_t peak_rss = effcam::peak_rss_bytes();

  const effcam::bench::LatencyStats latency = effcam::bench::latency_stats(latency_ms);
  const double images_per_s = 1000.0 / latency.median;
  const double achieved = effcam::bench::gflops(multiply_adds, latency.median);
  const effcam::bench::FmaPeak peak = effcam::bench::measure_fma_peak(args.threads);
  const bool have_peak = peak.gflops_total > 0;

  if (args.json) {
    // The documented fields first, then what a reader needs to interpret them.
    Json out = {{"model", args.model},
                {"threads", args.threads},
                {"iters", args.iters},
                {"cam", args.cam ? Json(options.cam_layer) : Json()},
                {"latency_ms", {{"min", latency.min}, {"median", latency.median}, {"p90", latency.p90}}},
                {"images_per_s", images_per_s},
                {"peak_rss_bytes", peak_rss},
                {"gflops", achieved},
                {"peak_fraction", have_peak ? Json(achieved / peak.gflops_total) : Json()},
                {"input", {model.input_height(), model.input_width(), model.input_channels()}},
                {"classes", model.classes()},
                {"multiply_adds", multiply_adds},
                {"fma_peak_gflops", peak.gflops_total},
                {"fma_isa", peak.isa}};
    if (args.profile) out["profile"] = profile_json(effcam::bench::summarize_profile(model, op_ms, args.iters));
    if (args.profile && !steps.empty()) {
      out["cam_profile"] = cam_profile_json(effcam::bench::summarize_cam_profile(model, steps, step_ms, args.iters));
    }
    std::printf("%s\n", out.dump(-1, ' ', false, Json::error_handler_t::replace).c_str());
    return 0;
  }

  std::printf("model       %s: %ux%ux%u input, %u classes, %zu ops, %.3f G multiply-adds\n", args.model.c_str(),
              model.input_height(), model.input_width(), model.input_channels(), model.classes(), op_count,
              static_cast<double>(multiply_adds) / 1e9);
  std::printf("runs        %u timed after %u warm-up, %u thread%s%s\n", args.iters, args.warmup, args.threads,
              args.threads == 1 ? "" : "s",
              args.cam ? (", each forward + Grad-CAM at " + options.cam_layer).c_str() : "");
  std::printf("latency     min %.2f ms, median %.2f ms, p90 %.2f ms\n", latency.min, latency.median, latency.p90);
  std::printf("throughput  %.2f images/s\n", images_per_s);
  std::printf("peak RSS    %.1f MiB (%llu bytes)\n", static_cast<double>(peak_rss) / (1 << 20),
              static_cast<unsigned long long>(peak_rss));
  if (have_peak) {
    std::printf("compute     %.1f GFLOP/s = %.1f%% of the measured fp32 FMA peak (%.1f GFLOP/s, %s, %u thread%s)\n",
                achieved, 100 * achieved / peak.gflops_total, peak.gflops_total, peak.isa.c_str(), peak.threads,
                peak.threads == 1 ? "" : "s");
  } else {
    std::printf("compute     %.1f GFLOP/s (no FMA peak: the CPU has neither AVX-512 nor AVX2)\n", achieved);
  }
  if (args.profile) print_profile(effcam::bench::summarize_profile(model, op_ms, args.iters));
  if (args.profile && !steps.empty()) {
    print_cam_profile(effcam::bench::summarize_cam_profile(model, steps, step_ms, args.iters));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return effcam::cli::main_with("effcam-bench", kUsage, argc, argv, parse_arguments, run);
}
