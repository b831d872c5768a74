// Reads a Keras model (Keras 3 `.keras` zip or legacy `.h5`) into one flat graph with fp32 weights.
// The layouts are described in ../shared/docs/keras-format.md (sections 1-3); section numbers below refer
// to that document.
#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <queue>
#include <regex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "converter/h5_file.h"
#include "converter/keras_archive.h"
#include "converter/keras_model.h"
#include "effcam/error.hpp"

namespace effcam::keras {

namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxJsonBytes = uint64_t{64} << 20;      // config.json / metadata.json
constexpr uint64_t kMaxWeightsBytes = uint64_t{4} << 30;    // model.weights.h5
constexpr int kMaxJsonDepth = 256;
constexpr int kMaxModelNesting = 32;
constexpr int kMaxTensorSearchDepth = 64;

// ------------------------------------------------------------------------------------------------
// JSON helpers: every type mismatch becomes an effcam::Error naming the field.

std::string type_name(const json& value) { return value.type_name(); }

std::string quote_name(const std::string& text) { return "'" + text + "'"; }

json parse_json(std::string_view text, const std::string& what) {
  // nlohmann parses iteratively, but copying and walking a value recurse: refuse absurd nesting first.
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) {
        throw Error(what + " nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
      }
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    throw Error(what + " is not valid JSON (" + e.what() + ")");
  }
}

const json* find_field(const json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  if (it == object.end()) return nullptr;
  return &*it;
}

const json& require_object(const json& value, const std::string& what) {
  if (!value.is_object()) throw Error(what + " must be a JSON object, not " + type_name(value));
  return value;
}

const json& require_field(const json& object, const char* key, const std::string& what) {
  require_object(object, what);
  const json* field = find_field(object, key);
  if (field == nullptr) throw Error(what + " has no " + quote_name(key) + " field");
  return *field;
}

const json& array_field(const json& object, const char* key, const std::string& what) {
  const json& field = require_field(object, key, what);
  if (!field.is_array()) {
    throw Error(what + ": field " + quote_name(key) + " must be a list, not " + type_name(field));
  }
  return field;
}

std::string string_field(const json& object, const char* key, const std::string& what) {
  const json& field = require_field(object, key, what);
  if (!field.is_string()) {
    throw Error(what + ": field " + quote_name(key) + " must be a string, not " + type_name(field));
  }
  return field.get<std::string>();
}

bool bool_field(const json& object, const char* key, bool fallback, const std::string& what) {
  const json* field = find_field(object, key);
  if (field == nullptr || field->is_null()) return fallback;
  if (!field->is_boolean()) {
    throw Error(what + ": field " + quote_name(key) + " must be true or false, not " + type_name(*field));
  }
  return field->get<bool>();
}

int64_t positive_int(const json& value, const std::string& what) {
  if (value.is_number_unsigned()) {
    if (value.get<uint64_t>() > 0 && value.get<uint64_t>() <= static_cast<uint64_t>(INT32_MAX)) {
      return static_cast<int64_t>(value.get<uint64_t>());
    }
  } else if (value.is_number_integer()) {
    if (value.get<int64_t>() > 0 && value.get<int64_t>() <= INT32_MAX) return value.get<int64_t>();
  } else if (value.is_number_float()) {
    // Python configs occasionally carry 4.0 where Keras itself casts to int.
    const double d = value.get<double>();
    if (d >= 1 && d <= INT32_MAX && d == std::floor(d)) return static_cast<int64_t>(d);
  }
  throw Error(what + " must be a positive integer, not " +
              (value.is_number() ? value.dump() : type_name(value)));
}

int64_t positive_int_field(const json& object, const char* key, std::optional<int64_t> fallback,
                           const std::string& what) {
  const json* field = find_field(object, key);
  if (field == nullptr || field->is_null()) {
    if (fallback) return *fallback;
    throw Error(what + " has no " + quote_name(key) + " field");
  }
  return positive_int(*field, what + ": field " + quote_name(key));
}

