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

// One filter pass over inputs (rows or columns, each `length` bytes) that arrive one at a time, in index order or
// backwards, yielding each output's 32-bit sums (PIL's, rounding offset included) once the last input of its
// window has arrived. Integer sums do not depend on the order of their terms, so the result is PIL's exactly.
// Two ways to hold what is in flight, whichever is smaller for the bank (chosen at construction):
// - accumulators: each open output's running sums, length int32 each; open outputs are those whose window holds
//   the current input (about 7 for a downscale, up to all outputs for an upscale);
// - a ring of the last `taps` inputs as bytes, each output summed when its window is complete (upscales: 7 taps).
class StreamingPass {
 public:
  StreamingPass(FilterBank bank, bool backwards, size_t length)
      : bank_(std::move(bank)), backwards_(backwards), length_(length) {
    const size_t outputs = bank_.first.size();
    // The most windows holding one input: a sweep over the windows' edges.
    std::vector<int> delta(size_t(bank_.first.back() + bank_.count.back()) + 1, 0);
    for (size_t o = 0; o < outputs; ++o) {
      ++delta[size_t(bank_.first[o])];
      --delta[size_t(bank_.first[o] + bank_.count[o])];
    }
    int open = 0, most_open = 0;
    for (const int d : delta) most_open = std::max(most_open, open += d);
    if (bank_.taps <= 4 * most_open) {
      ring_.assign(size_t(bank_.taps) * length, 0);
      sums_.resize(length);
    } else {
      open_.resize(outputs);
      spare_.reserve(size_t(most_open));
    }
  }

  // Whether any output's window holds input x (PIL filters only the inputs some output reads).
  bool needed(int x) const { return x >= bank_.first.front() && x < bank_.first.back() + bank_.count.back(); }

  // Adds input x (`length` bytes); calls emit(output, sums) for every output whose window it completes.
  template <typename Emit>
  void push(int x, const uint8_t* input, Emit&& emit) {
    if (!needed(x)) return;
    // The outputs whose windows [first, first + count) hold x: both ends grow with the output index.
    const auto& first = bank_.first;
    const auto& count = bank_.count;
    const size_t outputs = first.size();
    size_t begin = 0;
    for (size_t step = outputs; step > 0; step /= 2) {
      while (begin + step <= outputs && first[begin + step - 1] + count[begin + step - 1] <= x) begin += step;
    }
    if (!ring_.empty()) {
      std::memcpy(&ring_[size_t(x % bank_.taps) * length_], input, length_);
    }
    for (size_t o = begin; o < outputs && first[o] <= x; ++o) {
      const bool last = backwards_ ? x == first[o] : x == first[o] + count[o] - 1;
      const int32_t* weights = &bank_.weights[o * size_t(bank_.taps)];
      if (!ring_.empty()) {
        if (!last) continue;
        std::fill(sums_.begin(), sums_.end(), kRoundHalf);
        for (int i = 0; i < count[o]; ++i) {
          const uint8_t* in = &ring_[size_t((first[o] + i) % bank_.taps) * length_];
          for (size_t k = 0; k < length_; ++k) sums_[k] += in[k] * weights[i];
        }
        emit(o, sums_.data());
        continue;
      }
      std::vector<int32_t>& acc = open_[o];
      if (acc.empty()) {
        if (spare_.empty()) {
          acc.assign(length_, kRoundHalf);
        } else {
          acc = std::move(spare_.back());
          spare_.pop_back();
          std::fill(acc.begin(), acc.end(), kRoundHalf);
        }
      }
      const int32_t weight = weights[x - first[o]];
      for (size_t k = 0; k < length_; ++k) acc[k] += input[k] * weight;
      if (last) {
        emit(o, acc.data());
        spare_.push_back(std::move(acc));
        acc.clear();
      }
    }
  }

 private:
  FilterBank bank_;
  bool backwards_;
  size_t length_;
  std::vector<uint8_t> ring_;                // ring mode: input x at slot x % taps
  std::vector<int32_t> sums_;                // ring mode: one output's sums
  std::vector<std::vector<int32_t>> open_;   // accumulator mode: per output, empty while not open
  std::vector<std::vector<int32_t>> spare_;  // closed accumulators, reused
};

Image blank(uint32_t width, uint32_t height, uint32_t channels) {
  Image image{width, height, channels, {}};
  image.pixels.resize(size_t{width} * height * channels);
  return image;
}

// The input's size is the decoder's to bound; the output is allocated here.
void check_size(uint32_t width, uint32_t height, const char* what, uint64_t limit) {
  if (width == 0 || height == 0 || uint64_t{width} * height > limit) {
    throw Error(std::string("resize: ") + what + " size " + std::to_string(width) + "x" + std::to_string(height) +
                " is zero or above the limit of " + std::to_string(limit) + " pixels");
  }
}

}  // namespace

