#!/usr/bin/python3
"""Seed corpus of fuzz_image: small files of every format and variant the decoders take, each with the options
byte the target reads last (usage: make_image_seeds.py OUT_DIR; Debian's PIL and libjpeg-turbo's cjpeg)."""
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def saved(image, fmt, **options):
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), "RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    ppm = saved(rgb, "PPM")
    files = {
        "baseline.jpg": saved(rgb, "JPEG", quality=80, exif=exif.tobytes()),
        "progressive.jpg": saved(rgb, "JPEG", quality=80, progressive=True),
        "gray.jpg": saved(rgb.convert("L"), "JPEG"),
        "cmyk.jpg": saved(rgb.convert("CMYK"), "JPEG"),
        "arithmetic.jpg": subprocess.run(["cjpeg", "-arithmetic", "-restart", "1"], input=ppm, capture_output=True,
                                         check=True).stdout,
        "rgba.png": saved(rgb.convert("RGBA"), "PNG"),
        "palette.png": saved(rgb.quantize(colors=16), "PNG", bits=4, transparency=3),
        "gray.png": saved(rgb.convert("L"), "PNG"),
        "lossy.webp": saved(rgb, "WEBP", quality=70, exif=exif.tobytes()),
        "lossless.webp": saved(rgb.convert("RGBA"), "WEBP", lossless=True),
        "palette.gif": saved(rgb.quantize(colors=32), "GIF", transparency=2),
        "rgb.bmp": saved(rgb, "BMP"),
    }
    for index, (name, data) in enumerate(files.items()):
        (out / name).write_bytes(data + bytes([index % 8]))


if __name__ == "__main__":
    main()
