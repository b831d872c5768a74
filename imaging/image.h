// Image input: decode JPEG / PNG / BMP / GIF into 8-bit interleaved pixels with the channel conversions of
// PIL's Image.convert("RGB") / convert("L"), so the engine sees what the users' PIL pipeline saw.
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

// Inputs beyond these are refused before any pixel buffer is allocated.
inline constexpr uint64_t kMaxImagePixels = 50'000'000;
inline constexpr uint64_t kMaxImageFileBytes = uint64_t{256} << 20;

// Decodes an in-memory JPEG, PNG, BMP or GIF (first frame) to wanted_channels (1 = L, 3 = RGB), the way PIL's
// Image.open(...).convert("L" / "RGB") does: alpha is dropped (not composited), L = ITU-R 601-2 luma with PIL's
// rounding, 16-bit RGB(A) keeps the high byte and 16-bit grayscale is clipped to 255 (PIL's "I" -> "L").
// `name` only labels error messages. Throws effcam::Error on empty, unknown, truncated, corrupt or oversized input.
Image decode_image(std::span<const uint8_t> bytes, uint32_t wanted_channels, const std::string& name = "<memory>");

// Reads the file (at most kMaxImageFileBytes) and decodes it as decode_image does.
Image load_image(const std::string& path, uint32_t wanted_channels);

// Caller-owned 8-bit pixels in any layout (byte strides per row, pixel and channel; 1 = L, 2 = LA, 3 = RGB,
// 4 = RGBA channels) converted to wanted_channels as decode_image converts decoded files. Throws effcam::Error on a
// channel count outside 1..4 or a size of zero or above kMaxImagePixels; the caller checks that the strides stay
// inside its buffer.
Image from_pixels(const uint8_t* data, uint32_t width, uint32_t height, uint32_t channels, size_t row_stride,
                  size_t pixel_stride, size_t channel_stride, uint32_t wanted_channels);

// The pixels as fp32 HWC in 0..255 (no scaling: the model's own preprocessing is applied later).
std::vector<float> to_float_hwc(const Image& image);

}  // namespace effcam::imaging
