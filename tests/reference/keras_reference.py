#!/usr/bin/python3
"""Independent Keras-semantics reference for effcam.

Reads a Keras model file the way Keras stores it (Keras 3 / Keras 2.12+ `.keras` zips, legacy `.h5` from
Keras 2.4-2.15 and the Keras 3 legacy writer; rules in ../shared/docs/keras-format.md), rebuilds the graph
in torch with Keras inference semantics (float64 by default) and reports probabilities, chosen layer
outputs and Grad-CAM gradients. It shares no code with the C++ converter/engine on purpose: it is the
golden reference they are checked against.

Run with Debian's /usr/bin/python3 (numpy, h5py, torch 1.13, PIL):
  keras_reference.py MODEL IMAGE_OR_NPY... --out OUT.json [--layers L1,L2] [--size H,W]
      [--grad-layer L --score logit|prob | --grads L1:SCORE,L2:SCORE...] [--grad-class C|argmax]
      [--dtype float64|float32] [--round-kernels fp16]

Inputs are PNG/JPEG files (converted to RGB, or L for one-channel models) or HxWxC .npy arrays, already at
the model's input size, as raw 0..255 values (the model's own Rescaling/Normalization layers apply).
--size gives H,W for models whose declared input size is not fixed. Layer names are bare Keras names or
"base/layer" inside a nested model; a nested model's own name stands for its output.

OUT.json: {"model", "keras_version", "dtype", "input_shape": [H, W, C], "images": [per image:
  {"image": path, "probabilities": [...] (the model output), "logits": [...] (input of the final softmax;
   null when the model does not end in softmax), "top1": index,
   "layers": {name: {"shape": [h, w, c], "values": [... row-major NHWC, batch dropped ...]}},
   "grad": {"layer", "class", "score": "logit"|"prob", "score_value", "activation": {shape, values},
            "gradient": {shape, values}}  (only with --grad-layer: d score[class] / d layer output),
   "grads": [the same, one per --grads entry, in its order, all from one forward pass]}]}
The "logit" score of a model without a final softmax is its raw output.
--round-kernels fp16 rounds every Conv2D / DepthwiseConv2D / Dense kernel to fp16 (nearest, ties to even) and
computes the rest as before: what an fp16 file can at best hold, the conditioning of a map under fp16 weights.
"""

import argparse
import io
import json
import math
import re
import sys
import zipfile

import h5py
import numpy as np
import torch
import torch.nn.functional as F


class KerasReferenceError(Exception):
    """A model, image or request this reference cannot handle; the message names the culprit."""


# ----------------------------------------------------------------------------------------------------------
# Small config helpers


