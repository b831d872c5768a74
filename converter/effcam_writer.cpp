// EffcamBuilder: packs weights into kernel layouts and lays out the .effcam file (docs/file-format.md).
#include "converter/effcam_writer.h"

#include <array>
#include <bit>
#include <cstdio>
#include <cstring>
#include <utility>

#include "format/checksum.h"
#include "base/file_io.h"
#include "effcam/error.hpp"
#include "format/half.h"
#include "format/weight_layout.h"

namespace effcam::converter {
namespace {

static_assert(std::endian::native == std::endian::little, "the .effcam records are written in host byte order");

template <class Record>
std::span<const uint8_t> bytes_of(std::span<const Record> records) {
  return {reinterpret_cast<const uint8_t*>(records.data()), records.size_bytes()};
}

uint64_t align_up(uint64_t value, uint64_t alignment) { return (value + alignment - 1) / alignment * alignment; }

}  // namespace

EffcamBuilder::EffcamBuilder(format::DType kernel_dtype) : kernel_dtype_(kernel_dtype) {
  if (kernel_dtype != format::DType::F32 && kernel_dtype != format::DType::F16) {
    throw Error("unknown kernel dtype " + std::to_string(static_cast<uint32_t>(kernel_dtype)));
  }
}

format::StringRef EffcamBuilder::add_string(std::string_view text) {
  if (const auto found = interned_.find(text); found != interned_.end()) return found->second;
  if (strings_.size() + text.size() > UINT32_MAX) throw Error("the Strings section would exceed 4 GiB");
  const format::StringRef ref{static_cast<uint32_t>(strings_.size()), static_cast<uint32_t>(text.size())};
  strings_ += text;
  interned_.emplace(text, ref);
  return ref;
}

uint32_t EffcamBuilder::add_weight(std::string_view name, format::DType dtype, format::WeightLayout layout,
                                   const uint32_t (&dims)[4], std::vector<uint8_t> bytes) {
  for (uint32_t dim : dims) {
    if (dim == 0) throw Error("weight " + std::string(name) + " has a zero dimension");
  }
  if (weights_.size() + 1 >= format::kNone) throw Error("too many weights");
  format::WeightRecord record{};
  record.name = add_string(name);
  record.dtype = dtype;
  record.layout = layout;
  std::copy(std::begin(dims), std::end(dims), std::begin(record.dims));
  record.offset = align_up(weight_bytes_.size(), format::kTensorAlignment);
  record.byte_size = bytes.size();
  weight_bytes_.resize(record.offset);  // zero padding up to the aligned start
  weight_bytes_.insert(weight_bytes_.end(), bytes.begin(), bytes.end());
  weights_.push_back(record);
  return static_cast<uint32_t>(weights_.size() - 1);
}

uint32_t EffcamBuilder::add_vector(std::string_view name, std::span<const float> values) {
  if (values.size() > UINT32_MAX) throw Error("vector " + std::string(name) + " is too long");
  const auto bytes = bytes_of(values);
  return add_weight(name, format::DType::F32, format::WeightLayout::Vector,
                    {static_cast<uint32_t>(values.size()), 1, 1, 1}, {bytes.begin(), bytes.end()});
}

namespace {

// A packed kernel as stored: fp32 as is, or cast to fp16 (round to nearest even).
std::vector<uint8_t> kernel_bytes(std::span<const float> packed, format::DType dtype) {
  if (dtype == format::DType::F16) {
    const std::vector<uint16_t> halves = format::floats_to_halves(packed);
    const auto bytes = bytes_of(std::span<const uint16_t>(halves));
    return {bytes.begin(), bytes.end()};
  }
  const auto bytes = bytes_of(packed);
  return {bytes.begin(), bytes.end()};
}

}  // namespace

uint32_t EffcamBuilder::add_conv_kernel(std::string_view name, std::span<const float> hwio, uint32_t kh, uint32_t kw,
                                        uint32_t cin, uint32_t cout) {
  const std::vector<float> packed = format::pack_conv_kernel(hwio, kh, kw, cin, cout);
  return add_weight(name, kernel_dtype_, format::WeightLayout::BlockedOHWI, {cout, kh, kw, cin},
                    kernel_bytes(packed, kernel_dtype_));
}

uint32_t EffcamBuilder::add_dense_kernel(std::string_view name, std::span<const float> io, uint32_t in,
                                         uint32_t units) {
  const std::vector<float> packed = format::pack_dense_kernel(io, in, units);
  return add_weight(name, kernel_dtype_, format::WeightLayout::BlockedOHWI, {units, 1, 1, in},
                    kernel_bytes(packed, kernel_dtype_));
}

uint32_t EffcamBuilder::add_depthwise_kernel(std::string_view name, std::span<const float> hwcm, uint32_t kh,
                                             uint32_t kw, uint32_t cin, uint32_t multiplier) {
  const std::vector<float> packed = format::pack_depthwise_kernel(hwcm, kh, kw, cin, multiplier);
  // format::pack_depthwise_kernel has checked that cin * multiplier fits.
  return add_weight(name, kernel_dtype_, format::WeightLayout::DepthwiseHWC, {cin * multiplier, kh, kw, 1},
                    kernel_bytes(packed, kernel_dtype_));
}

uint32_t EffcamBuilder::add_tensor(std::string_view keras_name) {
  if (tensors_.size() + 1 >= format::kNone) throw Error("too many tensors");
  tensors_.push_back({add_string(keras_name)});
  return static_cast<uint32_t>(tensors_.size() - 1);
}

void EffcamBuilder::add_op(const format::Op& op) { ops_.push_back(op); }

void EffcamBuilder::add_tap(const format::Tap& tap) { taps_.push_back(tap); }

void EffcamBuilder::set_preprocess(const format::Preprocess& preprocess) { preprocess_ = preprocess; }

void EffcamBuilder::set_labels(const std::vector<std::string>& labels) {
  labels_.clear();
  for (const std::string& label : labels) labels_.push_back(add_string(label));
}

void EffcamBuilder::set_metadata_json(std::string json) { metadata_json_ = std::move(json); }

std::vector<uint8_t> EffcamBuilder::serialize() const {
  using format::SectionKind;
  const std::array<std::pair<SectionKind, std::span<const uint8_t>>, format::kSectionKindCount> contents = {{
      {SectionKind::Metadata, bytes_of(std::span<const char>(metadata_json_))},
      {SectionKind::Strings, bytes_of(std::span<const char>(strings_))},
      {SectionKind::Preprocess, bytes_of(std::span<const format::Preprocess>(&preprocess_, 1))},
      {SectionKind::Tensors, bytes_of(std::span<const format::ActivationTensor>(tensors_))},
      {SectionKind::Ops, bytes_of(std::span<const format::Op>(ops_))},
      {SectionKind::Taps, bytes_of(std::span<const format::Tap>(taps_))},
      {SectionKind::Labels, bytes_of(std::span<const format::StringRef>(labels_))},
      {SectionKind::WeightTable, bytes_of(std::span<const format::WeightRecord>(weights_))},
      {SectionKind::Weights, std::span<const uint8_t>(weight_bytes_)},
  }};

  std::array<format::SectionEntry, format::kSectionKindCount> table{};
  uint64_t offset = sizeof(format::FileHeader) + sizeof table;
  for (size_t i = 0; i < contents.size(); ++i) {
    const auto& [kind, bytes] = contents[i];
    offset = align_up(offset, kind == SectionKind::Weights ? format::kWeightsAlignment : 64);
    table[i] = {kind, crc32c(bytes), offset, bytes.size(), 0};
    offset += bytes.size();
  }

  format::FileHeader header{};
  std::memcpy(header.magic, format::kMagic, sizeof header.magic);
  header.version = format::kVersion;
  header.endian_tag = format::kEndianTag;
  header.file_size = offset;
  header.section_count = format::kSectionKindCount;
  header.channel_block = format::kChannelBlock;
  const auto table_bytes = bytes_of(std::span<const format::SectionEntry>(table));
  header.header_checksum = crc32c(table_bytes, crc32c(bytes_of(std::span<const format::FileHeader>(&header, 1))));

  std::vector<uint8_t> file(offset, 0);
  std::memcpy(file.data(), &header, sizeof header);
  std::memcpy(file.data() + sizeof header, table_bytes.data(), table_bytes.size());
  for (size_t i = 0; i < contents.size(); ++i) {
    const auto& bytes = contents[i].second;
    if (!bytes.empty()) std::memcpy(file.data() + table[i].offset, bytes.data(), bytes.size());
  }
  return file;
}

uint64_t EffcamBuilder::write(const std::string& path) const {
  const std::vector<uint8_t> file = serialize();
  write_file_atomically(path, file, "model");
  return file.size();
}

}  // namespace effcam::converter
