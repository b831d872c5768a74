// libeffcam's C++ API: load a converted model, classify images and explain the answer with Grad-CAM, in memory
// that is planned before anything runs. Every front end (effcam-predict, effcam-serve, the Python package) calls
// this and nothing else, so they give the same answer, and to_json() the same bytes, for the same input.
//
// Threads and memory:
// - A Model is immutable after loading and may be shared by any number of threads and Predictors. Its weights are
//   the .effcam file mmap'd read-only (fp16 stays fp16), so processes loading the same file share one copy in the
//   page cache; a model loaded from a buffer owns a copy of it instead.
// - A Predictor is one caller's working memory: its arena (every activation of the forward pass and of the
//   Grad-CAM backward pass) is planned and allocated once, at construction, and reused by every predict(). Use
//   one Predictor per concurrent caller; a Predictor must not be used by two threads at once.
// - predict() allocates only the decoded image, its resized copy, the result (probabilities, CAM maps, encoded
//   images) and the CAM methods' scratch: nothing that grows from one call to the next.
// Errors are effcam::Error (effcam/error.hpp) with a one-line message and a code; no other exception is thrown
// on purpose (std::bad_alloc may escape when the machine is out of memory).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "effcam/error.hpp"
#include "effcam/export.hpp"

namespace effcam {

// The library's own version and the version of the C API it implements (effcam.h's EFFCAM_API_VERSION).
EFFCAM_API const char* version();

// The kernel's memory figures for this process (0 where unreadable).
struct ProcessMemory {
  uint64_t rss_bytes = 0;       // VmRSS
  uint64_t peak_rss_bytes = 0;  // VmHWM
  uint64_t pss_bytes = 0;       // Pss: pages shared with other processes (the mmap'd weights) counted in shares
};
EFFCAM_API ProcessMemory process_memory();

// The kernel path, process-wide: the best this CPU has ("avx512", "avx2" or "scalar") unless set_dispatch forces one.
// set_dispatch throws Error (InvalidArgument) for an unknown path or one this CPU lacks; call it before predicting,
// not while any Predictor runs.
EFFCAM_API void set_dispatch(const std::string& path);
EFFCAM_API std::string dispatch();
EFFCAM_API std::vector<std::string> available_dispatches();  // best first

// ---------------------------------------------------------------------------------------------------------------
// Models

// A layer a CAM can target: a spatial map (height x width > 1) of a Keras layer the file can recover.
struct LayerInfo {
  std::string name;        // bare ("top_conv") or inside a nested model ("efficientnetv2-s/top_conv")
  std::string class_name;  // the Keras class ("Conv2D", "Add", ...)
  uint32_t height = 0, width = 0, channels = 0;
};

namespace detail {
struct ModelState;
struct PredictorState;
}  // namespace detail

class EFFCAM_API Model {
 public:
  // Maps a .effcam file and validates it (structure, checksums, graph). Throws Error (Io: cannot open; Format:
  // anything wrong with its contents) naming the file.
  static Model load(const std::string& path);
  // Validates a copy of an in-memory .effcam file (the caller's buffer may be freed on return). `name` labels
  // messages.
  static Model from_buffer(std::span<const uint8_t> bytes, const std::string& name = "<memory>");

  // Copies share the same loaded model.
  Model(const Model&) = default;
  Model& operator=(const Model&) = default;

  const std::string& path() const;  // the file it was loaded from, or the buffer's name
  uint32_t input_height() const;
  uint32_t input_width() const;
  uint32_t input_channels() const;  // 1 (grayscale, PIL "L") or 3 (RGB)
  uint32_t classes() const;
  // One name per class: the file's labels, or "class_<index>" for a file without labels.
  const std::vector<std::string>& labels() const;
  bool has_labels() const;
  // True when the model ends in softmax, so that predictions carry the pre-softmax logits.
  bool has_logits() const;
  // Every layer a CAM can target, in execution order.
  const std::vector<LayerInfo>& cam_layers() const;
  // The default CAM target: the last Conv2D / DepthwiseConv2D layer (top_conv in EfficientNetV2); empty when the
  // model has none.
  const std::string& default_cam_layer() const;
  // Resolves a layer name as cam_layers() lists it or bare inside a nested model; throws Error naming the layer
  // (InvalidArgument) when no CAM can target it.
  const LayerInfo& cam_layer(const std::string& name) const;
  uint64_t file_bytes() const;    // the .effcam file
  uint64_t weight_bytes() const;  // of which weights (what the mmap shares between processes)
  uint32_t ops() const;           // fused ops the engine runs