def _decode(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _to_snake_case(name):
    # keras naming.to_snake_case: the H5 group of a layer is named after its class, not its .name.
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _config_array(value):
    """A config number, list or `__numpy__` object as a numpy array."""
    if isinstance(value, dict):
        if value.get("class_name") != "__numpy__":
            raise KerasReferenceError(f"unexpected config object {value.get('class_name')!r}")
        value = value["config"]["value"]
    return np.asarray(value, dtype=np.float64)


def _pair(value, what):
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return (value[0], value[1])
    raise KerasReferenceError(f"{what} must be an int or a pair of ints, got {value!r}")


def _keras_tensor_history(obj, found):
    """Collects the keras_history triples of every `__keras_tensor__` inside a Keras 3 node argument."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            found.append(obj["config"]["keras_history"])
        else:
            for value in obj.values():
                _keras_tensor_history(value, found)
    elif isinstance(obj, list):
        for value in obj:
            _keras_tensor_history(value, found)


def _inbound_producers(entry, layer_name):
    """Producer layer names of a Functional entry; both the Keras 3 and the Keras 2 node formats."""
    nodes = entry.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise KerasReferenceError(f"layer {layer_name} is called {len(nodes)} times (shared layers unsupported)")
    if not nodes:
        return []
    node = nodes[0]
    history = []
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        _keras_tensor_history(node.get("args", []), history)
        in_kwargs = []
        _keras_tensor_history(node.get("kwargs", {}), in_kwargs)
        if in_kwargs:
            raise KerasReferenceError(f"layer {layer_name} takes tensors as keyword arguments (unsupported)")
    else:  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
        history = [item[:3] for item in node]
    for producer, _node_index, tensor_index in history:
        if tensor_index != 0:
            raise KerasReferenceError(f"layer {layer_name} reads output {tensor_index} of {producer} "
                                      "(multi-output layers unsupported)")
    return [producer for producer, _, _ in history]


def _endpoint_names(spec):
    """Layer names of `input_layers`/`output_layers`: `[[name, node, tensor], ...]` or one bare triple."""
    if len(spec) == 3 and isinstance(spec[0], str):
        spec = [spec]
    return [item[0] for item in spec]


def _activation_name(value, layer_name):
    if value is None:
        return "linear"
    if isinstance(value, dict):  # Keras 3 may serialize built-in activations as function objects.
        value = value.get("config")
    if not isinstance(value, str):
        raise KerasReferenceError(f"layer {layer_name}: unsupported activation {value!r}")
    return value


# ----------------------------------------------------------------------------------------------------------
# Weight readers: map each layer of a (possibly nested) config to its variables, keyed by role.


_LEGACY_VARIABLE_ROLES = {"kernel": "kernel", "depthwise_kernel": "kernel", "bias": "bias", "gamma": "gamma",
                          "beta": "beta", "moving_mean": "moving_mean", "moving_variance": "moving_variance",
                          "mean": "mean", "variance": "variance", "count": "count"}


def _variable_roles(class_name, config):
    """Creation order of a layer's variables (Layer.save_own_variables: trainable ones first)."""
    if class_name in ("Conv2D", "DepthwiseConv2D", "Dense"):
        return ["kernel"] + (["bias"] if config.get("use_bias", True) else [])
    if class_name == "BatchNormalization":
        return ((["gamma"] if config.get("scale", True) else []) + (["beta"] if config.get("center", True) else [])
                + ["moving_mean", "moving_variance"])
    if class_name == "Normalization":
        return ["mean", "variance", "count"]
    return []


def _dataset_array(dataset):
    data = dataset[()]
    if _decode(dataset.attrs.get("dtype", "")) == "bfloat16":  # raw upper halves of float32 values
        data = (np.asarray(data).astype(np.uint32) << 16).view(np.float32)
    return np.asarray(data, dtype=np.float64)


class _ZipWeights:
    """`model.weights.h5` of a `.keras` archive: groups named snake_case(class) + per-container counter."""

    def __init__(self, h5file):
        self.root = self._layers_group(h5file, "the weights file")

    @staticmethod
    def _layers_group(group, where):
        for key in ("layers", "_layer_checkpoint_dependencies"):  # the latter: Keras 2.12-2.14
            if key in group:
                return group[key]
        raise KerasReferenceError(f"{where} has no layers/ group")

    def container_contexts(self, container, entries):
        used = {}
        contexts = []
        for entry in entries:
            base = _to_snake_case(entry["class_name"])
            count = used.get(base)
            used[base] = 0 if count is None else count + 1
            name = base if count is None else f"{base}_{count + 1}"
            layer_name = entry.get("name", entry["config"].get("name"))
            contexts.append(self._checked_group(container, name, layer_name))
        return contexts

    @staticmethod
    def _checked_group(container, group_name, layer_name):
        def recorded_name(group):
            vars_group = group.get("vars")
            return None if vars_group is None else vars_group.attrs.get("name")

        group = container.get(group_name)
        if group is not None and recorded_name(group) in (None, layer_name):
            return group
        # Keras 3.6+ records layer.name on each vars group: trust it over a counter that disagrees.
        for candidate in container.values():
            if isinstance(candidate, h5py.Group) and recorded_name(candidate) == layer_name:
                return candidate
        return None

    def nested_context(self, group, layer_name):
        if group is None:
            raise KerasReferenceError(f"nested model {layer_name} has no group in the weights file")
        return self._layers_group(group, f"nested model {layer_name}")

    def read(self, group, layer_name, class_name, config):
        roles = _variable_roles(class_name, config)
        if not roles:
            return {}
        if group is None or "vars" not in group:
            raise KerasReferenceError(f"layer {layer_name}: no weights group found")
        datasets = sorted(group["vars"].keys(), key=int)
        if class_name == "Normalization":
            roles = roles[:len(datasets)]
        if len(datasets) != len(roles):
            raise KerasReferenceError(f"layer {layer_name}: {len(datasets)} variables stored, {len(roles)} expected")
        return {role: _dataset_array(group["vars"][key]) for role, key in zip(roles, datasets)}


class _LegacyWeights:
    """`model_weights` of a legacy `.h5`: one group per top-level layer, variables matched by name."""

    def __init__(self, h5file):
        if "model_weights" not in h5file:
            raise KerasReferenceError("legacy .h5 file has no model_weights group")
        self.root = h5file["model_weights"]

    @staticmethod
    def _weight_names(group):
        if "weight_names" in group.attrs:
            chunks = [group.attrs["weight_names"]]
        else:  # names longer than the HDF5 header limit are split into weight_names0, weight_names1, ...
            chunks = []
            while f"weight_names{len(chunks)}" in group.attrs:
                chunks.append(group.attrs[f"weight_names{len(chunks)}"])
        return [_decode(name) for chunk in chunks for name in np.atleast_1d(chunk) if np.size(chunk)]

    def container_contexts(self, container, entries):
        if container is self.root:
            return [(self.root.get(entry.get("name", entry["config"].get("name"))), False) for entry in entries]
        return [(container, True) for _ in entries]  # all layers of a nested model share its one group

    def nested_context(self, context, layer_name):
        group, _ = context
        if group is None:
            raise KerasReferenceError(f"nested model {layer_name} has no group in model_weights")
        return group

    def read(self, context, layer_name, class_name, config):
        group, nested = context
        wanted = _variable_roles(class_name, config)
        if not wanted:
            return {}
        if group is None:
            raise KerasReferenceError(f"layer {layer_name}: no group in model_weights")
        found = {}
        for weight_name in self._weight_names(group):
            parts = weight_name.split("/")
            variable = parts[-1].split(":")[0]
            owner = parts[-2] if len(parts) >= 2 else None
            if nested and owner != layer_name:
                continue
            role = _LEGACY_VARIABLE_ROLES.get(variable)
            if role is None:
                raise KerasReferenceError(f"layer {layer_name}: unknown variable {weight_name}")
            found[role] = _dataset_array(group[weight_name])
        missing = [role for role in wanted if role not in found and role != "count"]
        if class_name == "Normalization" and len(missing) == 2:
            return {}
        if missing:
            raise KerasReferenceError(f"layer {layer_name}: variables {missing} not found")
        return found


# ----------------------------------------------------------------------------------------------------------
# Layer semantics (tensors are NHWC, the Keras layout; convolutions go through NCHW views)


def _tf_same_padding(size, kernel, stride):
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2  # the odd pixel goes to the bottom/right, as TensorFlow does


def _window_padding(x_nchw, kernel, strides, padding, layer_name):
    """F.pad order (left, right, top, bottom) for Keras "valid"/"same" on an NCHW tensor."""
    padding = padding.lower()
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding != "same":
        raise KerasReferenceError(f"layer {layer_name}: unsupported padding {padding!r}")
    top, bottom = _tf_same_padding(x_nchw.shape[2], kernel[0], strides[0])
    left, right = _tf_same_padding(x_nchw.shape[3], kernel[1], strides[1])
    return (left, right, top, bottom)


def _require_channels_last(node):
    data_format = node.config.get("data_format") or "channels_last"
    if data_format != "channels_last":
        raise KerasReferenceError(f"layer {node.name}: data_format {data_format} unsupported")


def _conv(node, x, depthwise):
    _require_channels_last(node)
    kernel = node.weights["kernel"]
    kh, kw = kernel.shape[0], kernel.shape[1]
    if [kh, kw] != list(_pair(node.config["kernel_size"], "kernel_size")):
        raise KerasReferenceError(f"layer {node.name}: kernel shape {tuple(kernel.shape)} disagrees with config")
    strides = _pair(node.config.get("strides", 1), "strides")
    if _pair(node.config.get("dilation_rate", 1), "dilation_rate") != (1, 1) or node.config.get("groups", 1) != 1:
        raise KerasReferenceError(f"layer {node.name}: dilation_rate and groups other than 1 are unsupported")
    x = x.permute(0, 3, 1, 2)
    channels = x.shape[1]
    if depthwise:  # (kh, kw, C, dm) -> (C*dm, 1, kh, kw); output channel c*dm + m, as Keras orders them
        weight = kernel.reshape(kh, kw, -1).permute(2, 0, 1).unsqueeze(1)
        groups = channels
    else:  # (kh, kw, in/groups, out) -> (out, in/groups, kh, kw)
        weight = kernel.permute(3, 2, 0, 1)
        groups = 1
    x = F.pad(x, _window_padding(x, (kh, kw), strides, node.config.get("padding", "valid"), node.name))
    y = F.conv2d(x, weight, node.weights.get("bias"), stride=strides, groups=groups)
    return y.permute(0, 2, 3, 1)


def _pool(node, x, kind):
    _require_channels_last(node)
    pool = _pair(node.config.get("pool_size", 2), "pool_size")
    strides = _pair(node.config.get("strides") or pool, "strides")
    x = x.permute(0, 3, 1, 2)
    pads = _window_padding(x, pool, strides, node.config.get("padding", "valid"), node.name)
    if kind == "max":
        y = F.max_pool2d(F.pad(x, pads, value=-math.inf), pool, strides)
    else:  # TF "same" average pooling divides by the number of real (unpadded) pixels in each window
        sums = F.avg_pool2d(F.pad(x, pads), pool, strides, divisor_override=1)
        ones = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype)
        counts = F.avg_pool2d(F.pad(ones, pads), pool, strides, divisor_override=1)
        y = sums / counts
    return y.permute(0, 2, 3, 1)


