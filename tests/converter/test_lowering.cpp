// The lowering against the unfolded math: a small Keras graph with every fusion the converter does (BatchNorm
// folding, activations, squeeze-excite, residual add, leading Rescaling, a BatchNorm before the Dense head) is
// lowered, written, loaded and run by the engine, and compared with a direct layer-by-layer evaluation of the
// Keras semantics on the original (unfolded) weights.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "converter/lowering.h"
#include "effcam/error.hpp"
#include "engine/model.h"
#include "engine/session.h"
#include "format/half.h"

namespace {

using effcam::keras::Array;
using effcam::keras::Layer;
using nlohmann::json;

// A tensor in HWC with the plain Keras semantics, evaluated in double.
struct Tensor {
  int h = 1, w = 1, c = 1;
  std::vector<double> v;
  double& at(int y, int x, int k) { return v[(size_t(y) * w + x) * c + k]; }
  double at(int y, int x, int k) const { return v[(size_t(y) * w + x) * c + k]; }
};

double swish(double x) { return x / (1 + std::exp(-x)); }
double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

// TF "same" convolution (groups 1 or depthwise), stride s, kernel in Keras layout.
Tensor conv(const Tensor& x, const Array& kernel, int stride, bool depthwise, const Array* bias = nullptr) {
  const int kh = int(kernel.shape[0]), kw = int(kernel.shape[1]);
  const int cout = depthwise ? x.c : int(kernel.shape[3]);
  Tensor y{(x.h + stride - 1) / stride, (x.w + stride - 1) / stride, cout, {}};
  y.v.assign(size_t(y.h) * y.w * y.c, 0);
  const int pad_h = std::max((y.h - 1) * stride + kh - x.h, 0) / 2;
  const int pad_w = std::max((y.w - 1) * stride + kw - x.w, 0) / 2;
  for (int oy = 0; oy < y.h; ++oy)
    for (int ox = 0; ox < y.w; ++ox)
      for (int o = 0; o < cout; ++o) {
        double sum = bias ? bias->values[size_t(o)] : 0.0;
        for (int ky = 0; ky < kh; ++ky)
          for (int kx = 0; kx < kw; ++kx) {
            const int iy = oy * stride + ky - pad_h, ix = ox * stride + kx - pad_w;
            if (iy < 0 || ix < 0 || iy >= x.h || ix >= x.w) continue;
            if (depthwise) {
              sum += x.at(iy, ix, o) * kernel.values[(size_t(ky) * kw + kx) * cout + o];
            } else {
              for (int i = 0; i < x.c; ++i)
                sum += x.at(iy, ix, i) * kernel.values[((size_t(ky) * kw + kx) * x.c + i) * cout + o];
            }
          }
        y.at(oy, ox, o) = sum;
      }
  return y;
}

Tensor batchnorm(Tensor x, const Layer& bn) {
  for (size_t i = 0; i < x.v.size(); ++i) {
    const size_t k = i % size_t(x.c);
    const double s = bn.weights.at("gamma").values[k] / std::sqrt(bn.weights.at("moving_variance").values[k] + 1e-3);
    x.v[i] = (x.v[i] - bn.weights.at("moving_mean").values[k]) * s + bn.weights.at("beta").values[k];
  }
  return x;
}

template <typename F>
Tensor map(Tensor x, F f) {
  for (double& value : x.v) value = f(value);
  return x;
}

Tensor mean_hw(const Tensor& x) {
  Tensor m{1, 1, x.c, std::vector<double>(size_t(x.c), 0.0)};
  for (size_t i = 0; i < x.v.size(); ++i) m.v[i % size_t(x.c)] += x.v[i] / (x.h * x.w);
  return m;
}

class ModelMaker {
 public:
  explicit ModelMaker(uint32_t seed) : rng_(seed) {}