 private:
  explicit Model(std::shared_ptr<const detail::ModelState> state);
  std::shared_ptr<const detail::ModelState> state_;
  friend class Predictor;
};

// ---------------------------------------------------------------------------------------------------------------
// Images

// Where predict() takes its image from. An encoded file (JPEG, PNG, BMP, GIF) in memory or on disk is decoded the
// way PIL's Image.open(...).convert("RGB"/"L") does and resized to the model's input the way PIL's
// Image.resize(size, Image.LANCZOS) does. Raw pixels are 8-bit, channels interleaved per pixel (1 = L, 2 = LA,
// 3 = RGB, 4 = RGBA; alpha is dropped as PIL's convert("RGB") / convert("L") drops it); strides in bytes allow any
// layout (a numpy view, a cropped buffer). The source only points at the caller's memory: it must stay valid
// during predict().
class EFFCAM_API ImageSource {
 public:
  static ImageSource encoded(std::span<const uint8_t> bytes, std::string name = "<memory>");
  static ImageSource file(std::string path);
  // row_stride / pixel_stride / channel_stride 0 mean packed: width * pixel_stride, channels, 1.
  static ImageSource pixels(std::span<const uint8_t> data, uint32_t width, uint32_t height, uint32_t channels,
                            size_t row_stride = 0, size_t pixel_stride = 0, size_t channel_stride = 0,
                            std::string name = "<pixels>");

  enum class Kind { Encoded, File, Pixels };
  Kind kind() const { return kind_; }
  const std::string& name() const { return name_; }  // the path, or the name given; labels messages and JSON
  std::span<const uint8_t> bytes() const { return bytes_; }
  uint32_t width() const { return width_; }
  uint32_t height() const { return height_; }
  uint32_t channels() const { return channels_; }
  size_t row_stride() const { return row_stride_; }
  size_t pixel_stride() const { return pixel_stride_; }
  size_t channel_stride() const { return channel_stride_; }

