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
#include <iterator>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "effcam/error.hpp"
#include "imaging/image.h"
#include "imaging/overlay.h"
#include "imaging/resize.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;
namespace imaging = effcam::imaging;
using imaging::Image;

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
    imaging::decode_image(bytes, 3, "crafted");
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
    fields >> source >> channels >> width >> height >> expected_file;
    INFO(line);
    const Image image = imaging::load_image(source, channels);
    CHECK(image.width == width);
    CHECK(image.height == height);
    CHECK(image.channels == channels);
    const Difference d = compare(image.pixels, read_bytes(pil_fixtures() / expected_file));
    MESSAGE(source << " -> " << channels << " channel(s): mean |diff| " << d.mean << ", max " << d.max);
    CHECK(d.max == 0);  // JPEGs too: libjpeg-turbo set up as Pillow sets it up
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
    const Image resized = imaging::resize_lanczos(source, out_w, out_h);
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
    CHECK(imaging::resize_lanczos(image, 5, 4).pixels == image.pixels);
  }
  SUBCASE("a flat image stays flat, whatever the size") {
    Image flat{7, 3, 1, std::vector<uint8_t>(21, 200)};
    const Image up = imaging::resize_lanczos(flat, 50, 41);
    CHECK(std::all_of(up.pixels.begin(), up.pixels.end(), [](uint8_t v) { return v == 200; }));
    const Image down = imaging::resize_lanczos(flat, 2, 1);
    CHECK(std::all_of(down.pixels.begin(), down.pixels.end(), [](uint8_t v) { return v == 200; }));
  }
  SUBCASE("bad sizes are refused") {
    CHECK_THROWS_AS(imaging::resize_lanczos(image, 0, 4), effcam::Error);
    CHECK_THROWS_AS(imaging::resize_lanczos(image, 100000, 100000), effcam::Error);
    Image inconsistent = image;
    inconsistent.pixels.pop_back();
    CHECK_THROWS_AS(imaging::resize_lanczos(inconsistent, 3, 3), effcam::Error);
  }
  SUBCASE("to_float_hwc keeps the raw 0..255 values in order") {
    const std::vector<float> floats = imaging::to_float_hwc(image);
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
    check_refused(noise, "not a JPEG, PNG, WebP, BMP or GIF");
  }
  SUBCASE("a 60000x60000 PNG header is refused at once") {
    const auto start = std::chrono::steady_clock::now();
    check_refused(png_with_header(60000, 60000), "60000x60000 is above the limit");
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(200));
  }
  SUBCASE("a 10001x10000 PNG header is above the pixel limit") {
    const auto start = std::chrono::steady_clock::now();
    check_refused(png_with_header(10001, 10000), "10001x10000 is above the limit");
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(200));
  }
  SUBCASE("a PNG whose pixel stream inflates far beyond its declared size (deflate bomb)") {
    // PIL decodes the rows the image needs and ignores the rest; so does effcam, without inflating the rest.
    const auto start = std::chrono::steady_clock::now();
    const Image image = imaging::decode_image(read_bytes(pil_fixtures() / "bomb.png"), 3, "bomb");
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(500));
    CHECK(image.width == 100);
    CHECK(std::all_of(image.pixels.begin(), image.pixels.end(), [](uint8_t v) { return v == 0; }));
  }
  SUBCASE("zero width") { check_refused(png_with_header(0, 16), "zero width or height"); }
  SUBCASE("header only, no pixel data") { check_refused(png_with_header(16, 16), "truncated"); }
  SUBCASE("wanted channels other than 1 or 3") {
    CHECK_THROWS_AS(imaging::decode_image(png_with_header(16, 16), 4, "crafted"), effcam::Error);
  }
  SUBCASE("missing file") {
    CHECK_THROWS_WITH_AS(imaging::load_image("/nonexistent/photo.png", 3),
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

// ---------------------------------------------------------------------------------------------------------------
// The generated suite (make_pil_suite.py): every format variant through load_model_image against Debian's PIL.

namespace {

const fs::path& pil_suite() {
  static const fs::path dir = [] {
    const fs::path out = effcam::test::testdata_dir() / "image-suite";
    const std::string command = effcam::test::env_or("EFFCAM_PYTHON", "/usr/bin/python3") + " '" +
                                effcam::test::env_or("EFFCAM_SOURCE_DIR", ".") + "/tests/image/make_pil_suite.py' '" +
                                out.string() + "'";
    REQUIRE_MESSAGE(std::system(command.c_str()) == 0, "suite script failed: " << command);
    return out;
  }();
  return dir;
}

std::vector<std::vector<std::string>> suite_cases(const std::string& kind) {
  std::ifstream manifest(pil_suite() / "manifest.txt");
  REQUIRE(manifest.good());
  std::vector<std::vector<std::string>> cases;
  for (std::string line; std::getline(manifest, line);) {
    std::istringstream fields(line);
    std::vector<std::string> words{std::istream_iterator<std::string>(fields), std::istream_iterator<std::string>()};
    if (!words.empty() && words[0] == kind) cases.emplace_back(words.begin() + 1, words.end());
  }
  REQUIRE(!cases.empty());
  return cases;
}

uint32_t to_u32(const std::string& text) { return static_cast<uint32_t>(std::stoul(text)); }

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif
// Under the sanitizers (about 10x slower) the suite runs every 4th case: that run looks for memory errors and
// undefined behaviour on every decoder, the plain build checks every case's pixels.
constexpr size_t kCaseStride = kSanitized ? 4 : 1;

}  // namespace

TEST_CASE("load_model_image equals PIL's open + [draft] + [exif_transpose] + convert + resize(LANCZOS)") {
  size_t index = 0;
  const auto cases = suite_cases("model");
  for (size_t k = 0; k < cases.size(); k += kCaseStride) {
    const auto& c = cases[k];
    REQUIRE(c.size() == 9);
    INFO(c[0] << " at " << c[1] << "x" << c[2] << "x" << c[3] << " exif " << c[4] << " fast " << c[5]);
    imaging::DecodeOptions options;
    options.apply_exif_orientation = c[4] == "1";
    options.fast_jpeg_dct = c[5] == "1";
    const fs::path path = pil_suite() / c[0];
    // Half the cases from the file, half from memory: the two inputs of every decoder.
    const std::vector<uint8_t> bytes = index % 2 ? read_bytes(path) : std::vector<uint8_t>{};
    const imaging::ImageSource source =
        index++ % 2 ? imaging::ImageSource::memory(bytes, c[0]) : imaging::ImageSource::file(path.string());
    const imaging::ModelImage got =
        imaging::load_model_image(source, to_u32(c[1]), to_u32(c[2]), to_u32(c[3]), options);
    CHECK(got.original_width == to_u32(c[6]));
    CHECK(got.original_height == to_u32(c[7]));
    CHECK(got.image.width == to_u32(c[1]));
    CHECK(got.image.height == to_u32(c[2]));
    const Difference d = compare(got.image.pixels, read_bytes(pil_suite() / c[8]));
    CHECK_MESSAGE(d.max == 0, "mean |diff| " << d.mean << ", max " << d.max);
    if (options.apply_exif_orientation) CHECK(got.applied_orientation == got.exif_orientation);
    if (options.apply_exif_orientation && c[0].find("_exif") != std::string::npos) {
      CHECK(got.exif_orientation != imaging::Orientation::Normal);
    }
  }
}

TEST_CASE("what PIL refuses is refused with one line naming the problem (ErrorCode::Image)") {
  for (const auto& c : suite_cases("refuse")) {
    std::string words;
    for (size_t i = 1; i < c.size(); ++i) words += (i > 1 ? " " : "") + c[i];
    INFO(c[0] << ": expecting '" << words << "'");
    const fs::path path = pil_suite() / c[0];
    const std::vector<uint8_t> bytes = read_bytes(path);
    for (const imaging::ImageSource& source :
         {imaging::ImageSource::file(path.string()), imaging::ImageSource::memory(bytes, c[0])}) {
      const auto start = std::chrono::steady_clock::now();
      try {
        imaging::load_model_image(source, 224, 224, 3);
        FAIL("decoded");
      } catch (const effcam::Error& e) {
        const std::string message = e.what();
        INFO(message);
        CHECK(e.code() == effcam::ErrorCode::Image);
        CHECK(message.find(words) != std::string::npos);
        CHECK(message.find(c[0]) != std::string::npos);
        CHECK(message.find('\n') == std::string::npos);
      }
      CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(500));
    }
  }
}

TEST_CASE("damaged files: one line or a decode, never a crash; truncation refused where PIL refuses it") {
  size_t refused = 0, decoded = 0;
  for (const auto& c : suite_cases("hostile")) {
    INFO(c[0]);
    const bool pil_decodes = c[1] == "1";
    const std::vector<uint8_t> bytes = read_bytes(pil_suite() / c[0]);
    // Lying headers included, no file costs more than its data: the 8000x8000-declared JPEGs stop where their
    // 333x251 of data does.
    const auto start = std::chrono::steady_clock::now();
    struct Elapsed {
      std::chrono::steady_clock::time_point start;
      ~Elapsed() { CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(kSanitized ? 5 : 1)); }
    } elapsed{start};
    try {
      const imaging::ModelImage got = imaging::load_model_image(imaging::ImageSource::memory(bytes, c[0]), 224, 224, 3);
      CHECK(got.image.pixels.size() == size_t{224} * 224 * 3);
      // A cut file PIL refuses is refused (PIL raises "image file is truncated"; so does effcam).
      if (c[0].find(".cut") != std::string::npos) CHECK(pil_decodes);
      ++decoded;
    } catch (const effcam::Error& e) {
      const std::string message = e.what();
      INFO(message);
      CHECK(e.code() == effcam::ErrorCode::Image);
      CHECK(message.find(c[0]) != std::string::npos);
      CHECK(message.find('\n') == std::string::npos);
      ++refused;
    }
  }
  MESSAGE(refused << " damaged files refused, " << decoded << " decoded");
}

