// CAM formulas against numpy, jet against matplotlib, upsampling against PIL, the blend against the Keras
// tutorial's arithmetic (all computed at test time by cam_reference.py), plus properties, empty maps and I/O.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "imaging/cam.h"
#include "effcam/error.hpp"
#include "imaging/image.h"
#include "imaging/overlay.h"
#include "tests/test_support.h"

namespace {

namespace fs = std::filesystem;
using effcam::imaging::CamMap;
using effcam::imaging::CamMethod;
using effcam::imaging::Image;

constexpr CamMethod kAllMethods[] = {CamMethod::GradCam,  CamMethod::GradCamPlusPlus, CamMethod::HiResCam,
                                     CamMethod::XGradCam, CamMethod::LayerCam,        CamMethod::EigenCam};

template <typename T>
std::vector<T> read_raw(const fs::path& path, size_t count) {
  std::ifstream file(path, std::ios::binary);
  REQUIRE_MESSAGE(file.good(), "cannot open " << path);
  std::vector<T> values(count);
  file.read(reinterpret_cast<char*>(values.data()), static_cast<std::streamsize>(count * sizeof(T)));
  REQUIRE_MESSAGE(file.gcount() == static_cast<std::streamsize>(count * sizeof(T)), path << " is short");
  REQUIRE_MESSAGE(file.peek() == EOF, path << " is longer than " << count << " values");
  return values;
}

fs::path reference_dir() { return effcam::test::testdata_dir() / "cam"; }

// cam_reference.py's manifest lines, generated once per run of this executable.
const std::vector<std::string>& reference_cases() {
  static const std::vector<std::string> lines = [] {
    const std::string python = effcam::test::env_or("EFFCAM_PYTHON", "/usr/bin/python3");
    const std::string script = effcam::test::env_or("EFFCAM_SOURCE_DIR", ".") + "/tests/cam/cam_reference.py";
    const std::string command = python + " '" + script + "' '" + reference_dir().string() + "'";
    REQUIRE_MESSAGE(std::system(command.c_str()) == 0, "reference script failed: " << command);
    std::ifstream manifest(reference_dir() / "manifest.txt");
    std::vector<std::string> result;
    for (std::string line; std::getline(manifest, line);)
      if (!line.empty()) result.push_back(line);
    REQUIRE(!result.empty());
    return result;
  }();
  return lines;
}

std::vector<std::istringstream> cases_of(const std::string& kind) {
  std::vector<std::istringstream> found;
  for (const std::string& line : reference_cases()) {
    std::istringstream fields(line);
    std::string first;
    fields >> first;
    if (first == kind) found.push_back(std::move(fields));
  }
  REQUIRE_MESSAGE(!found.empty(), "no '" << kind << "' case in the manifest");
  return found;
}

bool all_finite(const std::vector<float>& values) {
  return std::all_of(values.begin(), values.end(), [](float x) { return std::isfinite(x); });
}

void check_empty(const CamMap& cam) {
  CHECK(cam.empty);
  CHECK(all_finite(cam.raw));
  CHECK(std::all_of(cam.normalized.begin(), cam.normalized.end(), [](float x) { return x == 0.0f; }));
}

double max_abs_difference(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(double{a[i]} - b[i]));
  return worst;
}

std::vector<float> random_values(size_t count, std::mt19937& rng, float low, float high) {
  std::uniform_real_distribution<float> dist(low, high);
  std::vector<float> values(count);
  for (float& x : values) x = dist(rng);
  return values;
}

}  // namespace

TEST_CASE("CAM method names round-trip and unknown names are refused with the list") {
  for (CamMethod method : kAllMethods) CHECK(effcam::imaging::parse_cam_method(effcam::imaging::cam_method_name(method)) == method);
  CHECK(effcam::imaging::cam_method_name(CamMethod::GradCamPlusPlus) == "gradcam++");
  for (CamMethod method : kAllMethods) CHECK(effcam::imaging::cam_needs_gradient(method) == (method != CamMethod::EigenCam));
  try {
    effcam::imaging::parse_cam_method("GradCAM");
    FAIL("an unknown name was accepted");
  } catch (const effcam::Error& error) {
    const std::string message = error.what();
    CHECK(message.find("'GradCAM'") != std::string::npos);
    CHECK(message.find("gradcam, gradcam++, hirescam, xgradcam, layercam, eigencam") != std::string::npos);
  }
  CHECK_THROWS_AS(effcam::imaging::parse_cam_method(""), effcam::Error);
}