 private:
  ImageSource() = default;
  Kind kind_ = Kind::Encoded;
  std::string name_;
  std::span<const uint8_t> bytes_;
  uint32_t width_ = 0, height_ = 0, channels_ = 0;
  size_t row_stride_ = 0, pixel_stride_ = 0, channel_stride_ = 0;
};

// ---------------------------------------------------------------------------------------------------------------
// Predicting and explaining

// The CAM methods, with pytorch-grad-cam's formulas. None: no explanation.
enum class CamMethod { None, GradCam, GradCamPlusPlus, HiResCam, XGradCam, LayerCam, EigenCam };
// The score a CAM differentiates: the class's pre-softmax logit (the Grad-CAM paper's and the Keras tutorial's
// choice) or its softmax probability (what the dermatology app used).
enum class CamScore { Logit, Prob };
enum class ImageFormat { None, Png, Jpeg };
// The size overlays and heatmaps are rendered at: the model's input, or the decoded image's own.
enum class RenderSize { Model, Original };

// "gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam", "none" and back; parse throws Error
// (InvalidArgument) listing the names.
EFFCAM_API CamMethod parse_cam_method(const std::string& name);
EFFCAM_API const char* cam_method_name(CamMethod method);
// "logit" / "prob"; "png" / "jpeg" (also "jpg") / "none"; "model" / "original".
EFFCAM_API CamScore parse_cam_score(const std::string& name);
EFFCAM_API const char* cam_score_name(CamScore score);
EFFCAM_API ImageFormat parse_image_format(const std::string& name);
EFFCAM_API RenderSize parse_render_size(const std::string& name);
// A byte count as the tools take it: "50000000", "48MiB" / "48M", also K / KiB and G / GiB (powers of 1024).
// Throws Error (InvalidArgument) for anything else or a count that overflows 64 bits.
EFFCAM_API uint64_t parse_byte_size(const std::string& text);

struct PredictorOptions {
  uint32_t threads = 1;  // worker threads of this predictor (1 starts none)
  // The layers this predictor's CAMs may target (names as Model::cam_layers() lists them); the arena is planned
  // for the largest of them. Empty: the model's default CAM layer.
  std::vector<std::string> cam_layers;
  // False: plan the forward pass alone (smallest arena); predict() then refuses CAMs.
  bool explain = true;
  // Keras layers whose activations every Prediction carries (Prediction::layers), for parity checks.
  std::vector<std::string> dump_layers;
  // Encoded images whose declared width x height exceeds this, or with a side above 65,535 (PIL has no such limit
  // for PNG, BMP and GIF), are refused (ErrorCode::Image) before any pixel buffer is allocated; 1..100,000,000.
  uint64_t max_image_pixels = 100'000'000;
  // The byte budget of one image: what decoding and resizing it needs, known from its header before any pixel
  // buffer is allocated (a baseline JPEG or plain PNG streamed a row at a time: about 256 bytes per column and 32
  // per row, plus 1 MiB; whole-image paths add what they hold: a progressive JPEG's coefficients, 2 to 8 bytes per
  // pixel; an interlaced PNG's rows, 1 to 8; WebP 16; BMP up to 8; GIF 13; raw pixels 3), plus, for pictures at
  // RenderSize::Original, 19 bytes per image pixel per picture (the encoded picture and its base64 in to_json,
  // each with its buffer's growth) and 6 when the EXIF orientation turns it (the picture decoded whole). An image
  // that needs more is refused (ErrorCode::Image) with one line giving the need and the budget. 0: 24 bytes x
  // max_image_pixels + 4 MiB. image_bytes() = this budget + what grows with the model's input.
  uint64_t max_image_bytes = 0;
  // The most bytes the arena (the forward pass and an explanation's backward pass) may take: explanations deep in
  // the network then recompute activations instead of keeping them (MemoryFigures says how much), each op at most
  // once, so at most one extra forward pass; inside the budget, the plan recomputing least. 0: twice the forward
  // pass's arena (or the smallest arena found, when a CAM layer needs more). A budget below what a CAM layer needs
  // fails with InvalidArgument naming that layer's smallest arena.
  uint64_t memory_budget_bytes = 0;
};

// The pictures of a CAM, encoded in memory: the map in matplotlib's jet colours over the image as the Keras Grad-CAM
// tutorial blends it, and the coloured map alone. What Predictor::render draws from an existing prediction, and
// PredictOptions::pictures (none by default there).
struct RenderOptions {
  ImageFormat overlay = ImageFormat::Png;
  ImageFormat heatmap = ImageFormat::None;
  RenderSize render_size = RenderSize::Model;
  float overlay_alpha = 0.4f;
  int jpeg_quality = 90;  // 1..100 (also the input image's, PredictOptions::input_image)
};

struct PredictOptions {
  uint32_t top_k = 5;  // clipped to the class count; at least 1
  CamMethod cam = CamMethod::None;
  std::string cam_layer;                // empty: the predictor's first CAM layer
  CamScore cam_score = CamScore::Logit;
  std::optional<uint32_t> cam_class;    // empty: the top-1 class
  RenderOptions pictures{.overlay = ImageFormat::None};  // need a CAM
  // Turn the image upright by its EXIF orientation first, as PIL's ImageOps.exif_transpose does. Off by default:
  // PIL's Image.open ignores the tag (and so did the app the model was trained for).
  bool apply_exif_orientation = false;
  // JPEG: decode at the smallest DCT scale (1/8, 1/4, 1/2) that keeps the image at least the model's input size,
  // as PIL's Image.draft() does, then the same Lanczos resize: faster, slightly different pixels. Off: exact.
  bool fast_jpeg_decode = false;
  // The 8-bit image the model receives (after decoding, orientation and resize), encoded: Prediction::input_image.
  ImageFormat input_image = ImageFormat::None;
};

struct ClassScore {
  uint32_t index = 0;
  std::string label;
  float probability = 0;
};

struct CamResult {
  CamMethod method = CamMethod::GradCam;
  std::string layer;
  uint32_t class_index = 0;
  std::string label;
  CamScore score_kind = CamScore::Logit;
  float score = 0;                 // the differentiated score's value
  uint32_t height = 0, width = 0;  // the target layer's map
  std::vector<float> values;       // height * width, row-major: ReLU(raw) / max, in 0..1 (zeros when empty)
  std::vector<float> raw;          // the method's map before ReLU and normalisation
  bool empty = true;               // nothing positive: no evidence for the class at that layer
  std::vector<std::string> files;  // where a front end wrote its pictures (to_json reports them); the API never
                                   // writes files itself
};

struct EncodedImage {
  ImageFormat format = ImageFormat::None;
  uint32_t width = 0, height = 0;
  std::vector<uint8_t> bytes;
  const char* mime() const { return format == ImageFormat::Jpeg ? "image/jpeg" : "image/png"; }
};

// Writes the encoded picture to `path` through a temporary file renamed into place (no partial file on failure).
// Throws Error (Io) naming the path.
EFFCAM_API void save(const EncodedImage& image, const std::string& path);

struct LayerDump {
  std::string name;
  uint32_t height = 0, width = 0, channels = 0;
  std::vector<float> values;  // HWC
};

struct Timings {
  double decode_ms = 0, preprocess_ms = 0, forward_ms = 0, cam_ms = 0, total_ms = 0;
  double recompute_ms = 0;  // the part of cam_ms spent recomputing activations the forward pass did not keep
};

struct MemoryFigures {
  uint64_t peak_rss_bytes = 0;  // the process's high-water mark (VmHWM) after this prediction
  uint64_t rss_bytes = 0;       // the process's resident memory (VmRSS)
  uint64_t arena_bytes = 0;     // the arena of the session that ran (its forward pass and CAM layer)
  uint64_t forward_arena_bytes = 0;      // the forward pass's alone
  // No plan holds less: the forward pass's largest live set, and with a CAM the largest working set of one
  // backward step (the gradients alive there and the step's own buffers).
  uint64_t arena_lower_bound_bytes = 0;
  // With a CAM: the smallest arena of the plans tried (what memory_budget_bytes can reach), the forward tensors
  // kept for the backward pass, the ops recomputed and their multiply-adds, those of the backward steps that rerun
  // their op for its pre-activation, the backward steps that read it kept instead (by the op's forward step, by its
  // recomputation), and the forward pass's multiply-adds.
  uint64_t arena_floor_bytes = 0;
  uint32_t checkpoints = 0, recomputed_ops = 0;
  uint64_t recomputed_multiply_adds = 0, rerun_multiply_adds = 0;
  uint32_t pre_activations_kept_by_forward = 0, pre_activations_kept_by_recomputation = 0;
  uint64_t forward_multiply_adds = 0;
};

struct Prediction {
  std::string image;                // the source's name
  uint32_t input_height = 0, input_width = 0;
  uint32_t image_height = 0, image_width = 0;  // the decoded image before resizing (after any orientation)
  uint32_t exif_orientation = 1;    // the file's EXIF orientation tag (1..8; 1 when it has none, raw pixels)
  uint32_t applied_orientation = 1;  // exif_orientation when applied (PredictOptions::apply_exif_orientation), else 1
  uint32_t jpeg_scale_denominator = 1;  // 2, 4 or 8 when PredictOptions::fast_jpeg_decode scaled a JPEG's DCT
  std::vector<ClassScore> top_k;    // best first
  std::vector<float> probabilities;  // one per class
  std::vector<float> logits;        // pre-softmax; empty when the model does not end in softmax
  std::optional<CamResult> cam;
  std::optional<EncodedImage> overlay, heatmap;
  std::optional<EncodedImage> input_image;  // PredictOptions::input_image
  std::vector<LayerDump> layers;    // PredictorOptions::dump_layers, in that order
  Timings timing;
  std::string dispatch;             // the kernel path that ran: "avx512", "avx2" or "scalar"
  MemoryFigures memory;
};

class EFFCAM_API Predictor {
 public:
  // Plans and allocates the arena. Throws Error (InvalidArgument) for an unknown CAM or dump layer or a bad thread
  // count.
  explicit Predictor(Model model, const PredictorOptions& options = {});
  Predictor(Predictor&&) noexcept;
  Predictor& operator=(Predictor&&) noexcept;
  ~Predictor();

