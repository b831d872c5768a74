// Row-by-row image decoding inside imaging/: JPEG through libjpeg-turbo and PNG through libpng one row at a time,
// WebP through libwebp and BMP / GIF through stb_image as whole images served as rows. Every decoder converts to
// 1 (L) or 3 (RGB) channels exactly as PIL's Image.open(...).convert("L" / "RGB") does.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "imaging/image.h"
#include "imaging/resize.h"

namespace effcam::imaging {

// How to decode: channels, the pixel cap, and the JPEG DCT scaling denominator (1, 2, 4 or 8; PIL's draft()).
struct RowDecoderSettings {
  uint32_t channels = 3;
  uint64_t max_pixels = kMaxImagePixels;
  uint64_t max_bytes = UINT64_MAX;      // DecodeOptions::max_bytes
  uint64_t extra_bytes_per_pixel = 0;  // DecodeOptions::extra_bytes_per_pixel
  // Called with a JPEG's stored size and EXIF orientation once its header is read; returns the DCT scale
  // denominator (1, 2, 4 or 8) to decode at, as PIL's draft() picks it from the size. Empty: 1.
  std::function<uint32_t(uint32_t width, uint32_t height, Orientation orientation)> jpeg_scale;
};

class RowDecoder {
 public:
  virtual ~RowDecoder() = default;
  // The size of the rows read_row() gives (after any JPEG DCT scaling), and before any orientation.
  uint32_t width() const { return width_; }
  uint32_t height() const { return height_; }
  // The stored size before DCT scaling.
  uint32_t full_width() const { return full_width_; }
  uint32_t full_height() const { return full_height_; }
  uint32_t channels() const { return channels_; }
  uint32_t jpeg_scale() const { return jpeg_scale_; }
  Orientation exif_orientation() const { return exif_orientation_; }
  const char* format() const { return format_; }
  // The next row (width() * channels() bytes), top to bottom; throws effcam::Error (ErrorCode::Image) on corrupt
  // or truncated data.
  virtual void read_row(uint8_t* out) = 0;

 protected:
  uint32_t width_ = 0, height_ = 0, full_width_ = 0, full_height_ = 0, channels_ = 0, jpeg_scale_ = 1;
  Orientation exif_orientation_ = Orientation::Normal;
  const char* format_ = "";
};

// One pixel of L, LA, RGB or RGBA (in_channels 1..4) to L or RGB (out_channels 1 or 3) as PIL's convert() does:
// alpha dropped, L = ITU-R 601-2 luma with PIL's rounding.
void convert_pixel(const uint8_t* in, uint32_t in_channels, uint32_t out_channels, uint8_t* out);

// Opens the source and reads its header (size checked against the cap before any pixel buffer exists).
// Throws effcam::Error: ErrorCode::Io if a file cannot be read, ErrorCode::Image for anything wrong in the data.
std::unique_ptr<RowDecoder> open_row_decoder(const ImageSource& source, const RowDecoderSettings& settings);

// The orientation (tag 0x0112) of IFD0 in a TIFF-format EXIF block, with or without its "Exif\0\0" prefix, as
// PIL's Image.getexif() reads it; Normal when absent or not 1..8.
Orientation exif_orientation(std::span<const uint8_t> exif);

}  // namespace effcam::imaging
