"""The package gives effcam-predict --json's numbers bit for bit, whatever form the image comes in, on the generated
EfficientNetV2-S and B0 and the Food-101 model; its Grad-CAM maps equal the tool's."""
import io
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from conftest import converted, effcam, images, tool_records, FOOD101_SAMPLES, SANITIZED

VOLATILE = ("timing_ms", "peak_rss_bytes", "rss_bytes", "arena_bytes", "arena_lower_bound_bytes", "image")
pytestmark = pytest.mark.skipif(SANITIZED, reason="numbers are checked in the plain build (the ASan run checks errors)")


def _answer(record):
    return {key: value for key, value in record.items() if key not in VOLATILE}


def _bytes(path):
    with open(path, "rb") as f:
        return f.read()


def _rgb(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _padded_view(rgb):
    """Inside a larger RGBA canvas: row stride > width * 4, pixel stride 4, alpha skipped."""
    canvas = np.full((rgb.shape[0] + 9, rgb.shape[1] + 13, 4), 77, dtype=np.uint8)
    canvas[4:-5, 6:-7, :3] = rgb
    return canvas[4:-5, 6:-7, :3]


def _planar_view(rgb):
    """Channel-planar storage (C x H x W) seen as H x W x C: channel stride H * W, pixel stride 1."""
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)).transpose(1, 2, 0)


def _reversed_view(rgb):
    """Rows stored bottom-up and viewed top-down: a negative row stride."""
    return rgb[::-1].copy()[::-1]


def _rgba(rgb):
    """Opaque RGBA: its alpha is dropped as PIL's convert("RGB") drops it."""
    return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])


# How a caller may hold the same image.
KINDS = {
    "path": lambda path: path,
    "pathlike": pathlib.Path,
    "bytes": _bytes,
    "bytearray": lambda path: bytearray(_bytes(path)),
    "memoryview": lambda path: memoryview(_bytes(path)),
    "pil": lambda path: Image.open(io.BytesIO(_bytes(path))),
    "pil_rgba": lambda path: Image.open(path).convert("RGBA"),
    "numpy": _rgb,
    "numpy_rgba": lambda path: _rgba(_rgb(path)),
    "numpy_padded_view": lambda path: _padded_view(_rgb(path)),
    "numpy_planar_view": lambda path: _planar_view(_rgb(path)),
    "numpy_reversed_view": lambda path: _reversed_view(_rgb(path)),
}


def _cases():
    yield "s", images(240, 320, 1)
    yield "b0", images(240, 320, 1)
    yield "food101", [os.path.join(FOOD101_SAMPLES, "bibimbap.png")] + images(240, 320, 1)


@pytest.fixture(scope="module", params=["s", "b0", "food101"])
def case(request):
    name = request.param
    image_paths = dict(_cases())[name]
    path = converted(name)
    model = effcam.Model(path)
    yield model, path, image_paths, tool_records(path, image_paths)
    model.close()


def test_every_input_kind_gives_the_tools_numbers(case):
    model, _, image_paths, records = case
    for image_path, record in zip(image_paths, records):
        expected_probabilities = np.array(record["probabilities"], dtype=np.float32)
        for kind, make in KINDS.items():
            prediction = model.predict(make(image_path))
            assert _answer(prediction.to_dict()) == _answer(record), f"{kind} of {image_path}"
            assert prediction.probabilities.dtype == np.float32
            assert prediction.probabilities.tobytes() == expected_probabilities.tobytes(), kind
            if "logits" in record:
                assert prediction.logits.tobytes() == np.array(record["logits"], np.float32).tobytes(), kind
            top = record["top_k"][0]
            assert (prediction.label, prediction.index) == (top["label"], top["index"]), kind
            assert prediction.probability == np.float32(top["probability"]), kind
            assert [c.index for c in prediction.top_k] == [c["index"] for c in record["top_k"]], kind


def test_gradcam_maps_equal_the_tools(case):
    model, path, image_paths, _ = case
    image_path = image_paths[0]
    for score in ("logit", "prob"):
        (record,) = tool_records(path, [image_path], ["--cam", "gradcam", "--cam-score", score])
        for kind in ("path", "numpy_padded_view"):
            e = model.explain(KINDS[kind](image_path), "gradcam", score=score, overlay=False)
            cam = record["cam"]
            assert (e.layer, e.class_index, e.label, e.score_kind) == \
                (cam["layer"], cam["class_index"], cam["label"], score), kind
            assert e.cam.shape == (cam["height"], cam["width"])
            assert e.cam.tobytes() == np.array(cam["values"], np.float32).tobytes(), (kind, score)
            assert e.raw.tobytes() == np.array(cam["raw"], np.float32).tobytes(), (kind, score)
            assert e.score == np.float32(cam["score"])
            assert _answer(e.to_dict()) == _answer(record)


def test_other_cam_methods_layers_and_classes_equal_the_tools():
    path = converted("food101")
    image_path = os.path.join(FOOD101_SAMPLES, "coffee.png")
    with effcam.Model(path) as model:
        for method, layer, class_index in (("gradcam++", "block6a_expand_conv", 3), ("hirescam", None, None),
                                           ("eigencam", "block5e_add", 7)):
            extra = ["--cam", method, "--cam-score", "prob"]
            extra += ["--cam-layer", layer] if layer else []
            extra += ["--cam-class", str(class_index)] if class_index is not None else []
            (record,) = tool_records(path, [image_path], extra)
            e = model.explain(image_path, method, layer, "prob", class_index, overlay=False)
            assert _answer(e.to_dict()) == _answer(record), method
