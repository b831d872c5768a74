#!/usr/bin/python3
"""Decode + resize of phone photos, effcam beside Debian's PIL in one run: time (median of N) and peak RSS.

Usage: bench/image_decode.py [--build build] [--size 300] [--repeat 7]

For each photo of tests/image/large_images.py (4032x3024 JPEG and PNG, 6000x8000 JPEG, made once under
BUILD/bench-data/images): effcam-image-bench (load_model_image: exact, fast = JPEG DCT scaling, and the
whole-image path for comparison), and PIL: Image.open(f).convert("RGB").resize(size, LANCZOS) (exact), with
im.draft("RGB", size) first (fast). Each in a fresh process, so each peak RSS (VmHWM: ru_maxrss would carry the
parent's over exec) is its own; PIL's includes the Python interpreter (about 10 MiB).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

from benchlib import ROOT, PYTHON, die, say

sys.path.insert(0, os.path.join(ROOT, "tests", "image"))
from large_images import make_large_images  # noqa: E402

PIL_SNIPPET = r"""
import json, sys, time
from PIL import Image
path, size, fast, repeat = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
times = []
for _ in range(repeat):
    start = time.perf_counter()
    with Image.open(path) as im:
        if fast:
            im.draft("RGB", (size, size))
        out = im.convert("RGB").resize((size, size), Image.LANCZOS)
    times.append((time.perf_counter() - start) * 1000)
peak = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"ms": times, "peak_rss_bytes": peak}))
"""


def run_json(args):
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        die(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    tool = os.path.join(args.build, "bench", "effcam-image-bench")
    if not os.path.exists(tool):
        die(f"{tool} is missing: cmake --build {args.build} --target effcam-image-bench")
    images = make_large_images(os.path.join(args.build, "bench-data", "images"))
    size, repeat = str(args.size), str(args.repeat)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    say(f"decode + resize to {size}x{size} RGB, median of {repeat} runs, one process each; CPU: {cpu}")
    rows = []
    for name, path in images.items():
        runs = {
            "effcam exact": [tool, path, size, size, "--repeat", repeat],
            "effcam fast": [tool, path, size, size, "--fast", "--repeat", repeat],
            "effcam whole-image": [tool, path, size, size, "--whole", "--repeat", repeat],
            "PIL exact": [PYTHON, "-c", PIL_SNIPPET, path, size, "0", repeat],
            "PIL draft": [PYTHON, "-c", PIL_SNIPPET, path, size, "1", repeat],
        }
        if not name.endswith(".jpg"):
            del runs["effcam fast"], runs["PIL draft"]
        results = {label: run_json(command) for label, command in runs.items()}
        medians = {label: statistics.median(r["ms"]) for label, r in results.items()}
        for label, r in results.items():
            rows.append({"image": name, "run": label, "median_ms": round(medians[label], 1),
                         "peak_rss_mib": round(r["peak_rss_bytes"] / 2**20, 1)})
            print(f"  {name:22} {label:20} {medians[label]:8.1f} ms   peak RSS {r['peak_rss_bytes'] / 2**20:7.1f} MiB")
        print(f"  {name:22} PIL exact / effcam exact: {medians['PIL exact'] / medians['effcam exact']:.2f}x"
              + (f", effcam exact / effcam fast: {medians['effcam exact'] / medians['effcam fast']:.2f}x"
                 if "effcam fast" in medians else ""))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
