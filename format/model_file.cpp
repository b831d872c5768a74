// Loading and structural validation of .effcam files. Every offset, size and id is checked, with overflow-checked
// arithmetic, before anything is viewed; a file that passes can be read through the views without bounds checks.
#include "format/model_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <optional>
#include <system_error>
#include <utility>

#include "format/checksum.h"
#include "effcam/error.hpp"
#include "format/weight_layout.h"

namespace effcam {
namespace {

using format::SectionEntry;
using format::SectionKind;

constexpr uint32_t kMaxImageSide = 8192;
constexpr uint32_t kMaxWeightDim = 1u << 24;  // far above any real layer, far below overflow trouble

const char* section_name(SectionKind kind) {
  switch (kind) {
    case SectionKind::Metadata: return "Metadata";
    case SectionKind::Strings: return "Strings";
    case SectionKind::Preprocess: return "Preprocess";
    case SectionKind::Tensors: return "Tensors";
    case SectionKind::Ops: return "Ops";
    case SectionKind::Taps: return "Taps";
    case SectionKind::Labels: return "Labels";
    case SectionKind::WeightTable: return "WeightTable";
    case SectionKind::Weights: return "Weights";
  }
  return "unknown";
}

std::string errno_text(int error) { return std::error_code(error, std::generic_category()).message(); }

// Records are viewed in place: the base is 8-byte aligned and every section 64-byte aligned (both checked).
template <class Record>
std::span<const Record> view_records(std::span<const uint8_t> bytes) {
  return {reinterpret_cast<const Record*>(bytes.data()), bytes.size() / sizeof(Record)};
}

// The checks, in order; each failure throws with the file's name in front.
class Validator {
 public:
  Validator(std::span<const uint8_t> file, const std::string& where)
      : file_(file), prefix_(where.empty() ? std::string() : where + ": ") {}

  [[noreturn]] void fail(const std::string& message) const { throw Error(prefix_ + message); }

  format::FileHeader check_header() const {
    if (file_.empty()) fail("empty file (0 bytes)");
    if (file_.size() < sizeof(format::FileHeader)) {
      fail("truncated: " + std::to_string(file_.size()) + " bytes, smaller than the 64-byte header");
    }
    if (reinterpret_cast<uintptr_t>(file_.data()) % alignof(uint64_t) != 0) fail("buffer is not 8-byte aligned");
    format::FileHeader header;
    std::memcpy(&header, file_.data(), sizeof header);
    if (std::memcmp(header.magic, format::kMagic, sizeof header.magic) != 0) fail("not an .effcam file (bad magic)");
    if (header.endian_tag == __builtin_bswap32(format::kEndianTag)) {
      fail("big-endian file, this effcam reads little-endian files");
    }
    if (header.endian_tag != format::kEndianTag) fail("bad endian tag " + hex(header.endian_tag));
    if (header.version != format::kVersion) {
      fail("file version " + std::to_string(header.version) + ", this effcam reads version " +
           std::to_string(format::kVersion));
    }
    if (header.file_size > file_.size()) {
      fail("truncated: header says " + std::to_string(header.file_size) + " bytes, file has " +
           std::to_string(file_.size()));
    }
    if (header.file_size < file_.size()) {
      fail("has " + std::to_string(file_.size() - header.file_size) + " trailing bytes");
    }
    return header;
  }

  std::span<const SectionEntry> check_section_table(const format::FileHeader& header) const {
    const uint64_t table_end = sizeof(format::FileHeader) + uint64_t{header.section_count} * sizeof(SectionEntry);
    if (table_end > file_.size()) {
      fail("section table (" + std::to_string(header.section_count) + " entries) runs past the end of the file");
    }
    const auto table_bytes = file_.subspan(sizeof header, table_end - sizeof header);
    format::FileHeader zeroed = header;
    zeroed.header_checksum = 0;
    const uint32_t crc = crc32c(table_bytes, crc32c({reinterpret_cast<const uint8_t*>(&zeroed), sizeof zeroed}));
    if (crc != header.header_checksum) fail("header checksum mismatch (header or section table corrupt)");
    if (header.channel_block != format::kChannelBlock) {
      fail("channel block " + std::to_string(header.channel_block) + ", this effcam needs " +
           std::to_string(format::kChannelBlock));
    }
    return view_records<SectionEntry>(table_bytes);
  }

