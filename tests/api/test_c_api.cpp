// The C API (include/effcam/effcam.h): every function, its success and each of its error paths. Compiled as C++
// for doctest, but only the C header's declarations are used.
#include <doctest/doctest.h>

#include <cstring>
#include <string>

#include "effcam/effcam.h"
#include "tests/api/api_test_model.h"

namespace {

using effcam::test::small_model_bytes;
using effcam::test::small_model_path;

std::string last_error() { return effcam_last_error(); }

struct Handles {
  effcam_model* model = nullptr;
  effcam_predictor* predictor = nullptr;
  Handles() {
    REQUIRE(effcam_model_load(small_model_path().c_str(), &model) == EFFCAM_OK);
    REQUIRE(effcam_predictor_create(model, nullptr, &predictor) == EFFCAM_OK);
  }
  ~Handles() {
    effcam_predictor_free(predictor);
    effcam_model_free(model);
  }
};

}  // namespace

TEST_CASE("C: version, status names, dispatch") {
  CHECK(effcam_api_version() == EFFCAM_API_VERSION);
  CHECK(std::strlen(effcam_version()) > 0);
  CHECK(std::string(effcam_status_name(EFFCAM_ERROR_IMAGE)) == "image");
  CHECK(std::string(effcam_status_name(static_cast<effcam_status>(99))) == "unknown");
  const std::string current = effcam_dispatch();
  CHECK((current == "avx512" || current == "avx2" || current == "scalar"));
  CHECK(effcam_set_dispatch("sse9") == EFFCAM_ERROR_ARGUMENT);
  CHECK(last_error().find("'sse9'") != std::string::npos);
  CHECK(effcam_set_dispatch(nullptr) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_set_dispatch("scalar") == EFFCAM_OK);
  CHECK(std::string(effcam_dispatch()) == "scalar");
  CHECK(effcam_set_dispatch(current.c_str()) == EFFCAM_OK);
  CHECK(last_error().empty());  // a success clears the thread's last error
}

TEST_CASE("C: models from a file and a buffer, info, labels, CAM layers, errors") {
  effcam_model* model = nullptr;
  CHECK(effcam_model_load(nullptr, &model) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_model_load(small_model_path().c_str(), nullptr) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_model_load("/nonexistent.effcam", &model) == EFFCAM_ERROR_IO);
  CHECK(last_error().find("/nonexistent.effcam") != std::string::npos);
  CHECK(model == nullptr);  // untouched on failure
  const std::vector<uint8_t>& bytes = small_model_bytes();
  CHECK(effcam_model_load_buffer(bytes.data(), 64, &model) == EFFCAM_ERROR_FORMAT);
  CHECK(effcam_model_load_buffer(nullptr, 10, &model) == EFFCAM_ERROR_ARGUMENT);
  std::vector<uint8_t> copy = bytes;
  REQUIRE(effcam_model_load_buffer(copy.data(), copy.size(), &model) == EFFCAM_OK);
  copy.assign(copy.size(), 0);  // the model keeps its own copy

  effcam_model_info info{};
  REQUIRE(effcam_model_get_info(model, &info) == EFFCAM_OK);
  CHECK(info.input_height == 224);
  CHECK(info.input_channels == 3);
  CHECK(info.classes == 5);
  CHECK(info.has_labels == 1);
  CHECK(info.file_bytes == bytes.size());
  CHECK(std::string(info.default_cam_layer) == "stem_conv");
  CHECK(effcam_model_get_info(nullptr, &info) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_model_get_info(model, nullptr) == EFFCAM_ERROR_ARGUMENT);

  const char* label = nullptr;
  REQUIRE(effcam_model_label(model, 2, &label) == EFFCAM_OK);
  CHECK(std::string(label) == "baklava");
  CHECK(effcam_model_label(model, 5, &label) == EFFCAM_ERROR_ARGUMENT);
  CHECK(last_error().find("out of range") != std::string::npos);
  CHECK(effcam_model_label(nullptr, 0, &label) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_model_label(model, 0, nullptr) == EFFCAM_ERROR_ARGUMENT);

  effcam_layer_info layer{};
  REQUIRE(info.cam_layers >= 1);
  bool found = false;
  for (uint32_t i = 0; i < info.cam_layers; ++i) {
    REQUIRE(effcam_model_cam_layer(model, i, &layer) == EFFCAM_OK);
    if (std::string(layer.name) == "stem_conv") {
      found = true;
      CHECK(std::string(layer.class_name) == "Conv2D");
      CHECK(layer.width == 112);
      CHECK(layer.channels == 20);
    }
  }
  CHECK(found);
  CHECK(effcam_model_cam_layer(model, info.cam_layers, &layer) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_model_cam_layer(nullptr, 0, &layer) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_model_cam_layer(model, 0, nullptr) == EFFCAM_ERROR_ARGUMENT);
  effcam_model_free(model);
  effcam_model_free(nullptr);
}

