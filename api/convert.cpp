// effcam::convert: the converter behind the API (converter/convert.h does the work), and the report's text.
#include <cstdio>

#include "converter/convert.h"
#include "effcam/effcam.hpp"

namespace effcam {
namespace {

std::string with_thousands(uint64_t value) {
  std::string digits = std::to_string(value), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

}  // namespace

ConversionReport convert(const std::string& input, const std::string& output, const ConvertOptions& options) {
  converter::LoweringOptions lowering;
  lowering.kernel_dtype = options.weights == WeightType::F16 ? format::DType::F16 : format::DType::F32;
  lowering.input_size = options.input_size;
  const converter::ConversionResult result = converter::convert_file(input, output, lowering, options.labels);
  ConversionReport report;
  report.input = input;
  report.output = output;
  report.source_format = result.source_format;
  report.keras_version = result.keras_version;
  report.model_name = result.model_name;
  report.keras_layers = result.summary.keras_layers;
  report.ops = result.summary.ops;
  report.keras_parameters = result.summary.keras_parameters;
  report.stored_parameters = result.summary.stored_parameters;
  report.input_height = result.summary.input_h;
  report.input_width = result.summary.input_w;
  report.input_channels = result.summary.input_c;
  report.classes = result.summary.classes;
  report.labelled = !options.labels.empty();
  report.weights = options.weights;
  report.file_bytes = result.file_bytes;
  return report;
}

std::string format_report(const ConversionReport& r) {
  char line[512];
  std::string text = "converted " + r.input + " -> " + r.output + "\n";
  text += "  source      " + r.source_format + ", Keras " + (r.keras_version.empty() ? "(unknown)" : r.keras_version) +
          ", model '" + r.model_name + "'\n";
  text += "  layers      " + std::to_string(r.keras_layers) + " Keras layers -> " + std::to_string(r.ops) +
          " fused ops\n";
  text += "  parameters  " + with_thousands(r.keras_parameters) + " in Keras, " + with_thousands(r.stored_parameters) +
          " stored after folding\n";
  text += "  input       " + std::to_string(r.input_height) + "x" + std::to_string(r.input_width) + "x" +
          std::to_string(r.input_channels) + "\n";
  text += "  classes     " + std::to_string(r.classes) + (r.labelled ? " (labelled)" : " (no labels)") + "\n";
  std::snprintf(line, sizeof line, "  file        %s bytes (%s weights, %.3f bytes per Keras parameter)\n",
                with_thousands(r.file_bytes).c_str(), r.weights == WeightType::F16 ? "fp16" : "fp32",
                static_cast<double>(r.file_bytes) / static_cast<double>(r.keras_parameters));
  return text + line;
}

}  // namespace effcam
