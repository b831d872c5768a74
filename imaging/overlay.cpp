#include "imaging/overlay.h"

// clang-format off: jpeglib.h needs <cstdio> first
#include <cstdio>
#include <jpeglib.h>
// clang-format on
#include <png.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <csetjmp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <utility>

#include "base/file_io.h"
#include "effcam/error.hpp"
#include "imaging/decoder.h"

namespace effcam::imaging {
namespace {

// matplotlib's _jet_data (_cm.py): (x, value left of x, value right of x) per channel.
struct JetPoint {
  double x, y0, y1;
};
constexpr JetPoint kJetRed[] = {{0.00, 0, 0}, {0.35, 0, 0}, {0.66, 1, 1}, {0.89, 1, 1}, {1.00, 0.5, 0.5}};
constexpr JetPoint kJetGreen[] = {{0.000, 0, 0}, {0.125, 0, 0}, {0.375, 1, 1},
                                  {0.640, 1, 1}, {0.910, 0, 0}, {1.000, 0, 0}};
constexpr JetPoint kJetBlue[] = {{0.00, 0.5, 0.5}, {0.11, 1, 1}, {0.34, 1, 1}, {0.65, 0, 0}, {1.00, 0, 0}};
constexpr int kJetSize = 256;

// Entry i of matplotlib's _create_lookup_table(256, data), with its double operations in its order.
double jet_channel(std::span<const JetPoint> data, int i) {
  if (i == 0) return data.front().y1;
  if (i == kJetSize - 1) return data.back().y0;
  const double last = kJetSize - 1;
  const double xind = last * (i * (1.0 / last));  // (N - 1) * np.linspace(0, 1, N)[i]
  size_t j = 0;                                   // np.searchsorted(x * (N - 1), xind), side "left"
  while (data[j].x * last < xind) ++j;
  const double distance = (xind - data[j - 1].x * last) / (data[j].x * last - data[j - 1].x * last);
  return std::clamp(distance * (data[j].y0 - data[j - 1].y1) + data[j - 1].y1, 0.0, 1.0);
}

std::array<std::array<uint8_t, 3>, 256> make_jet_colormap() {
  std::array<std::array<uint8_t, 3>, 256> colors{};
  const std::span<const JetPoint> channels[3] = {kJetRed, kJetGreen, kJetBlue};
  for (int i = 0; i < kJetSize; ++i)
    for (int c = 0; c < 3; ++c)
      colors[i][c] = static_cast<uint8_t>(static_cast<float>(jet_channel(channels[c], i)) * 255.0f);
  return colors;
}

void check_size(uint32_t width, uint32_t height, const char* what) {
  if (width == 0 || height == 0 || uint64_t{width} * height > kMaxImagePixels)
    throw Error(std::string(what) + ": output size " + std::to_string(width) + "x" + std::to_string(height) +
                " is empty or above " + std::to_string(kMaxImagePixels) + " pixels");
}

void check_image(const Image& image, const char* what) {
  if (image.width == 0 || image.height == 0 || image.channels == 0 || image.channels > 4 ||
      image.pixels.size() != uint64_t{image.width} * image.height * image.channels)
    throw Error(std::string(what) + ": inconsistent image " + std::to_string(image.width) + "x" +
                std::to_string(image.height) + "x" + std::to_string(image.channels) + " with " +
                std::to_string(image.pixels.size()) + " bytes");
}

// One output coordinate of a bilinear resample: the two input samples and the weight of the second.
struct BilinearTap {
  uint32_t first, second;
  double weight;
};

std::vector<BilinearTap> bilinear_taps(uint32_t in_size, uint32_t out_size) {
  std::vector<BilinearTap> taps(out_size);
  const double scale = static_cast<double>(in_size) / out_size;
  for (uint32_t o = 0; o < out_size; ++o) {
    const double source = std::clamp((o + 0.5) * scale - 0.5, 0.0, static_cast<double>(in_size - 1));
    const auto first = static_cast<uint32_t>(source);
    taps[o] = {first, std::min(first + 1, in_size - 1), source - first};
  }
  return taps;
}

bool has_extension(const std::string& path, std::initializer_list<std::string_view> extensions) {
  std::string extension = std::filesystem::path(path).extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return std::find(extensions.begin(), extensions.end(), extension) != extensions.end();
}

// One output row of upsample_map: the bilinear blend of two CAM rows at the given columns.
void upsample_row(const CamMap& cam, const std::vector<BilinearTap>& columns, const BilinearTap& row, float* out) {
  const auto at = [&](uint32_t y, uint32_t x) -> double { return cam.normalized[size_t{y} * cam.width + x]; };
  for (size_t x = 0; x < columns.size(); ++x) {
    const BilinearTap& column = columns[x];
    const double top =
        at(row.first, column.first) * (1.0 - column.weight) + at(row.first, column.second) * column.weight;
    const double bottom =
        at(row.second, column.first) * (1.0 - column.weight) + at(row.second, column.second) * column.weight;
    out[x] = static_cast<float>(top * (1.0 - row.weight) + bottom * row.weight);
  }
}

void check_cam(const CamMap& cam) {
  if (cam.width == 0 || cam.height == 0 || cam.normalized.size() != uint64_t{cam.width} * cam.height)
    throw Error("upsample_map: inconsistent CAM map " + std::to_string(cam.height) + "x" +
                std::to_string(cam.width) + " with " + std::to_string(cam.normalized.size()) + " values");
}

// jet colours of upsampled values, RGB.
void color_row(const float* values, size_t count, uint8_t* rgb) {
  const auto& colors = jet_colormap();
  for (size_t i = 0; i < count; ++i) {
    const float value = values[i] > 0.0f ? std::min(values[i], 1.0f) : 0.0f;  // NaN from a hand-made map -> 0
    const auto& color = colors[static_cast<uint8_t>(255.0f * value)];
    std::copy(color.begin(), color.end(), rgb + i * 3);
  }
}

// The heatmap of a CAM, one row at a time (render_heatmap's rows).
class HeatmapRows {
 public:
  HeatmapRows(const CamMap& cam, uint32_t width, uint32_t height)
      : cam_(cam), columns_(bilinear_taps(cam.width, width)), rows_(bilinear_taps(cam.height, height)),
        values_(width) {}
  void row(uint32_t y, uint8_t* rgb) {
    upsample_row(cam_, columns_, rows_[y], values_.data());
    color_row(values_.data(), values_.size(), rgb);
  }

