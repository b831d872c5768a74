// The kernels for AVX2 + FMA + F16C. ops/CMakeLists.txt compiles this file with the matching -m flags.
#include "ops/kernels_simd.h"

namespace effcam::ops::detail {

const KernelTable& avx2_kernels() {
  static constexpr KernelTable table = make_kernel_table<xsimd::fma3<xsimd::avx2>>();
  return table;
}

}  // namespace effcam::ops::detail
