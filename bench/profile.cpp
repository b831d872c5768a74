#include "bench/profile.h"

#include <algorithm>

#include "bench/stats.h"
#include "effcam/error.hpp"

namespace effcam::bench {

using format::OpKind;

const char* op_kind_name(OpKind kind) {
  switch (kind) {
    case OpKind::Conv: return "Conv";
    case OpKind::Depthwise: return "Depthwise";
    case OpKind::SqueezeExcite: return "SqueezeExcite";
    case OpKind::Dense: return "Dense";
    case OpKind::ChannelAffine: return "ChannelAffine";
    case OpKind::Add: return "Add";
    case OpKind::Multiply: return "Multiply";
    case OpKind::GlobalAvgPool: return "GlobalAvgPool";
    case OpKind::MaxPool: return "MaxPool";
    case OpKind::AvgPool: return "AvgPool";
    case OpKind::ZeroPad: return "ZeroPad";
    case OpKind::Reshape: return "Reshape";
  }
  return "unknown";
}

double gflops(uint64_t multiply_adds, double ms) {
  return ms > 0 ? 2.0 * static_cast<double>(multiply_adds) / (ms * 1e6) : 0.0;
}

Profile summarize_profile(const engine::Model& model, std::span<const double> op_ms, size_t runs) {
  const std::span<const format::Op> ops = model.file().ops();
  if (runs == 0 || op_ms.size() != runs * ops.size()) {
    throw Error("a profile needs " + std::to_string(ops.size()) + " op times per run, got " +
                std::to_string(op_ms.size()) + " values for " + std::to_string(runs) + " runs");
  }
  Profile profile;
  std::vector<double> samples(runs);
  for (uint32_t i = 0; i < ops.size(); ++i) {
    for (size_t r = 0; r < runs; ++r) samples[r] = op_ms[r * ops.size() + i];
    OpProfile op;
    op.index = i;
    op.kind = ops[i].kind;
    op.name = model.file().string(ops[i].name);
    op.output = model.graph().ops[i].output;
    op.ms = median(samples);
    op.multiply_adds = op_multiply_adds(ops[i], model.graph().ops[i]);
    profile.total_ms += op.ms;

    auto kind = std::find_if(profile.kinds.begin(), profile.kinds.end(),
                             [&](const KindProfile& k) { return k.kind == op.kind; });
    if (kind == profile.kinds.end()) kind = profile.kinds.insert(kind, KindProfile{op.kind, 0, 0, 0, 0});
    kind->count += 1;
    kind->ms += op.ms;
    kind->multiply_adds += op.multiply_adds;
    profile.ops.push_back(std::move(op));
  }
  for (OpProfile& op : profile.ops) op.share = profile.total_ms > 0 ? op.ms / profile.total_ms : 0;
  for (KindProfile& kind : profile.kinds) kind.share = profile.total_ms > 0 ? kind.ms / profile.total_ms : 0;
  std::stable_sort(profile.ops.begin(), profile.ops.end(), [](const OpProfile& a, const OpProfile& b) { return a.ms > b.ms; });
  std::stable_sort(profile.kinds.begin(), profile.kinds.end(),
                   [](const KindProfile& a, const KindProfile& b) { return a.ms > b.ms; });
  return profile;
}

}  // namespace effcam::bench
