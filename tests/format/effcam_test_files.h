// Shared by the format tests and the fuzz harness: a small but complete model built through the writer,
// and tools to look inside serialized .effcam bytes.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "converter/effcam_writer.h"
#include "format/checksum.h"
#include "format/format.h"

namespace effcam::test {

inline std::vector<float> random_values(size_t count, uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> distribution(-2.0f, 2.0f);
  std::vector<float> values(count);
  for (float& value : values) value = distribution(generator);
  return values;
}

// Every section non-empty: six tensors, four ops (conv, depthwise with a mean output, pool, dense),
// one weight of each layout, taps, labels, metadata.
struct SmallModel {
  std::vector<float> conv = random_values(3 * 3 * 3 * 20, 21);  // kh kw cin cout
  std::vector<float> depthwise = random_values(3 * 3 * 20 * 2, 22);
  std::vector<float> dense = random_values(40 * 5, 23);
  std::vector<float> bias = random_values(20, 24);
  std::vector<float> dense_bias = random_values(5, 25);
  std::vector<std::string> labels = {"apple pie", "baby back ribs", "baklava", "", "beef carpaccio"};
  std::string metadata = R"({"source_format": "test", "keras_version": ""})";
  converter::EffcamBuilder builder;
  uint32_t conv_id, depthwise_id, dense_id, bias_id, dense_bias_id;

  explicit SmallModel(format::DType dtype) : builder(dtype) {
    const uint32_t input = builder.add_tensor("input_layer");
    const uint32_t stem = builder.add_tensor("stem_conv");
    const uint32_t dw = builder.add_tensor("block1a_dwconv");
    const uint32_t mean = builder.add_tensor("block1a_se_squeeze");
    const uint32_t pooled = builder.add_tensor("avg_pool");
    const uint32_t logits = builder.add_tensor("predictions");
    conv_id = builder.add_conv_kernel("model/stem_conv/kernel", conv, 3, 3, 3, 20);
    bias_id = builder.add_vector("model/stem_conv/bias", bias);
    depthwise_id = builder.add_depthwise_kernel("model/block1a_dwconv/kernel", depthwise, 3, 3, 20, 2);
    dense_id = builder.add_dense_kernel("model/predictions/kernel", dense, 40, 5);
    dense_bias_id = builder.add_vector("model/predictions/bias", dense_bias);

    format::Op conv_op{};
    conv_op.kind = format::OpKind::Conv;
    conv_op.activation = format::Activation::Swish;
    conv_op.padding = format::Padding::Same;
    conv_op.name = builder.add_string("stem_conv");
    conv_op.inputs[0] = input;
    conv_op.inputs[1] = conv_op.inputs[2] = format::kNone;
    conv_op.outputs[0] = stem;
    conv_op.outputs[1] = format::kNone;
    conv_op.kernel_h = conv_op.kernel_w = 3;
    conv_op.stride_h = conv_op.stride_w = 2;
    conv_op.weight = conv_id;
    conv_op.bias = bias_id;
    conv_op.weight2 = conv_op.bias2 = format::kNone;
    conv_op.out_channels = 20;
    conv_op.act_max = std::numeric_limits<float>::infinity();
    builder.add_op(conv_op);

    format::Op dw_op = conv_op;
    dw_op.kind = format::OpKind::Depthwise;
    dw_op.name = builder.add_string("block1a_dwconv");
    dw_op.inputs[0] = stem;
    dw_op.outputs[0] = dw;
    dw_op.outputs[1] = mean;
    dw_op.stride_h = dw_op.stride_w = 1;
    dw_op.weight = depthwise_id;
    dw_op.bias = format::kNone;
    dw_op.out_channels = 40;
    builder.add_op(dw_op);

    format::Op pool_op{};
    pool_op.kind = format::OpKind::GlobalAvgPool;
    pool_op.name = builder.add_string("avg_pool");
    pool_op.inputs[0] = dw;
    pool_op.inputs[1] = pool_op.inputs[2] = format::kNone;
    pool_op.outputs[0] = pooled;
    pool_op.outputs[1] = format::kNone;
    pool_op.weight = pool_op.bias = pool_op.weight2 = pool_op.bias2 = format::kNone;
    builder.add_op(pool_op);

    format::Op dense_op = pool_op;
    dense_op.kind = format::OpKind::Dense;
    dense_op.activation = format::Activation::Softmax;
    dense_op.name = builder.add_string("predictions");
    dense_op.inputs[0] = pooled;
    dense_op.outputs[0] = logits;
    dense_op.weight = dense_id;
    dense_op.bias = dense_bias_id;
    dense_op.out_channels = 5;
    builder.add_op(dense_op);

    format::Tap tap{builder.add_string("stem_bn"), builder.add_string("BatchNormalization"),
                    format::TapKind::BeforeActivation, 0, format::kNone, format::kNone};
    builder.add_tap(tap);
    tap = {builder.add_string("stem_conv"), builder.add_string("Conv2D"), format::TapKind::BeforeAffine, 0, bias_id,
           bias_id};
    builder.add_tap(tap);

    format::Preprocess preprocess{};
    preprocess.height = preprocess.width = 224;
    preprocess.channels = 3;
    preprocess.resize = format::ResizeFilter::Lanczos3;
    for (int c = 0; c < 3; ++c) {
      preprocess.scale[c] = 1.0f / 255.0f;
      preprocess.offset[c] = -0.5f;
    }
    preprocess.input_tensor = input;
    preprocess.output_tensor = logits;
    builder.set_preprocess(preprocess);
    builder.set_labels(labels);
    builder.set_metadata_json(metadata);
  }
};

// The section table of serialized bytes; empty when the header or the table is not inside `file`.
inline std::vector<format::SectionEntry> section_table(std::span<const uint8_t> file) {
  if (file.size() < sizeof(format::FileHeader)) return {};
  format::FileHeader header;
  std::memcpy(&header, file.data(), sizeof header);
  if (header.section_count == 0 ||
      header.section_count > (file.size() - sizeof header) / sizeof(format::SectionEntry)) {
    return {};
  }
  std::vector<format::SectionEntry> table(header.section_count);
  std::memcpy(table.data(), file.data() + sizeof header, table.size() * sizeof(format::SectionEntry));
  return table;
}

// Recomputes the checksum of every section inside the file and then the header checksum, so tampered bytes
// reach the structural checks behind them. Leaves files whose header or table is cut off unchanged.
inline void reseal(std::vector<uint8_t>& file) {
  auto table = section_table(file);
  if (table.empty()) return;
  for (auto& entry : table) {
    if (entry.offset <= file.size() && entry.size <= file.size() - entry.offset) {
      entry.checksum = crc32c(std::span<const uint8_t>(file).subspan(entry.offset, entry.size));
    }
  }
  format::FileHeader header;
  std::memcpy(&header, file.data(), sizeof header);
  header.header_checksum = 0;
  const std::span<const uint8_t> table_bytes(reinterpret_cast<const uint8_t*>(table.data()),
                                             table.size() * sizeof(format::SectionEntry));
  header.header_checksum = crc32c(table_bytes, crc32c({reinterpret_cast<const uint8_t*>(&header), sizeof header}));
  std::memcpy(file.data(), &header, sizeof header);
  std::memcpy(file.data() + sizeof header, table_bytes.data(), table_bytes.size());
}

}  // namespace effcam::test
