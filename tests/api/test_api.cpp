// The C++ API (include/effcam/effcam.hpp): loading, every image source, options, errors, JSON, and predictors on
// several threads over one model.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "base/process_memory.h"
#include "effcam/effcam.hpp"
#include "tests/api/api_test_model.h"
#include "tests/test_support.h"

namespace {

using effcam::test::small_model_bytes;
using effcam::test::small_model_path;
using effcam::test::test_picture;
using effcam::test::test_png;

#ifdef EFFCAM_TEST_SANITIZED
constexpr int kThreadCalls = 100;  // per thread; the sanitizers make each call ~20x slower
#else
constexpr int kThreadCalls = 5000;  // per thread: 10,000 calls in all
#endif
constexpr int kCamEvery = 16;  // every 16th call also runs Grad-CAM (the rest: the forward pass)

effcam::PredictOptions with_cam(effcam::CamMethod method = effcam::CamMethod::GradCam) {
  effcam::PredictOptions options;
  options.cam = method;
  return options;
}

}  // namespace

TEST_CASE("Model: from a path and from a buffer, the same model") {
  const effcam::Model file = effcam::Model::load(small_model_path());
  const effcam::Model buffer = effcam::Model::from_buffer(small_model_bytes(), "small");
  for (const effcam::Model* m : {&file, &buffer}) {
    CHECK(m->input_height() == 224);
    CHECK(m->input_width() == 224);
    CHECK(m->input_channels() == 3);
    CHECK(m->classes() == 5);
    CHECK(m->has_labels());
    CHECK(m->labels()[0] == "apple pie");
    CHECK(m->labels()[3].empty());  // the file's own (empty) label
    CHECK(m->default_cam_layer() == "stem_conv");
    CHECK(m->cam_layer("stem_conv").width == 112);
    CHECK(m->file_bytes() == small_model_bytes().size());
    CHECK(m->weight_bytes() > 0);
    CHECK(m->weight_bytes() < m->file_bytes());
  }
  CHECK(file.path() == small_model_path());
  CHECK(buffer.path() == "small");
  CHECK_THROWS_WITH_AS(file.cam_layer("no_such_layer"), doctest::Contains("'no_such_layer'"), effcam::Error);
}

TEST_CASE("Model: bad files give Io / Format errors naming the problem") {
  try {
    effcam::Model::load("/nonexistent/model.effcam");
    FAIL("no error");
  } catch (const effcam::Error& e) {
    CHECK(e.code() == effcam::ErrorCode::Io);
    CHECK(std::string(e.what()).find("/nonexistent/model.effcam") != std::string::npos);
  }
  std::vector<uint8_t> truncated(small_model_bytes().begin(), small_model_bytes().begin() + 100);
  try {
    effcam::Model::from_buffer(truncated, "cut");
    FAIL("no error");
  } catch (const effcam::Error& e) {
    CHECK(e.code() == effcam::ErrorCode::Format);
    CHECK(std::string(e.what()).rfind("cut: ", 0) == 0);
  }
  CHECK_THROWS_AS(effcam::Model::from_buffer({}, "empty"), effcam::Error);
}

