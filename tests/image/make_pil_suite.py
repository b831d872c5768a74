#!/usr/bin/python3
"""Generates the image suite of test_image_suite and Debian's PIL answers for it (run with /usr/bin/python3).

Usage: make_pil_suite.py OUT_DIR

Writes into OUT_DIR every JPEG, PNG, WebP, BMP and GIF variant effcam decodes (written by PIL, by libjpeg-turbo's
cjpeg, by TurboJPEG through ctypes for YCCK, or by hand for what none of them writes), photos (scipy's face and
ascent) and synthetic patterns, odd and huge aspect ratios, EXIF orientations, and hostile files (truncated at every
1/20th, a byte flipped at every 1/20th, bombs, lying headers). manifest.txt has one case per line:
  model FILE WIDTH HEIGHT CHANNELS EXIF(0|1) FAST(0|1) ORIG_W ORIG_H EXPECTED_RAW
      PIL: im = Image.open(FILE); [im.draft(mode, size) if FAST]; [im = ImageOps.exif_transpose(im) if EXIF];
      im.convert(mode).resize((WIDTH, HEIGHT), Image.LANCZOS) -> EXPECTED_RAW (uint8 HWC); ORIG_* the size
      after orientation, before draft()
  refuse FILE WORDS...   PIL refuses the file; effcam must too, with a one-line message containing WORDS
  hostile FILE PIL_OK(0|1)   a damaged file: no crash; a one-line ErrorCode::Image error or a decode
The generated files stay in OUT_DIR (the test data folder); nothing large is committed. A .stamp file with this
script's hash skips regeneration when current.
"""
import ctypes
import hashlib
import io
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

warnings.filterwarnings("ignore")  # scipy.misc's deprecation notes
from scipy import misc  # noqa: E402  (python3-scipy: its bundled face and ascent photos)

MODES = {1: "L", 3: "RGB"}


def scene(width, height, seed):
    """Smooth gradients, sharp edges and noise: every filter lobe rings and clips."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 127.5 + 127.5 * np.sin(x / 7.0 + y / 23.0)
    g = 255.0 * ((x // 16 + y // 16) % 2)
    b = 255.0 * x / max(width - 1, 1)
    image = np.stack([r, g, b], axis=-1) + rng.normal(0.0, 12.0, (height, width, 3))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def zone_plate(size):
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) - size / 2
    v = 127.5 + 127.5 * np.cos((x * x + y * y) * np.pi / size)
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)


def photo():
    return misc.face()  # 1024x768 RGB


def gray_photo():
    return misc.ascent().astype(np.uint8)  # 512x512


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png_bytes(width, height, bit_depth, color_type, pixels, interlaced=False, palette=None, trns=None, raw=None,
              exif=None):
    """A PNG written by hand, for what PIL's writer does not produce (16-bit colour, 2-bit gray, Adam7, eXIf,
    bombs). pixels: HxW or HxWxC integers, packed here to bit_depth."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    def pack(image):
        rows = image.reshape(image.shape[0], -1)
        if bit_depth == 16:
            return [row.astype(">u2").tobytes() for row in rows]
        if bit_depth == 8:
            return [row.astype(np.uint8).tobytes() for row in rows]
        return [np.packbits(np.unpackbits(row.astype(np.uint8)[:, None], axis=1)[:, 8 - bit_depth:]).tobytes()
                for row in rows]

    if raw is None:
        passes = [pixels[y0::dy, x0::dx] for x0, y0, dx, dy in ADAM7] if interlaced else [pixels]
        raw = b"".join(b"\x00" + row for p in passes if p.size for row in pack(p))
    body = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, int(interlaced)))
    if exif is not None:
        body += chunk(b"eXIf", exif)
    if palette is not None:
        body += chunk(b"PLTE", bytes(palette))
    if trns is not None:
        body += chunk(b"tRNS", trns)
    body += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def cjpeg(image, *options):
    """libjpeg-turbo's cjpeg on a PPM / PGM of the image: the variants PIL cannot write."""
    source = io.BytesIO()
    image.save(source, "PPM")
    return subprocess.run(["cjpeg", *options], input=source.getvalue(), capture_output=True, check=True).stdout


