#include "imaging/resize.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <numbers>
#include <optional>
#include <string>
#include <utility>
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

// PIL's precompute_coeffs + normalize_coeffs_8bpc, with the same double arithmetic in the same order. PIL skips
// the pass of an axis whose size does not change; the bank is then the identity (one weight of 1.0 per sample),
// which gives the same bytes.
FilterBank lanczos_bank(uint32_t in_size, uint32_t out_size) {
  if (in_size == out_size) {
    FilterBank identity{1, std::vector<int>(out_size), std::vector<int>(out_size, 1),
                        std::vector<int32_t>(out_size, int32_t{1} << kPrecisionBits)};
    for (uint32_t o = 0; o < out_size; ++o) identity.first[o] = static_cast<int>(o);
    return identity;
  }
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

// Filters one row along x: `src` holds the row's pixels (C channels interleaved), `dst` bank-size pixels.
template <uint32_t C>
void filter_row(const uint8_t* src, const FilterBank& bank, uint8_t* dst) {
  const size_t out_size = bank.first.size();
  for (size_t x = 0; x < out_size; ++x) {
    const int32_t* weights = &bank.weights[x * bank.taps];
    const uint8_t* in = src + size_t(bank.first[x]) * C;
    std::array<int32_t, C> acc;
    acc.fill(kRoundHalf);
    for (int i = 0; i < bank.count[x]; ++i) {
      for (uint32_t ch = 0; ch < C; ++ch) acc[ch] += in[size_t(i) * C + ch] * weights[i];
    }
    for (uint32_t ch = 0; ch < C; ++ch) dst[x * C + ch] = clip8(acc[ch]);
  }
}

void filter_row(const uint8_t* src, uint32_t channels, const FilterBank& bank, uint8_t* dst) {
  switch (channels) {
    case 1: return filter_row<1>(src, bank, dst);
    case 2: return filter_row<2>(src, bank, dst);
    case 3: return filter_row<3>(src, bank, dst);
    default: return filter_row<4>(src, bank, dst);
  }
}

// The horizontal pass of one row, fast: each weight w split into 16-bit halves, w = high * 2^12 + low with low in
// 0..4095, and the row's channels into 16-bit planes, so that each output is two dot products of int16 vectors
// (which compilers turn into pmaddwd, SSE2 up) whose exact sums give PIL's 32-bit sum exactly. The halves' sums
// fit in 32 bits up to kMaxSplitTaps taps; wider filters (downscales by over ~300) take filter_row.
class HorizontalFilter {
 public:
  static constexpr int kMaxSplitTaps = 2048;
  static constexpr int kLowBits = 12;

  HorizontalFilter(FilterBank bank, uint32_t in_size, uint32_t channels)
      : bank_(std::move(bank)), in_size_(in_size), channels_(channels) {
    if (bank_.taps > kMaxSplitTaps) return;
    padded_taps_ = (bank_.taps + 15) / 16 * 16;
    const size_t out_size = bank_.first.size();
    high_.assign(out_size * padded_taps_, 0);
    low_.assign(out_size * padded_taps_, 0);
    for (size_t o = 0; o < out_size; ++o) {
      for (int i = 0; i < bank_.count[o]; ++i) {
        const int32_t w = bank_.weights[o * bank_.taps + i];
        high_[o * padded_taps_ + i] = static_cast<int16_t>(w >> kLowBits);
        low_[o * padded_taps_ + i] = static_cast<int16_t>(w & ((1 << kLowBits) - 1));
      }
    }
    // Zeros past the row's end: every output reads padded_taps samples from its first.
    planes_.assign(channels * (size_t{in_size} + padded_taps_), 0);
  }

  // src: in_size pixels, read backwards when `mirrored`; dst: the bank's out_size pixels.
  void run(const uint8_t* src, bool mirrored, uint8_t* dst) {
    if (padded_taps_ == 0) {
      if (mirrored) {
        scratch_.resize(size_t{in_size_} * channels_);
        for (uint32_t x = 0; x < in_size_; ++x) {
          std::memcpy(&scratch_[size_t{x} * channels_], src + size_t{in_size_ - 1 - x} * channels_, channels_);
        }
        src = scratch_.data();
      }
      return filter_row(src, channels_, bank_, dst);
    }
    const size_t plane_size = size_t{in_size_} + padded_taps_;
    switch (channels_) {
      case 1: split_planes<1>(src, mirrored, plane_size); break;
      case 2: split_planes<2>(src, mirrored, plane_size); break;
      case 3: split_planes<3>(src, mirrored, plane_size); break;
      default: split_planes<4>(src, mirrored, plane_size);
    }
    const size_t out_size = bank_.first.size();
    for (size_t o = 0; o < out_size; ++o) {
      const int16_t* high = &high_[o * padded_taps_];
      const int16_t* low = &low_[o * padded_taps_];
      for (uint32_t c = 0; c < channels_; ++c) {
        const int16_t* in = &planes_[c * plane_size + size_t(bank_.first[o])];
        int32_t sum_high = 0, sum_low = 0;
        for (int i = 0; i < padded_taps_; ++i) {
          sum_high += in[i] * high[i];
          sum_low += in[i] * low[i];
        }
        const int64_t sum = (int64_t{sum_high} << kLowBits) + sum_low + kRoundHalf;
        dst[o * channels_ + c] = static_cast<uint8_t>(std::clamp<int64_t>(sum >> kPrecisionBits, 0, 255));
      }
    }
  }

 private:
  template <uint32_t C>
  // __restrict: the int16 stores cannot change the source bytes, so the loops vectorize.
  void split_planes(const uint8_t* __restrict src, bool mirrored, size_t plane_size) {
    int16_t* __restrict planes = planes_.data();
    if (mirrored) {
      for (uint32_t x = 0; x < in_size_; ++x) {
        for (uint32_t c = 0; c < C; ++c) planes[c * plane_size + x] = src[size_t{in_size_ - 1 - x} * C + c];
      }
    } else {
      for (uint32_t x = 0; x < in_size_; ++x) {
        for (uint32_t c = 0; c < C; ++c) planes[c * plane_size + x] = src[size_t{x} * C + c];
      }
    }
  }

  FilterBank bank_;
  uint32_t in_size_, channels_;
  int padded_taps_ = 0;  // 0: filter_row
  std::vector<int16_t> high_, low_, planes_;
  std::vector<uint8_t> scratch_;
};

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

// The input's size is the decoder's to bound; the output and the intermediate image are allocated here.
void check_size(uint32_t width, uint32_t height, const char* what, uint64_t limit) {
  if (width == 0 || height == 0 || uint64_t{width} * height > limit) {
    throw Error(std::string("resize: ") + what + " size " + std::to_string(width) + "x" + std::to_string(height) +
                " is zero or above the limit of " + std::to_string(limit) + " pixels");
  }
}

}  // namespace