  Array random(std::vector<int64_t> shape, double lo, double hi) {
    Array a{shape, {}};
    size_t n = 1;
    for (int64_t d : shape) n *= size_t(d);
    std::uniform_real_distribution<double> dist(lo, hi);
    for (size_t i = 0; i < n; ++i) a.values.push_back(float(dist(rng_)));
    return a;
  }
  Layer& add(const std::string& name, const std::string& cls, json config, std::vector<std::string> inputs) {
    config["name"] = name;
    model.layers.push_back(Layer{name, cls, config, inputs, {}});
    return model.layers.back();
  }
  Layer& conv(const std::string& name, const std::string& input, int cin, int cout, int k, int stride, bool bias,
              const std::string& act = "linear") {
    Layer& l = add(name, "Conv2D",
                   {{"filters", cout}, {"kernel_size", {k, k}}, {"strides", {stride, stride}}, {"padding", "same"},
                    {"use_bias", bias}, {"activation", act}},
                   {input});
    const double scale = 1.5 / std::sqrt(double(k * k * cin));
    l.weights["kernel"] = random({k, k, cin, cout}, -scale, scale);
    if (bias) l.weights["bias"] = random({cout}, -0.3, 0.3);
    return l;
  }
  Layer& bn(const std::string& name, const std::string& input, int c) {
    Layer& l = add(name, "BatchNormalization", {{"axis", -1}, {"epsilon", 1e-3}}, {input});
    l.weights["gamma"] = random({c}, 0.5, 1.5);
    l.weights["beta"] = random({c}, -0.3, 0.3);
    l.weights["moving_mean"] = random({c}, -0.5, 0.5);
    l.weights["moving_variance"] = random({c}, 0.5, 2.0);
    return l;
  }
  const Layer& layer(const std::string& name) const {
    for (const Layer& l : model.layers)
      if (l.name == name) return l;
    throw std::runtime_error("no layer " + name);
  }

  effcam::keras::Model model;

 private:
  std::mt19937 rng_;
};

// input 9x11x3 -> Rescaling -> stem conv s2 + BN + swish -> MBConv-style block (depthwise + BN + swish, squeeze-
// excite, project conv + BN, dropout, residual add) -> GAP -> BN -> Dense(5, softmax)
ModelMaker make_block_model() {
  ModelMaker m(7);
  m.model.source_format = "test";
  m.model.keras_version = "3.8.0";
  m.model.input_shape = {9, 11, 3};
  m.add("input", "InputLayer", json::object(), {});
  m.add("rescaling", "Rescaling", {{"scale", 1.0 / 127.5}, {"offset", -1.0}}, {"input"});
  m.conv("stem_conv", "rescaling", 3, 8, 3, 2, false);
  m.bn("stem_bn", "stem_conv", 8);
  m.add("stem_activation", "Activation", {{"activation", "silu"}}, {"stem_bn"});
  Layer& dw = m.add("dwconv", "DepthwiseConv2D",
                    {{"kernel_size", {3, 3}}, {"strides", {1, 1}}, {"padding", "same"}, {"use_bias", false},
                     {"depth_multiplier", 1}},
                    {"stem_activation"});
  dw.weights["kernel"] = m.random({3, 3, 8, 1}, -0.5, 0.5);
  m.bn("dw_bn", "dwconv", 8);
  m.add("dw_activation", "Activation", {{"activation", "swish"}}, {"dw_bn"});
  m.add("se_squeeze", "GlobalAveragePooling2D", json::object(), {"dw_activation"});
  m.add("se_reshape", "Reshape", {{"target_shape", {1, 1, 8}}}, {"se_squeeze"});
  m.conv("se_reduce", "se_reshape", 8, 2, 1, 1, true, "silu");
  m.conv("se_expand", "se_reduce", 2, 8, 1, 1, true, "sigmoid");
  m.add("se_excite", "Multiply", json::object(), {"dw_activation", "se_expand"});
  m.conv("project_conv", "se_excite", 8, 8, 1, 1, false);
  m.bn("project_bn", "project_conv", 8);
  m.add("drop", "Dropout", {{"rate", 0.2}}, {"project_bn"});
  m.add("add", "Add", json::object(), {"drop", "stem_activation"});
  m.add("pool", "GlobalAveragePooling2D", json::object(), {"add"});
  m.bn("head_bn", "pool", 8);
  Layer& dense = m.add("dense", "Dense", {{"units", 5}, {"activation", "softmax"}}, {"head_bn"});
  dense.weights["kernel"] = m.random({8, 5}, -1, 1);
  dense.weights["bias"] = m.random({5}, -0.2, 0.2);
  m.model.output = "dense";
  return m;
}

// The same graph, layer by layer, on the unfolded weights. Returns the named intermediate tensors too.
std::map<std::string, Tensor> evaluate(const ModelMaker& m, const Tensor& image) {
  std::map<std::string, Tensor> t;
  t["rescaling"] = map(image, [](double v) { return v / 127.5 - 1.0; });
  t["stem_conv"] = conv(t["rescaling"], m.layer("stem_conv").weights.at("kernel"), 2, false);
  t["stem_bn"] = batchnorm(t["stem_conv"], m.layer("stem_bn"));
  t["stem_activation"] = map(t["stem_bn"], swish);
  t["dwconv"] = conv(t["stem_activation"], m.layer("dwconv").weights.at("kernel"), 1, true);
  t["dw_activation"] = map(batchnorm(t["dwconv"], m.layer("dw_bn")), swish);
  const Tensor squeeze = mean_hw(t["dw_activation"]);
  const Tensor reduce = map(conv(squeeze, m.layer("se_reduce").weights.at("kernel"), 1, false,
                                 &m.layer("se_reduce").weights.at("bias")), swish);
  const Tensor gate = map(conv(reduce, m.layer("se_expand").weights.at("kernel"), 1, false,
                               &m.layer("se_expand").weights.at("bias")), sigmoid);
  t["se_excite"] = t["dw_activation"];
  for (size_t i = 0; i < t["se_excite"].v.size(); ++i) t["se_excite"].v[i] *= gate.v[i % 8];
  t["project_bn"] = batchnorm(conv(t["se_excite"], m.layer("project_conv").weights.at("kernel"), 1, false),
                              m.layer("project_bn"));
  t["add"] = t["project_bn"];
  for (size_t i = 0; i < t["add"].v.size(); ++i) t["add"].v[i] += t["stem_activation"].v[i];
  const Tensor pooled = batchnorm(mean_hw(t["add"]), m.layer("head_bn"));
  t["head_bn"] = pooled;
  const Array& w = m.layer("dense").weights.at("kernel");
  Tensor logits{1, 1, 5, std::vector<double>(5, 0.0)};
  double total = 0;
  for (int u = 0; u < 5; ++u) {
    logits.v[size_t(u)] = m.layer("dense").weights.at("bias").values[size_t(u)];
    for (int i = 0; i < 8; ++i) logits.v[size_t(u)] += pooled.v[size_t(i)] * w.values[size_t(i) * 5 + size_t(u)];
  }
  t["logits"] = logits;
  Tensor probs = logits;
  for (double& v : probs.v) total += (v = std::exp(v));
  for (double& v : probs.v) v /= total;
  t["dense"] = probs;
  return t;
}

Tensor random_image(uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pixel(0, 255);
  Tensor image{9, 11, 3, {}};
  for (int i = 0; i < 9 * 11 * 3; ++i) image.v.push_back(pixel(rng));
  return image;
}

struct Lowered {
  std::vector<uint8_t> bytes;
  effcam::converter::LoweringSummary summary;
};

Lowered lower(const effcam::keras::Model& model, effcam::format::DType dtype) {
  effcam::converter::LoweringOptions options;
  options.kernel_dtype = dtype;
  Lowered out;
  out.bytes = effcam::converter::lower(model, options, out.summary).serialize();
  return out;
}

double max_abs_diff(std::span<const float> a, const std::vector<double>& b) {
  double worst = 0;
  for (size_t i = 0; i < b.size(); ++i) worst = std::max(worst, std::abs(double(a[i]) - b[i]));
  return worst;
}

}  // namespace