  // Returns each section's bytes, indexed by kind - 1.
  std::array<std::span<const uint8_t>, format::kSectionKindCount> check_sections(
      std::span<const SectionEntry> table) const {
    const uint64_t table_end = sizeof(format::FileHeader) + table.size_bytes();
    std::array<const SectionEntry*, format::kSectionKindCount> by_kind{};
    for (const SectionEntry& entry : table) {
      const auto kind = static_cast<uint32_t>(entry.kind);
      if (kind < 1 || kind > format::kSectionKindCount) fail("unknown section kind " + std::to_string(kind));
      const std::string name = std::string("section ") + section_name(entry.kind);
      if (by_kind[kind - 1] != nullptr) fail(name + " appears twice");
      by_kind[kind - 1] = &entry;
      uint64_t end = 0;
      if (__builtin_add_overflow(entry.offset, entry.size, &end) || end > file_.size()) {
        fail(name + " (offset " + std::to_string(entry.offset) + ", size " + std::to_string(entry.size) +
             ") runs past the end of the file (" + std::to_string(file_.size()) + " bytes)");
      }
      const uint64_t alignment =
          entry.kind == SectionKind::Weights ? format::kWeightsAlignment : uint64_t{64};
      if (entry.offset % alignment != 0) {
        fail(name + " offset " + std::to_string(entry.offset) + " is not " + std::to_string(alignment) +
             "-byte aligned");
      }
      if (entry.offset < table_end) fail(name + " overlaps the header or section table");
    }
    for (uint32_t kind = 1; kind <= format::kSectionKindCount; ++kind) {
      if (by_kind[kind - 1] == nullptr) {
        fail(std::string("missing section ") + section_name(static_cast<SectionKind>(kind)));
      }
    }

    std::array<const SectionEntry*, format::kSectionKindCount> sorted = by_kind;
    std::sort(sorted.begin(), sorted.end(), [](const SectionEntry* a, const SectionEntry* b) {
      return std::pair(a->offset, a->offset + a->size) < std::pair(b->offset, b->offset + b->size);
    });
    for (size_t i = 1; i < sorted.size(); ++i) {
      if (sorted[i - 1]->offset + sorted[i - 1]->size > sorted[i]->offset) {
        fail(std::string("sections ") + section_name(sorted[i - 1]->kind) + " and " +
             section_name(sorted[i]->kind) + " overlap");
      }
    }

    std::array<std::span<const uint8_t>, format::kSectionKindCount> sections;
    for (uint32_t i = 0; i < format::kSectionKindCount; ++i) {
      const SectionEntry& entry = *by_kind[i];
      sections[i] = file_.subspan(entry.offset, entry.size);
      if (crc32c(sections[i]) != entry.checksum) {
        fail(std::string("checksum mismatch in section ") + section_name(entry.kind));
      }
    }
    return sections;
  }

  template <class Record>
  std::span<const Record> check_records(std::span<const uint8_t> section, SectionKind kind) const {
    if (section.size() % sizeof(Record) != 0) {
      fail(std::string("section ") + section_name(kind) + " has " + std::to_string(section.size()) +
           " bytes, not a whole number of " + std::to_string(sizeof(Record)) + "-byte records");
    }
    if (section.size() / sizeof(Record) >= format::kNone) {
      fail(std::string("section ") + section_name(kind) + " has too many records");
    }
    return view_records<Record>(section);
  }

  void check_string(format::StringRef ref, std::string_view strings, const std::string& what) const {
    if (uint64_t{ref.offset} + ref.length > strings.size()) {
      fail(what + ": string (offset " + std::to_string(ref.offset) + ", length " + std::to_string(ref.length) +
           ") is outside the Strings section (" + std::to_string(strings.size()) + " bytes)");
    }
  }

  void check_id(uint32_t id, size_t count, bool none_allowed, const std::string& what) const {
    if (id == format::kNone) {
      if (!none_allowed) fail(what + " is missing (none)");
      return;
    }
    if (id >= count) fail(what + " is " + std::to_string(id) + ", only " + std::to_string(count) + " exist");
  }

