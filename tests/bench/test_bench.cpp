// The benchmark's building blocks: multiply-add counts, the profiling runs (forward and explanation), profile and
// latency summaries, the FMA peak measurement and argument parsing.
#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "apps/cli.h"
#include "bench/fma_peak.h"
#include "bench/profile.h"
#include "bench/stats.h"
#include "effcam/error.hpp"
#include "engine/model.h"
#include "engine/session.h"
#include "tests/format/effcam_test_files.h"

namespace {

using effcam::format::OpKind;

// SmallModel at 224x224x3: conv 3x3 stride 2 "same" to 112x112x20, depthwise 3x3 (multiplier 2) to 112x112x40,
// global average pool, dense 40 -> 5.
constexpr uint64_t kConvMacs = 112ull * 112 * 20 * (3 * 3 * 3);
constexpr uint64_t kDepthwiseMacs = 112ull * 112 * 40 * (3 * 3);
constexpr uint64_t kDenseMacs = 40ull * 5;

struct LoadedSmallModel {
  std::vector<uint8_t> bytes = effcam::test::SmallModel(effcam::format::DType::F16).builder.serialize();
  effcam::engine::Model model{effcam::ModelFile::from_bytes(bytes)};
};

std::vector<float> pixels(const effcam::engine::Model& model) {
  std::vector<float> values(size_t{model.input_height()} * model.input_width() * model.input_channels());
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>((i * 37) % 256);
  return values;
}

}  // namespace

TEST_CASE("multiply-adds count the kernels of each op and nothing else") {
  const LoadedSmallModel small;
  const auto ops = small.model.file().ops();
  const effcam::Graph& graph = small.model.graph();
  REQUIRE(ops.size() == 4);
  CHECK(effcam::engine::op_multiply_adds(ops[0], graph.ops[0]) == kConvMacs);
  CHECK(effcam::engine::op_multiply_adds(ops[1], graph.ops[1]) == kDepthwiseMacs);
  CHECK(effcam::engine::op_multiply_adds(ops[2], graph.ops[2]) == 0);  // global average pool
  CHECK(effcam::engine::op_multiply_adds(ops[3], graph.ops[3]) == kDenseMacs);
  CHECK(effcam::engine::graph_multiply_adds(ops, graph) == kConvMacs + kDepthwiseMacs + kDenseMacs);
  CHECK_THROWS_AS(effcam::engine::graph_multiply_adds(ops.first(3), graph), effcam::Error);

  // Squeeze-excite: both 1x1 layers, C -> R -> C.
  effcam::format::Op se{};
  se.kind = OpKind::SqueezeExcite;
  se.out_channels = 24;
  effcam::OpGeometry geometry;
  geometry.input = {1, 1, 96};
  geometry.output = {1, 1, 96};
  CHECK(effcam::engine::op_multiply_adds(se, geometry) == 2u * 96 * 24);
}

TEST_CASE("run_profiled computes what run computes and times every op") {
  const LoadedSmallModel small;
  const size_t op_count = small.model.file().ops().size();
  effcam::engine::SessionOptions options;
  effcam::engine::Session session(small.model, options);
  session.set_input_pixels(pixels(small.model));
  session.run();
  const std::vector<float> expected(session.probabilities().begin(), session.probabilities().end());

  std::vector<double> op_ms(op_count, -1.0);
  session.set_input_pixels(pixels(small.model));  // the run may have reused the input's memory
  session.run_profiled(op_ms);
  const std::vector<float> profiled(session.probabilities().begin(), session.probabilities().end());
  CHECK(profiled == expected);
  for (double ms : op_ms) CHECK(ms >= 0.0);
  CHECK(std::accumulate(op_ms.begin(), op_ms.end(), 0.0) > 0.0);

  std::vector<double> too_short(op_count - 1);
  CHECK_THROWS_AS(session.run_profiled(too_short), effcam::Error);
}

