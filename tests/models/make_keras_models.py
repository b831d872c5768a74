#!/usr/bin/python3
"""Writes EfficientNetV2 test models in the exact file layouts real Keras produces.

No Keras is available, so the layouts are reproduced from the Keras source (keras-team/keras v3.8.0 and
v2.15.0, summarised in shared/docs/keras-format.md) and checked against genuine files with
check_layout.py. The network is built the way keras/src/applications/efficientnet_v2.py builds it; the
weights are deterministic random numbers whose BatchNorm moving statistics are calibrated on a synthetic
image so that activations stay of order one through every block (a healthy network, not a trained one).

Files (all S variants share one set of weights):
  effv2s_functional.keras   Keras 3.8: Input -> efficientnetv2-s (nested, training=False) -> GAP -> Dropout -> Dense(7)
  effv2s_sequential.keras   Keras 3.8: Sequential([efficientnetv2-s, GAP, Dropout, Dense(7)])
  effv2s_functional.h5      the model of effv2s_functional.keras as Keras 2.15 `model.save("x.h5")` writes it
  effv2b0.keras             Keras 3.8: flat EfficientNetV2B0 with its own top (1000 classes), 224x224

Usage: /usr/bin/python3 make_keras_models.py OUTDIR [--only NAME ...] [--seed N] [--force]

A file whose `.stamp` companion records the same generator source and seed is left as it is (--force
rewrites it), so that ctest can use this script as a cheap fixture.
"""

import argparse
import copy
import hashlib
import io
import json
import math
import re
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

# ------------------------------------------------------------------------------------------------
# Architecture tables (keras/src/applications/efficientnet_v2.py DEFAULT_BLOCKS_ARGS and the
# EfficientNetV2* constructors). Block row: conv_type (0 MBConv, 1 FusedMBConv), kernel, repeats,
# input filters, output filters, expand ratio, se ratio, stride.

_B_BLOCKS = [
    (1, 3, 1, 32, 16, 1, 0, 1),
    (1, 3, 2, 16, 32, 4, 0, 2),
    (1, 3, 2, 32, 48, 4, 0, 2),
    (0, 3, 3, 48, 96, 4, 0.25, 2),
    (0, 3, 5, 96, 112, 6, 0.25, 1),
    (0, 3, 8, 112, 192, 6, 0.25, 2),
]

BLOCK_TABLES = {
    "efficientnetv2-s": [
        (1, 3, 2, 24, 24, 1, 0.0, 1),
        (1, 3, 4, 24, 48, 4, 0.0, 2),
        (1, 3, 4, 48, 64, 4, 0, 2),
        (0, 3, 6, 64, 128, 4, 0.25, 2),
        (0, 3, 9, 128, 160, 6, 0.25, 1),
        (0, 3, 15, 160, 256, 6, 0.25, 2),
    ],
    "efficientnetv2-m": [
        (1, 3, 3, 24, 24, 1, 0, 1),
        (1, 3, 5, 24, 48, 4, 0, 2),
        (1, 3, 5, 48, 80, 4, 0, 2),
        (0, 3, 7, 80, 160, 4, 0.25, 2),
        (0, 3, 14, 160, 176, 6, 0.25, 1),
        (0, 3, 18, 176, 304, 6, 0.25, 2),
        (0, 3, 5, 304, 512, 6, 0.25, 1),
    ],
    "efficientnetv2-l": [
        (1, 3, 4, 32, 32, 1, 0, 1),
        (1, 3, 7, 32, 64, 4, 0, 2),
        (1, 3, 7, 64, 96, 4, 0, 2),
        (0, 3, 10, 96, 192, 4, 0.25, 2),
        (0, 3, 19, 192, 224, 6, 0.25, 1),
        (0, 3, 25, 224, 384, 6, 0.25, 2),
        (0, 3, 7, 384, 640, 6, 0.25, 1),
    ],
    "efficientnetv2-b0": _B_BLOCKS,
    "efficientnetv2-b1": _B_BLOCKS,
    "efficientnetv2-b2": _B_BLOCKS,
    "efficientnetv2-b3": _B_BLOCKS,
}

# name -> (width coefficient, depth coefficient, default input size)
VARIANTS = {
    "efficientnetv2-b0": (1.0, 1.0, 224),
    "efficientnetv2-b1": (1.0, 1.1, 240),
    "efficientnetv2-b2": (1.1, 1.2, 260),
    "efficientnetv2-b3": (1.2, 1.4, 300),
    "efficientnetv2-s": (1.0, 1.0, 384),
    "efficientnetv2-m": (1.0, 1.0, 480),
    "efficientnetv2-l": (1.0, 1.0, 480),
}

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-3
DROP_CONNECT_RATE = 0.2
TOP_DROPOUT_RATE = 0.2

# Fixed save time so that the same seed gives byte-identical files (Keras stamps the wall clock).
SAVE_TIME = (2025, 3, 14, 9, 26, 53)
# Stand-in for Python's id() of the shared global DTypePolicy object, which Keras writes as
# "shared_object_id" on every serialization of that object after the first.
SHARED_POLICY_ID = 140215482671584


