#!/usr/bin/python3
"""Checks of the Keras reference (keras_reference.py) and the test-image generator.

  /usr/bin/python3 tests/reference/test_keras_reference.py [-v]

* Layer semantics: small models are written in the real file layouts (Keras 3 `.keras` with DTypePolicy
  dicts, Keras 2.14 `.keras` with `_layer_checkpoint_dependencies`, legacy `.h5` with `:0` names, nested
  Functional/Sequential) and compared with a loop-based numpy evaluation written here from the TensorFlow /
  Keras definitions (TF's documented "same" padding rule, not the one the reference uses).
* Real files under ../shared (skipped with a note when absent): the Food-101 EfficientNetV2-B0 gives the
  results its SOURCES.md documents; the real Keras 2 classifiers give sane outputs; unsupported layers fail
  with the layer named; autograd gradients match central finite differences.
"""

import io
import json
import os
import sys
import tempfile
import unittest
import zipfile

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import keras_reference as kr  # noqa: E402
import make_test_images  # noqa: E402

SHARED = os.environ.get("EFFCAM_SHARED_DIR", os.path.join(HERE, "..", "..", "..", "shared"))


def read_bytes(path):
    with open(path, "rb") as file:
        return file.read()


def shared_path(relative):
    path = os.path.join(SHARED, relative)
    if not os.path.exists(path):
        raise unittest.SkipTest(f"{path} is absent (shared/ not beside the checkout)")
    return path


# ------------------------------------------------------------------------------------------------------------
# Independent numpy semantics (loops over output pixels)


def tf_same_pads(size, kernel, stride):
    # The rule as TensorFlow documents it ("Padding" in the nn guide).
    if size % stride == 0:
        total = max(kernel - stride, 0)
    else:
        total = max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def windows(x, kernel, stride, padding, fill):
    """Yields (i, j, patch) with the padded patch of every output position."""
    (kh, kw), (sh, sw) = kernel, stride
    if padding == "same":
        (top, bottom), (left, right) = tf_same_pads(x.shape[0], kh, sh), tf_same_pads(x.shape[1], kw, sw)
    else:
        top = bottom = left = right = 0
    padded = np.full((x.shape[0] + top + bottom, x.shape[1] + left + right, x.shape[2]), fill)
    padded[top:top + x.shape[0], left:left + x.shape[1]] = x
    out_h = (padded.shape[0] - kh) // sh + 1
    out_w = (padded.shape[1] - kw) // sw + 1
    for i in range(out_h):
        for j in range(out_w):
            yield i, j, padded[i * sh:i * sh + kh, j * sw:j * sw + kw]


def np_conv(x, kernel, bias, stride, padding, depthwise=False):
    kh, kw = kernel.shape[:2]
    results = {}
    for i, j, patch in windows(x, (kh, kw), (stride, stride), padding, 0.0):
        if depthwise:
            results[i, j] = (patch[..., None] * kernel).sum(axis=(0, 1)).reshape(-1)
        else:
            results[i, j] = np.tensordot(patch, kernel, axes=3)
    out = np.array([[results[i, j] for j in range(max(k[1] for k in results) + 1)]
                    for i in range(max(k[0] for k in results) + 1)])
    return out + (bias if bias is not None else 0.0)


def np_pool(x, size, stride, padding, kind):
    results = {}
    for i, j, patch in windows(x, (size, size), (stride, stride), padding, np.nan):
        flat = patch.reshape(-1, x.shape[2])
        results[i, j] = np.nanmax(flat, axis=0) if kind == "max" else np.nanmean(flat, axis=0)
    return np.array([[results[i, j] for j in range(max(k[1] for k in results) + 1)]
                     for i in range(max(k[0] for k in results) + 1)])


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_batch_norm(x, gamma, beta, mean, variance, epsilon):
    return gamma * (x - mean) / np.sqrt(variance + epsilon) + beta


def np_softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


# ------------------------------------------------------------------------------------------------------------
# Writers of the real layouts


def dtype_policy():
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None}


def k3_tensor(producer, node_index=0):
    return {"class_name": "__keras_tensor__",
            "config": {"shape": [None], "dtype": "float32", "keras_history": [producer, node_index, 0]}}


def k3_entry(class_name, name, config, inputs):
    """A Keras 3 Functional `layers` entry ({"args", "kwargs"} nodes); inputs=None for an InputLayer."""
    if class_name == "InputLayer":
        config = dict(config, dtype="float32", sparse=False, name=name)
        nodes = []
    else:
        config = dict(config, name=name, trainable=True, dtype=dtype_policy())
        tensors = [k3_tensor(p) for p in inputs]
        nodes = [{"args": [tensors] if len(tensors) > 1 else tensors, "kwargs": {}}]
    return {"module": "keras.layers", "class_name": class_name, "config": config, "registered_name": None,
            "name": name, "inbound_nodes": nodes}


def k2_entry(class_name, name, config, inputs):
    """A Keras 2 legacy Functional `layers` entry ([[name, node, tensor, kwargs], ...] nodes)."""
    if class_name == "InputLayer":
        config = {"batch_input_shape": config["batch_shape"], "dtype": "float32", "name": name}
        nodes = []
    else:
        config = dict(config, name=name, trainable=True, dtype="float32")
        nodes = [[[p, 0, 0, {}] for p in inputs]]
    return {"class_name": class_name, "config": config, "name": name, "inbound_nodes": nodes}