TEST_CASE("predict: a file, its bytes and its pixels (packed or strided) give the same answer") {
  const effcam::Model model = effcam::Model::load(small_model_path());
  effcam::Predictor predictor(model);
  const effcam::imaging::Image picture = test_picture(300, 200, 1);
  const std::vector<uint8_t> png = effcam::imaging::encode_image(picture, effcam::imaging::Encoding::Png);
  const std::string png_path = small_model_path() + ".png";
  std::ofstream(png_path, std::ios::binary).write(reinterpret_cast<const char*>(png.data()),
                                                  static_cast<std::streamsize>(png.size()));

  const effcam::Prediction from_bytes = predictor.predict(effcam::ImageSource::encoded(png, "bytes"), with_cam());
  const effcam::Prediction from_file = predictor.predict(effcam::ImageSource::file(png_path), with_cam());
  const effcam::Prediction packed = predictor.predict(
      effcam::ImageSource::pixels(picture.pixels, picture.width, picture.height, 3), with_cam());
  // The same pixels planar (CHW) and as RGBA with the rows padded: strides reach them without a copy.
  std::vector<uint8_t> planar(picture.pixels.size()), rgba(size_t{picture.height} * (picture.width * 4 + 12));
  for (uint32_t y = 0; y < picture.height; ++y) {
    for (uint32_t x = 0; x < picture.width; ++x) {
      for (uint32_t k = 0; k < 3; ++k) {
        const uint8_t v = picture.pixels[(size_t{y} * picture.width + x) * 3 + k];
        planar[(size_t{k} * picture.height + y) * picture.width + x] = v;
        rgba[y * (picture.width * 4 + 12) + x * 4 + k] = v;
      }
      rgba[y * (picture.width * 4 + 12) + x * 4 + 3] = 7;  // alpha is dropped, as PIL's convert("RGB") does
    }
  }
  const effcam::Prediction from_planar = predictor.predict(
      effcam::ImageSource::pixels(planar, picture.width, picture.height, 3, picture.width, 1,
                                  size_t{picture.width} * picture.height),
      with_cam());
  const effcam::Prediction from_rgba = predictor.predict(
      effcam::ImageSource::pixels(rgba, picture.width, picture.height, 4, picture.width * 4 + 12), with_cam());

  for (const effcam::Prediction* p : {&from_file, &packed, &from_planar, &from_rgba}) {
    CHECK(p->probabilities == from_bytes.probabilities);
    REQUIRE(p->cam);
    CHECK(p->cam->raw == from_bytes.cam->raw);
    CHECK(p->image_width == 300);
  }
  CHECK(from_bytes.image == "bytes");
  CHECK(from_file.image == png_path);
  REQUIRE(from_bytes.top_k.size() == 5);
  CHECK(std::is_sorted(from_bytes.top_k.begin(), from_bytes.top_k.end(),
                       [](const auto& a, const auto& b) { return a.probability > b.probability; }));
  CHECK(from_bytes.cam->layer == "stem_conv");
  CHECK(from_bytes.cam->class_index == from_bytes.top_k[0].index);
  CHECK(from_bytes.cam->values.size() == size_t{from_bytes.cam->height} * from_bytes.cam->width);
  std::filesystem::remove(png_path);
}

TEST_CASE("convert: labels that do not match the classes, input sizes out of range: argument errors, no file") {
  const std::optional<std::filesystem::path> keras =
      effcam::test::shared_file("models/food101-effv2b0/food101_effv2b0.keras");
  if (!keras) return;
  const std::filesystem::path out = effcam::test::testdata_dir() / "api_convert_bad_labels.effcam";
  std::filesystem::remove(out);
  effcam::ConvertOptions options;
  options.labels = {"a", "b", "c"};
  try {
    effcam::convert(keras->string(), out.string(), options);
    FAIL("3 labels for 101 classes were accepted");
  } catch (const effcam::Error& e) {
    CHECK(e.code() == effcam::ErrorCode::InvalidArgument);
    CHECK(std::string(e.what()) == "3 labels were given but the model has 101 classes");
  }
  CHECK(!std::filesystem::exists(out));
  options.labels.clear();
  for (const auto& size : {std::pair{0u, 5u}, std::pair{224u, 8193u}}) {
    options.input_size = size;
    try {
      effcam::convert(keras->string(), out.string(), options);
      FAIL("input size " << size.first << "x" << size.second << " was accepted");
    } catch (const effcam::Error& e) {
      CHECK(e.code() == effcam::ErrorCode::InvalidArgument);
      CHECK(std::string(e.what()).find("out of range") != std::string::npos);
    }
  }
  CHECK(!std::filesystem::exists(out));
  options.input_size.reset();
  // Still a Format error: a file that is not a Keras model.
  const std::filesystem::path not_keras = effcam::test::testdata_dir() / "api_convert_not_keras.keras";
  std::ofstream(not_keras) << "not a model";
  try {
    effcam::convert(not_keras.string(), out.string(), options);
    FAIL("a text file converted");
  } catch (const effcam::Error& e) {
    CHECK(e.code() == effcam::ErrorCode::Format);
  }
  std::filesystem::remove(not_keras);
}