// kernel_size: an int or a list of `rank` ints.
std::vector<int64_t> kernel_size_field(const json& config, size_t rank, const std::string& what) {
  const json& field = require_field(config, "kernel_size", what);
  const std::string field_what = what + ": field 'kernel_size'";
  if (field.is_number()) return std::vector<int64_t>(rank, positive_int(field, field_what));
  if (!field.is_array() || field.size() != rank) {
    throw Error(field_what + " must be an integer or a list of " + std::to_string(rank) + " integers");
  }
  std::vector<int64_t> sizes;
  for (const json& item : field) sizes.push_back(positive_int(item, field_what));
  return sizes;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) text += ",";
    text += shape[i] < 0 ? std::string("*") : std::to_string(shape[i]);
  }
  if (shape.size() == 1) text += ",";
  return text + ")";
}

bool starts_with(const std::string& text, const std::string& prefix) {
  return text.size() >= prefix.size() && text.compare(0, prefix.size(), prefix) == 0;
}

// ------------------------------------------------------------------------------------------------
// Keras conventions.

bool is_model_class(const std::string& class_name) {
  return class_name == "Functional" || class_name == "Sequential" || class_name == "Model";
}

// saving_lib's group names: snake_case(type(obj).__name__) (keras/src/utils/naming.py::to_snake_case;
// Keras 2: keras/utils/generic_utils.py::to_snake_case, which also keeps digits in the first rule).
std::string snake_case(const std::string& class_name, bool keras2) {
  static const std::regex non_word("[^A-Za-z0-9_]+");
  static const std::regex word_keras3("(.)([A-Z][a-z]+)");
  static const std::regex word_keras2("(.)([A-Z][a-z0-9]+)");
  static const std::regex lower_upper("([a-z])([A-Z])");
  std::string name = keras2 ? class_name : std::regex_replace(class_name, non_word, "");
  name = std::regex_replace(name, keras2 ? word_keras2 : word_keras3, "$1_$2");
  name = std::regex_replace(name, lower_upper, "$1_$2");
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (keras2 && !name.empty() && name[0] == '_') name = "private" + name;
  return name;
}

// Refuses quantized dtype policies (QuantizedDTypePolicy & co, names like "int8_from_float32").
void check_dtype_policy(const json& config, const std::string& what) {
  const json* dtype = find_field(config, "dtype");
  if (dtype == nullptr || dtype->is_null()) return;
  std::string policy_class;
  std::string name;
  if (dtype->is_string()) {
    name = dtype->get<std::string>();
  } else if (dtype->is_object()) {
    if (const json* cls = find_field(*dtype, "class_name"); cls && cls->is_string()) {
      policy_class = cls->get<std::string>();
    }
    if (const json* inner = find_field(*dtype, "config"); inner && inner->is_object()) {
      if (const json* n = find_field(*inner, "name"); n && n->is_string()) name = n->get<std::string>();
    }
  } else {
    throw Error(what + ": field 'dtype' must be a string or a dtype policy object, not " + type_name(*dtype));
  }
  const bool quantized = policy_class.find("Quantized") != std::string::npos ||
                         name.find("_from_") != std::string::npos || starts_with(name, "int8") ||
                         starts_with(name, "int4") || starts_with(name, "float8") || starts_with(name, "gptq");
  if (quantized) {
    throw Error(what + " uses the quantized dtype policy " + quote_name(name.empty() ? policy_class : name) +
                "; quantized layers are not supported (save the float model)");
  }
  if (const json* q = find_field(config, "quantization_config"); q && !q->is_null()) {
    throw Error(what + " carries a quantization_config; quantized layers are not supported");
  }
}

struct TensorRef {
  std::string layer;
  int64_t node = 0;
  int64_t tensor = 0;
};

// A [name, node_index, tensor_index(, kwargs)] list.
bool is_history_triple(const json& value) {
  return value.is_array() && value.size() >= 3 && value[0].is_string() && value[1].is_number_integer() &&
         value[2].is_number_integer();
}

TensorRef to_ref(const json& triple) {
  return TensorRef{triple[0].get<std::string>(), triple[1].get<int64_t>(), triple[2].get<int64_t>()};
}

