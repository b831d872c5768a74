#include "imaging/overlay.h"

#include <stb/stb_image_write.h>  // Debian's libstb holds the implementation
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <span>
#include <string_view>
#include <utility>

#include "base/file_io.h"
#include "effcam/error.hpp"

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

// stb's write callback appending to a byte vector.
void append_to_vector(void* context, void* data, int size) {
  auto* bytes = static_cast<std::vector<uint8_t>*>(context);
  const auto* begin = static_cast<const uint8_t*>(data);
  bytes->insert(bytes->end(), begin, begin + size);
}

}  // namespace

const std::array<std::array<uint8_t, 3>, 256>& jet_colormap() {
  static const std::array<std::array<uint8_t, 3>, 256> colors = make_jet_colormap();
  return colors;
}

std::vector<float> upsample_map(const CamMap& cam, uint32_t out_w, uint32_t out_h) {
  if (cam.width == 0 || cam.height == 0 || cam.normalized.size() != uint64_t{cam.width} * cam.height)
    throw Error("upsample_map: inconsistent CAM map " + std::to_string(cam.height) + "x" +
                std::to_string(cam.width) + " with " + std::to_string(cam.normalized.size()) + " values");
  check_size(out_w, out_h, "upsample_map");
  const std::vector<BilinearTap> columns = bilinear_taps(cam.width, out_w);
  const std::vector<BilinearTap> rows = bilinear_taps(cam.height, out_h);
  const auto at = [&](uint32_t y, uint32_t x) -> double { return cam.normalized[size_t{y} * cam.width + x]; };
  std::vector<float> out(size_t{out_w} * out_h);
  for (uint32_t y = 0; y < out_h; ++y) {
    const BilinearTap& row = rows[y];
    for (uint32_t x = 0; x < out_w; ++x) {
      const BilinearTap& column = columns[x];
      const double top =
          at(row.first, column.first) * (1.0 - column.weight) + at(row.first, column.second) * column.weight;
      const double bottom =
          at(row.second, column.first) * (1.0 - column.weight) + at(row.second, column.second) * column.weight;
      out[size_t{y} * out_w + x] = static_cast<float>(top * (1.0 - row.weight) + bottom * row.weight);
    }
  }
  return out;
}

Image render_heatmap(const CamMap& cam, uint32_t out_w, uint32_t out_h) {
  const std::vector<float> values = upsample_map(cam, out_w, out_h);
  const auto& colors = jet_colormap();
  Image heatmap{out_w, out_h, 3, std::vector<uint8_t>(values.size() * 3)};
  for (size_t i = 0; i < values.size(); ++i) {
    const float value = values[i] > 0.0f ? std::min(values[i], 1.0f) : 0.0f;  // NaN from a hand-made map -> 0
    const auto& color = colors[static_cast<uint8_t>(255.0f * value)];
    std::copy(color.begin(), color.end(), heatmap.pixels.begin() + static_cast<std::ptrdiff_t>(i * 3));
  }
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

  const size_t values = heatmap_rgb.pixels.size();
  // heatmap * alpha + image, in float32 as numpy does it; recomputed in the second pass rather than stored.
  const auto superimposed = [&](size_t i) {
    const size_t image_index = image_rgb.channels == 3 ? i : i / 3;
    return static_cast<float>(heatmap_rgb.pixels[i]) * alpha + static_cast<float>(image_rgb.pixels[image_index]);
  };
  float low = superimposed(0), high = low;
  for (size_t i = 1; i < values; ++i) {
    low = std::min(low, superimposed(i));
    high = std::max(high, superimposed(i));
  }
  const float range = high - low;  // array_to_img's x_max after x -= min (rounding is monotonic)
  Image out{image_rgb.width, image_rgb.height, 3, std::vector<uint8_t>(values)};
  for (size_t i = 0; i < values; ++i) {
    float x = superimposed(i) - low;
    if (range != 0.0f) x /= range;
    out.pixels[i] = static_cast<uint8_t>(x * 255.0f);
  }
  return out;
}

std::vector<uint8_t> encode_image(const Image& image, Encoding encoding, int jpeg_quality) {
  const bool png = encoding == Encoding::Png;
  check_image(image, "cannot encode image");
  if (uint64_t{image.width} * image.channels > INT_MAX || image.height > INT_MAX ||
      (!png && (image.width > 65535 || image.height > 65535)))
    throw Error("cannot encode image: " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                " is too large for " + (png ? "PNG" : "JPEG"));
  if (jpeg_quality < 1 || jpeg_quality > 100) throw Error("JPEG quality must be 1..100");
  std::vector<uint8_t> bytes;
  const int width = static_cast<int>(image.width), height = static_cast<int>(image.height);
  const int channels = static_cast<int>(image.channels);
  const int encoded =
      png ? stbi_write_png_to_func(append_to_vector, &bytes, width, height, channels, image.pixels.data(),
                                   width * channels)
          : stbi_write_jpg_to_func(append_to_vector, &bytes, width, height, channels, image.pixels.data(),
                                   jpeg_quality);
  if (!encoded) throw Error("cannot encode image: encoding failed", ErrorCode::Internal);
  return bytes;
}

void write_image(const Image& image, const std::string& path) {
  const bool png = has_extension(path, {".png"});
  if (!png && !has_extension(path, {".jpg", ".jpeg"}))
    throw Error("cannot write image '" + path + "': the extension is not .png, .jpg or .jpeg");
  std::vector<uint8_t> bytes;
  try {
    bytes = encode_image(image, png ? Encoding::Png : Encoding::Jpeg);
  } catch (const Error& e) {
    throw Error("cannot write image '" + path + "': " + e.what(), e.code());
  }
  write_file_atomically(path, bytes, "image");
}

}  // namespace effcam::imaging
