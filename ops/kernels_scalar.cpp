// The kernels for SSE2 (the x86-64 baseline; fp16 widened with integer SSE2). Compiled without extra -m flags.
#include "ops/kernels_simd.h"

namespace effcam::ops::detail {

const KernelTable& scalar_kernels() {
  static constexpr KernelTable table = make_kernel_table<xsimd::sse2>();
  return table;
}

}  // namespace effcam::ops::detail
