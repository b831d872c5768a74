// effcam::keras::read_model on real Keras files (shared/fixtures/keras-real, the Food-101 EfficientNetV2-B0),
// on synthetic files covering what those do not (nesting, float16/bfloat16/float64, chunked attributes,
// Keras 2 Sequential without InputLayer, quantized policies), and on broken or hostile files.
// Weight values are checked against an independent h5py read (EFFCAM_PYTHON).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "converter/keras_model.h"
#include "effcam/error.hpp"
#include "tests/converter/keras_test_files.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;
using effcam::keras::Array;
using effcam::keras::Layer;
using effcam::keras::Model;
using effcam::keras::read_model;
using effcam::test::json;

namespace {

fs::path work_dir() {
  fs::path dir = effcam::test::testdata_dir() / "keras_reader";
  fs::create_directories(dir);
  return dir;
}

const Layer* find_layer(const Model& model, const std::string& name) {
  for (const Layer& layer : model.layers) {
    if (layer.name == name) return &layer;
  }
  return nullptr;
}

const Layer& get_layer(const Model& model, const std::string& name) {
  const Layer* layer = find_layer(model, name);
  if (layer == nullptr) FAIL("no layer named " << name);
  return *layer;
}

const Array& get_weight(const Model& model, const std::string& layer, const std::string& weight) {
  const Layer& l = get_layer(model, layer);
  auto it = l.weights.find(weight);
  if (it == l.weights.end()) FAIL("layer " << layer << " has no weight " << weight);
  return it->second;
}

size_t count_class(const Model& model, const std::string& class_name) {
  size_t n = 0;
  for (const Layer& layer : model.layers) n += layer.class_name == class_name;
  return n;
}

std::vector<std::string> layer_names(const Model& model) {
  std::vector<std::string> names;
  for (const Layer& layer : model.layers) names.push_back(layer.name);
  return names;
}

std::vector<std::string> weight_keys(const Layer& layer) {
  std::vector<std::string> keys;
  for (const auto& [key, array] : layer.weights) keys.push_back(key);
  return keys;
}

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Invariants every model must satisfy: one InputLayer, first; unique names; topological order; output exists;
// every array's element count matches its shape.
void check_invariants(const Model& model) {
  REQUIRE(!model.layers.empty());
  CHECK(model.layers.front().class_name == "InputLayer");
  CHECK(count_class(model, "InputLayer") == 1);
  CHECK(count_class(model, "Functional") == 0);
  CHECK(count_class(model, "Sequential") == 0);
  CHECK(model.layers.front().inputs.empty());
  std::set<std::string> seen;
  for (const Layer& layer : model.layers) {
    for (const std::string& input : layer.inputs) {
      CHECK_MESSAGE(seen.count(input) == 1, layer.name << " reads " << input << " before it is produced");
    }
    if (layer.class_name != "InputLayer") CHECK_MESSAGE(!layer.inputs.empty(), layer.name << " has no input");
    CHECK_MESSAGE(seen.insert(layer.name).second, "duplicate layer name " << layer.name);
    for (const auto& entry : layer.weights) {  // (no structured binding: clang 14 cannot capture one)
      CHECK_MESSAGE(static_cast<int64_t>(entry.second.values.size()) == product(entry.second.shape),
                    layer.name << "/" << entry.first);
    }
  }
  CHECK(seen.count(model.output) == 1);
}

std::vector<int64_t> kernel_size(const json& config) {
  const json& k = config.at("kernel_size");
  if (k.is_number()) return {k.get<int64_t>(), k.get<int64_t>()};
  return {k.at(0).get<int64_t>(), k.at(1).get<int64_t>()};
}

// The shapes the config implies, checked independently of the reader's own check.
void check_config_shapes(const Model& model) {
  for (const Layer& layer : model.layers) {
    const json& c = layer.config;
    INFO("layer " << layer.name);
    if (layer.class_name == "Conv2D") {
      const auto k = kernel_size(c);
      const int64_t filters = c.at("filters").get<int64_t>();
      const Array& kernel = layer.weights.at("kernel");
      REQUIRE(kernel.shape.size() == 4);
      CHECK(kernel.shape[0] == k[0]);
      CHECK(kernel.shape[1] == k[1]);
      CHECK(kernel.shape[3] == filters);
      CHECK(layer.weights.count("bias") == (c.value("use_bias", true) ? 1u : 0u));
      if (layer.weights.count("bias")) CHECK(layer.weights.at("bias").shape == std::vector<int64_t>{filters});
    } else if (layer.class_name == "DepthwiseConv2D") {
      const auto k = kernel_size(c);
      const Array& kernel = layer.weights.at("kernel");
      REQUIRE(kernel.shape.size() == 4);
      CHECK(kernel.shape[0] == k[0]);
      CHECK(kernel.shape[1] == k[1]);
      CHECK(kernel.shape[3] == c.value("depth_multiplier", 1));
      if (layer.weights.count("bias")) {
        CHECK(layer.weights.at("bias").shape == std::vector<int64_t>{kernel.shape[2] * kernel.shape[3]});
      }
    } else if (layer.class_name == "Dense") {
      const int64_t units = c.at("units").get<int64_t>();
      const Array& kernel = layer.weights.at("kernel");
      REQUIRE(kernel.shape.size() == 2);
      CHECK(kernel.shape[1] == units);
      if (c.value("use_bias", true)) CHECK(layer.weights.at("bias").shape == std::vector<int64_t>{units});
    } else if (layer.class_name == "BatchNormalization") {
      std::set<std::string> expected{"moving_mean", "moving_variance"};
      if (c.value("scale", true)) expected.insert("gamma");
      if (c.value("center", true)) expected.insert("beta");
      std::set<std::string> keys;
      for (const auto& [key, array] : layer.weights) keys.insert(key);
      CHECK(keys == expected);
      for (const auto& [key, array] : layer.weights) {
        CHECK(array.shape == layer.weights.at("moving_mean").shape);
      }
    }
  }
}

void expect_error(const fs::path& path, const std::vector<std::string>& needles) {
  INFO("file " << path.string());
  try {
    (void)read_model(path.string());
    FAIL("read_model accepted " << path.string());
  } catch (const effcam::Error& e) {
    const std::string message = e.what();
    INFO("message: " << message);
    CHECK(message.find(path.string()) != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
    for (const std::string& needle : needles) {
      CHECK_MESSAGE(message.find(needle) != std::string::npos, "expected \"" << needle << "\" in: " << message);
    }
  } catch (const std::exception& e) {
    FAIL("wrong exception type for " << path.string() << ": " << e.what());
  }
}

// ---- independent read through h5py ---------------------------------------------------------------

struct RefStats {
  int64_t count = 0;
  double sum = 0;
  double abs_sum = 0;
  std::vector<int64_t> shape;
};

const char* kReferenceScript = R"PY(
import io, sys, zipfile
import h5py, numpy as np
path = sys.argv[1]
if zipfile.is_zipfile(path):
    f = h5py.File(io.BytesIO(zipfile.ZipFile(path).read("model.weights.h5")), "r")
else:
    f = h5py.File(path, "r")
for name in sys.argv[2:]:
    a = np.asarray(f[name][()], dtype=np.float64)
    print("\t".join([name, str(a.size), repr(float(a.sum())), repr(float(np.abs(a).sum()))] + [str(d) for d in a.shape]))
)PY";

// Dataset statistics computed by /usr/bin/python3 + h5py, or nullopt (with a note) when no python is configured.
std::optional<std::map<std::string, RefStats>> python_reference(const fs::path& file,
                                                                const std::vector<std::string>& datasets) {
  const char* python = std::getenv("EFFCAM_PYTHON");
  if (python == nullptr || std::string(python).empty()) {
    MESSAGE("SKIP value check: EFFCAM_PYTHON is not set");
    return std::nullopt;
  }
  const fs::path script = work_dir() / "h5_reference.py";
  effcam::test::write_text(script, kReferenceScript);
  std::string command = std::string("'") + python + "' '" + script.string() + "' '" + file.string() + "'";
  for (const std::string& d : datasets) command += " '" + d + "'";
  command += " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string output;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
  const int status = pclose(pipe);
  REQUIRE_MESSAGE(status == 0, "h5py reference failed: " << output);
  std::map<std::string, RefStats> stats;
  std::istringstream lines(output);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string name, count, sum, abs_sum, dim;
    std::getline(fields, name, '\t');
    std::getline(fields, count, '\t');
    std::getline(fields, sum, '\t');
    std::getline(fields, abs_sum, '\t');
    RefStats s;
    s.count = std::stoll(count);
    s.sum = std::stod(sum);
    s.abs_sum = std::stod(abs_sum);
    while (std::getline(fields, dim, '\t')) s.shape.push_back(std::stoll(dim));
    stats[name] = s;
  }
  return stats;
}

