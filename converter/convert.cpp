#include "converter/convert.h"

#include <cstdio>
#include <optional>
#include <vector>

#include "converter/keras_model.h"
#include "effcam/error.hpp"
#include "format/graph.h"
#include "format/model_file.h"

namespace effcam::converter {

ConversionResult convert_file(const std::string& input, const std::string& output, const LoweringOptions& options) {
  if (std::FILE* probe = std::fopen(input.c_str(), "rb")) {
    std::fclose(probe);
  } else {
    throw Error(input + ": cannot open", ErrorCode::Io);
  }
  ConversionResult result;
  std::optional<EffcamBuilder> builder;
  try {
    const keras::Model model = keras::read_model(input);
    result.source_format = model.source_format;
    result.keras_version = model.keras_version;
    result.model_name = model.name;
    builder.emplace(lower(model, options, result.summary));
    // The file must load and form a valid graph before it is written.
    const std::vector<uint8_t> bytes = builder->serialize();
    build_graph(ModelFile::from_bytes(bytes));
  } catch (const Error& e) {
    if (e.code() != ErrorCode::InvalidArgument) throw;
    throw Error(e.what(), ErrorCode::Format);
  }
  result.file_bytes = builder->write(output);
  return result;
}

}  // namespace effcam::converter
