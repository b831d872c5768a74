// The kernels for AVX-512 (F/BW/DQ/VL) + F16C. ops/CMakeLists.txt compiles this file with the matching -m flags.
#include "ops/kernels_simd.h"

namespace effcam::ops::detail {

const KernelTable& avx512_kernels() {
  static constexpr KernelTable table = make_kernel_table<xsimd::avx512bw>();
  return table;
}

}  // namespace effcam::ops::detail