TEST_CASE("every method matches numpy's formulas (pytorch-grad-cam) within 1e-5 of the map's scale") {
  for (auto& fields : cases_of("cam")) {
    std::string name;
    uint32_t h = 0, w = 0, c = 0;
    fields >> name >> h >> w >> c;
    const size_t count = size_t{h} * w * c;
    const auto activations = read_raw<float>(reference_dir() / (name + ".act.f32"), count);
    const auto gradients = read_raw<float>(reference_dir() / (name + ".grad.f32"), count);
    for (CamMethod method : kAllMethods) {
      const std::string method_name(effcam::imaging::cam_method_name(method));
      CAPTURE(name);
      CAPTURE(method_name);
      const auto expected = read_raw<double>(reference_dir() / (name + "." + method_name + ".f64"), size_t{h} * w);
      const CamMap cam = effcam::imaging::compute_cam(method, activations, gradients, h, w, c);
      REQUIRE(cam.height == h);
      REQUIRE(cam.width == w);
      REQUIRE(cam.raw.size() == expected.size());
      REQUIRE(cam.normalized.size() == expected.size());

      double scale = 0.0, peak = 0.0;
      for (double x : expected) {
        scale = std::max(scale, std::abs(x));
        peak = std::max(peak, x);
      }
      double raw_error = 0.0, normalized_error = 0.0;
      for (size_t i = 0; i < expected.size(); ++i) {
        raw_error = std::max(raw_error, std::abs(cam.raw[i] - expected[i]));
        const double normalized = peak > 0.0 ? std::max(expected[i], 0.0) / peak : 0.0;
        normalized_error = std::max(normalized_error, std::abs(cam.normalized[i] - normalized));
      }
      // A map that is zero up to rounding (EigenCAM of a single position) has no scale of its own.
      CHECK(raw_error <= 1e-5 * std::max(scale, 1e-9));
      if (scale > 1e-9) {
        CHECK(normalized_error <= 1e-5);
        CHECK(cam.empty == !(peak > 0.0));
      } else {
        check_empty(cam);
      }
    }
  }
}

TEST_CASE("maps with nothing positive are empty: zeros, never NaN") {
  constexpr uint32_t h = 4, w = 5, c = 6;
  std::mt19937 rng(7);
  const auto positive = random_values(h * w * c, rng, 0.1f, 2.0f);
  const auto negative = random_values(h * w * c, rng, -2.0f, -0.1f);
  SUBCASE("positive activations, negative gradients") {
    for (CamMethod method : {CamMethod::GradCam, CamMethod::HiResCam, CamMethod::XGradCam, CamMethod::LayerCam,
                             CamMethod::GradCamPlusPlus}) {
      CAPTURE(effcam::imaging::cam_method_name(method));
      const CamMap cam = effcam::imaging::compute_cam(method, positive, negative, h, w, c);
      check_empty(cam);
      if (method != CamMethod::LayerCam && method != CamMethod::GradCamPlusPlus)  // these two: exactly 0
        CHECK(*std::max_element(cam.raw.begin(), cam.raw.end()) < 0.0f);
    }
  }
  SUBCASE("constant activations have no principal component") {
    check_empty(effcam::imaging::compute_cam(CamMethod::EigenCam, std::vector<float>(h * w * c, 3.0f), {}, h, w, c));
  }
  SUBCASE("non-finite inputs") {
    auto gradients = random_values(h * w * c, rng, -1.0f, 1.0f);
    gradients[5] = std::nanf("");
    check_empty(effcam::imaging::compute_cam(CamMethod::GradCam, positive, gradients, h, w, c));  // NaN weight everywhere
    gradients[5] = INFINITY;
    const CamMap hires = effcam::imaging::compute_cam(CamMethod::HiResCam, positive, gradients, h, w, c);
    CHECK(all_finite(hires.raw));
    CHECK(all_finite(hires.normalized));
    CHECK(hires.raw[0] == 0.0f);  // the position holding the infinity reads as 0
  }
  SUBCASE("EigenCAM reads non-finite activations as 0, as get_2d_projection zeroes NaNs") {
    auto activations = positive;
    activations[7] = 0.0f;
    const CamMap clean = effcam::imaging::compute_cam(CamMethod::EigenCam, activations, {}, h, w, c);
    activations[7] = std::nanf("");
    const CamMap with_nan = effcam::imaging::compute_cam(CamMethod::EigenCam, activations, {}, h, w, c);
    CHECK(max_abs_difference(clean.raw, with_nan.raw) == 0.0);
    CHECK(!with_nan.empty);
  }
}

