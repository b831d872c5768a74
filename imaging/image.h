// Image input: decode JPEG (libjpeg-turbo), PNG (libpng), WebP (libwebp), BMP and GIF (stb_image) into 8-bit
// interleaved pixels with the channel conversions of PIL's Image.convert("RGB") / convert("L"), so the engine sees
// what the users' PIL pipeline saw; and the model's input straight from the encoded image, streamed through the
// Lanczos resize so that the full-size picture never exists in memory.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace effcam::imaging {

// 8-bit pixels, row-major, channels interleaved (HWC). channels is 1 (L) or 3 (RGB) after decoding.
struct Image {
  uint32_t width = 0;
  uint32_t height = 0;
  uint32_t channels = 0;
  std::vector<uint8_t> pixels;  // width * height * channels
};

// The default cap on an image's declared width x height, checked before any pixel buffer is allocated; and the
// largest image effcam allocates whole (resize outputs, heatmaps, overlays).
inline constexpr uint64_t kMaxImagePixels = 100'000'000;
// The longest side effcam accepts, checked with the pixel cap: JPEG's own maximum (WebP's is 16,383). Memory
// that grows with a side remains (a decoded row, the Lanczos filter's coefficients: about 6 x side entries per
// axis), and this bounds it: about 60 bytes x the width and 30 x the height at most (a few MiB). PIL has no such
// limit for PNG, BMP and GIF: a 1 x 12,000,000 PNG, which PIL resizes, is refused here.
inline constexpr uint32_t kMaxImageSide = 65'535;
// Encoded files larger than this are refused (memory input is not bounded by it).
inline constexpr uint64_t kMaxImageFileBytes = uint64_t{256} << 20;

// EXIF orientation tag values (TIFF 6.0) and what PIL's ImageOps.exif_transpose does for each.
enum class Orientation : uint8_t {
  Normal = 1,       // as stored
  MirrorX = 2,      // FLIP_LEFT_RIGHT
  Rotate180 = 3,    // ROTATE_180
  MirrorY = 4,      // FLIP_TOP_BOTTOM
  Transpose = 5,    // TRANSPOSE
  Rotate90Cw = 6,   // ROTATE_270 (PIL counts counter-clockwise): 90 degrees clockwise
  Transverse = 7,   // TRANSVERSE
  Rotate90Ccw = 8,  // ROTATE_90
};

// How exif_transpose's result T lies on the stored image: T's x runs along the stored y when `swapped` (else along
// the stored x), backwards when `mirror_x`; T's y along the other stored axis, backwards when `mirror_y`.
struct OrientationAxes {
  bool swapped, mirror_x, mirror_y;
};
OrientationAxes orientation_axes(Orientation orientation);

// An encoded image: a file, read as it is decoded (JPEG and PNG are never held whole; WebP, BMP and GIF files
// are read into memory first), or bytes in memory (not copied: they must outlive the call).
struct ImageSource {
  std::string path;                // used when bytes is empty
  std::span<const uint8_t> bytes;  // the encoded image in memory
  std::string name;                // labels error messages; empty: the path, or "<memory>"

  static ImageSource file(std::string path) { return {std::move(path), {}, {}}; }
  static ImageSource memory(std::span<const uint8_t> bytes, std::string name = "<memory>") {
    return {{}, bytes, std::move(name)};
  }
  std::string label() const { return !name.empty() ? name : !path.empty() ? path : "<memory>"; }
};

struct DecodeOptions {
  // Declared width x height above this is refused before any pixel buffer is allocated.
  uint64_t max_pixels = kMaxImagePixels;
  // Apply the EXIF orientation first, as PIL's ImageOps.exif_transpose does (read from a JPEG's APP1, a PNG's
  // eXIf chunk before the pixel data, a WebP's EXIF chunk). Off by default: PIL's Image.open ignores it.
  bool apply_exif_orientation = false;
  // JPEG only: decode at the smallest DCT scale 1/8, 1/4, 1/2 or 1/1 that keeps the (oriented) image at least the
  // model's size, as PIL's Image.draft(mode, size) does (and, for a 1-channel model, its luma straight from the
  // JPEG's Y, as draft("L") does), then the same Lanczos resize. Faster; not the exact path.
  bool fast_jpeg_dct = false;
  // A byte budget: what decoding and resizing this image needs (decode_need_bytes, from its header) plus
  // extra_bytes_per_pixel x its pixels (what the caller allocates afterwards, e.g. original-size pictures) above
  // it is refused (ErrorCode::Image) before any pixel buffer is allocated, with one line giving both figures.
  uint64_t max_bytes = UINT64_MAX;
  uint64_t extra_bytes_per_pixel = 0;
};

