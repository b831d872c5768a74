// effcam-convert: a Keras .keras / .h5 classifier -> one .effcam file, through the library API's convert().
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "apps/cli.h"
#include "effcam/effcam.hpp"

namespace {

constexpr const char* kUsage =
    "usage: effcam-convert INPUT.keras|INPUT.h5 OUTPUT.effcam [--dtype fp16|fp32] [--labels FILE]"
    " [--input-size H,W]\n";

struct Arguments {
  std::string input, output, labels_path;
  effcam::ConvertOptions options;
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
        args.options.weights = effcam::WeightType::F16;
      } else if (dtype == "fp32") {
        args.options.weights = effcam::WeightType::F32;
      } else {
        throw effcam::Error("--dtype must be fp16 or fp32, got '" + dtype + "'");
      }
    } else if (arg == "--labels") {
      args.labels_path = value();
    } else if (arg == "--input-size") {
      const std::string size = value();
      const size_t comma = size.find(',');
      if (comma == std::string::npos) throw effcam::Error("--input-size wants H,W, got '" + size + "'");
      args.options.input_size = {{effcam::cli::parse_count(arg, size.substr(0, comma), 1, 8192),
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

}  // namespace

namespace {

int run(const Arguments& args) {
  effcam::ConvertOptions options = args.options;
  if (!args.labels_path.empty()) options.labels = read_labels(args.labels_path);
  std::fputs(effcam::format_report(effcam::convert(args.input, args.output, options)).c_str(), stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return effcam::cli::main_with("effcam-convert", kUsage, argc, argv, parse_arguments, run);
}