def write_keras_zip(path, config, groups, keras_version, root="layers", names=None):
    """groups: {"conv2d": [arrays]} or nested {"functional/layers/conv2d": [...]} under `root`."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        h5.create_group("vars")
        for group_path, arrays in groups.items():
            vars_group = h5.create_group(f"{root}/{group_path}/vars")
            if names is not None:
                vars_group.attrs["name"] = names[group_path]
            for index, array in enumerate(arrays):
                vars_group[str(index)] = np.asarray(array, dtype=np.float32)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": keras_version, "date_saved": "x"}))
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", buffer.getvalue())


def write_legacy_h5(path, config, layer_names, weights, keras_version, split_names=()):
    """weights: {layer group: [(weight name, array)]}; groups in split_names get chunked weight_names0/1."""
    with h5py.File(path, "w") as h5:
        h5.attrs["keras_version"] = keras_version
        h5.attrs["backend"] = "tensorflow"
        h5.attrs["model_config"] = json.dumps(config)
        root = h5.create_group("model_weights")
        root.attrs["layer_names"] = np.array([n.encode() for n in layer_names])
        for layer in layer_names:
            group = root.create_group(layer)
            entries = weights.get(layer, [])
            names = np.array([n.encode() for n, _ in entries])
            if layer in split_names:
                group.attrs["weight_names0"], group.attrs["weight_names1"] = names[:1], names[1:]
            else:
                group.attrs["weight_names"] = names if len(names) else np.array([], dtype=np.float64)
            for name, array in entries:
                group[name] = np.asarray(array, dtype=np.float32)


# ------------------------------------------------------------------------------------------------------------
# The flat test model: every supported layer type, odd and even sizes, asymmetric "same" padding


def stored(array):
    """The value a float32 weight file holds."""
    return np.asarray(array, dtype=np.float32).astype(np.float64)


def flat_model_layers(rng, keras2):
    """[(class, name, config, inputs, [(variable name, array)], h5 group)] for a 9x10x3 input."""
    def normal(*shape, scale=0.5):
        return stored(rng.normal(0.0, scale, size=shape))

    def bn(channels):
        return [("gamma", stored(rng.uniform(0.5, 1.5, channels))), ("beta", normal(channels)),
                ("moving_mean", normal(channels)), ("moving_variance", stored(rng.uniform(0.2, 2.0, channels)))]

    return [
        ("InputLayer", "img", {"batch_shape": [None, 9, 10, 3]}, None, [], "input_layer"),
        ("Rescaling", "rescale", {"scale": [1 / 255, 2 / 255, 1 / 128], "offset": -0.5}, ["img"], [], "rescaling"),
        ("Normalization", "norm", {"axis": [-1], "invert": False, "mean": [0.1, 0.2, -0.3],
                                   "variance": [0.04, 0.09, 0.25]}, ["rescale"], [], "normalization"),
        ("Conv2D", "conv_s2", {"filters": 4, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same",
                               "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1,
                               "activation": "linear", "use_bias": False},
         ["norm"], [("kernel", normal(3, 3, 3, 4))], "conv2d"),
        ("BatchNormalization", "bn1", {"axis": -1, "epsilon": 1e-3, "center": True, "scale": True},
         ["conv_s2"], bn(4), "batch_normalization"),
        ("Activation", "act1", {"activation": "hard_sigmoid"}, ["bn1"], [], "activation"),
        ("DepthwiseConv2D", "dw", {"kernel_size": [3, 3], "strides": [1, 1], "padding": "same",
                                   "depth_multiplier": 2, "data_format": "channels_last",
                                   "dilation_rate": [1, 1], "activation": "relu6", "use_bias": True},
         ["act1"], [("depthwise_kernel" if keras2 else "kernel", normal(3, 3, 4, 2, scale=3.0)),
                    ("bias", normal(8))], "depthwise_conv2d"),
        ("Conv2D", "pw", {"filters": 6, "kernel_size": [1, 1], "strides": [1, 1], "padding": "valid",
                          "activation": "swish" if keras2 else "silu", "use_bias": False},
         ["dw"], [("kernel", normal(1, 1, 8, 6))], "conv2d_1"),
        ("BatchNormalization", "bn2", {"axis": [3], "epsilon": 0.01, "center": False, "scale": True},
         ["pw"], [v for v in bn(6) if v[0] != "beta"], "batch_normalization_1"),
        ("GlobalAveragePooling2D", "se_squeeze", {"keepdims": False, "data_format": "channels_last"},
         ["bn2"], [], "global_average_pooling2d"),
        ("Reshape", "se_reshape", {"target_shape": [1, 1, 6]}, ["se_squeeze"], [], "reshape"),
        ("Conv2D", "se_conv", {"filters": 6, "kernel_size": [1, 1], "strides": [1, 1], "padding": "same",
                               "activation": "sigmoid", "use_bias": True},
         ["se_reshape"], [("kernel", normal(1, 1, 6, 6)), ("bias", normal(6))], "conv2d_2"),
        ("Multiply", "se_excite", {}, ["bn2", "se_conv"], [], "multiply"),
        ("Add", "add", {}, ["se_excite", "pw"], [], "add"),
        ("Activation", "act2", {"activation": "tanh" if keras2 else "hard_swish"}, ["add"], [], "activation_1"),
        ("ReLU", "relu", {"max_value": 0.6, "negative_slope": 0.1, "threshold": 0.05}, ["act2"], [], "re_lu"),
        ("ZeroPadding2D", "zpad", {"padding": [[1, 0], [0, 2]], "data_format": "channels_last"},
         ["relu"], [], "zero_padding2d"),
        ("MaxPooling2D", "maxpool", {"pool_size": [3, 3], "strides": [2, 2], "padding": "same",
                                     "data_format": "channels_last"}, ["zpad"], [], "max_pooling2d"),
        ("AveragePooling2D", "avgpool", {"pool_size": [3, 3], "strides": [1, 1], "padding": "same",
                                         "data_format": "channels_last"}, ["maxpool"], [], "average_pooling2d"),
        ("Flatten", "flat", {"data_format": "channels_last"}, ["avgpool"], [], "flatten"),
        ("Dropout", "drop", {"rate": 0.5}, ["flat"], [], "dropout"),
        ("Dense", "predictions", {"units": 5, "activation": "softmax", "use_bias": True},
         ["drop"], [("kernel", normal(72, 5)), ("bias", normal(5))], "dense"),
    ]


def np_flat_model(layers, image, keras2):
    """Reference-free evaluation of flat_model_layers: {name: HxWxC or 1-D array}, logits."""
    w = {name: dict(weights) for _, name, _, _, weights, _ in layers}
    cfg = {name: config for _, name, config, _, _, _ in layers}
    out = {"img": image}
    x = image * np.array(cfg["rescale"]["scale"]) - 0.5
    out["rescale"] = x
    x = (x - np.array(cfg["norm"]["mean"])) / np.sqrt(cfg["norm"]["variance"])
    out["norm"] = x
    out["conv_s2"] = x = np_conv(x, w["conv_s2"]["kernel"], None, 2, "same")
    b = w["bn1"]
    out["bn1"] = x = np_batch_norm(x, b["gamma"], b["beta"], b["moving_mean"], b["moving_variance"], 1e-3)
    out["act1"] = x = np.clip(0.2 * x + 0.5, 0, 1) if keras2 else np.minimum(np.maximum(x + 3, 0), 6) / 6
    kernel = w["dw"]["depthwise_kernel" if keras2 else "kernel"]
    out["dw"] = x = np.clip(np_conv(x, kernel, w["dw"]["bias"], 1, "same", depthwise=True), 0, 6)
    x = np_conv(x, w["pw"]["kernel"], None, 1, "valid")
    out["pw"] = pw = x * np_sigmoid(x)
    b = w["bn2"]
    out["bn2"] = bn2 = np_batch_norm(pw, b["gamma"], 0.0, b["moving_mean"], b["moving_variance"], 0.01)
    out["se_squeeze"] = squeeze = bn2.mean(axis=(0, 1))
    out["se_reshape"] = squeeze.reshape(1, 1, 6)
    out["se_conv"] = gate = np_sigmoid(squeeze @ w["se_conv"]["kernel"][0, 0] + w["se_conv"]["bias"]).reshape(1, 1, 6)
    out["se_excite"] = bn2 * gate
    out["add"] = x = bn2 * gate + pw
    out["act2"] = x = np.tanh(x) if keras2 else x * np.minimum(np.maximum(x + 3, 0), 6) / 6
    out["relu"] = x = np.minimum(np.where(x >= 0.05, x, 0.1 * (x - 0.05)), 0.6)
    out["zpad"] = x = np.pad(x, ((1, 0), (0, 2), (0, 0)))
    out["maxpool"] = x = np_pool(x, 3, 2, "same", "max")
    out["avgpool"] = x = np_pool(x, 3, 1, "same", "average")
    out["flat"] = out["drop"] = x = x.reshape(-1)
    logits = x @ w["predictions"]["kernel"] + w["predictions"]["bias"]
    out["predictions"] = np_softmax(logits)
    return out, logits


def flat_model_files(directory, rng):
    """Writes the flat model as a Keras 3.8 `.keras` and a Keras 2.15 legacy `.h5`; returns both layer lists."""
    k3_layers, k2_layers = flat_model_layers(rng, keras2=False), None
    k2_layers = [(c, n, cfg, i, [(v, a) for v, a in ws], g) for c, n, cfg, i, ws, g in k3_layers]
    # Keras 2 spelling of the version-dependent bits; the arrays stay identical.
    k2_layers = [(c, n, dict(cfg, activation="swish") if n == "pw" else
                  dict(cfg, activation="tanh") if n == "act2" else cfg, i,
                  [("depthwise_kernel", a) if v == "kernel" and c == "DepthwiseConv2D" else (v, a) for v, a in ws], g)
                 for c, n, cfg, i, ws, g in k2_layers]
    k3_config = {"module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional",
                 "config": {"name": "flat", "trainable": True,
                            "layers": [k3_entry(c, n, cfg, i) for c, n, cfg, i, _, _ in k3_layers],
                            "input_layers": [["img", 0, 0]], "output_layers": [["predictions", 0, 0]]}}
    keras_path = os.path.join(directory, "flat.keras")
    write_keras_zip(keras_path, k3_config, {g: [a for _, a in ws] for _, _, _, _, ws, g in k3_layers}, "3.8.0",
                    names={g: n for _, n, _, _, _, g in k3_layers})
    k2_config = {"class_name": "Functional",
                 "config": {"name": "flat", "layers": [k2_entry(c, n, cfg, i) for c, n, cfg, i, _, _ in k2_layers],
                            "input_layers": [["img", 0, 0]], "output_layers": [["predictions", 0, 0]]}}
    h5_path = os.path.join(directory, "flat.h5")
    write_legacy_h5(h5_path, k2_config, [n for _, n, _, _, _, _ in k2_layers],
                    {n: [(f"{n}/{v}:0", a) for v, a in ws] for _, n, _, _, ws, _ in k2_layers}, "2.15.0",
                    split_names=("bn1",))
    return keras_path, k3_layers, h5_path, k2_layers


# ------------------------------------------------------------------------------------------------------------
# The nested test model: base (Functional: conv, BN, swish) inside an outer Functional or Sequential


def nested_weights(rng):
    weights = {"stem": [("kernel", rng.normal(0, 0.5, (3, 3, 3, 4)))],
               "proj": [("kernel", rng.normal(0, 0.5, (1, 1, 4, 4))), ("bias", rng.normal(0, 0.5, 4))],
               "stem_bn": [("gamma", rng.uniform(0.5, 1.5, 4)), ("beta", rng.normal(0, 0.5, 4)),
                           ("moving_mean", rng.normal(0, 0.5, 4)), ("moving_variance", rng.uniform(0.2, 2, 4))],
               "head": [("kernel", rng.normal(0, 0.5, (4, 3))), ("bias", rng.normal(0, 0.5, 3))]}
    return {layer: [(name, stored(array)) for name, array in values] for layer, values in weights.items()}


def np_nested(weights, image):
    w = {layer: dict(values) for layer, values in weights.items()}
    x = np_conv(image / 255.0, w["stem"]["kernel"], None, 2, "same")
    b = w["stem_bn"]
    x = np_batch_norm(x, b["gamma"], b["beta"], b["moving_mean"], b["moving_variance"], 1e-3)
    x = x * np_sigmoid(x)
    x = np_conv(x, w["proj"]["kernel"], w["proj"]["bias"], 1, "valid")
    logits = x.mean(axis=(0, 1)) @ w["head"]["kernel"] + w["head"]["bias"]
    return x, np_softmax(logits)


NESTED_BASE = [("InputLayer", "base_in", {"batch_shape": [None, 8, 8, 3]}, None),
               ("Rescaling", "base_rescale", {"scale": 1 / 255, "offset": 0.0}, ["base_in"]),
               ("Conv2D", "stem", {"filters": 4, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same",
                                   "activation": "linear", "use_bias": False}, ["base_rescale"]),
               ("BatchNormalization", "stem_bn", {"axis": -1, "epsilon": 1e-3}, ["stem"]),
               ("Activation", "stem_act", {"activation": "silu"}, ["stem_bn"]),
               ("Conv2D", "proj", {"filters": 4, "kernel_size": [1, 1], "strides": [1, 1], "padding": "valid",
                                   "activation": "linear", "use_bias": True}, ["stem_act"])]
NESTED_HEAD = [("GlobalAveragePooling2D", "pool", {"keepdims": True}),  # Dense then maps (1, 1, C)
               ("Dense", "head", {"units": 3, "activation": "softmax", "use_bias": True})]


def nested_config(entry, keras3_style, bare_endpoints, outer_class):
    base_layers = [entry(c, n, cfg, i) for c, n, cfg, i in NESTED_BASE]
    endpoints = (lambda name: [name, 0, 0]) if bare_endpoints else (lambda name: [[name, 0, 0]])
    base = {"class_name": "Functional", "name": "base", "inbound_nodes": [],
            "config": {"name": "base", "layers": base_layers, "input_layers": endpoints("base_in"),
                       "output_layers": endpoints("proj")}}
    if outer_class == "Sequential":
        layers = [entry("InputLayer", "outer_in", {"batch_shape": [None, 8, 8, 3]}, None), base]
        layers += [entry(c, n, cfg, ["x"]) for c, n, cfg in NESTED_HEAD]
        for layer in layers:
            layer.pop("inbound_nodes")
            layer.pop("name")
        return {"class_name": "Sequential", "config": {"name": "outer", "layers": layers}}
    if keras3_style:
        base["inbound_nodes"] = [{"args": [k3_tensor("outer_in")], "kwargs": {"training": False}}]
    else:  # Keras 2 nested models own a node 0, so callers reference node 1
        base["inbound_nodes"] = [[["outer_in", 0, 0, {"training": False}]]]
    layers = [entry("InputLayer", "outer_in", {"batch_shape": [None, 8, 8, 3]}, None), base,
              entry("GlobalAveragePooling2D", "pool", NESTED_HEAD[0][2], ["base"]),
              entry("Dense", "head", NESTED_HEAD[1][2], ["pool"])]
    return {"class_name": "Functional",
            "config": {"name": "outer", "layers": layers, "input_layers": endpoints("outer_in"),
                       "output_layers": endpoints("head")}}


# ------------------------------------------------------------------------------------------------------------


class SyntheticFiles(unittest.TestCase):
    """Layer semantics and file layouts on hand-written files, against the numpy loops above."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        rng = np.random.RandomState(7)
        cls.keras_path, cls.k3_layers, cls.h5_path, cls.k2_layers = flat_model_files(cls.tmp.name, rng)
        cls.image = rng.uniform(0, 255, size=(9, 10, 3))
        cls.nested = nested_weights(rng)
        cls.nested_image = rng.uniform(0, 255, size=(8, 8, 3))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def check_flat(self, path, layers, keras2):
        model = kr.load_model(path)
        names = [n for _, n, _, _, _, _ in layers]
        result = model.run(self.image, layers=names)
        expected, logits = np_flat_model(layers, self.image, keras2)
        for name in names:
            got = result["layers"][name]
            self.assertEqual(got["shape"], list(np.shape(expected[name])), name)
            np.testing.assert_allclose(got["values"], np.ravel(expected[name]), rtol=1e-9, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(result["logits"], logits, rtol=1e-9)
        np.testing.assert_allclose(result["probabilities"], expected["predictions"], rtol=1e-9)
        self.assertEqual(result["top1"], int(np.argmax(logits)))

    def test_keras3_zip_layer_semantics(self):
        self.check_flat(self.keras_path, self.k3_layers, keras2=False)

    def test_keras2_legacy_h5_layer_semantics(self):
        self.check_flat(self.h5_path, self.k2_layers, keras2=True)

    def test_round_kernels_rounds_each_kernel_once_to_fp16(self):
        # The numpy loops on the layers with every kernel rounded to fp16, everything else exact.
        rounded = [(c, n, cfg, i, [(v, a.astype(np.float16).astype(np.float64) if v == "kernel" else a)
                                   for v, a in ws], g) for c, n, cfg, i, ws, g in self.k3_layers]
        self.assertTrue(any(not np.array_equal(a, b) for (_, _, _, _, ws, _), (_, _, _, _, rws, _)
                            in zip(self.k3_layers, rounded) for (_, a), (_, b) in zip(ws, rws)))
        expected, logits = np_flat_model(rounded, self.image, keras2=False)
        result = kr.load_model(self.keras_path, round_kernels=np.float16).run(self.image)
        np.testing.assert_allclose(result["logits"], logits, rtol=1e-9)
        exact = kr.load_model(self.keras_path).run(self.image)
        self.assertGreater(np.abs(np.array(exact["logits"]) - logits).max(), 1e-6)  # the rounding shows

    def test_same_padding_is_asymmetric(self):
        # 10 wide, 3x3 stride 2: TF pads 0 left / 1 right, so output column 0 sees input columns 0..2.
        model = kr.load_model(self.keras_path)
        conv = model.run(self.image, layers=["norm", "conv_s2"])["layers"]
        x = np.array(conv["norm"]["values"]).reshape(9, 10, 3)
        kernel = dict(self.k3_layers[3][4])["kernel"]
        # row 0 of the output: 9 high, total padding 2 -> 1 above, so rows -1..1 (row -1 is zero).
        expected = np.tensordot(x[0:2, 0:3], kernel[1:, :], axes=3)
        np.testing.assert_allclose(np.array(conv["conv_s2"]["values"]).reshape(5, 5, 4)[0, 0], expected, rtol=1e-9)

    def write_nested(self, kind):
        path = os.path.join(self.tmp.name, f"nested_{kind}")
        arrays = {layer: [a for _, a in values] for layer, values in self.nested.items()}
        base_groups = {"functional/layers/input_layer": [], "functional/layers/rescaling": [],
                       "functional/layers/conv2d": arrays["stem"],
                       "functional/layers/batch_normalization": arrays["stem_bn"],
                       "functional/layers/activation": [], "functional/layers/conv2d_1": arrays["proj"]}
        if kind == "keras3.11":  # bare endpoint triples, `name` attributes, layers/ root
            config = nested_config(k3_entry, True, True, "Functional")
            groups = dict(base_groups, input_layer=[], global_average_pooling2d=[], dense=arrays["head"])
            names = {"functional/layers/input_layer": "base_in", "functional/layers/rescaling": "base_rescale",
                     "functional/layers/conv2d": "stem", "functional/layers/batch_normalization": "stem_bn",
                     "functional/layers/activation": "stem_act", "functional/layers/conv2d_1": "proj",
                     "input_layer": "outer_in",
                     "global_average_pooling2d": "pool", "dense": "head"}
            write_keras_zip(path, config, groups, "3.11.0", names=names)
        elif kind == "keras2.14":  # Keras 2 node format, _layer_checkpoint_dependencies root, no name attrs
            config = nested_config(k2_entry, False, False, "Functional")
            groups = dict(base_groups, input_layer=[], global_average_pooling2d=[], dense=arrays["head"])
            write_keras_zip(path, config, groups, "2.14.0", root="_layer_checkpoint_dependencies")
        elif kind == "sequential3.8":  # Sequential.layers (the weight walk) skips the InputLayer entry
            config = nested_config(k3_entry, True, False, "Sequential")
            groups = dict(base_groups, global_average_pooling2d=[], dense=arrays["head"])
            write_keras_zip(path, config, groups, "3.8.0")
        else:  # legacy h5: one group for the whole base, variables listed out of layer order
            config = nested_config(k2_entry, False, False, "Functional")
            base_vars = [(f"stem_bn/{v}:0", a) for v, a in self.nested["stem_bn"][::-1]]
            base_vars.insert(2, ("stem/kernel:0", arrays["stem"][0]))
            base_vars[1:1] = [(f"proj/{v}:0", a) for v, a in self.nested["proj"]]
            write_legacy_h5(path, config, ["outer_in", "base", "pool", "head"],
                            {"base": base_vars, "head": [(f"head/{v}:0", a) for v, a in self.nested["head"]]},
                            "2.8.0")
        return path

    def test_nested_models_in_every_layout(self):
        features, probabilities = np_nested(self.nested, self.nested_image)
        for kind in ("keras3.11", "keras2.14", "sequential3.8", "legacy"):
            with self.subTest(kind=kind):
                model = kr.load_model(self.write_nested(kind))
                result = model.run(self.nested_image, layers=["base/proj", "proj", "base", "pool"])
                self.assertEqual(result["layers"]["pool"]["shape"], [1, 1, 4])
                for name in ("base/proj", "proj", "base"):
                    self.assertEqual(result["layers"][name]["shape"], [4, 4, 4])
                    np.testing.assert_allclose(result["layers"][name]["values"], features.ravel(), rtol=1e-9)
                np.testing.assert_allclose(result["probabilities"], probabilities, rtol=1e-9)

    def test_recorded_layer_name_beats_counter(self):
        # Keras 3.6+ records layer.name on each vars group; when the counter-derived group belongs to another
        # layer, the reader must follow the recorded name.
        path = os.path.join(self.tmp.name, "swapped.keras")
        config = nested_config(k3_entry, True, True, "Functional")
        wrong = np.zeros((3, 3, 3, 4))
        arrays = {layer: [a for _, a in values] for layer, values in self.nested.items()}
        groups = {"input_layer": [], "global_average_pooling2d": [], "dense": arrays["head"],
                  "functional/layers/input_layer": [], "functional/layers/rescaling": [],
                  "functional/layers/conv2d": [wrong], "functional/layers/conv2d_7": arrays["stem"],
                  "functional/layers/batch_normalization": arrays["stem_bn"], "functional/layers/activation": [],
                  "functional/layers/conv2d_1": arrays["proj"]}
        names = {"input_layer": "outer_in", "global_average_pooling2d": "pool", "dense": "head",
                 "functional/layers/input_layer": "base_in", "functional/layers/rescaling": "base_rescale",
                 "functional/layers/conv2d": "old_conv", "functional/layers/conv2d_7": "stem",
                 "functional/layers/batch_normalization": "stem_bn", "functional/layers/activation": "stem_act",
                 "functional/layers/conv2d_1": "proj"}
        write_keras_zip(path, config, groups, "3.8.0", names=names)
        _, probabilities = np_nested(self.nested, self.nested_image)
        np.testing.assert_allclose(kr.load_model(path).run(self.nested_image)["probabilities"], probabilities,
                                   rtol=1e-9)

    def edited_copy(self, edit):
        """The flat .keras model with edit(config layers) applied to its config.json."""
        path = os.path.join(self.tmp.name, "edited.keras")
        with zipfile.ZipFile(self.keras_path) as source, zipfile.ZipFile(path, "w") as target:
            config = json.loads(source.read("config.json"))
            edit(config["config"]["layers"])
            for member in source.namelist():
                target.writestr(member, json.dumps(config) if member == "config.json" else source.read(member))
        return path

    def test_errors_name_the_problem(self):
        model = kr.load_model(self.keras_path)
        with self.assertRaisesRegex(kr.KerasReferenceError, "no layer named 'nope'"):
            model.run(self.image, layers=["nope"])
        with self.assertRaisesRegex(kr.KerasReferenceError, r"img.png.npy: shape \(4, 4, 3\)"):
            np.save(os.path.join(self.tmp.name, "img.png.npy"), np.zeros((4, 4, 3)))
            kr.load_image(os.path.join(self.tmp.name, "img.png.npy"), (9, 10, 3))
        with self.assertRaisesRegex(kr.KerasReferenceError, "layer act1: unsupported layer class UpSampling2D"):
            kr.load_model(self.edited_copy(lambda layers: layers[5].update(class_name="UpSampling2D")))
        dilated = self.edited_copy(lambda layers: layers[3]["config"].update(dilation_rate=[2, 2]))
        with self.assertRaisesRegex(kr.KerasReferenceError, "layer conv_s2: dilation_rate and groups other"):
            kr.load_model(dilated).run(self.image)
        with self.assertRaisesRegex(kr.KerasReferenceError, "neither a .keras zip nor an HDF5"):
            kr.load_model(os.path.join(self.tmp.name, "img.png.npy"))

    def test_float32_option_close_to_float64(self):
        exact = kr.load_model(self.keras_path).run(self.image)["probabilities"]
        single = kr.load_model(self.keras_path, torch.float32).run(self.image)["probabilities"]
        np.testing.assert_allclose(single, exact, rtol=1e-4, atol=1e-6)
        self.assertNotEqual(single, exact)

    def test_cli_writes_the_documented_json(self):
        image = os.path.join(self.tmp.name, "input.npy")
        np.save(image, self.image)
        out = os.path.join(self.tmp.name, "out.json")
        self.assertEqual(kr.main([self.keras_path, image, "--out", out, "--layers", "bn1,flat",
                                  "--grad-layer", "avgpool", "--grad-class", "2", "--score", "prob"]), 0)
        document = json.loads(read_bytes(out))
        result = document["images"][0]
        self.assertEqual(result["image"], image)
        self.assertEqual(result["layers"]["bn1"]["shape"], [5, 5, 4])
        self.assertEqual(result["grad"]["class"], 2)
        self.assertEqual(result["grad"]["gradient"]["shape"], [3, 4, 6])
        self.assertAlmostEqual(result["grad"]["score_value"], result["probabilities"][2], places=12)
        self.assertEqual(kr.main([self.keras_path, image, "--out", out, "--grad-class", "2",
                                  "--grads", "bn1:logit,avgpool:prob"]), 0)
        grads = json.loads(read_bytes(out))["images"][0]["grads"]
        self.assertEqual([(g["layer"], g["score"]) for g in grads], [("bn1", "logit"), ("avgpool", "prob")])
        self.assertEqual(grads[1], result["grad"])
        self.assertEqual(kr.main([self.keras_path, image, "--out", out, "--size", "9,11"]), 1)


class GradientCheck(unittest.TestCase):
    """Autograd gradients against central finite differences of the same float64 forward."""

    def finite_difference(self, model, image, node, index, score_of, h=1e-5):
        def perturbed(sign):
            def on_output(name, tensor):
                if name != node:
                    return tensor
                delta = torch.zeros_like(tensor)
                delta[(0,) + index] = sign * h
                return tensor + delta
            return score_of(model.forward(image, on_output))
        return (perturbed(1) - perturbed(-1)) / (2 * h)

    def check(self, model, image, layer, score, positions):
        result = model.run(image, grad_layer=layer, grad_class="argmax", score=score)["grad"]
        gradient = np.array(result["gradient"]["values"]).reshape(result["gradient"]["shape"])
        cls = result["class"]
        node = model.resolve(layer)
        key = model.logits_key() if score == "logit" else model.output

        def score_of(values):
            return float(values[key].reshape(-1)[cls])
        for index in positions:
            numeric = self.finite_difference(model, image, node, index, score_of)
            self.assertAlmostEqual(gradient[index], numeric, delta=1e-6 * max(1.0, abs(numeric)),
                                   msg=f"{layer}{index}")
        self.assertGreater(np.abs(gradient).max(), 0.0)

    def test_synthetic_model_gradients(self):
        with tempfile.TemporaryDirectory() as tmp:
            path, _, _, _ = flat_model_files(tmp, np.random.RandomState(3))
            model = kr.load_model(path)
            image = np.random.RandomState(4).uniform(0, 255, size=(9, 10, 3))
            self.check(model, image, "pw", "logit", [(1, 2, 3), (4, 0, 5)])  # feeds both the SE branch and add
            self.check(model, image, "img", "prob", [(3, 3, 0), (8, 9, 2)])

    def test_gradients_from_one_pass_equal_one_at_a_time(self):
        """--grads (several layers and both scores from one forward pass, a layer upstream of another among
        them) gives exactly the gradients of one --grad-layer run each."""
        with tempfile.TemporaryDirectory() as tmp:
            path, _, _, _ = flat_model_files(tmp, np.random.RandomState(3))
            model = kr.load_model(path)
            image = np.random.RandomState(4).uniform(0, 255, size=(9, 10, 3))
            requests = [("pw", "logit"), ("img", "prob"), ("pw", "prob"), ("img", "logit")]
            together = model.run(image, grads=requests)["grads"]
            for (layer, score), gradient in zip(requests, together):
                alone = model.run(image, grad_layer=layer, grad_class="argmax", score=score)["grad"]
                self.assertEqual(gradient, alone, f"{layer} {score}")

    def test_efficientnet_b0_gradients(self):
        model = kr.load_model(shared_path("models/food101-effv2b0/food101_effv2b0.keras"))
        image = kr.load_image(shared_path("models/food101-effv2b0/samples/coffee.png"), (224, 224, 3))
        self.check(model, image, "top_activation", "logit", [(3, 4, 100), (6, 0, 7)])
        self.check(model, image, "block5c_se_excite", "logit", [(7, 7, 50)])


class RealFiles(unittest.TestCase):
    """Genuine Keras files from ../shared."""

    def test_food101_efficientnet_b0(self):
        directory = "models/food101-effv2b0/"
        model = kr.load_model(shared_path(directory + "food101_effv2b0.keras"))
        labels = read_bytes(shared_path(directory + "labels.txt")).decode().split()
        bibimbap = model.run(kr.load_image(shared_path(directory + "samples/bibimbap.png"), (224, 224, 3)))
        self.assertEqual(labels[bibimbap["top1"]], "bibimbap")
        self.assertGreaterEqual(max(bibimbap["probabilities"]), 0.99)
        coffee = model.run(kr.load_image(shared_path(directory + "samples/coffee.png"), (224, 224, 3)),
                           layers=["top_conv", "block6h_add", "top_activation"])
        p = np.array(coffee["probabilities"])
        top3 = np.argsort(-p)[:3]
        self.assertEqual([labels[i] for i in top3], ["lobster_bisque", "french_onion_soup", "churros"])
        np.testing.assert_allclose(p[top3], [0.49, 0.11, 0.10], atol=0.01)
        np.testing.assert_allclose(np_softmax(np.array(coffee["logits"])), p, rtol=1e-9, atol=1e-15)
        self.assertEqual(coffee["layers"]["top_conv"]["shape"], [7, 7, 1280])
        self.assertEqual(coffee["layers"]["block6h_add"]["shape"], [7, 7, 192])
        conv = np.array(coffee["layers"]["top_conv"]["values"])
        self.assertLess(conv.min(), 0.0)  # before top_bn and the swish
        act = np.array(coffee["layers"]["top_activation"]["values"])
        self.assertGreaterEqual(act.min(), -0.2785)  # swish minimum is about -0.2785

    def run_real(self, name, size, scale, offset=0.0):
        """Runs a real classifier on synthetic images mapped to the range it was trained on."""
        model = kr.load_model(shared_path("fixtures/keras-real/" + name))
        self.assertEqual(kr.model_input_size(model), size)
        images = [make_test_images.synthetic_image(0, i, size[0], size[1]).astype(np.float64) * scale + offset
                  for i in range(3)]
        results = [model.run(image) for image in images]
        for result in results:
            p = np.array(result["probabilities"])
            self.assertTrue(np.all(np.isfinite(p)) and np.all(p >= 0), name)
            self.assertAlmostEqual(p.sum(), 1.0, delta=1e-9, msg=name)
            np.testing.assert_allclose(np_softmax(np.array(result["logits"])), p, rtol=1e-9, atol=1e-15)
        spread = np.ptp([r["probabilities"] for r in results], axis=0).max()
        self.assertGreater(spread, 1e-3, f"{name}: the output does not depend on the image")
        return model, results

    def test_mosquito_classifiers_agree_across_formats(self):
        # The three files are different checkpoints of one model (their weights differ by up to ~0.1), so
        # they cannot agree to 1e-6; weights mapped to the wrong layer or role would differ by O(1).
        names = ["mosquitoes_keras2.15.keras", "mosquitoes_keras2.15.h5", "mosquitoes_keras2.14.keras"]
        runs = [self.run_real(name, (224, 224, 3), 1 / 255) for name in names]
        weighted = [[node for node in model.nodes if node.weights] for model, _ in runs]
        for other in weighted[1:]:
            self.assertEqual([n.class_name for n in other], [n.class_name for n in weighted[0]])
            for a, b in zip(weighted[0], other):
                self.assertEqual(sorted(a.weights), sorted(b.weights))
                for role in a.weights:
                    self.assertLess(float((a.weights[role] - b.weights[role]).abs().max()), 0.2, (a.name, role))
        probabilities = np.array([[r["probabilities"] for r in results] for _, results in runs])
        self.assertTrue(np.all(probabilities.argmax(axis=2) == probabilities[0].argmax(axis=1)))
        self.assertLess(np.abs(probabilities - probabilities[0]).max(), 0.1)

    def test_vww_mobilenet_v1_keras24(self):
        _, results = self.run_real("vww96_mobilenetv1_keras2.4.h5", (96, 96, 3), 1 / 255)
        self.assertEqual(len(results[0]["probabilities"]), 2)

    def test_mobilenet_v2_keras28(self):
        _, results = self.run_real("mobilenetv2_0.35_128_keras2.8.h5", (128, 128, 3), 1 / 127.5, -1.0)
        self.assertEqual(len(results[0]["probabilities"]), 5)

    def test_unsupported_real_models_fail_naming_the_layer(self):
        cases = {"autoencoder_keras3.8.keras": "dec_up1: unsupported layer class UpSampling2D",
                 "autoencoder_keras3.8.h5": "dec_up1: unsupported layer class UpSampling2D",
                 "siamese_nested_keras3.5.keras": "siamese is called 2 times",
                 "siamese_nested_keras2.8.h5": "model_117 is called 2 times",
                 "st_efficientnet_lc_keras2.8.h5": "lambda: unsupported layer class Lambda"}
        for name, message in cases.items():
            with self.subTest(name=name):
                with self.assertRaisesRegex(kr.KerasReferenceError, message):
                    kr.load_model(shared_path("fixtures/keras-real/" + name))


class GeneratedEfficientNets(unittest.TestCase):
    """The files of tests/models/make_keras_models.py, when they have been generated (they take a minute)."""

    def model_path(self, name):
        directory = os.environ.get("EFFCAM_KERAS_MODELS_DIR") or os.path.join(
            os.environ.get("EFFCAM_TESTDATA_DIR", "testdata"), "keras")
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            self.skipTest(f"{path} is absent (run tests/models/make_keras_models.py into that folder)")
        return path

    def test_s_layouts_agree_exactly(self):
        # Same weights in three layouts (nested Functional, Sequential, legacy h5): identical float32 results.
        names = ["effv2s_functional.keras", "effv2s_sequential.keras", "effv2s_functional.h5"]
        paths = [self.model_path(name) for name in names]
        results = []
        for path in paths:
            model = kr.load_model(path, torch.float32)
            size = kr.model_input_size(model, (300, 300))
            image = make_test_images.synthetic_image(1, 0, size[0], size[1]).astype(np.float64)
            results.append(model.run(image, layers=["efficientnetv2-s/top_conv", "block6h_add"]))
        for other in results[1:]:
            self.assertEqual(other["probabilities"], results[0]["probabilities"])
            self.assertEqual(other["layers"], results[0]["layers"])
        self.assertAlmostEqual(sum(results[0]["probabilities"]), 1.0, delta=1e-5)

    def test_b0_runs(self):
        model = kr.load_model(self.model_path("effv2b0.keras"))
        image = make_test_images.synthetic_image(1, 0, 224, 224).astype(np.float64)
        result = model.run(image, layers=["top_conv"])
        self.assertEqual(result["layers"]["top_conv"]["shape"], [7, 7, 1280])
        self.assertEqual(len(result["probabilities"]), 1000)
        self.assertAlmostEqual(sum(result["probabilities"]), 1.0, delta=1e-9)


class TestImages(unittest.TestCase):
    def test_deterministic_sizes_and_modes(self):
        from PIL import Image

        with tempfile.TemporaryDirectory() as tmp:
            first = make_test_images.write_images(os.path.join(tmp, "a"), 30, 40, 2)
            again = make_test_images.write_images(os.path.join(tmp, "b"), 30, 40, 2)
            gray = make_test_images.write_images(os.path.join(tmp, "c"), 30, 40, 1, gray=True)
            contents = [read_bytes(p) for p in first + again]
            self.assertEqual(contents[:2], contents[2:])
            self.assertNotEqual(contents[0], contents[1])
            for path, mode in ((first[0], "RGB"), (gray[0], "L")):
                with Image.open(path) as image:
                    self.assertEqual((image.mode, image.size), (mode, (40, 30)))
                    pixels = np.asarray(image, dtype=np.float64)
                    self.assertGreater(pixels.std(), 10.0)  # not flat
                    self.assertLess(np.abs(np.diff(pixels, axis=0)).mean(), 40.0)  # but mostly smooth


if __name__ == "__main__":
    unittest.main()