def round_filters(filters, width):
    depth_divisor = 8
    return int(max(depth_divisor, int(filters * width + depth_divisor / 2) // depth_divisor * depth_divisor))


def round_repeats(repeats, depth):
    return int(math.ceil(depth * repeats))


# ------------------------------------------------------------------------------------------------
# Graph description, independent of the Keras version that serializes it.

@dataclass
class Var:
    name: str  # Keras variable name: kernel, bias, gamma, beta, moving_mean, moving_variance
    trainable: bool
    shape: tuple
    value: np.ndarray = None


@dataclass
class Layer:
    name: str
    cls: str  # Keras class name
    inputs: list  # producer layer names; two for Add/Multiply
    in_shapes: list  # shapes without the batch axis, one per input
    out_shape: tuple
    params: dict = field(default_factory=dict)
    weights: list = field(default_factory=list)
    user_kwargs: dict = field(default_factory=dict)  # call arguments the user passed explicitly
    model: "Functional" = None  # set for a nested model used as a layer


@dataclass
class Functional:
    name: str
    layers: list  # in model.operations order (construction order for these graphs)
    input_name: str
    output_name: str


@dataclass
class Sequential:
    name: str
    input_layer: Layer  # the InputLayer Sequential.build prepends
    layers: list


class GraphBuilder:
    """Appends layers in call order and tracks output shapes, like calling Keras layers symbolically."""

    def __init__(self):
        self.layers = []
        self.shapes = {}

    def add(self, name, cls, inputs, out_shape, params=None, weights=None):
        layer = Layer(name, cls, list(inputs), [self.shapes[i] for i in inputs], tuple(out_shape),
                      params or {}, weights or [])
        self.layers.append(layer)
        self.shapes[name] = layer.out_shape
        return name

    def input(self, name, shape):
        layer = Layer(name, "InputLayer", [], [], tuple(shape))
        self.layers.append(layer)
        self.shapes[name] = layer.out_shape
        return name

    def conv(self, name, x, filters, kernel, strides=1, activation="linear", use_bias=False):
        h, w, c = self.shapes[x]
        weights = [Var("kernel", True, (kernel, kernel, c, filters))]
        if use_bias:
            weights.append(Var("bias", True, (filters,)))
        out = (-(-h // strides), -(-w // strides), filters)
        return self.add(name, "Conv2D", [x], out, dict(filters=filters, kernel=kernel, strides=strides,
                                                       activation=activation, use_bias=use_bias), weights)

    def dwconv(self, name, x, kernel, strides):
        h, w, c = self.shapes[x]
        out = (-(-h // strides), -(-w // strides), c)
        return self.add(name, "DepthwiseConv2D", [x], out,
                        dict(kernel=kernel, strides=strides, activation="linear", use_bias=False),
                        [Var("kernel", True, (kernel, kernel, c, 1))])

    def bn(self, name, x):
        c = self.shapes[x][-1]
        weights = [Var("gamma", True, (c,)), Var("beta", True, (c,)),
                   Var("moving_mean", False, (c,)), Var("moving_variance", False, (c,))]
        return self.add(name, "BatchNormalization", [x], self.shapes[x], {}, weights)

    def act(self, name, x, activation="swish"):
        return self.add(name, "Activation", [x], self.shapes[x], dict(activation=activation))

    def gap(self, name, x):
        return self.add(name, "GlobalAveragePooling2D", [x], self.shapes[x][-1:])

    def dropout(self, name, x, rate, noise_shape=None):
        return self.add(name, "Dropout", [x], self.shapes[x], dict(rate=rate, noise_shape=noise_shape))

    def dense(self, name, x, units, activation, effnet_init=False):
        c = self.shapes[x][-1]
        return self.add(name, "Dense", [x], (units,), dict(units=units, activation=activation,
                                                             effnet_init=effnet_init),
                        [Var("kernel", True, (c, units)), Var("bias", True, (units,))])


def build_efficientnetv2(name, input_shape, include_top, classes=1000, input_name="input_layer"):
    """Mirrors EfficientNetV2(...) with include_preprocessing=True, pooling=None."""
    width, depth, _ = VARIANTS[name]
    g = GraphBuilder()
    x = g.input(input_name, input_shape)
    if name.split("-")[-1].startswith("b") and input_shape[-1] == 3:
        x = g.add("rescaling", "Rescaling", [x], g.shapes[x], dict(scale=1.0 / 255, offset=0.0))
        x = g.add("normalization", "Normalization", [x], g.shapes[x],
                  dict(mean=[0.485, 0.456, 0.406], variance=[0.229**2, 0.224**2, 0.225**2]))
    else:
        x = g.add("rescaling", "Rescaling", [x], g.shapes[x], dict(scale=1.0 / 128.0, offset=-1))

    table = BLOCK_TABLES[name]
    x = g.conv("stem_conv", x, round_filters(table[0][3], width), 3, strides=2)
    x = g.bn("stem_bn", x)
    x = g.act("stem_activation", x)

    total_blocks = float(sum(row[2] for row in table))
    b = 0
    for i, (conv_type, kernel, repeats, fin, fout, expand, se_ratio, stride) in enumerate(table):
        fin, fout = round_filters(fin, width), round_filters(fout, width)
        for j in range(round_repeats(repeats, depth)):
            if j > 0:
                stride, fin = 1, fout
            block = mbconv_block if conv_type == 0 else fused_mbconv_block
            x = block(g, x, f"block{i + 1}{chr(j + 97)}_", fin, fout, expand, kernel, stride, se_ratio,
                      DROP_CONNECT_RATE * b / total_blocks)
            b += 1

    x = g.conv("top_conv", x, round_filters(1280, width), 1)
    x = g.bn("top_bn", x)
    x = g.act("top_activation", x)
    if include_top:
        x = g.gap("avg_pool", x)
        x = g.dropout("top_dropout", x, TOP_DROPOUT_RATE)
        x = g.dense("predictions", x, classes, "softmax", effnet_init=True)
    return Functional(name, g.layers, input_name, x)


def _squeeze_excite(g, x, p, fin, filters, se_ratio):
    filters_se = max(1, int(fin * se_ratio))
    se = g.gap(p + "se_squeeze", x)
    se = g.add(p + "se_reshape", "Reshape", [se], (1, 1, filters), dict(target_shape=(1, 1, filters)))
    se = g.conv(p + "se_reduce", se, filters_se, 1, activation="swish", use_bias=True)
    se = g.conv(p + "se_expand", se, filters, 1, activation="sigmoid", use_bias=True)
    return g.add(p + "se_excite", "Multiply", [x, se], g.shapes[x])


def _residual(g, x, block_input, p, fin, fout, stride, drop_rate):
    if stride == 1 and fin == fout:
        if drop_rate:
            x = g.dropout(p + "drop", x, drop_rate, noise_shape=(None, 1, 1, 1))
        x = g.add(p + "add", "Add", [x, block_input], g.shapes[x])
    return x


def mbconv_block(g, inputs, p, fin, fout, expand, kernel, stride, se_ratio, drop_rate):
    filters = fin * expand
    x = inputs
    if expand != 1:
        x = g.conv(p + "expand_conv", x, filters, 1)
        x = g.bn(p + "expand_bn", x)
        x = g.act(p + "expand_activation", x)
    x = g.dwconv(p + "dwconv2", x, kernel, stride)
    x = g.bn(p + "bn", x)
    x = g.act(p + "activation", x)
    if 0 < se_ratio <= 1:
        x = _squeeze_excite(g, x, p, fin, filters, se_ratio)
    x = g.conv(p + "project_conv", x, fout, 1)
    x = g.bn(p + "project_bn", x)
    return _residual(g, x, inputs, p, fin, fout, stride, drop_rate)


def fused_mbconv_block(g, inputs, p, fin, fout, expand, kernel, stride, se_ratio, drop_rate):
    filters = fin * expand
    x = inputs
    if expand != 1:
        x = g.conv(p + "expand_conv", x, filters, kernel, strides=stride)
        x = g.bn(p + "expand_bn", x)
        x = g.act(p + "expand_activation", x)
    if 0 < se_ratio <= 1:
        x = _squeeze_excite(g, x, p, fin, filters, se_ratio)
    x = g.conv(p + "project_conv", x, fout, 1 if expand != 1 else kernel, strides=1 if expand != 1 else stride)
    x = g.bn(p + "project_bn", x)
    if expand == 1:
        x = g.act(p + "project_activation", x)
    return _residual(g, x, inputs, p, fin, fout, stride, drop_rate)


def transfer_head(base, num_classes, input_name, model_name):
    """The usual transfer-learning wrapper: Input -> base(training=False) -> GAP -> Dropout(0.2) -> Dense."""
    g = GraphBuilder()
    x = g.input(input_name, base.layers[0].out_shape)
    base_layer = Layer(base.name, "Functional", [x], [g.shapes[x]], _layer(base, base.output_name).out_shape,
                       user_kwargs={"training": False}, model=base)
    g.layers.append(base_layer)
    g.shapes[base.name] = base_layer.out_shape
    x = g.gap("global_average_pooling2d", base.name)
    x = g.dropout("dropout", x, 0.2)
    x = g.dense("dense", x, num_classes, "softmax")
    return Functional(model_name, g.layers, input_name, x)


def sequential_of(functional, input_name, model_name):
    """Sequential([base, GAP, Dropout, Dense]) with the same layers as a transfer_head() model."""
    first = functional.layers[1]
    input_layer = Layer(input_name, "InputLayer", [], [], first.in_shapes[0])
    return Sequential(model_name, input_layer, functional.layers[1:])


def _layer(model, name):
    return next(layer for layer in model.layers if layer.name == name)


def all_layers(model):
    """Every leaf layer, nested models flattened."""
    for layer in model.layers:
        if layer.model is not None:
            yield from all_layers(layer.model)
        else:
            yield layer


def count_params(model):
    return sum(int(np.prod(v.shape)) for layer in all_layers(model) for v in layer.weights)


# ------------------------------------------------------------------------------------------------
# Weights: deterministic random values, then BatchNorm statistics calibrated by a forward pass.

def init_weights(model, rng):
    # Linear residual branches are damped like in trained EfficientNets so that stacked adds stay O(1).
    names = {layer.name for layer in all_layers(model)}
    for layer in all_layers(model):
        prefix = layer.name[:-len("project_bn")]
        damped = (layer.name.endswith("project_bn") and prefix + "add" in names
                  and prefix + "project_activation" not in names)
        for var in layer.weights:
            var.value = _initial_value(layer, var, damped, rng).astype(np.float32)


def _initial_value(layer, var, damped, rng):
    shape = var.shape
    if var.name == "kernel" and layer.cls in ("Conv2D", "DepthwiseConv2D"):
        kh, kw, cin, _ = shape
        fan_in = kh * kw * (1 if layer.cls == "DepthwiseConv2D" else cin)
        return rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)
    if var.name == "kernel":  # Dense; rescaled after calibration so that logits are O(1)
        return rng.standard_normal(shape) / math.sqrt(shape[0])
    if var.name == "bias" and layer.name.endswith("se_expand"):
        return 1.0 + 0.2 * rng.standard_normal(shape)  # gates mostly open, sigmoid ~0.6-0.8
    if var.name == "bias":
        return 0.1 * rng.standard_normal(shape)
    if var.name == "gamma":
        return (0.25 if damped else 1.0) * rng.uniform(0.5, 1.5, shape)
    if var.name == "beta":
        return 0.1 * rng.standard_normal(shape)
    return np.zeros(shape) if var.name == "moving_mean" else np.ones(shape)  # set by calibration


def synthetic_images(count, height, width, rng):
    """Smooth random colour blobs on a gradient, values in 0..255 (NHWC float32)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    images = np.empty((count, height, width, 3), np.float32)
    for n in range(count):
        img = np.zeros((height, width, 3))
        img += rng.uniform(40, 200, 3) * (0.6 + 0.4 * xx[..., None] / width)
        for _ in range(12):
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            radius = rng.uniform(0.05, 0.3) * min(height, width)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
            img += blob[..., None] * rng.uniform(-120, 120, 3)
        img += 8 * np.sin(xx / rng.uniform(3, 9))[..., None] * rng.uniform(-1, 1, 3)  # fine texture
        images[n] = np.clip(img, 0, 255)
    return images


def _same_pad(x, kernel, stride):
    """TensorFlow 'same' padding: the odd pixel goes to the bottom/right."""
    pads = []
    for size in (x.shape[3], x.shape[2]):  # F.pad wants the last axis first
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def _activation(x, name):
    if name == "swish":
        return F.silu(x)
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "softmax":
        return torch.softmax(x, dim=-1)
    assert name == "linear", name
    return x


class Calibrator:
    """Runs the graph in float64 torch (NCHW); BatchNorm layers take their moving statistics from the
    statistics of their actual input, slightly perturbed, before normalizing with them."""

    def __init__(self, rng, trace):
        self.rng = rng
        self.trace = trace  # list of (layer name, output std) for the report

    def run(self, model, x):
        values = {}
        for layer in model.layers:
            if layer.cls == "InputLayer":
                values[layer.name] = x
                continue
            inputs = [values[name] for name in layer.inputs]
            values[layer.name] = self.run(layer.model, inputs[0]) if layer.model else self.apply(layer, inputs)
            self.trace.append((layer.name, float(values[layer.name].std())))
        return values[model.output_name]

    def apply(self, layer, inputs):
        x = inputs[0]
        p = layer.params
        w = {v.name: torch.from_numpy(v.value.astype(np.float64)) for v in layer.weights}
        if layer.cls == "Rescaling":
            return x * p["scale"] + p["offset"]
        if layer.cls == "Normalization":
            mean = torch.tensor(p["mean"], dtype=x.dtype).view(1, -1, 1, 1)
            std = torch.tensor(p["variance"], dtype=x.dtype).sqrt().clamp(min=1e-7).view(1, -1, 1, 1)
            return (x - mean) / std
        if layer.cls == "Conv2D":
            y = F.conv2d(_same_pad(x, p["kernel"], p["strides"]), w["kernel"].permute(3, 2, 0, 1),
                         w.get("bias"), stride=p["strides"])
            return _activation(y, p["activation"])
        if layer.cls == "DepthwiseConv2D":
            return F.conv2d(_same_pad(x, p["kernel"], p["strides"]), w["kernel"].permute(2, 3, 0, 1),
                            stride=p["strides"], groups=x.shape[1])
        if layer.cls == "BatchNormalization":
            return self.batch_norm(layer, x, w)
        if layer.cls == "Activation":
            return _activation(x, p["activation"])
        if layer.cls == "GlobalAveragePooling2D":
            return x.mean(dim=(2, 3))
        if layer.cls == "Reshape":
            return x.view(x.shape[0], -1, 1, 1)
        if layer.cls == "Multiply":
            return inputs[0] * inputs[1]
        if layer.cls == "Add":
            return inputs[0] + inputs[1]
        if layer.cls == "Dropout":
            return x
        if layer.cls == "Dense":
            return self.dense(layer, x, w)
        raise ValueError(f"no forward rule for {layer.cls}")

    def batch_norm(self, layer, x, w):
        axes = (0, 2, 3) if x.dim() == 4 else (0,)
        mean = x.mean(dim=axes).numpy()
        var = x.var(dim=axes, unbiased=False).numpy()
        mean = mean + 0.05 * np.sqrt(var) * self.rng.standard_normal(mean.shape)
        var = var * np.exp(0.1 * self.rng.standard_normal(var.shape))
        stats = {"moving_mean": mean, "moving_variance": var}
        for v in layer.weights:
            if v.name in stats:
                v.value = stats[v.name].astype(np.float32)
                w[v.name] = torch.from_numpy(v.value.astype(np.float64))
        shape = (1, -1, 1, 1) if x.dim() == 4 else (1, -1)
        inv = (w["moving_variance"] + BN_EPSILON).rsqrt() * w["gamma"]
        return (x - w["moving_mean"].view(shape)) * inv.view(shape) + w["beta"].view(shape)

    def dense(self, layer, x, w):
        """Scales the kernel so that the logits spread over classes with a std of about 1.5."""
        kernel = layer.weights[0]
        logits = x @ w["kernel"]
        spread = float(logits.std(dim=1).mean())
        kernel.value = (kernel.value * (1.5 / spread)).astype(np.float32)
        logits = x @ torch.from_numpy(kernel.value.astype(np.float64)) + w["bias"]
        return _activation(logits, layer.params["activation"])


def calibrate(model, image_size, image_count, seed, label):
    rng = np.random.default_rng([seed, 1])
    images = synthetic_images(image_count, image_size, image_size, rng)
    trace = []
    x = torch.from_numpy(images.astype(np.float64)).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        probs = Calibrator(rng, trace).run(model, x).numpy()
    report_health(label, trace, probs)


def report_health(label, trace, probs):
    stds = dict(trace)
    stage_ends = {}
    for name, std in trace:
        m = re.match(r"block(\d+)", name)
        if m:
            stage_ends[f"stage{m.group(1)}"] = (name, std)
    print(f"  [{label}] stem_activation std {stds['stem_activation']:.3f}", end="")
    for stage, (name, std) in sorted(stage_ends.items()):
        print(f" | {stage} ({name}) {std:.3f}", end="")
    print(f" | top_activation {stds['top_activation']:.3f}")
    main_path = [(std, name) for name, std in trace if name.endswith(("activation", "_add"))]
    print(f"  [{label}] min/max std over activation/add outputs: {min(main_path)[0]:.3f} ({min(main_path)[1]}) "
          f"/ {max(main_path)[0]:.3f} ({max(main_path)[1]})")
    print(f"  [{label}] softmax max prob per image: {np.round(probs.max(axis=1), 3).tolist()}, "
          f"argmax {probs.argmax(axis=1).tolist()}")


# ------------------------------------------------------------------------------------------------
# Keras 3.8 serialization (keras/src/saving/serialization_lib.py, models/functional.py, layer get_config).

KERAS3_VERSION = "3.8.0"
KERAS2_VERSION = "2.15.0"


def _activation_name(name, keras3):
    # Keras 3 serializes the swish function under its function name "silu"; Keras 2 keeps "swish".
    return "silu" if (keras3 and name == "swish") else name


class Keras3Config:
    """Builds config.json like Keras 3.8 inside one ObjectSharingScope."""

    def __init__(self):
        self.policy_serialized = False

    def dtype_policy(self):
        policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
                  "registered_name": None}
        # Every layer shares the global policy object: the first serialization has no id, later ones do.
        if self.policy_serialized:
            policy["shared_object_id"] = SHARED_POLICY_ID
        self.policy_serialized = True
        return policy

    @staticmethod
    def initializer(class_name, config):
        return {"module": "keras.initializers", "class_name": class_name, "config": config,
                "registered_name": None}

    def conv_init(self):
        return self.initializer("VarianceScaling", {"seed": None, "scale": 2.0, "mode": "fan_out",
                                                    "distribution": "truncated_normal"})

    def layer_config(self, layer):
        p = layer.params
        if layer.cls == "InputLayer":
            return {"batch_shape": [None, *layer.out_shape], "dtype": "float32", "sparse": False,
                    "name": layer.name}
        if layer.cls == "Functional":
            return self.functional_config(layer.model)
        base = {"name": layer.name, "trainable": True, "dtype": self.dtype_policy()}
        if layer.cls == "Conv2D":
            k, s = p["kernel"], p["strides"]
            return {**base, "filters": p["filters"], "kernel_size": [k, k], "strides": [s, s], "padding": "same",
                    "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1,
                    "activation": _activation_name(p["activation"], True), "use_bias": p["use_bias"],
                    "kernel_initializer": self.conv_init(), "bias_initializer": self.initializer("Zeros", {}),
                    "kernel_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
                    "kernel_constraint": None, "bias_constraint": None}
        if layer.cls == "DepthwiseConv2D":
            k, s = p["kernel"], p["strides"]
            return {**base, "depth_multiplier": 1, "kernel_size": [k, k], "strides": [s, s], "padding": "same",
                    "data_format": "channels_last", "dilation_rate": [1, 1],
                    "activation": _activation_name(p["activation"], True), "use_bias": p["use_bias"],
                    "depthwise_initializer": self.conv_init(),
                    "bias_initializer": self.initializer("Zeros", {}), "depthwise_regularizer": None,
                    "bias_regularizer": None, "activity_regularizer": None, "depthwise_constraint": None,
                    "bias_constraint": None}
        if layer.cls == "BatchNormalization":
            return {**base, "axis": 3, "momentum": BN_MOMENTUM, "epsilon": BN_EPSILON, "center": True,
                    "scale": True, "beta_initializer": self.initializer("Zeros", {}),
                    "gamma_initializer": self.initializer("Ones", {}),
                    "moving_mean_initializer": self.initializer("Zeros", {}),
                    "moving_variance_initializer": self.initializer("Ones", {}), "beta_regularizer": None,
                    "gamma_regularizer": None, "beta_constraint": None, "gamma_constraint": None,
                    "synchronized": False}
        if layer.cls == "Activation":
            return {**base, "activation": _activation_name(p["activation"], True)}
        if layer.cls == "Rescaling":
            return {**base, "scale": p["scale"], "offset": p["offset"]}
        if layer.cls == "Normalization":
            return {**base, "axis": [3], "invert": False, "mean": np.array(p["mean"]).tolist(),
                    "variance": np.array(p["variance"]).tolist()}
        if layer.cls == "GlobalAveragePooling2D":
            return {**base, "data_format": "channels_last", "keepdims": False}
        if layer.cls == "Reshape":
            return {**base, "target_shape": list(p["target_shape"])}
        if layer.cls == "Dropout":
            noise = None if p["noise_shape"] is None else list(p["noise_shape"])
            return {**base, "rate": p["rate"], "seed": None, "noise_shape": noise}
        if layer.cls in ("Add", "Multiply"):
            return base
        if layer.cls == "Dense":
            if p["effnet_init"]:
                kernel_init = self.initializer("VarianceScaling", {"seed": None, "scale": 1.0 / 3.0,
                                                                   "mode": "fan_out", "distribution": "uniform"})
                bias_init = self.initializer("Constant", {"value": 0.0})
            else:
                kernel_init = self.initializer("GlorotUniform", {"seed": None})
                bias_init = self.initializer("Zeros", {})
            return {**base, "units": p["units"], "activation": p["activation"], "use_bias": True,
                    "kernel_initializer": kernel_init, "bias_initializer": bias_init, "kernel_regularizer": None,
                    "bias_regularizer": None, "kernel_constraint": None, "bias_constraint": None}
        raise ValueError(f"no Keras 3 config for {layer.cls}")

    @staticmethod
    def build_config(layer):
        """Layers that set built=True in __init__ (InputLayer, Activation, pooling, Dropout) have none;
        a Functional records build(None)."""
        if layer.cls in ("InputLayer", "Activation", "GlobalAveragePooling2D", "Dropout"):
            return None
        if layer.cls == "Functional":
            return {"input_shape": None}
        shapes = [[None, *s] for s in layer.in_shapes]
        return {"input_shape": shapes if layer.cls in ("Add", "Multiply") else shapes[0]}

    def serialize(self, layer):
        if layer.cls == "Functional":
            head = {"module": "keras.src.models.functional", "class_name": "Functional"}
        else:
            head = {"module": "keras.layers", "class_name": layer.cls}
        obj = {**head, "config": self.layer_config(layer),
               "registered_name": "Functional" if layer.cls == "Functional" else None}
        build = self.build_config(layer)
        if build is not None:
            obj["build_config"] = build
        return obj

    @staticmethod
    def call_kwargs(layer):
        """Keras 3 Layer.__call__ adds `training` when the call signature has a non-None default
        (Dropout: False) or the user passed it, then `mask` for layers whose call() takes one."""
        kwargs = dict(layer.user_kwargs)
        if layer.cls == "Dropout":
            kwargs.setdefault("training", False)
        if layer.cls in ("BatchNormalization", "Functional"):
            kwargs["mask"] = None
        return kwargs

    def functional_config(self, model):
        shapes = {layer.name: layer.out_shape for layer in model.layers}
        nested = {layer.name for layer in model.layers if layer.cls == "Functional"}

        def tensor(name):
            return {"class_name": "__keras_tensor__",
                    "config": {"shape": [None, *shapes[name]], "dtype": "float32", "keras_history": [name, 0, 0]}}

        layers = []
        for layer in model.layers:
            entry = self.serialize(layer)
            entry["name"] = layer.name
            if layer.cls == "InputLayer":
                entry["inbound_nodes"] = []
            else:
                args = [[tensor(n) for n in layer.inputs]] if len(layer.inputs) > 1 else [tensor(layer.inputs[0])]
                entry["inbound_nodes"] = [{"args": args, "kwargs": self.call_kwargs(layer)}]
            layers.append(entry)

        # input/output_layers count a nested Functional's built-in node (kept_nodes = 1).
        def endpoint(name):
            return [[name, 1 if name in nested else 0, 0]]

        return {"name": model.name, "trainable": True, "layers": layers,
                "input_layers": endpoint(model.input_name), "output_layers": endpoint(model.output_name)}

    def model_object(self, model):
        if isinstance(model, Functional):
            return {"module": "keras.src.models.functional", "class_name": "Functional",
                    "config": self.functional_config(model), "registered_name": "Functional",
                    "build_config": {"input_shape": None}}
        # Sequential.get_config serializes its layers (InputLayer first) before its own dtype.
        layers = [self.serialize(model.input_layer)] + [self.serialize(layer) for layer in model.layers]
        input_shape = [None, *model.input_layer.out_shape]
        config = {"name": model.name, "trainable": True, "dtype": self.dtype_policy(), "layers": layers,
                  "build_input_shape": input_shape}
        return {"module": "keras", "class_name": "Sequential", "config": config, "registered_name": None,
                "build_config": {"input_shape": input_shape}}


def to_snake_case(name):
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def save_keras3_state(h5, obj_name, own_vars, children, path):
    """saving_lib._save_state: the object's own `vars` group first, then its `layers` container."""
    group = h5.create_group(f"{path}/vars" if path else "vars")
    group.attrs["name"] = obj_name
    for index, var in enumerate(own_vars):
        group[str(index)] = var.value
    used = {}
    for child in children:
        name = to_snake_case(child.cls)
        if name in used:
            used[name] += 1
            name = f"{name}_{used[name]}"
        else:
            used[name] = 0
        child_path = f"{path}/layers/{name}" if path else f"layers/{name}"
        if child.model is not None:
            save_keras3_state(h5, child.name, [], child.model.layers, child_path)
        else:
            save_keras3_state(h5, child.name, _keras3_var_order(child), [], child_path)


def _keras3_var_order(layer):
    return [v for v in layer.weights if v.trainable] + [v for v in layer.weights if not v.trainable]


def write_keras3(path, model):
    config = Keras3Config().model_object(model)
    metadata = {"keras_version": KERAS3_VERSION, "date_saved": "%04d-%02d-%02d@%02d:%02d:%02d" % SAVE_TIME}

    weights = io.BytesIO()
    with h5py.File(weights, mode="w") as h5:
        # Functional.layers includes the InputLayer; Sequential.layers (model.layers here) does not.
        save_keras3_state(h5, model.name, [], model.layers, "")

    # saving_lib._save_model_to_fileobj: default ZipFile (ZIP_STORED); metadata and config through
    # ZipFile.open(..., "w"), the weights with writestr (stamped with the save time).
    with zipfile.ZipFile(path, "w") as zf:
        with zf.open("metadata.json", "w") as f:
            f.write(json.dumps(metadata).encode())
        with zf.open("config.json", "w") as f:
            f.write(json.dumps(config).encode())
        info = zipfile.ZipInfo("model.weights.h5", date_time=SAVE_TIME)
        info.external_attr = 0o600 << 16
        zf.writestr(info, weights.getvalue())


# ------------------------------------------------------------------------------------------------
# Keras 2.15 legacy .h5 (keras/saving/legacy/hdf5_format.py, saving_utils.model_metadata, engine/functional.py).

class Keras2Config:
    @staticmethod
    def initializer(class_name, config):
        return {"module": "keras.initializers", "class_name": class_name, "config": config,
                "registered_name": None}

    def conv_init(self):
        return self.initializer("VarianceScaling", {"scale": 2.0, "mode": "fan_out",
                                                    "distribution": "truncated_normal", "seed": None})

    def layer_config(self, layer):
        p = layer.params
        if layer.cls == "InputLayer":
            return {"batch_input_shape": [None, *layer.out_shape], "dtype": "float32", "sparse": False,
                    "ragged": False, "name": layer.name}
        if layer.cls == "Functional":
            return self.functional_config(layer.model)
        base = {"name": layer.name, "trainable": True, "dtype": "float32"}
        if layer.cls in ("Conv2D", "DepthwiseConv2D"):
            k, s = p["kernel"], p["strides"]
            config = {**base, "filters": p.get("filters"), "kernel_size": [k, k], "strides": [s, s],
                      "padding": "same", "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1,
                      "activation": p["activation"], "use_bias": p["use_bias"], "kernel_initializer": self.conv_init(),
                      "bias_initializer": self.initializer("Zeros", {}), "kernel_regularizer": None,
                      "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
                      "bias_constraint": None}
            if layer.cls == "DepthwiseConv2D":  # DepthwiseConv.get_config drops the kernel keys, appends these
                for key in ("filters", "kernel_initializer", "kernel_regularizer", "kernel_constraint"):
                    config.pop(key)
                config.update({"depth_multiplier": 1, "depthwise_initializer": self.conv_init(),
                               "depthwise_regularizer": None, "depthwise_constraint": None})
            return config
        if layer.cls == "BatchNormalization":
            return {**base, "axis": [3], "momentum": BN_MOMENTUM, "epsilon": BN_EPSILON, "center": True,
                    "scale": True, "beta_initializer": self.initializer("Zeros", {}),
                    "gamma_initializer": self.initializer("Ones", {}),
                    "moving_mean_initializer": self.initializer("Zeros", {}),
                    "moving_variance_initializer": self.initializer("Ones", {}), "beta_regularizer": None,
                    "gamma_regularizer": None, "beta_constraint": None, "gamma_constraint": None}
        if layer.cls == "Activation":
            return {**base, "activation": p["activation"]}
        if layer.cls == "Rescaling":
            return {**base, "scale": p["scale"], "offset": p["offset"]}
        if layer.cls == "GlobalAveragePooling2D":
            return {**base, "data_format": "channels_last", "keepdims": False}
        if layer.cls == "Reshape":
            return {**base, "target_shape": list(p["target_shape"])}
        if layer.cls == "Dropout":
            noise = None if p["noise_shape"] is None else list(p["noise_shape"])
            return {**base, "rate": p["rate"], "noise_shape": noise, "seed": None}
        if layer.cls in ("Add", "Multiply"):
            return base
        if layer.cls == "Dense":
            if p["effnet_init"]:
                kernel_init = self.initializer("VarianceScaling", {"scale": 1.0 / 3.0, "mode": "fan_out",
                                                                   "distribution": "uniform", "seed": None})
                bias_init = self.initializer("Constant", {"value": 0})  # tf.constant_initializer(0)
            else:
                kernel_init = self.initializer("GlorotUniform", {"seed": None})
                bias_init = self.initializer("Zeros", {})
            return {**base, "units": p["units"], "activation": p["activation"], "use_bias": True,
                    "kernel_initializer": kernel_init, "bias_initializer": bias_init, "kernel_regularizer": None,
                    "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
                    "bias_constraint": None}
        raise ValueError(f"no Keras 2 config for {layer.cls} {layer.name}")

    def functional_config(self, model):
        nested = {layer.name for layer in model.layers if layer.cls == "Functional"}

        def ref(name, kwargs):
            # A Keras 2 Functional owns node 0 (its own graph); the call inside the outer model is node 1.
            return [name, 1 if name in nested else 0, 0, kwargs]

        layers = []
        for layer in model.layers:
            entry = {"class_name": layer.cls, "config": self.layer_config(layer), "name": layer.name}
            if layer.cls == "InputLayer":
                entry["inbound_nodes"] = []
            else:
                entry["inbound_nodes"] = [[ref(n, dict(layer.user_kwargs)) for n in layer.inputs]]
            layers.append(entry)
        return {"name": model.name, "trainable": True, "layers": layers,
                "input_layers": [[model.input_name, 0, 0]],
                "output_layers": [[model.output_name, 1 if model.output_name in nested else 0, 0]]}


def _legacy_weight_list(layer):
    """Keras 2 `_legacy_weights`: trainable then non-trainable; for a model, over all its layers."""
    leaves = list(all_layers(layer.model)) if layer.model is not None else [layer]
    named = [(leaf, v) for leaf in leaves for v in leaf.weights]
    ordered = [item for item in named if item[1].trainable] + [item for item in named if not item[1].trainable]
    return [(f"{leaf.name}/{_keras2_var_name(leaf, v)}:0", v.value) for leaf, v in ordered]


def _keras2_var_name(layer, var):
    return "depthwise_kernel" if (layer.cls == "DepthwiseConv2D" and var.name == "kernel") else var.name


HDF5_OBJECT_HEADER_LIMIT = 64512


def _save_attributes(group, name, data):
    """hdf5_format.save_attributes_to_hdf5_group: a list of bytes (h5py stores variable-length ASCII);
    split into fixed-length numpy chunks name0, name1, ... only above the object-header limit."""
    data_npy = np.asarray(data)
    chunks = 1
    while any(part.nbytes > HDF5_OBJECT_HEADER_LIMIT for part in np.array_split(data_npy, chunks)):
        chunks += 1
    if chunks > 1:
        for index, part in enumerate(np.array_split(data_npy, chunks)):
            group.attrs[f"{name}{index}"] = part
    else:
        group.attrs[name] = data


def _save_weight_group(group, weights):
    _save_attributes(group, "weight_names", [name.encode("utf8") for name, _ in weights])
    for name, value in weights:
        dataset = group.create_dataset(name.encode("utf8"), value.shape, dtype=value.dtype)
        dataset[()] = value


def write_keras2_h5(path, model):
    with h5py.File(path, mode="w") as f:
        # model_metadata: plain strings stay str (UTF-8), dicts are json-encoded to bytes (ASCII).
        f.attrs["keras_version"] = KERAS2_VERSION
        f.attrs["backend"] = "tensorflow"
        model_config = {"class_name": "Functional", "config": Keras2Config().functional_config(model)}
        f.attrs["model_config"] = json.dumps(model_config).encode("utf8")

        weights = f.create_group("model_weights")
        _save_attributes(weights, "layer_names", [layer.name.encode("utf8") for layer in model.layers])
        weights.attrs["backend"] = b"tensorflow"
        weights.attrs["keras_version"] = KERAS2_VERSION.encode("utf8")
        for layer in sorted(model.layers, key=lambda layer: layer.name):
            _save_weight_group(weights.create_group(layer.name), _legacy_weight_list(layer))
        _save_weight_group(weights.create_group("top_level_model_weights"), [])


# ------------------------------------------------------------------------------------------------

S_INPUT = (300, 300, 3)
S_CLASSES = 7
B0_INPUT = (224, 224, 3)


def make_s_weights(seed):
    """The shared EfficientNetV2-S + 7-class head weights (Keras 3 names), calibrated at 300x300."""
    model = transfer_head(build_efficientnetv2("efficientnetv2-s", S_INPUT, include_top=False),
                          S_CLASSES, "input_layer_1", "functional")
    init_weights(model, np.random.default_rng([seed, 0]))
    calibrate(model, S_INPUT[0], 2, seed, "effv2s")
    return model


def copy_weights(source, target):
    values = {layer.name: layer.weights for layer in all_layers(source) if layer.weights}
    for layer in all_layers(target):
        if layer.weights:
            layer.weights = copy.deepcopy(values[layer.name])


def make_b0(seed):
    model = build_efficientnetv2("efficientnetv2-b0", B0_INPUT, include_top=True)
    init_weights(model, np.random.default_rng([seed, 2]))
    calibrate(model, B0_INPUT[0], 4, seed, "effv2b0")
    return model


def _stamp(seed):
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest() + f" seed={seed}\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="file names to write (default: all)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--force", action="store_true", help="rewrite files that are up to date")
    args = parser.parse_args(argv)

    files = ["effv2s_functional.keras", "effv2s_sequential.keras", "effv2s_functional.h5", "effv2b0.keras"]
    unknown = sorted(set(args.only or []) - set(files))
    if unknown:
        parser.error(f"unknown model file(s) {unknown}; choose from {files}")
    args.outdir.mkdir(parents=True, exist_ok=True)
    stamp = _stamp(args.seed)
    wanted = []
    for name in args.only or files:
        path = args.outdir / name
        stamp_path = path.with_name(name + ".stamp")
        if not args.force and path.exists() and stamp_path.exists() and stamp_path.read_text() == stamp:
            print(f"up to date: {path}")
        else:
            wanted.append(name)
    torch.set_num_threads(min(2, torch.get_num_threads()))

    started = time.time()
    s_model = make_s_weights(args.seed) if any(name.startswith("effv2s") for name in wanted) else None
    for name in files:
        if name not in wanted:
            continue
        path = args.outdir / name
        if name == "effv2s_functional.keras":
            model = s_model
            write_keras3(path, model)
        elif name == "effv2s_sequential.keras":
            model = sequential_of(s_model, "input_layer_1", "sequential")
            write_keras3(path, model)
        elif name == "effv2s_functional.h5":
            # Keras 2 auto-names inputs input_1, input_2, ... and functional models model, model_1, ...
            base = build_efficientnetv2("efficientnetv2-s", S_INPUT, include_top=False, input_name="input_1")
            model = transfer_head(base, S_CLASSES, "input_2", "model")
            copy_weights(s_model, model)
            write_keras2_h5(path, model)
        else:
            model = make_b0(args.seed)
            write_keras3(path, model)
        path.with_name(name + ".stamp").write_text(stamp)
        print(f"wrote {path} ({path.stat().st_size} bytes, {count_params(model)} parameters)")
    print(f"done in {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
