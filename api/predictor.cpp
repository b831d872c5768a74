// effcam::Predictor: one caller's pipeline from an image to a Prediction: decode, resize as PIL does, the forward
// pass, the ranking, the CAM and its pictures. Every front end goes through predict().
#include <algorithm>
#include <chrono>
#include <numeric>
#include <optional>

#include "api/state.h"
#include "base/error_code.h"
#include "base/file_io.h"
#include "base/process_memory.h"
#include "imaging/cam.h"
#include "imaging/image.h"
#include "imaging/overlay.h"
#include "imaging/resize.h"
#include "ops/kernels.h"

namespace effcam {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// The model's input from any source; encoded files are decoded and resized a row at a time
// (imaging::load_model_image), raw pixels are converted and resized whole (the caller holds them anyway).
struct Input {
  imaging::Image model_image;
  std::optional<imaging::Image> pixels;       // raw pixels in the model's channels, for original-size pictures
  std::optional<imaging::ImageSource> encoded;  // the encoded file, decoded again for original-size pictures
  uint32_t width = 0, height = 0;             // the image before resizing
  imaging::Orientation exif_orientation = imaging::Orientation::Normal;
  imaging::Orientation applied_orientation = imaging::Orientation::Normal;
  uint32_t jpeg_scale = 1;
};

// Per image pixel, for each picture rendered at the original size: the encoded picture (at most ~3 bytes a pixel
// for PNG of incompressible pixels or JPEG at quality 100, 4 counted) in a vector that grows by doubling (8), and
// to_json's base64 of it (4/3 of that) in a string that grows by doubling too (11). Turned by its EXIF orientation,
// the original-size picture is decoded whole and turned (2 x 3).
constexpr uint64_t kOriginalPictureBytesPerPixel = 19;
constexpr uint64_t kOrientedWholeBytesPerPixel = 6;

uint64_t original_render_bytes_per_pixel(const PredictOptions& options) {
  const RenderOptions& drawn = options.pictures;
  if (drawn.render_size != RenderSize::Original) return 0;
  const uint64_t pictures = uint64_t{drawn.overlay != ImageFormat::None} + uint64_t{drawn.heatmap != ImageFormat::None};
  if (pictures == 0) return 0;
  return pictures * kOriginalPictureBytesPerPixel + (options.apply_exif_orientation ? kOrientedWholeBytesPerPixel : 0);
}

Input read_input(const ImageSource& source, const Model& model, const PredictorOptions& limits, uint64_t budget,
                 const PredictOptions& options) {
  Input input;
  const uint32_t w = model.input_width(), h = model.input_height(), c = model.input_channels();
  const uint64_t extra = original_render_bytes_per_pixel(options);
  if (source.kind() == ImageSource::Kind::Pixels) {
    // Their copy in the model's channels (up to 3 per pixel), then the resize.
    const uint64_t need = imaging::decode_need_bytes(source.width(), source.height(),
                                                     uint64_t{3} * source.width() * source.height()) +
                          extra * source.width() * source.height();
    if (need > budget) {
      throw Error(source.name() + ": " + std::to_string(source.width()) + "x" + std::to_string(source.height()) +
                      " pixels need " + std::to_string(need) + " bytes, above the budget of " + std::to_string(budget),
                  ErrorCode::Image);
    }
    input.pixels = with_error_code(ErrorCode::Image, [&] {
      return imaging::from_pixels(source.bytes().data(), source.width(), source.height(), source.channels(),
                                  source.row_stride(), source.pixel_stride(), source.channel_stride(), c);
    });
    input.width = input.pixels->width;
    input.height = input.pixels->height;
    input.model_image = input.width == w && input.height == h ? *input.pixels
                                                              : with_error_code(ErrorCode::Image, [&] {
                                                                  return imaging::resize_lanczos(*input.pixels, w, h);
                                                                });
    return input;
  }
  input.encoded = source.kind() == ImageSource::Kind::File ? imaging::ImageSource::file(source.name())
                                                           : imaging::ImageSource::memory(source.bytes(), source.name());
  imaging::DecodeOptions decode;
  decode.max_pixels = limits.max_image_pixels;
  decode.max_bytes = budget;
  decode.extra_bytes_per_pixel = extra;
  decode.apply_exif_orientation = options.apply_exif_orientation;
  decode.fast_jpeg_dct = options.fast_jpeg_decode;
  imaging::ModelImage decoded =
      with_error_code(ErrorCode::Image, [&] { return imaging::load_model_image(*input.encoded, w, h, c, decode); });
  input.model_image = std::move(decoded.image);
  input.width = decoded.original_width;
  input.height = decoded.original_height;
  input.exif_orientation = decoded.exif_orientation;
  input.applied_orientation = decoded.applied_orientation;
  input.jpeg_scale = decoded.jpeg_scale_denominator;
  return input;
}

imaging::Encoding encoding_of(ImageFormat format) {
  return format == ImageFormat::Jpeg ? imaging::Encoding::Jpeg : imaging::Encoding::Png;
}

EncodedImage encode(const imaging::Image& image, ImageFormat format, int jpeg_quality) {
  return {format, image.width, image.height, imaging::encode_image(image, encoding_of(format), jpeg_quality)};
}

// The heatmap and overlay at the model's size, or at the image's own: from raw pixels in memory, or streamed from
// the encoded file again so that the full-size picture is never held. What predict() and render() draw with.
void draw_pictures(Prediction& prediction, const imaging::CamMap& map, const Input& input,
                   const RenderOptions& options, uint32_t channels) {
  const bool original = options.render_size == RenderSize::Original;
  if (original && input.encoded) {
    // The original picture as the model's input saw it: oriented the same way, at full size (never DCT-scaled).
    imaging::DecodeOptions overlay_decode;
    overlay_decode.apply_exif_orientation = input.applied_orientation != imaging::Orientation::Normal;
    if (options.heatmap != ImageFormat::None) {
      prediction.heatmap = EncodedImage{options.heatmap, input.width, input.height,
                                        imaging::encode_heatmap(map, input.width, input.height,
                                                                encoding_of(options.heatmap), options.jpeg_quality)};
    }
    if (options.overlay != ImageFormat::None) {
      prediction.overlay = EncodedImage{
          options.overlay, input.width, input.height,
          imaging::encode_overlay(*input.encoded, channels, overlay_decode, map, encoding_of(options.overlay),
                                  options.jpeg_quality, options.overlay_alpha)};
    }
    return;
  }
  const imaging::Image& base = original ? *input.pixels : input.model_image;
  const imaging::Image heatmap = imaging::render_heatmap(map, base.width, base.height);
  if (options.heatmap != ImageFormat::None) prediction.heatmap = encode(heatmap, options.heatmap, options.jpeg_quality);
  if (options.overlay != ImageFormat::None) {
    prediction.overlay =
        encode(imaging::blend_overlay(base, heatmap, options.overlay_alpha), options.overlay, options.jpeg_quality);
  }
}

void check_options(const PredictOptions& options, const Model& model) {
  if (options.top_k == 0) throw Error("top_k must be at least 1");
  if (options.cam_class && *options.cam_class >= model.classes()) {
    throw Error("CAM class " + std::to_string(*options.cam_class) + " is out of range: the model has " +
                std::to_string(model.classes()) + " classes");
  }
  const RenderOptions& drawn = options.pictures;
  const bool pictures = drawn.overlay != ImageFormat::None || drawn.heatmap != ImageFormat::None;
  if (pictures && options.cam == CamMethod::None) throw Error("an overlay or heatmap needs a CAM method");
  if (!(drawn.overlay_alpha >= 0 && drawn.overlay_alpha <= 1e6f)) {
    throw Error("overlay alpha must be a finite number >= 0");
  }
  if (drawn.jpeg_quality < 1 || drawn.jpeg_quality > 100) throw Error("JPEG quality must be 1..100");
}

}  // namespace

