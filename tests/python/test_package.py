"""The package's surface: stubs that match the runtime, docstrings everywhere, predict_batch, python -m effcam (same
output as effcam-predict / effcam-convert) and effcam.convert (the same file as effcam-convert)."""
import ast
import inspect
import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import converted, effcam, images, t, FOOD101_SAMPLES, KERAS, SANITIZED

STUBS = os.path.join(os.path.dirname(effcam.__file__), "__init__.pyi")
VOLATILE = re.compile(r'"(timing_ms|peak_rss_bytes|rss_bytes|arena_bytes|arena_lower_bound_bytes)":(\{[^}]*\}|[0-9.e+-]+),')


def _stub_classes():
    with open(STUBS) as f:
        tree = ast.parse(f.read())
    classes = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            classes[node.name] = {item.target.id if isinstance(item, ast.AnnAssign) else item.name
                                  for item in node.body if isinstance(item, (ast.FunctionDef, ast.AnnAssign))}
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    return classes, functions


def _public(cls):
    fields = set(getattr(cls, "_fields", ()))  # a NamedTuple's fields (one is called index, like tuple.index)
    inherited = (set(dir(tuple)) if issubclass(cls, tuple) else set(dir(object))) - fields
    return {name for name in dir(cls) if not name.startswith("_") and name not in inherited and
            name not in ("args", "with_traceback", "add_note", "errno", "strerror", "filename", "filename2",
                         "characters_written")}


def test_stubs_match_the_runtime():
    classes, functions = _stub_classes()
    assert set(effcam.__all__) - {"__version__"} == set(classes) | functions
    for name, members in classes.items():
        runtime = getattr(effcam, name)
        assert inspect.isclass(runtime), name
        public_stub = {m for m in members if not m.startswith("_")}
        assert public_stub == _public(runtime), name
    assert inspect.signature(effcam.Model.explain).parameters.keys() == \
        {"self", "image", "method", "layer", "score", "class_index", "top_k", "overlay", "heatmap", "alpha", "size",
         "exif_orientation", "decode", "input_image"}
    assert issubclass(effcam.ValueError, ValueError) and issubclass(effcam.ValueError, effcam.Error)
    assert issubclass(effcam.FileError, OSError) and issubclass(effcam.ImageError, effcam.Error)


def test_everything_public_has_a_docstring():
    assert effcam.__doc__ and effcam.convert.__doc__
    for name in effcam.__all__:
        item = getattr(effcam, name)
        if not inspect.isclass(item):
            continue
        assert item.__doc__, name
        for member in _public(item):
            attribute = inspect.getattr_static(item, member)
            if issubclass(item, tuple):
                continue  # NamedTuple fields
            assert getattr(attribute, "__doc__", None), f"{name}.{member}"


def _normalized(stdout):
    return [VOLATILE.sub("", line) for line in stdout.splitlines()]


@pytest.mark.skipif(SANITIZED, reason="checked in the plain build")
def test_python_m_effcam_predict_prints_what_the_tool_prints(tmp_path):
    path = converted("food101")
    not_an_image = os.path.join(t.FOOD101, "labels.txt")
    arguments = ["--model", path, "--json", "--top-k", "3", os.path.join(FOOD101_SAMPLES, "coffee.png"), not_an_image]
    tool = subprocess.run([t.PREDICT] + arguments, capture_output=True, text=True)
    ours = subprocess.run([sys.executable, "-m", "effcam", "predict"] + arguments, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(effcam.__file__))))
    assert ours.returncode == tool.returncode == 1
    assert _normalized(ours.stdout) == _normalized(tool.stdout)
    assert ours.stderr.strip().splitlines() == [f"effcam: {json.loads(ours.stdout.splitlines()[1])['error']}"]