TEST_CASE("predict: options (top_k, class, score, pictures at both sizes) and JSON") {
  effcam::Predictor predictor(effcam::Model::from_buffer(small_model_bytes()));
  const std::vector<uint8_t> png = test_png(320, 240, 2);
  effcam::PredictOptions options = with_cam(effcam::CamMethod::HiResCam);
  options.top_k = 2;
  options.cam_class = 4;
  options.cam_score = effcam::CamScore::Prob;
  options.pictures.overlay = effcam::ImageFormat::Png;
  options.pictures.heatmap = effcam::ImageFormat::Jpeg;
  effcam::Prediction p = predictor.predict(effcam::ImageSource::encoded(png), options);
  CHECK(p.top_k.size() == 2);
  CHECK(p.cam->class_index == 4);
  CHECK(p.cam->label == "beef carpaccio");
  CHECK(p.cam->score_kind == effcam::CamScore::Prob);
  REQUIRE(p.overlay);
  REQUIRE(p.heatmap);
  CHECK(p.overlay->width == 224);
  CHECK(p.overlay->bytes.size() > 8);
  CHECK(std::memcmp(p.overlay->bytes.data(), "\x89PNG", 4) == 0);
  CHECK(p.heatmap->bytes[0] == 0xFF);  // JPEG SOI
  CHECK(p.heatmap->bytes[1] == 0xD8);
  options.pictures.render_size = effcam::RenderSize::Original;
  const effcam::Prediction original = predictor.predict(effcam::ImageSource::encoded(png), options);
  CHECK(original.overlay->width == 320);
  CHECK(original.overlay->height == 240);

  const std::string json = effcam::to_json(p);
  CHECK(json.find("\"top_k\":[{\"index\":") != std::string::npos);
  CHECK(json.find("\"method\":\"hirescam\"") != std::string::npos);
  CHECK(json.find("\"overlay\"") == std::string::npos);
  effcam::JsonOptions embed;
  embed.model = "small";
  embed.embed_images = true;
  const std::string embedded = effcam::to_json(p, embed);
  CHECK(embedded.find("\"model\":\"small\"") != std::string::npos);
  CHECK(embedded.find("\"overlay\":{\"base64\":\"iVBORw0KGgo") != std::string::npos);  // base64 of the PNG magic
  CHECK(effcam::error_json("x.png", "bad") == R"({"error":"bad","image":"x.png"})");
}

