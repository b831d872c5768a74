#include "bench/profile.h"

#include <algorithm>

#include "bench/stats.h"
#include "effcam/error.hpp"
#include "engine/op_table.h"

namespace effcam::bench {

using format::OpKind;

const char* op_kind_name(OpKind kind) {
  const engine::OpDefinition* definition = engine::find_op_definition(kind);
  return definition ? definition->name : "unknown";
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
    op.multiply_adds = engine::op_multiply_adds(ops[i], model.graph().ops[i]);
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

CamProfile summarize_cam_profile(const engine::Model& model, std::span<const engine::ExplainStep> steps,
                                 std::span<const double> step_ms, size_t runs) {
  if (runs == 0 || step_ms.size() != runs * steps.size()) {
    throw Error("a CAM profile needs " + std::to_string(steps.size()) + " step times per run, got " +
                std::to_string(step_ms.size()) + " values for " + std::to_string(runs) + " runs");
  }
  const std::span<const format::Op> ops = model.file().ops();
  CamProfile profile;
  std::vector<double> samples(runs);
  for (size_t k = 0; k < steps.size(); ++k) {
    for (size_t r = 0; r < runs; ++r) samples[r] = step_ms[r * steps.size() + k];
    const double ms = median(samples);
    const format::Op& op = ops[steps[k].op];
    std::string kind = op_kind_name(op.kind);
    if (op.kind == OpKind::Conv) kind += op.kernel_h == 1 && op.kernel_w == 1 ? " 1x1" : " KxK";
    auto group = std::find_if(profile.groups.begin(), profile.groups.end(), [&](const CamStepProfile& g) {
      return g.backward == steps[k].backward && g.kind == kind;
    });
    if (group == profile.groups.end()) group = profile.groups.insert(group, CamStepProfile{steps[k].backward, kind});
    group->count += 1;
    group->ms += ms;
    profile.total_ms += ms;
  }
  for (CamStepProfile& group : profile.groups) group.share = profile.total_ms > 0 ? group.ms / profile.total_ms : 0;
  std::stable_sort(profile.groups.begin(), profile.groups.end(),
                   [](const CamStepProfile& a, const CamStepProfile& b) { return a.ms > b.ms; });
  return profile;
}

}  // namespace effcam::bench