// ---- ImageSource ----

ImageSource ImageSource::encoded(std::span<const uint8_t> bytes, std::string name) {
  ImageSource source;
  source.kind_ = Kind::Encoded;
  source.bytes_ = bytes;
  source.name_ = std::move(name);
  return source;
}

ImageSource ImageSource::file(std::string path) {
  ImageSource source;
  source.kind_ = Kind::File;
  source.name_ = std::move(path);
  return source;
}

ImageSource ImageSource::pixels(std::span<const uint8_t> data, uint32_t width, uint32_t height, uint32_t channels,
                                size_t row_stride, size_t pixel_stride, size_t channel_stride, std::string name) {
  if (width == 0 || height == 0) throw Error(name + ": zero width or height");
  if (channels < 1 || channels > 4) {
    throw Error(name + ": " + std::to_string(channels) + " channels; pixels have 1 (L), 2 (LA), 3 (RGB) or 4 (RGBA)");
  }
  if (channel_stride == 0) channel_stride = 1;
  if (pixel_stride == 0) pixel_stride = channels * channel_stride;
  if (row_stride == 0 && __builtin_mul_overflow(size_t{width}, pixel_stride, &row_stride)) row_stride = SIZE_MAX;
  // The last byte addressed must lie inside the buffer (checked without overflow).
  size_t last = 0, term = 0;
  const bool overflow = __builtin_mul_overflow(size_t{height - 1}, row_stride, &last) ||
                        __builtin_mul_overflow(size_t{width - 1}, pixel_stride, &term) ||
                        __builtin_add_overflow(last, term, &last) ||
                        __builtin_mul_overflow(size_t{channels - 1}, channel_stride, &term) ||
                        __builtin_add_overflow(last, term, &last);
  if (overflow || last >= data.size()) {
    throw Error(name + ": " + std::to_string(width) + "x" + std::to_string(height) + "x" + std::to_string(channels) +
                " pixels with strides " + std::to_string(row_stride) + "/" + std::to_string(pixel_stride) + "/" +
                std::to_string(channel_stride) + " do not fit in " + std::to_string(data.size()) + " bytes");
  }
  ImageSource source;
  source.kind_ = Kind::Pixels;
  source.bytes_ = data;
  source.name_ = std::move(name);
  source.width_ = width;
  source.height_ = height;
  source.channels_ = channels;
  source.row_stride_ = row_stride;
  source.pixel_stride_ = pixel_stride;
  source.channel_stride_ = channel_stride;
  return source;
}