  static std::string hex(uint32_t value) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string text = "0x";
    for (int shift = 28; shift >= 0; shift -= 4) text += kDigits[(value >> shift) & 0xFu];
    return text;
  }

 private:
  std::span<const uint8_t> file_;
  std::string prefix_;
};

bool known_activation(format::Activation activation) {
  return static_cast<uint32_t>(activation) <= static_cast<uint32_t>(format::Activation::Softmax);
}

void check_preprocess(const Validator& validator, const format::Preprocess& preprocess, size_t tensor_count) {
  const auto fail = [&](const std::string& message) { validator.fail("preprocess: " + message); };
  if (preprocess.height < 1 || preprocess.height > kMaxImageSide || preprocess.width < 1 ||
      preprocess.width > kMaxImageSide) {
    fail("input size " + std::to_string(preprocess.height) + "x" + std::to_string(preprocess.width) +
         " is outside 1.." + std::to_string(kMaxImageSide));
  }
  if (preprocess.channels != 1 && preprocess.channels != 3) {
    fail(std::to_string(preprocess.channels) + " channels, expected 1 or 3");
  }
  if (preprocess.resize != format::ResizeFilter::Lanczos3) {
    fail("unknown resize filter " + std::to_string(static_cast<uint32_t>(preprocess.resize)));
  }
  for (size_t c = 0; c < 4; ++c) {
    if (!std::isfinite(preprocess.scale[c]) || !std::isfinite(preprocess.offset[c])) {
      fail("scale or offset of channel " + std::to_string(c) + " is not finite");
    }
  }
  validator.check_id(preprocess.input_tensor, tensor_count, false, "preprocess: input tensor");
  validator.check_id(preprocess.output_tensor, tensor_count, false, "preprocess: output tensor");
}

// Stored bytes implied by a record's dims, dtype and layout; throws through `validator` on overflow.
uint64_t implied_byte_size(const Validator& validator, const format::WeightRecord& record, const std::string& what) {
  const uint32_t* dims = record.dims;
  size_t elements = 0;
  try {
    switch (record.layout) {
      case format::WeightLayout::Vector: elements = dims[0]; break;
      case format::WeightLayout::BlockedOHWI:
        elements = format::blocked_ohwi_elements(dims[0], dims[1], dims[2], dims[3]);
        break;
      case format::WeightLayout::DepthwiseHWC: elements = format::depthwise_hwc_elements(dims[0], dims[1], dims[2]); break;
    }
  } catch (const Error&) {
    validator.fail(what + ": dims overflow");
  }
  const uint64_t element_size = record.dtype == format::DType::F16 ? 2 : 4;
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(uint64_t{elements}, element_size, &bytes)) validator.fail(what + ": dims overflow");
  return bytes;
}

}  // namespace

ModelFile::Mapping::Mapping(Mapping&& other) noexcept
    : address_(std::exchange(other.address_, nullptr)), size_(std::exchange(other.size_, 0)) {}

