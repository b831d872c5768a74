#include "imaging/decoder.h"

// clang-format off: jpeglib.h needs <cstdio> first
#include <cstdio>
#include <jerror.h>
#include <jpeglib.h>
// clang-format on
#include <png.h>
#include <stb_image.h>
#include <webp/demux.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csetjmp>
#include <cstring>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "effcam/error.hpp"

namespace effcam::imaging {
namespace {

[[noreturn]] void fail(const std::string& what, const std::string& problem) {
  throw Error(what + ": " + problem, ErrorCode::Image);
}

// PIL's ITU-R 601-2 luma: L = R*299/1000 + G*587/1000 + B*114/1000 in 16-bit fixed point, rounded.
uint8_t pil_luma(uint8_t r, uint8_t g, uint8_t b) {
  return static_cast<uint8_t>((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
}

// One pixel of L or RGB to the wanted channel count.
void put_gray(uint8_t v, uint32_t channels, uint8_t* out) { std::fill(out, out + channels, v); }
void put_rgb(uint8_t r, uint8_t g, uint8_t b, uint32_t channels, uint8_t* out) {
  if (channels == 1) {
    out[0] = pil_luma(r, g, b);
  } else {
    out[0] = r, out[1] = g, out[2] = b;
  }
}

uint32_t be16(const uint8_t* p) { return uint32_t{p[0]} << 8 | p[1]; }
uint32_t le16(const uint8_t* p) { return uint32_t{p[1]} << 8 | p[0]; }
uint32_t be32(const uint8_t* p) { return be16(p) << 16 | be16(p + 2); }
uint32_t le32(const uint8_t* p) { return le16(p + 2) << 16 | le16(p); }

void check_size(uint64_t width, uint64_t height, uint64_t max_pixels, const std::string& what) {
  if (width == 0 || height == 0) fail(what, "zero width or height");
  if (width * height > max_pixels) {
    fail(what, std::to_string(width) + "x" + std::to_string(height) + " is above the limit of " +
                   std::to_string(max_pixels) + " pixels");
  }
  if (width > kMaxImageSide || height > kMaxImageSide) {
    fail(what, std::to_string(width) + "x" + std::to_string(height) + " has a side above the limit of " +
                   std::to_string(kMaxImageSide) + " pixels");
  }
}

// Refuses an image whose decode would need more than the budget (DecodeOptions::max_bytes), before allocating.
void check_budget(uint64_t width, uint64_t height, uint64_t whole_image_bytes, const RowDecoderSettings& settings,
                  const std::string& what) {
  const uint64_t need =
      decode_need_bytes(width, height, whole_image_bytes) + settings.extra_bytes_per_pixel * width * height;
  if (need > settings.max_bytes) {
    fail(what, std::to_string(width) + "x" + std::to_string(height) + " needs " + std::to_string(need) +
                   " bytes to decode, above the budget of " + std::to_string(settings.max_bytes));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The encoded bytes: a span in memory, or a FILE read as the decoder asks (JPEG, PNG) or whole (the others).

class Input {
 public:
  explicit Input(const ImageSource& source) : label_(source.label()) {
    if (!source.bytes.empty() || source.path.empty()) {
      if (source.bytes.empty()) fail("image '" + label_ + "'", "no data (empty)");
      bytes_ = source.bytes;
      return;
    }
    file_ = std::fopen(source.path.c_str(), "rb");
    if (!file_) throw Error("image '" + label_ + "': cannot open (" + std::strerror(errno) + ")", ErrorCode::Io);
    if (std::fseek(file_, 0, SEEK_END) != 0) throw Error("image '" + label_ + "': cannot seek", ErrorCode::Io);
    const long size = std::ftell(file_);
    if (size < 0 || std::fseek(file_, 0, SEEK_SET) != 0) {
      throw Error("image '" + label_ + "': cannot read its size", ErrorCode::Io);
    }
    if (size == 0) fail("image '" + label_ + "'", "file is empty");
    if (uint64_t(size) > kMaxImageFileBytes) {
      fail("image '" + label_ + "'", "file is " + std::to_string(size) + " bytes, above the limit of " +
                                         std::to_string(kMaxImageFileBytes));
    }
    file_size_ = static_cast<size_t>(size);
    head_.resize(std::min<size_t>(file_size_, 32));
    if (std::fread(head_.data(), 1, head_.size(), file_) != head_.size() || std::fseek(file_, 0, SEEK_SET) != 0) {
      throw Error("image '" + label_ + "': read failed", ErrorCode::Io);
    }
  }
  ~Input() {
    if (file_) std::fclose(file_);
  }
  Input(const Input&) = delete;
  Input& operator=(const Input&) = delete;

  const std::string& label() const { return label_; }
  std::FILE* file() const { return file_; }
  // The first bytes, enough to tell the format.
  std::span<const uint8_t> head() const { return file_ ? std::span<const uint8_t>(head_) : bytes_; }
  // All of it, reading a file into memory if need be.
  std::span<const uint8_t> whole() {
    if (!file_) return bytes_;
    whole_.resize(file_size_);
    if (std::fread(whole_.data(), 1, whole_.size(), file_) != whole_.size()) {
      throw Error("image '" + label_ + "': read failed", ErrorCode::Io);
    }
    return whole_;
  }
  std::span<const uint8_t> memory() const { return bytes_; }

 private:
  std::string label_;
  std::span<const uint8_t> bytes_;
  std::FILE* file_ = nullptr;
  size_t file_size_ = 0;
  std::vector<uint8_t> head_, whole_;
};

bool starts_with(std::span<const uint8_t> bytes, std::string_view magic, size_t offset = 0) {
  return bytes.size() >= offset + magic.size() && std::memcmp(bytes.data() + offset, magic.data(), magic.size()) == 0;
}

// ---------------------------------------------------------------------------------------------------------------
// JPEG: libjpeg-turbo set up as Pillow's JpegDecode.c sets it up (default ISLOW IDCT and fancy upsampling, RGB,
// grayscale or CMYK out; scale_denom for draft()), so the pixels are PIL's bit for bit.

struct JpegError {
  jpeg_error_mgr manager;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_error_exit(j_common_ptr cinfo) {
  auto* error = reinterpret_cast<JpegError*>(cinfo->err);
  if (error->manager.msg_code == JERR_BAD_PRECISION) {
    std::snprintf(error->message, sizeof error->message, "%d-bit samples are not supported, only 8-bit",
                  error->manager.msg_parm.i[0]);
  } else {
    error->manager.format_message(cinfo, error->message);
  }
  std::longjmp(error->jump, 1);
}

// Warnings (corrupt data that libjpeg gets past) are ignored as Pillow ignores them, except where the data ends
// before the image is complete. At the end of the file Pillow raises "image file is truncated", and so does effcam.
// A scan whose data stops at a marker before its last block (JWRN_HIT_MARKER) is refused too, where Pillow decodes
// the rest as flat gray: otherwise a small file with a lying header (8000x8000 declared, 333x251 of data) costs
// the full decode of the declared size.
void jpeg_emit_message(j_common_ptr cinfo, int level) {
  const int code = cinfo->err->msg_code;
  if (level < 0 && (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER)) {
    auto* error = reinterpret_cast<JpegError*>(cinfo->err);
    std::snprintf(error->message, sizeof error->message, "data is truncated%s",
                  code == JWRN_HIT_MARKER ? " (a scan ends before the image's last block)" : "");
    std::longjmp(error->jump, 1);
  }
}

// libjpeg's sources (jpeg_stdio_src, jpeg_mem_src) both report the end of the data as the JWRN_JPEG_EOF warning.
class JpegDecoder final : public RowDecoder {
 public:
  JpegDecoder(std::unique_ptr<Input> input, const RowDecoderSettings& settings) : input_(std::move(input)) {
    format_ = "JPEG";
    what_ = "image '" + input_->label() + "' (JPEG)";
    cinfo_.err = jpeg_std_error(&error_.manager);
    error_.manager.error_exit = jpeg_error_exit;
    error_.manager.emit_message = jpeg_emit_message;
    guarded([&] { jpeg_create_decompress(&cinfo_); });
    created_.cinfo = &cinfo_;
    guarded([&] {
      if (input_->file()) {
        jpeg_stdio_src(&cinfo_, input_->file());
      } else {
        jpeg_mem_src(&cinfo_, input_->memory().data(), static_cast<unsigned long>(input_->memory().size()));
      }
      jpeg_save_markers(&cinfo_, JPEG_APP0 + 1, 0xFFFF);
      jpeg_read_header(&cinfo_, TRUE);
    });
    full_width_ = cinfo_.image_width;
    full_height_ = cinfo_.image_height;
    check_size(full_width_, full_height_, settings.max_pixels, what_);
    for (jpeg_saved_marker_ptr marker = cinfo_.marker_list; marker; marker = marker->next) {
      const std::span<const uint8_t> data(marker->data, marker->data_length);
      if (starts_with(data, std::string_view("Exif\0", 5))) {
        exif_orientation_ = imaging::exif_orientation(data);
        break;  // PIL reads the first Exif APP1 only
      }
    }
    const int components = cinfo_.num_components;
    if (components != 1 && components != 3 && components != 4) {
      fail(what_, std::to_string(components) + " colour components (PIL reads 1, 3 or 4)");
    }
    // A progressive (multi-scan) JPEG keeps every DCT coefficient (64 int16 per block, blocks padded to whole MCUs)
    // until its last scan; a baseline one is decoded a row of MCUs at a time.
    uint64_t coefficient_bytes = 0;
    if (jpeg_has_multiple_scans(&cinfo_)) {
      for (int c = 0; c < components; ++c) {
        const jpeg_component_info& component = cinfo_.comp_info[c];
        const auto padded = [](uint64_t blocks, uint64_t factor) { return (blocks + factor - 1) / factor * factor; };
        coefficient_bytes += padded(component.width_in_blocks, uint64_t(component.h_samp_factor)) *
                             padded(component.height_in_blocks, uint64_t(component.v_samp_factor)) * 64 * 2;
      }
    }
    check_budget(full_width_, full_height_, coefficient_bytes, settings, what_);
    jpeg_scale_ = settings.jpeg_scale ? settings.jpeg_scale(full_width_, full_height_, exif_orientation_) : 1;
    if (jpeg_scale_ != 1 && jpeg_scale_ != 2 && jpeg_scale_ != 4 && jpeg_scale_ != 8) {
      throw Error(what_ + ": DCT scale 1/" + std::to_string(jpeg_scale_) + " is not 1/1, 1/2, 1/4 or 1/8");
    }
    channels_ = settings.channels;
    // Pillow's modes: 1 component L, 3 RGB, 4 CMYK with Adobe's inverted polarity ("CMYK;I"); draft("L") of an
    // RGB JPEG asks libjpeg for grayscale (the Y channel).
    cinfo_.out_color_space = components == 1 ? JCS_GRAYSCALE : components == 3 ? JCS_RGB : JCS_CMYK;
    if (jpeg_scale_ > 1 && components == 3 && channels_ == 1) cinfo_.out_color_space = JCS_GRAYSCALE;
    cinfo_.scale_num = 1;
    cinfo_.scale_denom = jpeg_scale_;
    guarded([&] { jpeg_start_decompress(&cinfo_); });
    width_ = cinfo_.output_width;
    height_ = cinfo_.output_height;
    scanline_.resize(size_t{width_} * static_cast<size_t>(cinfo_.output_components));
  }

  void read_row(uint8_t* out) override {
    // L to L and RGB to RGB: libjpeg writes straight into out.
    const bool direct = (cinfo_.out_color_space == JCS_GRAYSCALE && channels_ == 1) ||
                        (cinfo_.out_color_space == JCS_RGB && channels_ == 3);
    JSAMPROW row = direct ? out : scanline_.data();
    guarded([&] {
      jpeg_read_scanlines(&cinfo_, &row, 1);
      // After the last row: the rest of the file up to EOI, where a cut file shows (Pillow needs it too).
      if (cinfo_.output_scanline == cinfo_.output_height) jpeg_finish_decompress(&cinfo_);
    });
    if (direct) return;
    const uint8_t* in = scanline_.data();
    switch (cinfo_.out_color_space) {
      case JCS_GRAYSCALE:
        for (uint32_t x = 0; x < width_; ++x) put_gray(in[x], channels_, out + size_t{x} * channels_);
        break;
      case JCS_RGB:
        for (uint32_t x = 0; x < width_; ++x, in += 3) {
          put_rgb(in[0], in[1], in[2], channels_, out + size_t{x} * channels_);
        }
        break;
      default:  // CMYK: Pillow inverts (Adobe polarity), then cmyk2rgb (and rgb2l for L)
        for (uint32_t x = 0; x < width_; ++x, in += 4) {
          const uint32_t nk = in[3];  // 255 - (255 - k)
          const auto channel = [nk](uint32_t stored) {
            const uint32_t tmp = (255 - stored) * nk + 128;  // MULDIV255(c, nk) with Pillow's c = 255 - stored
            return static_cast<uint8_t>(std::clamp<int>(int(nk) - int(((tmp >> 8) + tmp) >> 8), 0, 255));
          };
          put_rgb(channel(in[0]), channel(in[1]), channel(in[2]), channels_, out + size_t{x} * channels_);
        }
    }
  }

 private:
  // Runs a libjpeg call; its errors come back as a longjmp here and leave as an effcam::Error. Nothing with a
  // destructor lives between this frame and libjpeg's.
  template <typename Call>
  void guarded(Call&& call) {
    if (setjmp(error_.jump) != 0) fail(what_, error_.message);
    call();
  }

  // Destroys the decompressor also when the constructor throws (members are destroyed, the destructor not run).
  struct Destroyer {
    jpeg_decompress_struct* cinfo = nullptr;
    ~Destroyer() {
      if (cinfo) jpeg_destroy_decompress(cinfo);
    }
  };

  std::unique_ptr<Input> input_;
  std::string what_;
  jpeg_decompress_struct cinfo_{};
  JpegError error_{};
  Destroyer created_;
  std::vector<uint8_t> scanline_;
};

// ---------------------------------------------------------------------------------------------------------------
// PNG: libpng, rows as stored (only sub-byte samples unpacked), converted here as Pillow's PNG modes and
// convert() do. Interlaced (Adam7) images are read whole first: their rows only exist after the last pass.

// After the last row, libpng inflates the rest of the pixel stream to check its end: a file with a long tail of
// compressed zeros (a deflate bomb, 1000:1) would keep it busy for minutes. Pillow stops at the last row; so does
// effcam: when libpng asks for more data with every row done (its row counter past the last row, or its pass
// counter past the 7th), the decode ends there (`stopped`). What libpng had already read is inflated first: at most
// one 8 KiB read, so the tail costs milliseconds whatever the file's size.
struct PngState {
  std::jmp_buf jump;
  char message[256] = {};
  Input* input = nullptr;
  size_t position = 0;  // in memory input
  uint32_t rows = 0;
  bool interlaced = false;
  bool stopped = false;  // all rows were read: libpng was stopped on its way to the stream's end
};

bool png_rows_done(png_structp png, const PngState& state) {
  return png_get_current_pass_number(png) >= 7 || (!state.interlaced && png_get_current_row_number(png) >= state.rows);
}

void png_error_handler(png_structp png, png_const_charp message) {
  auto* state = static_cast<PngState*>(png_get_error_ptr(png));
  std::snprintf(state->message, sizeof state->message, "%s", message);
  std::longjmp(state->jump, 1);
}

void png_warning_handler(png_structp, png_const_charp) {}  // Pillow does not stop on what libpng only warns about

void png_read_data(png_structp png, png_bytep data, size_t length) {
  auto* state = static_cast<PngState*>(png_get_io_ptr(png));
  if (state->rows > 0 && png_rows_done(png, *state)) {
    state->stopped = true;
    std::longjmp(state->jump, 1);
  }
  if (std::FILE* file = state->input->file()) {
    if (std::fread(data, 1, length, file) != length) png_error(png, "data is truncated");
    return;
  }
  const std::span<const uint8_t> bytes = state->input->memory();
  if (length > bytes.size() - state->position) png_error(png, "data is truncated");
  std::memcpy(data, bytes.data() + state->position, length);
  state->position += length;
}

class PngDecoder final : public RowDecoder {
 public:
  PngDecoder(std::unique_ptr<Input> input, const RowDecoderSettings& settings) : input_(std::move(input)) {
    format_ = "PNG";
    what_ = "image '" + input_->label() + "' (PNG)";
    state_.input = input_.get();
    // The declared size straight from IHDR: libpng's png_read_info reads on to the pixel data first.
    const std::span<const uint8_t> head = input_->head();
    if (starts_with(head, "IHDR", 12) && head.size() >= 24) {
      check_size(be32(&head[16]), be32(&head[20]), settings.max_pixels, what_);
    }
    reader_.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state_, png_error_handler, png_warning_handler);
    if (!reader_.png) throw Error(what_ + ": cannot create a PNG reader", ErrorCode::OutOfMemory);
    reader_.info = png_create_info_struct(reader_.png);
    if (!reader_.info) throw Error(what_ + ": cannot create a PNG reader", ErrorCode::OutOfMemory);
    png_ = reader_.png;
    info_ = reader_.info;
    guarded([&] {
      png_set_read_fn(png_, &state_, png_read_data);
      png_set_user_limits(png_, 0x7fffffff, 0x7fffffff);
      png_set_chunk_malloc_max(png_, 16 << 20);  // text, ICC and other ancillary chunks
      png_read_info(png_, info_);
    });
    full_width_ = width_ = png_get_image_width(png_, info_);
    full_height_ = height_ = png_get_image_height(png_, info_);
    check_size(width_, height_, settings.max_pixels, what_);
    color_type_ = png_get_color_type(png_, info_);
    bit_depth_ = png_get_bit_depth(png_, info_);
    channels_ = settings.channels;
    png_bytep exif = nullptr;
    png_uint_32 exif_length = 0;
    if (png_get_eXIf_1(png_, info_, &exif_length, &exif) != 0 && exif) {
      exif_orientation_ = imaging::exif_orientation({exif, exif_length});
    }
    if (color_type_ == PNG_COLOR_TYPE_PALETTE) {
      // Pillow's palette starts as a gray ramp, the file's PLTE overwriting its first entries.
      for (int i = 0; i < 256; ++i) palette_[i] = {uint8_t(i), uint8_t(i), uint8_t(i)};
      png_colorp entries = nullptr;
      int count = 0;
      if (png_get_PLTE(png_, info_, &entries, &count) != 0) {
        for (int i = 0; i < std::min(count, 256); ++i) {
          palette_[i] = {entries[i].red, entries[i].green, entries[i].blue};
        }
      }
    }
    const bool interlaced = png_get_interlace_type(png_, info_) != PNG_INTERLACE_NONE;
    state_.interlaced = interlaced;
    state_.rows = height_;
    guarded([&] {
      if (bit_depth_ < 8) png_set_packing(png_);
      if (interlaced) png_set_interlace_handling(png_);
      png_read_update_info(png_, info_);
    });
    row_bytes_ = png_get_rowbytes(png_, info_);
    check_budget(width_, height_, interlaced ? row_bytes_ * height_ : 0, settings, what_);
    raw_.resize(row_bytes_);
    if (interlaced) {
      // Every pass goes over all rows (libpng skips those not in the pass), combining into the whole image.
      whole_.resize(row_bytes_ * height_);
      for (int pass = 0; pass < 7; ++pass) {
        for (uint32_t y = 0; y < height_; ++y) read_png_row(&whole_[y * row_bytes_]);
      }
    }
  }

  void read_row(uint8_t* out) override {
    const uint8_t* in = nullptr;
    if (!whole_.empty()) {
      in = &whole_[next_row_ * row_bytes_];
    } else {
      read_png_row(raw_.data());
      in = raw_.data();
    }
    ++next_row_;
    const uint32_t step = bit_depth_ == 16 ? 2 : 1;  // 16-bit samples: big-endian, Pillow keeps the high byte
    switch (color_type_) {
      case PNG_COLOR_TYPE_GRAY:
      case PNG_COLOR_TYPE_GRAY_ALPHA: {
        const uint32_t stride = step * (color_type_ == PNG_COLOR_TYPE_GRAY ? 1 : 2);
        // Sub-byte gray is scaled to 0..255 (Pillow's "1", "L;2", "L;4"); 16-bit gray is mode "I", clipped.
        const uint32_t scale = bit_depth_ < 8 ? 255 / ((1u << bit_depth_) - 1) : 1;
        const bool clip16 = bit_depth_ == 16 && color_type_ == PNG_COLOR_TYPE_GRAY;
        for (uint32_t x = 0; x < width_; ++x, in += stride) {
          const uint32_t v = clip16 ? std::min<uint32_t>(be16(in), 255) : in[0] * scale;
          put_gray(static_cast<uint8_t>(v), channels_, out + size_t{x} * channels_);
        }
        break;
      }
      case PNG_COLOR_TYPE_PALETTE:
        for (uint32_t x = 0; x < width_; ++x) {
          const auto& c = palette_[in[x]];
          put_rgb(c[0], c[1], c[2], channels_, out + size_t{x} * channels_);
        }
        break;
      default: {  // RGB, RGBA: alpha dropped
        const uint32_t stride = step * (color_type_ == PNG_COLOR_TYPE_RGB ? 3 : 4);
        for (uint32_t x = 0; x < width_; ++x, in += stride) {
          put_rgb(in[0], in[step], in[2 * step], channels_, out + size_t{x} * channels_);
        }
      }
    }
  }

 private:
  template <typename Call>
  void guarded(Call&& call) {
    if (setjmp(state_.jump) != 0) fail(what_, state_.message);
    call();
  }

  // One png_read_row; stopped at the stream's end once the rows are complete (see PngState).
  void read_png_row(uint8_t* row) {
    if (state_.stopped) return;
    if (setjmp(state_.jump) != 0) {
      if (!state_.stopped) fail(what_, state_.message);
      return;
    }
    png_read_row(png_, row, nullptr);
  }

  // Destroys the reader also when the constructor throws.
  struct Destroyer {
    png_structp png = nullptr;
    png_infop info = nullptr;
    ~Destroyer() {
      if (png) png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    }
  };

  std::unique_ptr<Input> input_;
  std::string what_;
  PngState state_;
  Destroyer reader_;     // owns the reader
  png_structp png_ = nullptr;  // reader_'s, for brevity
  png_infop info_ = nullptr;
  int color_type_ = 0, bit_depth_ = 0;
  std::array<std::array<uint8_t, 3>, 256> palette_{};
  size_t row_bytes_ = 0;
  std::vector<uint8_t> raw_, whole_;
  uint32_t next_row_ = 0;
};

// ---------------------------------------------------------------------------------------------------------------
// Whole-image decoders served as rows: WebP (libwebp's animation decoder, as Pillow uses it: the first frame's
// canvas, RGBA) and BMP / GIF (stb_image).

class WholeImageDecoder final : public RowDecoder {
 public:
  WholeImageDecoder(const char* format, std::vector<uint8_t> pixels, uint32_t width, uint32_t height,
                    uint32_t pixel_stride, uint32_t channels)
      : pixels_(std::move(pixels)), stride_(pixel_stride) {
    format_ = format;
    full_width_ = width_ = width;
    full_height_ = height_ = height;
    channels_ = channels;
  }
  void set_exif_orientation(Orientation orientation) { exif_orientation_ = orientation; }

  // pixel_stride 1 or 2: L (+ alpha); 3 or 4: RGB (+ alpha).
  void read_row(uint8_t* out) override {
    const uint8_t* in = &pixels_[size_t{next_row_++} * width_ * stride_];
    for (uint32_t x = 0; x < width_; ++x, in += stride_) {
      convert_pixel(in, stride_, channels_, out + size_t{x} * channels_);
    }
  }

 private:
  std::vector<uint8_t> pixels_;
  uint32_t stride_;
  uint32_t next_row_ = 0;
};

std::unique_ptr<RowDecoder> decode_webp(std::span<const uint8_t> bytes, const RowDecoderSettings& settings,
                                        const std::string& what) {
  // An extended file's canvas size first: libwebp checks it against the frames' only later.
  uint64_t canvas_width = 0, canvas_height = 0;
  if (starts_with(bytes, "VP8X", 12) && bytes.size() >= 30) {
    const auto u24 = [&](size_t at) {
      return uint32_t{bytes[at]} | uint32_t{bytes[at + 1]} << 8 | uint32_t{bytes[at + 2]} << 16;
    };
    canvas_width = uint64_t{u24(24)} + 1;
    canvas_height = uint64_t{u24(27)} + 1;
    check_size(canvas_width, canvas_height, settings.max_pixels, what);
  }
  WebPBitstreamFeatures features;
  if (WebPGetFeatures(bytes.data(), bytes.size(), &features) != VP8_STATUS_OK) {
    fail(what, "corrupt or truncated header");
  }
  check_size(uint32_t(features.width), uint32_t(features.height), settings.max_pixels, what);
  if (canvas_width == 0) {
    canvas_width = uint32_t(features.width);
    canvas_height = uint32_t(features.height);
  }
  // libwebp's animation decoder holds two RGBA canvases and, for a lossless frame, its ARGB pixels; then the canvas
  // is copied: 16 bytes per canvas pixel, and the file.
  check_budget(canvas_width, canvas_height, 16 * canvas_width * canvas_height + bytes.size(), settings, what);
  const WebPData data{bytes.data(), bytes.size()};
  WebPAnimDecoderOptions options;
  if (!WebPAnimDecoderOptionsInit(&options)) fail(what, "libwebp version mismatch");
  options.color_mode = MODE_RGBA;
  options.use_threads = 0;
  std::unique_ptr<WebPAnimDecoder, void (*)(WebPAnimDecoder*)> decoder(WebPAnimDecoderNew(&data, &options),
                                                                      WebPAnimDecoderDelete);
  if (!decoder) fail(what, "corrupt or truncated data");
  WebPAnimInfo info;
  if (!WebPAnimDecoderGetInfo(decoder.get(), &info)) fail(what, "corrupt data");
  check_size(info.canvas_width, info.canvas_height, settings.max_pixels, what);
  uint8_t* canvas = nullptr;
  int timestamp = 0;
  if (!WebPAnimDecoderGetNext(decoder.get(), &canvas, &timestamp) || !canvas) fail(what, "corrupt or truncated data");
  const size_t size = size_t{info.canvas_width} * info.canvas_height * 4;
  auto result = std::make_unique<WholeImageDecoder>("WebP", std::vector<uint8_t>(canvas, canvas + size),
                                                    info.canvas_width, info.canvas_height, 4, settings.channels);
  decoder.reset();
  // The EXIF chunk, as Pillow reads it through WebPDemux.
  if (WebPDemuxer* demux = WebPDemux(&data)) {
    WebPChunkIterator chunk;
    if (WebPDemuxGetChunk(demux, "EXIF", 1, &chunk)) {
      result->set_exif_orientation(exif_orientation({chunk.chunk.bytes, chunk.chunk.size}));
      WebPDemuxReleaseChunkIterator(&chunk);
    }
    WebPDemuxDelete(demux);
  }
  return result;
}

struct Size {
  uint64_t width = 0;
  uint64_t height = 0;
};

// The size a BMP or GIF header declares, read here rather than by stb so that an oversized or zero size gets its
// own message (stb reports every header failure as "unknown image type"); nullopt when the header is cut short.
std::optional<Size> declared_size(bool gif, std::span<const uint8_t> bytes) {
  const uint8_t* p = bytes.data();
  if (gif) {  // logical screen size: stb decodes every frame onto it
    if (bytes.size() < 10) return std::nullopt;
    return Size{le16(p + 6), le16(p + 8)};
  }
  // BMP: OS/2 headers (12 bytes) use 16-bit sizes; a negative height means top-down rows
  if (bytes.size() < 26) return std::nullopt;
  if (le32(p + 14) == 12) return Size{le16(p + 18), le16(p + 20)};
  const int64_t width = static_cast<int32_t>(le32(p + 18));
  const int64_t height = static_cast<int32_t>(le32(p + 22));
  return Size{uint64_t(std::max<int64_t>(width, 0)), uint64_t(height < 0 ? -height : height)};
}

// Skips GIF data sub-blocks from pos up to and including their zero-length terminator; false if cut short.
bool skip_gif_sub_blocks(std::span<const uint8_t> bytes, size_t& pos) {
  while (pos < bytes.size()) {
    const uint8_t length = bytes[pos++];
    if (length == 0) return true;
    pos += length;
  }
  return false;
}

size_t gif_color_table_entries(uint8_t flags) { return (flags & 0x80) ? size_t{2} << (flags & 7) : 0; }

// What PIL needs from a GIF's first image beyond stb's RGBA output: where it is and which palette colour its
// transparent pixels have (PIL's convert("RGB") shows that colour; stb leaves them black).
struct GifFrame {
  uint32_t left = 0, top = 0, width = 0, height = 0;
  std::span<const uint8_t> palette;  // RGB triples: the local colour table, else the global one
  int transparent = -1;              // palette index, -1 for none
};

// Walks the blocks up to the end of the first image's data; nullopt when the file ends before it.
std::optional<GifFrame> gif_first_frame(std::span<const uint8_t> bytes) {
  if (bytes.size() < 13) return std::nullopt;
  const uint8_t* p = bytes.data();
  GifFrame frame;
  const size_t global_entries = gif_color_table_entries(p[10]);
  size_t pos = 13 + 3 * global_entries;
  if (pos > bytes.size()) return std::nullopt;
  frame.palette = bytes.subspan(13, 3 * global_entries);
  while (pos < bytes.size()) {
    if (p[pos] == 0x21) {  // extension: label, then sub-blocks; a graphic control one may set transparency
      if (pos + 6 < bytes.size() && p[pos + 1] == 0xF9 && p[pos + 2] >= 4) {
        frame.transparent = (p[pos + 3] & 1) ? p[pos + 6] : -1;
      }
      pos += 2;
      if (!skip_gif_sub_blocks(bytes, pos)) return std::nullopt;
    } else if (p[pos] == 0x2C) {  // image: descriptor, local colour table, LZW code size, sub-blocks
      if (pos + 10 > bytes.size()) return std::nullopt;
      frame.left = le16(p + pos + 1);
      frame.top = le16(p + pos + 3);
      frame.width = le16(p + pos + 5);
      frame.height = le16(p + pos + 7);
      const size_t local_entries = gif_color_table_entries(p[pos + 9]);
      pos += 10;
      if (local_entries > 0) {
        if (pos + 3 * local_entries > bytes.size()) return std::nullopt;
        frame.palette = bytes.subspan(pos, 3 * local_entries);
      }
      pos += 3 * local_entries + 1;
      if (!skip_gif_sub_blocks(bytes, pos)) return std::nullopt;
      return frame;
    } else {
      return std::nullopt;  // trailer or junk before any image
    }
  }
  return std::nullopt;
}

// Gives the first frame's transparent pixels (alpha 0 in stb's RGBA output) their palette colour, as PIL does.
void show_gif_transparent_color(const GifFrame& frame, uint32_t width, uint32_t height, uint8_t* rgba) {
  if (frame.transparent < 0 || size_t(frame.transparent) * 3 + 3 > frame.palette.size()) return;
  const uint8_t* color = &frame.palette[size_t(frame.transparent) * 3];
  const uint32_t right = std::min(width, frame.left + frame.width);
  const uint32_t bottom = std::min(height, frame.top + frame.height);
  for (uint32_t y = frame.top; y < bottom; ++y) {
    for (uint32_t x = frame.left; x < right; ++x) {
      uint8_t* pixel = rgba + (size_t{y} * width + x) * 4;
      if (pixel[3] == 0) std::copy(color, color + 3, pixel);
    }
  }
}

// Whether a BMP holds all the rows its header declares: stb would silently decode a cut file (PIL refuses it).
bool bmp_is_complete(std::span<const uint8_t> bytes, Size size) {
  const uint8_t* p = bytes.data();
  const bool os2 = le32(p + 14) == 12;
  if (bytes.size() < (os2 ? 26u : 34u)) return false;
  const uint32_t bits_per_pixel = le16(p + (os2 ? 24 : 28));
  const uint32_t compression = os2 ? 0 : le32(p + 30);
  if (compression != 0 && compression != 3 && compression != 6) return true;  // RLE etc.: stb refuses them
  const uint64_t row_bytes = (size.width * bits_per_pixel + 31) / 32 * 4;
  return uint64_t{le32(p + 10)} + row_bytes * size.height <= bytes.size();
}

std::unique_ptr<RowDecoder> decode_bmp_gif(std::span<const uint8_t> bytes, bool gif,
                                           const RowDecoderSettings& settings, const std::string& what) {
  const std::optional<Size> size = declared_size(gif, bytes);
  if (!size) fail(what, "header is truncated or corrupt");
  check_size(size->width, size->height, settings.max_pixels, what);
  const int length = static_cast<int>(bytes.size());  // <= kMaxImageFileBytes for files; memory: clipped below
  if (bytes.size() > kMaxImageFileBytes) fail(what, "data is above " + std::to_string(kMaxImageFileBytes) + " bytes");
  int width = 0, height = 0, file_channels = 0;
  if (!stbi_info_from_memory(bytes.data(), length, &width, &height, &file_channels)) {
    fail(what, "corrupt or unsupported header");
  }
  check_size(uint64_t(width), uint64_t(height), settings.max_pixels, what);
  // stb would decode a cut BMP or GIF silently (PIL refuses them).
  std::optional<GifFrame> gif_frame;
  if (gif) gif_frame = gif_first_frame(bytes);
  if ((gif && !gif_frame) || (!gif && !bmp_is_complete(bytes, *size))) fail(what, "pixel data is truncated");
  if (file_channels < 1 || file_channels > 4) fail(what, "unsupported channel count");
  // stb's pixels and our copy of them; a GIF also has stb's RGBA canvas, background and history (9 per pixel).
  const uint64_t pixels_count = uint64_t(width) * uint64_t(height);
  check_budget(uint64_t(width), uint64_t(height),
               (gif ? 13 : 2 * uint64_t(file_channels)) * pixels_count + bytes.size(), settings, what);
  int got_width = 0, got_height = 0, ignored = 0;
  // Asking for the header's channel count (never 0) keeps stb from adding an alpha channel silently.
  std::unique_ptr<uint8_t, void (*)(void*)> pixels(
      stbi_load_from_memory(bytes.data(), length, &got_width, &got_height, &ignored, file_channels), stbi_image_free);
  if (!pixels) {
    const char* reason = stbi_failure_reason();
    fail(what, std::string("cannot decode (") + (reason ? reason : "unknown reason") + ")");
  }
  if (got_width != width || got_height != height) fail(what, "header and image sizes differ");
  if (gif_frame && file_channels == 4) {
    show_gif_transparent_color(*gif_frame, uint32_t(width), uint32_t(height), pixels.get());
  }
  const size_t count = size_t(width) * size_t(height) * size_t(file_channels);
  return std::make_unique<WholeImageDecoder>(gif ? "GIF" : "BMP",
                                             std::vector<uint8_t>(pixels.get(), pixels.get() + count),
                                             uint32_t(width), uint32_t(height), uint32_t(file_channels),
                                             settings.channels);
}

}  // namespace

// Per column: libjpeg's row groups (up to 2 x 8 x v-sampling rows per component, with its upsampling and context
// rows) or libpng's two rows (16-bit RGBA: 16 bytes), our decoded and converted rows (8), and the resize's: the
// horizontal pass's 16-bit planes (6) and coefficients (about 6 taps per column at 4 + 4 bytes: 48), or for an
// EXIF-rotated image its columns in flight (28 x 3): 256 covers the sum with margin. Per row: the vertical pass's
// coefficients (6 taps x 4 bytes) and its scheduling (8). Fixed: the libraries' state (libjpeg's Huffman and
// quantisation tables, zlib's window).
uint64_t decode_need_bytes(uint64_t width, uint64_t height, uint64_t whole_image_bytes) {
  constexpr uint64_t kBytesPerColumn = 256, kBytesPerRow = 32, kFixedBytes = uint64_t{1} << 20;
  return kFixedBytes + kBytesPerColumn * width + kBytesPerRow * height + whole_image_bytes;
}

void convert_pixel(const uint8_t* in, uint32_t in_channels, uint32_t out_channels, uint8_t* out) {
  if (in_channels <= 2) {
    put_gray(in[0], out_channels, out);
  } else {
    put_rgb(in[0], in[1], in[2], out_channels, out);
  }
}

Orientation exif_orientation(std::span<const uint8_t> exif) {
  if (starts_with(exif, std::string_view("Exif\0\0", 6))) exif = exif.subspan(6);
  if (exif.size() < 8) return Orientation::Normal;
  const bool little = starts_with(exif, "II*\0");
  if (!little && !starts_with(exif, "MM\0*")) return Orientation::Normal;
  const auto u16 = [&](size_t at) { return little ? le16(&exif[at]) : be16(&exif[at]); };
  const auto u32 = [&](size_t at) { return little ? le32(&exif[at]) : be32(&exif[at]); };
  const uint64_t ifd = u32(4);
  if (ifd + 2 > exif.size()) return Orientation::Normal;
  const uint32_t entries = u16(size_t(ifd));
  for (uint32_t i = 0; i < entries; ++i) {
    const uint64_t entry = ifd + 2 + uint64_t{i} * 12;
    if (entry + 12 > exif.size()) break;
    if (u16(size_t(entry)) != 0x0112) continue;
    const uint32_t type = u16(size_t(entry + 2));
    const uint32_t value = type == 3 ? u16(size_t(entry + 8)) : type == 4 ? u32(size_t(entry + 8)) : 0;
    return value >= 1 && value <= 8 ? static_cast<Orientation>(value) : Orientation::Normal;
  }
  return Orientation::Normal;
}

std::unique_ptr<RowDecoder> open_row_decoder(const ImageSource& source, const RowDecoderSettings& settings) {
  if (settings.channels != 1 && settings.channels != 3) {
    throw Error("image '" + source.label() + "': can only convert to 1 (L) or 3 (RGB) channels, not " +
                std::to_string(settings.channels));
  }
  auto input = std::make_unique<Input>(source);
  const std::span<const uint8_t> head = input->head();
  const std::string label = "image '" + input->label() + "'";
  if (starts_with(head, "\xff\xd8\xff")) {
    return std::make_unique<JpegDecoder>(std::move(input), settings);
  } else if (starts_with(head, "\x89PNG\r\n\x1a\n")) {
    return std::make_unique<PngDecoder>(std::move(input), settings);
  } else if (starts_with(head, "RIFF") && starts_with(head, "WEBP", 8)) {
    return decode_webp(input->whole(), settings, label + " (WebP)");
  } else if (starts_with(head, "GIF87a") || starts_with(head, "GIF89a")) {
    return decode_bmp_gif(input->whole(), true, settings, label + " (GIF)");
  } else if (starts_with(head, "BM")) {
    return decode_bmp_gif(input->whole(), false, settings, label + " (BMP)");
  } else {
  }
  fail(label, "not a JPEG, PNG, WebP, BMP or GIF file");
}

}  // namespace effcam::imaging