// ---- Kernel paths ----

void set_dispatch(const std::string& path) { ops::set_dispatch(path); }
std::string dispatch() { return std::string(ops::dispatch_name()); }
std::vector<std::string> available_dispatches() {
  std::vector<std::string> paths;
  for (std::string_view path : ops::available_dispatches()) paths.emplace_back(path);
  return paths;
}

void save(const EncodedImage& image, const std::string& path) { write_file_atomically(path, image.bytes, "image"); }

// ---- Predictor ----

engine::Session& detail::PredictorState::session_for(const std::string& layer) {
  if (!session || session_layer != layer) {
    session.reset();
    engine::SessionOptions session_options;
    session_options.threads = options.threads;
    session_options.probes = options.dump_layers;
    session_options.cam_layer = layer;
    session_options.memory_budget_bytes = options.memory_budget_bytes;
    session = std::make_unique<engine::Session>(state->engine, session_options);
    session_layer = layer;
  }
  return *session;
}

Predictor::Predictor(Model model, const PredictorOptions& options) {
  if (options.threads < 1 || options.threads > 256) {
    throw Error("threads must be 1..256, got " + std::to_string(options.threads));
  }
  if (options.max_image_pixels < 1 || options.max_image_pixels > imaging::kMaxImagePixels) {
    throw Error("max_image_pixels must be 1.." + std::to_string(imaging::kMaxImagePixels) + ", got " +
                std::to_string(options.max_image_pixels));
  }
  std::shared_ptr<const detail::ModelState> state = model.state_;
  state_ = std::make_unique<detail::PredictorState>(std::move(model), std::move(state), options);
  detail::PredictorState& s = *state_;
  s.dispatch = std::string(ops::dispatch_name());
  if (options.explain) {
    s.cam_layers = options.cam_layers;
    if (s.cam_layers.empty()) {
      if (s.state->default_cam_layer.empty()) {
        throw Error("the model has no Conv2D or DepthwiseConv2D layer to explain by default: name the CAM layers");
      }
      s.cam_layers.push_back(s.state->default_cam_layer);
    }
  }
  // Plan every CAM layer once to know the largest arena; keep the first one's session.
  for (auto layer = s.cam_layers.rbegin(); layer != s.cam_layers.rend(); ++layer) {
    const engine::Session& session = s.session_for(*layer);
    s.arena_bytes = std::max(s.arena_bytes, session.plan().arena_bytes);
    const engine::ExplainPlan* plan = session.explain_plan();
    const uint64_t bound = plan ? plan->lower_bound_bytes : session.plan().lower_bound_bytes;
    s.lower_bound_bytes = std::max(s.lower_bound_bytes, bound);
    s.forward_arena_bytes = session.forward_arena_bytes();
  }
  if (s.cam_layers.empty()) {
    const engine::Session& session = s.session_for("");
    s.arena_bytes = s.forward_arena_bytes = session.plan().arena_bytes;
    s.lower_bound_bytes = session.plan().lower_bound_bytes;
  }
}

Predictor::Predictor(Predictor&&) noexcept = default;
Predictor& Predictor::operator=(Predictor&&) noexcept = default;
Predictor::~Predictor() = default;

