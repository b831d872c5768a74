#include "imaging/image.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "effcam/error.hpp"
#include "imaging/decoder.h"
#include "imaging/resize.h"

namespace effcam::imaging {
namespace {

// The whole image turned as ImageOps.exif_transpose turns it.
Image orient(Image image, Orientation orientation) {
  if (orientation == Orientation::Normal) return image;
  const auto [swapped, mirror_x, mirror_y] = orientation_axes(orientation);
  const uint32_t w = image.width, h = image.height, c = image.channels;
  Image out{swapped ? h : w, swapped ? w : h, c, std::vector<uint8_t>(image.pixels.size())};
  for (uint32_t y = 0; y < out.height; ++y) {
    for (uint32_t x = 0; x < out.width; ++x) {
      const uint32_t along_x = mirror_x ? (swapped ? h : w) - 1 - x : x;
      const uint32_t along_y = mirror_y ? (swapped ? w : h) - 1 - y : y;
      const uint32_t sx = swapped ? along_y : along_x, sy = swapped ? along_x : along_y;
      std::memcpy(&out.pixels[(size_t{y} * out.width + x) * c], &image.pixels[(size_t{sy} * w + sx) * c], c);
    }
  }
  return out;
}

}  // namespace

OrientationAxes orientation_axes(Orientation orientation) {
  const uint8_t tag = static_cast<uint8_t>(orientation);
  return {tag >= 5, tag == 2 || tag == 3 || tag == 6 || tag == 7, tag == 3 || tag == 4 || tag == 7 || tag == 8};
}

ModelImage load_model_image(const ImageSource& source, uint32_t width, uint32_t height, uint32_t channels,
                            const DecodeOptions& options) {
  if (width == 0 || height == 0 || uint64_t{width} * height > kMaxImagePixels) {
    throw Error("model input size " + std::to_string(width) + "x" + std::to_string(height) +
                " is zero or above the limit of " + std::to_string(kMaxImagePixels) + " pixels");
  }
  RowDecoderSettings settings;
  settings.channels = channels;
  settings.max_pixels = options.max_pixels;
  settings.max_bytes = options.max_bytes;
  settings.extra_bytes_per_pixel = options.extra_bytes_per_pixel;
  if (options.fast_jpeg_dct) {
    // PIL's draft(): scale = min(w // width, h // height), rounded down to 8, 4, 2 or 1.
    settings.jpeg_scale = [&](uint32_t w, uint32_t h, Orientation orientation) {
      if (options.apply_exif_orientation && orientation_axes(orientation).swapped) std::swap(w, h);
      const uint32_t scale = std::min(w / width, h / height);
      return scale >= 8 ? 8u : scale >= 4 ? 4u : scale >= 2 ? 2u : 1u;
    };
  }
  const std::unique_ptr<RowDecoder> decoder = open_row_decoder(source, settings);
  ModelImage result;
  result.format = decoder->format();
  result.exif_orientation = decoder->exif_orientation();
  result.applied_orientation = options.apply_exif_orientation ? result.exif_orientation : Orientation::Normal;
  result.jpeg_scale_denominator = decoder->jpeg_scale();
  const bool swapped = orientation_axes(result.applied_orientation).swapped;
  result.original_width = swapped ? decoder->full_height() : decoder->full_width();
  result.original_height = swapped ? decoder->full_width() : decoder->full_height();
  LanczosStream stream(decoder->width(), decoder->height(), channels, width, height, result.applied_orientation);
  std::vector<uint8_t> row(size_t{decoder->width()} * channels);
  for (uint32_t y = 0; y < decoder->height(); ++y) {
    decoder->read_row(row.data());
    stream.push_row(row.data());
  }
  result.image = stream.finish();
  return result;
}

Image decode_full_size(const ImageSource& source, uint32_t channels, const DecodeOptions& options,
                       Orientation* orientation) {
  RowDecoderSettings settings;
  settings.channels = channels;
  settings.max_pixels = options.max_pixels;
  const std::unique_ptr<RowDecoder> decoder = open_row_decoder(source, settings);
  Image image{decoder->width(), decoder->height(), channels, {}};
  image.pixels.resize(size_t{image.width} * image.height * channels);
  const size_t row_bytes = size_t{image.width} * channels;
  for (uint32_t y = 0; y < image.height; ++y) decoder->read_row(&image.pixels[y * row_bytes]);
  const Orientation applied = options.apply_exif_orientation ? decoder->exif_orientation() : Orientation::Normal;
  if (orientation) *orientation = applied;
  return orient(std::move(image), applied);
}

Image decode_image(std::span<const uint8_t> bytes, uint32_t wanted_channels, const std::string& name) {
  return decode_full_size(ImageSource::memory(bytes, name), wanted_channels, {});
}

Image load_image(const std::string& path, uint32_t wanted_channels) {
  return decode_full_size(ImageSource::file(path), wanted_channels, {});
}

Image from_pixels(const uint8_t* data, uint32_t width, uint32_t height, uint32_t channels, size_t row_stride,
                  size_t pixel_stride, size_t channel_stride, uint32_t wanted_channels) {
  if (channels < 1 || channels > 4) throw Error("pixels have " + std::to_string(channels) + " channels, not 1 to 4");
  if (wanted_channels != 1 && wanted_channels != 3) {
    throw Error("pixels: can only convert to 1 (L) or 3 (RGB) channels, not " + std::to_string(wanted_channels));
  }
  if (width == 0 || height == 0) throw Error("pixels: zero width or height");
  if (uint64_t{width} * height > kMaxImagePixels) {
    throw Error("pixels: " + std::to_string(width) + "x" + std::to_string(height) + " is above the limit of " +
                std::to_string(kMaxImagePixels) + " pixels");
  }
  Image image{width, height, wanted_channels, std::vector<uint8_t>(size_t{width} * height * wanted_channels)};
  uint8_t pixel[4];
  uint8_t* out = image.pixels.data();
  for (uint32_t y = 0; y < height; ++y) {
    const uint8_t* row = data + y * row_stride;
    for (uint32_t x = 0; x < width; ++x, out += wanted_channels) {
      for (uint32_t k = 0; k < channels; ++k) pixel[k] = row[x * pixel_stride + k * channel_stride];
      convert_pixel(pixel, channels, wanted_channels, out);
    }
  }
  return image;
}

std::vector<float> to_float_hwc(const Image& image) {
  return std::vector<float>(image.pixels.begin(), image.pixels.end());
}

}  // namespace effcam::imaging
