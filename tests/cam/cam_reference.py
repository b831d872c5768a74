#!/usr/bin/python3
"""Independent answers for test_cam: numpy's CAM formulas, matplotlib's jet, PIL's bilinear resize, the Keras
Grad-CAM tutorial's blend (run with Debian's /usr/bin/python3).

Usage: cam_reference.py OUT_DIR

OUT_DIR receives random inputs, the reference results as raw little-endian files and manifest.txt, one case a line:
  cam NAME H W C                NAME.act.f32 + NAME.grad.f32 (H x W x C) -> NAME.<method>.f64 (H x W raw maps)
  jet SOURCE                    jet.u8 (256 x RGB); SOURCE is "matplotlib", or "segments" (a table interpolated
                                from the jet segment data with np.interp) when matplotlib is not installed
  upsample NAME H W OUT_W OUT_H NAME.map.f32 -> NAME.pil.f32 (PIL mode "F", BILINEAR) and NAME.index.u8
                                (the tutorial's np.uint8(255 * heatmap) of it)
  blend NAME W H CHANNELS ALPHA NAME.image.u8 + NAME.heat.u8 -> NAME.blend.u8 (RGB)
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image

METHODS = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam"]


def eigen_projection(a):
    """pytorch-grad-cam's get_2d_projection for one HWC map, with effcam's sign rule: the projection must
    correlate positively with the channel-sum map."""
    h, w, c = a.shape
    m = a.reshape(h * w, c)
    m = m - m.mean(axis=0)
    _, s, vt = np.linalg.svd(m, full_matrices=True)
    projection = m @ vt[0, :]
    correlation = projection @ a.sum(axis=-1).reshape(-1)
    if np.abs(projection).max() > 0:
        # A case whose top singular values tie or whose sign is a coin toss would not test anything.
        assert len(s) < 2 or s[1] < 0.95 * s[0], f"first component barely dominant: {s[:2]}"
        assert abs(correlation) > 1e-6 * np.abs(projection).sum() * np.abs(a).max(), "sign rule undecided"
    return -projection if correlation < 0 else projection


def cam_maps(a, g, methods=METHODS):
    """The methods' raw maps, in float64, from pytorch_grad_cam/*.py with NCHW axes (2, 3) read as HWC (0, 1)."""
    activation_sums = a.sum(axis=(0, 1))
    grads_power_2 = g ** 2
    grads_power_3 = grads_power_2 * g
    aij = grads_power_2 / (2 * grads_power_2 + activation_sums * grads_power_3 + 0.000001)
    aij = np.where(g != 0, aij, 0)
    plus_plus_weights = (np.maximum(g, 0) * aij).sum(axis=(0, 1))
    xgrad_weights = (g * a / (activation_sums + 1e-7)).sum(axis=(0, 1))
    maps = {
        "gradcam": lambda: (g.mean(axis=(0, 1)) * a).sum(axis=-1),
        "gradcam++": lambda: (plus_plus_weights * a).sum(axis=-1),
        "hirescam": lambda: (g * a).sum(axis=-1),
        "xgradcam": lambda: (xgrad_weights * a).sum(axis=-1),
        "layercam": lambda: (np.maximum(g, 0) * a).sum(axis=-1),
        "eigencam": lambda: eigen_projection(a).reshape(a.shape[:2]),
    }
    return {method: maps[method]() for method in methods}


def swish(x):
    return x / (1 + np.exp(-x))


def cam_cases(rng):
    """(name, activations, gradients) like real target layers: swish outputs with a dominant spatial pattern."""
    cases = []
    for name, (h, w, c), grad_zero_fraction in [("b0_top", (7, 7, 64), 0.0), ("s_top", (12, 12, 128), 0.0),
                                                 ("tall", (9, 5, 24), 0.0), ("sparse_grad", (6, 6, 16), 0.7),
                                                 ("row", (1, 6, 4), 0.0), ("single", (1, 1, 8), 0.0)]:
        pattern = np.outer(rng.normal(size=h * w), rng.normal(size=c)).reshape(h, w, c)
        a = swish(2.0 * pattern + 0.5 * rng.normal(size=(h, w, c)))
        g = rng.normal(scale=0.01, size=(h, w, c)) * (rng.random((h, w, c)) >= grad_zero_fraction)
        cases.append((name, a, g))
    h, w, c = 8, 8, 32  # signed activations (a block output before its activation)
    cases.append(("signed", rng.normal(size=(h, w, c)) + np.outer(rng.normal(size=h * w), rng.normal(size=c))
                  .reshape(h, w, c), rng.normal(size=(h, w, c))))
    return cases