const Model& Predictor::model() const { return state_->model; }
uint64_t Predictor::arena_bytes() const { return state_->arena_bytes; }
uint64_t Predictor::forward_arena_bytes() const { return state_->forward_arena_bytes; }
uint64_t Predictor::arena_lower_bound_bytes() const { return state_->lower_bound_bytes; }
uint64_t Predictor::max_image_bytes() const {
  // The default: the bound image_bytes() gave before the budget existed, per pixel of the cap, and room for the
  // streamed decode's fixed and per-side costs (imaging::decode_need_bytes) at small caps.
  constexpr uint64_t kDefaultBytesPerImagePixel = 24, kDefaultFixedBytes = uint64_t{4} << 20;
  const PredictorOptions& options = state_->options;
  return options.max_image_bytes != 0 ? options.max_image_bytes
                                      : kDefaultBytesPerImagePixel * options.max_image_pixels + kDefaultFixedBytes;
}
uint64_t Predictor::image_bytes() const {
  // Per model-input pixel: the resized image (3) and the vertical pass's sums in flight (up to 4 x 3), the CAM map
  // upsampled (4) with its heatmap and overlay (3 each) and the input picture (3), their encoded copies, and the
  // CAM values and raw map as JSON text (~25 characters per map cell).
  constexpr uint64_t kPerInputPixel = 80;
  const Model& model = state_->model;
  return max_image_bytes() + kPerInputPixel * uint64_t{model.input_height()} * model.input_width();
}
uint32_t Predictor::threads() const { return state_->options.threads; }
const std::string& Predictor::dispatch() const { return state_->dispatch; }
const std::vector<std::string>& Predictor::cam_layers() const { return state_->cam_layers; }

Prediction Predictor::render(const Prediction& prediction, const ImageSource& source,
                             const RenderOptions& render_options) const {
  if (!state_) throw Error("render() on a moved-from Predictor");
  const detail::PredictorState& s = *state_;
  const Model& model = s.model;
  if (!prediction.cam) throw Error("render: the prediction has no CAM to draw (predict with a CAM method)");
  if (render_options.overlay == ImageFormat::None && render_options.heatmap == ImageFormat::None) {
    throw Error("render: ask for an overlay or a heatmap");
  }
  // The picture options, and the decoding the prediction was made with (a DCT scale of 1 decodes exactly).
  PredictOptions options;
  options.cam = prediction.cam->method;
  options.pictures = render_options;
  options.apply_exif_orientation = prediction.applied_orientation != 1;
  options.fast_jpeg_decode = prediction.jpeg_scale_denominator != 1;
  check_options(options, model);
  const Input input = read_input(source, model, s.options, max_image_bytes(), options);
  if (input.width != prediction.image_width || input.height != prediction.image_height) {
    throw Error("render: " + source.name() + " is " + std::to_string(input.width) + "x" + std::to_string(input.height) +
                ", not the " + std::to_string(prediction.image_width) + "x" + std::to_string(prediction.image_height) +
                " image of the prediction");
  }
  // The pictures read only the normalised map (imaging checks its size against its sides).
  const CamResult& cam = *prediction.cam;
  imaging::CamMap map;
  map.height = cam.height;
  map.width = cam.width;
  map.normalized = cam.values;
  map.empty = cam.empty;
  Prediction drawn = prediction;
  drawn.overlay.reset();
  drawn.heatmap.reset();
  draw_pictures(drawn, map, input, options.pictures, model.input_channels());
  return drawn;
}