// The oriented image T (what exif_transpose returns) is filtered as PIL filters it: along T's x, then along T's y.
// Stored rows arrive in stored order. Without an axis swap, a stored row is a row of T (maybe mirrored, maybe
// from the bottom): it is filtered along x at once into its intermediate row. With a swap, a stored row is a
// column of T: it adds its weighted share to every output column whose filter window covers it, and an output
// column is rounded into the intermediate image when its window's last row has been added.
struct LanczosStream::State {
  uint32_t stored_w, stored_h, channels;
  bool swapped;
  bool mirror_x;  // T's x runs against its stored axis
  bool mirror_y;  // T's y runs against its stored axis
  FilterBank horizontal;                       // swapped: the horizontal pass, column by column
  std::optional<HorizontalFilter> row_filter;  // not swapped: the horizontal pass of each row (owns the bank)
  FilterBank vertical;                         // rebased onto [row_begin, row_end)
  uint32_t row_begin, row_end;  // the rows of T the vertical pass reads
  Image intermediate;           // out_w x (row_end - row_begin)
  uint32_t rows_pushed = 0;
  std::vector<std::vector<int32_t>> accumulators;  // swapped: per output column, empty while it is not open
  std::vector<std::vector<int32_t>> spare;         // closed accumulators, reused

  void push_row_of_t(const uint8_t* row);
  void push_column_of_t(const uint8_t* row);
};

LanczosStream::LanczosStream(uint32_t stored_w, uint32_t stored_h, uint32_t channels, uint32_t out_w,
                             uint32_t out_h, Orientation orientation) {
  check_size(stored_w, stored_h, "input", UINT64_MAX);
  check_size(out_w, out_h, "output", kMaxImagePixels);
  if (channels < 1 || channels > 4) throw Error("resize: " + std::to_string(channels) + " channels, not 1..4");
  const uint8_t tag = static_cast<uint8_t>(orientation);
  if (tag < 1 || tag > 8) throw Error("resize: EXIF orientation " + std::to_string(tag) + " is not 1..8");
  auto state = std::make_unique<State>();
  state->stored_w = stored_w;
  state->stored_h = stored_h;
  state->channels = channels;
  const OrientationAxes axes = orientation_axes(orientation);
  state->swapped = axes.swapped;
  state->mirror_x = axes.mirror_x;
  state->mirror_y = axes.mirror_y;
  const uint32_t t_width = state->swapped ? stored_h : stored_w;
  const uint32_t t_height = state->swapped ? stored_w : stored_h;
  state->horizontal = lanczos_bank(t_width, out_w);
  state->vertical = lanczos_bank(t_height, out_h);
  // Like PIL, filter only the rows the vertical pass reads, and rebase its row indices onto them.
  state->row_begin = static_cast<uint32_t>(state->vertical.first.front());
  state->row_end = static_cast<uint32_t>(state->vertical.first.back() + state->vertical.count.back());
  for (int& first : state->vertical.first) first -= static_cast<int>(state->row_begin);
  check_size(out_w, state->row_end - state->row_begin, "intermediate", kMaxImagePixels);
  state->intermediate = blank(out_w, state->row_end - state->row_begin, channels);
  if (state->swapped) {
    state->accumulators.resize(out_w);
  } else {
    state->row_filter.emplace(std::move(state->horizontal), stored_w, channels);
  }
  state_ = std::move(state);
}