TEST_CASE("a profile takes each op's median over the runs and sorts ops and kinds by time") {
  const LoadedSmallModel small;
  // Three runs of the four ops (conv, depthwise, pool, dense), row after row.
  const std::vector<double> op_ms = {1.0, 2.0, 0.5, 0.1,  //
                                     5.0, 0.0, 0.5, 0.3,  //
                                     3.0, 1.0, 0.5, 0.2};
  const effcam::bench::Profile profile = effcam::bench::summarize_profile(small.model, op_ms, 3);
  REQUIRE(profile.ops.size() == 4);
  CHECK(profile.total_ms == doctest::Approx(3.0 + 1.0 + 0.5 + 0.2));
  CHECK(profile.ops[0].index == 0);
  CHECK(profile.ops[0].kind == OpKind::Conv);
  CHECK(profile.ops[0].name == "stem_conv");
  CHECK(profile.ops[0].output == effcam::Shape{112, 112, 20});
  CHECK(profile.ops[0].ms == 3.0);
  CHECK(profile.ops[0].multiply_adds == kConvMacs);
  CHECK(profile.ops[1].index == 1);
  CHECK(profile.ops[1].ms == 1.0);
  CHECK(profile.ops[2].index == 2);
  CHECK(profile.ops[3].index == 3);
  CHECK(profile.ops[3].ms == doctest::Approx(0.2));
  double shares = 0;
  for (const auto& op : profile.ops) shares += op.share;
  CHECK(shares == doctest::Approx(1.0));

  REQUIRE(profile.kinds.size() == 4);
  CHECK(profile.kinds[0].kind == OpKind::Conv);
  CHECK(profile.kinds[0].count == 1);
  CHECK(profile.kinds[3].kind == OpKind::Dense);
  CHECK(profile.kinds[3].multiply_adds == kDenseMacs);

  CHECK_THROWS_AS(effcam::bench::summarize_profile(small.model, op_ms, 2), effcam::Error);
  CHECK_THROWS_AS(effcam::bench::summarize_profile(small.model, op_ms, 0), effcam::Error);
  CHECK(effcam::bench::gflops(500'000'000, 1000.0) == doctest::Approx(1.0));  // 1 GFLOP in 1 s
  CHECK(effcam::bench::op_kind_name(OpKind::SqueezeExcite) == std::string("SqueezeExcite"));
}

TEST_CASE("an explanation's profile times every step and groups the steps by what they do and their op's kind") {
  using effcam::engine::CamScore;
  const LoadedSmallModel small;
  effcam::engine::SessionOptions options;
  options.cam_layer = "stem_conv";
  effcam::engine::Session session(small.model, options);
  const std::vector<effcam::engine::ExplainStep> steps = session.explain_steps();
  REQUIRE(steps.size() >= 4);  // dense, pool, depthwise backward; the target's recovery

  session.set_input_pixels(pixels(small.model));
  session.run();
  const effcam::engine::Explanation plain = session.explain(1, CamScore::Logit);
  const std::vector<float> expected(plain.gradients.begin(), plain.gradients.end());
  session.set_input_pixels(pixels(small.model));
  session.run();
  std::vector<double> step_ms(steps.size(), -1.0);
  const effcam::engine::Explanation timed = session.explain(1, CamScore::Logit, step_ms);
  CHECK(std::vector<float>(timed.gradients.begin(), timed.gradients.end()) == expected);
  for (double ms : step_ms) CHECK(ms >= 0.0);
  std::vector<double> wrong(steps.size() + 1);
  CHECK_THROWS_AS(session.explain(1, CamScore::Logit, wrong), effcam::Error);

  // Three runs: step k takes (k + 1) x (run + 1) ms, so its median is 2 (k + 1).
  std::vector<double> synthetic(3 * steps.size());
  double total = 0;
  for (size_t r = 0; r < 3; ++r)
    for (size_t k = 0; k < steps.size(); ++k) synthetic[r * steps.size() + k] = double(k + 1) * double(r + 1);
  for (size_t k = 0; k < steps.size(); ++k) total += 2.0 * double(k + 1);
  const effcam::bench::CamProfile profile =
      effcam::bench::summarize_cam_profile(small.model, steps, synthetic, 3);
  CHECK(profile.total_ms == doctest::Approx(total));
  uint32_t counted = 0;
  double shares = 0;
  for (size_t g = 0; g < profile.groups.size(); ++g) {
    const effcam::bench::CamStepProfile& group = profile.groups[g];
    double want = 0;
    uint32_t count = 0;
    for (size_t k = 0; k < steps.size(); ++k) {
      const effcam::format::Op& op = small.model.file().ops()[steps[k].op];
      std::string kind = effcam::bench::op_kind_name(op.kind);
      if (op.kind == OpKind::Conv) kind += op.kernel_h == 1 ? " 1x1" : " KxK";
      if (steps[k].backward == group.backward && kind == group.kind) want += 2.0 * double(k + 1), ++count;
    }
    CHECK(group.count == count);
    CHECK(group.ms == doctest::Approx(want));
    if (g > 0) CHECK(group.ms <= profile.groups[g - 1].ms);
    counted += group.count;
    shares += group.share;
  }
  CHECK(counted == steps.size());
  CHECK(shares == doctest::Approx(1.0));
  const bool target_step = std::any_of(profile.groups.begin(), profile.groups.end(), [](const auto& group) {
    return group.backward && group.kind == "Conv KxK";  // the 3x3 stem's recovery
  });
  CHECK(target_step);
  CHECK_THROWS_AS(effcam::bench::summarize_cam_profile(small.model, steps, synthetic, 2), effcam::Error);
  CHECK_THROWS_AS(effcam::bench::summarize_cam_profile(small.model, steps, synthetic, 0), effcam::Error);

  effcam::engine::SessionOptions no_cam;
  CHECK(effcam::engine::Session(small.model, no_cam).explain_steps().empty());
}