struct WeightCheck {
  std::string layer;
  std::string weight;
  std::string dataset;  // path inside the HDF5 file
};

void check_against_python(const Model& model, const fs::path& file, const std::vector<WeightCheck>& checks) {
  std::vector<std::string> datasets;
  for (const WeightCheck& c : checks) datasets.push_back(c.dataset);
  const auto reference = python_reference(file, datasets);
  if (!reference) return;
  for (const WeightCheck& c : checks) {
    INFO(c.layer << "/" << c.weight << " vs " << c.dataset);
    auto it = reference->find(c.dataset);
    REQUIRE(it != reference->end());
    const Array& array = get_weight(model, c.layer, c.weight);
    double sum = 0, abs_sum = 0;
    for (float v : array.values) {
      sum += v;
      abs_sum += std::fabs(v);
    }
    CHECK(static_cast<int64_t>(array.values.size()) == it->second.count);
    CHECK(array.shape == it->second.shape);
    CHECK(std::fabs(sum - it->second.sum) <= 1e-9 * it->second.abs_sum + 1e-12);
    CHECK(std::fabs(abs_sum - it->second.abs_sum) <= 1e-9 * it->second.abs_sum + 1e-12);
    CHECK(it->second.abs_sum > 0);  // a real weight, not zeros
  }
}

std::optional<fs::path> fixture(const std::string& name) {
  return effcam::test::shared_file("fixtures/keras-real/" + name);
}

}  // namespace

// ---- real files ----------------------------------------------------------------------------------

TEST_CASE("keras 3.3.3 .keras (plain-string dtypes, functional)") {
  const auto path = fixture("autoencoder_keras3.3.3.keras");
  if (!path) return;
  const Model model = read_model(path->string());
  check_invariants(model);
  check_config_shapes(model);
  CHECK(model.source_format == "keras-zip");
  CHECK(model.keras_version == "3.3.3");
  CHECK(model.layers.size() == 10);
  CHECK(model.input_shape == std::vector<int64_t>{96, 96, 1});
  CHECK(model.output == "conv2d_4");
  CHECK(count_class(model, "Conv2D") == 5);
  CHECK(count_class(model, "UpSampling2D") == 2);  // read; the lowering refuses it
  CHECK(get_weight(model, "conv2d", "kernel").shape == std::vector<int64_t>{3, 3, 1, 64});
  CHECK(get_layer(model, "up_sampling2d").inputs == std::vector<std::string>{"conv2d_2"});
  check_against_python(model, *path, {{"conv2d", "kernel", "layers/conv2d/vars/0"},
                                      {"conv2d_2", "bias", "layers/conv2d_2/vars/1"},
                                      {"conv2d_4", "kernel", "layers/conv2d_4/vars/0"}});
}

TEST_CASE("keras 3.8 .keras (DTypePolicy dicts, name attributes, BatchNormalization)") {
  const auto path = fixture("autoencoder_keras3.8.keras");
  if (!path) return;
  const Model model = read_model(path->string());
  check_invariants(model);
  check_config_shapes(model);
  CHECK(model.keras_version == "3.8.0");
  CHECK(model.name == "convolutional_autoencoder");
  CHECK(model.layers.size() == 12);
  CHECK(model.layers.front().name == "encoder_input");
  CHECK(model.input_shape == std::vector<int64_t>{28, 28, 1});
  CHECK(model.output == "dec_output");
  CHECK(count_class(model, "BatchNormalization") == 2);
  CHECK(get_weight(model, "dec_bn2", "gamma").shape == std::vector<int64_t>{32});
  check_against_python(model, *path, {{"dec_bn1", "moving_variance", "layers/batch_normalization/vars/3"},
                                      {"dec_bn2", "gamma", "layers/batch_normalization_1/vars/0"},
                                      {"dec_bn2", "beta", "layers/batch_normalization_1/vars/1"},
                                      {"enc_conv2", "kernel", "layers/conv2d_1/vars/0"},
                                      {"dec_output", "bias", "layers/conv2d_4/vars/1"}});
}

TEST_CASE("legacy .h5 written by keras 3.8 (weight names without :0)") {
  const auto path = fixture("autoencoder_keras3.8.h5");
  if (!path) return;
  const Model model = read_model(path->string());
  check_invariants(model);
  check_config_shapes(model);
  CHECK(model.source_format == "legacy-h5");
  CHECK(model.keras_version == "3.8.0");
  CHECK(model.layers.size() == 10);
  CHECK(model.input_shape == std::vector<int64_t>{28, 28, 1});
  CHECK(model.output == "dec_output");
  check_against_python(model, *path, {{"enc_conv1", "kernel", "model_weights/enc_conv1/enc_conv1/kernel"},
                                      {"dec_conv2", "bias", "model_weights/dec_conv2/dec_conv2/bias"}});
}

TEST_CASE("keras 3.5 Sequential .keras") {
  const auto path = fixture("emotion_keras3.5_sequential.keras");
  if (!path) return;
  const Model model = read_model(path->string());
  check_invariants(model);
  check_config_shapes(model);
  CHECK(model.layers.size() == 17);
  CHECK(model.layers.front().name == "input_layer");
  CHECK(model.input_shape == std::vector<int64_t>{48, 48, 1});
  CHECK(model.output == "dense_1");
  CHECK(get_layer(model, "conv2d").inputs == std::vector<std::string>{"input_layer"});
  CHECK(get_layer(model, "dense_1").inputs == std::vector<std::string>{"dense"});
  CHECK(count_class(model, "Flatten") == 1);
  check_against_python(model, *path, {{"conv2d", "kernel", "layers/conv2d/vars/0"},
                                      {"batch_normalization_2", "beta", "layers/batch_normalization_2/vars/1"},
                                      {"batch_normalization_3", "moving_mean", "layers/batch_normalization_3/vars/2"},
                                      {"dense_1", "kernel", "layers/dense_1/vars/0"}});
}

TEST_CASE("keras 2.14 .keras (_layer_checkpoint_dependencies)") {
  const auto path = fixture("mosquitoes_keras2.14.keras");
  if (!path) return;
  const Model model = read_model(path->string());
  check_invariants(model);
  check_config_shapes(model);
  CHECK(model.keras_version == "2.14.0");
  CHECK(model.layers.size() == 22);
  CHECK(model.input_shape == std::vector<int64_t>{224, 224, 3});
  CHECK(model.output == "activation_17");
  const std::string root = "_layer_checkpoint_dependencies/";
  check_against_python(model, *path, {{"conv2d_10", "kernel", root + "conv2d/vars/0"},
                                      {"conv2d_14", "bias", root + "conv2d_4/vars/1"},
                                      {"batch_normalization_5", "moving_mean", root + "batch_normalization/vars/2"},
                                      {"dense_2", "kernel", root + "dense/vars/0"}});
}

TEST_CASE("keras 2.15 .keras and legacy .h5") {
  if (const auto path = fixture("mosquitoes_keras2.15.keras")) {
    const Model model = read_model(path->string());
    check_invariants(model);
    check_config_shapes(model);
    CHECK(model.keras_version == "2.15.0");
    CHECK(model.layers.size() == 17);
    CHECK(model.input_shape == std::vector<int64_t>{224, 224, 3});
    check_against_python(model, *path, {{"conv2d_3", "kernel", "layers/conv2d_3/vars/0"},
                                        {"batch_normalization", "gamma", "layers/batch_normalization/vars/0"},
                                        {"dense", "bias", "layers/dense/vars/1"}});
  }
  if (const auto path = fixture("mosquitoes_keras2.15.h5")) {
    const Model model = read_model(path->string());
    check_invariants(model);
    check_config_shapes(model);
    CHECK(model.source_format == "legacy-h5");
    CHECK(model.layers.size() == 17);
    CHECK(model.output == "dense");
    const std::string bn = "model_weights/batch_normalization/batch_normalization/";
    check_against_python(model, *path, {{"conv2d_2", "kernel", "model_weights/conv2d_2/conv2d_2/kernel:0"},
                                        {"batch_normalization", "moving_variance", bn + "moving_variance:0"},
                                        {"batch_normalization", "beta", bn + "beta:0"},
                                        {"dense", "kernel", "model_weights/dense/dense/kernel:0"}});
  }
}