TEST_CASE("predict: bad options and bad images are errors with codes; the predictor stays usable") {
  effcam::Predictor predictor(effcam::Model::from_buffer(small_model_bytes()));
  const std::vector<uint8_t> png = test_png(64, 48, 3);
  const std::vector<uint8_t> garbage = {1, 2, 3, 4, 5, 6, 7, 8};
  auto code_of = [&](auto call) {
    try {
      call();
    } catch (const effcam::Error& e) {
      return e.code();
    }
    return effcam::ErrorCode::Internal;  // no error: a failure below
  };
  CHECK(code_of([&] { predictor.predict(effcam::ImageSource::encoded(garbage)); }) == effcam::ErrorCode::Image);
  CHECK(code_of([&] { predictor.predict(effcam::ImageSource::encoded({})); }) == effcam::ErrorCode::Image);
  CHECK(code_of([&] { predictor.predict(effcam::ImageSource::file("/nonexistent.png")); }) == effcam::ErrorCode::Io);
  effcam::PredictOptions bad_class = with_cam();
  bad_class.cam_class = 5;
  CHECK(code_of([&] { predictor.predict(effcam::ImageSource::encoded(png), bad_class); }) ==
        effcam::ErrorCode::InvalidArgument);
  effcam::PredictOptions bad_layer = with_cam();
  bad_layer.cam_layer = "stem_bn";  // a real layer, but not one this predictor was planned for
  CHECK(code_of([&] { predictor.predict(effcam::ImageSource::encoded(png), bad_layer); }) ==
        effcam::ErrorCode::InvalidArgument);
  effcam::PredictOptions no_cam_overlay;
  no_cam_overlay.pictures.overlay = effcam::ImageFormat::Png;
  CHECK(code_of([&] { predictor.predict(effcam::ImageSource::encoded(png), no_cam_overlay); }) ==
        effcam::ErrorCode::InvalidArgument);
  effcam::PredictOptions zero_k;
  zero_k.top_k = 0;
  CHECK(code_of([&] { predictor.predict(effcam::ImageSource::encoded(png), zero_k); }) ==
        effcam::ErrorCode::InvalidArgument);
  // Pixels whose strides reach past the buffer, zero sizes, 0 or 5 channels.
  const std::vector<uint8_t> pixels(100);
  CHECK_THROWS_AS(effcam::ImageSource::pixels(pixels, 10, 10, 3), effcam::Error);
  CHECK_THROWS_AS(effcam::ImageSource::pixels(pixels, 0, 10, 1), effcam::Error);
  CHECK_THROWS_AS(effcam::ImageSource::pixels(pixels, 10, 10, 1, SIZE_MAX / 2), effcam::Error);
  CHECK_NOTHROW(effcam::ImageSource::pixels(pixels, 10, 10, 1));
  for (const uint32_t channels : {0u, 5u}) {
    try {
      effcam::ImageSource::pixels(pixels, 4, 4, channels, 0, 0, 0, "raw");
      FAIL("pixels with " << channels << " channels were accepted");
    } catch (const effcam::Error& e) {
      CHECK(e.code() == effcam::ErrorCode::InvalidArgument);
      CHECK(std::string(e.what()) == "raw: " + std::to_string(channels) +
                                         " channels; pixels have 1 (L), 2 (LA), 3 (RGB) or 4 (RGBA)");
    }
  }
  // Every count the message names is accepted: 2 (LA) is gray with its alpha dropped, as PIL's convert() does.
  std::vector<uint8_t> gray(64 * 48), gray_alpha(64 * 48 * 2);
  for (size_t i = 0; i < gray.size(); ++i) {
    gray[i] = static_cast<uint8_t>(i * 7 % 251);
    gray_alpha[2 * i] = gray[i];
    gray_alpha[2 * i + 1] = static_cast<uint8_t>(i % 13);
  }
  CHECK(predictor.predict(effcam::ImageSource::pixels(gray_alpha, 64, 48, 2)).probabilities ==
        predictor.predict(effcam::ImageSource::pixels(gray, 64, 48, 1)).probabilities);
  CHECK_THROWS_AS(effcam::parse_cam_method("GradCAM"), effcam::Error);
  CHECK(effcam::parse_cam_method("gradcam++") == effcam::CamMethod::GradCamPlusPlus);
  // Byte sizes (--memory-budget): whole numbers with a binary unit; garbage and overflow are argument errors.
  CHECK(effcam::parse_byte_size("12000000") == 12'000'000);
  CHECK(effcam::parse_byte_size("48MiB") == uint64_t{48} << 20);
  CHECK(effcam::parse_byte_size("48M") == uint64_t{48} << 20);
  CHECK(effcam::parse_byte_size("3K") == 3072);
  CHECK(effcam::parse_byte_size("2GiB") == uint64_t{2} << 30);
  CHECK(effcam::parse_byte_size("7B") == 7);
  for (const char* bad : {"", "K", "-1", "1.5GiB", "12 MiB", "12KB", "12mib", "0x10", "18446744073709551616",
                          "17179869184G", "99999999999999999999999"}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(effcam::parse_byte_size(bad), doctest::Contains("a memory size is a whole number"),
                         effcam::Error);
  }
  CHECK(std::string(effcam::cam_method_name(effcam::CamMethod::LayerCam)) == "layercam");
  // Still usable after every error.
  CHECK(predictor.predict(effcam::ImageSource::encoded(png), with_cam()).cam);
}

