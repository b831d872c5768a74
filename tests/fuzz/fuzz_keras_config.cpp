// libFuzzer target: a .keras archive whose config.json is the fuzzer's input must convert, or fail with
// effcam::Error, never crash. This drives the reader's JSON walk (nested Functional / Sequential graphs, node
// formats, dtype policies) and the lowering's reading of every layer's config. The archive's weights file is a
// valid, empty HDF5 file (libhdf5 itself is Debian's, not instrumented), so layers that need weights fail there.
#include <unistd.h>
#include <zip.h>

#include <hdf5.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

#include "converter/keras_model.h"
#include "converter/lowering.h"
#include "effcam/error.hpp"

namespace {

// A private directory for the archive, removed when the fuzzer exits.
const std::string& scratch_dir() {
  struct ScratchDir {
    std::string path;
    ScratchDir() {
      char pattern[] = "/tmp/effcam-fuzz-keras-XXXXXX";
      const char* made = mkdtemp(pattern);
      if (!made) std::abort();
      path = made;
    }
    ~ScratchDir() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  };
  static const ScratchDir dir;
  return dir.path;
}

// The bytes of an HDF5 file with an empty "layers" group, made once.
const std::vector<char>& empty_weights() {
  static const std::vector<char> bytes = [] {
    const std::string path = scratch_dir() + "/weights.h5";
    const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(H5Gcreate2(file, "layers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Fclose(file);
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(in), {});
  }();
  return bytes;
}

void add_member(zip_t* archive, const char* name, const void* data, size_t size) {
  zip_source_t* source = zip_source_buffer(archive, data, size, 0);
  if (!source || zip_file_add(archive, name, source, ZIP_FL_OVERWRITE) < 0) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string metadata = R"({"keras_version": "3.8.0", "date_saved": "2025-01-01@00:00:00"})";
  const std::string path = scratch_dir() + "/model.keras";
  int error = 0;
  zip_t* archive = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  if (!archive) std::abort();
  add_member(archive, "metadata.json", metadata.data(), metadata.size());
  add_member(archive, "config.json", data, size);
  add_member(archive, "model.weights.h5", empty_weights().data(), empty_weights().size());
  if (zip_close(archive) < 0) std::abort();
  try {
    const effcam::keras::Model model = effcam::keras::read_model(path);
    effcam::converter::LoweringSummary summary;
    effcam::converter::lower(model, {}, summary).serialize();
  } catch (const effcam::Error&) {
  }
  return 0;
}
