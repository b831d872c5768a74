#!/usr/bin/python3
"""Writes image fixtures and PIL's own answers for test_image (run with Debian's /usr/bin/python3).

Usage: make_pil_fixtures.py OUT_DIR [EXTRA_IMAGE...]

OUT_DIR receives source images of several kinds, PIL's decode+convert of each and PIL's LANCZOS resizes, as raw
uint8 HWC files, plus manifest.txt with one case per line:
  decode SOURCE CHANNELS WIDTH HEIGHT EXPECTED_RAW
  resize SOURCE_RAW IN_W IN_H CHANNELS OUT_W OUT_H EXPECTED_RAW
EXTRA_IMAGEs (e.g. the real samples in shared/) get decode cases and resizes to two sizes, in place.
The C++ test recomputes every case and compares with these answers. A .stamp file skips regeneration when current.
"""
import hashlib
import io
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

CONVERT_MODES = {1: "L", 3: "RGB"}


def scene(width, height, seed):
    """Smooth gradients, sharp edges and noise: enough structure to exercise every filter lobe and clipping."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 127.5 + 127.5 * np.sin(x / 7.0 + y / 23.0)
    g = 255.0 * ((x // 16 + y // 16) % 2)  # checkerboard: hard 0/255 edges make Lanczos ring and clip
    b = 255.0 * x / max(width - 1, 1)
    image = np.stack([r, g, b], axis=-1) + rng.normal(0.0, 12.0, (height, width, 3))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png_bytes(width, height, bit_depth, color_type, pixels, interlaced=False, raw=None):
    """A PNG written by hand, for what PIL's writer does not produce: 16-bit colour, Adam7 interlacing, and
    `raw` scanline bytes of any length (a deflate bomb). pixels: HxW or HxWxC array, big-endian if 16-bit."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    def scanlines(image):
        return b"".join(b"\x00" + row.tobytes() for row in image.reshape(image.shape[0], -1))
    if raw is None:
        passes = [pixels[y0::dy, x0::dx] for x0, y0, dx, dy in ADAM7] if interlaced else [pixels]
        raw = b"".join(scanlines(p) for p in passes if p.size)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, int(interlaced))
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def write_sources(out):
    """The names of the source images written."""
    rgb = scene(640, 480, 1)
    small = scene(100, 80, 2)
    sources = []

    def save(name, image, **options):
        image.save(out / name, **options)
        sources.append(name)

    save("rgb.png", Image.fromarray(rgb, "RGB"))
    save("small.png", Image.fromarray(small, "RGB"))
    alpha = scene(640, 480, 3)[..., 1]
    save("rgba.png", Image.fromarray(np.dstack([rgb, alpha]), "RGBA"))
    save("gray.png", Image.fromarray(rgb[..., 0], "L"))
    save("gray_alpha.png", Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA"))
    save("palette.png", Image.fromarray(rgb, "RGB").quantize(colors=200))
    save("palette.bmp", Image.fromarray(rgb, "RGB").quantize(colors=200))
    save("palette_trns.png", Image.fromarray(rgb, "RGB").quantize(colors=64), transparency=5)
    save("rgb_trns.png", Image.fromarray(rgb, "RGB"), transparency=tuple(int(v) for v in rgb[0, 0]))
    save("rgb.bmp", Image.fromarray(rgb, "RGB"))
    save("rgba.bmp", Image.fromarray(np.dstack([rgb, alpha]), "RGBA"))
    save("rgb_trns.gif", Image.fromarray(rgb, "RGB").quantize(colors=64), transparency=5)
    save("rgb.gif", Image.fromarray(rgb, "RGB").quantize(colors=256))
    save("rgb.jpg", Image.fromarray(rgb, "RGB"), quality=90)
    save("rgb444.jpg", Image.fromarray(rgb, "RGB"), quality=95, subsampling=0)
    save("gray.jpg", Image.fromarray(rgb[..., 1], "L"), quality=90)

    rng = np.random.default_rng(4)
    # Values on both sides of 255: PIL clips 16-bit grayscale, and keeps the high byte of 16-bit colour.
    handmade = {
        "gray16.png": png_bytes(64, 48, 16, 0, rng.integers(0, 1024, (48, 64)).astype(">u2")),
        "rgb16.png": png_bytes(64, 48, 16, 2, rng.integers(0, 65536, (48, 64, 3)).astype(">u2")),
        "rgba16.png": png_bytes(64, 48, 16, 6, rng.integers(0, 65536, (48, 64, 4)).astype(">u2")),
        "interlaced.png": png_bytes(61, 37, 8, 2, scene(61, 37, 5), interlaced=True),
        "interlaced16.png": png_bytes(13, 11, 16, 4, rng.integers(0, 65536, (11, 13, 2)).astype(">u2"),
                                      interlaced=True),
    }
    for name, data in handmade.items():
        (out / name).write_bytes(data)
        sources.append(name)
    # Not a source: 100x100 RGB whose stream inflates to 64 MiB (the image needs 30100 bytes).
    (out / "bomb.png").write_bytes(png_bytes(100, 100, 8, 2, None, raw=bytes(64 << 20)))
    return sources


RESIZES = [  # (source, out_w, out_h)
    ("rgb.png", 300, 300),
    ("rgb.png", 224, 224),
    ("rgb.png", 123, 77),
    ("rgb.png", 640, 211),   # vertical pass only
    ("rgb.png", 257, 480),   # horizontal pass only
    ("rgb.png", 1000, 999),  # upsample both axes
    ("rgb.png", 2, 1),
    ("small.png", 300, 300),
    ("small.png", 257, 263),
    ("small.png", 1, 1),
    ("gray.png", 224, 224),
    ("gray.png", 97, 301),
]


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    # Skipped when this script and its arguments are those of the last run (the files are then current).
    stamp = out / ".stamp"
    digest = hashlib.sha256(Path(__file__).read_bytes() + "\0".join(sys.argv[2:]).encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    sources = {name: out / name for name in write_sources(out)}
    resizes = list(RESIZES)
    for extra in map(Path, sys.argv[2:]):
        name = "extra_" + extra.name
        sources[name] = extra.resolve()
        resizes += [(name, 300, 300), (name, 160, 171)]
    lines = []
    for name, path in sources.items():
        for channels, mode in CONVERT_MODES.items():
            with Image.open(path) as image:
                converted = image.convert(mode)
            expected = f"{name}.{mode}.raw"
            (out / expected).write_bytes(np.asarray(converted).tobytes())
            lines.append(f"decode {path} {channels} {converted.width} {converted.height} {expected}")
    for name, out_w, out_h in resizes:
        with Image.open(sources[name]) as image:
            source = image.convert("L" if image.mode == "L" else "RGB")
        channels = 1 if source.mode == "L" else 3
        source_raw = f"{name}.{source.mode}.raw"
        resized = source.resize((out_w, out_h), Image.LANCZOS)
        expected = f"{name}.{out_w}x{out_h}.raw"
        (out / expected).write_bytes(np.asarray(resized).tobytes())
        lines.append(f"resize {source_raw} {source.width} {source.height} {channels} {out_w} {out_h} {expected}")
    (out / "manifest.txt").write_text("\n".join(lines) + "\n")
    stamp.write_text(digest)


if __name__ == "__main__":
    main()