TEST_CASE("Grad-CAM equals HiResCAM when the gradient is constant over space (a GAP + Dense head)") {
  constexpr uint32_t h = 7, w = 7, c = 40;
  std::mt19937 rng(11);
  const auto activations = random_values(h * w * c, rng, -0.3f, 4.0f);
  const auto dense_column = random_values(c, rng, -1.0f, 1.0f);
  // d logit / d A[p, k] = W[k, class] / (H * W) for GlobalAveragePooling followed by Dense.
  std::vector<float> gradients(h * w * c);
  for (size_t i = 0; i < gradients.size(); ++i) gradients[i] = dense_column[i % c] / (h * w);
  const CamMap grad_cam = effcam::imaging::compute_cam(CamMethod::GradCam, activations, gradients, h, w, c);
  const CamMap hires_cam = effcam::imaging::compute_cam(CamMethod::HiResCam, activations, gradients, h, w, c);
  float scale = 0.0f;
  for (float x : hires_cam.raw) scale = std::max(scale, std::abs(x));
  REQUIRE(scale > 0.0f);
  CHECK(max_abs_difference(grad_cam.raw, hires_cam.raw) <= 1e-6 * scale);
  CHECK(max_abs_difference(grad_cam.normalized, hires_cam.normalized) <= 1e-6);
  CHECK(!grad_cam.empty);

  // Scaling the score (e.g. the 1/(HW) factor) scales the raw map and leaves the normalized one alone.
  std::vector<float> scaled(gradients);
  for (float& g : scaled) g *= h * w;
  const CamMap grad_cam_scaled = effcam::imaging::compute_cam(CamMethod::GradCam, activations, scaled, h, w, c);
  CHECK(max_abs_difference(grad_cam.normalized, grad_cam_scaled.normalized) <= 1e-6);
  CHECK(std::abs(grad_cam_scaled.raw[3] - grad_cam.raw[3] * h * w) <= 1e-5 * scale * h * w);

  // With non-negative gradients, LayerCAM's relu changes nothing: it equals HiResCAM.
  for (float& g : scaled) g = std::abs(g);
  const CamMap layer = effcam::imaging::compute_cam(CamMethod::LayerCam, activations, scaled, h, w, c);
  const CamMap hires_positive = effcam::imaging::compute_cam(CamMethod::HiResCam, activations, scaled, h, w, c);
  CHECK(max_abs_difference(layer.raw, hires_positive.raw) == 0.0);
}