TEST_CASE("write_overlay and write_heatmap stream the original-size pictures bit for bit") {
  imaging::CamMap cam;
  cam.height = 3;
  cam.width = 4;
  cam.normalized = {0.0f, 0.2f, 0.4f, 0.3f, 0.1f, 1.0f, 0.8f, 0.2f, 0.0f, 0.5f, 0.6f, 0.1f};
  const fs::path out = effcam::test::testdata_dir() / "image-overlays";
  fs::create_directories(out);
  SUBCASE("heatmap") {
    imaging::write_heatmap(cam, 333, 251, (out / "heat.png").string());
    const Image expected = imaging::render_heatmap(cam, 333, 251);
    CHECK(imaging::load_image((out / "heat.png").string(), 3).pixels == expected.pixels);
    CHECK(imaging::encode_heatmap(cam, 333, 251, imaging::Encoding::Jpeg) ==
          imaging::encode_image(expected, imaging::Encoding::Jpeg));
  }
  // (file, channels, apply EXIF): no orientation, a mirror (streamed), a rotation (decoded whole), gray, PNG.
  struct Case {
    std::string file;
    uint32_t channels;
    bool exif;
  };
  const std::vector<Case> cases = {
      {"face_q75_420.jpg", 3, false}, {"face_exif2.jpg", 3, true}, {"face_exif6.jpg", 3, true},
      {"face_exif6.jpg", 1, false},   {"synth_rgba.png", 1, false}, {"interlaced.png", 3, false}};
  for (const Case& c : cases) {
    const std::string& file = c.file;
    const uint32_t channels = c.channels;
    const bool exif = c.exif;
    INFO(file << " channels " << channels << " exif " << exif);
    imaging::DecodeOptions options;
    options.apply_exif_orientation = exif;
    const imaging::ImageSource source = imaging::ImageSource::file((pil_suite() / file).string());
    const Image picture = imaging::decode_full_size(source, channels, options);
    const Image expected =
        imaging::blend_overlay(picture, imaging::render_heatmap(cam, picture.width, picture.height), 0.4f);
    imaging::write_overlay(source, channels, options, cam, (out / "overlay.png").string(), 0.4f);
    const Image written = imaging::load_image((out / "overlay.png").string(), 3);
    CHECK(written.width == expected.width);
    CHECK(written.height == expected.height);
    CHECK(written.pixels == expected.pixels);
    // In memory: the same bytes as encode_image of the whole-image result.
    CHECK(imaging::encode_overlay(source, channels, options, cam, imaging::Encoding::Png) ==
          imaging::encode_image(expected, imaging::Encoding::Png));
    // JPEG: the same pixels through the same encoder give the same file.
    imaging::write_overlay(source, channels, options, cam, (out / "overlay.jpg").string(), 0.4f);
    imaging::write_image(expected, (out / "expected.jpg").string());
    CHECK(read_bytes(out / "overlay.jpg") == read_bytes(out / "expected.jpg"));
  }
}
