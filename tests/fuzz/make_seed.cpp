// Writes the seed corpus for fuzz_model_file: a small valid .effcam of each kernel dtype.
#include <cstdio>
#include <string>

#include "effcam/error.hpp"
#include "tests/format/effcam_test_files.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  try {
    const std::string dir = argv[1];
    effcam::test::SmallModel(effcam::format::DType::F16).builder.write(dir + "/small_f16.effcam");
    effcam::test::SmallModel(effcam::format::DType::F32).builder.write(dir + "/small_f32.effcam");
  } catch (const effcam::Error& error) {
    std::fprintf(stderr, "make_seed: %s\n", error.what());
    return 1;
  }
  return 0;
}