TEST_CASE("C: predictors: options, arena, errors; a predictor outlives its freed model") {
  effcam_model* model = nullptr;
  REQUIRE(effcam_model_load(small_model_path().c_str(), &model) == EFFCAM_OK);
  effcam_predictor_options options;
  effcam_predictor_options_init(&options);
  CHECK(options.threads == 1);
  CHECK(options.explain == 1);
  effcam_predictor* predictor = nullptr;
  CHECK(effcam_predictor_create(nullptr, &options, &predictor) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_predictor_create(model, &options, nullptr) == EFFCAM_ERROR_ARGUMENT);
  options.threads = 0;
  CHECK(effcam_predictor_create(model, &options, &predictor) == EFFCAM_ERROR_ARGUMENT);
  options.threads = 2;
  const char* layers[] = {"nope"};
  options.cam_layers = layers;
  options.cam_layer_count = 1;
  CHECK(effcam_predictor_create(model, &options, &predictor) == EFFCAM_ERROR_ARGUMENT);
  CHECK(last_error().find("nope") != std::string::npos);
  options.cam_layers = nullptr;
  CHECK(effcam_predictor_create(model, &options, &predictor) == EFFCAM_ERROR_ARGUMENT);
  options.cam_layer_count = 0;
  CHECK(options.memory_budget_bytes == 0);
  options.memory_budget_bytes = 1024;  // below any arena: one error naming the smallest
  CHECK(effcam_predictor_create(model, &options, &predictor) == EFFCAM_ERROR_ARGUMENT);
  CHECK(last_error().find("over the memory budget of 1024 bytes") != std::string::npos);
  options.memory_budget_bytes = 0;
  REQUIRE(effcam_predictor_create(model, &options, &predictor) == EFFCAM_OK);
  CHECK(predictor != nullptr);
  CHECK(effcam_predictor_arena_bytes(predictor) > 0);
  CHECK(effcam_predictor_arena_bytes(nullptr) == 0);
  CHECK(effcam_predictor_image_bytes(predictor) > 0);
  CHECK(effcam_predictor_image_bytes(nullptr) == 0);

  effcam_model_free(model);  // the predictor holds its own reference
  const effcam::imaging::Image picture = effcam::test::test_picture(224, 224, 5);
  effcam_prediction* prediction = nullptr;
  REQUIRE(effcam_predict_pixels(predictor, picture.pixels.data(), picture.pixels.size(), 224, 224, 3, 0, nullptr,
                                &prediction) == EFFCAM_OK);
  effcam_prediction_free(prediction);
  effcam_predictor_free(predictor);
  effcam_predictor_free(nullptr);
}

