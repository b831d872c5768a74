// The engine's own machinery: the thread pool, the static memory plan (checked by replaying the execution order:
// no op may overwrite a tensor that is still needed), and sessions (thread counts agree, runs are repeatable).
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>

#include "converter/keras_model.h"
#include "converter/lowering.h"
#include "effcam/error.hpp"
#include "engine/executor.h"
#include "engine/graph.h"
#include "engine/memory_plan.h"
#include "engine/model.h"
#include "engine/op_table.h"
#include "engine/session.h"
#include "base/thread_pool.h"
#include "tests/format/effcam_test_files.h"
#include "tests/test_support.h"

namespace {

using effcam::format::kNone;

// The bundled Food-101 EfficientNetV2-B0, converted in memory once.
const std::vector<uint8_t>& food101_bytes() {
  static const std::vector<uint8_t> bytes = [] {
    const std::filesystem::path path = std::filesystem::path(effcam::test::env_or("EFFCAM_SOURCE_DIR", ".")) /
                                       "models/food101-effv2b0/food101_effv2b0.keras";
    effcam::converter::LoweringSummary summary;
    return effcam::converter::lower(effcam::keras::read_model(path.string()), {}, summary).serialize();
  }();
  return bytes;
}

std::vector<float> test_pixels(size_t count, uint32_t seed) {
  std::vector<float> pixels(count);
  uint32_t state = seed;
  for (float& p : pixels) {
    state = state * 1664525u + 1013904223u;
    p = float(state >> 24);
  }
  return pixels;
}

// Replays the plan: before op i writes its outputs, every tensor that a later op (or the caller) still reads must
// not overlap them, unless the op is planned in place over exactly that input.
void check_plan_is_safe(const effcam::engine::Model& model, const effcam::engine::MemoryPlan& plan,
                        const std::vector<uint32_t>& keep_alive) {
  const auto ops = model.file().ops();
  const effcam::Graph& graph = model.graph();
  std::vector<uint32_t> last_read(graph.tensors.size(), 0);
  for (uint32_t i = 0; i < ops.size(); ++i)
    for (uint32_t t : ops[i].inputs)
      if (t != kNone) last_read[t] = i;
  last_read[graph.output] = uint32_t(ops.size());
  for (uint32_t t : keep_alive) last_read[t] = uint32_t(ops.size());

  auto bytes = [&](uint32_t t) { return graph.tensors[t].elements() * sizeof(float); };
  auto overlap = [&](uint32_t a, uint32_t b) {
    return plan.tensor_offset[a] < plan.tensor_offset[b] + bytes(b) &&
           plan.tensor_offset[b] < plan.tensor_offset[a] + bytes(a);
  };
  std::set<uint32_t> live = {graph.input};
  for (uint32_t i = 0; i < ops.size(); ++i) {
    for (uint32_t y : ops[i].outputs) {
      if (y == kNone) continue;
      CHECK(plan.tensor_offset[y] + bytes(y) <= plan.arena_bytes);
      for (uint32_t t : live) {
        const bool read_later = last_read[t] > i;
        const bool own_input = std::find(std::begin(ops[i].inputs), std::end(ops[i].inputs), t) != std::end(ops[i].inputs);
        if (!overlap(t, y)) continue;
        // Overlap is only allowed for an in-place op over an input that dies here.
        CAPTURE(i);
        CAPTURE(t);
        CHECK((plan.in_place[i] && own_input && !read_later && plan.tensor_offset[t] == plan.tensor_offset[y]));
      }
    }
    for (uint32_t y : ops[i].outputs)
      if (y != kNone) live.insert(y);
    std::erase_if(live, [&](uint32_t t) { return last_read[t] <= i; });
  }
}

}  // namespace

