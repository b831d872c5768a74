#include "converter/convert.h"

#include <cstdio>
#include <vector>

#include "base/error_code.h"
#include "converter/keras_model.h"
#include "effcam/error.hpp"
#include "engine/graph.h"
#include "format/model_file.h"

namespace effcam::converter {
ConversionResult convert_file(const std::string& input, const std::string& output, const LoweringOptions& options,
                              const std::vector<std::string>& labels) {
  // The caller's options are argument errors (the file's problems are Format, below).
  if (options.input_size) {
    const auto [height, width] = *options.input_size;
    if (height == 0 || width == 0 || height > kMaxInputSide || width > kMaxInputSide) {
      throw Error("input size " + std::to_string(height) + "x" + std::to_string(width) + " is out of range (1.." +
                      std::to_string(kMaxInputSide) + " a side)",
                  ErrorCode::InvalidArgument);
    }
  }
  if (std::FILE* probe = std::fopen(input.c_str(), "rb")) {
    std::fclose(probe);
  } else {
    throw Error(input + ": cannot open", ErrorCode::Io);
  }
  ConversionResult result;
  EffcamBuilder builder = with_error_code(ErrorCode::Format, [&] {
    const keras::Model model = keras::read_model(input);
    result.source_format = model.source_format;
    result.keras_version = model.keras_version;
    result.model_name = model.name;
    return lower(model, options, result.summary);
  });
  // The caller's labels against the classes the file holds.
  if (!labels.empty() && labels.size() != result.summary.classes) {
    throw Error(std::to_string(labels.size()) + " labels were given but the model has " +
                    std::to_string(result.summary.classes) + " classes",
                ErrorCode::InvalidArgument);
  }
  builder.set_labels(labels);
  // The file must load and form a valid graph before it is written.
  with_error_code(ErrorCode::Format, [&] {
    const std::vector<uint8_t> bytes = builder.serialize();
    engine::build_graph(ModelFile::from_bytes(bytes));
  });
  result.file_bytes = builder.write(output);
  return result;
}

}  // namespace effcam::converter