namespace {

// The JPEG with an EXIF APP1 segment (little-endian TIFF, one IFD entry: Orientation = tag) right after its SOI.
std::vector<uint8_t> with_exif_orientation(const std::vector<uint8_t>& jpeg, uint8_t tag) {
  const std::vector<uint8_t> app1 = {0xFF, 0xE1, 0, 34, 'E', 'x', 'i', 'f', 0, 0,  // marker, length, "Exif\0\0"
                                     'I', 'I', 42, 0, 8, 0, 0, 0,                    // TIFF header, IFD at 8
                                     1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, tag, 0, 0, 0,  // Orientation, SHORT, 1
                                     0, 0, 0, 0};                                    // no next IFD
  std::vector<uint8_t> out(jpeg.begin(), jpeg.begin() + 2);
  out.insert(out.end(), app1.begin(), app1.end());
  out.insert(out.end(), jpeg.begin() + 2, jpeg.end());
  return out;
}

}  // namespace

TEST_CASE("render: a prediction's pictures drawn again are predict()'s, byte for byte, without the network") {
  effcam::Predictor predictor(effcam::Model::from_buffer(small_model_bytes()));
  const effcam::imaging::Image picture = test_picture(600, 480, 5);
  const std::vector<uint8_t> png = test_png(320, 240, 6);
  // Stored 600x480 on its side (EXIF 6): upright 480x600, and a DCT scale of 2 for the 224x224 input when fast.
  const std::vector<uint8_t> jpeg =
      with_exif_orientation(effcam::imaging::encode_image(picture, effcam::imaging::Encoding::Jpeg, 90), 6);
  struct Case {
    const char* name;
    effcam::ImageSource source;
    bool apply_exif, fast;
  };
  const std::vector<Case> cases = {
      {"png", effcam::ImageSource::encoded(png), false, false},
      {"turned fast jpeg", effcam::ImageSource::encoded(jpeg), true, true},
      {"jpeg", effcam::ImageSource::encoded(jpeg), false, false},
      {"pixels", effcam::ImageSource::pixels(picture.pixels, picture.width, picture.height, 3), false, false},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    effcam::PredictOptions plain = with_cam(effcam::CamMethod::GradCamPlusPlus);
    plain.cam_class = 2;
    plain.apply_exif_orientation = c.apply_exif;
    plain.fast_jpeg_decode = c.fast;
    const effcam::Prediction explained = predictor.predict(c.source, plain);
    if (c.fast) CHECK(explained.jpeg_scale_denominator == 2);
    if (c.apply_exif) CHECK(explained.applied_orientation == 6);
    for (const effcam::RenderSize size : {effcam::RenderSize::Model, effcam::RenderSize::Original}) {
      for (const float alpha : {0.4f, 0.85f}) {
        effcam::RenderOptions render;
        render.render_size = size;
        render.overlay_alpha = alpha;
        render.heatmap = alpha > 0.5f ? effcam::ImageFormat::Jpeg : effcam::ImageFormat::Png;
        render.overlay = alpha > 0.5f ? effcam::ImageFormat::Png : effcam::ImageFormat::Jpeg;
        effcam::PredictOptions with_pictures = plain;
        with_pictures.pictures = render;
        const effcam::Prediction expected = predictor.predict(c.source, with_pictures);
        const effcam::Prediction drawn = predictor.render(explained, c.source, render);
        REQUIRE(drawn.overlay);
        REQUIRE(drawn.heatmap);
        CHECK(drawn.overlay->bytes == expected.overlay->bytes);
        CHECK(drawn.heatmap->bytes == expected.heatmap->bytes);
        CHECK(drawn.overlay->width == expected.overlay->width);
        CHECK(drawn.heatmap->height == expected.heatmap->height);
        CHECK(drawn.cam->values == explained.cam->values);
        CHECK(drawn.probabilities == explained.probabilities);
      }
    }
  }
  // An overlay alone; the prediction's own pictures are replaced, not kept.
  effcam::PredictOptions both = with_cam();
  both.pictures.overlay = both.pictures.heatmap = effcam::ImageFormat::Png;
  const effcam::Prediction pictured = predictor.predict(effcam::ImageSource::encoded(png), both);
  effcam::RenderOptions overlay_only;
  overlay_only.overlay_alpha = 0.9f;
  const effcam::Prediction redrawn = predictor.render(pictured, effcam::ImageSource::encoded(png), overlay_only);
  CHECK(!redrawn.heatmap);
  CHECK(redrawn.overlay->bytes != pictured.overlay->bytes);

  // Errors: no CAM, no picture, bad options, another image, an undecodable one.
  const auto code_of = [&](const effcam::Prediction& p, const std::vector<uint8_t>& image,
                           const effcam::RenderOptions& options) {
    try {
      predictor.render(p, effcam::ImageSource::encoded(image), options);
    } catch (const effcam::Error& e) {
      return e.code();
    }
    return effcam::ErrorCode::Internal;  // no error: a failure below
  };
  const effcam::Prediction no_cam = predictor.predict(effcam::ImageSource::encoded(png));
  CHECK(code_of(no_cam, png, {}) == effcam::ErrorCode::InvalidArgument);
  effcam::RenderOptions nothing;
  nothing.overlay = effcam::ImageFormat::None;
  CHECK(code_of(pictured, png, nothing) == effcam::ErrorCode::InvalidArgument);
  effcam::RenderOptions bad_quality;
  bad_quality.jpeg_quality = 0;
  CHECK(code_of(pictured, png, bad_quality) == effcam::ErrorCode::InvalidArgument);
  CHECK(code_of(pictured, test_png(321, 240, 6), {}) == effcam::ErrorCode::InvalidArgument);
  CHECK(code_of(pictured, {1, 2, 3, 4}, {}) == effcam::ErrorCode::Image);
}

