// The activation of a file's op as the kernels name it (ops::Activation mirrors format::Activation's values).
#pragma once

#include "engine/format.h"
#include "ops/kernels.h"

namespace effcam {

inline ops::Activation kernel_activation(format::Activation act) {
  return static_cast<ops::Activation>(static_cast<uint32_t>(act));
}

// The activation at an op's output: a squeeze-excite op's gate activation is its second one.
inline format::Activation output_activation(const format::Op& op) {
  return op.kind == format::OpKind::SqueezeExcite ? op.activation2 : op.activation;
}

}  // namespace effcam
