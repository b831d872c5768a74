// effcam-convert: a Keras .keras / .h5 classifier -> one .effcam file.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "converter/keras_model.h"
#include "converter/lowering.h"
#include "apps/cli.h"
#include "effcam/error.hpp"
#include "engine/graph.h"
#include "format/model_file.h"

namespace {

constexpr const char* kUsage =
    "usage: effcam-convert INPUT.keras|INPUT.h5 OUTPUT.effcam [--dtype fp16|fp32] [--labels FILE]"
    " [--input-size H,W]\n";

struct Arguments {
  std::string input, output, labels_path;
  effcam::convert::LoweringOptions lowering;
};

Arguments parse_arguments(int argc, char** argv) {
  Arguments args;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw effcam::Error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--dtype") {
      const std::string dtype = value();
      if (dtype == "fp16") {
        args.lowering.kernel_dtype = effcam::format::DType::F16;
      } else if (dtype == "fp32") {
        args.lowering.kernel_dtype = effcam::format::DType::F32;
      } else {
        throw effcam::Error("--dtype must be fp16 or fp32, got '" + dtype + "'");
      }
    } else if (arg == "--labels") {
      args.labels_path = value();
    } else if (arg == "--input-size") {
      const std::string size = value();
      const size_t comma = size.find(',');
      if (comma == std::string::npos) throw effcam::Error("--input-size wants H,W, got '" + size + "'");
      args.lowering.input_size = {{effcam::cli::parse_count(arg, size.substr(0, comma), 1, 8192),
                                   effcam::cli::parse_count(arg, size.substr(comma + 1), 1, 8192)}};
    } else if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (!arg.empty() && arg[0] == '-') {
      throw effcam::Error("unknown option " + arg);
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 2) throw effcam::Error("expected INPUT and OUTPUT");
  args.input = positional[0];
  args.output = positional[1];
  return args;
}

std::vector<std::string> read_labels(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw effcam::Error("cannot open labels file " + path);
  std::vector<std::string> labels;
  std::string line;
  size_t bytes = 0;
  while (std::getline(file, line)) {
    bytes += line.size();
    if (bytes > (16u << 20)) throw effcam::Error("labels file " + path + " is larger than 16 MiB");
    if (!line.empty() && line.back() == '\r') line.pop_back();
    labels.push_back(line);
  }
  while (!labels.empty() && labels.back().empty()) labels.pop_back();
  if (labels.empty()) throw effcam::Error("labels file " + path + " has no labels");
  return labels;
}

std::string with_thousands(uint64_t value) {
  std::string digits = std::to_string(value), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

}  // namespace

namespace {

int run(const Arguments& args) {
  effcam::convert::LoweringOptions lowering = args.lowering;
  if (!args.labels_path.empty()) lowering.labels = read_labels(args.labels_path);
  const effcam::keras::Model model = effcam::keras::read_model(args.input);
  effcam::convert::LoweringSummary summary;
  const effcam::convert::EffcamBuilder builder = effcam::convert::lower(model, lowering, summary);

  // The file must load and form a valid graph before it is written.
  const std::vector<uint8_t> bytes = builder.serialize();
  const effcam::ModelFile check = effcam::ModelFile::from_bytes(bytes);
  effcam::build_graph(check);
  const uint64_t written = builder.write(args.output);

  const bool fp16 = lowering.kernel_dtype == effcam::format::DType::F16;
  std::printf("converted %s -> %s\n", args.input.c_str(), args.output.c_str());
  std::printf("  source      %s, Keras %s, model '%s'\n", model.source_format.c_str(),
              model.keras_version.empty() ? "(unknown)" : model.keras_version.c_str(), model.name.c_str());
  std::printf("  layers      %zu Keras layers -> %zu fused ops\n", summary.keras_layers, summary.ops);
  std::printf("  parameters  %s in Keras, %s stored after folding\n",
              with_thousands(summary.keras_parameters).c_str(), with_thousands(summary.stored_parameters).c_str());
  std::printf("  input       %ux%ux%u\n", summary.input_h, summary.input_w, summary.input_c);
  std::printf("  classes     %u%s\n", summary.classes, lowering.labels.empty() ? " (no labels)" : " (labelled)");
  std::printf("  file        %s bytes (%s weights, %.3f bytes per Keras parameter)\n",
              with_thousands(written).c_str(), fp16 ? "fp16" : "fp32",
              static_cast<double>(written) / static_cast<double>(summary.keras_parameters));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return effcam::cli::main_with("effcam-convert", kUsage, argc, argv, parse_arguments, run);
}
