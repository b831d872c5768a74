// The C API (include/effcam/effcam.h) over the C++ one: handles own C++ objects, every call catches, and the
// thread's last error keeps the message.
#include "effcam/effcam.h"

#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "effcam/effcam.hpp"

struct effcam_model {
  effcam::Model model;
};

struct effcam_predictor {
  effcam::Predictor predictor;
};

struct effcam_prediction {
  effcam::Prediction prediction;
  // C views of the prediction, built once.
  std::vector<effcam_class_score> top_k;
  effcam_cam cam{};
  std::string json;
};

namespace {

thread_local std::string g_last_error;

effcam_status fail(effcam_status status, const std::string& message) {
  g_last_error = message;
  return status;
}

effcam_status status_of(effcam::ErrorCode code) {
  switch (code) {
    case effcam::ErrorCode::InvalidArgument: return EFFCAM_ERROR_ARGUMENT;
    case effcam::ErrorCode::Io: return EFFCAM_ERROR_IO;
    case effcam::ErrorCode::Format: return EFFCAM_ERROR_FORMAT;
    case effcam::ErrorCode::Image: return EFFCAM_ERROR_IMAGE;
    case effcam::ErrorCode::OutOfMemory: return EFFCAM_ERROR_OUT_OF_MEMORY;
    case effcam::ErrorCode::Internal: return EFFCAM_ERROR_INTERNAL;
  }
  return EFFCAM_ERROR_INTERNAL;
}

// Runs `body`, turning every exception into a status and the thread's last error.
template <class Body>
effcam_status guarded(Body body) {
  try {
    g_last_error.clear();
    body();
    return EFFCAM_OK;
  } catch (const effcam::Error& e) {
    return fail(status_of(e.code()), e.what());
  } catch (const std::bad_alloc&) {
    return fail(EFFCAM_ERROR_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return fail(EFFCAM_ERROR_INTERNAL, std::string("internal error: ") + e.what());
  } catch (...) {
    return fail(EFFCAM_ERROR_INTERNAL, "internal error");
  }
}

void require(const void* pointer, const char* name) {
  if (pointer == nullptr) throw effcam::Error(std::string(name) + " is NULL");
}

effcam::ImageFormat image_format(effcam_image_format format) {
  switch (format) {
    case EFFCAM_IMAGE_NONE: return effcam::ImageFormat::None;
    case EFFCAM_IMAGE_PNG: return effcam::ImageFormat::Png;
    case EFFCAM_IMAGE_JPEG: return effcam::ImageFormat::Jpeg;
  }
  throw effcam::Error("unknown image format value");
}

effcam::RenderSize render_size(effcam_render_size size) {
  switch (size) {
    case EFFCAM_RENDER_MODEL: return effcam::RenderSize::Model;
    case EFFCAM_RENDER_ORIGINAL: return effcam::RenderSize::Original;
  }
  throw effcam::Error("unknown render size value");
}

// The picture fields effcam_predict_options and effcam_render_options share.
template <class COptions>
effcam::RenderOptions pictures(const COptions& c) {
  effcam::RenderOptions options;
  options.overlay = image_format(c.overlay);
  options.heatmap = image_format(c.heatmap);
  options.render_size = render_size(c.render_size);
  options.overlay_alpha = c.overlay_alpha;
  options.jpeg_quality = c.jpeg_quality;
  return options;
}

effcam::PredictOptions predict_options(const effcam_predict_options* c) {
  effcam_predict_options defaults;
  effcam_predict_options_init(&defaults);
  if (c == nullptr) c = &defaults;
  effcam::PredictOptions options;
  options.top_k = c->top_k;
  if (c->cam < EFFCAM_CAM_NONE || c->cam > EFFCAM_CAM_EIGENCAM) throw effcam::Error("unknown CAM method value");
  options.cam = static_cast<effcam::CamMethod>(c->cam);
  if (c->cam_layer) options.cam_layer = c->cam_layer;
  if (c->cam_score != EFFCAM_SCORE_LOGIT && c->cam_score != EFFCAM_SCORE_PROB) {
    throw effcam::Error("unknown CAM score value");
  }
  options.cam_score = c->cam_score == EFFCAM_SCORE_LOGIT ? effcam::CamScore::Logit : effcam::CamScore::Prob;
  if (c->cam_class >= 0) {
    if (c->cam_class > INT32_MAX) throw effcam::Error("CAM class " + std::to_string(c->cam_class) + " is out of range");
    options.cam_class = static_cast<uint32_t>(c->cam_class);
  }
  options.pictures = pictures(*c);
  options.apply_exif_orientation = c->apply_exif_orientation != 0;
  options.fast_jpeg_decode = c->fast_jpeg_decode != 0;
  options.input_image = image_format(c->input_image);
  return options;
}

effcam::RenderOptions render_options(const effcam_render_options* c) {
  effcam_render_options defaults;
  effcam_render_options_init(&defaults);
  if (c == nullptr) c = &defaults;
  return pictures(*c);
}

// A handle over a prediction, its C views built once.
effcam_prediction* wrap(effcam::Prediction prediction) {
  auto result = std::make_unique<effcam_prediction>();
  result->prediction = std::move(prediction);
  const effcam::Prediction& p = result->prediction;
  for (const effcam::ClassScore& score : p.top_k) {
    result->top_k.push_back({score.index, score.label.c_str(), score.probability});
  }
  if (p.cam) {
    result->cam = {static_cast<effcam_cam_method>(p.cam->method), p.cam->layer.c_str(), p.cam->class_index,
                   p.cam->score_kind == effcam::CamScore::Logit ? EFFCAM_SCORE_LOGIT : EFFCAM_SCORE_PROB,
                   p.cam->score, p.cam->height, p.cam->width, p.cam->values.data(), p.cam->raw.data(),
                   p.cam->empty ? 1 : 0};
  }
  result->json = effcam::to_json(p);
  return result.release();
}

effcam_status predict(effcam_predictor* predictor, const effcam::ImageSource& source,
                      const effcam_predict_options* options, effcam_prediction** out) {
  return guarded([&] { *out = wrap(predictor->predictor.predict(source, predict_options(options))); });
}

// Checks the handles, then draws: the source is made inside, so that its errors are reported too.
template <class MakeSource>
effcam_status render(const effcam_predictor* predictor, const effcam_prediction* prediction,
                     MakeSource make_source, const effcam_render_options* options, effcam_prediction** out) {
  return guarded([&] {
    require(predictor, "predictor");
    require(prediction, "prediction");
    require(out, "out");
    *out = wrap(predictor->predictor.render(prediction->prediction, make_source(), render_options(options)));
  });
}

}  // namespace

extern "C" {

int effcam_api_version(void) { return EFFCAM_API_VERSION; }
const char* effcam_version(void) { return effcam::version(); }
const char* effcam_last_error(void) { return g_last_error.c_str(); }

const char* effcam_status_name(effcam_status status) {
  switch (status) {
    case EFFCAM_OK: return "ok";
    case EFFCAM_ERROR_ARGUMENT: return "argument";
    case EFFCAM_ERROR_IO: return "io";
    case EFFCAM_ERROR_FORMAT: return "format";
    case EFFCAM_ERROR_IMAGE: return "image";
    case EFFCAM_ERROR_OUT_OF_MEMORY: return "out of memory";
    case EFFCAM_ERROR_INTERNAL: return "internal";
  }
  return "unknown";
}

effcam_status effcam_set_dispatch(const char* path) {
  return guarded([&] {
    require(path, "path");
    effcam::set_dispatch(path);
  });
}

const char* effcam_dispatch(void) {
  static thread_local std::string current;
  current = effcam::dispatch();
  return current.c_str();
}

effcam_status effcam_model_load(const char* path, effcam_model** out) {
  return guarded([&] {
    require(path, "path");
    require(out, "out");
    *out = new effcam_model{effcam::Model::load(path)};
  });
}

effcam_status effcam_model_load_buffer(const void* data, size_t size, effcam_model** out) {
  return guarded([&] {
    require(data, "data");
    require(out, "out");
    *out = new effcam_model{effcam::Model::from_buffer({static_cast<const uint8_t*>(data), size})};
  });
}

void effcam_model_free(effcam_model* model) { delete model; }

effcam_status effcam_model_get_info(const effcam_model* model, effcam_model_info* out) {
  return guarded([&] {
    require(model, "model");
    require(out, "out");
    const effcam::Model& m = model->model;
    *out = {m.input_height(), m.input_width(), m.input_channels(), m.classes(),
            static_cast<uint32_t>(m.cam_layers().size()), m.has_labels() ? 1 : 0, m.has_logits() ? 1 : 0,
            m.file_bytes(), m.weight_bytes(), m.default_cam_layer().c_str()};
  });
}

effcam_status effcam_model_label(const effcam_model* model, uint32_t class_index, const char** out) {
  return guarded([&] {
    require(model, "model");
    require(out, "out");
    const std::vector<std::string>& labels = model->model.labels();
    if (class_index >= labels.size()) {
      throw effcam::Error("class " + std::to_string(class_index) + " is out of range: the model has " +
                          std::to_string(labels.size()) + " classes");
    }
    *out = labels[class_index].c_str();
  });
}

effcam_status effcam_model_cam_layer(const effcam_model* model, uint32_t index, effcam_layer_info* out) {
  return guarded([&] {
    require(model, "model");
    require(out, "out");
    const std::vector<effcam::LayerInfo>& layers = model->model.cam_layers();
    if (index >= layers.size()) {
      throw effcam::Error("CAM layer " + std::to_string(index) + " is out of range: the model has " +
                          std::to_string(layers.size()));
    }
    const effcam::LayerInfo& layer = layers[index];
    *out = {layer.name.c_str(), layer.class_name.c_str(), layer.height, layer.width, layer.channels};
  });
}

void effcam_predictor_options_init(effcam_predictor_options* options) {
  if (options) *options = {1, nullptr, 0, 1, 100'000'000, 0, 0};
}

effcam_status effcam_predictor_create(const effcam_model* model, const effcam_predictor_options* options,
                                      effcam_predictor** out) {
  return guarded([&] {
    require(model, "model");
    require(out, "out");
    effcam_predictor_options defaults;
    effcam_predictor_options_init(&defaults);
    if (options == nullptr) options = &defaults;
    effcam::PredictorOptions o;
    o.threads = options->threads;
    o.max_image_pixels = options->max_image_pixels;
    o.max_image_bytes = options->max_image_bytes;
    o.memory_budget_bytes = options->memory_budget_bytes;
    if (options->cam_layer_count > 0) require(options->cam_layers, "cam_layers");
    for (size_t i = 0; i < options->cam_layer_count; ++i) {
      require(options->cam_layers[i], "a CAM layer name");
      o.cam_layers.emplace_back(options->cam_layers[i]);
    }
    o.explain = options->explain != 0;
    *out = new effcam_predictor{effcam::Predictor(model->model, o)};
  });
}

void effcam_predictor_free(effcam_predictor* predictor) { delete predictor; }

uint64_t effcam_predictor_arena_bytes(const effcam_predictor* predictor) {
  return predictor ? predictor->predictor.arena_bytes() : 0;
}

uint64_t effcam_predictor_image_bytes(const effcam_predictor* predictor) {
  return predictor ? predictor->predictor.image_bytes() : 0;
}

void effcam_predict_options_init(effcam_predict_options* options) {
  if (options) {
    *options = {5, EFFCAM_CAM_NONE, nullptr, EFFCAM_SCORE_LOGIT, -1, EFFCAM_IMAGE_NONE, EFFCAM_IMAGE_NONE,
                EFFCAM_RENDER_MODEL, 0.4f, 90, 0, 0, EFFCAM_IMAGE_NONE};
  }
}

effcam_status effcam_predict_encoded(effcam_predictor* predictor, const void* data, size_t size, const char* name,
                                     const effcam_predict_options* options, effcam_prediction** out) {
  if (!predictor || !data || !out) return fail(EFFCAM_ERROR_ARGUMENT, "predictor, data and out must not be NULL");
  return predict(predictor,
                 effcam::ImageSource::encoded({static_cast<const uint8_t*>(data), size}, name ? name : "<memory>"),
                 options, out);
}

effcam_status effcam_predict_file(effcam_predictor* predictor, const char* path, const effcam_predict_options* options,
                                  effcam_prediction** out) {
  if (!predictor || !path || !out) return fail(EFFCAM_ERROR_ARGUMENT, "predictor, path and out must not be NULL");
  return predict(predictor, effcam::ImageSource::file(path), options, out);
}

effcam_status effcam_predict_pixels(effcam_predictor* predictor, const uint8_t* pixels, size_t size, uint32_t width,
                                    uint32_t height, uint32_t channels, size_t row_stride,
                                    const effcam_predict_options* options, effcam_prediction** out) {
  if (!predictor || !pixels || !out) return fail(EFFCAM_ERROR_ARGUMENT, "predictor, pixels and out must not be NULL");
  effcam_status status = EFFCAM_OK;
  std::optional<effcam::ImageSource> source;
  status = guarded([&] { source = effcam::ImageSource::pixels({pixels, size}, width, height, channels, row_stride); });
  return status == EFFCAM_OK ? predict(predictor, *source, options, out) : status;
}

void effcam_prediction_free(effcam_prediction* prediction) { delete prediction; }

effcam_status effcam_prediction_get(const effcam_prediction* prediction, effcam_prediction_view* out) {
  return guarded([&] {
    require(prediction, "prediction");
    require(out, "out");
    const effcam::Prediction& p = prediction->prediction;
    *out = {};
    out->top_k = prediction->top_k.data();
    out->top_k_count = prediction->top_k.size();
    out->probabilities = p.probabilities.data();
    out->logits = p.logits.empty() ? nullptr : p.logits.data();
    out->classes = p.probabilities.size();
    out->cam = p.cam ? &prediction->cam : nullptr;
    out->decode_ms = p.timing.decode_ms;
    out->preprocess_ms = p.timing.preprocess_ms;
    out->forward_ms = p.timing.forward_ms;
    out->cam_ms = p.timing.cam_ms;
    out->total_ms = p.timing.total_ms;
    out->peak_rss_bytes = p.memory.peak_rss_bytes;
    out->arena_bytes = p.memory.arena_bytes;
    out->image_width = p.image_width;
    out->image_height = p.image_height;
    out->exif_orientation = p.exif_orientation;
    out->applied_orientation = p.applied_orientation;
    out->jpeg_scale = p.jpeg_scale_denominator;
  });
}

static effcam_status picture(const std::optional<effcam::EncodedImage>& image, const char* what, const uint8_t** data,
                             size_t* size) {
  return guarded([&] {
    require(data, "data");
    require(size, "size");
    if (!image) throw effcam::Error(std::string("the prediction has no ") + what + " (none was asked for)");
    *data = image->bytes.data();
    *size = image->bytes.size();
  });
}

effcam_status effcam_prediction_overlay(const effcam_prediction* prediction, const uint8_t** data, size_t* size) {
  if (!prediction) return fail(EFFCAM_ERROR_ARGUMENT, "prediction is NULL");
  return picture(prediction->prediction.overlay, "overlay", data, size);
}

effcam_status effcam_prediction_heatmap(const effcam_prediction* prediction, const uint8_t** data, size_t* size) {
  if (!prediction) return fail(EFFCAM_ERROR_ARGUMENT, "prediction is NULL");
  return picture(prediction->prediction.heatmap, "heatmap", data, size);
}

effcam_status effcam_prediction_input_image(const effcam_prediction* prediction, const uint8_t** data,
                                           size_t* size) {
  if (!prediction) return fail(EFFCAM_ERROR_ARGUMENT, "prediction is NULL");
  return picture(prediction->prediction.input_image, "input image", data, size);
}

effcam_status effcam_prediction_json(const effcam_prediction* prediction, const char** out) {
  return guarded([&] {
    require(prediction, "prediction");
    require(out, "out");
    *out = prediction->json.c_str();
  });
}

void effcam_render_options_init(effcam_render_options* options) {
  if (options) *options = {EFFCAM_IMAGE_PNG, EFFCAM_IMAGE_NONE, EFFCAM_RENDER_MODEL, 0.4f, 90};
}

effcam_status effcam_render_encoded(const effcam_predictor* predictor, const effcam_prediction* prediction,
                                    const void* data, size_t size, const char* name,
                                    const effcam_render_options* options, effcam_prediction** out) {
  return render(predictor, prediction, [&] {
    require(data, "data");
    return effcam::ImageSource::encoded({static_cast<const uint8_t*>(data), size}, name ? name : "<memory>");
  }, options, out);
}

effcam_status effcam_render_file(const effcam_predictor* predictor, const effcam_prediction* prediction,
                                 const char* path, const effcam_render_options* options, effcam_prediction** out) {
  return render(predictor, prediction, [&] {
    require(path, "path");
    return effcam::ImageSource::file(path);
  }, options, out);
}

effcam_status effcam_render_pixels(const effcam_predictor* predictor, const effcam_prediction* prediction,
                                   const uint8_t* pixels, size_t size, uint32_t width, uint32_t height,
                                   uint32_t channels, size_t row_stride, const effcam_render_options* options,
                                   effcam_prediction** out) {
  return render(predictor, prediction, [&] {
    require(pixels, "pixels");
    return effcam::ImageSource::pixels({pixels, size}, width, height, channels, row_stride);
  }, options, out);
}

void effcam_convert_options_init(effcam_convert_options* options) {
  if (options) *options = {0, nullptr, 0, 0, 0};
}

effcam_status effcam_convert(const char* input, const char* output, const effcam_convert_options* options,
                             char** report_out) {
  return guarded([&] {
    require(input, "input");
    require(output, "output");
    effcam_convert_options defaults;
    effcam_convert_options_init(&defaults);
    if (options == nullptr) options = &defaults;
    effcam::ConvertOptions o;
    o.weights = options->fp32 ? effcam::WeightType::F32 : effcam::WeightType::F16;
    if (options->label_count > 0) require(options->labels, "labels");
    for (size_t i = 0; i < options->label_count; ++i) {
      require(options->labels[i], "a label");
      o.labels.emplace_back(options->labels[i]);
    }
    if ((options->input_height == 0) != (options->input_width == 0)) {
      throw effcam::Error("input size needs both a height and a width");
    }
    if (options->input_height > 0) o.input_size = {{options->input_height, options->input_width}};
    const std::string report = effcam::format_report(effcam::convert(input, output, o));
    if (report_out) {
      char* text = static_cast<char*>(std::malloc(report.size() + 1));
      if (!text) throw std::bad_alloc();
      std::memcpy(text, report.c_str(), report.size() + 1);
      *report_out = text;
    }
  });
}

void effcam_string_free(char* text) { std::free(text); }

}  // extern "C"