 private:
  const CamMap& cam_;
  std::vector<BilinearTap> columns_, rows_;
  std::vector<float> values_;
};

// The Keras tutorial's blend, element by element: heatmap * alpha + image in float32 (an L image counts thrice).
float superimposed(uint8_t heat, uint8_t image, float alpha) {
  return static_cast<float>(heat) * alpha + static_cast<float>(image);
}

// array_to_img's scaling of a superimposed value, given the global minimum and the range.
uint8_t scaled(float value, float low, float range) {
  float x = value - low;
  if (range != 0.0f) x /= range;
  return static_cast<uint8_t>(x * 255.0f);
}

// Rows of the blend of an RGB heatmap row with an image row of `channels` (1 or 3).
void blend_row(const uint8_t* heat, const uint8_t* image, uint32_t channels, size_t width, float alpha, float low,
               float range, uint8_t* out) {
  for (size_t i = 0; i < width * 3; ++i) {
    out[i] = scaled(superimposed(heat[i], image[channels == 3 ? i : i / 3], alpha), low, range);
  }
}

void widen_min_max(const uint8_t* heat, const uint8_t* image, uint32_t channels, size_t width, float alpha,
                   float& low, float& high) {
  for (size_t i = 0; i < width * 3; ++i) {
    const float v = superimposed(heat[i], image[channels == 3 ? i : i / 3], alpha);
    low = std::min(low, v);
    high = std::max(high, v);
  }
}

// Where rendered rows go, top to bottom, then finish().
class RowSink {
 public:
  virtual ~RowSink() = default;
  virtual void write_row(const uint8_t* row) = 0;
  virtual void finish() = 0;
};

// PNG (libpng) or JPEG (libjpeg-turbo, 4:2:0 chroma as stb_image_write used at quality 90) encoded a row at a time
// into an open file or a byte vector. Errors name `what` ("cannot write image 'x.png'", "cannot encode image").
class RowEncoder final : public RowSink {
 public:
  RowEncoder(Encoding encoding, uint32_t width, uint32_t height, uint32_t channels, int jpeg_quality,
             std::FILE* file, std::vector<uint8_t>* bytes, std::string what)
      : png_(encoding == Encoding::Png), bytes_(bytes), what_(std::move(what)) {
    if (width == 0 || height == 0 || channels == 0 || channels > 4 || (!png_ && channels != 1 && channels != 3))
      fail("cannot encode a " + std::to_string(width) + "x" + std::to_string(height) + "x" + std::to_string(channels) +
           " image", ErrorCode::InvalidArgument);
    if (uint64_t{width} * channels > INT_MAX || height > INT_MAX || (!png_ && (width > 65535 || height > 65535)))
      fail(std::to_string(width) + "x" + std::to_string(height) + " is too large for " + (png_ ? "PNG" : "JPEG"),
           ErrorCode::InvalidArgument);
    if (jpeg_quality < 1 || jpeg_quality > 100) fail("JPEG quality must be 1..100", ErrorCode::InvalidArgument);
    if (png_) {
      png_struct_ = png_create_write_struct(PNG_LIBPNG_VER_STRING, this, png_error_handler, nullptr);
      if (!png_struct_ || !(png_info_ = png_create_info_struct(png_struct_)))
        fail("cannot create a PNG writer", ErrorCode::OutOfMemory);
      static constexpr int kColorType[] = {PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                           PNG_COLOR_TYPE_RGB_ALPHA};
      guarded([&] {
        if (file) {
          png_init_io(png_struct_, file);
        } else {
          png_set_write_fn(png_struct_, bytes_, append_png_data, nullptr);
        }
        // zlib's fastest level: level 6 took six times longer on the overlay of a 4032x3024 photo.
        png_set_compression_level(png_struct_, 1);
        png_set_IHDR(png_struct_, png_info_, width, height, 8, kColorType[channels - 1], PNG_INTERLACE_NONE,
                     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_write_info(png_struct_, png_info_);
      });
    } else {
      jpeg_.err = jpeg_std_error(&jpeg_error_.manager);
      jpeg_error_.manager.error_exit = jpeg_error_handler;
      guarded([&] {
        jpeg_create_compress(&jpeg_);
        jpeg_created_ = true;
        if (file) {
          jpeg_stdio_dest(&jpeg_, file);
        } else {
          jpeg_mem_dest(&jpeg_, &jpeg_memory_, &jpeg_memory_size_);
        }
        jpeg_.image_width = width;
        jpeg_.image_height = height;
        jpeg_.input_components = static_cast<int>(channels);
        jpeg_.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
        jpeg_set_defaults(&jpeg_);
        jpeg_set_quality(&jpeg_, jpeg_quality, TRUE);
        jpeg_start_compress(&jpeg_, TRUE);
      });
    }
  }
  ~RowEncoder() override {
    if (png_struct_) png_destroy_write_struct(&png_struct_, png_info_ ? &png_info_ : nullptr);
    if (jpeg_created_) jpeg_destroy_compress(&jpeg_);
    std::free(jpeg_memory_);  // jpeg_mem_dest's buffer is the caller's to free
  }
  RowEncoder(const RowEncoder&) = delete;
  RowEncoder& operator=(const RowEncoder&) = delete;

  void write_row(const uint8_t* row) override {
    guarded([&] {
      if (png_) {
        png_write_row(png_struct_, row);
      } else {
        JSAMPROW rows[1] = {const_cast<JSAMPROW>(row)};  // libjpeg only reads it
        jpeg_write_scanlines(&jpeg_, rows, 1);
      }
    });
  }

  void finish() override {
    guarded([&] {
      if (png_) {
        png_write_end(png_struct_, png_info_);
      } else {
        jpeg_finish_compress(&jpeg_);
      }
    });
    if (jpeg_memory_) bytes_->assign(jpeg_memory_, jpeg_memory_ + jpeg_memory_size_);
  }

 private:
  [[noreturn]] void fail(const std::string& problem, ErrorCode code = ErrorCode::Io) const {
    throw Error(what_ + ": " + problem, code);
  }

  // libpng's and libjpeg's errors come back here by longjmp; nothing with a destructor lies between.
  template <typename Call>
  void guarded(Call&& call) {
    if (setjmp(jump_) != 0) fail(message_);
    call();
  }

  static void append_png_data(png_structp png, png_bytep data, size_t length) {
    auto* bytes = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
    bytes->insert(bytes->end(), data, data + length);
  }

  static void png_error_handler(png_structp png, png_const_charp message) {
    auto* self = static_cast<RowEncoder*>(png_get_error_ptr(png));
    std::snprintf(self->message_, sizeof self->message_, "%s", message);
    std::longjmp(self->jump_, 1);
  }

  struct JpegError {
    jpeg_error_mgr manager;
    RowEncoder* self;
  };
  static void jpeg_error_handler(j_common_ptr cinfo) {
    RowEncoder* self = reinterpret_cast<JpegError*>(cinfo->err)->self;
    cinfo->err->format_message(cinfo, self->message_);
    std::longjmp(self->jump_, 1);
  }

  bool png_ = false;
  std::vector<uint8_t>* bytes_;
  std::string what_;
  png_structp png_struct_ = nullptr;
  png_infop png_info_ = nullptr;
  jpeg_compress_struct jpeg_{};
  JpegError jpeg_error_{{}, this};
  bool jpeg_created_ = false;
  unsigned char* jpeg_memory_ = nullptr;
  unsigned long jpeg_memory_size_ = 0;
  std::jmp_buf jump_;
  char message_[JMSG_LENGTH_MAX > 256 ? JMSG_LENGTH_MAX : 256] = {};
};

// An image file encoded a row at a time: PNG, or JPEG at quality 90, chosen by the extension, into a temporary
// file beside the path, renamed over it by finish(); a failed write leaves nothing behind.
class ImageFileWriter final : public RowSink {
 public:
  ImageFileWriter(const std::string& path, uint32_t width, uint32_t height, uint32_t channels) {
    const bool png = has_extension(path, {".png"});
    if (!png && !has_extension(path, {".jpg", ".jpeg"})) {
      throw Error("cannot write image '" + path + "': the extension is not .png, .jpg or .jpeg");
    }
    file_.emplace(path, "image");
    encoder_.emplace(png ? Encoding::Png : Encoding::Jpeg, width, height, channels, 90, file_->stream(), nullptr,
                     "cannot write image '" + path + "'");
  }
  ImageFileWriter(const ImageFileWriter&) = delete;
  ImageFileWriter& operator=(const ImageFileWriter&) = delete;

