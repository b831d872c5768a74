"""What the Python benchmarks (side_by_side.py, cold_start.py) share: running the tools, and the EfficientNetV2-S
fp16 effcam file they make once under BUILD/bench-data from the generated Keras model."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAKE_KERAS = os.path.join(ROOT, "tests", "models", "make_keras_models.py")
KERAS_NAME = "effv2s_functional.keras"
PYTHON = "/usr/bin/python3"  # Debian's, with torch, torchvision and PIL
TOOL = os.path.splitext(os.path.basename(sys.argv[0]))[0]  # the running benchmark, to prefix its messages


def say(message):
    print(f"{TOOL}: {message}", flush=True)


def die(message):
    sys.exit(f"{TOOL}: {message}")


def run(args, cwd=None):
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        die(f"{' '.join(args)} exited {result.returncode}:\n{result.stderr.strip()}")
    return result.stdout


def run_json(args):
    return json.loads(run(args).strip().splitlines()[-1])


def stale(target, *sources):
    """True when `target` is missing or older than any existing source."""
    if not os.path.exists(target):
        return True
    mtime = os.path.getmtime(target)
    return any(os.path.exists(s) and os.path.getmtime(s) > mtime for s in sources)


def work_dir(build, tools):
    """BUILD/bench-data (created), after checking that the build has `tools` (paths relative to it)."""
    for tool in tools:
        if not os.path.exists(os.path.join(build, tool)):
            die(f"{os.path.join(build, tool)} is missing: run scripts/build.sh first (or pass --build)")
    work = os.path.join(build, "bench-data")
    os.makedirs(work, exist_ok=True)
    return work


def effcam_model(build, work, keras):
    """The EfficientNetV2-S fp16 .effcam (300x300, 7 classes): `keras` converted, by default the generated Keras
    model of the build's tests (or one generated here under `work` when the tests have not made it)."""
    if keras is None:
        keras = os.path.join(build, "testdata", "keras", KERAS_NAME)
        if not os.path.exists(keras):
            keras = os.path.join(work, "keras", KERAS_NAME)
            if not os.path.exists(keras):
                say("generating the Keras EfficientNetV2-S (about a minute)")
                run([PYTHON, MAKE_KERAS, os.path.dirname(keras), "--only", KERAS_NAME])
    path = os.path.join(work, "effv2s_300_fp16.effcam")
    convert = os.path.join(build, "apps", "effcam-convert")
    if stale(path, keras, convert):
        say(f"converting {keras}")
        run([convert, keras, path, "--dtype", "fp16"])
    return path