def _last_axis_only(node, x, axis):
    axes = axis if isinstance(axis, list) else [axis]
    if len(axes) != 1 or axes[0] % x.dim() != x.dim() - 1:
        raise KerasReferenceError(f"layer {node.name}: axis {axis} unsupported (only the channel axis)")


def _batch_norm(node, x):
    _last_axis_only(node, x, node.config.get("axis", -1))
    w = node.weights
    y = (x - w["moving_mean"]) / torch.sqrt(w["moving_variance"] + node.config.get("epsilon", 1e-3))
    if "gamma" in w:
        y = y * w["gamma"]
    if "beta" in w:
        y = y + w["beta"]
    return y


def _normalization(node, x):
    axis = node.config.get("axis", -1)
    kept = [a % x.dim() for a in (axis if isinstance(axis, list) else [axis])]
    broadcast = [x.shape[d] if d in kept else 1 for d in range(x.dim())]

    def statistic(key):
        value = node.config.get(key)
        value = _config_array(value) if value is not None else node.weights.get(key)
        if value is None:
            raise KerasReferenceError(f"layer {node.name}: no {key} in config or weights")
        value = torch.as_tensor(np.asarray(value), dtype=x.dtype)
        return value.reshape(()) if value.numel() == 1 else value.reshape(broadcast)

    mean, variance = statistic("mean"), statistic("variance")
    std = torch.clamp(torch.sqrt(variance), min=1e-7)  # keras backend.epsilon()
    return mean + x * std if node.config.get("invert", False) else (x - mean) / std


