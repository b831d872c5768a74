#!/usr/bin/python3
"""Memory bars of decoding phone photos (plain build only: the sanitizers' shadow memory hides the figures).

For a 4032x3024 JPEG, the same photo as PNG and a 6000x8000 JPEG (tests/image/large_images.py, made once in the
test data folder), effcam-image-bench decodes and resizes each to 300x300 through load_model_image, then writes the
original-size overlay (write_overlay, JPEG out), in a fresh process; its peak RSS (VmHWM) must stay under
BAR_MIB: the full-size RGB picture alone is 35 MiB (4032x3024) and 137 MiB (6000x8000). The whole-image path
(decode_full_size + resize_lanczos) is run beside it as the check that the bar can fail.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import effcam_testlib as t  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from large_images import make_large_images  # noqa: E402

BAR_MIB = 16


def peak_mib(args):
    result = t.run([os.path.join(t.BINARY_DIR, "bench", "effcam-image-bench"), *args])
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_bytes"] / 2**20


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
    t.finish()


if __name__ == "__main__":
    main()