TEST_CASE("keras 2.8 MobileNetV2 .h5 (ReLU6, ZeroPadding2D, depthwise_kernel, Add)") {
  const auto path = fixture("mobilenetv2_0.35_128_keras2.8.h5");
  if (!path) return;
  const Model model = read_model(path->string());
  check_invariants(model);
  check_config_shapes(model);
  CHECK(model.layers.size() == 157);
  CHECK(model.input_shape == std::vector<int64_t>{128, 128, 3});
  CHECK(model.output == "dense");
  CHECK(count_class(model, "DepthwiseConv2D") == 17);
  CHECK(count_class(model, "Add") == 10);
  CHECK(count_class(model, "ReLU") == 35);
  for (const Layer& layer : model.layers) {
    if (layer.class_name == "Add") CHECK(layer.inputs.size() == 2);
  }
  check_against_python(
      model, *path,
      {{"depthwise_conv2d_3", "kernel", "model_weights/depthwise_conv2d_3/depthwise_conv2d_3/depthwise_kernel:0"},
       {"conv2d_10", "kernel", "model_weights/conv2d_10/conv2d_10/kernel:0"},
       {"batch_normalization_7", "moving_variance",
        "model_weights/batch_normalization_7/batch_normalization_7/moving_variance:0"},
       {"dense", "kernel", "model_weights/dense/dense/kernel:0"}});
}

TEST_CASE("keras 2.8 EfficientNet-like .h5 with Lambda layers is read (the lowering judges Lambda)") {
  const auto path = fixture("st_efficientnet_lc_keras2.8.h5");
  if (!path) return;
  const Model model = read_model(path->string());
  check_invariants(model);
  check_config_shapes(model);
  CHECK(model.layers.size() == 281);
  CHECK(model.input_shape == std::vector<int64_t>{128, 128, 3});
  CHECK(model.output == "output_probs");
  CHECK(count_class(model, "Lambda") == 16);
  CHECK(count_class(model, "Multiply") == 16);
  check_against_python(model, *path,
                       {{"conv2d_1", "bias", "model_weights/conv2d_1/conv2d_1/bias:0"},
                        {"conv2d_5", "kernel", "model_weights/conv2d_5/conv2d_5/kernel:0"},
                        {"batch_normalization_3", "gamma", "model_weights/batch_normalization_3/batch_normalization_3/gamma:0"},
                        {"output_probs", "kernel", "model_weights/output_probs/output_probs/kernel:0"}});
}

TEST_CASE("keras 2.4 .h5 with fixed-length byte-string attributes") {
  const auto path = fixture("vww96_mobilenetv1_keras2.4.h5");
  if (!path) return;
  const Model model = read_model(path->string());
  check_invariants(model);
  check_config_shapes(model);
  CHECK(model.keras_version == "2.4.0");
  CHECK(model.layers.size() == 85);
  CHECK(model.input_shape == std::vector<int64_t>{96, 96, 3});
  CHECK(model.output == "dense");
  CHECK(get_weight(model, "depthwise_conv2d_3", "kernel").shape == std::vector<int64_t>{3, 3, 32, 1});
  check_against_python(
      model, *path,
      {{"depthwise_conv2d_3", "kernel", "model_weights/depthwise_conv2d_3/depthwise_conv2d_3/depthwise_kernel:0"},
       {"depthwise_conv2d_3", "bias", "model_weights/depthwise_conv2d_3/depthwise_conv2d_3/bias:0"},
       {"batch_normalization_7", "gamma", "model_weights/batch_normalization_7/batch_normalization_7/gamma:0"},
       {"dense", "kernel", "model_weights/dense/dense/kernel:0"}});
}

TEST_CASE("two-input siamese models fail with a clear message") {
  if (const auto path = fixture("siamese_nested_keras3.5.keras")) {
    expect_error(*path, {"several inputs are not supported", "input_layer_10", "input_layer_11"});
  }
  if (const auto path = fixture("siamese_nested_keras2.8.h5")) {
    expect_error(*path, {"several inputs are not supported", "input_179", "input_180"});
  }
}

TEST_CASE("the Food-101 EfficientNetV2-B0 (keras 3.8, mixed_float16)") {
  const auto path = effcam::test::shared_file("models/food101-effv2b0/food101_effv2b0.keras");
  if (!path) return;
  const Model model = read_model(path->string());
  check_invariants(model);
  check_config_shapes(model);
  CHECK(model.keras_version == "3.8.0");
  CHECK(model.name == "EfficientNetV2B0_Food101");
  CHECK(model.layers.size() == 274);
  CHECK(model.input_shape == std::vector<int64_t>{224, 224, 3});
  CHECK(model.output == "dense");
  CHECK(count_class(model, "Conv2D") == 75);
  CHECK(count_class(model, "BatchNormalization") == 60);
  CHECK(count_class(model, "DepthwiseConv2D") == 16);
  CHECK(count_class(model, "Add") == 15);
  CHECK(get_layer(model, "normalization").weights.empty());  // mean/variance live in the config
  CHECK(get_layer(model, "normalization").config.at("mean").size() == 3);
  CHECK(get_layer(model, "block6h_se_excite").inputs ==
        std::vector<std::string>{"block6h_activation", "block6h_se_expand"});
  int64_t parameters = 0;
  for (const Layer& layer : model.layers) {
    for (const auto& [key, array] : layer.weights) parameters += product(array.shape);
  }
  CHECK(parameters == 6053813);  // B0 without top (5,919,312) + head BN (5,120) + Dense 1280x101 (129,381)
  check_against_python(model, *path, {{"stem_conv", "kernel", "layers/conv2d/vars/0"},
                                      {"block4a_dwconv2", "kernel", "layers/depthwise_conv2d/vars/0"},
                                      {"block6h_project_conv", "kernel", "layers/conv2d_73/vars/0"},
                                      {"top_conv", "kernel", "layers/conv2d_74/vars/0"},
                                      {"batch_normalization", "moving_variance", "layers/batch_normalization_59/vars/3"},
                                      {"dense", "kernel", "layers/dense/vars/0"},
                                      {"dense", "bias", "layers/dense/vars/1"}});
}

// A real nested model: the Keras 3.5 siamese file with its second branch cut away, leaving
// [InputLayer, Functional "siamese"], whose weights sit under layers/functional/layers/...
TEST_CASE("real keras 3.5 nested Functional (siamese base, trimmed to one input)") {
  const auto source = fixture("siamese_nested_keras3.5.keras");
  if (!source) return;
  const fs::path unpacked = work_dir() / "siamese35_unpacked.h5";
  std::vector<uint8_t> weights;
  json config;
  std::string metadata;
  {
    // Unpack with libzip through the reader's own test writer helpers' counterpart: plain libzip here.
    int error = 0;
    zip_t* archive = zip_open(source->c_str(), ZIP_RDONLY, &error);
    REQUIRE(archive != nullptr);
    auto member = [&](const char* name) {
      zip_stat_t st;
      REQUIRE(zip_stat(archive, name, 0, &st) == 0);
      std::vector<uint8_t> bytes(st.size);
      zip_file_t* f = zip_fopen(archive, name, 0);
      REQUIRE(f != nullptr);
      REQUIRE(zip_fread(f, bytes.data(), st.size) == static_cast<zip_int64_t>(st.size));
      zip_fclose(f);
      return bytes;
    };
    weights = member("model.weights.h5");
    const auto config_bytes = member("config.json");
    const auto metadata_bytes = member("metadata.json");
    config = json::parse(config_bytes.begin(), config_bytes.end());
    metadata.assign(metadata_bytes.begin(), metadata_bytes.end());
    zip_discard(archive);
  }
  json& layers = config["config"]["layers"];
  json kept = json::array();
  for (const json& entry : layers) {
    if (entry["name"] == "input_layer_10" || entry["name"] == "siamese") kept.push_back(entry);
  }
  REQUIRE(kept.size() == 2);
  kept[1]["inbound_nodes"] = json::array({kept[1]["inbound_nodes"][0]});  // one call
  layers = kept;
  config["config"]["input_layers"] = json::array({json::array({"input_layer_10", 0, 0})});
  config["config"]["output_layers"] = json::array({"siamese", 0, 0});  // the 3.11+ flat form
  const fs::path path = work_dir() / "siamese35_trimmed.keras";
  effcam::test::write_zip(path, {{"metadata.json", effcam::test::to_bytes(metadata)},
                                 {"config.json", effcam::test::to_bytes(config.dump())},
                                 {"model.weights.h5", weights}});
  const Model model = read_model(path.string());
  check_invariants(model);
  check_config_shapes(model);
  CHECK(model.layers.size() == 15);
  CHECK(model.layers.front().name == "input_layer_10");
  CHECK(model.input_shape == std::vector<int64_t>{720, 720, 1});
  CHECK(model.output == "siamese/dropout_11");
  CHECK(get_layer(model, "siamese/conv2d_7").inputs == std::vector<std::string>{"input_layer_10"});
  CHECK(get_layer(model, "siamese/batch_normalization_7").inputs == std::vector<std::string>{"siamese/conv2d_7"});
  CHECK(find_layer(model, "siamese/input_layer_9") == nullptr);  // the nested InputLayer is an alias
  CHECK(find_layer(model, "conv2d_7") == nullptr);
  const std::string base = "layers/functional/layers/";
  check_against_python(model, path, {{"siamese/conv2d_7", "kernel", base + "conv2d/vars/0"},
                                     {"siamese/conv2d_8", "kernel", base + "conv2d_1/vars/0"},
                                     {"siamese/batch_normalization_9", "moving_variance",
                                      base + "batch_normalization_2/vars/3"},
                                     {"siamese/dense_6", "kernel", base + "dense/vars/0"},
                                     {"siamese/dense_6", "bias", base + "dense/vars/1"}});
}