TEST_CASE("the fused block gives the unfolded Keras math, probabilities and fused-away layers alike") {
  const ModelMaker maker = make_block_model();
  struct Case {
    effcam::format::DType dtype;
    double prob_tol, layer_tol;
  };
  for (const Case& c : {Case{effcam::format::DType::F32, 1e-5, 1e-4}, Case{effcam::format::DType::F16, 5e-3, 2e-2}}) {
    const effcam::format::DType dtype = c.dtype;
    const double prob_tol = c.prob_tol, layer_tol = c.layer_tol;
    CAPTURE(int(dtype));
    const Lowered lowered = lower(maker.model, dtype);
    // stem conv, depthwise (+ SE means), squeeze-excite, project conv (+ gate + residual), pool, head BN, dense
    CHECK(lowered.summary.ops == 7);
    const effcam::engine::Model model(effcam::ModelFile::from_bytes(lowered.bytes));
    effcam::engine::SessionOptions options;
    options.probes = {"stem_conv", "stem_bn", "se_excite", "project_bn", "add", "dwconv", "head_bn"};
    effcam::engine::Session session(model, options);
    for (uint32_t seed : {1u, 2u, 3u}) {
      const Tensor image = random_image(seed);
      const std::vector<float> pixels(image.v.begin(), image.v.end());
      session.set_input_pixels(pixels);
      session.run();
      const auto expected = evaluate(maker, image);
      CHECK(max_abs_diff(session.probabilities(), expected.at("dense").v) <= prob_tol);
      CHECK(max_abs_diff(session.logits(), expected.at("logits").v) <= 10 * prob_tol);
      for (const std::string& layer : options.probes) {
        CAPTURE(layer);
        const Tensor& want = expected.at(layer);
        double scale = 0;
        for (double v : want.v) scale = std::max(scale, std::abs(v));
        REQUIRE(session.probe(layer).size() == want.v.size());
        CHECK(max_abs_diff(session.probe(layer), want.v) <= layer_tol * scale);
      }
    }
  }
}

