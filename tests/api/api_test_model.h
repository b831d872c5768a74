// The API tests' model and images: tests/format's SmallModel (224x224x3 in, conv 3x3/2 -> depthwise -> pool ->
// dense, 5 labelled classes, CAM-able stem_conv) as .effcam bytes and as a file, and deterministic test pictures.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#include "imaging/image.h"
#include "imaging/overlay.h"
#include "tests/format/effcam_test_files.h"

namespace effcam::test {

inline const std::vector<uint8_t>& small_model_bytes() {
  static const std::vector<uint8_t> bytes = SmallModel(format::DType::F16).builder.serialize();
  return bytes;
}

// The model written once per process to a temporary file, removed when the process exits.
inline const std::string& small_model_path() {
  struct TemporaryModelFile {
    std::string path;
    TemporaryModelFile()
        : path((std::filesystem::temp_directory_path() /
                ("effcam_api_test_" + std::to_string(::getpid()) + ".effcam"))
                   .string()) {
      std::ofstream out(path, std::ios::binary);
      out.write(reinterpret_cast<const char*>(small_model_bytes().data()),
                static_cast<std::streamsize>(small_model_bytes().size()));
    }
    ~TemporaryModelFile() {
      std::error_code ignored;
      std::filesystem::remove(path, ignored);
    }
  };
  static const TemporaryModelFile file;
  return file.path;
}

// A w x h RGB picture with smooth gradients and a bright square (different for each seed).
inline imaging::Image test_picture(uint32_t w, uint32_t h, uint32_t seed) {
  imaging::Image image{w, h, 3, std::vector<uint8_t>(size_t{w} * h * 3)};
  for (uint32_t y = 0; y < h; ++y) {
    for (uint32_t x = 0; x < w; ++x) {
      uint8_t* p = &image.pixels[(size_t{y} * w + x) * 3];
      const bool square = x > w / 4 + seed % 7 && x < w / 2 && y > h / 3 && y < h * 2 / 3;
      p[0] = static_cast<uint8_t>(square ? 250 : (x * 255 / w + seed * 37) % 256);
      p[1] = static_cast<uint8_t>(square ? 240 : (y * 255 / h + seed * 11) % 256);
      p[2] = static_cast<uint8_t>(((x + y) * 3 + seed * 53) % 256);
    }
  }
  return image;
}

inline std::vector<uint8_t> test_png(uint32_t w, uint32_t h, uint32_t seed) {
  return imaging::encode_image(test_picture(w, h, seed), imaging::Encoding::Png);
}

}  // namespace effcam::test