  void write_row(const uint8_t* row) override { encoder_->write_row(row); }

  void finish() override {
    encoder_->finish();
    file_->commit();
  }

 private:
  std::optional<AtomicFile> file_;
  std::optional<RowEncoder> encoder_;  // after file_: destroyed first, while its stream is still open
};

// The decoded image of a source in its applied orientation, a row at a time: streamed from the decoder when the
// orientation keeps rows as rows (none, or a left-right mirror), else decoded whole and turned (decode_full_size).
class OrientedRows {
 public:
  OrientedRows(const ImageSource& source, uint32_t channels, const DecodeOptions& options) {
    RowDecoderSettings settings;
    settings.channels = channels;
    settings.max_pixels = options.max_pixels;
    decoder_ = open_row_decoder(source, settings);
    const Orientation orientation =
        options.apply_exif_orientation ? decoder_->exif_orientation() : Orientation::Normal;
    mirror_ = orientation == Orientation::MirrorX;
    width_ = decoder_->width();
    height_ = decoder_->height();
    channels_ = channels;
    if (orientation != Orientation::Normal && !mirror_) {
      decoder_.reset();
      whole_ = decode_full_size(source, channels, options);
      width_ = whole_.width;
      height_ = whole_.height;
    }
  }
  uint32_t width() const { return width_; }
  uint32_t height() const { return height_; }