// The Keras 2.8 legacy siamese file with its model_config rewritten to one branch:
// input_179 -> model_117 (nested, whose variables sit in ONE group, trainable ones first) -> batch_normalization_178.
TEST_CASE("real keras 2.8 legacy nested Functional (one group for the whole base, matched by name)") {
  const auto source = fixture("siamese_nested_keras2.8.h5");
  if (!source) return;
  const fs::path path = work_dir() / "siamese28_trimmed.h5";
  fs::copy_file(*source, path, fs::copy_options::overwrite_existing);
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);
  {
    hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    REQUIRE(file >= 0);
    hid_t attr = H5Aopen(file, "model_config", H5P_DEFAULT);
    hid_t type = H5Aget_type(attr);
    char* text = nullptr;
    hid_t mem = H5Tcopy(H5T_C_S1);
    H5Tset_size(mem, H5T_VARIABLE);
    REQUIRE(H5Aread(attr, mem, &text) >= 0);
    json config = json::parse(text);
    H5free_memory(text);
    H5Tclose(type);
    H5Aclose(attr);
    json kept = json::array();
    for (const json& entry : config["config"]["layers"]) {
      const std::string name = entry["name"];
      if (name == "input_179" || name == "model_117" || name == "batch_normalization_178") kept.push_back(entry);
    }
    REQUIRE(kept.size() == 3);
    kept[1]["inbound_nodes"] = json::array({kept[1]["inbound_nodes"][0]});
    kept[2]["inbound_nodes"] = json::parse(R"([[["model_117", 1, 0, {}]]])");
    config["config"]["layers"] = kept;
    config["config"]["input_layers"] = json::parse(R"([["input_179", 0, 0]])");
    config["config"]["output_layers"] = json::parse(R"([["batch_normalization_178", 0, 0]])");
    REQUIRE(H5Adelete(file, "model_config") >= 0);
    const std::string dumped = config.dump();
    const char* pointer = dumped.c_str();
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t created = H5Acreate2(file, "model_config", mem, space, H5P_DEFAULT, H5P_DEFAULT);
    REQUIRE(H5Awrite(created, mem, &pointer) >= 0);
    H5Aclose(created);
    H5Sclose(space);
    H5Tclose(mem);
    H5Fclose(file);
  }
  const Model model = read_model(path.string());
  check_invariants(model);
  check_config_shapes(model);
  CHECK(model.layers.size() == 14);
  CHECK(model.input_shape == std::vector<int64_t>{224, 224, 1});
  CHECK(model.output == "batch_normalization_178");
  CHECK(get_layer(model, "model_117/batch_normalization_176").inputs == std::vector<std::string>{"input_179"});
  CHECK(get_layer(model, "batch_normalization_178").inputs ==
        std::vector<std::string>{"model_117/batch_normalization_177"});
  CHECK(get_weight(model, "model_117/conv2d_256", "kernel").shape == std::vector<int64_t>{2, 2, 32, 64});
  const std::string base = "model_weights/model_117/";
  check_against_python(model, path, {{"model_117/batch_normalization_176", "gamma", base + "batch_normalization_176/gamma:0"},
                                     {"model_117/batch_normalization_176", "moving_variance",
                                      base + "batch_normalization_176/moving_variance:0"},
                                     {"model_117/conv2d_255", "kernel", base + "conv2d_255/kernel:0"},
                                     {"model_117/conv2d_258", "bias", base + "conv2d_258/bias:0"},
                                     {"batch_normalization_178", "moving_mean",
                                      "model_weights/batch_normalization_178/batch_normalization_178/moving_mean:0"}});
}

// ---- synthetic files -----------------------------------------------------------------------------