def turbojpeg_ycck(cmyk):
    """A YCCK JPEG: TurboJPEG writes one when compressing CMYK pixels (libturbojpeg0, through ctypes)."""
    tj = ctypes.CDLL("libturbojpeg.so.0")
    tj.tjInitCompress.restype = ctypes.c_void_p
    handle = tj.tjInitCompress()
    height, width, _ = cmyk.shape
    data = np.ascontiguousarray(cmyk)
    out = ctypes.POINTER(ctypes.c_ubyte)()
    size = ctypes.c_ulong(0)
    tjpf_cmyk, tjsamp_420 = 11, 2
    status = tj.tjCompress2(ctypes.c_void_p(handle), data.ctypes.data_as(ctypes.c_void_p), width, width * 4, height,
                            tjpf_cmyk, ctypes.byref(out), ctypes.byref(size), tjsamp_420, 90, 0)
    assert status == 0, "tjCompress2 failed"
    result = ctypes.string_at(out, size.value)
    tj.tjFree(out)
    tj.tjDestroy(ctypes.c_void_p(handle))
    return result


def exif_bytes(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def with_precision(jpeg, bits):
    """The JPEG with its SOF's sample precision byte set to `bits` (libjpeg-turbo 8-bit refuses 12)."""
    pos = 2
    while jpeg[pos + 1] not in (0xC0, 0xC1, 0xC2):
        pos += 2 + struct.unpack(">H", jpeg[pos + 2:pos + 4])[0]
    return jpeg[:pos + 4] + bytes([bits]) + jpeg[pos + 5:]


def with_jpeg_size(jpeg, width, height):
    pos = 2
    while jpeg[pos + 1] not in (0xC0, 0xC1, 0xC2):
        pos += 2 + struct.unpack(">H", jpeg[pos + 2:pos + 4])[0]
    return jpeg[:pos + 5] + struct.pack(">HH", height, width) + jpeg[pos + 9:]


def with_webp_canvas(webp, width, height):
    """A WebP (with a VP8X header) whose declared canvas size is width x height."""
    assert webp[12:16] == b"VP8X"
    return webp[:24] + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little") + webp[30:]


def saved(image, fmt, **options):
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def sources():
    """name -> encoded bytes, for every file of the suite that decodes."""
    face = Image.fromarray(photo(), "RGB")
    ascent = Image.fromarray(gray_photo(), "L")
    synth = Image.fromarray(scene(640, 480, 1), "RGB")
    odd = Image.fromarray(scene(333, 251, 2), "RGB")
    rng = np.random.default_rng(3)
    alpha = Image.fromarray(rng.integers(0, 256, (480, 640), dtype=np.uint8), "L")
    files = {
        # JPEG: every subsampling, progressive, restart intervals, gray, CMYK, YCCK, arithmetic coding
        "face_q75_420.jpg": saved(face, "JPEG", quality=75, subsampling=2),
        "face_q90_422.jpg": saved(face, "JPEG", quality=90, subsampling=1),
        "face_q95_444.jpg": saved(face, "JPEG", quality=95, subsampling=0),
        "face_440.jpg": cjpeg(face, "-quality", "85", "-sample", "1x2,1x1,1x1"),
        "face_progressive.jpg": saved(face, "JPEG", quality=85, progressive=True),
        "face_restart_rows.jpg": cjpeg(face, "-quality", "80", "-restart", "1"),
        "face_restart_blocks.jpg": cjpeg(face, "-quality", "80", "-restart", "7B", "-progressive"),
        # Pillow reads a file in 64 KiB blocks and libjpeg's arithmetic decoder cannot suspend between them: PIL
        # decodes arithmetic-coded JPEGs only when they are smaller than that (effcam decodes any).
        "face_arithmetic.jpg": cjpeg(face.resize((400, 300), Image.LANCZOS), "-quality", "80", "-arithmetic"),
        "face_rgb_adobe.jpg": cjpeg(face, "-quality", "90", "-rgb"),
        "ascent_gray.jpg": saved(ascent, "JPEG", quality=85),
        "ascent_gray_progressive.jpg": cjpeg(ascent, "-quality", "70", "-progressive"),
        "synth_q90_420.jpg": saved(synth, "JPEG", quality=90),
        "synth_cmyk.jpg": saved(synth.convert("CMYK"), "JPEG", quality=90),
        "face_ycck.jpg": turbojpeg_ycck(np.asarray(face.convert("CMYK"))),
        "odd_333x251.jpg": saved(odd, "JPEG", quality=80),
        "wide_20000x3.jpg": saved(Image.fromarray(scene(20000, 3, 4), "RGB"), "JPEG", quality=90),
        "tall_3x20000.jpg": saved(Image.fromarray(scene(3, 20000, 5), "RGB"), "JPEG", quality=90),
        # PNG: 1/2/4/8/16-bit gray, gray + alpha, RGB(A) 8/16, palette (+ tRNS, 4-bit), interlaced
        "face.png": saved(face, "PNG"),
        "synth_rgba.png": saved(Image.merge("RGBA", (*synth.split(), alpha)), "PNG"),
        "ascent_gray.png": saved(ascent, "PNG"),
        "synth_gray_alpha.png": saved(Image.merge("LA", (synth.convert("L"), alpha)), "PNG"),
        "synth_palette.png": saved(synth.quantize(colors=200), "PNG"),
        "synth_palette_trns.png": saved(synth.quantize(colors=64), "PNG", transparency=5),
        "synth_palette_4bit.png": saved(synth.quantize(colors=16), "PNG", bits=4),
        "synth_rgb_trns.png": saved(synth, "PNG", transparency=(10, 20, 30)),
        "synth_bilevel.png": saved(synth.convert("1"), "PNG"),
        "gray2.png": png_bytes(97, 61, 2, 0, rng.integers(0, 4, (61, 97))),
        "gray4.png": png_bytes(97, 61, 4, 0, rng.integers(0, 16, (61, 97))),
        "gray16.png": png_bytes(160, 120, 16, 0, rng.integers(0, 1024, (120, 160))),
        "gray_alpha16.png": png_bytes(160, 120, 16, 4, rng.integers(0, 65536, (120, 160, 2))),
        "rgb16.png": png_bytes(160, 120, 16, 2, rng.integers(0, 65536, (120, 160, 3))),
        "rgba16.png": png_bytes(160, 120, 16, 6, rng.integers(0, 65536, (120, 160, 4))),
        # Indices past a 4-entry palette: Pillow shows its initial palette there.
        "short_palette.png": png_bytes(40, 30, 8, 3, rng.integers(0, 8, (30, 40)), palette=range(12)),
        "interlaced.png": png_bytes(333, 251, 8, 2, scene(333, 251, 6), interlaced=True),
        "interlaced16_gray_alpha.png": png_bytes(61, 37, 16, 4, rng.integers(0, 65536, (37, 61, 2)), interlaced=True),
        "zone_plate.png": saved(Image.fromarray(zone_plate(1000), "L"), "PNG"),
        "wide_20000x3.png": saved(Image.fromarray(scene(20000, 3, 7), "RGB"), "PNG"),
        "tall_3x20000.png": saved(Image.fromarray(scene(3, 20000, 8), "RGB"), "PNG"),
        # WebP: lossy, lossless, lossy with alpha
        "face_lossy.webp": saved(face, "WEBP", quality=80),
        "synth_lossless.webp": saved(synth, "WEBP", lossless=True),
        "synth_alpha.webp": saved(Image.merge("RGBA", (*synth.split(), alpha)), "WEBP", quality=70),
        # BMP and GIF (stb_image)
        "synth.bmp": saved(synth, "BMP"),
        "synth_palette.bmp": saved(synth.quantize(colors=200), "BMP"),
        "synth.gif": saved(synth.quantize(colors=256), "GIF"),
        "synth_trns.gif": saved(synth.quantize(colors=64), "GIF", transparency=5),
    }
    # EXIF orientations 2..8 on a non-square photo (and one PNG, one WebP)
    small_face = face.resize((512, 384), Image.LANCZOS)
    for orientation in range(2, 9):
        files[f"face_exif{orientation}.jpg"] = saved(small_face, "JPEG", quality=90, exif=exif_bytes(orientation))
    files["synth_exif6.png"] = png_bytes(333, 251, 8, 2, scene(333, 251, 9), exif=exif_bytes(6)[6:])  # raw TIFF
    files["face_exif8.webp"] = saved(small_face, "WEBP", quality=80, exif=exif_bytes(8))
    return files


# (file, width, height, channels, exif, fast) beyond the default of each file at 224, 300 and 384.
MODEL_SIZES = [(224, 224), (300, 300), (384, 384)]
EXTRA_CASES = [
    ("face_q75_420.jpg", 260, 190, 3, 0, 1),
    ("face_q75_420.jpg", 100, 100, 3, 0, 1),
    ("face_q75_420.jpg", 100, 100, 1, 0, 1),
    ("face_progressive.jpg", 120, 90, 3, 0, 1),
    ("synth_cmyk.jpg", 80, 60, 1, 0, 1),
    ("face_ycck.jpg", 100, 75, 3, 0, 1),
    ("ascent_gray.jpg", 64, 64, 1, 0, 1),
    ("face_exif6.jpg", 90, 120, 3, 1, 1),
    ("face_exif8.jpg", 40, 60, 1, 1, 1),
    ("wide_20000x3.png", 224, 224, 1, 0, 0),
    ("wide_20000x3.png", 16, 16, 3, 0, 0),  # a filter of 7501 taps: the plain 32-bit horizontal pass
    ("face.png", 1024, 768, 3, 0, 0),  # same size: the identity
    ("face.png", 1100, 800, 3, 0, 0),  # upscale
]


def pil_model_input(path, width, height, channels, exif, fast):
    mode = MODES[channels]
    with Image.open(path) as im:
        stored = im.size
        orientation = im.getexif().get(0x0112) if exif else None
        swapped = orientation in (5, 6, 7, 8)
        if fast:
            im.draft(mode, (height, width) if swapped else (width, height))
        if exif:
            im = ImageOps.exif_transpose(im)
        out = im.convert(mode).resize((width, height), Image.LANCZOS)
    original = (stored[1], stored[0]) if swapped else stored
    return np.asarray(out), original


def pil_refuses(data):
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.convert("RGB")
        return False
    except Exception:  # noqa: BLE001 (any PIL failure is a refusal)
        return True


def hostile(files):
    """name -> (bytes, PIL refuses it): truncations and byte flips at every 1/20th of small files of each kind,
    bombs, lying headers."""
    face = Image.fromarray(photo(), "RGB").resize((320, 240), Image.LANCZOS)
    small = Image.fromarray(scene(160, 120, 10), "RGB")
    alpha = Image.fromarray(scene(160, 120, 11)[..., 0], "L")
    damaged = {
        "face.jpg": saved(face, "JPEG", quality=75),
        "face_progressive.jpg": saved(face, "JPEG", quality=75, progressive=True),
        "face_arithmetic.jpg": files["face_arithmetic.jpg"],
        "small_rgba.png": saved(Image.merge("RGBA", (*small.split(), alpha)), "PNG"),
        "small_interlaced.png": png_bytes(160, 120, 8, 2, np.asarray(small), interlaced=True),
        "face_lossy.webp": saved(face, "WEBP", quality=80),
        "small_lossless.webp": saved(small, "WEBP", lossless=True),
        "small.gif": saved(small.quantize(colors=64), "GIF"),
        "small.bmp": saved(small, "BMP"),
    }
    cases = {}
    for name, data in damaged.items():
        for k in range(1, 20):
            cases[f"{name}.cut{k:02d}"] = data[:len(data) * k // 20]
            flipped = bytearray(data)
            flipped[len(data) * k // 20] ^= 0xFF
            cases[f"{name}.flip{k:02d}"] = bytes(flipped)
    rng = np.random.default_rng(11)
    base = files["odd_333x251.jpg"]
    cases["bomb.png"] = png_bytes(100, 100, 8, 2, None, raw=bytes(64 << 20))  # inflates to 64 MiB, needs 30 KB
    cases["lying_8000x8000.jpg"] = with_jpeg_size(base, 8000, 8000)
    cases["lying_8000x8000_progressive.jpg"] = with_jpeg_size(files["face_progressive.jpg"], 8000, 8000)
    cases["lying_40x30.jpg"] = with_jpeg_size(base, 40, 30)
    cases["lying_9000x9000.png"] = png_bytes(9000, 9000, 8, 2, None, raw=bytes(1000))
    cases["noise_after_jpeg_magic.jpg"] = b"\xff\xd8\xff" + rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    cases["noise_after_png_magic.png"] = b"\x89PNG\r\n\x1a\n" + rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    return {name: (data, pil_refuses(data)) for name, data in cases.items()}


def refused():
    """name -> (bytes, words of effcam's message): files PIL refuses and effcam must refuse with that message."""
    base = saved(Image.fromarray(scene(64, 48, 12), "RGB"), "JPEG", quality=90)
    return {
        "precision12.jpg": (with_precision(base, 12), "12-bit samples are not supported"),
        "huge_60000x60000.jpg": (with_jpeg_size(base, 60000, 60000), "60000x60000 is above the limit"),
        "huge_60000x60000.png": (png_bytes(60000, 60000, 8, 2, None, raw=b""), "60000x60000 is above the limit"),
        "huge_16383x16383.webp": (with_webp_canvas(saved(Image.new("RGB", (64, 48)), "WEBP", exif=exif_bytes(1)),
                                                   16383, 16383), "16383x16383 is above the limit"),
        "zero_width.png": (png_bytes(0, 16, 8, 2, None, raw=b""), "zero width or height"),
        "truncated_half.jpg": (base[:len(base) // 2], "truncated"),
        "no_eoi.jpg": (base[:-2], "truncated"),
        "truncated_half.png": (saved(Image.fromarray(scene(64, 48, 12), "RGB"), "PNG")[:300], "truncated"),
        "text.txt": (b"hello, not an image\n" * 10, "not a JPEG, PNG, WebP, BMP or GIF"),
    }


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / ".stamp"
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    files = sources()
    lines = []
    for name, data in files.items():
        (out / name).write_bytes(data)
    # Each file at two of the model sizes, in turn: RGB at one, L at the next.
    cases = []
    for i, name in enumerate(files):
        exif = int("_exif" in name)
        for j, channels in enumerate((3, 1)):
            w, h = MODEL_SIZES[(i + j) % len(MODEL_SIZES)]
            cases.append((name, w, h, channels, exif, 0))
    for name, w, h, c, exif, fast in cases + EXTRA_CASES:
        pixels, original = pil_model_input(out / name, w, h, c, exif, fast)
        expected = f"{name}.{w}x{h}x{c}.e{exif}f{fast}.raw"
        (out / expected).write_bytes(pixels.tobytes())
        lines.append(f"model {name} {w} {h} {c} {exif} {fast} {original[0]} {original[1]} {expected}")
    for name, (data, words) in refused().items():
        assert pil_refuses(data) or name.startswith("huge_"), f"PIL decodes {name}"
        (out / name).write_bytes(data)
        lines.append(f"refuse {name} {words}")
    for name, (data, pil_refused) in hostile(files).items():
        (out / name).write_bytes(data)
        lines.append(f"hostile {name} {int(not pil_refused)}")
    (out / "manifest.txt").write_text("\n".join(lines) + "\n")
    stamp.write_text(digest)


if __name__ == "__main__":
    main()