TEST_CASE("compute_cam refuses inconsistent shapes") {
  const std::vector<float> values(24, 1.0f);
  CHECK_THROWS_AS(effcam::imaging::compute_cam(CamMethod::GradCam, values, values, 0, 4, 6), effcam::Error);
  CHECK_THROWS_AS(effcam::imaging::compute_cam(CamMethod::GradCam, values, values, 2, 3, 5), effcam::Error);
  CHECK_THROWS_AS(effcam::imaging::compute_cam(CamMethod::HiResCam, values, {values.data(), 23}, 2, 2, 6), effcam::Error);
  CHECK_THROWS_AS(effcam::imaging::compute_cam(CamMethod::GradCam, values, {}, 2, 2, 6), effcam::Error);
  // 2^32-1 cubed wraps around 64 bits; the check must not be fooled into reading past the span.
  CHECK_THROWS_AS(effcam::imaging::compute_cam(CamMethod::GradCam, values, values, 0xffffffffu, 0xffffffffu, 0xffffffffu),
                  effcam::Error);
  CHECK_NOTHROW(effcam::imaging::compute_cam(CamMethod::EigenCam, values, {}, 2, 2, 6));  // no gradient needed
  // EigenCAM's Gram matrix is min(H*W, C)^2 doubles: refused past 1024 rather than allocated.
  const std::vector<float> wide(size_t{33} * 33 * 1025, 1.0f);
  CHECK_THROWS_AS(effcam::imaging::compute_cam(CamMethod::EigenCam, wide, {}, 33, 33, 1025), effcam::Error);
}

TEST_CASE("EigenCAM's sign puts a strongly activated spot on the positive side") {
  // Both Gram sides: fewer positions than channels (4x4x32), and more (6x6x8).
  for (const auto& shape : {std::array<uint32_t, 3>{4, 4, 32}, std::array<uint32_t, 3>{6, 6, 8}}) {
    const uint32_t h = shape[0], w = shape[1], c = shape[2];
    std::mt19937 rng(h * 100 + c);
    auto activations = random_values(size_t{h} * w * c, rng, 0.0f, 0.2f);
    const size_t hot = w + 2;  // row 1, column 2
    for (size_t k = 0; k < c; ++k) activations[hot * c + k] += 3.0f;
    const CamMap cam = effcam::imaging::compute_cam(CamMethod::EigenCam, activations, {}, h, w, c);
    CAPTURE(c);
    REQUIRE(!cam.empty);
    CHECK(cam.normalized[hot] == 1.0f);
    CHECK(std::max_element(cam.raw.begin(), cam.raw.end()) - cam.raw.begin() == static_cast<std::ptrdiff_t>(hot));
  }
}

TEST_CASE("the jet colormap is matplotlib's, through the tutorial's 8-bit conversion") {
  auto fields = std::move(cases_of("jet").front());
  std::string source;
  fields >> source;
  const auto expected = read_raw<uint8_t>(reference_dir() / "jet.u8", 256 * 3);
  const auto& colors = effcam::imaging::jet_colormap();
  // From matplotlib itself the table must match exactly; a table interpolated from the segment data by numpy
  // may round the other way at a breakpoint.
  const int tolerance = source == "matplotlib" ? 0 : 1;
  if (source != "matplotlib") MESSAGE("python3-matplotlib is absent: jet checked against the segment table");
  int worst = 0;
  for (int i = 0; i < 256; ++i)
    for (int ch = 0; ch < 3; ++ch) worst = std::max(worst, std::abs(colors[i][ch] - expected[i * 3 + ch]));
  CHECK(worst <= tolerance);
  CHECK(colors[0] == std::array<uint8_t, 3>{0, 0, 127});  // dark blue ... dark red
  CHECK(colors[255] == std::array<uint8_t, 3>{127, 0, 0});
}