LanczosStream::~LanczosStream() = default;

void LanczosStream::State::push_row_of_t(const uint8_t* row) {
  const uint32_t y = mirror_y ? stored_h - 1 - rows_pushed : rows_pushed;
  if (y < row_begin || y >= row_end) return;
  row_filter->run(row, mirror_x, &intermediate.pixels[size_t{y - row_begin} * intermediate.width * channels]);
}

void LanczosStream::State::push_column_of_t(const uint8_t* row) {
  const int x = static_cast<int>(mirror_x ? stored_h - 1 - rows_pushed : rows_pushed);
  // The output columns whose windows [first, first + count) hold x: both ends grow with the column index.
  const auto& first = horizontal.first;
  const auto& count = horizontal.count;
  const size_t out_w = first.size();
  size_t begin = 0;
  for (size_t step = out_w; step > 0; step /= 2) {
    while (begin + step <= out_w && first[begin + step - 1] + count[begin + step - 1] <= x) begin += step;
  }
  const size_t t_rows = row_end - row_begin;
  const size_t length = t_rows * channels;
  // Row k of T's used rows is stored column row_begin + k, or its mirror.
  const uint8_t* column0 = mirror_y ? row + size_t{stored_w - 1 - row_begin} * channels
                                    : row + size_t{row_begin} * channels;
  for (size_t o = begin; o < out_w && first[o] <= x; ++o) {
    std::vector<int32_t>& acc = accumulators[o];
    if (acc.empty()) {
      if (spare.empty()) {
        acc.assign(length, kRoundHalf);
      } else {
        acc = std::move(spare.back());
        spare.pop_back();
        std::fill(acc.begin(), acc.end(), kRoundHalf);
      }
    }
    const int32_t weight = horizontal.weights[o * horizontal.taps + size_t(x - first[o])];
    if (mirror_y) {
      for (size_t k = 0; k < t_rows; ++k) {
        for (uint32_t c = 0; c < channels; ++c) acc[k * channels + c] += (column0 - k * channels)[c] * weight;
      }
    } else {
      for (size_t i = 0; i < length; ++i) acc[i] += column0[i] * weight;
    }
    const bool closed = mirror_x ? x == first[o] : x == first[o] + count[o] - 1;
    if (closed) {
      uint8_t* out = &intermediate.pixels[o * channels];
      for (size_t k = 0; k < t_rows; ++k) {
        for (uint32_t c = 0; c < channels; ++c) out[k * out_w * channels + c] = clip8(acc[k * channels + c]);
      }
      spare.push_back(std::move(acc));
      acc.clear();
    }
  }
}

void LanczosStream::push_row(const uint8_t* row) {
  State& s = *state_;
  if (s.rows_pushed >= s.stored_h) throw Error("resize: more rows than the image's " + std::to_string(s.stored_h));
  if (s.swapped) {
    s.push_column_of_t(row);
  } else {
    s.push_row_of_t(row);
  }
  ++s.rows_pushed;
}

Image LanczosStream::finish() {
  State& s = *state_;
  if (s.rows_pushed != s.stored_h) {
    throw Error("resize: " + std::to_string(s.rows_pushed) + " rows pushed of " + std::to_string(s.stored_h));
  }
  Image out = blank(s.intermediate.width, static_cast<uint32_t>(s.vertical.first.size()), s.channels);
  resample_vertical(s.intermediate, s.vertical, out);
  return out;
}

Image resize_lanczos(const Image& image, uint32_t out_w, uint32_t out_h) {
  if (image.channels < 1 || image.channels > 4 ||
      image.pixels.size() != uint64_t{image.width} * image.height * image.channels) {
    throw Error("resize: inconsistent input image (" + std::to_string(image.width) + "x" +
                std::to_string(image.height) + "x" + std::to_string(image.channels) + ", " +
                std::to_string(image.pixels.size()) + " bytes)");
  }
  if (out_w == image.width && out_h == image.height) return image;
  LanczosStream stream(image.width, image.height, image.channels, out_w, out_h);
  const size_t row_bytes = size_t{image.width} * image.channels;
  for (uint32_t y = 0; y < image.height; ++y) stream.push_row(&image.pixels[y * row_bytes]);
  return stream.finish();
}

}  // namespace effcam::imaging