namespace {

using effcam::test::Dtype;
using effcam::test::H5Builder;
using effcam::test::keras3_input;
using effcam::test::keras3_layer;
using effcam::test::keras3_tensor;
using effcam::test::test_values;

json functional_entry(const std::string& name, const json& layers, const json& inputs, const json& outputs,
                      const std::vector<std::string>& called_with) {
  json entry = {{"module", "keras.src.models.functional"},
                {"class_name", "Functional"},
                {"registered_name", "Functional"},
                {"name", name},
                {"config",
                 {{"name", name}, {"trainable", true}, {"layers", layers}, {"input_layers", inputs},
                  {"output_layers", outputs}}}};
  entry["inbound_nodes"] = json::array();
  if (!called_with.empty()) {
    entry["inbound_nodes"].push_back(
        {{"args", json::array({keras3_tensor(called_with[0])})}, {"kwargs", {{"training", false}}}});
  }
  return entry;
}

// outer: inp -> base{ base_in -> c1 -> bn1(scale=False) -> block: Sequential[block_in, c2, dw] } -> gap -> fc
json nested_keras3_config(const json& fc_dtype) {
  json block = {{"module", "keras"},
                {"class_name", "Sequential"},
                {"registered_name", nullptr},
                {"name", "block"},
                {"config",
                 {{"name", "block"},
                  {"trainable", true},
                  {"dtype", effcam::test::dtype_policy("float32")},
                  {"layers", json::array({keras3_input("block_in", {8, 8, 4}, false),
                                          keras3_layer("Conv2D", "c2",
                                                       {{"filters", 6}, {"kernel_size", {1, 1}}, {"use_bias", true},
                                                        {"padding", "same"}, {"activation", "relu"}},
                                                       {}, false),
                                          keras3_layer("DepthwiseConv2D", "dw",
                                                       {{"kernel_size", {3, 3}}, {"depth_multiplier", 2},
                                                        {"use_bias", true}, {"padding", "same"}},
                                                       {}, false)})},
                  {"build_input_shape", {nullptr, 8, 8, 4}}}}};
  block["inbound_nodes"] = json::array({{{"args", json::array({keras3_tensor("bn1")})}, {"kwargs", json::object()}}});
  const json base_layers = json::array(
      {keras3_input("base_in", {8, 8, 3}),
       keras3_layer("Conv2D", "c1", {{"filters", 4}, {"kernel_size", {3, 3}}, {"use_bias", false}}, {"base_in"}),
       keras3_layer("BatchNormalization", "bn1", {{"axis", -1}, {"center", true}, {"scale", false}, {"epsilon", 1e-3}},
                    {"c1"}),
       block});
  json base = functional_entry("base", base_layers, json::array({json::array({"base_in", 0, 0})}),
                               json::array({json::array({"block", 0, 0})}), {"inp"});
  const json outer_layers = json::array(
      {keras3_input("inp", {8, 8, 3}), base,
       keras3_layer("GlobalAveragePooling2D", "gap", {{"keepdims", false}}, {"base"}),
       keras3_layer("Dense", "fc", {{"units", 5}, {"use_bias", true}, {"activation", "softmax"}, {"dtype", fc_dtype}},
                    {"gap"})});
  return {{"module", "keras.src.models.functional"},
          {"class_name", "Functional"},
          {"registered_name", "Functional"},
          {"config",
           {{"name", "outer"},
            {"trainable", true},
            {"layers", outer_layers},
            {"input_layers", json::array({json::array({"inp", 0, 0})})},
            {"output_layers", json::array({"fc", 0, 0})}}}};
}

// Weights for nested_keras3_config; `root` is "layers" (Keras 2.15, 3.x) or "_layer_checkpoint_dependencies".
void fill_nested_keras3(H5Builder& h5, bool name_attributes, const std::string& root = "layers") {
  const std::string base = "/" + root + "/functional/" + root + "/";
  const std::string block = base + "sequential/" + root + "/";
  auto vars = [&](const std::string& group, const std::string& name) {
    h5.group(group + "/vars");
    if (name_attributes) h5.string_attr(group + "/vars", "name", name);
  };
  vars("/" + root + "/input_layer", "inp");
  vars("/" + root + "/functional", "base");
  vars(base + "input_layer", "base_in");
  h5.dataset(base + "conv2d/vars/0", {3, 3, 3, 4}, test_values(108, 1), Dtype::F16);
  vars(base + "conv2d", "c1");
  h5.dataset(base + "batch_normalization/vars/0", {4}, test_values(4, 2), Dtype::F64);
  h5.dataset(base + "batch_normalization/vars/1", {4}, test_values(4, 3), Dtype::F32);
  h5.dataset(base + "batch_normalization/vars/2", {4}, test_values(4, 4), Dtype::BF16);
  vars(base + "batch_normalization", "bn1");
  vars(base + "sequential", "block");
  h5.dataset(block + "conv2d/vars/0", {1, 1, 4, 6}, test_values(24, 5));
  h5.dataset(block + "conv2d/vars/1", {6}, test_values(6, 6));
  vars(block + "conv2d", "c2");
  h5.dataset(block + "depthwise_conv2d/vars/0", {3, 3, 6, 2}, test_values(108, 7));
  h5.dataset(block + "depthwise_conv2d/vars/1", {12}, test_values(12, 8));
  vars(block + "depthwise_conv2d", "dw");
  vars("/" + root + "/global_average_pooling2d", "gap");
  h5.dataset("/" + root + "/dense/vars/0", {12, 5}, test_values(60, 9));
  h5.dataset("/" + root + "/dense/vars/1", {5}, test_values(5, 10));
  vars("/" + root + "/dense", "fc");
  h5.dataset("/optimizer/vars/0", {}, {3.0f});  // ignored
}

void check_nested_keras3(const Model& model) {
  check_invariants(model);
  check_config_shapes(model);
  CHECK(layer_names(model) ==
        std::vector<std::string>{"inp", "base/c1", "base/bn1", "base/block/c2", "base/block/dw", "gap", "fc"});
  CHECK(model.input_shape == std::vector<int64_t>{8, 8, 3});
  CHECK(model.output == "fc");
  CHECK(model.name == "outer");
  CHECK(get_layer(model, "base/c1").inputs == std::vector<std::string>{"inp"});
  CHECK(get_layer(model, "base/block/c2").inputs == std::vector<std::string>{"base/bn1"});
  CHECK(get_layer(model, "gap").inputs == std::vector<std::string>{"base/block/dw"});
  CHECK(get_layer(model, "base/c1").config.at("filters") == 4);
  CHECK(get_weight(model, "base/c1", "kernel").values == test_values(108, 1));         // float16
  CHECK(get_weight(model, "base/bn1", "beta").values == test_values(4, 2));            // float64
  CHECK(get_weight(model, "base/bn1", "moving_mean").values == test_values(4, 3));
  CHECK(get_weight(model, "base/bn1", "moving_variance").values == test_values(4, 4));  // bfloat16
  CHECK(weight_keys(get_layer(model, "base/bn1")) == std::vector<std::string>{"beta", "moving_mean", "moving_variance"});
  CHECK(get_weight(model, "base/block/dw", "kernel").shape == std::vector<int64_t>{3, 3, 6, 2});
  CHECK(get_weight(model, "base/block/dw", "bias").values == test_values(12, 8));
  CHECK(get_weight(model, "fc", "kernel").values == test_values(60, 9));
  CHECK(get_weight(model, "fc", "bias").values == test_values(5, 10));
  CHECK(get_layer(model, "gap").weights.empty());
}

}  // namespace

TEST_CASE("synthetic keras 3 nesting: Sequential inside Functional inside Functional") {
  const json config = nested_keras3_config(effcam::test::dtype_policy("mixed_float16"));
  SUBCASE("3.8 with name attributes") {
    const fs::path path = work_dir() / "nested_38.keras";
    effcam::test::write_keras_archive(path, config, "3.8.0", [](H5Builder& h5) { fill_nested_keras3(h5, true); });
    const Model model = read_model(path.string());
    check_nested_keras3(model);
    CHECK(model.keras_version == "3.8.0");
  }
  SUBCASE("3.3 without name attributes: group names from class counters alone") {
    const fs::path path = work_dir() / "nested_33.keras";
    effcam::test::write_keras_archive(path, config, "3.3.3", [](H5Builder& h5) { fill_nested_keras3(h5, false); });
    check_nested_keras3(read_model(path.string()));
  }
  SUBCASE("2.13 layout under _layer_checkpoint_dependencies") {
    const fs::path path = work_dir() / "nested_213.keras";
    effcam::test::write_keras_archive(path, config, "2.13.1", [](H5Builder& h5) {
      fill_nested_keras3(h5, false, "_layer_checkpoint_dependencies");
    });
    check_nested_keras3(read_model(path.string()));
  }
  SUBCASE("plain-string dtype") {
    const fs::path path = work_dir() / "nested_string_dtype.keras";
    effcam::test::write_keras_archive(path, nested_keras3_config("float32"), "3.3.3",
                                      [](H5Builder& h5) { fill_nested_keras3(h5, false); });
    check_nested_keras3(read_model(path.string()));
  }
}

TEST_CASE("synthetic keras 3: the vars name attribute wins over the class counter") {
  const json layers = json::array(
      {keras3_input("x", {4, 4, 2}),
       keras3_layer("Conv2D", "ca", {{"filters", 3}, {"kernel_size", {1, 1}}, {"use_bias", false}}, {"x"}),
       keras3_layer("Conv2D", "cb", {{"filters", 2}, {"kernel_size", {1, 1}}, {"use_bias", false}}, {"ca"})});
  const json config = {{"class_name", "Functional"},
                       {"config",
                        {{"name", "m"},
                         {"layers", layers},
                         {"input_layers", json::array({json::array({"x", 0, 0})})},
                         {"output_layers", json::array({json::array({"cb", 0, 0})})}}}};
  const fs::path path = work_dir() / "swapped_names.keras";
  effcam::test::write_keras_archive(path, config, "3.8.0", [](H5Builder& h5) {
    h5.dataset("/layers/conv2d/vars/0", {1, 1, 3, 2}, test_values(6, 1));
    h5.string_attr("/layers/conv2d/vars", "name", "cb");
    h5.dataset("/layers/conv2d_1/vars/0", {1, 1, 2, 3}, test_values(6, 2));
    h5.string_attr("/layers/conv2d_1/vars", "name", "ca");
  });
  const Model model = read_model(path.string());
  CHECK(get_weight(model, "ca", "kernel").values == test_values(6, 2));
  CHECK(get_weight(model, "cb", "kernel").values == test_values(6, 1));
}

