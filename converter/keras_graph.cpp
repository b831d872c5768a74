// Graph flattening: a model config (Functional, Sequential, nested models) -> one flat list of layers in
// topological order, each with its producers and, for .keras files, the H5 group of its variables.
// Section numbers refer to ../shared/docs/keras-format.md.
#include "converter/keras_graph.h"

#include <cctype>
#include <functional>
#include <map>
#include <optional>
#include <queue>
#include <regex>
#include <set>

#include "converter/keras_json.h"
#include "effcam/error.hpp"

namespace effcam::keras {

namespace {

using json = nlohmann::json;

constexpr int kMaxModelNesting = 32;
constexpr int kMaxTensorSearchDepth = 64;

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

}  // namespace

std::string model_name(const json& top) {
  const json* config = find_field(top, "config");
  const json* name = config ? find_field(*config, "name") : nullptr;
  return name && name->is_string() ? name->get<std::string>() : "";
}

FlatGraph flatten(const json& top, Format format, bool keras2, const h5::File& weights,
                  const std::string& container) {
  GraphBuilder builder(format, keras2, weights);
  ModelContext context;
  context.what = "model " + quote_name(model_name(top));
  context.container = container;
  FlatGraph graph;
  graph.output = builder.expand(top, context);
  graph.layers = std::move(builder.layers);
  graph.input_shape = std::move(builder.input_shape);
  graph.has_input = builder.has_input;
  return graph;
}

}  // namespace effcam::keras