  void read_row(uint8_t* out) {
    const size_t row_bytes = size_t{width_} * channels_;
    if (!decoder_) {
      std::memcpy(out, &whole_.pixels[next_row_++ * row_bytes], row_bytes);
      return;
    }
    decoder_->read_row(out);
    if (mirror_) {
      for (uint32_t x = 0; x < width_ / 2; ++x) {
        std::swap_ranges(out + size_t{x} * channels_, out + size_t{x + 1} * channels_,
                         out + size_t{width_ - 1 - x} * channels_);
      }
    }
  }

 private:
  std::unique_ptr<RowDecoder> decoder_;
  Image whole_;
  bool mirror_ = false;
  uint32_t width_ = 0, height_ = 0, channels_ = 0;
  size_t next_row_ = 0;
};

}  // namespace

const std::array<std::array<uint8_t, 3>, 256>& jet_colormap() {
  static const std::array<std::array<uint8_t, 3>, 256> colors = make_jet_colormap();
  return colors;
}

std::vector<float> upsample_map(const CamMap& cam, uint32_t out_w, uint32_t out_h) {
  check_cam(cam);
  check_size(out_w, out_h, "upsample_map");
  const std::vector<BilinearTap> columns = bilinear_taps(cam.width, out_w);
  const std::vector<BilinearTap> rows = bilinear_taps(cam.height, out_h);
  std::vector<float> out(size_t{out_w} * out_h);
  for (uint32_t y = 0; y < out_h; ++y) upsample_row(cam, columns, rows[y], &out[size_t{y} * out_w]);
  return out;
}

Image render_heatmap(const CamMap& cam, uint32_t out_w, uint32_t out_h) {
  const std::vector<float> values = upsample_map(cam, out_w, out_h);
  Image heatmap{out_w, out_h, 3, std::vector<uint8_t>(values.size() * 3)};
  color_row(values.data(), values.size(), heatmap.pixels.data());
  return heatmap;
}

Image blend_overlay(const Image& image_rgb, const Image& heatmap_rgb, float alpha) {
  check_image(image_rgb, "blend_overlay image");
  check_image(heatmap_rgb, "blend_overlay heatmap");
  if (image_rgb.channels != 1 && image_rgb.channels != 3)
    throw Error("blend_overlay: the image has " + std::to_string(image_rgb.channels) + " channels, not 1 or 3");
  if (heatmap_rgb.channels != 3 || heatmap_rgb.width != image_rgb.width || heatmap_rgb.height != image_rgb.height)
    throw Error("blend_overlay: heatmap " + std::to_string(heatmap_rgb.width) + "x" +
                std::to_string(heatmap_rgb.height) + "x" + std::to_string(heatmap_rgb.channels) +
                " does not match the RGB image size " + std::to_string(image_rgb.width) + "x" +
                std::to_string(image_rgb.height));
  if (!std::isfinite(alpha)) throw Error("blend_overlay: alpha is not finite");

  // The whole image as one row: the minimum and maximum first, then the scaled values (recomputed, not stored).
  const size_t pixels = size_t{image_rgb.width} * image_rgb.height;
  float low = superimposed(heatmap_rgb.pixels[0], image_rgb.pixels[0], alpha), high = low;
  widen_min_max(heatmap_rgb.pixels.data(), image_rgb.pixels.data(), image_rgb.channels, pixels, alpha, low, high);
  Image out{image_rgb.width, image_rgb.height, 3, std::vector<uint8_t>(pixels * 3)};
  // array_to_img's x_max after x -= min is the range (rounding is monotonic).
  blend_row(heatmap_rgb.pixels.data(), image_rgb.pixels.data(), image_rgb.channels, pixels, alpha, low, high - low,
            out.pixels.data());
  return out;
}

std::vector<uint8_t> encode_image(const Image& image, Encoding encoding, int jpeg_quality) {
  check_image(image, "cannot encode image");
  std::vector<uint8_t> bytes;
  RowEncoder encoder(encoding, image.width, image.height, image.channels, jpeg_quality, nullptr, &bytes,
                     "cannot encode image");
  const size_t row_bytes = size_t{image.width} * image.channels;
  for (uint32_t y = 0; y < image.height; ++y) encoder.write_row(&image.pixels[y * row_bytes]);
  encoder.finish();
  return bytes;
}

void write_image(const Image& image, const std::string& path) {
  check_image(image, ("cannot write image '" + path + "'").c_str());
  ImageFileWriter writer(path, image.width, image.height, image.channels);
  const size_t row_bytes = size_t{image.width} * image.channels;
  for (uint32_t y = 0; y < image.height; ++y) writer.write_row(&image.pixels[y * row_bytes]);
  writer.finish();
}

namespace {

// The heatmap's rows into a sink.
void heatmap_into(const CamMap& cam, uint32_t width, uint32_t height, RowSink& sink) {
  check_cam(cam);
  check_size(width, height, "heatmap");
  HeatmapRows heatmap(cam, width, height);
  std::vector<uint8_t> row(size_t{width} * 3);
  for (uint32_t y = 0; y < height; ++y) {
    heatmap.row(y, row.data());
    sink.write_row(row.data());
  }
  sink.finish();
}

// The original-size overlay's rows into the sink open_sink(width, height) gives once the size is known.
void overlay_into(const ImageSource& source, uint32_t channels, const DecodeOptions& options, const CamMap& cam,
                  float alpha, const std::function<RowSink&(uint32_t width, uint32_t height)>& open_sink) {
  check_cam(cam);
  if (!std::isfinite(alpha)) throw Error("overlay: alpha is not finite");
  // First pass: the blend's minimum and maximum over the whole picture.
  OrientedRows first(source, channels, options);
  const uint32_t width = first.width(), height = first.height();
  check_size(width, height, "overlay");
  HeatmapRows heatmap(cam, width, height);
  std::vector<uint8_t> image_row(size_t{width} * channels), heat_row(size_t{width} * 3), out_row(size_t{width} * 3);
  float low = INFINITY, high = -INFINITY;
  for (uint32_t y = 0; y < height; ++y) {
    first.read_row(image_row.data());
    heatmap.row(y, heat_row.data());
    widen_min_max(heat_row.data(), image_row.data(), channels, width, alpha, low, high);
  }
  // Second pass: decoded again, blended and handed on row by row.
  OrientedRows second(source, channels, options);
  RowSink& sink = open_sink(width, height);
  for (uint32_t y = 0; y < height; ++y) {
    second.read_row(image_row.data());
    heatmap.row(y, heat_row.data());
    blend_row(heat_row.data(), image_row.data(), channels, width, alpha, low, high - low, out_row.data());
    sink.write_row(out_row.data());
  }
  sink.finish();
}

}  // namespace

void write_heatmap(const CamMap& cam, uint32_t width, uint32_t height, const std::string& path) {
  check_cam(cam);
  check_size(width, height, "write_heatmap");
  ImageFileWriter writer(path, width, height, 3);
  heatmap_into(cam, width, height, writer);
}

std::vector<uint8_t> encode_heatmap(const CamMap& cam, uint32_t width, uint32_t height, Encoding encoding,
                                    int jpeg_quality) {
  check_cam(cam);
  check_size(width, height, "encode_heatmap");
  std::vector<uint8_t> bytes;
  RowEncoder encoder(encoding, width, height, 3, jpeg_quality, nullptr, &bytes, "cannot encode image");
  heatmap_into(cam, width, height, encoder);
  return bytes;
}

void write_overlay(const ImageSource& source, uint32_t channels, const DecodeOptions& options, const CamMap& cam,
                   const std::string& path, float alpha) {
  std::optional<ImageFileWriter> writer;
  overlay_into(source, channels, options, cam, alpha, [&](uint32_t width, uint32_t height) -> RowSink& {
    return writer.emplace(path, width, height, 3);
  });
}

std::vector<uint8_t> encode_overlay(const ImageSource& source, uint32_t channels, const DecodeOptions& options,
                                    const CamMap& cam, Encoding encoding, int jpeg_quality, float alpha) {
  std::vector<uint8_t> bytes;
  std::optional<RowEncoder> encoder;
  overlay_into(source, channels, options, cam, alpha, [&](uint32_t width, uint32_t height) -> RowSink& {
    return encoder.emplace(encoding, width, height, 3, jpeg_quality, nullptr, &bytes, "cannot encode image");
  });
  return bytes;
}

}  // namespace effcam::imaging
