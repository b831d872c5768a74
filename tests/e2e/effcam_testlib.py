"""Shared plumbing of the end-to-end tests: where things are, running the tools, the cached reference.

Every check runs effcam's real command-line tools on real files (generated Keras models, the Food-101 model, the
genuine files in ../shared) and compares with tests/reference/keras_reference.py, which shares no code with effcam.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

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
# The kernel path effcam-predict is forced onto (EFFCAM_DISPATCH), None for its own choice; main() sets it.
_dispatch = None
_checked = {}    # kernel path -> seconds its run of the case took, for the paths run so far
_ran_on = set()  # the paths effcam-predict reported running on
_worst = {}      # bar -> {path: worst value}, see measure()


class PathUnavailable(Exception):
    """effcam-predict refused the forced kernel path because this CPU lacks its instructions."""


def _prefixed(message):
    return f"[{_dispatch}] {message}" if _dispatch else message


def check(condition, message):
    """Records a failed expectation (the run goes on, so one report shows them all)."""
    status = "ok  " if condition else "FAIL"
    print(f"{status} {_prefixed(message)}", flush=True)
    if not condition:
        _failures.append(_prefixed(message))


def info(message):
    print(f"info {_prefixed(message)}", flush=True)


def measure(bar, value, worst=max):
    """Keeps the worst value of `bar` (a name with its limit) on the current path, for the summary."""
    per_path = _worst.setdefault(bar, {})
    label = _dispatch or "native"
    per_path[label] = worst(per_path[label], value) if label in per_path else value


def _summary(paths):
    if _ran_on:
        print(f"kernel paths effcam-predict ran on: {', '.join(sorted(_ran_on))}", flush=True)
    if _worst:
        print(f"worst figure per bar ({' | '.join(paths)}):", flush=True)
        for bar, per_path in _worst.items():
            figures = " | ".join(f"{per_path[p]:.6g}" if p in per_path else "-" for p in paths)
            print(f"  {bar}: {figures}", flush=True)


def finish(paths=("native",)):
    _summary(list(paths))
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


def run(args, expect_ok=True, env=None):
    result = subprocess.run(args, capture_output=True, text=True, env=env)
    if expect_ok and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result


_converted = {}  # a process converts each file once: main() runs a case again for every kernel path


def convert(keras_path, out_name, dtype="fp16", labels=None, input_size=None):
    key = (keras_path, out_name, dtype, labels, input_size)
    if key not in _converted:
        _converted[key] = _convert(keras_path, out_name, dtype, labels, input_size)
    return _converted[key]


def _convert(keras_path, out_name, dtype, labels, input_size):
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
    """effcam-predict --json on the current kernel path: one record per image."""
    args = [PREDICT, "--model", model, "--json", "--threads", str(threads)] + list(images) + list(extra)
    for layer in dump_layers:
        args += ["--dump-layer", layer]
    env = dict(os.environ, EFFCAM_DISPATCH=_dispatch) if _dispatch else None
    result = run(args, expect_ok=False, env=env)
    if _dispatch and result.returncode == 1 and "this CPU lacks" in result.stderr:  # ops/kernels.cpp, find_path
        raise PathUnavailable(result.stderr.strip())
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    for record in records:
        if _dispatch and record["dispatch"] != _dispatch:
            raise RuntimeError(f"effcam-predict ran the {record['dispatch']} kernels, not the forced {_dispatch}")
        _ran_on.add(record["dispatch"])
    return records


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


_references = {}  # parsed once per process (the largest take over a second to parse)


def reference(keras_path, images, layers=(), grads=(), round_kernels=None):
    """The reference's outputs for these images, cached on disk by the inputs' identity.
    grads = [(layer, score), ...]: also d(score of the argmax class)/d(layer output) by autograd, each image's
    "grads" in that order, all from one forward pass (ask for every gradient a case needs at once).
    round_kernels="fp16": the model's kernels rounded to fp16 first (the conditioning of an fp16 file)."""
    options = ",".join(layers) + "|" + ",".join(f"{layer}/{score}" for layer, score in grads)
    if round_kernels:
        options += "|" + round_kernels
    key = _digest([keras_path, REFERENCE] + list(images)) + "_" + hashlib.sha256(options.encode()).hexdigest()[:8]
    if key not in _references:
        _references[key] = _reference(keras_path, images, layers, grads, round_kernels, key)
    return _references[key]


def _reference(keras_path, images, layers, grads, round_kernels, key):
    out = os.path.join(TESTDATA, "reference", os.path.basename(keras_path) + "." + key + ".json")
    if not os.path.exists(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        scratch = f"{out}.tmp{os.getpid()}"
        args = [PYTHON, REFERENCE, keras_path] + list(images) + ["--out", scratch]
        if layers:
            args += ["--layers", ",".join(layers)]
        if grads:
            args += ["--grads", ",".join(f"{layer}:{score}" for layer, score in grads), "--grad-class", "argmax"]
        if round_kernels:
            args += ["--round-kernels", round_kernels]
        run(args)
        os.replace(scratch, out)
    with open(out) as f:
        data = json.load(f)
    return data if isinstance(data, list) else data["images"]


def reduced():
    """True under the sanitizers (effcam ~20x slower) and on every kernel path after the first one checked: cases
    then take one image each. The first path the CPU can run (the best, the one it runs natively) gets every image;
    the others (the scalar one, SSE2, is ~6x slower) still get every kind of bar."""
    return SANITIZED or bool(_checked)


def sample(items):
    """All of `items`, or only the first when reduced()."""
    return list(items[:1]) if reduced() else list(items)


def max_abs_diff(a, b):
    return max(abs(x - y) for x, y in zip(a, b)) if len(a) == len(b) else float("inf")


def argmax(values):
    return max(range(len(values)), key=lambda i: values[i])


def main(cases, doc):
    """Runs the case named by the first argument (a dict name -> function), then reports. With --dispatch P1,P2,...
    the case runs once per kernel path, effcam-predict forced onto it; a path this CPU lacks is skipped with
    effcam's reason (the whole test is skipped when no path can run)."""
    parser = argparse.ArgumentParser(usage=doc)
    parser.add_argument("case", choices=sorted(cases))
    parser.add_argument("--dispatch", help="kernel paths, comma-separated (EFFCAM_DISPATCH)")
    args = parser.parse_args()
    if not args.dispatch:
        cases[args.case]()
        finish()
    global _dispatch
    paths = args.dispatch.split(",")
    skipped = []
    for path in paths:
        _dispatch = path
        print(f"== kernel path {path}{' (sampled, as under the sanitizers)' if reduced() else ''}", flush=True)
        start = time.monotonic()
        try:
            cases[args.case]()
            _checked[path] = time.monotonic() - start
        except PathUnavailable as e:
            print(f"SKIP kernel path {path}: {e}", flush=True)
            skipped.append(path)
    _dispatch = None
    if not _checked:
        skip(f"this CPU can run none of the kernel paths {args.dispatch}")
    print(f"kernel paths checked: {', '.join(f'{p} ({s:.1f} s)' for p, s in _checked.items())}; "
          f"skipped: {', '.join(skipped) or 'none'}", flush=True)
    finish(list(_checked))