TEST_CASE("C: predict from bytes, a file and pixels; read the prediction; every error path") {
  Handles h;
  const std::vector<uint8_t> png = effcam::test::test_png(300, 200, 6);
  const std::string png_path = small_model_path() + ".c.png";
  std::ofstream(png_path, std::ios::binary).write(reinterpret_cast<const char*>(png.data()),
                                                  static_cast<std::streamsize>(png.size()));
  effcam_predict_options options;
  effcam_predict_options_init(&options);
  CHECK(options.top_k == 5);
  CHECK(options.cam_class == -1);
  options.cam = EFFCAM_CAM_GRADCAM;
  options.top_k = 3;
  options.overlay = EFFCAM_IMAGE_PNG;

  effcam_prediction* from_bytes = nullptr;
  effcam_prediction* from_file = nullptr;
  REQUIRE(effcam_predict_encoded(h.predictor, png.data(), png.size(), "upload", &options, &from_bytes) == EFFCAM_OK);
  REQUIRE(effcam_predict_file(h.predictor, png_path.c_str(), &options, &from_file) == EFFCAM_OK);
  effcam_prediction_view a{}, b{};
  REQUIRE(effcam_prediction_get(from_bytes, &a) == EFFCAM_OK);
  REQUIRE(effcam_prediction_get(from_file, &b) == EFFCAM_OK);
  CHECK(a.classes == 5);
  CHECK(a.top_k_count == 3);
  CHECK(std::memcmp(a.probabilities, b.probabilities, 5 * sizeof(float)) == 0);
  REQUIRE(a.cam != nullptr);
  CHECK(a.cam->method == EFFCAM_CAM_GRADCAM);
  CHECK(std::string(a.cam->layer) == "stem_conv");
  CHECK(a.cam->class_index == a.top_k[0].index);
  CHECK(std::memcmp(a.cam->raw, b.cam->raw, size_t{a.cam->height} * a.cam->width * sizeof(float)) == 0);
  CHECK(a.top_k[0].probability >= a.top_k[1].probability);
  CHECK(a.total_ms >= a.forward_ms);
  CHECK(a.arena_bytes == effcam_predictor_arena_bytes(h.predictor));

  const uint8_t* data = nullptr;
  size_t size = 0;
  REQUIRE(effcam_prediction_overlay(from_bytes, &data, &size) == EFFCAM_OK);
  CHECK(size > 8);
  CHECK(std::memcmp(data, "\x89PNG", 4) == 0);
  CHECK(effcam_prediction_heatmap(from_bytes, &data, &size) == EFFCAM_ERROR_ARGUMENT);  // none was asked for
  CHECK(effcam_prediction_overlay(nullptr, &data, &size) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_prediction_overlay(from_bytes, nullptr, &size) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_prediction_heatmap(nullptr, &data, &size) == EFFCAM_ERROR_ARGUMENT);
  const char* json = nullptr;
  REQUIRE(effcam_prediction_json(from_bytes, &json) == EFFCAM_OK);
  CHECK(std::string(json).find("\"image\":\"upload\"") != std::string::npos);
  CHECK(effcam_prediction_json(nullptr, &json) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_prediction_json(from_bytes, nullptr) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_prediction_get(nullptr, &a) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_prediction_get(from_bytes, nullptr) == EFFCAM_ERROR_ARGUMENT);
  effcam_prediction_free(from_bytes);
  effcam_prediction_free(from_file);
  effcam_prediction_free(nullptr);

  effcam_prediction* out = nullptr;
  const uint8_t garbage[] = {0x89, 'P', 'N', 'G', 1, 2, 3};
  CHECK(effcam_predict_encoded(h.predictor, garbage, sizeof garbage, nullptr, nullptr, &out) == EFFCAM_ERROR_IMAGE);
  CHECK(last_error().find("<memory>") != std::string::npos);
  CHECK(effcam_predict_encoded(nullptr, png.data(), png.size(), nullptr, nullptr, &out) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_predict_encoded(h.predictor, nullptr, 0, nullptr, nullptr, &out) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_predict_encoded(h.predictor, png.data(), png.size(), nullptr, nullptr, nullptr) ==
        EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_predict_file(h.predictor, "/nonexistent.png", nullptr, &out) == EFFCAM_ERROR_IO);
  CHECK(effcam_predict_file(h.predictor, nullptr, nullptr, &out) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_predict_file(nullptr, png_path.c_str(), nullptr, &out) == EFFCAM_ERROR_ARGUMENT);
  CHECK(out == nullptr);

  // Options out of range.
  effcam_predict_options bad = options;
  bad.cam_class = 5;
  CHECK(effcam_predict_encoded(h.predictor, png.data(), png.size(), nullptr, &bad, &out) == EFFCAM_ERROR_ARGUMENT);
  CHECK(last_error().find("out of range") != std::string::npos);
  bad = options;
  bad.cam = static_cast<effcam_cam_method>(42);
  CHECK(effcam_predict_encoded(h.predictor, png.data(), png.size(), nullptr, &bad, &out) == EFFCAM_ERROR_ARGUMENT);
  bad = options;
  bad.cam_layer = "stem_bn";  // not planned by this predictor
  CHECK(effcam_predict_encoded(h.predictor, png.data(), png.size(), nullptr, &bad, &out) == EFFCAM_ERROR_ARGUMENT);
  bad = options;
  bad.overlay = static_cast<effcam_image_format>(9);
  CHECK(effcam_predict_encoded(h.predictor, png.data(), png.size(), nullptr, &bad, &out) == EFFCAM_ERROR_ARGUMENT);
  bad = options;
  bad.jpeg_quality = 0;
  bad.overlay = EFFCAM_IMAGE_JPEG;
  CHECK(effcam_predict_encoded(h.predictor, png.data(), png.size(), nullptr, &bad, &out) == EFFCAM_ERROR_ARGUMENT);
  bad = options;
  bad.cam_score = static_cast<effcam_cam_score>(3);
  CHECK(effcam_predict_encoded(h.predictor, png.data(), png.size(), nullptr, &bad, &out) == EFFCAM_ERROR_ARGUMENT);
  bad = options;
  bad.render_size = static_cast<effcam_render_size>(3);
  CHECK(effcam_predict_encoded(h.predictor, png.data(), png.size(), nullptr, &bad, &out) == EFFCAM_ERROR_ARGUMENT);
  CHECK(out == nullptr);

  // Pixels: wrong sizes for the buffer, bad channel counts, strides past the end.
  const effcam::imaging::Image picture = effcam::test::test_picture(50, 40, 7);
  CHECK(effcam_predict_pixels(h.predictor, picture.pixels.data(), picture.pixels.size() - 1, 50, 40, 3, 0, nullptr,
                              &out) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_predict_pixels(h.predictor, picture.pixels.data(), picture.pixels.size(), 50, 40, 5, 0, nullptr,
                              &out) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_predict_pixels(h.predictor, picture.pixels.data(), picture.pixels.size(), 50, 40, 3, 151, nullptr,
                              &out) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_predict_pixels(h.predictor, picture.pixels.data(), picture.pixels.size(), 0, 40, 3, 0, nullptr,
                              &out) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_predict_pixels(h.predictor, nullptr, 10, 50, 40, 3, 0, nullptr, &out) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_predict_pixels(nullptr, picture.pixels.data(), picture.pixels.size(), 50, 40, 3, 0, nullptr, &out) ==
        EFFCAM_ERROR_ARGUMENT);
  CHECK(out == nullptr);
  REQUIRE(effcam_predict_pixels(h.predictor, picture.pixels.data(), picture.pixels.size(), 50, 40, 3, 150, nullptr,
                                &out) == EFFCAM_OK);
  effcam_prediction_view view{};
  REQUIRE(effcam_prediction_get(out, &view) == EFFCAM_OK);
  CHECK(view.cam == nullptr);  // no CAM asked
  effcam_prediction_free(out);
  std::filesystem::remove(png_path);
}

