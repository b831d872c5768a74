#include "engine/op_args.h"

namespace effcam::engine {

ops::WeightView weight_view(const ModelFile& file, uint32_t id) {
  return {file.weight_data(id), file.weight_records()[id].dtype == format::DType::F16};
}

namespace {
// The window every windowed op's arguments have: spatial shapes, kernel size, strides and leading padding.
template <class Args>
void set_window(Args& a, const format::Op& op, const OpGeometry& g) {
  a.in_h = g.input.h;
  a.in_w = g.input.w;
  a.out_h = g.output.h;
  a.out_w = g.output.w;
  a.kh = op.kernel_h;
  a.kw = op.kernel_w;
  a.stride_h = op.stride_h;
  a.stride_w = op.stride_w;
  a.pad_top = g.pad_top;
  a.pad_left = g.pad_left;
}

// The fields ConvArgs and DepthwiseArgs share: the window and channels (and the kernel, when a file is given).
template <class Args>
Args window_args(const ModelFile* file, const format::Op& op, const OpGeometry& g) {
  Args a;
  set_window(a, op, g);
  a.cin = g.input.c;
  a.cout = g.output.c;
  if (file) a.kernel = weight_view(*file, op.weight);
  return a;
}
}  // namespace

ops::ConvArgs conv_args(const ModelFile& file, const format::Op& op, const OpGeometry& geometry) {
  return window_args<ops::ConvArgs>(&file, op, geometry);
}

ops::ConvArgs conv_shape_args(const format::Op& op, const OpGeometry& geometry) {
  return window_args<ops::ConvArgs>(nullptr, op, geometry);
}

ops::DepthwiseArgs depthwise_args(const ModelFile& file, const format::Op& op, const OpGeometry& geometry) {
  return window_args<ops::DepthwiseArgs>(&file, op, geometry);
}

ops::PoolArgs pool_args(const format::Op& op, const OpGeometry& geometry) {
  ops::PoolArgs a;
  set_window(a, op, geometry);
  a.channels = geometry.input.c;
  return a;
}

ops::GradientWrite input_gradient_write(const BackwardCall& call) {
  return call.overwrite_input_gradient ? ops::GradientWrite::Overwrite : ops::GradientWrite::Accumulate;
}

}  // namespace effcam::engine
