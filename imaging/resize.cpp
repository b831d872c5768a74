#include "imaging/resize.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "effcam/error.hpp"

namespace effcam::imaging {
namespace {

// PIL keeps 8 result bits plus 2 bits of headroom for the filter's negative lobes in a 32-bit int.
constexpr int kPrecisionBits = 32 - 8 - 2;
constexpr double kLanczosSupport = 3.0;

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x = x * std::numbers::pi;
  return std::sin(x) / x;
}

double lanczos(double x) {
  if (-kLanczosSupport <= x && x < kLanczosSupport) return sinc(x) * sinc(x / kLanczosSupport);
  return 0.0;
}

// One output sample along an axis: the input range [first, first + count) and its fixed-point weights.
struct FilterBank {
  int taps = 0;                  // weights per output sample (ksize)
  std::vector<int> first;        // per output sample
  std::vector<int> count;        // per output sample
  std::vector<int32_t> weights;  // out_size * taps
};

// PIL's precompute_coeffs + normalize_coeffs_8bpc, with the same double arithmetic in the same order.
FilterBank lanczos_bank(uint32_t in_size, uint32_t out_size) {
  // PIL passes the box edges as float; the float rounding matters only above 2^24 pixels, kept for fidelity.
  const double scale = static_cast<double>(static_cast<float>(in_size)) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = kLanczosSupport * filter_scale;
  FilterBank bank;
  bank.taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  bank.first.resize(out_size);
  bank.count.resize(out_size);
  bank.weights.assign(size_t{out_size} * bank.taps, 0);
  std::vector<double> w(bank.taps);
  const double inv_filter_scale = 1.0 / filter_scale;
  for (uint32_t o = 0; o < out_size; ++o) {
    const double center = (o + 0.5) * scale;
    const int first = std::max(static_cast<int>(center - support + 0.5), 0);
    const int count = std::min(static_cast<int>(center + support + 0.5), static_cast<int>(in_size)) - first;
    double sum = 0.0;
    for (int i = 0; i < count; ++i) {
      w[i] = lanczos((i + first - center + 0.5) * inv_filter_scale);
      sum += w[i];
    }
    int32_t* fixed = &bank.weights[size_t{o} * bank.taps];
    for (int i = 0; i < count; ++i) {
      const double normalized = sum != 0.0 ? w[i] / sum : w[i];
      const double scaled = normalized * (1 << kPrecisionBits);
      fixed[i] = static_cast<int32_t>(normalized < 0 ? scaled - 0.5 : scaled + 0.5);
    }
    bank.first[o] = first;
    bank.count[o] = count;
  }
  return bank;
}

// Accumulators are 32-bit like PIL's: |sum| stays below 2^31 since the Lanczos weights' absolute sum is < 1.3.
uint8_t clip8(int32_t accumulator) {
  return static_cast<uint8_t>(std::clamp(accumulator >> kPrecisionBits, 0, 255));
}

constexpr int32_t kRoundHalf = int32_t{1} << (kPrecisionBits - 1);

// Filters rows [row_offset, row_offset + out.height) of `in` along x into `out`; C channels, interleaved.
template <uint32_t C>
void resample_horizontal(const Image& in, uint32_t row_offset, const FilterBank& bank, Image& out) {
  for (uint32_t y = 0; y < out.height; ++y) {
    const uint8_t* row = &in.pixels[(size_t{y} + row_offset) * in.width * C];
    uint8_t* dst = &out.pixels[size_t{y} * out.width * C];
    for (uint32_t x = 0; x < out.width; ++x) {
      const int32_t* weights = &bank.weights[size_t{x} * bank.taps];
      const uint8_t* src = row + size_t(bank.first[x]) * C;
      std::array<int32_t, C> acc;
      acc.fill(kRoundHalf);
      for (int i = 0; i < bank.count[x]; ++i) {
        for (uint32_t ch = 0; ch < C; ++ch) acc[ch] += src[size_t(i) * C + ch] * weights[i];
      }
      for (uint32_t ch = 0; ch < C; ++ch) dst[size_t{x} * C + ch] = clip8(acc[ch]);
    }
  }
}

void resample_horizontal(const Image& in, uint32_t row_offset, const FilterBank& bank, Image& out) {
  switch (in.channels) {
    case 1: return resample_horizontal<1>(in, row_offset, bank, out);
    case 2: return resample_horizontal<2>(in, row_offset, bank, out);
    case 3: return resample_horizontal<3>(in, row_offset, bank, out);
    default: return resample_horizontal<4>(in, row_offset, bank, out);
  }
}

// Filters `in` along y into `out`; the bank's row indices are relative to in's first row. Whole rows are
// accumulated at once so the inner loop runs over contiguous bytes.
void resample_vertical(const Image& in, const FilterBank& bank, Image& out) {
  const size_t row_len = size_t{in.width} * in.channels;
  std::vector<int32_t> acc(row_len);
  for (uint32_t y = 0; y < out.height; ++y) {
    const int32_t* weights = &bank.weights[size_t{y} * bank.taps];
    std::fill(acc.begin(), acc.end(), kRoundHalf);
    for (int i = 0; i < bank.count[y]; ++i) {
      const uint8_t* src = &in.pixels[(size_t(bank.first[y]) + size_t(i)) * row_len];
      for (size_t k = 0; k < row_len; ++k) acc[k] += src[k] * weights[i];
    }
    uint8_t* dst = &out.pixels[size_t{y} * row_len];
    for (size_t k = 0; k < row_len; ++k) dst[k] = clip8(acc[k]);
  }
}

Image blank(uint32_t width, uint32_t height, uint32_t channels) {
  Image image{width, height, channels, {}};
  image.pixels.resize(size_t{width} * height * channels);
  return image;
}

}  // namespace

Image resize_lanczos(const Image& image, uint32_t out_w, uint32_t out_h) {
  if (image.width == 0 || image.height == 0 || image.channels < 1 || image.channels > 4 ||
      uint64_t{image.width} * image.height > kMaxImagePixels ||
      image.pixels.size() != uint64_t{image.width} * image.height * image.channels) {
    throw Error("resize: inconsistent or oversized input image (" + std::to_string(image.width) + "x" +
                std::to_string(image.height) + "x" + std::to_string(image.channels) + ", " +
                std::to_string(image.pixels.size()) + " bytes)");
  }
  if (out_w == 0 || out_h == 0 || uint64_t{out_w} * out_h > kMaxImagePixels) {
    throw Error("resize: output size " + std::to_string(out_w) + "x" + std::to_string(out_h) +
                " is zero or above the limit of " + std::to_string(kMaxImagePixels) + " pixels");
  }
  const bool need_horizontal = out_w != image.width;
  const bool need_vertical = out_h != image.height;
  if (!need_horizontal && !need_vertical) return image;

  FilterBank vertical = lanczos_bank(image.height, out_h);
  if (!need_horizontal) {
    Image out = blank(out_w, out_h, image.channels);
    resample_vertical(image, vertical, out);
    return out;
  }
  // Like PIL, filter only the rows the vertical pass reads, and rebase its row indices onto them.
  const int first_row = vertical.first.front();
  const int end_row = vertical.first.back() + vertical.count.back();
  for (int& first : vertical.first) first -= first_row;
  Image rows = blank(out_w, static_cast<uint32_t>(end_row - first_row), image.channels);
  resample_horizontal(image, static_cast<uint32_t>(first_row), lanczos_bank(image.width, out_w), rows);
  if (!need_vertical) return rows;
  Image out = blank(out_w, out_h, image.channels);
  resample_vertical(rows, vertical, out);
  return out;
}

}  // namespace effcam::imaging
