// libFuzzer target: ModelFile::from_bytes must reject any malformed input with effcam::Error, never crash or
// read out of bounds. Random bytes rarely get past the checksums, so each input is also tried with its checksums
// recomputed: that drives the fuzzer into the structural checks behind them.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "effcam/error.hpp"
#include "format/model_file.h"
#include "tests/format/effcam_test_files.h"

namespace {

// Reads everything a validated file promises is readable, so ASan sees any hole in the validation.
void read_everything(const effcam::ModelFile& file) {
  size_t sum = file.metadata_json().size() + file.preprocess().height;
  for (const auto& tensor : file.tensors()) sum += file.string(tensor.name).size();
  for (const auto& op : file.ops()) sum += file.string(op.name).size();
  for (const auto& tap : file.taps()) sum += file.string(tap.layer).size() + file.string(tap.class_name).size();
  for (const auto& label : file.labels()) sum += file.string(label).size();
  for (uint32_t id = 0; id < file.weight_records().size(); ++id) {
    const auto* bytes = static_cast<const uint8_t*>(file.weight_data(id));
    const uint64_t size = file.weight_records()[id].byte_size;
    sum += bytes[0] + bytes[size - 1];  // validated sizes are never 0
  }
  volatile size_t sink = sum;
  (void)sink;
}

void try_load(std::span<const uint8_t> bytes) {
  try {
    read_everything(effcam::ModelFile::from_bytes(bytes));
  } catch (const effcam::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try_load({data, size});
  std::vector<uint8_t> resealed(data, data + size);
  effcam::test::reseal(resealed);
  try_load(resealed);
  return 0;
}
