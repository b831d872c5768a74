// One conversion, start to end: read the Keras file, lower it, check that the result loads as a valid model, write it
// through a temporary file. What effcam-convert, the library API and the Python package all call.
#pragma once

#include <cstdint>
#include <string>

#include "converter/lowering.h"

namespace effcam::converter {

struct ConversionResult {
  std::string source_format;  // "keras-zip" or "legacy-h5"
  std::string keras_version;  // "" when the file does not say
  std::string model_name;
  LoweringSummary summary;
  uint64_t file_bytes = 0;    // written
};

// labels: one per class, or none. Throws effcam::Error: ErrorCode::Io when the input cannot be read or the output
// written, ErrorCode::Format for anything wrong with the Keras file (the message names the file, layer or field),
// ErrorCode::InvalidArgument for labels that do not match the classes or an input size out of range. Nothing is
// written on failure.
ConversionResult convert_file(const std::string& input, const std::string& output, const LoweringOptions& options,
                              const std::vector<std::string>& labels = {});

}  // namespace effcam::converter