TEST_CASE("bilinear upsampling matches PIL and the heatmap colours follow it") {
  for (auto& fields : cases_of("upsample")) {
    std::string name;
    uint32_t h = 0, w = 0, out_w = 0, out_h = 0;
    fields >> name >> h >> w >> out_w >> out_h;
    CAPTURE(name);
    CamMap cam;
    cam.height = h;
    cam.width = w;
    cam.normalized = read_raw<float>(reference_dir() / (name + ".map.f32"), size_t{h} * w);
    cam.empty = false;
    const size_t count = size_t{out_w} * out_h;
    const auto expected = read_raw<float>(reference_dir() / (name + ".pil.f32"), count);
    const auto expected_index = read_raw<uint8_t>(reference_dir() / (name + ".index.u8"), count);

    const std::vector<float> upsampled = effcam::imaging::upsample_map(cam, out_w, out_h);
    CHECK(max_abs_difference(upsampled, expected) <= 1e-5);

    // Colour = jet[uint8(255 * value)]; the truncation may flip by one where PIL's float32 rounding differs.
    const Image heatmap = effcam::imaging::render_heatmap(cam, out_w, out_h);
    REQUIRE(heatmap.width == out_w);
    REQUIRE(heatmap.height == out_h);
    REQUIRE(heatmap.channels == 3);
    REQUIRE(heatmap.pixels.size() == count * 3);
    const auto& colors = effcam::imaging::jet_colormap();
    size_t mismatches = 0;
    for (size_t i = 0; i < count; ++i) {
      const std::array<uint8_t, 3> pixel = {heatmap.pixels[i * 3], heatmap.pixels[i * 3 + 1],
                                            heatmap.pixels[i * 3 + 2]};
      const int index = expected_index[i];
      bool near = false;
      for (int j = std::max(index - 1, 0); j <= std::min(index + 1, 255); ++j) near = near || colors[j] == pixel;
      if (!near) ++mismatches;
    }
    CHECK(mismatches == 0);
  }
}

TEST_CASE("render_heatmap and upsample_map refuse bad maps and sizes") {
  CamMap cam;
  cam.height = 2;
  cam.width = 2;
  cam.normalized = {0.0f, 1.0f, 0.5f};  // one value short
  CHECK_THROWS_AS(effcam::imaging::upsample_map(cam, 4, 4), effcam::Error);
  cam.normalized.push_back(std::nanf(""));  // a hand-made map's NaN renders as 0
  CHECK_THROWS_AS(effcam::imaging::render_heatmap(cam, 0, 4), effcam::Error);
  CHECK_THROWS_AS(effcam::imaging::render_heatmap(cam, 100000, 100000), effcam::Error);
  const Image image = effcam::imaging::render_heatmap(cam, 2, 2);
  CHECK(std::equal(image.pixels.end() - 3, image.pixels.end(), effcam::imaging::jet_colormap()[0].begin()));
}

TEST_CASE("blend_overlay reproduces the Keras tutorial's superimpose + array_to_img") {
  for (auto& fields : cases_of("blend")) {
    std::string name;
    uint32_t w = 0, h = 0, channels = 0;
    float alpha = 0.0f;
    fields >> name >> w >> h >> channels >> alpha;
    CAPTURE(name);
    const Image image{w, h, channels,
                      read_raw<uint8_t>(reference_dir() / (name + ".image.u8"), size_t{w} * h * channels)};
    const Image heatmap{w, h, 3, read_raw<uint8_t>(reference_dir() / (name + ".heat.u8"), size_t{w} * h * 3)};
    const auto expected = read_raw<uint8_t>(reference_dir() / (name + ".blend.u8"), size_t{w} * h * 3);
    const Image blended = effcam::imaging::blend_overlay(image, heatmap, alpha);
    REQUIRE(blended.width == w);
    REQUIRE(blended.height == h);
    REQUIRE(blended.channels == 3);
    CHECK(blended.pixels == expected);
  }
}

TEST_CASE("blend_overlay refuses mismatched inputs") {
  const Image rgb{4, 3, 3, std::vector<uint8_t>(36, 9)};
  const Image small{3, 3, 3, std::vector<uint8_t>(27, 9)};
  const Image rgba{4, 3, 4, std::vector<uint8_t>(48, 9)};
  const Image broken{4, 3, 3, std::vector<uint8_t>(35, 9)};
  CHECK_THROWS_AS(effcam::imaging::blend_overlay(rgb, small), effcam::Error);
  CHECK_THROWS_AS(effcam::imaging::blend_overlay(rgba, rgb), effcam::Error);
  CHECK_THROWS_AS(effcam::imaging::blend_overlay(rgb, rgba), effcam::Error);
  CHECK_THROWS_AS(effcam::imaging::blend_overlay(broken, rgb), effcam::Error);
  CHECK_THROWS_AS(effcam::imaging::blend_overlay(rgb, rgb, std::nanf("")), effcam::Error);
}