TEST_CASE("C: render a prediction's CAM again from bytes, a file and pixels: predict()'s pictures; errors") {
  Handles h;
  const effcam::imaging::Image picture = effcam::test::test_picture(120, 90, 8);
  const std::vector<uint8_t> png = effcam::imaging::encode_image(picture, effcam::imaging::Encoding::Png);
  const std::string png_path = small_model_path() + ".render.png";
  std::ofstream(png_path, std::ios::binary).write(reinterpret_cast<const char*>(png.data()),
                                                  static_cast<std::streamsize>(png.size()));
  effcam_render_options render;
  effcam_render_options_init(&render);
  CHECK(render.overlay == EFFCAM_IMAGE_PNG);
  CHECK(render.heatmap == EFFCAM_IMAGE_NONE);
  render.overlay = EFFCAM_IMAGE_JPEG;
  render.heatmap = EFFCAM_IMAGE_PNG;
  render.render_size = EFFCAM_RENDER_ORIGINAL;
  render.overlay_alpha = 0.7f;
  effcam_predict_options plain;
  effcam_predict_options_init(&plain);
  plain.cam = EFFCAM_CAM_GRADCAM;
  effcam_predict_options pictured = plain;
  pictured.overlay = render.overlay;
  pictured.heatmap = render.heatmap;
  pictured.render_size = render.render_size;
  pictured.overlay_alpha = render.overlay_alpha;

  effcam_prediction* explained = nullptr;
  effcam_prediction* expected = nullptr;
  REQUIRE(effcam_predict_file(h.predictor, png_path.c_str(), &plain, &explained) == EFFCAM_OK);
  REQUIRE(effcam_predict_file(h.predictor, png_path.c_str(), &pictured, &expected) == EFFCAM_OK);
  const auto bytes = [](const effcam_prediction* p, auto get) {
    const uint8_t* data = nullptr;
    size_t size = 0;
    REQUIRE(get(p, &data, &size) == EFFCAM_OK);
    return std::vector<uint8_t>(data, data + size);
  };
  effcam_prediction* drawn[3] = {};
  REQUIRE(effcam_render_file(h.predictor, explained, png_path.c_str(), &render, &drawn[0]) == EFFCAM_OK);
  REQUIRE(effcam_render_encoded(h.predictor, explained, png.data(), png.size(), "upload", &render, &drawn[1]) ==
          EFFCAM_OK);
  REQUIRE(effcam_render_pixels(h.predictor, explained, picture.pixels.data(), picture.pixels.size(), 120, 90, 3, 0,
                               &render, &drawn[2]) == EFFCAM_OK);
  for (const effcam_prediction* d : drawn) {
    CHECK(bytes(d, effcam_prediction_overlay) == bytes(expected, effcam_prediction_overlay));
    CHECK(bytes(d, effcam_prediction_heatmap) == bytes(expected, effcam_prediction_heatmap));
    effcam_prediction_view view{};
    REQUIRE(effcam_prediction_get(d, &view) == EFFCAM_OK);
    REQUIRE(view.cam != nullptr);
    CHECK(view.image_width == 120);
  }
  for (effcam_prediction* d : drawn) effcam_prediction_free(d);

  // Defaults (NULL options): a model-size PNG overlay and no heatmap.
  effcam_prediction* out = nullptr;
  REQUIRE(effcam_render_encoded(h.predictor, explained, png.data(), png.size(), nullptr, nullptr, &out) == EFFCAM_OK);
  const uint8_t* data = nullptr;
  size_t size = 0;
  CHECK(effcam_prediction_heatmap(out, &data, &size) == EFFCAM_ERROR_ARGUMENT);
  CHECK(bytes(out, effcam_prediction_overlay).size() > 8);
  effcam_prediction_free(out);
  out = nullptr;

  // Errors: NULL handles, a prediction without a CAM, bad options, another image.
  CHECK(effcam_render_file(nullptr, explained, png_path.c_str(), nullptr, &out) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_render_file(h.predictor, nullptr, png_path.c_str(), nullptr, &out) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_render_file(h.predictor, explained, nullptr, nullptr, &out) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_render_file(h.predictor, explained, png_path.c_str(), nullptr, nullptr) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_render_encoded(h.predictor, explained, nullptr, 0, nullptr, nullptr, &out) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_render_file(h.predictor, explained, "/nonexistent.png", nullptr, &out) == EFFCAM_ERROR_IO);
  effcam_prediction* no_cam = nullptr;
  REQUIRE(effcam_predict_file(h.predictor, png_path.c_str(), nullptr, &no_cam) == EFFCAM_OK);
  CHECK(effcam_render_file(h.predictor, no_cam, png_path.c_str(), nullptr, &out) == EFFCAM_ERROR_ARGUMENT);
  CHECK(last_error().find("no CAM") != std::string::npos);
  effcam_prediction_free(no_cam);
  effcam_render_options bad = render;
  bad.render_size = static_cast<effcam_render_size>(7);
  CHECK(effcam_render_file(h.predictor, explained, png_path.c_str(), &bad, &out) == EFFCAM_ERROR_ARGUMENT);
  bad = render;
  bad.overlay = static_cast<effcam_image_format>(9);
  CHECK(effcam_render_file(h.predictor, explained, png_path.c_str(), &bad, &out) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_render_pixels(h.predictor, explained, picture.pixels.data(), picture.pixels.size(), 90, 120, 3, 0,
                             nullptr, &out) == EFFCAM_ERROR_ARGUMENT);  // another size
  CHECK(last_error().find("not the 120x90 image") != std::string::npos);
  CHECK(effcam_render_pixels(h.predictor, explained, picture.pixels.data(), 10, 120, 90, 3, 0, nullptr, &out) ==
        EFFCAM_ERROR_ARGUMENT);  // the buffer is too small
  CHECK(out == nullptr);
  effcam_prediction_free(explained);
  effcam_prediction_free(expected);
  std::filesystem::remove(png_path);
}