ModelFile::Mapping& ModelFile::Mapping::operator=(Mapping&& other) noexcept {
  if (this != &other) {
    if (address_ != nullptr) ::munmap(address_, size_);
    address_ = std::exchange(other.address_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

ModelFile::Mapping::~Mapping() {
  if (address_ != nullptr) ::munmap(address_, size_);
}

ModelFile ModelFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + errno_text(errno), ErrorCode::Io);
  struct stat status {};
  if (::fstat(fd, &status) != 0) {
    const int error = errno;
    ::close(fd);
    throw Error(path + ": cannot stat: " + errno_text(error), ErrorCode::Io);
  }
  if (!S_ISREG(status.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file");
  }
  const auto size = static_cast<size_t>(status.st_size);
  if (size == 0) {  // mmap rejects an empty length; report it like any other bad file
    ::close(fd);
    throw Error(path + ": empty file (0 bytes)");
  }
  void* address = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  const int map_error = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (address == MAP_FAILED) throw Error(path + ": cannot mmap: " + errno_text(map_error));

  ModelFile file;
  file.mapping_ = Mapping(address, size);
  file.load({static_cast<const uint8_t*>(address), size}, path);
  return file;
}

ModelFile ModelFile::from_bytes(std::span<const uint8_t> bytes) {
  ModelFile file;
  file.load(bytes, "");
  return file;
}

void ModelFile::load(std::span<const uint8_t> bytes, const std::string& where) {
  using format::WeightLayout;
  const Validator validator(bytes, where);
  const format::FileHeader header = validator.check_header();
  const auto sections = validator.check_sections(validator.check_section_table(header));
  const auto section = [&](SectionKind kind) { return sections[static_cast<uint32_t>(kind) - 1]; };

  const auto strings = section(SectionKind::Strings);
  const std::string_view strings_view(reinterpret_cast<const char*>(strings.data()), strings.size());
  const auto preprocess = validator.check_records<format::Preprocess>(section(SectionKind::Preprocess),
                                                                      SectionKind::Preprocess);
  if (preprocess.size() != 1) {
    validator.fail("section Preprocess has " + std::to_string(preprocess.size()) + " records, expected 1");
  }
  const auto tensors =
      validator.check_records<format::ActivationTensor>(section(SectionKind::Tensors), SectionKind::Tensors);
  const auto ops = validator.check_records<format::Op>(section(SectionKind::Ops), SectionKind::Ops);
  const auto taps = validator.check_records<format::Tap>(section(SectionKind::Taps), SectionKind::Taps);
  const auto labels = validator.check_records<format::StringRef>(section(SectionKind::Labels), SectionKind::Labels);
  const auto weight_records =
      validator.check_records<format::WeightRecord>(section(SectionKind::WeightTable), SectionKind::WeightTable);
  const auto weights = section(SectionKind::Weights);

  check_preprocess(validator, preprocess[0], tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    validator.check_string(tensors[i].name, strings_view, "tensor " + std::to_string(i));
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    validator.check_string(labels[i], strings_view, "label " + std::to_string(i));
  }

  std::optional<format::DType> kernel_dtype;
  for (size_t i = 0; i < weight_records.size(); ++i) {
    const format::WeightRecord& record = weight_records[i];
    std::string what = "weight " + std::to_string(i);
    validator.check_string(record.name, strings_view, what);
    what += " (" + std::string(strings_view.substr(record.name.offset, record.name.length)) + ")";
    if (record.dtype != format::DType::F32 && record.dtype != format::DType::F16) {
      validator.fail(what + ": unknown dtype " + std::to_string(static_cast<uint32_t>(record.dtype)));
    }
    const auto layout = static_cast<uint32_t>(record.layout);
    if (layout < static_cast<uint32_t>(WeightLayout::Vector) ||
        layout > static_cast<uint32_t>(WeightLayout::DepthwiseHWC)) {
      validator.fail(what + ": unknown layout " + std::to_string(layout));
    }
    // Dims beyond the layout's logical ones must be 1.
    const size_t used_dims = record.layout == WeightLayout::Vector         ? 1
                             : record.layout == WeightLayout::DepthwiseHWC ? 3
                                                                           : 4;
    for (size_t d = 0; d < 4; ++d) {
      const uint32_t dim = record.dims[d];
      if (d >= used_dims ? dim != 1 : (dim == 0 || dim > kMaxWeightDim)) {
        validator.fail(what + ": dim " + std::to_string(d) + " is " + std::to_string(dim) +
                       (d >= used_dims ? ", unused dims must be 1" : ", expected 1.." + std::to_string(kMaxWeightDim)));
      }
    }
    if (record.layout == WeightLayout::Vector) {
      if (record.dtype != format::DType::F32) validator.fail(what + ": a Vector weight must be F32");
    } else if (kernel_dtype.value_or(record.dtype) != record.dtype) {
      validator.fail(what + ": kernels of different dtypes in one file");
    } else {
      kernel_dtype = record.dtype;
    }
    const uint64_t implied = implied_byte_size(validator, record, what);
    if (record.byte_size != implied) {
      validator.fail(what + ": byte_size " + std::to_string(record.byte_size) + " does not match its dims (" +
                     std::to_string(implied) + " bytes)");
    }
    if (record.offset % format::kTensorAlignment != 0) {
      validator.fail(what + ": offset " + std::to_string(record.offset) + " is not " +
                     std::to_string(format::kTensorAlignment) + "-byte aligned");
    }
    uint64_t end = 0;
    if (__builtin_add_overflow(record.offset, record.byte_size, &end) || end > weights.size()) {
      validator.fail(what + ": bytes at offset " + std::to_string(record.offset) + ", size " +
                     std::to_string(record.byte_size) + " run past the Weights section (" +
                     std::to_string(weights.size()) + " bytes)");
    }
  }

  for (size_t i = 0; i < ops.size(); ++i) {
    const format::Op& op = ops[i];
    std::string what = "op " + std::to_string(i);
    validator.check_string(op.name, strings_view, what);
    what += " (" + std::string(strings_view.substr(op.name.offset, op.name.length)) + ")";
    const auto kind = static_cast<uint32_t>(op.kind);
    if (kind < static_cast<uint32_t>(format::OpKind::Conv) || kind > static_cast<uint32_t>(format::OpKind::Reshape)) {
      validator.fail(what + ": unknown op kind " + std::to_string(kind));
    }
    if (!known_activation(op.activation) || !known_activation(op.activation2)) {
      validator.fail(what + ": unknown activation " +
                     std::to_string(static_cast<uint32_t>(known_activation(op.activation) ? op.activation2
                                                                                          : op.activation)));
    }
    if (op.padding != format::Padding::Valid && op.padding != format::Padding::Same) {
      validator.fail(what + ": unknown padding " + std::to_string(static_cast<uint32_t>(op.padding)));
    }
    if (std::isnan(op.act_max)) validator.fail(what + ": act_max is NaN");
    for (uint32_t k = 0; k < format::kMaxOpInputs; ++k) {
      validator.check_id(op.inputs[k], tensors.size(), k > 0, what + ": input " + std::to_string(k) + " tensor");
    }
    for (uint32_t k = 0; k < format::kMaxOpOutputs; ++k) {
      validator.check_id(op.outputs[k], tensors.size(), k > 0, what + ": output " + std::to_string(k) + " tensor");
    }
    const std::pair<uint32_t, const char*> weight_ids[] = {
        {op.weight, "weight"}, {op.bias, "bias"}, {op.weight2, "weight2"}, {op.bias2, "bias2"}};
    for (const auto& [id, field] : weight_ids) {
      validator.check_id(id, weight_records.size(), true, what + ": " + field + " id");
    }
  }

  for (size_t i = 0; i < taps.size(); ++i) {
    const format::Tap& tap = taps[i];
    const std::string what = "tap " + std::to_string(i);
    validator.check_string(tap.layer, strings_view, what + " layer");
    validator.check_string(tap.class_name, strings_view, what + " class");
    const auto kind = static_cast<uint32_t>(tap.kind);
    if (kind < static_cast<uint32_t>(format::TapKind::Output) ||
        kind > static_cast<uint32_t>(format::TapKind::SecondOutput)) {
      validator.fail(what + ": unknown tap kind " + std::to_string(kind));
    }
    validator.check_id(tap.op, ops.size(), false, what + ": op");
    validator.check_id(tap.scale, weight_records.size(), true, what + ": scale id");
    validator.check_id(tap.shift, weight_records.size(), true, what + ": shift id");
  }

  bytes_ = bytes;
  version_ = header.version;
  preprocess_ = &preprocess[0];
  tensors_ = tensors;
  ops_ = ops;
  taps_ = taps;
  weight_records_ = weight_records;
  labels_ = labels;
  strings_ = strings_view;
  const auto metadata = section(SectionKind::Metadata);
  metadata_json_ = std::string_view(reinterpret_cast<const char*>(metadata.data()), metadata.size());
  weights_ = weights;
  kernel_dtype_ = kernel_dtype.value_or(format::DType::F32);
}

std::string_view ModelFile::string(format::StringRef ref) const {
  if (uint64_t{ref.offset} + ref.length > strings_.size()) throw Error("string reference outside the Strings section");
  return strings_.substr(ref.offset, ref.length);
}

const void* ModelFile::weight_data(uint32_t id) const {
  if (id >= weight_records_.size()) {
    throw Error("weight id " + std::to_string(id) + " out of range (" + std::to_string(weight_records_.size()) +
                " weights)");
  }
  return weights_.data() + weight_records_[id].offset;
}

}  // namespace effcam