// input_layers / output_layers: [[n,i,t], ...] (<= 3.10, Keras 2), a bare [n,i,t] (3.11+), or nested
// lists / dicts of those. "A list of length 3 whose first item is a string is a leaf" (keras map_tensors).
void collect_io(const json& value, std::vector<TensorRef>& out, const std::string& what, int depth) {
  if (depth > kMaxTensorSearchDepth) throw Error(what + " nests too deeply");
  if (is_history_triple(value) && value.size() == 3) {
    out.push_back(to_ref(value));
  } else if (value.is_array()) {
    for (const json& item : value) collect_io(item, out, what, depth + 1);
  } else if (value.is_object()) {
    for (const auto& [key, item] : value.items()) collect_io(item, out, what, depth + 1);
  } else {
    throw Error(what + " must list [layer_name, node_index, tensor_index] entries, found " + type_name(value));
  }
}

// Keras 3 node: every {"class_name": "__keras_tensor__", "config": {"keras_history": [...]}} in args then kwargs.
void collect_keras_tensors(const json& value, std::vector<TensorRef>& out, const std::string& what, int depth) {
  if (depth > kMaxTensorSearchDepth) throw Error(what + " nests too deeply");
  if (value.is_object()) {
    const json* cls = find_field(value, "class_name");
    if (cls != nullptr && cls->is_string() && *cls == "__keras_tensor__") {
      const json* config = find_field(value, "config");
      const json* history = config ? find_field(*config, "keras_history") : nullptr;
      if (history == nullptr || !is_history_triple(*history)) {
        throw Error(what + ": a __keras_tensor__ has no valid keras_history [layer, node, tensor]");
      }
      out.push_back(to_ref(*history));
      return;
    }
    for (const auto& [key, item] : value.items()) collect_keras_tensors(item, out, what, depth + 1);
  } else if (value.is_array()) {
    for (const json& item : value) collect_keras_tensors(item, out, what, depth + 1);
  }
}

// One list of input tensors per call of the layer. Keras 3 nodes are {"args": [...], "kwargs": {...}};
// Keras 2 nodes are lists of [name, node, tensor, kwargs].
std::vector<std::vector<TensorRef>> inbound_nodes(const json& entry, const std::string& what) {
  std::vector<std::vector<TensorRef>> nodes;
  const json* field = find_field(entry, "inbound_nodes");
  if (field == nullptr || field->is_null()) return nodes;
  if (!field->is_array()) throw Error(what + ": field 'inbound_nodes' must be a list, not " + type_name(*field));
  for (const json& node : *field) {
    std::vector<TensorRef> refs;
    if (node.is_object()) {
      if (const json* args = find_field(node, "args")) collect_keras_tensors(*args, refs, what, 0);
      if (const json* kwargs = find_field(node, "kwargs")) collect_keras_tensors(*kwargs, refs, what, 0);
    } else if (node.is_array()) {
      if (is_history_triple(node)) {
        refs.push_back(to_ref(node));  // a single call written without the outer list
      } else {
        for (const json& item : node) {
          if (!is_history_triple(item)) {
            throw Error(what + ": an inbound node entry is not [layer_name, node_index, tensor_index, kwargs]");
          }
          refs.push_back(to_ref(item));
        }
      }
    } else {
      throw Error(what + ": an inbound node must be an object or a list, not " + type_name(node));
    }
    nodes.push_back(std::move(refs));
  }
  return nodes;
}

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