// What decoding and resizing an image of width x height needs at most, by construction from its header: the
// streamed part (the decoder's and the resize's row buffers, filter coefficients and library state, proportional to
// the sides: see LanczosStream) plus whole_image_bytes, what the format's path holds whole (a progressive JPEG's
// coefficients, an interlaced PNG's rows, a WebP's canvases, BMP and GIF pixels, an encoded file read whole).
// The resize's output and its sums are the caller's (proportional to the model's input, not the image).
uint64_t decode_need_bytes(uint64_t width, uint64_t height, uint64_t whole_image_bytes);

// What the model receives and where it came from.
struct ModelImage {
  Image image;                   // width x height x channels: the model's input, 8-bit
  uint32_t original_width = 0;   // the decoded picture's size after the applied orientation, before any
  uint32_t original_height = 0;  // DCT scaling: the size an original-size overlay has
  Orientation exif_orientation = Orientation::Normal;  // the file's tag (Normal when it has none)
  Orientation applied_orientation = Orientation::Normal;  // exif_orientation if applied, else Normal
  uint32_t jpeg_scale_denominator = 1;                    // 2, 4 or 8 when the fast path scaled the DCT
  std::string format;                                     // "JPEG", "PNG", "WebP", "BMP" or "GIF"
};

// Decodes `source` and resizes it to width x height x channels (1 = L, 3 = RGB) bit for bit as Debian's PIL does
// Image.open(f).convert(mode).resize((width, height), Image.LANCZOS), preceded by ImageOps.exif_transpose when
// options.apply_exif_orientation. JPEG scanlines and PNG rows feed the horizontal Lanczos pass as they are
// decoded: peak memory is about width x (the stored height, or width for a rotated image) x channels bytes, plus
// the decoder's own state (a progressive JPEG's coefficients, an interlaced PNG's or a WebP's whole image).
// Throws effcam::Error: ErrorCode::Image for an image that is not one, truncated (as PIL does, unless
// LOAD_TRUNCATED_IMAGES), corrupt, 12-bit JPEG, over the pixel cap; ErrorCode::Io for a file that cannot be read;
// ErrorCode::InvalidArgument for bad sizes or channels.
ModelImage load_model_image(const ImageSource& source, uint32_t width, uint32_t height, uint32_t channels,
                            const DecodeOptions& options = {});

// Decodes the whole image at its stored size and orientation to wanted_channels (1 = L, 3 = RGB), the way
// PIL's Image.open(...).convert("L" / "RGB") does: alpha is dropped (not composited), L = ITU-R 601-2 luma with
// PIL's rounding, 16-bit RGB(A) keeps the high byte, 16-bit grayscale is clipped to 255 (PIL's "I" -> "L"),
// CMYK JPEGs are inverted (Adobe) and converted as PIL's cmyk2rgb. `name` only labels error messages.
// Throws effcam::Error as load_model_image does.
Image decode_image(std::span<const uint8_t> bytes, uint32_t wanted_channels, const std::string& name = "<memory>");

// Reads the file (at most kMaxImageFileBytes) and decodes it as decode_image does.
Image load_image(const std::string& path, uint32_t wanted_channels);

// The whole image decoded at its stored size (options.fast_jpeg_dct is ignored), then oriented when
// options.apply_exif_orientation; orientation receives what was applied (may be null).
Image decode_full_size(const ImageSource& source, uint32_t channels, const DecodeOptions& options,
                       Orientation* orientation = nullptr);

// Caller-owned 8-bit pixels in any layout (byte strides per row, pixel and channel; 1 = L, 2 = LA, 3 = RGB,
// 4 = RGBA channels) converted to wanted_channels (1 or 3) as decode_image converts decoded files. Throws
// effcam::Error on a channel count outside 1..4, wanted_channels other than 1 or 3, or a size of zero or above
// kMaxImagePixels; the caller checks that the strides stay inside its buffer.
Image from_pixels(const uint8_t* data, uint32_t width, uint32_t height, uint32_t channels, size_t row_stride,
                  size_t pixel_stride, size_t channel_stride, uint32_t wanted_channels);

// The pixels as fp32 HWC in 0..255 (no scaling: the model's own preprocessing is applied later).
std::vector<float> to_float_hwc(const Image& image);

}  // namespace effcam::imaging
