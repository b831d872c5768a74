// effcam-image-bench: time and peak memory (VmHWM) of turning one encoded image into a model's input, in a fresh
// process, so that bench/image_decode.py can put the figures beside Debian's PIL doing the same.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/process_memory.h"
#include "effcam/error.hpp"
#include "imaging/image.h"
#include "imaging/overlay.h"
#include "imaging/resize.h"

namespace {

namespace imaging = effcam::imaging;

constexpr const char* kUsage =
    "usage: effcam-image-bench IMAGE WIDTH HEIGHT [--gray] [--fast] [--exif] [--whole] [--repeat N]\n"
    "                          [--overlay OUT.png|OUT.jpg]\n"
    "Decodes IMAGE and resizes it to WIDTH x HEIGHT (RGB, or L with --gray) N times (default 1) through\n"
    "load_model_image and prints one JSON line: each run's milliseconds and the process's peak RSS (VmHWM);\n"
    "for an image it refuses, the error on stderr and {\"error\": true, \"peak_rss_bytes\": ...}, exit status 1.\n"
    "  --fast    JPEG DCT scaling (DecodeOptions::fast_jpeg_dct)\n"
    "  --exif    apply the EXIF orientation\n"
    "  --whole   the whole-image path instead: decode_full_size, then resize_lanczos (the full-size picture in\n"
    "            memory), for comparison\n"
    "  --overlay F  then write_overlay at the original size into F (a 7x7 CAM map), as --overlay-size original\n"
    "            does, and include it in the figures\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string path = argv[1];
  const auto width = static_cast<uint32_t>(std::strtoul(argv[2], nullptr, 10));
  const auto height = static_cast<uint32_t>(std::strtoul(argv[3], nullptr, 10));
  imaging::DecodeOptions options;
  uint32_t channels = 3;
  bool whole = false;
  std::string overlay;
  int repeat = 1;
  for (int i = 4; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--gray") {
      channels = 1;
    } else if (arg == "--fast") {
      options.fast_jpeg_dct = true;
    } else if (arg == "--exif") {
      options.apply_exif_orientation = true;
    } else if (arg == "--whole") {
      whole = true;
    } else if (arg == "--overlay" && i + 1 < argc) {
      overlay = argv[++i];
    } else if (arg == "--repeat" && i + 1 < argc) {
      repeat = std::clamp(std::atoi(argv[++i]), 1, 1000);
    } else {
      std::fputs(kUsage, stderr);
      return 2;
    }
  }
  const uint64_t rss_before = effcam::peak_rss_bytes();
  std::string times;
  uint64_t checksum = 0;
  try {
    for (int r = 0; r < repeat; ++r) {
      const auto start = std::chrono::steady_clock::now();
      imaging::Image image;
      if (whole) {
        image = imaging::resize_lanczos(
            imaging::decode_full_size(imaging::ImageSource::file(path), channels, options), width, height);
      } else {
        image = imaging::load_model_image(imaging::ImageSource::file(path), width, height, channels, options).image;
      }
      if (!overlay.empty()) {
        imaging::CamMap cam;
        cam.height = cam.width = 7;
        for (uint32_t k = 0; k < 49; ++k) cam.normalized.push_back(static_cast<float>(k % 11) / 10.0f);
        imaging::write_overlay(imaging::ImageSource::file(path), channels, options, cam, overlay);
      }
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      times += (r ? ", " : "") + std::to_string(ms);
      for (const uint8_t v : image.pixels) checksum += v;
    }
  } catch (const effcam::Error& e) {
    // The peak of a refused image counts too (a refusal must come before the allocations).
    std::fprintf(stderr, "effcam-image-bench: %s\n", e.what());
    std::printf("{\"error\": true, \"peak_rss_bytes\": %llu}\n",
                static_cast<unsigned long long>(effcam::peak_rss_bytes()));
    return 1;
  }
  std::printf("{\"ms\": [%s], \"peak_rss_bytes\": %llu, \"peak_rss_before_bytes\": %llu, \"checksum\": %llu}\n",
              times.c_str(), static_cast<unsigned long long>(effcam::peak_rss_bytes()),
              static_cast<unsigned long long>(rss_before), static_cast<unsigned long long>(checksum));
  return 0;
}