def _relu_layer(node, x):
    threshold = node.config.get("threshold", 0.0) or 0.0
    slope = node.config.get("negative_slope", 0.0) or 0.0
    y = torch.where(x >= threshold, x, slope * (x - threshold))
    max_value = node.config.get("max_value")
    return y if max_value is None else torch.clamp(y, max=max_value)


def _zero_padding(node, x):
    _require_channels_last(node)
    padding = node.config.get("padding", 1)
    if isinstance(padding, int):
        rows = cols = (padding, padding)
    elif all(isinstance(p, int) for p in padding):
        rows, cols = (padding[0], padding[0]), (padding[1], padding[1])
    else:
        rows, cols = _pair(padding[0], "padding"), _pair(padding[1], "padding")
    return F.pad(x, (0, 0, cols[0], cols[1], rows[0], rows[1]))


def _global_average_pool(node, x):
    _require_channels_last(node)
    return torch.mean(x, (1, 2), keepdim=node.config.get("keepdims", False))


def _hard_sigmoid(x, keras_major):
    if keras_major >= 3:
        return torch.clamp(x + 3.0, 0.0, 6.0) / 6.0
    return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)


def _activate(name, x, keras_major, layer_name):
    if name == "linear":
        return x
    if name == "relu":
        return torch.relu(x)
    if name == "relu6":
        return torch.clamp(x, 0.0, 6.0)
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name in ("swish", "silu"):
        return x * torch.sigmoid(x)
    if name == "hard_sigmoid":
        return _hard_sigmoid(x, keras_major)
    if name in ("hard_swish", "hard_silu"):
        return x * torch.clamp(x + 3.0, 0.0, 6.0) / 6.0
    if name == "tanh":
        return torch.tanh(x)
    if name == "softmax":
        return torch.softmax(x, dim=-1)
    raise KerasReferenceError(f"layer {layer_name}: unsupported activation {name!r}")


def _scale_offset(node, x):
    scale = torch.as_tensor(_config_array(node.config.get("scale", 1.0)), dtype=x.dtype)
    offset = torch.as_tensor(_config_array(node.config.get("offset", 0.0)), dtype=x.dtype)
    return x * scale + offset


_IDENTITY_LAYERS = {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
                    "GaussianDropout", "AlphaDropout", "ActivityRegularization"}

