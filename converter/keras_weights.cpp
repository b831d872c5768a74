// Weights: each layer's variables, from its H5 group in a .keras file (§2.4) or by name from a legacy .h5 (§3.2),
// checked against the shapes its config implies. Section numbers refer to ../shared/docs/keras-format.md.
#include "converter/keras_weights.h"

#include <algorithm>
#include <array>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "converter/keras_json.h"
#include "effcam/error.hpp"

namespace effcam::keras {

namespace {

using json = nlohmann::json;

// Variables per known class, in Keras 3 save order (keras-format.md §2.4).
std::vector<std::string> expected_variables(const std::string& class_name, const json& config,
                                            const std::string& what) {
  if (class_name == "Conv2D" || class_name == "DepthwiseConv2D" || class_name == "Dense") {
    std::vector<std::string> names{"kernel"};
    if (bool_field(config, "use_bias", true, what)) names.push_back("bias");
    return names;
  }
  if (class_name == "BatchNormalization") {
    std::vector<std::string> names;
    if (bool_field(config, "scale", true, what)) names.push_back("gamma");
    if (bool_field(config, "center", true, what)) names.push_back("beta");
    names.push_back("moving_mean");
    names.push_back("moving_variance");
    return names;
  }
  return {};
}

bool is_known_weighted_class(const std::string& class_name) {
  return class_name == "Conv2D" || class_name == "DepthwiseConv2D" || class_name == "Dense" ||
         class_name == "BatchNormalization";
}

// Checks the weight shapes against what the layer's config fixes.
void check_weight_shapes(const Layer& layer, const std::string& what) {
  const json& config = layer.config;
  auto get = [&](const char* name) -> const Array* {
    auto it = layer.weights.find(name);
    return it == layer.weights.end() ? nullptr : &it->second;
  };
  auto mismatch = [&](const char* name, const Array& array, const std::vector<int64_t>& expected) {
    bool ok = array.shape.size() == expected.size();
    for (size_t i = 0; ok && i < expected.size(); ++i) ok = expected[i] < 0 || expected[i] == array.shape[i];
    if (!ok) {
      throw Error(what + ": " + name + " has shape " + shape_text(array.shape) + " but the config implies " +
                  shape_text(expected));
    }
  };
  const std::string& cls = layer.class_name;
  if (cls == "Conv2D") {
    const int64_t filters = positive_int_field(config, "filters", std::nullopt, what);
    const std::vector<int64_t> k = kernel_size_field(config, 2, what);
    positive_int_field(config, "groups", 1, what);
    if (const Array* kernel = get("kernel")) mismatch("kernel", *kernel, {k[0], k[1], -1, filters});
    if (const Array* bias = get("bias")) mismatch("bias", *bias, {filters});
  } else if (cls == "DepthwiseConv2D") {
    const std::vector<int64_t> k = kernel_size_field(config, 2, what);
    const int64_t multiplier = positive_int_field(config, "depth_multiplier", 1, what);
    const Array* kernel = get("kernel");
    if (kernel) mismatch("kernel", *kernel, {k[0], k[1], -1, multiplier});
    if (const Array* bias = get("bias")) {
      mismatch("bias", *bias, {kernel ? kernel->shape[2] * multiplier : -1});
    }
  } else if (cls == "Dense") {
    const int64_t units = positive_int_field(config, "units", std::nullopt, what);
    if (const Array* kernel = get("kernel")) mismatch("kernel", *kernel, {-1, units});
    if (const Array* bias = get("bias")) mismatch("bias", *bias, {units});
  } else if (cls == "BatchNormalization" || cls == "Normalization") {
    const Array* reference = nullptr;
    const char* reference_name = nullptr;
    for (const char* name : {"gamma", "beta", "moving_mean", "moving_variance", "mean", "variance"}) {
      const Array* array = get(name);
      if (array == nullptr) continue;
      if (reference == nullptr) {
        reference = array;
        reference_name = name;
      } else if (array->shape != reference->shape) {
        throw Error(what + ": " + name + " has shape " + shape_text(array->shape) + " but " + reference_name +
                    " has " + shape_text(reference->shape));
      }
    }
    if (cls == "BatchNormalization" && reference != nullptr && reference->shape.empty()) {
      throw Error(what + ": " + reference_name + " is a scalar, expected one value per channel");
    }
  }
}

std::vector<Array> read_vars_group(const h5::File& file, const std::string& vars, const std::string& what) {
  std::vector<std::pair<size_t, std::string>> numbered;
  for (const std::string& child : file.children(vars)) {
    const std::string path = vars + "/" + child;
    if (!file.is_dataset(path)) continue;
    if (child.empty() || child.size() > 6 || !std::all_of(child.begin(), child.end(), [](char c) {
          return c >= '0' && c <= '9';
        })) {
      throw Error(what + ": unexpected dataset " + path + " (variables are named 0, 1, ...)");
    }
    numbered.emplace_back(std::stoul(child), path);
  }
  std::sort(numbered.begin(), numbered.end());
  std::vector<Array> arrays;
  for (size_t i = 0; i < numbered.size(); ++i) {
    if (numbered[i].first != i) {
      throw Error(what + ": variable " + std::to_string(i) + " is missing from " + vars);
    }
    arrays.push_back(file.read_array(numbered[i].second));
  }
  return arrays;
}

void load_keras3_weights(Pending& pending, const h5::File& file) {
  Layer& layer = pending.layer;
  const std::string what = "layer " + quote_name(layer.name) + " (" + layer.class_name + ")";
  const std::vector<std::string> expected = expected_variables(layer.class_name, layer.config, what);
  std::vector<Array> arrays;
  const std::string vars = pending.group.empty() ? "" : pending.group + "/vars";
  if (!vars.empty() && file.is_group(vars)) arrays = read_vars_group(file, vars, what);
  if (is_known_weighted_class(layer.class_name)) {
    if (pending.group.empty()) {
      throw Error(what + ": its weights are missing from " + file.label() + " (no matching group)");
    }
    if (arrays.size() != expected.size()) {
      const std::string found = arrays.empty() ? "none" : std::to_string(arrays.size());
      throw Error(what + ": " + vars + " holds " + found + " variables, expected " +
                  std::to_string(expected.size()) + " (" + join(expected) + "); a dataset is missing or extra");
    }
    for (size_t i = 0; i < arrays.size(); ++i) layer.weights[expected[i]] = std::move(arrays[i]);
  } else if (layer.class_name == "Normalization") {
    static const std::array<const char*, 3> names{"mean", "variance", "count"};
    if (arrays.size() == 1 || arrays.size() > names.size()) {
      throw Error(what + ": " + vars + " holds " + std::to_string(arrays.size()) +
                  " variables, expected none or mean, variance(, count)");
    }
    for (size_t i = 0; i < arrays.size(); ++i) layer.weights[names[i]] = std::move(arrays[i]);
  } else {
    for (size_t i = 0; i < arrays.size(); ++i) layer.weights[std::to_string(i)] = std::move(arrays[i]);
  }
}

// "block1a_project_conv/kernel:0" -> ("block1a_project_conv", "kernel").
std::pair<std::string, std::string> split_weight_name(const std::string& full) {
  std::string name = full;
  const size_t colon = name.rfind(':');
  if (colon != std::string::npos && colon + 1 < name.size() &&
      std::all_of(name.begin() + static_cast<long>(colon) + 1, name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    name.resize(colon);
  }
  const size_t slash = name.rfind('/');
  if (slash == std::string::npos) return {"", name};
  const std::string var = name.substr(slash + 1);
  const std::string rest = name.substr(0, slash);
  const size_t previous = rest.rfind('/');
  return {previous == std::string::npos ? rest : rest.substr(previous + 1), var};
}

class LegacyWeights {
 public:
  explicit LegacyWeights(const h5::File& file) : file_(file) {
    // layer_names (or its chunks layer_names0..N) lists every top-level layer that owns a group.
    if (std::optional<std::vector<std::string>> names = file_.string_list_attr("/model_weights", "layer_names")) {
      layer_names_.insert(names->begin(), names->end());
      have_layer_names_ = true;
    }
  }

  void load(Pending& pending) {
    Layer& layer = pending.layer;
    const std::string what = "layer " + quote_name(layer.name) + " (" + layer.class_name + ")";
    const std::string group = "/model_weights/" + pending.legacy_top;
    if (have_layer_names_ && !layer_names_.count(pending.legacy_top)) {
      throw Error(what + ": " + quote_name(pending.legacy_top) + " is not listed in model_weights/layer_names");
    }
    const std::vector<std::string>& names = weight_names(group, what);
    // Select this layer's variables by name, never by position (§3.2).
    std::vector<std::pair<std::string, std::string>> selected;  // (variable, dataset path)
    for (const std::string& full : names) {
      const auto [owner, var] = split_weight_name(full);
      if (pending.legacy_nested && owner != pending.local_name) continue;
      if (full.empty() || full.front() == '/' || full.find("//") != std::string::npos) {
        throw Error(what + ": invalid weight name " + quote_name(full) + " in " + group);
      }
      selected.emplace_back(var, group + "/" + full);
    }
    const bool known = is_known_weighted_class(layer.class_name) || layer.class_name == "Normalization";
    if (!known) {
      for (size_t i = 0; i < selected.size(); ++i) {
        layer.weights[std::to_string(i)] = file_.read_array(selected[i].second);
      }
      return;
    }
    std::vector<std::string> expected = expected_variables(layer.class_name, layer.config, what);
    for (auto& [var, path] : selected) {
      if (var == "depthwise_kernel") var = "kernel";
      const bool allowed = layer.class_name == "Normalization"
                               ? (var == "mean" || var == "variance" || var == "count")
                               : std::find(expected.begin(), expected.end(), var) != expected.end();
      if (!allowed) {
        throw Error(what + ": unexpected variable " + quote_name(var) + " (" + path + "); expected " +
                    (layer.class_name == "Normalization" ? std::string("mean, variance, count") : join(expected)));
      }
      if (layer.weights.count(var)) throw Error(what + ": variable " + quote_name(var) + " appears twice in " + group);
      layer.weights[var] = file_.read_array(path);
    }
    for (const std::string& var : expected) {
      if (!layer.weights.count(var)) {
        throw Error(what + ": variable " + quote_name(var) + " is missing from weight group " + group);
      }
    }
  }

 private:
  const std::vector<std::string>& weight_names(const std::string& group, const std::string& what) {
    auto it = cache_.find(group);
    if (it != cache_.end()) return it->second;
    std::vector<std::string> names;
    if (file_.is_group(group)) {
      std::optional<std::vector<std::string>> listed = file_.string_list_attr(group, "weight_names");
      if (listed) names = std::move(*listed);
    } else if (file_.exists(group)) {
      throw Error(what + ": " + group + " is not a group");
    }
    return cache_.emplace(group, std::move(names)).first->second;
  }

  const h5::File& file_;
  std::map<std::string, std::vector<std::string>> cache_;
  std::set<std::string> layer_names_;
  bool have_layer_names_ = false;
};

}  // namespace

Model attach_weights(FlatGraph graph, Format format, const h5::File& weights) {
  if (!graph.has_input) throw Error("the model has no InputLayer");
  Model model;
  model.output = std::move(graph.output);
  model.input_shape = std::move(graph.input_shape);
  std::optional<LegacyWeights> legacy;
  if (format == Format::LegacyH5) legacy.emplace(weights);
  for (Pending& pending : graph.layers) {
    if (pending.layer.class_name != "InputLayer") {
      const std::string what = "layer " + quote_name(pending.layer.name) + " (" + pending.layer.class_name + ")";
      try {
        if (legacy) legacy->load(pending);
        else load_keras3_weights(pending, weights);
        check_weight_shapes(pending.layer, what);
      } catch (const Error& e) {
        // Name the layer in every weight problem (a missing dataset, a bad dtype...).
        if (starts_with(e.what(), what)) throw;
        throw Error(what + ": " + e.what());
      }
    }
    model.layers.push_back(std::move(pending.layer));
  }
  return model;
}

}  // namespace effcam::keras