@pytest.mark.skipif(SANITIZED, reason="checked in the plain build")
def test_python_m_effcam_explain_and_convert(tmp_path, food101):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(effcam.__file__)))
    image = os.path.join(FOOD101_SAMPLES, "bibimbap.png")
    overlay = tmp_path / "{name}_overlay.png"
    run = subprocess.run([sys.executable, "-m", "effcam", "explain", "--model", converted("food101"), image,
                          "--overlay", str(overlay), "--score", "prob"], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[1].split()[1] == "bibimbap"
    written = tmp_path / "bibimbap_overlay.png"
    assert written.read_bytes() == food101.explain(image).overlay_png()

    keras, labels = KERAS["food101"]
    out = tmp_path / "food101.effcam"
    run = subprocess.run([sys.executable, "-m", "effcam", "convert", keras, str(out), "--labels", labels],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    tool_out = tmp_path / "tool.effcam"
    tool = subprocess.run([t.CONVERT, keras, str(tool_out), "--labels", labels], capture_output=True, text=True)
    assert out.read_bytes() == tool_out.read_bytes()
    assert run.stdout.replace(str(out), "OUT") == tool.stdout.replace(str(tool_out), "OUT")

    bad = subprocess.run([sys.executable, "-m", "effcam", "explain", "--model", str(out), image, "--method", "x"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and bad.stderr.startswith("effcam: ") and len(bad.stderr.splitlines()) == 1


@pytest.mark.skipif(SANITIZED, reason="checked in the plain build")
def test_convert_writes_the_tools_file(tmp_path):
    keras, labels = KERAS["food101"]
    with open(labels) as f:
        label_list = f.read().splitlines()
    report = effcam.convert(keras, tmp_path / "food.effcam", dtype="fp16", labels=label_list)
    assert (report.classes, report.labelled, report.dtype, report.channels) == (101, True, "fp16", 3)
    assert report.file_bytes == os.path.getsize(tmp_path / "food.effcam")
    with open(converted("food101"), "rb") as f:
        assert (tmp_path / "food.effcam").read_bytes() == f.read()
    assert "food.effcam" in str(report) and "food.effcam" in repr(report)


@pytest.mark.skipif(SANITIZED, reason="checked in the plain build")
def test_predict_batch_keeps_order_and_reports_errors(monkeypatch):
    paths = images(240, 320, 3) + [os.path.join(FOOD101_SAMPLES, "coffee.png")]
    with effcam.Model(converted("food101"), sessions=2) as model:
        single = [model.predict(p).probabilities.tobytes() for p in paths]
        batch = [p.probabilities.tobytes() for p in model.predict_batch(iter(paths), progress=False)]
        assert batch == single

        class Terminal(io.StringIO):
            def isatty(self):
                return True
        terminal = Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        inputs = paths * 3 + [b"garbage"]
        results = list(model.predict_batch(inputs, errors="return"))
        assert [r.probabilities.tobytes() for r in results[:-1]] == single * 3
        assert isinstance(results[-1], effcam.ImageError)
        assert f"{len(inputs)}/{len(inputs)}" in terminal.getvalue() and "images/s" in terminal.getvalue()
        with pytest.raises(effcam.ImageError):
            list(model.predict_batch(inputs))


def test_prediction_arrays_are_read_only_views(food101):
    prediction = food101.predict(np.zeros((16, 16, 3), np.uint8))
    probabilities = prediction.probabilities
    assert not probabilities.flags.writeable and not probabilities.flags.owndata
    with pytest.raises(ValueError):
        probabilities[0] = 1
    del prediction  # the view keeps the result alive
    assert np.isfinite(probabilities).all() and abs(float(probabilities.sum()) - 1) < 1e-3
    assert food101.input_size == (224, 224) and food101.channels == 3 and len(food101.labels) == 101
    assert food101.default_cam_layer in [layer.name for layer in food101.layers]
    memory = food101.memory
    assert memory["weight_bytes"] < memory["file_bytes"] and memory["arena_bytes"] > 0


def test_convert_with_labels_that_do_not_match_raises_value_error(tmp_path):
    keras = os.path.join(t.SHARED, "models", "food101-effv2b0", "food101_effv2b0.keras")
    if not os.path.exists(keras):
        pytest.skip(f"{keras} is absent (shared/ not beside the checkout)")
    with pytest.raises(effcam.ValueError, match="^3 labels were given but the model has 101 classes$"):
        effcam.convert(keras, tmp_path / "out.effcam", labels=["a", "b", "c"])
    with pytest.raises(effcam.ValueError, match="^input size 9000x9000 is out of range"):
        effcam.convert(keras, tmp_path / "out.effcam", input_size=(9000, 9000))
    assert not os.listdir(tmp_path)  # nothing written, not even a temporary file
