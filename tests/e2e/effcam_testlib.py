"""Shared plumbing of the end-to-end tests: where things are, running the tools, the cached reference.

Every check runs effcam's real command-line tools on real files (generated Keras models, the Food-101 model, the
genuine files in ../shared) and compares with tests/reference/keras_reference.py, which shares no code with effcam.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys

SOURCE_DIR = os.environ.get("EFFCAM_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
BINARY_DIR = os.environ.get("EFFCAM_BINARY_DIR", os.path.join(SOURCE_DIR, "build"))
TESTDATA = os.environ.get("EFFCAM_TESTDATA_DIR", os.path.join(BINARY_DIR, "testdata"))
SHARED = os.environ.get("EFFCAM_SHARED_DIR", os.path.join(SOURCE_DIR, "..", "shared"))
PYTHON = sys.executable
SKIP = 77  # ctest SKIP_RETURN_CODE
# Under AddressSanitizer the forward pass is ~20x slower; that run is for memory errors and undefined behaviour on
# every code path, so it takes one image per case (the plain build checks the numbers on all of them).
SANITIZED = os.environ.get("EFFCAM_SANITIZED") == "1"

CONVERT = os.path.join(BINARY_DIR, "apps", "effcam-convert")
PREDICT = os.path.join(BINARY_DIR, "apps", "effcam-predict")
REFERENCE = os.path.join(SOURCE_DIR, "tests", "reference", "keras_reference.py")
MAKE_IMAGES = os.path.join(SOURCE_DIR, "tests", "reference", "make_test_images.py")
# The bundled default model (a copy of ../shared/models/food101-effv2b0, so a bare clone has it).
FOOD101 = os.path.join(SOURCE_DIR, "models", "food101-effv2b0")

_failures = []


def check(condition, message):
    """Records a failed expectation (the run goes on, so one report shows them all)."""
    status = "ok  " if condition else "FAIL"
    print(f"{status} {message}", flush=True)
    if not condition:
        _failures.append(message)


def finish():
    if _failures:
        print(f"{len(_failures)} check(s) failed", flush=True)
        sys.exit(1)
    print("all checks passed", flush=True)
    sys.exit(0)


def skip(why):
    print(f"SKIP: {why}", flush=True)
    sys.exit(SKIP)


def shared_path(relative):
    path = os.path.join(SHARED, relative)
    if not os.path.exists(path):
        skip(f"{path} is absent (shared/ not beside the checkout)")
    return path


def keras_model(name):
    path = os.path.join(TESTDATA, "keras", name)
    if not os.path.exists(path):
        skip(f"{path} is missing (the make_keras_models fixture did not run)")
    return path


def run(args, expect_ok=True):
    result = subprocess.run(args, capture_output=True, text=True)
    if expect_ok and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result


def convert(keras_path, out_name, dtype="fp16", labels=None, input_size=None):
    out = os.path.join(TESTDATA, "effcam", out_name)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    args = [CONVERT, keras_path, out, "--dtype", dtype]
    if labels:
        args += ["--labels", labels]
    if input_size:
        args += ["--input-size", f"{input_size[0]},{input_size[1]}"]
    summary = run(args).stdout
    return out, summary


def predict(model, images, dump_layers=(), threads=1, extra=()):
    args = [PREDICT, "--model", model, "--json", "--threads", str(threads)] + list(images) + list(extra)
    for layer in dump_layers:
        args += ["--dump-layer", layer]
    return [json.loads(line) for line in run(args).stdout.splitlines()]


def test_images(height, width, count, gray=False):
    folder = os.path.join(TESTDATA, "images", f"{'gray' if gray else 'rgb'}_{height}x{width}_{count}")
    if not os.path.isdir(folder):
        # Made aside and renamed, so tests running in parallel never see half a folder.
        scratch = f"{folder}.tmp{os.getpid()}"
        args = [PYTHON, MAKE_IMAGES, scratch, "--size", f"{height},{width}", "--count", str(count)]
        run(args + (["--gray"] if gray else []))
        try:
            os.rename(scratch, folder)
        except OSError:
            shutil.rmtree(scratch, ignore_errors=True)  # another test made it first
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".png"))[:count]


def _digest(paths):
    h = hashlib.sha256()
    for path in paths:
        st = os.stat(path)
        h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def reference(keras_path, images, layers=(), grad=None):
    """The reference's outputs for these images, cached on disk by the inputs' identity.
    grad = (layer, score): also d(score of the argmax class)/d(layer output) by autograd."""
    options = ",".join(layers) + "|" + ("/".join(grad) if grad else "")
    key = _digest([keras_path, REFERENCE] + list(images)) + "_" + hashlib.sha256(options.encode()).hexdigest()[:8]
    out = os.path.join(TESTDATA, "reference", os.path.basename(keras_path) + "." + key + ".json")
    if not os.path.exists(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        scratch = f"{out}.tmp{os.getpid()}"
        args = [PYTHON, REFERENCE, keras_path] + list(images) + ["--out", scratch]
        if layers:
            args += ["--layers", ",".join(layers)]
        if grad:
            args += ["--grad-layer", grad[0], "--grad-class", "argmax", "--score", grad[1]]
        run(args)
        os.replace(scratch, out)
    with open(out) as f:
        data = json.load(f)
    return data if isinstance(data, list) else data["images"]


def sample(items):
    """All of `items`, or only the first under the sanitizers."""
    return list(items[:1]) if SANITIZED else list(items)


def max_abs_diff(a, b):
    return max(abs(x - y) for x, y in zip(a, b)) if len(a) == len(b) else float("inf")


def argmax(values):
    return max(range(len(values)), key=lambda i: values[i])


def main(cases, doc):
    """Runs the case named by the first argument (a dict name -> function), then reports."""
    case = sys.argv[1] if len(sys.argv) > 1 else ""
    if case not in cases:
        print(doc)
        sys.exit(2)
    cases[case]()
    finish()