TEST_CASE("Predictor: planned arenas; several CAM layers; forward only") {
  const effcam::Model model = effcam::Model::from_buffer(small_model_bytes());
  effcam::PredictorOptions forward_only;
  forward_only.explain = false;
  effcam::Predictor plain(model, forward_only);
  effcam::PredictorOptions two_layers;
  two_layers.cam_layers = {"stem_conv", "stem_bn"};
  effcam::Predictor both(model, two_layers);
  CHECK(plain.arena_bytes() == plain.forward_arena_bytes());
  CHECK(both.arena_bytes() > plain.arena_bytes());
  CHECK(both.arena_lower_bound_bytes() <= both.arena_bytes());
  CHECK(both.cam_layers() == two_layers.cam_layers);
  const std::vector<uint8_t> png = test_png(224, 224, 4);
  CHECK_THROWS_AS(plain.predict(effcam::ImageSource::encoded(png), with_cam()), effcam::Error);
  effcam::PredictOptions at_bn = with_cam();
  at_bn.cam_layer = "stem_bn";
  const effcam::Prediction bn = both.predict(effcam::ImageSource::encoded(png), at_bn);
  const effcam::Prediction conv = both.predict(effcam::ImageSource::encoded(png), with_cam());
  CHECK(bn.cam->layer == "stem_bn");
  CHECK(conv.cam->layer == "stem_conv");
  CHECK(bn.probabilities == plain.predict(effcam::ImageSource::encoded(png)).probabilities);
  effcam::PredictorOptions bad;
  bad.cam_layers = {"nope"};
  CHECK_THROWS_AS(effcam::Predictor(model, bad), effcam::Error);
  bad = {};
  bad.threads = 0;
  CHECK_THROWS_AS(effcam::Predictor(model, bad), effcam::Error);
  bad = {};
  bad.max_image_pixels = 0;
  CHECK_THROWS_AS(effcam::Predictor(model, bad), effcam::Error);
}