TEST_CASE("write_image round-trips PNG exactly and JPEG closely") {
  const fs::path dir = effcam::test::testdata_dir() / "cam" / "written";
  fs::create_directories(dir);
  std::mt19937 rng(3);
  // A smooth heatmap-like picture, so JPEG's error stays small; plus noise in the PNG-only gray image.
  CamMap cam;
  cam.height = 3;
  cam.width = 4;
  cam.normalized = {0.0f, 0.2f, 0.4f, 0.3f, 0.1f, 1.0f, 0.8f, 0.2f, 0.0f, 0.5f, 0.6f, 0.1f};
  const Image heatmap = effcam::imaging::render_heatmap(cam, 64, 48);
  Image gray{31, 17, 1, {}};
  for (size_t i = 0; i < size_t{31} * 17; ++i) gray.pixels.push_back(static_cast<uint8_t>(rng()));

  effcam::imaging::write_image(heatmap, (dir / "heat.png").string());
  const Image png = effcam::imaging::load_image((dir / "heat.png").string(), 3);
  CHECK(png.width == heatmap.width);
  CHECK(png.height == heatmap.height);
  CHECK(png.pixels == heatmap.pixels);

  effcam::imaging::write_image(gray, (dir / "gray.PNG").string());
  CHECK(effcam::imaging::load_image((dir / "gray.PNG").string(), 1).pixels == gray.pixels);

  for (const char* file : {"heat.jpg", "heat.jpeg"}) {
    effcam::imaging::write_image(heatmap, (dir / file).string());
    const Image jpeg = effcam::imaging::load_image((dir / file).string(), 3);
    REQUIRE(jpeg.pixels.size() == heatmap.pixels.size());
    double total = 0.0;
    for (size_t i = 0; i < jpeg.pixels.size(); ++i) total += std::abs(jpeg.pixels[i] - heatmap.pixels[i]);
    const double mean = total / static_cast<double>(jpeg.pixels.size());
    MESSAGE(std::string(file) << ": mean |diff| " << mean);
    CHECK(mean < 4.0);
  }

  // Overwriting goes through the rename too, and leaves no temporary files.
  effcam::imaging::write_image(gray, (dir / "gray.PNG").string());
  for (const auto& entry : fs::directory_iterator(dir))
    CHECK_MESSAGE(entry.path().string().find(".tmp-") == std::string::npos, "left behind: " << entry.path());
}

TEST_CASE("write_image refuses bad paths and images, naming the path") {
  const fs::path dir = effcam::test::testdata_dir() / "cam" / "bad";
  fs::remove_all(dir);
  fs::create_directories(dir / "folder.png");
  const Image image{2, 2, 3, std::vector<uint8_t>(12, 200)};
  const auto message_of = [&](const Image& what, const std::string& path) -> std::string {
    try {
      effcam::imaging::write_image(what, path);
    } catch (const effcam::Error& error) {
      return error.what();
    }
    return "(no error)";
  };
  for (const std::string& path : {(dir / "heat.bmp").string(), (dir / "no-extension").string(),
                                  (dir / "missing" / "heat.png").string(), (dir / "folder.png").string(),
                                  std::string()}) {
    CAPTURE(path);
    const std::string message = message_of(image, path);
    CHECK(message.find("cannot write image '" + path + "'") != std::string::npos);
  }
  CHECK(message_of(Image{2, 2, 3, std::vector<uint8_t>(11)}, (dir / "short.png").string()) != "(no error)");
  CHECK(message_of(Image{0, 0, 3, {}}, (dir / "empty.jpg").string()) != "(no error)");
  CHECK(message_of(Image{70000, 1, 1, std::vector<uint8_t>(70000)}, (dir / "wide.jpg").string()) != "(no error)");
  size_t entries = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir)) ++entries;
  CHECK(entries == 1);  // only folder.png: nothing written, no temporary left behind
}
