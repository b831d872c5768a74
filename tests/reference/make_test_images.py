#!/usr/bin/python3
"""Deterministic synthetic test images that look roughly natural: a colour gradient, soft blobs, one
sharp-edged shape, smooth large-scale noise and fine texture (a grating plus pixel noise).

  make_test_images.py OUTDIR --size H,W --count N [--gray] [--seed S]

Writes OUTDIR/rgb_000.png ... (or gray_000.png ... with --gray) and prints their paths. The same seed and
index give the same picture at every size (all geometry is in relative coordinates). numpy's legacy
RandomState is used because its streams are frozen across numpy versions.
"""

import argparse
import os
import sys

import numpy as np
from PIL import Image


def _smooth_noise(rng, height, width, cells):
    """Value noise: a coarse random grid upsampled bicubically, in [-1, 1]."""
    grid = rng.uniform(0.0, 255.0, size=(cells, cells)).astype(np.float32)
    smooth = Image.fromarray(grid, mode="F").resize((width, height), Image.BICUBIC)
    return np.asarray(smooth, dtype=np.float64) / 127.5 - 1.0


def synthetic_image(seed, index, height, width):
    """An HxWx3 uint8 picture determined by (seed, index)."""
    rng = np.random.RandomState([seed, index])
    y, x = np.meshgrid(np.linspace(0.0, 1.0, height), np.linspace(0.0, 1.0, width), indexing="ij")

    angle = rng.uniform(0.0, 2.0 * np.pi)
    ramp = (np.cos(angle) * (x - 0.5) + np.sin(angle) * (y - 0.5)) / np.sqrt(2.0) + 0.5
    start, end = rng.uniform(20.0, 235.0, size=(2, 3))
    image = start + ramp[..., None] * (end - start)

    for _ in range(rng.randint(3, 7)):
        cy, cx = rng.uniform(0.0, 1.0, size=2)
        sigma_y, sigma_x = rng.uniform(0.05, 0.3, size=2)
        weight = np.exp(-0.5 * (((y - cy) / sigma_y) ** 2 + ((x - cx) / sigma_x) ** 2))[..., None]
        image = image * (1.0 - 0.8 * weight) + 0.8 * weight * rng.uniform(0.0, 255.0, size=3)

    cy, cx, radius = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.25)
    if rng.uniform() < 0.5:
        inside = (y - cy) ** 2 + (x - cx) ** 2 < radius ** 2
    else:
        inside = (np.abs(y - cy) < radius) & (np.abs(x - cx) < radius * rng.uniform(0.5, 1.5))
    image[inside] = 0.3 * image[inside] + 0.7 * rng.uniform(0.0, 255.0, size=3)

    image += 25.0 * _smooth_noise(rng, height, width, rng.randint(4, 10))[..., None]
    frequency, orientation = rng.uniform(8.0, 40.0), rng.uniform(0.0, np.pi)
    grating = np.sin(2.0 * np.pi * frequency * (np.cos(orientation) * x + np.sin(orientation) * y))
    image += 8.0 * grating[..., None] * rng.uniform(0.5, 1.0, size=3)
    image += rng.normal(0.0, 3.0, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def write_images(outdir, height, width, count, gray=False, seed=0):
    """Writes `count` PNGs into outdir; returns their paths."""
    os.makedirs(outdir, exist_ok=True)
    paths = []
    for index in range(count):
        picture = Image.fromarray(synthetic_image(seed, index, height, width), mode="RGB")
        if gray:
            picture = picture.convert("L")
        path = os.path.join(outdir, f"{'gray' if gray else 'rgb'}_{index:03d}.png")
        picture.save(path)
        paths.append(path)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir")
    parser.add_argument("--size", required=True, help="H,W")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--gray", action="store_true", help="one-channel (L) images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        height, width = (int(v) for v in args.size.split(","))
    except ValueError:
        parser.error(f"--size expects H,W, got {args.size!r}")
    if height <= 0 or width <= 0 or args.count < 0 or args.seed < 0:
        parser.error("size must be positive, count and seed non-negative")
    for path in write_images(args.outdir, height, width, args.count, args.gray, args.seed):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
