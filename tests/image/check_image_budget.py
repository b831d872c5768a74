#!/usr/bin/python3
"""Predictor::image_bytes() is a true bound on what a prediction allocates besides the arena (plain build only).

For phone photos (4032x3024 JPEG baseline and progressive, PNG plain and Adam7-interlaced, WebP; a 6000x8000 JPEG)
and the largest extreme shapes accepted (65,535 x 1, 1 x 65,535, a 65,500 x 2 JPEG turned by its EXIF tag), each
through effcam-predict with the bundled Food-101 model, Grad-CAM and an original-size overlay (the costliest path):
  1. with a 1 MiB budget (--max-image-mib 1) the image is refused with one line giving its need N and the budget;
  2. with the budget N rounded up to a MiB it is accepted, and the process's peak RSS grows over a 224x224 image's
     by at most the image_bytes() that --stats reports (the budget + what grows with the model's input).
"""
import json
import math
import os
import re
import sys

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import effcam_testlib as t  # noqa: E402
sys.path.insert(0, HERE)
from check_image_memory import make_hostile_images  # noqa: E402
from large_images import make_large_images, photo  # noqa: E402

MIB = 1 << 20


def make_images():
    folder = os.path.join(t.TESTDATA, "image-budget")
    os.makedirs(folder, exist_ok=True)
    images = {name: (path, []) for name, path in make_large_images(os.path.join(t.TESTDATA, "image-large")).items()}
    made = {"photo_4032x3024_progressive.jpg": ("JPEG", {"quality": 90, "progressive": True}),
            "photo_4032x3024.webp": ("WEBP", {"quality": 80}),
            "photo_4032x3024_interlaced.png": (None, {})}
    for name, (fmt, options) in made.items():
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            image = photo(4032, 3024)
            if fmt:
                image.save(path + ".tmp", fmt, **options)
            else:
                from make_pil_suite import png_bytes
                with open(path + ".tmp", "wb") as f:
                    f.write(png_bytes(4032, 3024, 8, 2, np.asarray(image), interlaced=True))
            os.replace(path + ".tmp", path)
        images[name] = (path, [])
    hostile = make_hostile_images(os.path.join(t.TESTDATA, "image-hostile"))
    for name in ("tall_1x65535.png", "wide_65535x1.png"):
        images[name] = (hostile[name], [])
    images["wide_65500x2_exif6.jpg"] = (hostile["wide_65500x2_exif6.jpg"], ["--exif-orientation", "apply"])
    return images


def predict(model, path, extra, budget_mib, stats=True):
    args = [t.PREDICT, "--model", model, "--json", *(["--stats"] if stats else []), "--cam", "gradcam", "--overlay-size", "original",
            "--overlay", os.path.join(t.TESTDATA, "image-budget", "overlay.png"), "--max-image-mib", str(budget_mib),
            *extra, path]
    return t.run(args, expect_ok=False)


def main():
    if t.SANITIZED:
        t.skip("memory figures mean nothing under the sanitizers")
    labels = os.path.join(t.FOOD101, "labels.txt")
    model, _ = t.convert(os.path.join(t.FOOD101, "food101_effv2b0.keras"), "image_food101_fp16.effcam", "fp16",
                         labels)
    small = os.path.join(t.TESTDATA, "image-budget", "small_224.png")
    os.makedirs(os.path.dirname(small), exist_ok=True)
    if not os.path.exists(small):
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(small)
    baseline = json.loads(predict(model, small, [], 64).stdout)["peak_rss_bytes"]
    for name, (path, extra) in make_images().items():
        refused = predict(model, path, extra, 1, stats=False)
        message = refused.stderr.strip()
        found = re.search(r"needs (\d+) bytes to decode, above the budget of 1048576", message)
        t.check(refused.returncode == 1 and found is not None and "\n" not in message,
                f"{name}: refused under a 1 MiB budget with one line ({message})")
        if not found:
            continue
        need = int(found.group(1))
        budget_mib = math.ceil(need / MIB)
        result = predict(model, path, extra, budget_mib)
        t.check(result.returncode == 0, f"{name}: accepted with a budget of {budget_mib} MiB ({result.stderr.strip()})")
        if result.returncode != 0:
            continue
        bound = int(re.search(r"image bytes (\d+)", result.stderr).group(1))
        growth = json.loads(result.stdout)["peak_rss_bytes"] - baseline
        print(f"  {name}: need {need / MIB:.1f} MiB, peak RSS growth {growth / MIB:.1f} MiB, "
              f"image_bytes() {bound / MIB:.1f} MiB")
        t.measure("peak RSS growth / image_bytes() (<= 1)", growth / bound)
        t.check(growth <= bound, f"{name}: peak RSS growth {growth / MIB:.1f} MiB <= image_bytes() "
                                 f"{bound / MIB:.1f} MiB")
    t.finish()


if __name__ == "__main__":
    main()