  const Model& model() const;
  // Decodes, resizes and preprocesses the image, runs the forward pass and, when options.cam is set, the backward
  // pass to the CAM layer, the map and the pictures. Throws Error: Image for an undecodable image (the predictor
  // stays usable), InvalidArgument for bad options (an unknown layer, a class out of range, raw pixels whose
  // sizes do not match their span).
  Prediction predict(const ImageSource& image, const PredictOptions& options = {});
  // The overlay and heatmap of a prediction's CAM drawn again with other picture options, without running the
  // network: `image` (the one `prediction` was made from) is decoded and resized again as predict() did (the same
  // orientation and JPEG DCT scale, read from the prediction), and the pictures are byte for byte the ones
  // predict() returns with the same options. Returns the prediction with these pictures in place of its own.
  // Uses none of the arena. Throws Error: InvalidArgument for a prediction without a CAM, no picture asked, bad
  // options, or an image of another size than the prediction's; Image / Io as predict() does.
  Prediction render(const Prediction& prediction, const ImageSource& image, const RenderOptions& options) const;

  uint64_t arena_bytes() const;          // planned: the largest over its CAM layers (or the forward pass)
  uint64_t forward_arena_bytes() const;  // the forward pass alone
  uint64_t arena_lower_bound_bytes() const;
  // An upper bound on what one predict() and to_json() of its result allocate besides the arena, for any image
  // it accepts: the image budget (PredictorOptions::max_image_bytes: decoding, resizing, original-size pictures)
  // plus 80 bytes per model-input pixel (the resized image and its resize sums, the CAM map upsampled, the
  // model-size heatmap, overlay and input picture and their encodings, the CAM values as JSON text).
  uint64_t image_bytes() const;
  uint64_t max_image_bytes() const;  // the budget in force (PredictorOptions::max_image_bytes, or its default)
  uint32_t threads() const;
  const std::string& dispatch() const;   // the kernel path this predictor runs
  const std::vector<std::string>& cam_layers() const;  // resolved; empty when planned without explanations

