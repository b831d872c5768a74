// A validated .effcam file, viewed in place: records and weights are read straight from the mapped bytes.
// Validation is structural (docs/file-format.md, "What the loader validates"); graph semantics are the engine's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "format/format.h"

namespace effcam {

class ModelFile {
 public:
  // Maps `path` read-only and shared (page cache shared between processes), then validates it.
  // Throws effcam::Error, with a one-line message starting with the path, on any structural problem.
  static ModelFile open(const std::string& path);
  // Validates caller-owned bytes and views them without copying; they must outlive the ModelFile and start
  // 8-byte aligned (any new/malloc buffer is).
  static ModelFile from_bytes(std::span<const uint8_t> bytes);

  ModelFile(ModelFile&&) noexcept = default;
  ModelFile& operator=(ModelFile&&) noexcept = default;
  ModelFile(const ModelFile&) = delete;
  ModelFile& operator=(const ModelFile&) = delete;
  ~ModelFile() = default;

  uint32_t version() const { return version_; }
  uint64_t file_size() const { return bytes_.size(); }
  std::span<const uint8_t> bytes() const { return bytes_; }
  uint64_t weight_bytes() const { return weights_.size(); }  // the Weights section

  const format::Preprocess& preprocess() const { return *preprocess_; }
  std::span<const format::ActivationTensor> tensors() const { return tensors_; }
  std::span<const format::Op> ops() const { return ops_; }
  std::span<const format::Tap> taps() const { return taps_; }
  std::span<const format::WeightRecord> weight_records() const { return weight_records_; }
  std::span<const format::StringRef> labels() const { return labels_; }
  std::string_view metadata_json() const { return metadata_json_; }

  // Every StringRef in a validated file is inside the Strings section.
  std::string_view string(format::StringRef ref) const;
  // Start of weight `id`'s stored bytes (64-byte aligned within the file); throws on a bad id.
  const void* weight_data(uint32_t id) const;
  // The dtype of the kernels (non-Vector weights); F32 when the file has none.
  format::DType kernel_dtype() const { return kernel_dtype_; }

 private:
  class Mapping {  // an owned read-only mmap
   public:
    Mapping() = default;
    Mapping(void* address, size_t size) : address_(address), size_(size) {}
    Mapping(Mapping&& other) noexcept;
    Mapping& operator=(Mapping&& other) noexcept;
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    ~Mapping();

   private:
    void* address_ = nullptr;
    size_t size_ = 0;
  };

  ModelFile() = default;
  // Validates `bytes` (see docs/file-format.md) and points the views into them. `where` prefixes errors.
  void load(std::span<const uint8_t> bytes, const std::string& where);

  Mapping mapping_;  // empty when viewing caller-owned bytes
  std::span<const uint8_t> bytes_;
  uint32_t version_ = 0;
  const format::Preprocess* preprocess_ = nullptr;
  std::span<const format::ActivationTensor> tensors_;
  std::span<const format::Op> ops_;
  std::span<const format::Tap> taps_;
  std::span<const format::WeightRecord> weight_records_;
  std::span<const format::StringRef> labels_;
  std::string_view strings_;
  std::string_view metadata_json_;
  std::span<const uint8_t> weights_;
  format::DType kernel_dtype_ = format::DType::F32;
};

}  // namespace effcam
