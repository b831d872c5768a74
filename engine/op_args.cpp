#include "engine/op_args.h"

namespace effcam {

ops::WeightView weight_view(const ModelFile& file, uint32_t id) {
  return {file.weight_data(id), file.weight_records()[id].dtype == format::DType::F16};
}

namespace {
// The fields ConvArgs and DepthwiseArgs share.
template <class Args>
Args window_args(const ModelFile& file, const format::Op& op, const OpGeometry& g) {
  Args a;
  a.in_h = g.input.h;
  a.in_w = g.input.w;
  a.cin = g.input.c;
  a.out_h = g.output.h;
  a.out_w = g.output.w;
  a.cout = g.output.c;
  a.kh = op.kernel_h;
  a.kw = op.kernel_w;
  a.stride_h = op.stride_h;
  a.stride_w = op.stride_w;
  a.pad_top = g.pad_top;
  a.pad_left = g.pad_left;
  a.kernel = weight_view(file, op.weight);
  return a;
}
}  // namespace

ops::ConvArgs conv_args(const ModelFile& file, const format::Op& op, const OpGeometry& geometry) {
  return window_args<ops::ConvArgs>(file, op, geometry);
}

ops::DepthwiseArgs depthwise_args(const ModelFile& file, const format::Op& op, const OpGeometry& geometry) {
  return window_args<ops::DepthwiseArgs>(file, op, geometry);
}

}  // namespace effcam