std::string join(const std::vector<std::string>& items) {
  std::string text;
  for (size_t i = 0; i < items.size(); ++i) text += (i ? ", " : "") + items[i];
  return text;
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

// ------------------------------------------------------------------------------------------------
// Graph flattening.

enum class Format { KerasZip, LegacyH5 };

struct Pending {
  Layer layer;
  std::string local_name;  // the name inside its own (possibly nested) model
  std::string group;       // KerasZip: the layer's H5 group ("" = none found)
  std::string legacy_top;  // LegacyH5: the top-level model_weights group holding its variables
  bool legacy_nested = false;
};

struct ModelContext {
  std::string prefix;                      // "" at the top, "base/" inside a nested model "base"
  std::optional<std::string> bound_input;  // a nested model's input: the caller's tensor
  std::string container;                   // KerasZip: H5 group holding this model's layer groups
  std::string legacy_top;                  // LegacyH5: outermost nested model's name ("" at the top)
  int depth = 0;
  std::string what;                        // "model 'name'" for messages
};

class GraphBuilder {
 public:
  GraphBuilder(Format format, bool keras2, const h5::File& weights)
      : format_(format), keras2_(keras2), weights_(weights) {}

  // model_object: {"class_name": "Functional"|"Sequential", "config": {...}}.
  std::string expand(const json& model_object, const ModelContext& context) {
    if (context.depth > kMaxModelNesting) throw Error(context.what + " is nested too deeply");
    const std::string cls = string_field(model_object, "class_name", context.what);
    const json& config = require_object(require_field(model_object, "config", context.what),
                                        context.what + ": field 'config'");
    check_dtype_policy(config, context.what);
    if (cls == "Sequential") return expand_sequential(config, context);
    if (cls == "Functional" || cls == "Model") return expand_functional(config, context);
    throw Error(context.what + " is a " + quote_name(cls) +
                ", not a Functional or Sequential model (subclassed models cannot be read; "
                "rebuild the model with the functional API and save it again)");
  }

  std::vector<Pending> layers;
  std::vector<int64_t> input_shape;
  bool has_input = false;

 private:
  struct Entry {
    const json* object = nullptr;
    std::string name;
    std::string cls;
    std::vector<std::string> producers;  // local names, in call order
  };

  static std::string entry_name(const json& entry, const std::string& what) {
    if (const json* name = find_field(entry, "name"); name && name->is_string()) return name->get<std::string>();
    const json& config = require_field(entry, "config", what);
    return string_field(config, "name", what + ": layer config");
  }

  Entry read_entry(const json& item, size_t index, const ModelContext& context) const {
    const std::string what = context.what + ": layer #" + std::to_string(index);
    require_object(item, what);
    Entry entry;
    entry.object = &item;
    entry.cls = string_field(item, "class_name", what);
    entry.name = entry_name(item, what);
    if (entry.name.empty() || entry.name.find('/') != std::string::npos) {
      throw Error(what + " has an invalid name " + quote_name(entry.name));
    }
    require_object(require_field(item, "config", what), what + " (" + quote_name(entry.name) + "): field 'config'");
    return entry;
  }

  std::string layer_what(const ModelContext& context, const std::string& name, const std::string& cls) const {
    return "layer " + quote_name(context.prefix + name) + " (" + cls + ")";
  }

  // KerasZip: group of each entry of a model's layer list (§2.1 step 4, §2.3).
  std::vector<std::string> assign_groups(const std::vector<Entry>& entries, bool sequential,
                                         const ModelContext& context) const {
    std::vector<std::string> groups(entries.size());
    if (format_ != Format::KerasZip || context.container.empty()) return groups;
    // The `name` attribute Keras >= 3.6 writes on every `vars` group.
    std::map<std::string, std::string> by_name;
    std::set<std::string> ambiguous;
    std::map<std::string, std::string> name_of_group;
    for (const std::string& child : weights_.children(context.container)) {
      const std::string group = context.container + "/" + child;
      if (!weights_.is_group(group + "/vars")) continue;
      std::optional<std::string> name = weights_.string_attr(group + "/vars", "name");
      if (!name) continue;
      name_of_group[group] = *name;
      if (!by_name.emplace(*name, group).second) ambiguous.insert(*name);
    }
    std::map<std::string, int> used;
    for (size_t i = 0; i < entries.size(); ++i) {
      // Sequential.layers excludes the leading InputLayer; Functional.layers keeps it (§1.5, §2.3).
      if (sequential && i == 0 && entries[i].cls == "InputLayer") continue;
      std::string name = snake_case(entries[i].cls, keras2_);
      auto [it, fresh] = used.emplace(name, 0);
      if (!fresh) name += "_" + std::to_string(++it->second);
      const std::string expected = context.container + "/" + name;
      auto named = by_name.find(entries[i].name);
      if (named != by_name.end() && !ambiguous.count(entries[i].name)) {
        groups[i] = named->second;  // the name attribute wins over our counter
      } else if (weights_.is_group(expected)) {
        auto recorded = name_of_group.find(expected);
        if (recorded == name_of_group.end() || recorded->second == entries[i].name) groups[i] = expected;
        // else: that group belongs to another layer; weights will be reported missing if needed.
      }
    }
    return groups;
  }

  // The group holding a container model's layer groups: `layers` (Keras 2.15, 3.x) or
  // `_layer_checkpoint_dependencies` (Keras 2.12-2.14), §0.
  std::string layers_container(const std::string& group) const {
    if (format_ != Format::KerasZip || group.empty()) return "";
    if (weights_.is_group(group + "/_layer_checkpoint_dependencies")) return group + "/_layer_checkpoint_dependencies";
    if (weights_.is_group(group + "/layers")) return group + "/layers";
    return "";
  }

  std::string add_layer(Pending pending) {
    const std::string name = pending.layer.name;
    if (!names_.insert(name).second) throw Error("two layers are named " + quote_name(name));
    layers.push_back(std::move(pending));
    return name;
  }

  std::string emit_input(const json& entry, const std::string& local_name, const ModelContext& context) {
    const std::string what = layer_what(context, local_name, "InputLayer");
    if (has_input) throw Error(what + ": several inputs are not supported (the model has more than one input)");
    const json& config = require_field(entry, "config", what);
    const json* shape = find_field(config, "batch_shape");
    if (shape == nullptr || shape->is_null()) shape = find_field(config, "batch_input_shape");
    if (shape == nullptr || shape->is_null()) throw Error(what + " has no batch_shape / batch_input_shape");
    set_input_shape(*shape, what);
    check_dtype_policy(config, what);
    Pending pending;
    pending.layer.name = context.prefix + local_name;
    pending.layer.class_name = "InputLayer";
    pending.layer.config = config;
    pending.local_name = local_name;
    return add_layer(std::move(pending));
  }

  // A Keras 2 Sequential without an InputLayer entry: the shape comes from the first layer's
  // batch_input_shape or the model's build_input_shape (§1.5).
  std::string emit_synthetic_input(const std::string& name, const json& shape, const ModelContext& context) {
    const std::string what = layer_what(context, name, "InputLayer");
    if (has_input) throw Error(what + ": several inputs are not supported (the model has more than one input)");
    set_input_shape(shape, what);
    Pending pending;
    pending.layer.name = context.prefix + name;
    pending.layer.class_name = "InputLayer";
    pending.layer.config = json{{"name", name}, {"batch_shape", shape}, {"dtype", "float32"}, {"sparse", false}};
    pending.local_name = name;
    return add_layer(std::move(pending));
  }

  void set_input_shape(const json& shape, const std::string& what) {
    if (!shape.is_array() || shape.empty()) throw Error(what + ": the input shape must be a non-empty list");
    input_shape.clear();
    for (size_t i = 1; i < shape.size(); ++i) {
      const json& dim = shape[i];
      if (dim.is_null()) input_shape.push_back(-1);
      else if (dim.is_number_integer() && dim.get<int64_t>() >= 0) input_shape.push_back(dim.get<int64_t>());
      else throw Error(what + ": input shape entries must be null or non-negative integers, found " + dim.dump());
    }
    has_input = true;
  }

  std::string emit_leaf(const Entry& entry, std::vector<std::string> inputs, const ModelContext& context,
                        const std::string& group) {
    const std::string what = layer_what(context, entry.name, entry.cls);
    const json& config = require_field(*entry.object, "config", what);
    check_dtype_policy(config, what);
    Pending pending;
    pending.layer.name = context.prefix + entry.name;
    pending.layer.class_name = entry.cls;
    pending.layer.config = config;
    pending.layer.inputs = std::move(inputs);
    pending.local_name = entry.name;
    pending.group = group;
    pending.legacy_top = context.legacy_top.empty() ? entry.name : context.legacy_top;
    pending.legacy_nested = !context.legacy_top.empty();
    return add_layer(std::move(pending));
  }

  ModelContext child_context(const ModelContext& context, const Entry& entry, const std::string& input,
                             const std::string& group) const {
    ModelContext child;
    child.prefix = context.prefix + entry.name + "/";
    child.bound_input = input;
    child.container = layers_container(group);
    child.legacy_top = context.legacy_top.empty() ? entry.name : context.legacy_top;
    child.depth = context.depth + 1;
    child.what = "model " + quote_name(context.prefix + entry.name);
    return child;
  }

  std::string expand_functional(const json& config, const ModelContext& context) {
    const json& list = array_field(config, "layers", context.what);
    std::vector<TensorRef> model_inputs;
    std::vector<TensorRef> model_outputs;
    collect_io(require_field(config, "input_layers", context.what), model_inputs, context.what + ": input_layers", 0);
    collect_io(require_field(config, "output_layers", context.what), model_outputs,
               context.what + ": output_layers", 0);
    if (model_inputs.size() != 1) {
      std::vector<std::string> names;
      for (const TensorRef& ref : model_inputs) names.push_back(ref.layer);
      if (model_inputs.empty()) throw Error(context.what + " has no input");
      throw Error(context.what + ": several inputs are not supported (it has " + std::to_string(model_inputs.size()) +
                  ": " + join(names) + ")");
    }
    if (model_outputs.size() != 1) {
      if (model_outputs.empty()) throw Error(context.what + " has no output");
      throw Error(context.what + ": several outputs are not supported (it has " +
                  std::to_string(model_outputs.size()) + ")");
    }

    std::vector<Entry> entries;
    std::map<std::string, size_t> index_of;
    for (size_t i = 0; i < list.size(); ++i) {
      Entry entry = read_entry(list[i], i, context);
      const std::string what = layer_what(context, entry.name, entry.cls);
      const auto nodes = inbound_nodes(list[i], what);
      if (entry.cls == "InputLayer") {
        if (!nodes.empty() && !(nodes.size() == 1 && nodes[0].empty())) {
          throw Error(what + " has inbound nodes; an InputLayer takes none");
        }
      } else {
        if (nodes.empty()) throw Error(what + " is not connected to the graph (no inbound node)");
        if (nodes.size() > 1) {
          throw Error(what + " is called " + std::to_string(nodes.size()) +
                      " times; shared layers are not supported");
        }
        if (nodes[0].empty()) throw Error(what + " has no input tensor");
        for (const TensorRef& ref : nodes[0]) {
          if (ref.tensor != 0) {
            throw Error(what + " uses output #" + std::to_string(ref.tensor) + " of " + quote_name(ref.layer) +
                        "; layers with several outputs are not supported");
          }
          entry.producers.push_back(ref.layer);
        }
      }
      if (!index_of.emplace(entry.name, i).second) {
        throw Error(context.what + " has two layers named " + quote_name(entry.name));
      }
      entries.push_back(std::move(entry));
    }

    // Topological order, ties broken by list order (Keras lists them deepest-first already).
    const size_t n = entries.size();
    std::vector<size_t> pending_inputs(n, 0);
    std::vector<std::vector<size_t>> users(n);
    for (size_t i = 0; i < n; ++i) {
      std::set<size_t> distinct;
      for (const std::string& producer : entries[i].producers) {
        auto it = index_of.find(producer);
        if (it == index_of.end()) {
          throw Error(layer_what(context, entries[i].name, entries[i].cls) + " takes its input from " +
                      quote_name(producer) + ", which is not a layer of " + context.what);
        }
        distinct.insert(it->second);
      }
      pending_inputs[i] = distinct.size();
      for (size_t p : distinct) users[p].push_back(i);
    }
    std::priority_queue<size_t, std::vector<size_t>, std::greater<>> ready;
    for (size_t i = 0; i < n; ++i) {
      if (pending_inputs[i] == 0) ready.push(i);
    }
    std::vector<size_t> order;
    while (!ready.empty()) {
      const size_t i = ready.top();
      ready.pop();
      order.push_back(i);
      for (size_t user : users[i]) {
        if (--pending_inputs[user] == 0) ready.push(user);
      }
    }
    if (order.size() != n) throw Error(context.what + ": the layer graph has a cycle");

    const std::string& input_name = model_inputs[0].layer;
    auto input_it = index_of.find(input_name);
    if (input_it == index_of.end() || entries[input_it->second].cls != "InputLayer") {
      throw Error(context.what + ": input_layers names " + quote_name(input_name) + ", which is not an InputLayer of it");
    }

    const std::vector<std::string> groups = assign_groups(entries, false, context);
    std::map<std::string, std::string> resolved;  // local name -> flattened producer name
    for (size_t i : order) {
      const Entry& entry = entries[i];
      const std::string what = layer_what(context, entry.name, entry.cls);
      if (entry.cls == "InputLayer") {
        if (entry.name != input_name) {
          throw Error(what + " is not the model's input; several inputs are not supported");
        }
        resolved[entry.name] = context.bound_input ? *context.bound_input : emit_input(*entry.object, entry.name, context);
        continue;
      }
      std::vector<std::string> inputs;
      for (const std::string& producer : entry.producers) inputs.push_back(resolved.at(producer));
      if (is_model_class(entry.cls)) {
        if (inputs.size() != 1) {
          throw Error(what + " receives " + std::to_string(inputs.size()) +
                      " tensors; several inputs are not supported");
        }
        resolved[entry.name] = expand(*entry.object, child_context(context, entry, inputs[0], groups[i]));
      } else {
        resolved[entry.name] = emit_leaf(entry, std::move(inputs), context, groups[i]);
      }
    }
    auto output = resolved.find(model_outputs[0].layer);
    if (output == resolved.end()) {
      throw Error(context.what + ": output_layers names " + quote_name(model_outputs[0].layer) +
                  ", which is not a layer of it");
    }
    return output->second;
  }

  std::string expand_sequential(const json& config, const ModelContext& context) {
    const json& list = array_field(config, "layers", context.what);
    std::vector<Entry> entries;
    for (size_t i = 0; i < list.size(); ++i) entries.push_back(read_entry(list[i], i, context));
    const std::vector<std::string> groups = assign_groups(entries, true, context);
    std::optional<std::string> previous = context.bound_input;
    std::set<std::string> seen;
    for (size_t i = 0; i < entries.size(); ++i) {
      const Entry& entry = entries[i];
      const std::string what = layer_what(context, entry.name, entry.cls);
      if (!seen.insert(entry.name).second) throw Error(context.what + " has two layers named " + quote_name(entry.name));
      if (entry.cls == "InputLayer") {
        if (i != 0) throw Error(what + " is not the first layer of the Sequential model");
        if (!context.bound_input) previous = emit_input(*entry.object, entry.name, context);
        continue;
      }
      if (!previous) {
        // Keras 2 Sequential configs may have no InputLayer entry (§3.3).
        const json& layer_config = require_field(*entry.object, "config", what);
        const json* shape = find_field(layer_config, "batch_input_shape");
        if (shape == nullptr || shape->is_null()) shape = find_field(layer_config, "batch_shape");
        if (shape == nullptr || shape->is_null()) shape = find_field(config, "build_input_shape");
        if (shape == nullptr || shape->is_null()) {
          throw Error(context.what + " has no input shape (no InputLayer, batch_input_shape or build_input_shape)");
        }
        previous = emit_synthetic_input(entry.name + "_input", *shape, context);
      }
      if (is_model_class(entry.cls)) {
        previous = expand(*entry.object, child_context(context, entry, *previous, groups[i]));
      } else {
        previous = emit_leaf(entry, {*previous}, context, groups[i]);
      }
    }
    if (!previous) throw Error(context.what + " has no layers");
    return *previous;
  }

  Format format_;
  bool keras2_;
  const h5::File& weights_;
  std::set<std::string> names_;
};

// ------------------------------------------------------------------------------------------------
// Weights.

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

// ------------------------------------------------------------------------------------------------
// File formats.

bool is_keras2(const std::string& version) { return starts_with(version, "2.") || starts_with(version, "1."); }

Model finish(GraphBuilder& builder, std::string output, Format format, const h5::File& weights) {
  if (!builder.has_input) throw Error("the model has no InputLayer");
  Model model;
  model.output = std::move(output);
  model.input_shape = builder.input_shape;
  std::optional<LegacyWeights> legacy;
  if (format == Format::LegacyH5) legacy.emplace(weights);
  for (Pending& pending : builder.layers) {
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

std::string model_name(const json& top) {
  const json* config = find_field(top, "config");
  const json* name = config ? find_field(*config, "name") : nullptr;
  return name && name->is_string() ? name->get<std::string>() : "";
}

std::string bytes_to_string(const std::vector<uint8_t>& bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

Model read_keras_zip(const std::string& path) {
  ZipArchive zip(path);
  if (!zip.has("config.json")) {
    throw Error(path + ": the zip archive has no config.json, so it is not a Keras .keras file");
  }
  std::string keras_version;
  if (zip.has("metadata.json")) {
    const json metadata = parse_json(bytes_to_string(zip.read("metadata.json", kMaxJsonBytes)), path + ": metadata.json");
    if (const json* version = find_field(metadata, "keras_version"); version && version->is_string()) {
      keras_version = version->get<std::string>();
    }
  }
  const json top = parse_json(bytes_to_string(zip.read("config.json", kMaxJsonBytes)), path + ": config.json");
  require_object(top, path + ": config.json");
  if (!zip.has("model.weights.h5")) {
    if (zip.has("model.weights.npz")) throw Error(path + ": weights stored as model.weights.npz are not supported");
    for (const std::string& name : zip.member_names()) {
      if (name.size() > 13 && name.compare(name.size() - 13, 13, ".weights.json") == 0) {
        throw Error(path + ": sharded weights (" + name + ") are not supported; save without max_shard_size");
      }
    }
    throw Error(path + ": the archive has no model.weights.h5");
  }
  const h5::File weights = h5::File::open_image(zip.read("model.weights.h5", kMaxWeightsBytes), "model.weights.h5");
  GraphBuilder builder(Format::KerasZip, is_keras2(keras_version), weights);
  ModelContext context;
  context.what = "model " + quote_name(model_name(top));
  if (weights.is_group("/_layer_checkpoint_dependencies")) context.container = "/_layer_checkpoint_dependencies";
  else if (weights.is_group("/layers")) context.container = "/layers";
  std::string output = builder.expand(top, context);
  Model model = finish(builder, std::move(output), Format::KerasZip, weights);
  model.source_format = "keras-zip";
  model.keras_version = keras_version;
  model.name = model_name(top);
  return model;
}

Model read_legacy_h5(const std::string& path) {
  const h5::File file = h5::File::open_path(path, "");  // read_model() prefixes messages with the path
  const std::optional<std::string> model_config = file.string_attr("/", "model_config");
  if (!model_config) {
    if (file.string_list_attr("/", "layer_names") || file.string_list_attr("/model_weights", "layer_names")) {
      throw Error(path + ": a weights-only HDF5 file (no model_config attribute); save the full model with "
                         "model.save()");
    }
    throw Error(path + ": the HDF5 file has no model_config attribute, so it is not a Keras full-model .h5 file");
  }
  const std::string keras_version = file.string_attr("/", "keras_version").value_or("");
  const json top = parse_json(*model_config, path + ": model_config");
  require_object(top, path + ": model_config");
  if (!file.is_group("/model_weights")) throw Error(path + ": the HDF5 file has no model_weights group");
  GraphBuilder builder(Format::LegacyH5, is_keras2(keras_version), file);
  ModelContext context;
  context.what = "model " + quote_name(model_name(top));
  std::string output = builder.expand(top, context);
  Model model = finish(builder, std::move(output), Format::LegacyH5, file);
  model.source_format = "legacy-h5";
  model.keras_version = keras_version;
  model.name = model_name(top);
  return model;
}

Model read_any(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) throw Error(path + ": no such file");
  if (!std::filesystem::is_regular_file(status)) throw Error(path + ": not a regular file");
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) throw Error(path + ": cannot read the file size (" + ec.message() + ")");
  if (size == 0) throw Error(path + ": the file is empty");
  std::array<char, 8> magic{};
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open the file");
    in.read(magic.data(), magic.size());
  }
  static constexpr std::array<char, 8> kHdf5Signature{'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
  const bool zip = size >= 4 && magic[0] == 'P' && magic[1] == 'K' &&
                   ((magic[2] == 3 && magic[3] == 4) || (magic[2] == 5 && magic[3] == 6));
  if (zip) return read_keras_zip(path);
  if (size >= 8 && magic == kHdf5Signature) return read_legacy_h5(path);
  if (H5Fis_hdf5(path.c_str()) > 0) return read_legacy_h5(path);  // HDF5 behind a user block
  throw Error(path + ": neither a Keras .keras archive (zip) nor a Keras .h5 file (HDF5)");
}

}  // namespace

Model read_model(const std::string& path) {
  h5::QuietErrors quiet;
  try {
    return read_any(path);
  } catch (const Error& e) {
    // Every message names the file once.
    const std::string message = e.what();
    if (starts_with(message, path + ":")) throw;
    throw Error(path + ": " + message);
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    // nlohmann::json and the standard library must not escape as anything but effcam::Error.
    throw Error(path + ": unreadable model (" + e.what() + ")");
  }
}

}  // namespace effcam::keras