# Layer class -> (number of inputs or None for "two or more", function(node, inputs) -> output).
_LAYER_OPS = {
    "Conv2D": (1, lambda n, xs: _conv(n, xs[0], depthwise=False)),
    "DepthwiseConv2D": (1, lambda n, xs: _conv(n, xs[0], depthwise=True)),
    "Dense": (1, lambda n, xs: torch.matmul(xs[0], n.weights["kernel"]) + n.weights.get("bias", 0.0)),
    "BatchNormalization": (1, lambda n, xs: _batch_norm(n, xs[0])),
    "Rescaling": (1, lambda n, xs: _scale_offset(n, xs[0])),
    "Normalization": (1, lambda n, xs: _normalization(n, xs[0])),
    "Activation": (1, lambda n, xs: xs[0]),  # the activation itself is applied from config like any layer's
    "ReLU": (1, lambda n, xs: _relu_layer(n, xs[0])),
    "Add": (None, lambda n, xs: sum(xs[1:], xs[0])),
    "Multiply": (None, lambda n, xs: math.prod(xs[1:], start=xs[0])),
    "GlobalAveragePooling2D": (1, lambda n, xs: _global_average_pool(n, xs[0])),
    "MaxPooling2D": (1, lambda n, xs: _pool(n, xs[0], "max")),
    "AveragePooling2D": (1, lambda n, xs: _pool(n, xs[0], "average")),
    "ZeroPadding2D": (1, lambda n, xs: _zero_padding(n, xs[0])),
    "Reshape": (1, lambda n, xs: xs[0].reshape((xs[0].shape[0],) + tuple(n.config["target_shape"]))),
    "Flatten": (1, lambda n, xs: xs[0].reshape(xs[0].shape[0], -1)),  # NHWC row-major, as Keras flattens
}


def _is_identity_layer(class_name):
    # RandomCrop is no identity: at inference it center-crops / resizes.
    return class_name in _IDENTITY_LAYERS or (class_name.startswith("Random") and class_name != "RandomCrop")


# ----------------------------------------------------------------------------------------------------------
# The flattened graph


class _Node:
    def __init__(self, name, class_name, config, inputs, weights, shape=None):
        self.name = name  # "layer" at top level, "base/layer" inside a nested model named base
        self.shape = shape  # (H, W, C) of an InputLayer
        self.keras_name = name.rsplit("/", 1)[-1]
        self.class_name = class_name
        self.config = config
        self.inputs = inputs
        self.weights = weights
        self.activation = _activation_name(config.get("activation"), name) if "activation" in config else "linear"


_CONTAINER_CLASSES = ("Functional", "Sequential", "Model")


