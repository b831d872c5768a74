"""Fixtures of the Python package's tests: the build tree's effcam package, models converted by effcam-convert, test
images, and effcam-predict --json records to compare with (tests/e2e/effcam_testlib.py runs the tools).

ctest (tests/CMakeLists.txt) sets PYTHONPATH to build/python and the EFFCAM_* variables; by hand:
  PYTHONPATH=build/python EFFCAM_TESTDATA_DIR=... /usr/bin/python3 -m pytest tests/python
"""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
# Under ASan this interpreter runs with the shared ASan runtime preloaded (tests/CMakeLists.txt); the tools it starts
# carry their own, static one, and refuse to run with both.
os.environ.pop("LD_PRELOAD", None)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
import effcam_testlib as t  # noqa: E402

if not any(os.path.isdir(os.path.join(p, "effcam")) for p in sys.path if p):
    sys.path.insert(0, os.path.join(t.BINARY_DIR, "python"))
import effcam  # noqa: E402

SANITIZED = t.SANITIZED
FOOD101_SAMPLES = os.path.join(t.FOOD101, "samples")

# name -> (Keras file, labels file or None); the generated ones come from the make_keras_models fixture.
KERAS = {
    "s": (os.path.join(t.TESTDATA, "keras", "effv2s_functional.keras"), None),
    "b0": (os.path.join(t.TESTDATA, "keras", "effv2b0.keras"), None),
    "food101": (os.path.join(t.FOOD101, "food101_effv2b0.keras"), os.path.join(t.FOOD101, "labels.txt")),
}


def converted(name, dtype="fp16"):
    """The model converted by effcam-convert (once per test data folder and converter binary)."""
    keras, labels = KERAS[name]
    if not os.path.exists(keras):
        pytest.skip(f"{keras} is missing (the make_keras_models fixture did not run)")
    # One file per build tree: the plain and the sanitized tree share the test data folder.
    relative = os.path.join(f"python-{os.path.basename(t.BINARY_DIR)}", f"{name}_{dtype}.effcam")
    out = os.path.join(t.TESTDATA, "effcam", relative)
    newest_input = max(os.path.getmtime(keras), os.path.getmtime(t.CONVERT))
    if not os.path.exists(out) or os.path.getmtime(out) < newest_input:
        t.convert(keras, relative, dtype, labels)
    return out


def images(height, width, count):
    """Deterministic synthetic PNGs (shared with the e2e tests)."""
    return t.test_images(height, width, count)


def tool_records(model, image_paths, extra=()):
    """effcam-predict --json's records for these images."""
    return t.predict(model, image_paths, extra=list(extra))


@pytest.fixture(scope="session")
def food101():
    return effcam.Model(converted("food101"))


@pytest.fixture(scope="session")
def bibimbap():
    return os.path.join(FOOD101_SAMPLES, "bibimbap.png")