TEST_CASE("C: convert: options init, errors (no report, nothing written)") {
  effcam_convert_options options;
  effcam_convert_options_init(&options);
  CHECK(options.fp32 == 0);
  CHECK(options.label_count == 0);
  const std::string output = small_model_path() + ".converted.effcam";
  char* report = nullptr;
  CHECK(effcam_convert(nullptr, output.c_str(), &options, &report) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_convert("/nonexistent.keras", nullptr, &options, &report) == EFFCAM_ERROR_ARGUMENT);
  CHECK(effcam_convert("/nonexistent.keras", output.c_str(), &options, &report) == EFFCAM_ERROR_IO);
  CHECK(effcam_convert(small_model_path().c_str(), output.c_str(), nullptr, &report) == EFFCAM_ERROR_FORMAT);
  CHECK(report == nullptr);
  CHECK(!std::filesystem::exists(output));
  options.input_height = 10;  // a height without a width
  CHECK(effcam_convert(small_model_path().c_str(), output.c_str(), &options, &report) == EFFCAM_ERROR_ARGUMENT);
  options.input_height = 0;
  options.label_count = 2;  // labels NULL with a count
  CHECK(effcam_convert(small_model_path().c_str(), output.c_str(), &options, &report) == EFFCAM_ERROR_ARGUMENT);
  effcam_string_free(nullptr);
}