class KerasModel:
    """A Keras classifier rebuilt from its file; `run` evaluates it with Keras inference semantics."""

    def __init__(self, path, dtype=torch.float64, round_kernels=None):
        self.path = path
        self.dtype = dtype
        self.round_kernels = round_kernels  # None or a numpy dtype every kernel is rounded to once
        self.nodes = []
        self.aliases = {}  # qualified names of nested models / nested InputLayers -> the node they stand for
        config, self.keras_version, h5file, reader_class = self._open(path)
        try:
            self.keras_major = int(self.keras_version.split(".")[0]) if self.keras_version else 3
            self.reader = reader_class(h5file)
            outputs = self._flatten(config, "", None, self.reader.root)
        finally:
            h5file.close()
        if len(outputs) != 1:
            raise KerasReferenceError(f"model has {len(outputs)} outputs (one expected)")
        self.output = outputs[0]
        self.by_name = {node.name: node for node in self.nodes}

    # -- reading ------------------------------------------------------------------------------------------

    @staticmethod
    def _open(path):
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                if "config.json" not in names:
                    raise KerasReferenceError(f"{path}: zip without config.json is not a .keras model")
                if "model.weights.h5" not in names:
                    raise KerasReferenceError(f"{path}: no model.weights.h5 (npz or sharded weights unsupported)")
                config = json.loads(archive.read("config.json"))
                metadata = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
                weights = io.BytesIO(archive.read("model.weights.h5"))
            return config, str(metadata.get("keras_version", "")), h5py.File(weights, "r"), _ZipWeights
        try:
            h5file = h5py.File(path, "r")
        except OSError as error:
            raise KerasReferenceError(f"{path}: neither a .keras zip nor an HDF5 file ({error})") from None
        if "model_config" not in h5file.attrs:
            h5file.close()
            raise KerasReferenceError(f"{path}: HDF5 without model_config (weights-only files unsupported)")
        config = json.loads(_decode(h5file.attrs["model_config"]))
        return config, _decode(h5file.attrs.get("keras_version", "")), h5file, _LegacyWeights

    def _flatten(self, model, prefix, caller_inputs, weights_container):
        """Adds the nodes of a Functional/Sequential config; returns the node names of its outputs."""
        class_name, config = model["class_name"], model["config"]
        entries = config["layers"]
        if class_name == "Sequential":
            body = [e for e in entries if e["class_name"] != "InputLayer"]
            contexts = self.reader.container_contexts(weights_container, body)
            declared = [e for e in entries if e["class_name"] == "InputLayer"]
            input_name = prefix + (declared[0]["config"]["name"] if declared else "input")
            if caller_inputs is not None:
                current = self.aliases[input_name] = caller_inputs[0]
            else:
                shape = self._declared_shape(declared[0]["config"] if declared else config, "Sequential input")
                current = self._add_input(input_name, shape)
            for entry, context in zip(body, contexts):
                current = self._add_layer(entry, entry["config"]["name"], prefix, [current], context)
            return [current]
        if class_name not in ("Functional", "Model"):
            raise KerasReferenceError(f"unsupported model class {class_name}")
        contexts = self.reader.container_contexts(weights_container, entries)
        input_names = _endpoint_names(config["input_layers"])
        if caller_inputs is not None and len(caller_inputs) != len(input_names):
            raise KerasReferenceError(f"nested model {prefix} takes {len(input_names)} inputs")
        produced = {}
        for entry, context in zip(entries, contexts):
            name = entry.get("name", entry["config"].get("name"))
            if entry["class_name"] == "InputLayer":
                if caller_inputs is None:
                    produced[name] = self._add_input(prefix + name, self._declared_shape(entry["config"], name))
                else:
                    produced[name] = caller_inputs[input_names.index(name)]
                    self.aliases[prefix + name] = produced[name]
                continue
            sources = []
            for producer in _inbound_producers(entry, name):
                if producer not in produced:
                    raise KerasReferenceError(f"layer {name} reads {producer}, which is not defined before it")
                sources.append(produced[producer])
            produced[name] = self._add_layer(entry, name, prefix, sources, context)
        return [produced[name] for name in _endpoint_names(config["output_layers"])]

    @staticmethod
    def _declared_shape(config, what):
        shape = config.get("batch_shape") or config.get("batch_input_shape") or config.get("build_input_shape")
        if shape is None or len(shape) != 4:
            raise KerasReferenceError(f"{what}: no 4-D batch input shape declared (got {shape})")
        return tuple(shape[1:])

    def _add_input(self, name, shape):
        self.nodes.append(_Node(name, "InputLayer", {}, [], {}, shape))
        return name

    def _add_layer(self, entry, name, prefix, sources, context):
        class_name = entry["class_name"]
        qualified = prefix + name
        if class_name in _CONTAINER_CLASSES:
            inner = self._flatten(entry, qualified + "/", sources, self.reader.nested_context(context, name))
            if len(inner) != 1:
                raise KerasReferenceError(f"nested model {qualified} has {len(inner)} outputs (one expected)")
            self.aliases[qualified] = inner[0]
            return inner[0]
        if class_name in _LAYER_OPS:
            arity = _LAYER_OPS[class_name][0]
            if (arity is None and len(sources) < 2) or (arity is not None and len(sources) != arity):
                raise KerasReferenceError(f"layer {qualified} ({class_name}) has {len(sources)} inputs")
        elif not _is_identity_layer(class_name):
            raise KerasReferenceError(f"layer {qualified}: unsupported layer class {class_name}")
        config = entry["config"]
        raw = self.reader.read(context, name, class_name, config)
        if self.round_kernels is not None and "kernel" in raw:
            raw["kernel"] = raw["kernel"].astype(self.round_kernels).astype(np.float64)
        weights = {role: torch.as_tensor(value, dtype=self.dtype) for role, value in raw.items() if role != "count"}
        self.nodes.append(_Node(qualified, class_name, config, sources, weights))
        return qualified

    # -- evaluation ---------------------------------------------------------------------------------------

    @property
    def input_shape(self):
        """(H, W, C) of the single model input; H or W may be None."""
        inputs = [node for node in self.nodes if node.class_name == "InputLayer"]
        if len(inputs) != 1:
            raise KerasReferenceError(f"model has {len(inputs)} inputs (one expected)")
        return inputs[0].shape

    def resolve(self, name):
        """Qualified node name for a bare Keras layer name or "base/layer"."""
        if name in self.by_name:
            return name
        if name in self.aliases:
            return self.aliases[name]
        matches = [node.name for node in self.nodes if node.keras_name == name]
        matches += [target for alias, target in self.aliases.items() if alias.rsplit("/", 1)[-1] == name]
        matches = sorted(set(matches))
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise KerasReferenceError(f"no layer named {name!r}")
        raise KerasReferenceError(f"layer name {name!r} is ambiguous: {matches}")

    def _logit_source(self):
        """Node whose output is the pre-softmax logits, or None when the model does not end in softmax."""
        node = self.by_name[self.output]
        if node.activation == "softmax":
            return node.name
        if node.class_name == "Activation" and node.activation == "softmax":
            return node.inputs[0]
        return None

    def forward(self, image, on_output=None):
        """Evaluates the graph on one HxWxC image; returns {node name: output} (1xHxWxC tensors).

        on_output(name, tensor) may return a replacement for a node's output (used to start autograd at a
        layer, or to perturb it); the pre-activation of softmax outputs is kept under "<name>:logits".
        """
        values = {}
        logit_source = self._logit_source()
        for node in self.nodes:
            if node.class_name == "InputLayer":
                out = torch.as_tensor(np.asarray(image), dtype=self.dtype).unsqueeze(0)
            else:
                inputs = [values[source] for source in node.inputs]
                try:
                    out = _LAYER_OPS[node.class_name][1](node, inputs) if node.class_name in _LAYER_OPS else inputs[0]
                    if node.name == logit_source and node.activation == "softmax":
                        values[node.name + ":logits"] = out
                    out = _activate(node.activation, out, self.keras_major, node.name)
                except (RuntimeError, ValueError, KeyError, TypeError) as error:
                    raise KerasReferenceError(f"layer {node.name} ({node.class_name}) failed: {error}") from None
            if on_output is not None:
                out = on_output(node.name, out)
            values[node.name] = out
        if logit_source is not None and logit_source + ":logits" not in values:
            values[logit_source + ":logits"] = values[logit_source]
        return values

    def logits_key(self):
        source = self._logit_source()
        return None if source is None else source + ":logits"

    def run(self, image, layers=(), grad_layer=None, grad_class="argmax", score="logit", grads=()):
        """One image (HxWxC array of raw 0..255 values) -> the per-image result dict of the JSON output.

        grad_layer (with score) asks for one gradient, reported as "grad"; grads, a list of (layer, score), for
        several from the same forward pass, reported as "grads" in that order."""
        wanted = {name: self.resolve(name) for name in layers}
        requests = list(grads) + ([(grad_layer, score)] if grad_layer is not None else [])
        grad_nodes = {self.resolve(layer) for layer, _ in requests}
        tracked = {}

        def start_autograd(name, tensor):
            # A requested output that autograd does not track yet (nothing requested lies upstream of it) becomes
            # a leaf; one downstream of a leaf is already tracked and is differentiated as it is, so the paths
            # through it still reach the layers upstream.
            if name in grad_nodes:
                if not tensor.requires_grad:
                    tensor = tensor.detach().requires_grad_(True)
                tracked[name] = tensor
            return tensor

        with torch.set_grad_enabled(bool(requests)):
            values = self.forward(image, start_autograd if requests else None)
        probabilities = values[self.output].reshape(-1)
        logits_key = self.logits_key()
        logits = values[logits_key].reshape(-1) if logits_key else None
        result = {
            "probabilities": probabilities.tolist(),
            "logits": logits.tolist() if logits is not None else None,
            "top1": int(torch.argmax(probabilities)),
            "layers": {name: _tensor_json(values[node]) for name, node in wanted.items()},
        }
        gradients = self._gradients(values, tracked, requests, grad_class, logits_key)
        if grads:
            result["grads"] = gradients[:len(grads)]
        if grad_layer is not None:
            result["grad"] = gradients[-1]
        return result

    def _gradients(self, values, tracked, requests, grad_class, logits_key):
        """d score[class] / d layer output for each (layer, score) in requests: one backward pass per score kind."""
        found = [None] * len(requests)
        for score in dict.fromkeys(score for _, score in requests):
            if score == "logit":
                scores = values[logits_key] if logits_key else values[self.output]  # no softmax: the raw output
            elif score == "prob":
                scores = values[self.output]
            else:
                raise KerasReferenceError(f"unknown score kind {score!r} (logit or prob)")
            scores = scores.reshape(-1)
            cls = int(torch.argmax(values[self.output].reshape(-1))) if grad_class == "argmax" else int(grad_class)
            if not 0 <= cls < scores.numel():
                raise KerasReferenceError(f"class {cls} out of range (model has {scores.numel()} outputs)")
            at = [i for i, (_, wanted) in enumerate(requests) if wanted == score]
            inputs = [tracked[self.resolve(requests[i][0])] for i in at]
            gradients = torch.autograd.grad(scores[cls], inputs, retain_graph=True, allow_unused=True)
            for i, tensor, gradient in zip(at, inputs, gradients):
                layer = requests[i][0]
                if gradient is None:
                    raise KerasReferenceError(f"layer {layer} does not influence the model output")
                found[i] = {"layer": layer, "class": cls, "score": score, "score_value": float(scores[cls]),
                            "activation": _tensor_json(tensor.detach()), "gradient": _tensor_json(gradient)}
        return found