namespace {

// Keras 2 legacy .h5: Sequential "seq" without InputLayer (shape from build_input_shape) =
//   [ base: Functional{ base_in -> conv_a -> bn_a(center=False) -> inner: Sequential[conv_b, dw_b] ; add(inner, bn_a) },
//     flat: Flatten, out: Dense(3) ]
json legacy_nested_config() {
  using effcam::test::keras2_layer;
  json inner = {{"class_name", "Sequential"},
                {"name", "inner"},
                {"config",
                 {{"name", "inner"},
                  {"layers", json::array({keras2_layer("Conv2D", "conv_b",
                                                       {{"filters", 4}, {"kernel_size", {1, 1}}, {"use_bias", true},
                                                        {"batch_input_shape", {nullptr, 8, 8, 4}}},
                                                       {}, false),
                                          keras2_layer("DepthwiseConv2D", "dw_b",
                                                       {{"kernel_size", {3, 3}}, {"depth_multiplier", 1},
                                                        {"use_bias", false}},
                                                       {}, false)})}}},
                {"inbound_nodes", json::parse(R"([[["bn_a", 0, 0, {}]]])")}};
  json base_input = {{"class_name", "InputLayer"},
                     {"name", "base_in"},
                     {"config", {{"batch_input_shape", {nullptr, 8, 8, 3}}, {"dtype", "float32"}, {"name", "base_in"}}},
                     {"inbound_nodes", json::array()}};
  json base = {{"class_name", "Functional"},
               {"config",
                {{"name", "base"},
                 {"layers", json::array({base_input,
                                         keras2_layer("Conv2D", "conv_a",
                                                      {{"filters", 4}, {"kernel_size", {3, 3}}, {"use_bias", true}},
                                                      {{"base_in", 0}}),
                                         keras2_layer("BatchNormalization", "bn_a",
                                                      {{"axis", {3}}, {"center", false}, {"scale", true}},
                                                      {{"conv_a", 0}}),
                                         inner, keras2_layer("Add", "add", json::object(), {{"inner", 1}, {"bn_a", 0}})})},
                 {"input_layers", json::parse(R"([["base_in", 0, 0]])")},
                 {"output_layers", json::parse(R"([["add", 0, 0]])")}}}};
  return {{"class_name", "Sequential"},
          {"config",
           {{"name", "seq"},
            {"layers", json::array({base, keras2_layer("Flatten", "flat", json::object(), {}, false),
                                    keras2_layer("Dense", "out", {{"units", 3}, {"use_bias", true}}, {}, false)})},
            {"build_input_shape", {nullptr, 8, 8, 3}}}}};
}

// Writes the legacy file; `drop` names a dataset to leave out, `out_kernel_shape` allows a wrong shape.
void write_legacy_nested(const fs::path& path, bool with_model_config = true, const std::string& drop = "",
                         std::vector<hsize_t> out_kernel_shape = {256, 3}, bool unlist_out_bias = false) {
  H5Builder h5(path);
  h5.group("/model_weights");
  if (with_model_config) h5.string_attr("/", "model_config", legacy_nested_config().dump());
  h5.string_attr("/", "keras_version", "2.13.1", false);
  h5.string_attr("/", "backend", "tensorflow");
  // layer_names split in chunks, fixed-length byte strings (numpy "S" arrays).
  h5.string_list_attr("/model_weights", "layer_names0", {"base", "flat"}, false);
  h5.string_list_attr("/model_weights", "layer_names1", {"out"}, false);
  const std::vector<std::string> base_names = {
      "bn_a/moving_mean:0", "bn_a/moving_variance:0", "conv_a/kernel:0", "conv_a/bias:0",
      "bn_a/gamma:0",       "conv_b/kernel:0",        "conv_b/bias:0",   "inner/dw_b/depthwise_kernel:0"};
  const std::vector<std::vector<hsize_t>> base_shapes = {{4}, {4}, {3, 3, 3, 4}, {4}, {4}, {1, 1, 4, 4}, {4}, {3, 3, 4, 1}};
  h5.group("/model_weights/base");
  h5.string_list_attr("/model_weights/base", "weight_names0",
                      std::vector<std::string>(base_names.begin(), base_names.begin() + 5), false);
  h5.string_list_attr("/model_weights/base", "weight_names1",
                      std::vector<std::string>(base_names.begin() + 5, base_names.end()), false);
  for (size_t i = 0; i < base_names.size(); ++i) {
    if (base_names[i] == drop) continue;
    h5.dataset("/model_weights/base/" + base_names[i], base_shapes[i],
               test_values(effcam::test::element_count(base_shapes[i]), static_cast<int>(20 + i)));
  }
  h5.group("/model_weights/flat");
  h5.string_list_attr("/model_weights/flat", "weight_names", {}, false);
  h5.group("/model_weights/out");
  h5.string_list_attr("/model_weights/out", "weight_names",
                      unlist_out_bias ? std::vector<std::string>{"out/kernel:0"}
                                      : std::vector<std::string>{"out/kernel:0", "out/bias:0"},
                      true);
  if (drop != "out/kernel:0") {
    h5.dataset("/model_weights/out/out/kernel:0", out_kernel_shape,
               test_values(effcam::test::element_count(out_kernel_shape), 40));
  }
  if (drop != "out/bias:0") h5.dataset("/model_weights/out/out/bias:0", {3}, test_values(3, 41));
  h5.group("/model_weights/top_level_model_weights");
  h5.string_list_attr("/model_weights/top_level_model_weights", "weight_names", {}, false);
}

}  // namespace

TEST_CASE("synthetic keras 2 legacy .h5: nested Functional+Sequential, chunked attributes, names not positions") {
  const fs::path path = work_dir() / "legacy_nested.h5";
  write_legacy_nested(path);
  const Model model = read_model(path.string());
  check_invariants(model);
  check_config_shapes(model);
  CHECK(model.source_format == "legacy-h5");
  CHECK(model.keras_version == "2.13.1");
  CHECK(layer_names(model) == std::vector<std::string>{"base_input", "base/conv_a", "base/bn_a", "base/inner/conv_b",
                                                       "base/inner/dw_b", "base/add", "flat", "out"});
  CHECK(model.input_shape == std::vector<int64_t>{8, 8, 3});
  CHECK(model.output == "out");
  CHECK(get_layer(model, "base/conv_a").inputs == std::vector<std::string>{"base_input"});
  CHECK(get_layer(model, "base/inner/conv_b").inputs == std::vector<std::string>{"base/bn_a"});
  CHECK(get_layer(model, "base/add").inputs == std::vector<std::string>{"base/inner/dw_b", "base/bn_a"});
  CHECK(get_layer(model, "flat").inputs == std::vector<std::string>{"base/add"});
  // Matched by name although weight_names lists the moving statistics first.
  CHECK(get_weight(model, "base/bn_a", "moving_mean").values == test_values(4, 20));
  CHECK(get_weight(model, "base/bn_a", "moving_variance").values == test_values(4, 21));
  CHECK(get_weight(model, "base/bn_a", "gamma").values == test_values(4, 24));
  CHECK(get_layer(model, "base/bn_a").weights.count("beta") == 0);
  CHECK(get_weight(model, "base/conv_a", "kernel").values == test_values(108, 22));
  CHECK(get_weight(model, "base/conv_a", "bias").values == test_values(4, 23));
  CHECK(get_weight(model, "base/inner/conv_b", "bias").values == test_values(4, 26));
  CHECK(get_weight(model, "base/inner/dw_b", "kernel").values == test_values(36, 27));  // depthwise_kernel
  CHECK(get_weight(model, "out", "kernel").values == test_values(768, 40));
  CHECK(get_weight(model, "out", "bias").values == test_values(3, 41));
}

TEST_CASE("synthetic keras 2.15 .keras Sequential without InputLayer: shape from the first layer") {
  using effcam::test::keras2_layer;
  const json config = {
      {"module", "keras"},
      {"class_name", "Sequential"},
      {"registered_name", nullptr},
      {"config",
       {{"name", "sequential"},
        {"layers", json::array({keras2_layer("Conv2D", "conv2d",
                                             {{"filters", 2}, {"kernel_size", {3, 3}}, {"use_bias", true},
                                              {"batch_input_shape", {nullptr, 6, 5, 1}}},
                                             {}, false),
                                keras2_layer("Flatten", "flatten", json::object(), {}, false),
                                keras2_layer("Dense", "dense", {{"units", 3}, {"use_bias", false}}, {}, false)})}}}};
  const fs::path path = work_dir() / "sequential_no_input.keras";
  effcam::test::write_keras_archive(path, config, "2.15.0", [](H5Builder& h5) {
    h5.dataset("/layers/conv2d/vars/0", {3, 3, 1, 2}, test_values(18, 1));
    h5.dataset("/layers/conv2d/vars/1", {2}, test_values(2, 2));
    h5.group("/layers/flatten/vars");
    h5.dataset("/layers/dense/vars/0", {24, 3}, test_values(72, 3));
  });
  const Model model = read_model(path.string());
  check_invariants(model);
  check_config_shapes(model);
  CHECK(layer_names(model) == std::vector<std::string>{"conv2d_input", "conv2d", "flatten", "dense"});
  CHECK(model.input_shape == std::vector<int64_t>{6, 5, 1});
  CHECK(model.layers.front().config.at("batch_shape") == json::array({nullptr, 6, 5, 1}));
  CHECK(get_layer(model, "conv2d").inputs == std::vector<std::string>{"conv2d_input"});
  CHECK(get_weight(model, "conv2d", "bias").values == test_values(2, 2));
  CHECK(get_weight(model, "dense", "kernel").values == test_values(72, 3));
  CHECK(get_layer(model, "dense").weights.count("bias") == 0);
}

