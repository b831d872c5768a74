#!/usr/bin/python3
"""effcam-predict --save-input, bit for bit against Debian's PIL, through the real tool.

On a dozen files of the generated suite (make_pil_suite.py: JPEG baseline / progressive / CMYK / gray, PNG plain /
interlaced / palette, WebP, GIF, BMP, EXIF-rotated JPEG / PNG / WebP, 20000x3 and 3x20000) and a small rotated JPEG
that the model's input upscales, and the phone-size JPEGs of large_images.py (4032x3024, 6000x8000), with the bundled Food-101 model (224x224 RGB):
  exact   --save-input == Image.open(f).convert("RGB").resize((224, 224), Image.LANCZOS)
  apply   --exif-orientation apply: the same after ImageOps.exif_transpose
  fast    --decode fast (JPEGs): the same after Image.draft("RGB", (224, 224))
and the JSON's input {exif_orientation, applied_orientation, jpeg_scale} equal to what PIL read and chose. Also
measured (README): the fast path's change of the probabilities against the exact path on the JPEGs (max |dp|, top-1
agreement).
"""
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import effcam_testlib as t  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SIZE = 224
FILES = ["face_q75_420.jpg", "face_progressive.jpg", "synth_cmyk.jpg", "ascent_gray.jpg", "odd_333x251.jpg",
         "face.png", "interlaced.png", "synth_palette_trns.png", "face_lossy.webp", "synth.gif", "synth_palette.bmp",
         "face_exif6.jpg", "face_exif3.jpg", "face_exif5.jpg", "synth_exif6.png", "face_exif8.webp",
         "tall_3x20000.png", "wide_20000x3.jpg"]


def suite():
    folder = os.path.join(t.TESTDATA, "image-suite")
    subprocess.run([t.PYTHON, os.path.join(t.SOURCE_DIR, "tests", "image", "make_pil_suite.py"), folder], check=True)
    paths = [os.path.join(folder, name) for name in FILES]
    # A small rotated photo: turned upright it is 60x100, upscaled along both axes.
    small = os.path.join(t.TESTDATA, "image-save-input", "small_100x60_exif6.jpg")
    os.makedirs(os.path.dirname(small), exist_ok=True)
    if not os.path.exists(small):
        with Image.open(paths[0]) as face:
            exif = Image.Exif()
            exif[0x0112] = 6
            face.convert("RGB").resize((100, 60), Image.LANCZOS).save(small + ".tmp.jpg", quality=90,
                                                                      exif=exif.tobytes())
        os.replace(small + ".tmp.jpg", small)
    from large_images import make_large_images
    large = make_large_images(os.path.join(t.TESTDATA, "image-large"))
    return paths + [small, large["photo_4032x3024.jpg"], large["photo_6000x8000.jpg"]]


def pil_input(path, apply, fast):
    """PIL's model input and what it read: (pixels, exif tag, applied tag, DCT scale)."""
    with Image.open(path) as im:
        tag = im.getexif().get(0x0112, 1)
        tag = tag if 1 <= tag <= 8 else 1
        stored_width = im.size[0]
        scale = 1
        if fast and im.format == "JPEG":
            im.draft("RGB", (SIZE, SIZE))  # square: the same request whichever way the image turns
            scale = stored_width // im.size[0]
        if apply:
            im = ImageOps.exif_transpose(im)
        pixels = np.asarray(im.convert("RGB").resize((SIZE, SIZE), Image.LANCZOS))
    return pixels, tag, tag if apply else 1, scale


def run_tool(model, images, out, extra):
    os.makedirs(out, exist_ok=True)
    result = t.run([t.PREDICT, "--model", model, "--json", "--save-input", os.path.join(out, "{name}.png"),
                    *extra, *images])
    return {r["image"]: r for r in map(json.loads, result.stdout.splitlines())}


def main():
    labels = os.path.join(t.FOOD101, "labels.txt")
    model, _ = t.convert(os.path.join(t.FOOD101, "food101_effv2b0.keras"), "image_food101_fp16.effcam", "fp16",
                         labels)
    images = suite()
    jpegs = [p for p in images if p.endswith(".jpg")]
    results = {}
    for mode, extra, files in (("exact", [], images), ("apply", ["--exif-orientation", "apply"], images),
                               ("fast", ["--decode", "fast"], jpegs),
                               ("apply_fast", ["--exif-orientation", "apply", "--decode", "fast"], jpegs)):
        out = os.path.join(t.TESTDATA, "image-save-input", mode)
        results[mode] = run_tool(model, files, out, extra)
        apply, fast = "apply" in mode, "fast" in mode
        for path in files:
            name = os.path.basename(path)
            expected, tag, applied, scale = pil_input(path, apply, fast)
            with Image.open(os.path.join(out, os.path.splitext(name)[0] + ".png")) as saved:
                got = np.asarray(saved)
            same = got.shape == expected.shape and np.array_equal(got, expected)
            diff = int(np.abs(got.astype(int) - expected.astype(int)).max()) if got.shape == expected.shape else -1
            t.check(same, f"{mode} {name}: --save-input equals PIL's (max |diff| {diff})")
            field = results[mode][path]["input"]
            t.check((field["exif_orientation"], field["applied_orientation"], field["jpeg_scale"]) ==
                    (tag, applied, scale), f"{mode} {name}: JSON input {field} has PIL's orientation {tag}, "
                                           f"applied {applied}, DCT scale 1/{scale}")
    # The fast path's effect on the answer (JPEGs that it scaled).
    scaled = [p for p in jpegs if results["fast"][p]["input"]["jpeg_scale"] > 1]
    t.check(len(scaled) >= 6, f"{len(scaled)} JPEGs decoded at a DCT scale below 1/1")
    deltas = [float(np.abs(np.array(results["fast"][p]["probabilities"]) -
                           np.array(results["exact"][p]["probabilities"])).max()) for p in scaled]
    agree = sum(results["fast"][p]["top_k"][0]["index"] == results["exact"][p]["top_k"][0]["index"] for p in scaled)
    t.info(f"fast vs exact on {len(scaled)} JPEGs: max |dp| {max(deltas):.4f}, top-1 agreement {agree}/{len(scaled)}")
    t.finish()


if __name__ == "__main__":
    main()