def _tensor_json(tensor):
    array = tensor.detach()[0]
    return {"shape": list(array.shape), "values": array.reshape(-1).tolist()}


def load_model(path, dtype=torch.float64, round_kernels=None):
    return KerasModel(path, dtype, round_kernels)


# ----------------------------------------------------------------------------------------------------------
# Inputs and CLI


def model_input_size(model, size=None):
    """(H, W, C) to feed: the declared input shape, completed (or checked) by an optional (H, W)."""
    height, width, channels = model.input_shape
    if channels not in (1, 3):
        raise KerasReferenceError(f"model input has {channels} channels (1 or 3 supported)")
    if size is not None:
        for declared, given, what in ((height, size[0], "height"), (width, size[1], "width")):
            if declared is not None and declared != given:
                raise KerasReferenceError(f"--size {what} {given} differs from the model's {declared}")
        height, width = size
    if height is None or width is None:
        raise KerasReferenceError("model input size is not fixed: pass --size H,W")
    return height, width, channels


def load_image(path, shape):
    """A PNG/JPEG (converted to RGB or L) or an HxWxC .npy, as raw 0..255 float64 values of exactly `shape`."""
    if path.endswith(".npy"):
        array = np.load(path, allow_pickle=False)
        if array.ndim == 2 and shape[2] == 1:
            array = array[:, :, None]
    else:
        from PIL import Image  # only needed for image files

        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB" if shape[2] == 3 else "L"))
        if array.ndim == 2:
            array = array[:, :, None]
    if tuple(array.shape) != tuple(shape):
        raise KerasReferenceError(f"{path}: shape {tuple(array.shape)} but the model takes {tuple(shape)}")
    if not np.issubdtype(array.dtype, np.number):
        raise KerasReferenceError(f"{path}: not a numeric array")
    return array.astype(np.float64)