TEST_CASE("the thread pool covers every index exactly once, on every worker count") {
  for (uint32_t threads : {1u, 2u, 3u, 8u}) {
    effcam::ThreadPool pool(threads);
    CHECK(pool.size() == threads);
    for (uint32_t count : {0u, 1u, 2u, 7u, 1000u}) {
      std::vector<std::atomic<int>> hits(count);
      std::atomic<uint32_t> max_worker{0};
      pool.parallel_for(count, [&](uint32_t begin, uint32_t end, uint32_t worker) {
        for (uint32_t k = begin; k < end; ++k) hits[k]++;
        uint32_t seen = max_worker.load();
        while (worker > seen && !max_worker.compare_exchange_weak(seen, worker)) {
        }
      });
      for (uint32_t k = 0; k < count; ++k) CHECK(hits[k] == 1);
      CHECK(max_worker.load() < threads);
    }
  }
  // One thread runs the work on the caller's thread: nothing is started.
  effcam::ThreadPool single(1);
  std::thread::id ran_on;
  single.parallel_for(5, [&](uint32_t, uint32_t, uint32_t) { ran_on = std::this_thread::get_id(); });
  CHECK(ran_on == std::this_thread::get_id());
}

TEST_CASE("a thread that stalls holds back only a small piece: the other thread runs the rest meanwhile") {
  effcam::ThreadPool pool(2);
  constexpr uint32_t kCount = 64;
  std::atomic<uint32_t> others{0};
  uint32_t stalled = 0;
  bool others_done_while_stalled = false;
  pool.parallel_for(kCount, [&](uint32_t begin, uint32_t end, uint32_t) {
    if (begin == 0) {  // a stalled vCPU: waits (up to 10 s) for the rest of the work to be done by the other thread
      stalled = end;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (others.load() < kCount - end && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      others_done_while_stalled = others.load() == kCount - end;
      return;
    }
    others += end - begin;
  });
  CHECK(others_done_while_stalled);
  CHECK(stalled <= kCount / 4);  // a static split in halves would leave half the work to the stalled thread
}

TEST_CASE("an exception in any chunk reaches the caller after every chunk is done, and the pool stays usable") {
  for (uint32_t threads : {1u, 2u, 3u}) {
    effcam::ThreadPool pool(threads);
    for (uint32_t thrower = 0; thrower < threads; ++thrower) {
      CAPTURE(threads);
      CAPTURE(thrower);
      std::atomic<uint32_t> finished{0};
      auto job = [&](uint32_t begin, uint32_t, uint32_t) {
        if (begin == thrower) throw std::runtime_error("chunk " + std::to_string(begin));
        std::this_thread::sleep_for(std::chrono::milliseconds(5));  // still running when the thrower is done
        finished++;
      };
      CHECK_THROWS_WITH_AS(pool.parallel_for(threads, job), ("chunk " + std::to_string(thrower)).c_str(),
                           std::runtime_error);
      CHECK(finished.load() == threads - 1);
      std::atomic<uint32_t> covered{0};
      pool.parallel_for(100, [&](uint32_t begin, uint32_t end, uint32_t) { covered += end - begin; });
      CHECK(covered.load() == 100);
    }
  }
}

TEST_CASE("the op table: one complete row per op kind, found by its kind; an unknown kind has none") {
  constexpr uint32_t kKinds = static_cast<uint32_t>(effcam::format::OpKind::Reshape);
  std::set<std::string> names;
  for (uint32_t k = 1; k <= kKinds; ++k) {
    const auto kind = static_cast<effcam::format::OpKind>(k);
    const effcam::engine::OpDefinition* row = effcam::engine::find_op_definition(kind);
    REQUIRE(row != nullptr);
    CHECK(row->kind == kind);
    const bool complete = row->shape && row->multiply_adds && row->scratch_floats && row->forward &&
                          row->backward_scratch && row->backward && row->output_activation;
    CHECK(complete);
    names.insert(row->name);
  }
  CHECK(names.size() == kKinds);  // every row its own
  CHECK(effcam::engine::find_op_definition(effcam::format::OpKind{0}) == nullptr);
  CHECK(effcam::engine::find_op_definition(effcam::format::OpKind{kKinds + 1}) == nullptr);
  CHECK_THROWS_AS(effcam::engine::op_definition(effcam::format::OpKind{kKinds + 1}), effcam::Error);
}

// build_graph's message for the small test model after `edit` changes its ops ("" when the graph is valid).
template <class Edit>
std::string graph_error(Edit edit) {
  effcam::test::SmallModel model(effcam::format::DType::F32);
  edit(model.builder.mutable_ops());
  const std::vector<uint8_t> bytes = model.builder.serialize();
  try {
    effcam::engine::build_graph(effcam::ModelFile::from_bytes(bytes));
  } catch (const effcam::Error& e) {
    return e.what();
  }
  return "";
}

TEST_CASE("the executor takes a means' gradient only with an output gradient, for an op with means") {
  effcam::test::SmallModel small(effcam::format::DType::F32);
  const std::vector<uint8_t> bytes = small.builder.serialize();
  const effcam::engine::Model model(effcam::ModelFile::from_bytes(bytes));
  effcam::engine::Executor executor(model, 1);
  executor.allocate({});
  const effcam::Graph& graph = model.graph();  // op 0: the stem conv; op 1: the depthwise conv with its means
  REQUIRE(model.file().ops()[1].outputs[1] != effcam::format::kNone);
  std::vector<float> dy(graph.ops[1].output.elements()), means(graph.ops[1].output.c), out(dy.size());
  effcam::engine::Recompute depthwise;
  depthwise.output = out.data();
  depthwise.output_mean_gradient = means.data();
  CHECK_THROWS_AS(executor.run_op(1, depthwise), effcam::Error);
  depthwise.output_gradient = dy.data();
  CHECK_NOTHROW(executor.run_op(1, depthwise));
  std::vector<float> conv_dy(graph.ops[0].output.elements()), conv_out(conv_dy.size());
  effcam::engine::Recompute conv = depthwise;
  conv.output = conv_out.data(), conv.output_gradient = conv_dy.data();
  CHECK_THROWS_AS(executor.run_op(0, conv), effcam::Error);
}

TEST_CASE("the graph runs each op's shape rule from its row and names the op that breaks one") {
  using Ops = std::vector<effcam::format::Op>;
  effcam::test::SmallModel model(effcam::format::DType::F32);
  const std::vector<uint8_t> bytes = model.builder.serialize();
  const effcam::Graph graph = effcam::engine::build_graph(effcam::ModelFile::from_bytes(bytes));
  // conv 3x3 stride 2 "same" on 224x224x3 -> 112x112x20; depthwise x2 -> 112x112x40 and its 1x1x40 mean; global
  // pool -> 1x1x40; dense -> 5 classes.
  CHECK(graph.ops[0].output == effcam::Shape{112, 112, 20});
  CHECK(graph.ops[0].pad_top == 0);
  CHECK(graph.ops[0].pad_bottom == 1);
  CHECK(graph.ops[1].output == effcam::Shape{112, 112, 40});
  CHECK(graph.tensors[model.builder.ops()[1].outputs[1]] == effcam::Shape{1, 1, 40});
  CHECK(graph.ops[2].output == effcam::Shape{1, 1, 40});
  CHECK(graph.classes == 5);
  CHECK(graph_error([](Ops&) {}).empty());

  CHECK(graph_error([](Ops& ops) { ops[0].out_channels = 16; }) ==
        "op 0 'stem_conv': kernel has dims 20x3x3x3, the graph needs 16x3x3x3");
  CHECK(graph_error([](Ops& ops) { ops[0].inputs[1] = ops[0].inputs[0]; }) ==
        "op 0 'stem_conv': residual 224x224x3 does not match the output 112x112x20");
  CHECK(graph_error([](Ops& ops) { ops[1].out_channels = 30; }) ==
        "op 1 'block1a_dwconv': output channels are not a multiple of the input's");
  CHECK(graph_error([](Ops& ops) { ops[3].inputs[1] = ops[3].inputs[0]; }) ==
        "op 3 'predictions': input 1 is not used by this op kind");
  CHECK(graph_error([](Ops& ops) { std::swap(ops[0].outputs[1], ops[1].outputs[1]); }) ==
        "op 0 'stem_conv': only a depthwise op has a second output");
  // A global pool record read as a window op: its window is 0 x 0.
  CHECK(graph_error([](Ops& ops) { ops[2].kind = effcam::format::OpKind::MaxPool; }) == "op 2 'avg_pool': window of size 0");
}

TEST_CASE("the memory plan never overwrites a live tensor and stays near the liveness lower bound") {
  const effcam::engine::Model model(effcam::ModelFile::from_bytes(food101_bytes()));
  for (uint32_t threads : {1u, 2u}) {
    CAPTURE(threads);
    effcam::engine::PlanRequest request;
    request.threads = threads;
    const effcam::engine::MemoryPlan plan = effcam::engine::plan_memory(model.file().ops(), model.graph(), request);
    check_plan_is_safe(model, plan, {});
    CHECK(plan.arena_bytes >= plan.lower_bound_bytes);
    CHECK(double(plan.arena_bytes) <= 1.15 * double(plan.lower_bound_bytes));
    for (uint64_t offset : plan.tensor_offset) {
      if (offset != effcam::engine::MemoryPlan::kUnplanned) CHECK(offset % effcam::engine::kArenaAlignment == 0);
    }
    // In-place reuse happened (residual adds): without it the arena could not be this small.
    CHECK(std::count(plan.in_place.begin(), plan.in_place.end(), 1) > 0);
  }
  // Kept tensors (probes) are never reused.
  effcam::engine::PlanRequest keep;
  const effcam::format::Tap* tap = model.find_tap("block5c_add");
  REQUIRE(tap != nullptr);
  keep.keep_alive = {model.file().ops()[tap->op].outputs[0]};
  const effcam::engine::MemoryPlan kept = effcam::engine::plan_memory(model.file().ops(), model.graph(), keep);
  check_plan_is_safe(model, kept, keep.keep_alive);
}

TEST_CASE("sessions: one and two threads agree bit for bit, runs repeat exactly, probes need asking for") {
  const effcam::engine::Model model(effcam::ModelFile::from_bytes(food101_bytes()));
  const size_t pixels = size_t(model.input_height()) * model.input_width() * model.input_channels();
  const std::vector<float> image = test_pixels(pixels, 11);
  effcam::engine::SessionOptions one_thread;
  one_thread.cam_layer = "block5a_expand_conv";  // the backward pass crosses squeeze-excite gates
  effcam::engine::Session one(model, one_thread);
  effcam::engine::SessionOptions two_threads = one_thread;
  two_threads.threads = 2;
  effcam::engine::Session two(model, two_threads);
  one.set_input_pixels(image);
  one.run();
  const std::vector<float> first(one.probabilities().begin(), one.probabilities().end());
  two.set_input_pixels(image);
  two.run();
  // Bit for bit: no result depends on how the work is split (the squeeze-excite means sum fixed pieces in order).
  CHECK(std::equal(first.begin(), first.end(), two.probabilities().begin()));
  const effcam::engine::Explanation from_one = one.explain(7, effcam::engine::CamScore::Logit);
  const effcam::engine::Explanation from_two = two.explain(7, effcam::engine::CamScore::Logit);
  CHECK(std::ranges::equal(from_one.gradients, from_two.gradients));

  // Another image in between, then the first again: bit-identical (no state leaks between runs).
  one.set_input_pixels(test_pixels(pixels, 12));
  one.run();
  one.set_input_pixels(image);
  one.run();
  CHECK(std::equal(first.begin(), first.end(), one.probabilities().begin()));
  CHECK(one.logits().size() == model.classes());

  CHECK_THROWS_AS(one.probe("top_conv"), effcam::Error);
  effcam::engine::SessionOptions unknown;
  unknown.probes = {"no_such_layer"};
  CHECK_THROWS_WITH_AS(effcam::engine::Session(model, unknown), doctest::Contains("no_such_layer"), effcam::Error);
  CHECK_THROWS_WITH_AS(one.set_input_pixels(std::vector<float>(7)), doctest::Contains("7 values"), effcam::Error);
}

TEST_CASE("a memory budget: recomputation explains bit for bit as keeping does, inside any budget down to the floor") {
  const effcam::engine::Model model(effcam::ModelFile::from_bytes(food101_bytes()));
  const size_t pixels = size_t(model.input_height()) * model.input_width() * model.input_channels();
  const std::vector<float> image = test_pixels(pixels, 21);
  auto explained = [&](const std::string& layer, uint64_t budget, uint32_t threads) {
    effcam::engine::SessionOptions options;
    options.cam_layer = layer;
    options.memory_budget_bytes = budget;
    options.threads = threads;
    auto session = std::make_unique<effcam::engine::Session>(model, options);
    if (budget > 0) CHECK(session->plan().arena_bytes <= budget);
    session->set_input_pixels(image);
    session->run();
    const effcam::engine::Explanation e = session->explain(7, effcam::engine::CamScore::Logit);
    std::vector<float> values(e.activations.begin(), e.activations.end());
    values.insert(values.end(), e.gradients.begin(), e.gradients.end());
    return std::pair{std::move(session), values};
  };
  // One and two threads give the same bits, although per-thread scratch moves every arena and floor (at
  // block1a_project_activation the gradients' kernels differ: direct, Winograd's would lift the floor by 22%).
  for (const std::string layer : {"block1a_project_activation", "block2b_add", "block4a_project_bn",
                                  "block6a_se_excite"}) {
    std::vector<float> one_thread;
    for (uint32_t threads : {1u, 2u}) {
      CAPTURE(layer);
      CAPTURE(threads);
      const auto [chosen, reference] = explained(layer, 0, threads);
      if (threads == 1) one_thread = reference;
      CHECK(reference == one_thread);
      const effcam::engine::ExplainPlan plan = *chosen->explain_plan();
      // The default: within twice the forward pass's arena (or the floor, when more), recomputing at most one
      // forward pass; the floor is the smallest arena tried.
      CHECK(plan.arena_bytes == chosen->plan().arena_bytes);
      CHECK(plan.arena_bytes <= std::max(2 * chosen->forward_arena_bytes(), plan.floor_bytes));
      CHECK(plan.floor_bytes <= plan.arena_bytes);
      CHECK(plan.recomputed_multiply_adds <= plan.forward_multiply_adds);
      CHECK(plan.lower_bound_bytes <= plan.floor_bytes);
      // Inside 2x, forward steps keep some pre-activations (their ops rerun nothing in the backward pass).
      CHECK(plan.pre_activations_kept_by_forward > 0);
#ifdef EFFCAM_TEST_SANITIZED
      if (threads == 2) continue;  // about 20x slower there: two threads' default plan only, the budgets on one
#endif
      // A generous budget keeps everything: nothing recomputed, a larger arena than the floor, the same values to
      // the bit.
      const auto [keeping, kept_values] = explained(layer, uint64_t{1} << 30, threads);
      CHECK(keeping->explain_plan()->recomputed_ops == 0);
      CHECK(keeping->explain_plan()->pre_activations_kept_by_forward >= plan.pre_activations_kept_by_forward);
      CHECK(keeping->explain_plan()->rerun_multiply_adds <= plan.rerun_multiply_adds);
      CHECK(keeping->plan().arena_bytes > plan.floor_bytes);
      CHECK(kept_values == reference);
      // Exactly the floor fits, and recomputes; so does a budget in between.
      const auto [at_floor, floor_values] = explained(layer, plan.floor_bytes, threads);
      CHECK(at_floor->explain_plan()->recomputed_ops > 0);
      CHECK(floor_values == reference);
      CHECK(explained(layer, (plan.floor_bytes + keeping->plan().arena_bytes) / 2, threads).second == reference);
      // Below the floor: one error with the figure.
      const std::string floor = "at least " + std::to_string(plan.floor_bytes) + " bytes";
      CHECK_THROWS_WITH_AS(explained(layer, plan.floor_bytes - 1, threads), doctest::Contains(floor.c_str()),
                           effcam::Error);
    }
  }
  effcam::engine::SessionOptions forward_only;
  forward_only.memory_budget_bytes = 1024;
  CHECK_THROWS_WITH_AS(effcam::engine::Session(model, forward_only), doctest::Contains("over the memory budget of 1024"),
                       effcam::Error);
}
