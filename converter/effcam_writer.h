// Builds the contents of a .effcam file in memory and writes it (see format/format.h, docs/file-format.md).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "format/format.h"

namespace effcam::converter {

class EffcamBuilder {
 public:
  explicit EffcamBuilder(format::DType kernel_dtype);

  format::DType kernel_dtype() const { return kernel_dtype_; }

  // Interns a string in the Strings section.
  format::StringRef add_string(std::string_view text);

  // Weights. Each returns the weight id. Values are fp32 in Keras' own layout; the builder packs them
  // into the kernel layout and casts kernels to kernel_dtype (round to nearest even). Vectors stay fp32.
  uint32_t add_vector(std::string_view name, std::span<const float> values);
  // Conv2D kernel in Keras layout (kh, kw, cin, cout) -> BlockedOHWI.
  uint32_t add_conv_kernel(std::string_view name, std::span<const float> hwio, uint32_t kh, uint32_t kw,
                           uint32_t cin, uint32_t cout);
  // Dense kernel in Keras layout (in, units) -> BlockedOHWI with KH = KW = 1.
  uint32_t add_dense_kernel(std::string_view name, std::span<const float> io, uint32_t in, uint32_t units);
  // DepthwiseConv2D kernel in Keras layout (kh, kw, cin, multiplier) -> DepthwiseHWC.
  uint32_t add_depthwise_kernel(std::string_view name, std::span<const float> hwcm, uint32_t kh, uint32_t kw,
                                uint32_t cin, uint32_t multiplier);

  // Graph. Tensor ids and op order are the caller's; the builder only stores them.
  uint32_t add_tensor(std::string_view keras_name);
  void add_op(const format::Op& op);
  void add_tap(const format::Tap& tap);
  void set_preprocess(const format::Preprocess& preprocess);
  void set_labels(const std::vector<std::string>& labels);
  void set_metadata_json(std::string json);

  size_t tensor_count() const { return tensors_.size(); }
  const std::vector<format::Op>& ops() const { return ops_; }
  std::vector<format::Op>& mutable_ops() { return ops_; }
  const std::vector<format::Tap>& taps() const { return taps_; }
  const std::vector<format::WeightRecord>& weight_records() const { return weights_; }

  // Serializes everything (header, section table with CRC-32C checksums, sections, aligned weights).
  std::vector<uint8_t> serialize() const;
  // serialize() + write to `path` via a temporary file and rename, so a failed write never leaves a
  // partial file behind. Returns the number of bytes written.
  uint64_t write(const std::string& path) const;

 private:
  uint32_t add_weight(std::string_view name, format::DType dtype, format::WeightLayout layout,
                      const uint32_t (&dims)[4], std::vector<uint8_t> bytes);

  format::DType kernel_dtype_;
  std::string strings_;
  std::map<std::string, format::StringRef, std::less<>> interned_;  // strings_ contents, deduplicated
  std::vector<format::ActivationTensor> tensors_;
  std::vector<format::Op> ops_;
  std::vector<format::Tap> taps_;
  std::vector<format::StringRef> labels_;
  std::vector<format::WeightRecord> weights_;
  std::vector<uint8_t> weight_bytes_;  // the Weights section, tensors at kTensorAlignment offsets
  format::Preprocess preprocess_{};
  std::string metadata_json_;
};

}  // namespace effcam::converter
