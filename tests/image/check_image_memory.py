#!/usr/bin/python3
"""Memory bars of decoding phone photos (plain build only: the sanitizers' shadow memory hides the figures).

For a 4032x3024 JPEG, the same photo as PNG and a 6000x8000 JPEG (tests/image/large_images.py, made once in the
test data folder), effcam-image-bench decodes and resizes each to 300x300 through load_model_image, then writes the
original-size overlay (write_overlay, JPEG out), in a fresh process; its peak RSS (VmHWM) must stay under
BAR_MIB: the full-size RGB picture alone is 35 MiB (4032x3024) and 137 MiB (6000x8000). The whole-image path
(decode_full_size + resize_lanczos) is run beside it as the check that the bar can fail.

Extreme aspect ratios (HOSTILE below: 46 KB PNGs of 1 x 12,000,000 pixels peaked at 327 MiB before being refused,
12,000,000 x 1 was accepted at 466 MiB) are refused at their header when a side is above 65,535
(imaging::kMaxImageSide), and the largest accepted ones (65,535 x 1, 1 x 65,535, a 65,500 x 2 JPEG rotated by its
EXIF tag, 20,000 x 3) resize in the same few MiB as a photo: their peak RSS, refused or not, must stay under
HOSTILE_BAR_MIB (effcam-image-bench reports its VmHWM for a refusal too).
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import effcam_testlib as t  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from large_images import make_large_images  # noqa: E402

BAR_MIB = 16
HOSTILE_BAR_MIB = 12
BENCH = os.path.join(t.BINARY_DIR, "bench", "effcam-image-bench")
# name -> (width, height, EXIF orientation or 0, refused): the hostile shapes, at the model size 300x300.
HOSTILE = {
    "tall_1x12000000.png": (1, 12_000_000, 0, True),
    "wide_12000000x1.png": (12_000_000, 1, 0, True),
    "tall_1x65535.png": (1, 65_535, 0, False),
    "wide_65535x1.png": (65_535, 1, 0, False),
    "tall_3x20000.png": (3, 20_000, 0, False),
    "wide_20000x3.png": (20_000, 3, 0, False),
    "wide_65500x2_exif6.jpg": (65_500, 2, 6, False),  # turned upright: 2 x 65,500, upscaled along x
    "tall_2x65500_exif6.jpg": (2, 65_500, 6, False),  # turned: 65,500 x 2 (libjpeg writes up to 65,500)
}


def peak_mib(args):
    result = t.run([BENCH, *args])
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_bytes"] / 2**20


def make_hostile_images(folder):
    from PIL import Image
    import numpy as np
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(5)
    paths = {}
    for name, (width, height, orientation, _) in HOSTILE.items():
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8) if width * height < 10**6 else None
            image = Image.fromarray(pixels, "RGB") if pixels is not None else Image.new("RGB", (width, height))
            if orientation:
                exif = Image.Exif()
                exif[0x0112] = orientation
                image.save(path + ".tmp", "JPEG", quality=90, exif=exif.tobytes())
            else:
                image.save(path + ".tmp", "PNG")
            os.replace(path + ".tmp", path)
        paths[name] = path
    return paths


def hostile():
    folder = os.path.join(t.TESTDATA, "image-hostile")
    for name, path in make_hostile_images(folder).items():
        refused = HOSTILE[name][3]
        args = [BENCH, path, "300", "300"] + (["--exif"] if HOSTILE[name][2] else [])
        result = t.run(args, expect_ok=False)
        stderr = result.stderr.strip()
        peak = json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_bytes"] / 2**20
        t.measure(f"hostile shapes: peak RSS MiB (<= {HOSTILE_BAR_MIB})", peak)
        t.check(peak <= HOSTILE_BAR_MIB, f"{name}: peak RSS {peak:.1f} MiB <= {HOSTILE_BAR_MIB} MiB")
        if refused:
            t.check(result.returncode == 1 and "side above the limit of 65535" in stderr
                    and "\n" not in stderr, f"{name}: refused at its header ({stderr})")
        else:
            t.check(result.returncode == 0, f"{name}: resized ({stderr or 'ok'})")


def main():
    if t.SANITIZED:
        t.skip("memory figures mean nothing under the sanitizers")
    images = make_large_images(os.path.join(t.TESTDATA, "image-large"))
    overlay = os.path.join(t.TESTDATA, "image-large", "overlay.jpg")
    for name, path in images.items():
        streamed = peak_mib([path, "300", "300", "--overlay", overlay])
        whole = peak_mib([path, "300", "300", "--whole"])
        t.measure(f"{name} decode + resize + overlay peak RSS MiB (<= {BAR_MIB})", streamed)
        t.check(streamed <= BAR_MIB, f"{name}: streamed decode + resize + original-size overlay peak RSS "
                                     f"{streamed:.1f} MiB <= {BAR_MIB} MiB (whole-image path: {whole:.1f} MiB)")
        t.check(whole > BAR_MIB, f"{name}: the whole-image path's {whole:.1f} MiB is above the bar (it can fail)")
    hostile()
    t.finish()


if __name__ == "__main__":
    main()