def jet_table():
    """The tutorial's jet colours after keras' array_to_img: float32, minus min, over max, * 255, truncated."""
    try:
        import matplotlib
        colors, source = matplotlib.colormaps["jet"](np.arange(256))[:, :3], "matplotlib"
    except ImportError:
        segments = {  # matplotlib's _jet_data; every point is continuous (y0 == y1)
            "red": [(0.00, 0), (0.35, 0), (0.66, 1), (0.89, 1), (1.00, 0.5)],
            "green": [(0.000, 0), (0.125, 0), (0.375, 1), (0.640, 1), (0.910, 0), (1.000, 0)],
            "blue": [(0.00, 0.5), (0.11, 1), (0.34, 1), (0.65, 0), (1.00, 0)],
        }
        x = np.linspace(0, 1, 256)
        colors = np.stack([np.interp(x, *zip(*segments[ch])) for ch in ("red", "green", "blue")], axis=-1)
        source = "segments"
    return array_to_img(colors), source


def array_to_img(x):
    """keras.utils.array_to_img's arithmetic (scale=True), without the PIL wrapping."""
    x = np.asarray(x, dtype=np.float32)
    x = x - np.min(x)
    x_max = np.max(x)
    if x_max != 0:
        x /= x_max
    x *= 255
    return x.astype(np.uint8)


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20240607)
    manifest = []

    for name, a, g in cam_cases(rng):
        a = a.astype(np.float32)
        g = g.astype(np.float32)
        a.tofile(out / f"{name}.act.f32")
        g.tofile(out / f"{name}.grad.f32")
        for method, raw in cam_maps(a.astype(np.float64), g.astype(np.float64)).items():
            raw.astype("<f8").tofile(out / f"{name}.{method}.f64")
        manifest.append(f"cam {name} {a.shape[0]} {a.shape[1]} {a.shape[2]}")

    table, source = jet_table()
    table.tofile(out / "jet.u8")
    manifest.append(f"jet {source}")

    # Upsampling only: PIL's BILINEAR widens its support (antialiases) when it shrinks, which upsample_map does not.
    for name, (h, w), (out_w, out_h) in [("b0", (7, 7), (224, 224)), ("s", (12, 12), (384, 300)),
                                         ("odd", (5, 9), (61, 37)), ("one", (1, 1), (10, 12)),
                                         ("same", (6, 4), (4, 6))]:
        cam = np.maximum(rng.normal(size=(h, w)), 0)
        cam = (cam / cam.max() if cam.max() > 0 else cam).astype(np.float32)
        cam.tofile(out / f"{name}.map.f32")
        resized = np.asarray(Image.fromarray(cam, mode="F").resize((out_w, out_h), Image.BILINEAR), np.float32)
        resized.tofile(out / f"{name}.pil.f32")
        np.uint8(255 * np.clip(resized, 0, 1)).tofile(out / f"{name}.index.u8")
        manifest.append(f"upsample {name} {h} {w} {out_w} {out_h}")

    for name, (w, h, channels), alpha in [("rgb", (40, 30, 3), 0.4), ("gray", (17, 23, 1), 0.4),
                                          ("strong", (16, 16, 3), 2.5), ("flat", (5, 4, 3), 0.4)]:
        if name == "flat":  # nothing to rescale: array_to_img leaves zeros
            image = np.full((h, w, channels), 7, np.uint8)
            heat = np.zeros((h, w, 3), np.uint8)
        else:
            image = rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)
            heat = table[rng.integers(0, 256, size=(h, w))]
        rgb = np.repeat(image, 3, axis=-1) if channels == 1 else image
        blended = array_to_img(heat.astype(np.float32) * np.float32(alpha) + rgb.astype(np.float32))
        image.tofile(out / f"{name}.image.u8")
        heat.tofile(out / f"{name}.heat.u8")
        blended.tofile(out / f"{name}.blend.u8")
        manifest.append(f"blend {name} {w} {h} {channels} {alpha}")

    (out / "manifest.txt").write_text("\n".join(manifest) + "\n")


if __name__ == "__main__":
    main()