def _parse_size(text):
    try:
        height, width = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W, got {text!r}") from None
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return height, width


def _parse_grads(text):
    requests = []
    for item in text.split(","):
        layer, _, score = item.rpartition(":")
        if not layer or score not in ("logit", "prob"):
            raise argparse.ArgumentTypeError(f"expected LAYER:logit or LAYER:prob, got {item!r}")
        requests.append((layer, score))
    return requests


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("images", nargs="+", help="PNG/JPEG at the model's input size, or HxWxC .npy (0..255)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--layers", default="", help="comma-separated layer names to dump")
    parser.add_argument("--size", type=_parse_size, help="H,W when the model's input size is not fixed")
    parser.add_argument("--grad-layer", help="layer whose output gradient to report")
    parser.add_argument("--grad-class", default="argmax", help="class index or 'argmax'")
    parser.add_argument("--score", choices=("logit", "prob"), default="logit")
    parser.add_argument("--grads", type=_parse_grads, default=[],
                        help="comma-separated LAYER:logit|prob gradients from one forward pass per image")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--round-kernels", choices=("fp16",), help="round every kernel to fp16 first")
    args = parser.parse_args(argv)
    if args.grad_class != "argmax" and not args.grad_class.isdigit():
        parser.error("--grad-class must be a class index or 'argmax'")
    try:
        model = load_model(args.model, torch.float64 if args.dtype == "float64" else torch.float32,
                           np.float16 if args.round_kernels == "fp16" else None)
        shape = model_input_size(model, args.size)
        layers = [name for name in args.layers.split(",") if name]
        results = []
        for path in args.images:
            result = {"image": path}
            result.update(model.run(load_image(path, shape), layers, args.grad_layer, args.grad_class, args.score,
                                    args.grads))
            results.append(result)
    except KerasReferenceError as error:
        print(f"keras_reference: {error}", file=sys.stderr)
        return 1
    document = {"model": args.model, "keras_version": model.keras_version, "dtype": args.dtype,
                "round_kernels": args.round_kernels,
                "input_shape": list(shape), "images": results}
    with open(args.out, "w") as out:
        json.dump(document, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