// The oriented image T (what exif_transpose returns) is filtered as PIL filters it: along T's x into 8-bit
// intermediate values, then along T's y. Stored rows arrive in stored order.
// - Without an axis swap, a stored row is a row of T (maybe mirrored, maybe from the bottom): it is filtered along
//   x at once into an intermediate row, which the vertical StreamingPass adds to the output rows it belongs to.
// - With a swap, a stored row is a column of T: the horizontal StreamingPass adds it to the output columns it
//   belongs to; a completed intermediate column is at once filtered along y into its output column.
// Neither keeps the intermediate image: memory is the decoder's row, the passes' state and the output.
struct LanczosStream::State {
  uint32_t stored_w, stored_h, channels;
  bool swapped;
  bool mirror_x;  // T's x runs against its stored axis
  bool mirror_y;  // T's y runs against its stored axis
  std::optional<HorizontalFilter> row_filter;  // not swapped: the horizontal pass of each row
  std::optional<StreamingPass> columns;        // swapped: the horizontal pass, a column of T at a time
  std::optional<StreamingPass> rows;           // not swapped: the vertical pass, an intermediate row at a time
  FilterBank vertical;                         // swapped: the vertical pass of each intermediate column
  Image out;
  std::vector<uint8_t> line;  // an intermediate row, or a column of T, or an intermediate column
  std::vector<uint8_t> intermediate_column;
  uint32_t rows_pushed = 0;

  void push_row_of_t(const uint8_t* row);
  void push_column_of_t(const uint8_t* row);
  void finish_column(size_t o, const int32_t* sums);
};

LanczosStream::LanczosStream(uint32_t stored_w, uint32_t stored_h, uint32_t channels, uint32_t out_w,
                             uint32_t out_h, Orientation orientation) {
  check_size(stored_w, stored_h, "input", UINT64_MAX);
  if (stored_w > kMaxImageSide || stored_h > kMaxImageSide) {
    throw Error("resize: input size " + std::to_string(stored_w) + "x" + std::to_string(stored_h) +
                " has a side above the limit of " + std::to_string(kMaxImageSide) + " pixels");
  }
  check_size(out_w, out_h, "output", kMaxImagePixels);
  if (channels < 1 || channels > 4) throw Error("resize: " + std::to_string(channels) + " channels, not 1..4");
  const uint8_t tag = static_cast<uint8_t>(orientation);
  if (tag < 1 || tag > 8) throw Error("resize: EXIF orientation " + std::to_string(tag) + " is not 1..8");
  auto state = std::make_unique<State>();
  State& s = *state;
  s.stored_w = stored_w;
  s.stored_h = stored_h;
  s.channels = channels;
  const OrientationAxes axes = orientation_axes(orientation);
  s.swapped = axes.swapped;
  s.mirror_x = axes.mirror_x;
  s.mirror_y = axes.mirror_y;
  const uint32_t t_width = s.swapped ? stored_h : stored_w;
  const uint32_t t_height = s.swapped ? stored_w : stored_h;
  s.out = blank(out_w, out_h, channels);
  if (s.swapped) {
    s.columns.emplace(lanczos_bank(t_width, out_w), s.mirror_x, size_t{t_height} * channels);
    s.vertical = lanczos_bank(t_height, out_h);
    s.line.resize(size_t{t_height} * channels);
    s.intermediate_column.resize(size_t{t_height} * channels);
  } else {
    s.row_filter.emplace(lanczos_bank(t_width, out_w), stored_w, channels);
    s.rows.emplace(lanczos_bank(t_height, out_h), s.mirror_y, size_t{out_w} * channels);
    s.line.resize(size_t{out_w} * channels);
  }
  state_ = std::move(state);
}

LanczosStream::~LanczosStream() = default;

void LanczosStream::State::push_row_of_t(const uint8_t* row) {
  const int y = static_cast<int>(mirror_y ? stored_h - 1 - rows_pushed : rows_pushed);
  if (!rows->needed(y)) return;
  row_filter->run(row, mirror_x, line.data());
  const size_t row_bytes = line.size();
  rows->push(y, line.data(), [&](size_t o, const int32_t* sums) {
    uint8_t* dst = &out.pixels[o * row_bytes];
    for (size_t k = 0; k < row_bytes; ++k) dst[k] = clip8(sums[k]);
  });
}

void LanczosStream::State::push_column_of_t(const uint8_t* row) {
  const int x = static_cast<int>(mirror_x ? stored_h - 1 - rows_pushed : rows_pushed);
  if (!columns->needed(x)) return;
  const uint8_t* column = row;
  if (mirror_y) {  // T's y runs from the stored row's end
    for (uint32_t k = 0; k < stored_w; ++k) {
      std::memcpy(&line[size_t{k} * channels], row + size_t{stored_w - 1 - k} * channels, channels);
    }
    column = line.data();
  }
  columns->push(x, column, [&](size_t o, const int32_t* sums) { finish_column(o, sums); });
}

// Output column o of the horizontal pass, rounded to 8 bits as PIL's intermediate image, then filtered along y.
void LanczosStream::State::finish_column(size_t o, const int32_t* sums) {
  for (size_t k = 0; k < intermediate_column.size(); ++k) intermediate_column[k] = clip8(sums[k]);
  const size_t out_h = vertical.first.size();
  const size_t row_bytes = size_t{out.width} * channels;
  for (size_t y = 0; y < out_h; ++y) {
    const int32_t* weights = &vertical.weights[y * size_t(vertical.taps)];
    const uint8_t* in = &intermediate_column[size_t(vertical.first[y]) * channels];
    std::array<int32_t, 4> acc;
    acc.fill(kRoundHalf);
    for (int i = 0; i < vertical.count[y]; ++i) {
      for (uint32_t c = 0; c < channels; ++c) acc[c] += in[size_t(i) * channels + c] * weights[i];
    }
    for (uint32_t c = 0; c < channels; ++c) out.pixels[y * row_bytes + o * channels + c] = clip8(acc[c]);
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
  return std::move(s.out);
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
