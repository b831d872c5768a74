#include "converter/convert.h"

#include <cstdio>
#include <vector>

#include "converter/keras_model.h"
#include "effcam/error.hpp"
#include "engine/graph.h"
#include "format/model_file.h"

namespace effcam::converter {
namespace {

// Errors reading, lowering or checking the Keras file are the file's (Format) unless they said otherwise (Io).
template <class Step>
auto in_keras_file(Step step) {
  try {
    return step();
  } catch (const Error& e) {
    if (e.code() != ErrorCode::InvalidArgument) throw;
    throw Error(e.what(), ErrorCode::Format);
  }
}

}  // namespace

ConversionResult convert_file(const std::string& input, const std::string& output, const LoweringOptions& options,
                              const std::vector<std::string>& labels) {
  if (std::FILE* probe = std::fopen(input.c_str(), "rb")) {
    std::fclose(probe);
  } else {
    throw Error(input + ": cannot open", ErrorCode::Io);
  }
  ConversionResult result;
  EffcamBuilder builder = in_keras_file([&] {
    const keras::Model model = keras::read_model(input);
    result.source_format = model.source_format;
    result.keras_version = model.keras_version;
    result.model_name = model.name;
    return lower(model, options, result.summary);
  });
  // The caller's labels against what the file holds: an argument error, not the file's.
  if (!labels.empty() && labels.size() != result.summary.classes) {
    throw Error(std::to_string(labels.size()) + " labels were given but the model has " +
                    std::to_string(result.summary.classes) + " classes",
                ErrorCode::InvalidArgument);
  }
  builder.set_labels(labels);
  // The file must load and form a valid graph before it is written.
  in_keras_file([&] {
    const std::vector<uint8_t> bytes = builder.serialize();
    engine::build_graph(ModelFile::from_bytes(bytes));
  });
  result.file_bytes = builder.write(output);
  return result;
}

}  // namespace effcam::converter