Prediction Predictor::predict(const ImageSource& source, const PredictOptions& options) {
  if (!state_) throw Error("predict() on a moved-from Predictor");
  detail::PredictorState& s = *state_;
  const Model& model = s.model;
  check_options(options, model);
  std::string layer;
  if (options.cam != CamMethod::None) {
    if (s.cam_layers.empty()) throw Error("this predictor was planned without explanations");
    layer = options.cam_layer.empty() ? s.cam_layers.front() : options.cam_layer;
    if (std::find(s.cam_layers.begin(), s.cam_layers.end(), layer) == s.cam_layers.end()) {
      throw Error("CAM layer '" + layer + "' is not one this predictor was planned for (" + s.cam_layers.front() +
                  (s.cam_layers.size() > 1 ? ", ..." : "") + ")");
    }
  } else if (!s.cam_layers.empty()) {
    layer = s.session_layer;  // a plain prediction runs on whichever planned session is current
  }
  engine::Session& session = s.session_for(layer);

  Prediction prediction;
  prediction.image = source.name();
  prediction.input_height = model.input_height();
  prediction.input_width = model.input_width();

  const Clock::time_point start = Clock::now();
  const Input input = read_input(source, model, s.options, max_image_bytes(), options);  // decoded and resized
  prediction.image_height = input.height;
  prediction.image_width = input.width;
  prediction.exif_orientation = static_cast<uint32_t>(input.exif_orientation);
  prediction.applied_orientation = static_cast<uint32_t>(input.applied_orientation);
  prediction.jpeg_scale_denominator = input.jpeg_scale;
  if (options.input_image != ImageFormat::None) {
    prediction.input_image = encode(input.model_image, options.input_image, options.pictures.jpeg_quality);
  }
  prediction.timing.decode_ms = ms_since(start);
  const Clock::time_point preprocess_start = Clock::now();
  session.set_input(input.model_image.pixels);
  prediction.timing.preprocess_ms = ms_since(preprocess_start);
  const Clock::time_point forward_start = Clock::now();
  session.run();
  prediction.timing.forward_ms = ms_since(forward_start);

  const std::span<const float> probabilities = session.probabilities();
  const uint32_t classes = model.classes();
  const uint32_t top_k = std::min(options.top_k, classes);
  std::vector<uint32_t> order(classes);
  std::iota(order.begin(), order.end(), 0u);
  std::partial_sort(order.begin(), order.begin() + top_k, order.end(),
                    [&](uint32_t a, uint32_t b) { return probabilities[a] > probabilities[b]; });
  for (uint32_t k = 0; k < top_k; ++k) {
    prediction.top_k.push_back({order[k], model.labels()[order[k]], probabilities[order[k]]});
  }
  prediction.probabilities.assign(probabilities.begin(), probabilities.end());
  if (model.has_logits()) prediction.logits.assign(session.logits().begin(), session.logits().end());

  if (options.cam != CamMethod::None) {
    const Clock::time_point cam_start = Clock::now();
    const engine::CamScore score =
        options.cam_score == CamScore::Logit ? engine::CamScore::Logit : engine::CamScore::Prob;
    const engine::Explanation explanation = session.explain(options.cam_class.value_or(order[0]), score);
    imaging::CamMap map = imaging::compute_cam(detail::imaging_method(options.cam), explanation.activations,
                                               explanation.gradients, explanation.shape.h, explanation.shape.w,
                                               explanation.shape.c);
    prediction.timing.cam_ms = ms_since(cam_start);
    prediction.timing.recompute_ms = explanation.recompute_seconds * 1e3;
    if (options.pictures.overlay != ImageFormat::None || options.pictures.heatmap != ImageFormat::None) {
      draw_pictures(prediction, map, input, options.pictures, model.input_channels());
    }
    CamResult& cam = prediction.cam.emplace();
    cam.method = options.cam;
    cam.layer = explanation.layer;
    cam.class_index = explanation.class_index;
    cam.label = model.labels()[explanation.class_index];
    cam.score_kind = options.cam_score;
    cam.score = explanation.score;
    cam.height = map.height;
    cam.width = map.width;
    cam.values = std::move(map.normalized);
    cam.raw = std::move(map.raw);
    cam.empty = map.empty;
  }
  for (const std::string& name : s.options.dump_layers) {
    const Shape shape = session.probe_shape(name);
    const std::span<const float> values = session.probe(name);
    prediction.layers.push_back({name, shape.h, shape.w, shape.c, std::vector<float>(values.begin(), values.end())});
  }
  prediction.timing.total_ms = ms_since(start);
  prediction.dispatch = s.dispatch;
  MemoryFigures& memory = prediction.memory;
  memory.peak_rss_bytes = peak_rss_bytes();
  memory.rss_bytes = current_rss_bytes();
  memory.arena_bytes = session.plan().arena_bytes;
  memory.forward_arena_bytes = session.forward_arena_bytes();
  memory.arena_lower_bound_bytes = session.plan().lower_bound_bytes;
  if (const engine::ExplainPlan* plan = session.explain_plan()) {
    memory.arena_lower_bound_bytes = plan->lower_bound_bytes;
    memory.arena_floor_bytes = plan->floor_bytes;
    memory.checkpoints = plan->checkpoints;
    memory.recomputed_ops = plan->recomputed_ops;
    memory.recomputed_multiply_adds = plan->recomputed_multiply_adds;
    memory.rerun_multiply_adds = plan->rerun_multiply_adds;
    memory.pre_activations_kept_by_forward = plan->pre_activations_kept_by_forward;
    memory.pre_activations_kept_by_recomputation = plan->pre_activations_kept_by_recomputation;
    memory.forward_multiply_adds = plan->forward_multiply_adds;
  }
  return prediction;
}

}  // namespace effcam