TEST_CASE("latency statistics: minimum, median and nearest-rank 90th percentile") {
  const effcam::bench::LatencyStats odd = effcam::bench::latency_stats({5, 1, 4, 2, 3});
  CHECK(odd.min == 1);
  CHECK(odd.median == 3);
  CHECK(odd.p90 == 5);
  const effcam::bench::LatencyStats ten = effcam::bench::latency_stats({10, 9, 8, 7, 6, 5, 4, 3, 2, 1});
  CHECK(ten.median == 5.5);
  CHECK(ten.p90 == 9);
  const effcam::bench::LatencyStats one = effcam::bench::latency_stats({7});
  CHECK((one.min == 7 && one.median == 7 && one.p90 == 7));
  CHECK_THROWS_AS(effcam::bench::latency_stats({}), effcam::Error);
  CHECK_THROWS_AS(effcam::bench::median({}), effcam::Error);
}

TEST_CASE("the FMA peak is measured with the widest vectors present") {
  const effcam::bench::FmaPeak peak = effcam::bench::measure_fma_peak(2, 0.02);
  CHECK(peak.threads == 2);
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f")) CHECK(peak.isa == "avx512");
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) CHECK(peak.isa == "avx2");
#endif
  if (peak.isa != "none") {
    // Any AVX2 core does more than 1 GFLOP/s, even shared and under the sanitizers.
    CHECK(peak.gflops_per_core > 1.0);
    CHECK(peak.gflops_total == doctest::Approx(2 * peak.gflops_per_core));
  }
}

TEST_CASE("the BF16 dot-product peak is measured exactly where the CPU has AVX-512 BF16") {
  const effcam::bench::FmaPeak bf16 = effcam::bench::measure_bf16_peak(1, 0.02);
#if defined(__x86_64__)
  const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
#else
  const bool has = false;
#endif
  CHECK(bf16.isa == (has ? "avx512_bf16" : "none"));
  if (has) CHECK(bf16.gflops_per_core > 1.0);
  else CHECK(bf16.gflops_total == 0);
}

TEST_CASE("bench arguments: whole numbers in range or a message naming the option") {
  CHECK(effcam::cli::parse_count("--iters", "12", 1, 100) == 12);
  CHECK(effcam::cli::parse_count("--warmup", "0", 0, 100) == 0);
  for (const char* bad : {"0", "101", "-1", "1.5", "", "12x", "99999999999"}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(effcam::cli::parse_count("--iters", bad, 1, 100),
                         doctest::Contains("--iters wants a whole number from 1 to 100"), effcam::Error);
  }
}