TEST_CASE("the file stores fewer parameters than Keras: BatchNorm statistics fold away") {
  const ModelMaker maker = make_block_model();
  const Lowered lowered = lower(maker.model, effcam::format::DType::F32);
  // Keras: 4 per BN channel; stored: the folded bias per conv channel, a scale and a shift for the head BN.
  CHECK(lowered.summary.keras_parameters > lowered.summary.stored_parameters);
  CHECK(lowered.summary.classes == 5);
  CHECK(lowered.summary.input_h == 9);
  CHECK(lowered.summary.input_w == 11);
}

TEST_CASE("an fp16 file keeps a kernel that is exact in fp16 exact: the BatchNorm before the Dense is not folded in") {
  // A kernel trained or stored in fp16 (the bundled Food-101 model's are): W * s rounded to fp16 would differ from
  // W by up to 2^-11 relative, enough to move a Grad-CAM++ map near its pole by 1.0.
  ModelMaker maker = make_block_model();
  Layer& dense = maker.model.layers.back();
  REQUIRE(dense.name == "dense");
  for (float& w : dense.weights.at("kernel").values) w = std::round(w * 2048) / 2048;  // 11 significant bits
  const Lowered lowered = lower(maker.model, effcam::format::DType::F16);
  const effcam::ModelFile file = effcam::ModelFile::from_bytes(lowered.bytes);
  const auto records = file.weight_records();
  const Array& keras = dense.weights.at("kernel");
  const uint32_t in = 8, units = 5;
  bool found = false;
  for (uint32_t id = 0; id < records.size(); ++id) {
    if (file.string(records[id].name) != "dense/kernel") continue;
    found = true;
    REQUIRE(records[id].dtype == effcam::format::DType::F16);
    // BlockedOHWI with 1x1 taps: [unit block][input][16 units].
    const auto* halves = static_cast<const uint16_t*>(file.weight_data(id));
    for (uint32_t i = 0; i < in; ++i) {
      for (uint32_t u = 0; u < units; ++u) {
        CAPTURE(i);
        CAPTURE(u);
        CHECK(effcam::format::half_to_float(halves[size_t{i} * effcam::format::kChannelBlock + u]) ==
              keras.values[size_t{i} * units + u]);
      }
    }
  }
  CHECK(found);
}

TEST_CASE("unsupported layers and configs are refused with the layer named") {
  auto refused = [](ModelMaker& m) {
    try {
      lower(m.model, effcam::format::DType::F16);
    } catch (const effcam::Error& e) {
      return std::string(e.what());
    }
    return std::string("(converted)");
  };
  {
    ModelMaker m = make_block_model();
    m.model.layers[3].class_name = "Lambda";
    const std::string message = refused(m);
    CHECK(message.find("'stem_bn' (Lambda)") != std::string::npos);
    std::string supported;  // the list is the translation table
    for (const std::string& name : effcam::converter::supported_layer_classes()) {
      supported += (supported.empty() ? "" : ", ") + name;
    }
    CHECK(message.find("supported layers: " + supported) != std::string::npos);
    CHECK(supported.find("DepthwiseConv2D") != std::string::npos);
  }
  {
    ModelMaker m = make_block_model();
    m.model.layers[2].config["filters"] = 8.0;  // the reader's rule: config integers are JSON integers
    CHECK(refused(m).find("'stem_conv' (Conv2D): 'filters' must be a positive integer, got 8.0") != std::string::npos);
  }
  {
    ModelMaker m = make_block_model();
    m.model.layers[2].config["dilation_rate"] = {2, 2};
    CHECK(refused(m).find("'stem_conv' (Conv2D): dilation_rate") != std::string::npos);
  }
  {
    ModelMaker m = make_block_model();
    m.model.layers[2].config["filters"] = "eight";
    CHECK(refused(m).find("'filters' must be a positive integer") != std::string::npos);
  }
  {
    ModelMaker m = make_block_model();
    m.model.layers[2].weights["kernel"].shape = {3, 3, 3, 7};
    CHECK(refused(m).find("weight 'kernel' has shape (3,3,3,7), the config implies (3,3,3,8)") != std::string::npos);
  }
  {
    ModelMaker m = make_block_model();
    m.model.layers[4].config["activation"] = "gelu";
    CHECK(refused(m).find("activation 'gelu' is not supported") != std::string::npos);
  }
  {
    ModelMaker m = make_block_model();
    m.model.input_shape = {-1, -1, 3};
    CHECK(refused(m).find("the input size is not fixed in the model") != std::string::npos);
  }
}