TEST_CASE("Predictor: max_image_pixels refuses larger images before decoding; image_bytes grows with it") {
  const effcam::Model model = effcam::Model::from_buffer(small_model_bytes());
  effcam::PredictorOptions capped;
  capped.max_image_pixels = 64 * 48 - 1;
  effcam::Predictor small(model, capped);
  effcam::Predictor large(model);
  CHECK(small.image_bytes() < large.image_bytes());
  CHECK(small.image_bytes() > 0);
  const std::vector<uint8_t> png = test_png(64, 48, 3);
  try {
    small.predict(effcam::ImageSource::encoded(png));
    FAIL("an image over max_image_pixels was decoded");
  } catch (const effcam::Error& e) {
    CHECK(e.code() == effcam::ErrorCode::Image);
  }
  capped.max_image_pixels = 64 * 48;
  CHECK(effcam::Predictor(model, capped).predict(effcam::ImageSource::encoded(png)).probabilities ==
        large.predict(effcam::ImageSource::encoded(png)).probabilities);
}

TEST_CASE("two threads, two predictors, one model: the single-threaded answers, flat memory") {
  const effcam::Model model = effcam::Model::from_buffer(small_model_bytes());
  std::vector<effcam::imaging::Image> pictures;
  for (uint32_t seed = 0; seed < 4; ++seed) pictures.push_back(test_picture(224, 224, seed));
  std::vector<effcam::Prediction> expected;
  {
    effcam::Predictor single(model);
    for (const auto& picture : pictures) {
      expected.push_back(single.predict(effcam::ImageSource::pixels(picture.pixels, 224, 224, 3), with_cam()));
    }
  }
  std::atomic<int> mismatches{0};
  uint64_t rss_after_warmup[2] = {0, 0}, rss_at_end[2] = {0, 0};
  auto worker = [&](int id) {
    effcam::Predictor predictor(model);
    for (int call = 0; call < kThreadCalls; ++call) {
      const size_t which = static_cast<size_t>(call + id) % pictures.size();
      const auto& picture = pictures[which];
      const bool cam = call % kCamEvery == 0;
      const effcam::Prediction p = predictor.predict(effcam::ImageSource::pixels(picture.pixels, 224, 224, 3),
                                                     cam ? with_cam() : effcam::PredictOptions{});
      if (p.probabilities != expected[which].probabilities || (cam && p.cam->raw != expected[which].cam->raw)) {
        ++mismatches;
      }
      if (call == kThreadCalls / 10) rss_after_warmup[id] = effcam::current_rss_bytes();
    }
    rss_at_end[id] = effcam::current_rss_bytes();
  };
  std::thread a(worker, 0), b(worker, 1);
  a.join();
  b.join();
  CHECK(mismatches == 0);
  const uint64_t warm = std::max(rss_after_warmup[0], rss_after_warmup[1]);
  const uint64_t end = std::max(rss_at_end[0], rss_at_end[1]);
  MESSAGE("RSS after 10% of the calls " << warm << " bytes, at the end " << end << " bytes (" << 2 * kThreadCalls
                                        << " calls)");
#ifndef EFFCAM_TEST_SANITIZED
  CHECK(end <= warm + (1u << 20));  // within 1 MiB: nothing grows per call
#endif
}
