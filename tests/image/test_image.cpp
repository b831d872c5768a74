// Image decoding and Lanczos resizing against Debian's python3-pil, plus hostile inputs.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "effcam/error.hpp"
#include "imaging/image.h"
#include "imaging/resize.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;
using effcam::imaging::Image;

namespace {

std::vector<uint8_t> read_bytes(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  REQUIRE_MESSAGE(file.good(), "cannot open " << path);
  return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

// Runs make_pil_fixtures.py once per test process; returns the folder with manifest.txt.
const fs::path& pil_fixtures() {
  static const fs::path dir = [] {
    const fs::path out = effcam::test::testdata_dir() / "image";
    const std::string python = effcam::test::env_or("EFFCAM_PYTHON", "/usr/bin/python3");
    const std::string script =
        effcam::test::env_or("EFFCAM_SOURCE_DIR", ".") + "/tests/image/make_pil_fixtures.py";
    std::string command = python + " '" + script + "' '" + out.string() + "'";
    // The real photos of shared/ join the fixtures when shared/ is present.
    if (auto samples = effcam::test::shared_file("models/food101-effv2b0/samples")) {
      for (const auto& entry : fs::directory_iterator(*samples)) command += " '" + entry.path().string() + "'";
    }
    REQUIRE_MESSAGE(std::system(command.c_str()) == 0, "fixture script failed: " << command);
    return out;
  }();
  return dir;
}

struct Difference {
  double mean = 0.0;
  int max = 0;
};

Difference compare(const std::vector<uint8_t>& got, const std::vector<uint8_t>& expected) {
  REQUIRE(got.size() == expected.size());
  Difference d;
  for (size_t i = 0; i < got.size(); ++i) {
    const int diff = std::abs(int(got[i]) - int(expected[i]));
    d.mean += diff;
    d.max = std::max(d.max, diff);
  }
  d.mean /= double(std::max<size_t>(got.size(), 1));
  return d;
}

std::vector<std::string> manifest_lines(const std::string& kind) {
  std::ifstream manifest(pil_fixtures() / "manifest.txt");
  REQUIRE(manifest.good());
  std::vector<std::string> lines;
  for (std::string line; std::getline(manifest, line);) {
    if (line.rfind(kind + " ", 0) == 0) lines.push_back(line);
  }
  REQUIRE(!lines.empty());
  return lines;
}

void append(std::vector<uint8_t>& out, std::initializer_list<uint8_t> bytes) {
  for (const uint8_t b : bytes) out.push_back(b);
}

void append_be32(std::vector<uint8_t>& out, uint32_t v) {
  append(out, {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)});
}

// A PNG cut right after its IHDR chunk (with a correct CRC): a header declaring any size, and no pixels.
std::vector<uint8_t> png_with_header(uint32_t width, uint32_t height) {
  std::vector<uint8_t> chunk;
  append(chunk, {'I', 'H', 'D', 'R'});
  append_be32(chunk, width);
  append_be32(chunk, height);
  append(chunk, {8, 2, 0, 0, 0});  // 8-bit RGB
  uint32_t crc = 0xFFFFFFFFu;
  for (const uint8_t b : chunk) {
    crc ^= b;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  std::vector<uint8_t> png;
  append(png, {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'});
  append_be32(png, uint32_t(chunk.size() - 4));
  png.insert(png.end(), chunk.begin(), chunk.end());
  append_be32(png, ~crc);
  return png;
}

void check_refused(const std::vector<uint8_t>& bytes, const std::string& expected_words) {
  try {
    effcam::imaging::decode_image(bytes, 3, "crafted");
    FAIL("decoding succeeded, expected an error containing '" << expected_words << "'");
  } catch (const effcam::Error& e) {
    const std::string message = e.what();
    INFO(message);
    CHECK(message.find("crafted") != std::string::npos);
    CHECK(message.find(expected_words) != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
  }
}

}  // namespace

TEST_CASE("decode matches PIL's open + convert") {
  for (const std::string& line : manifest_lines("decode")) {
    std::istringstream fields(line.substr(7));
    std::string source, expected_file;
    uint32_t channels = 0, width = 0, height = 0;
    int lossy = 0;
    fields >> source >> channels >> width >> height >> expected_file >> lossy;
    INFO(line);
    const Image image = effcam::imaging::load_image(source, channels);
    CHECK(image.width == width);
    CHECK(image.height == height);
    CHECK(image.channels == channels);
    const Difference d = compare(image.pixels, read_bytes(pil_fixtures() / expected_file));
    MESSAGE(source << " -> " << channels << " channel(s): mean |diff| " << d.mean << ", max " << d.max);
    if (lossy) {
      // stb_image and libjpeg-turbo use different IDCT and chroma upsampling arithmetic.
      CHECK(d.mean <= 1.0);
      CHECK(d.max <= 16);
    } else {
      CHECK(d.max == 0);
    }
  }
}

TEST_CASE("Lanczos resize matches PIL's Image.resize(LANCZOS)") {
  for (const std::string& line : manifest_lines("resize")) {
    std::istringstream fields(line.substr(7));
    std::string source_file, expected_file;
    Image source;
    uint32_t out_w = 0, out_h = 0;
    fields >> source_file >> source.width >> source.height >> source.channels >> out_w >> out_h >> expected_file;
    INFO(line);
    source.pixels = read_bytes(pil_fixtures() / source_file);
    const Image resized = effcam::imaging::resize_lanczos(source, out_w, out_h);
    CHECK(resized.width == out_w);
    CHECK(resized.height == out_h);
    CHECK(resized.channels == source.channels);
    const Difference d = compare(resized.pixels, read_bytes(pil_fixtures() / expected_file));
    CHECK(d.max <= 1);
    CHECK(d.mean <= 0.01);
    if (d.max != 0) MESSAGE(line << ": mean |diff| " << d.mean << ", max " << d.max);
  }
}

TEST_CASE("resize edge cases") {
  Image image{5, 4, 3, {}};
  std::mt19937 rng(7);
  for (int i = 0; i < 5 * 4 * 3; ++i) image.pixels.push_back(uint8_t(rng()));
  SUBCASE("same size is an identical copy") {
    CHECK(effcam::imaging::resize_lanczos(image, 5, 4).pixels == image.pixels);
  }
  SUBCASE("a flat image stays flat, whatever the size") {
    Image flat{7, 3, 1, std::vector<uint8_t>(21, 200)};
    const Image up = effcam::imaging::resize_lanczos(flat, 50, 41);
    CHECK(std::all_of(up.pixels.begin(), up.pixels.end(), [](uint8_t v) { return v == 200; }));
    const Image down = effcam::imaging::resize_lanczos(flat, 2, 1);
    CHECK(std::all_of(down.pixels.begin(), down.pixels.end(), [](uint8_t v) { return v == 200; }));
  }
  SUBCASE("bad sizes are refused") {
    CHECK_THROWS_AS(effcam::imaging::resize_lanczos(image, 0, 4), effcam::Error);
    CHECK_THROWS_AS(effcam::imaging::resize_lanczos(image, 100000, 100000), effcam::Error);
    Image inconsistent = image;
    inconsistent.pixels.pop_back();
    CHECK_THROWS_AS(effcam::imaging::resize_lanczos(inconsistent, 3, 3), effcam::Error);
  }
  SUBCASE("to_float_hwc keeps the raw 0..255 values in order") {
    const std::vector<float> floats = effcam::imaging::to_float_hwc(image);
    REQUIRE(floats.size() == image.pixels.size());
    for (size_t i = 0; i < floats.size(); ++i) CHECK(floats[i] == float(image.pixels[i]));
  }
}

TEST_CASE("hostile and broken inputs are refused with a one-line error") {
  SUBCASE("empty") { check_refused({}, "empty"); }
  SUBCASE("random bytes") {
    std::mt19937 rng(1);
    std::vector<uint8_t> noise(4096);
    for (auto& b : noise) b = uint8_t(rng());
    noise[0] = 0x00;  // keep clear of the accepted magic numbers
    check_refused(noise, "not a JPEG, PNG, BMP or GIF");
  }
  SUBCASE("a 60000x60000 PNG header is refused at once") {
    const auto start = std::chrono::steady_clock::now();
    check_refused(png_with_header(60000, 60000), "60000x60000 is above the limit");
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(200));
  }
  SUBCASE("a 10000x10000 PNG header is above the pixel limit") {
    const auto start = std::chrono::steady_clock::now();
    check_refused(png_with_header(10000, 10000), "10000x10000 is above the limit");
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(200));
  }
  SUBCASE("a PNG whose pixel stream inflates far beyond its declared size (deflate bomb)") {
    const auto start = std::chrono::steady_clock::now();
    check_refused(read_bytes(pil_fixtures() / "bomb.png"), "inflates beyond the image's size");
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(500));
  }
  SUBCASE("zero width") { check_refused(png_with_header(0, 16), "zero width or height"); }
  SUBCASE("header only, no pixel data") { check_refused(png_with_header(16, 16), "cannot decode"); }
  SUBCASE("wanted channels other than 1 or 3") {
    CHECK_THROWS_AS(effcam::imaging::decode_image(png_with_header(16, 16), 4, "crafted"), effcam::Error);
  }
  SUBCASE("missing file") {
    CHECK_THROWS_WITH_AS(effcam::imaging::load_image("/nonexistent/photo.png", 3),
                         doctest::Contains("/nonexistent/photo.png"), effcam::Error);
  }
  SUBCASE("truncated PNG, JPEG, BMP and GIF") {
    for (const char* name : {"rgb.png", "rgb.jpg", "rgb.bmp", "rgb.gif"}) {
      const std::vector<uint8_t> whole = read_bytes(pil_fixtures() / name);
      // Cuts in the header, in the first segments, mid-pixels and in the last pixel data (the final 100 bytes
      // hold no more than the PNG's checksums and IEND, which stb, like PIL, does not need).
      for (const size_t keep : {size_t{10}, size_t{40}, whole.size() / 2, whole.size() - 100}) {
        INFO(std::string(name) << " cut to " << keep << " bytes");
        check_refused(std::vector<uint8_t>(whole.begin(), whole.begin() + keep), "");
      }
    }
  }
}