TEST_CASE("quantized dtype policies are refused, naming the layer") {
  const json policy = {{"module", "keras"},
                       {"class_name", "QuantizedDTypePolicy"},
                       {"config", {{"name", "int8_from_float32"}, {"source_name", "float32"}}},
                       {"registered_name", nullptr}};
  const fs::path path = work_dir() / "quantized.keras";
  effcam::test::write_keras_archive(path, nested_keras3_config(policy), "3.8.0",
                                    [](H5Builder& h5) { fill_nested_keras3(h5, true); });
  expect_error(path, {"'fc'", "int8_from_float32", "quantized"});
}

namespace {

json single_dense_config(const json& dense_inbound_nodes, const json& outputs) {
  json dense = keras3_layer("Dense", "d", {{"units", 2}}, {"x"});
  dense["inbound_nodes"] = dense_inbound_nodes;
  return {{"class_name", "Functional"},
          {"config",
           {{"name", "m"},
            {"layers", json::array({keras3_input("x", {3}), dense})},
            {"input_layers", json::array({json::array({"x", 0, 0})})},
            {"output_layers", outputs}}}};
}

void fill_single_dense(H5Builder& h5) {
  h5.dataset("/layers/dense/vars/0", {3, 2}, test_values(6, 1));
  h5.dataset("/layers/dense/vars/1", {2}, test_values(2, 2));
}

}  // namespace

TEST_CASE("graphs that cannot be represented fail clearly") {
  const json one_call = json::array({{{"args", json::array({keras3_tensor("x")})}, {"kwargs", json::object()}}});
  SUBCASE("a shared layer called twice") {
    json two_calls = one_call;
    two_calls.push_back(one_call[0]);
    const fs::path path = work_dir() / "shared_layer.keras";
    effcam::test::write_keras_archive(path, single_dense_config(two_calls, json::array({"d", 0, 0})), "3.8.0",
                                      fill_single_dense);
    expect_error(path, {"'d'", "called 2 times"});
  }
  SUBCASE("several outputs") {
    const fs::path path = work_dir() / "two_outputs.keras";
    effcam::test::write_keras_archive(
        path, single_dense_config(one_call, json::parse(R"([["d", 0, 0], ["x", 0, 0]])")), "3.8.0", fill_single_dense);
    expect_error(path, {"several outputs are not supported"});
  }
  SUBCASE("a subclassed model") {
    json config = single_dense_config(one_call, json::array({"d", 0, 0}));
    config["class_name"] = "MyModel";
    const fs::path path = work_dir() / "subclassed.keras";
    effcam::test::write_keras_archive(path, config, "3.8.0", fill_single_dense);
    expect_error(path, {"'MyModel'", "not a Functional or Sequential model"});
  }
  SUBCASE("the single-dense model itself reads") {
    const fs::path path = work_dir() / "single_dense.keras";
    effcam::test::write_keras_archive(path, single_dense_config(one_call, json::array({"d", 0, 0})), "3.8.0",
                                      fill_single_dense);
    const Model model = read_model(path.string());
    check_invariants(model);
    CHECK(model.input_shape == std::vector<int64_t>{3});
    CHECK(get_weight(model, "d", "bias").values == test_values(2, 2));
  }
}

// ---- broken and hostile files --------------------------------------------------------------------

