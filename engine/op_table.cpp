#include "engine/op_table.h"

#include <array>
#include <string>

#include "effcam/error.hpp"
#include "engine/op/definitions.h"

namespace effcam::engine {
namespace {

// Indexed by format::OpKind (1-based in the file; slot 0 is unused).
constexpr std::array<const OpDefinition*, 13> kTable = {
    nullptr,
    &op::kConv,           // OpKind::Conv = 1
    &op::kDepthwise,      // OpKind::Depthwise = 2
    &op::kSqueezeExcite,  // OpKind::SqueezeExcite = 3
    &op::kDense,          // OpKind::Dense = 4
    &op::kChannelAffine,  // OpKind::ChannelAffine = 5
    &op::kAdd,            // OpKind::Add = 6
    &op::kMultiply,       // OpKind::Multiply = 7
    &op::kGlobalAvgPool,  // OpKind::GlobalAvgPool = 8
    &op::kMaxPool,        // OpKind::MaxPool = 9
    &op::kAvgPool,        // OpKind::AvgPool = 10
    &op::kZeroPad,        // OpKind::ZeroPad = 11
    &op::kReshape,        // OpKind::Reshape = 12
};
static_assert(static_cast<size_t>(format::OpKind::Reshape) + 1 == kTable.size(), "one row per op kind");

}  // namespace

const OpDefinition* find_op_definition(format::OpKind kind) {
  const auto index = static_cast<uint32_t>(kind);
  return index < kTable.size() ? kTable[index] : nullptr;
}

const OpDefinition& op_definition(format::OpKind kind) {
  const OpDefinition* definition = find_op_definition(kind);
  if (!definition) throw Error("unknown op kind " + std::to_string(static_cast<uint32_t>(kind)));
  return *definition;
}

}  // namespace effcam::engine