TEST_CASE("a Dense layer on a spatial map is a 1x1 convolution, and ZeroPadding2D folds into the next conv") {
  ModelMaker m(3);
  m.model.keras_version = "2.15.0";
  m.model.input_shape = {6, 5, 1};
  m.add("input", "InputLayer", json::object(), {});
  m.add("pad", "ZeroPadding2D", {{"padding", {{1, 0}, {0, 1}}}}, {"input"});
  m.add("conv", "Conv2D",
        {{"filters", 4}, {"kernel_size", {3, 3}}, {"strides", {2, 2}}, {"padding", "valid"}, {"use_bias", true},
         {"activation", "relu6"}},
        {"pad"})
      .weights = {{"kernel", m.random({3, 3, 1, 4}, -1, 1)}, {"bias", m.random({4}, -1, 1)}};
  m.add("pointwise", "Dense", {{"units", 3}, {"activation", "hard_sigmoid"}}, {"conv"}).weights = {
      {"kernel", m.random({4, 3}, -1, 1)}, {"bias", m.random({3}, -1, 1)}};
  m.add("flatten", "Flatten", json::object(), {"pointwise"});
  m.add("head", "Dense", {{"units", 2}}, {"flatten"}).weights = {{"kernel", m.random({3 * 2 * 3, 2}, -1, 1)},
                                                                  {"bias", m.random({2}, -1, 1)}};
  m.model.output = "head";
  const Layer& c = m.layer("conv");
  const Layer& d = m.layer("pointwise");
  const Layer& head = m.layer("head");

  const Lowered lowered = lower(m.model, effcam::format::DType::F32);
  CHECK(lowered.summary.ops == 4);  // conv (padding folded), 1x1 conv, reshape, dense
  const effcam::engine::Model model(effcam::ModelFile::from_bytes(lowered.bytes));
  effcam::engine::Session session(model, {});
  std::vector<float> pixels;
  for (int i = 0; i < 30; ++i) pixels.push_back(float((i * 37) % 256));
  session.set_input_pixels(pixels);
  session.run();

  // Direct evaluation: pad top 1 / right 1 -> 7x6, valid 3x3 stride 2 -> 3x2
  const Array& k = c.weights.at("kernel");
  std::vector<double> flat;
  for (int oy = 0; oy < 3; ++oy)
    for (int ox = 0; ox < 2; ++ox) {
      double conv_out[4];
      for (int o = 0; o < 4; ++o) {
        double sum = c.weights.at("bias").values[size_t(o)];
        for (int ky = 0; ky < 3; ++ky)
          for (int kx = 0; kx < 3; ++kx) {
            const int iy = oy * 2 + ky - 1, ix = ox * 2 + kx;
            if (iy >= 0 && iy < 6 && ix < 5) sum += pixels[size_t(iy * 5 + ix)] * k.values[size_t((ky * 3 + kx) * 4 + o)];
          }
        conv_out[o] = std::min(std::max(sum, 0.0), 6.0);
      }
      for (int u = 0; u < 3; ++u) {
        double sum = d.weights.at("bias").values[size_t(u)];
        for (int o = 0; o < 4; ++o) sum += conv_out[o] * d.weights.at("kernel").values[size_t(o * 3 + u)];
        flat.push_back(std::min(std::max(0.2 * sum + 0.5, 0.0), 1.0));  // Keras 2 hard_sigmoid
      }
    }
  CHECK(model.graph().tensors[model.graph().output].c == 2);
  REQUIRE(flat.size() == 18);  // 3x2 pixels x 3 units, flattened in HWC order
  std::vector<double> expected(2);
  for (int u = 0; u < 2; ++u) {
    expected[size_t(u)] = head.weights.at("bias").values[size_t(u)];
    for (size_t i = 0; i < 18; ++i) expected[size_t(u)] += flat[i] * head.weights.at("kernel").values[i * 2 + size_t(u)];
  }
  CHECK(max_abs_diff(session.probabilities(), expected) <= 1e-4);
}