TEST_CASE("corrupt and hostile inputs throw effcam::Error naming the problem") {
  const fs::path dir = work_dir();
  const json good_config = single_dense_config(
      json::array({{{"args", json::array({keras3_tensor("x")})}, {"kwargs", json::object()}}}), json::array({"d", 0, 0}));
  std::vector<uint8_t> good_weights;
  {
    H5Builder h5(dir / "good_weights.h5");
    h5.group("/layers");
    fill_single_dense(h5);
    good_weights = h5.finish();
  }
  const auto metadata = effcam::test::to_bytes(R"({"keras_version": "3.8.0", "date_saved": "2025-01-01@00:00:00"})");

  SUBCASE("empty file") {
    effcam::test::write_text(dir / "empty.keras", "");
    expect_error(dir / "empty.keras", {"empty"});
  }
  SUBCASE("missing file") { expect_error(dir / "does_not_exist.keras", {"no such file"}); }
  SUBCASE("neither zip nor HDF5") {
    effcam::test::write_text(dir / "text.h5", "this is not a model\n");
    expect_error(dir / "text.h5", {"neither a Keras .keras archive (zip) nor a Keras .h5 file (HDF5)"});
  }
  SUBCASE("truncated zip") {
    fs::path source = dir / "good.keras";
    effcam::test::write_zip(source, {{"metadata.json", metadata},
                                     {"config.json", effcam::test::to_bytes(good_config.dump())},
                                     {"model.weights.h5", good_weights}});
    REQUIRE_NOTHROW(read_model(source.string()));
    const auto bytes = effcam::test::read_bytes(source);
    effcam::test::write_bytes(dir / "truncated.keras", bytes.data(), bytes.size() / 2);
    expect_error(dir / "truncated.keras", {"truncated or corrupt zip archive"});
  }
  SUBCASE("zip without config.json") {
    effcam::test::write_zip(dir / "no_config.keras", {{"metadata.json", metadata}, {"model.weights.h5", good_weights}});
    expect_error(dir / "no_config.keras", {"no config.json"});
  }
  SUBCASE("zip without model.weights.h5") {
    effcam::test::write_zip(dir / "no_weights.keras",
                            {{"metadata.json", metadata}, {"config.json", effcam::test::to_bytes(good_config.dump())}});
    expect_error(dir / "no_weights.keras", {"no model.weights.h5"});
  }
  SUBCASE("a member declaring 10 GB is refused before allocating") {
    using effcam::test::RawZipMember;
    const uint64_t ten_gb = 10'000'000'000ull;
    effcam::test::write_raw_zip(dir / "huge_config.keras",
                                {RawZipMember{"config.json", effcam::test::to_bytes("{}"), ten_gb, ten_gb, 0}});
    expect_error(dir / "huge_config.keras", {"config.json", "declares 10000000000 bytes", "64 MiB"});
    const auto config_bytes = effcam::test::to_bytes(good_config.dump());
    effcam::test::write_raw_zip(dir / "huge_weights.keras",
                                {RawZipMember{"config.json", config_bytes, 0, 0, 0},
                                 RawZipMember{"model.weights.h5", good_weights, ten_gb, ten_gb, 0}});
    expect_error(dir / "huge_weights.keras", {"model.weights.h5", "declares 10000000000 bytes", "4096 MiB"});
    // Under the 4 GiB cap but more than this small archive can hold, stored or deflated.
    const uint64_t three_gb = 3'000'000'000ull;
    effcam::test::write_raw_zip(dir / "stored_lie.keras",
                                {RawZipMember{"config.json", config_bytes, 0, 0, 0},
                                 RawZipMember{"model.weights.h5", good_weights, three_gb, three_gb, 0}});
    expect_error(dir / "stored_lie.keras", {"model.weights.h5", "archive has only"});
    effcam::test::write_raw_zip(dir / "deflate_lie.keras",
                                {RawZipMember{"config.json", config_bytes, 0, 0, 0},
                                 RawZipMember{"model.weights.h5", good_weights, three_gb, 0, 8}});
    expect_error(dir / "deflate_lie.keras", {"model.weights.h5", "beyond what compression allows"});
    // The raw writer itself produces readable archives.
    effcam::test::write_raw_zip(dir / "raw_ok.keras", {RawZipMember{"metadata.json", metadata, 0, 0, 0},
                                                       RawZipMember{"config.json", config_bytes, 0, 0, 0},
                                                       RawZipMember{"model.weights.h5", good_weights, 0, 0, 0}});
    CHECK_NOTHROW(read_model((dir / "raw_ok.keras").string()));
  }
  SUBCASE("invalid JSON") {
    effcam::test::write_zip(dir / "bad_json.keras", {{"metadata.json", metadata},
                                                     {"config.json", effcam::test::to_bytes(R"({"class_name": "Func)")},
                                                     {"model.weights.h5", good_weights}});
    expect_error(dir / "bad_json.keras", {"config.json is not valid JSON"});
    effcam::test::write_zip(dir / "bad_metadata.keras", {{"metadata.json", effcam::test::to_bytes("{")},
                                                         {"config.json", effcam::test::to_bytes(good_config.dump())},
                                                         {"model.weights.h5", good_weights}});
    expect_error(dir / "bad_metadata.keras", {"metadata.json is not valid JSON"});
    std::string deep(100000, '[');
    effcam::test::write_zip(dir / "deep_json.keras", {{"metadata.json", metadata},
                                                      {"config.json", effcam::test::to_bytes(deep)},
                                                      {"model.weights.h5", good_weights}});
    expect_error(dir / "deep_json.keras", {"config.json nests deeper than"});
  }
  SUBCASE("JSON of the wrong types") {
    auto write_config = [&](const std::string& name, const json& config) {
      effcam::test::write_zip(dir / name, {{"metadata.json", metadata},
                                           {"config.json", effcam::test::to_bytes(config.dump())},
                                           {"model.weights.h5", good_weights}});
      return dir / name;
    };
    json c = good_config;
    c["config"]["layers"] = 5;
    expect_error(write_config("layers_number.keras", c), {"'layers' must be a list, not number"});
    c = good_config;
    c["config"]["layers"][1]["config"]["units"] = "x";
    expect_error(write_config("units_string.keras", c), {"'d'", "'units' must be a positive integer, not string"});
    c["config"]["layers"][1]["config"]["units"] = 3.0;  // Keras writes Python ints; the lowering refuses 3.0 too
    expect_error(write_config("units_float.keras", c), {"'d'", "'units' must be a positive integer, not 3.0"});
    c = good_config;
    c["config"]["layers"][1]["config"]["use_bias"] = "yes";
    expect_error(write_config("use_bias_string.keras", c), {"'use_bias' must be true or false"});
    c = good_config;
    c["config"]["layers"][1]["inbound_nodes"] = 7;
    expect_error(write_config("nodes_number.keras", c), {"'inbound_nodes' must be a list"});
    c = good_config;
    c["config"]["layers"][1] = 1;
    expect_error(write_config("layer_number.keras", c), {"must be a JSON object, not number"});
    c = good_config;
    c["config"]["input_layers"] = "x";
    expect_error(write_config("inputs_string.keras", c), {"input_layers"});
    c = good_config;
    c["config"]["layers"][0]["config"]["batch_shape"] = json::array({nullptr, "three"});
    expect_error(write_config("shape_string.keras", c), {"input shape entries must be null or non-negative integers"});
    expect_error(write_config("top_array.keras", json::array({1, 2})), {"config.json must be a JSON object"});
    c = good_config;
    c["config"]["layers"][1]["class_name"] = 3;
    expect_error(write_config("class_number.keras", c), {"'class_name' must be a string"});
    c = good_config;
    c["config"]["layers"][1]["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = json::array({"nowhere", 0, 0});
    expect_error(write_config("unknown_producer.keras", c), {"'nowhere'", "not a layer of"});
  }
  SUBCASE("HDF5 with a dataset missing") {
    effcam::test::write_keras_archive(dir / "missing_bias.keras", good_config, "3.8.0", [](H5Builder& h5) {
      h5.dataset("/layers/dense/vars/0", {3, 2}, test_values(6, 1));
    });
    expect_error(dir / "missing_bias.keras", {"'d' (Dense)", "holds 1 variables, expected 2 (kernel, bias)"});
    effcam::test::write_keras_archive(dir / "missing_group.keras", good_config, "3.8.0", [](H5Builder&) {});
    expect_error(dir / "missing_group.keras", {"'d' (Dense)", "weights are missing"});
    effcam::test::write_keras_archive(dir / "missing_var1.keras", good_config, "3.8.0", [](H5Builder& h5) {
      h5.dataset("/layers/dense/vars/0", {3, 2}, test_values(6, 1));
      h5.dataset("/layers/dense/vars/2", {2}, test_values(2, 2));
    });
    expect_error(dir / "missing_var1.keras", {"'d' (Dense)", "variable 1 is missing from /layers/dense/vars"});
    write_legacy_nested(dir / "legacy_missing.h5", true, "out/bias:0");
    expect_error(dir / "legacy_missing.h5", {"layer 'out' (Dense)", "dataset /model_weights/out/out/bias:0 is missing"});
    write_legacy_nested(dir / "legacy_missing_nested.h5", true, "bn_a/gamma:0");
    expect_error(dir / "legacy_missing_nested.h5",
                 {"layer 'base/bn_a' (BatchNormalization)", "dataset /model_weights/base/bn_a/gamma:0 is missing"});
    write_legacy_nested(dir / "legacy_unlisted.h5", true, "", {256, 3}, true);
    expect_error(dir / "legacy_unlisted.h5",
                 {"layer 'out' (Dense)", "variable 'bias' is missing from weight group /model_weights/out"});
  }
  SUBCASE("HDF5 dataset of the wrong shape") {
    effcam::test::write_keras_archive(dir / "wrong_shape.keras", good_config, "3.8.0", [](H5Builder& h5) {
      h5.dataset("/layers/dense/vars/0", {3, 4}, test_values(12, 1));
      h5.dataset("/layers/dense/vars/1", {2}, test_values(2, 2));
    });
    expect_error(dir / "wrong_shape.keras", {"'d' (Dense)", "kernel has shape (3,4) but the config implies (*,2)"});
    write_legacy_nested(dir / "legacy_wrong_shape.h5", true, "", {256, 5});
    expect_error(dir / "legacy_wrong_shape.h5", {"'out' (Dense)", "kernel has shape (256,5)"});
  }
  SUBCASE("HDF5 dataset with huge dimensions") {
    bool created = false;
    effcam::test::write_keras_archive(dir / "huge_dataset.keras", good_config, "3.8.0", [&](H5Builder& h5) {
      created = h5.huge_dataset("/layers/dense/vars/0", {hsize_t{1} << 20, hsize_t{1} << 20, hsize_t{1} << 20});
      h5.dataset("/layers/dense/vars/1", {2}, test_values(2, 2));
    });
    REQUIRE(created);
    expect_error(dir / "huge_dataset.keras", {"dataset /layers/dense/vars/0 is too large"});
    // Dimensions whose product overflows 64 bits.
    created = false;
    effcam::test::write_keras_archive(dir / "overflow_dataset.keras", good_config, "3.8.0", [&](H5Builder& h5) {
      const hsize_t big = hsize_t{1} << 40;
      created = h5.huge_dataset("/layers/dense/vars/0", {big, big, big, big});
      h5.dataset("/layers/dense/vars/1", {2}, test_values(2, 2));
    });
    if (created) {
      expect_error(dir / "overflow_dataset.keras", {"dataset /layers/dense/vars/0 is too large"});
    } else {
      MESSAGE("libhdf5 refuses to create a dataset whose size overflows; that case cannot be written");
    }
  }
  SUBCASE("weights member that is not HDF5") {
    effcam::test::write_zip(dir / "garbage_weights.keras",
                            {{"metadata.json", metadata},
                             {"config.json", effcam::test::to_bytes(good_config.dump())},
                             {"model.weights.h5", effcam::test::to_bytes("not hdf5 at all, sorry")}});
    expect_error(dir / "garbage_weights.keras", {"model.weights.h5 is not a readable HDF5 file"});
  }
  SUBCASE("legacy .h5 without model_config") {
    write_legacy_nested(dir / "legacy_no_config.h5", false);
    expect_error(dir / "legacy_no_config.h5", {"weights-only", "model_config"});
    {
      H5Builder h5(dir / "plain.h5");
      h5.dataset("/data", {2}, {1.0f, 2.0f});
    }
    expect_error(dir / "plain.h5", {"no model_config attribute"});
  }
}