 private:
  std::unique_ptr<detail::PredictorState> state_;
};

// The JSON object effcam-predict --json prints for one image (one line, UTF-8; invalid UTF-8 in names is
// replaced). Fields: image, input {height, width, exif_orientation, applied_orientation, jpeg_scale (the DCT scale
// denominator)}, top_k [{index, label, probability}], probabilities, logits (when the model has them), timing_ms
// {decode, preprocess, forward, cam, recompute, total}, dispatch, peak_rss_bytes, rss_bytes, arena_bytes,
// forward_arena_bytes, arena_lower_bound_bytes, cam {method, layer, class_index, label, score, score_kind, height,
// width, values, raw, cam_empty, files, plan {arena_floor_bytes, checkpoints, recomputed_ops,
// recomputed_multiply_adds, rerun_multiply_adds, pre_activations_kept_by_forward, pre_activations_kept_by_recomputation,
// forward_multiply_adds}} (when explained), layers {name: {shape,
// values}} (when dumped).
struct JsonOptions {
  std::string model;            // when not empty: a "model" field with this name (the service's)
  bool embed_images = false;    // "overlay" / "heatmap" {mime, base64} for the encoded pictures
};
EFFCAM_API std::string to_json(const Prediction& prediction, const JsonOptions& options = {});
// The object effcam-predict --json prints for an image that failed: {"error": message, "image": name}.
EFFCAM_API std::string error_json(const std::string& image, const std::string& message);

// ---------------------------------------------------------------------------------------------------------------
// Converting Keras models

enum class WeightType { F16, F32 };

struct ConvertOptions {
  WeightType weights = WeightType::F16;
  std::vector<std::string> labels;  // one per class, or none
  // For models declared with None spatial dimensions: the input size to plan for (height, width).
  std::optional<std::pair<uint32_t, uint32_t>> input_size;
};

struct ConversionReport {
  std::string input, output;
  std::string source_format;  // "keras-zip" (.keras) or "legacy-h5" (.h5)
  std::string keras_version;  // empty when the file does not say
  std::string model_name;
  uint64_t keras_layers = 0, ops = 0;
  uint64_t keras_parameters = 0, stored_parameters = 0;
  uint32_t input_height = 0, input_width = 0, input_channels = 0, classes = 0;
  bool labelled = false;
  WeightType weights = WeightType::F16;
  uint64_t file_bytes = 0;
};

// Reads a Keras 3 .keras or Keras 2 / 3 .h5 classifier, lowers it (BatchNorm folding, fusion), checks that the
// result loads as a valid model, then writes it through a temporary file: a failure never leaves a partial output.
// Throws Error: Io (cannot read or write), Format (not a Keras model, corrupt, an unsupported layer: the message
// names it), InvalidArgument (labels that do not match the classes, a bad input size).
EFFCAM_API ConversionReport convert(const std::string& input, const std::string& output,
                                    const ConvertOptions& options = {});
// The report as effcam-convert prints it (several lines).
EFFCAM_API std::string format_report(const ConversionReport& report);

}  // namespace effcam
