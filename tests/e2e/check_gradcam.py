"""Grad-CAM against autograd: effcam's backward pass vs the independent reference's torch gradients.

usage: check_gradcam.py CASE [--dispatch PATH,...]   (CASE: generated-s | generated-b0 | food101)

For the generated EfficientNetV2 models, at top_conv, top_activation and an interior layer (on B0, like Food-101,
a layer of every kind of tap; on S, block3c_add inside a Fused-MBConv stage too), with both scores (logit, prob):
the reference gives the layer's activations A and d(score)/dA by autograd; the maps of Grad-CAM,
Grad-CAM++ and HiResCAM are computed from them with numpy (tests/cam/cam_reference.py) and compared with effcam's.
fp32 files: max |delta raw map| <= 1e-3 x max |reference raw map|; fp16 files: Pearson correlation >= 0.995 and max
|delta normalized map| <= 0.03; except where the reference's own map is ill-conditioned (it moves more than the bar
under gradient noise of 1e-5 for fp32 or 1e-3 for fp16: Grad-CAM++ near its pole), which is reported, not held.
fp16 against fp32, per case: the fp16 file's normalized map stays within 0.03 of the fp32 file's wherever the
reference's own map does when the model's kernels are rounded to fp16 (keras_reference.py --round-kernels fp16: the
conditioning of that map under fp16 weights); where the rounded reference moves more (or picks another class), the
case is reported, not held.
food101: the same bars on the real model (its two photos, every kind of tap, the logit score), and its default map
of bibimbap.png lies on the bowl, not on the background.

--dispatch runs the case once per kernel path (EFFCAM_DISPATCH) with the same bars, reusing the conversions and the
reference; a path the CPU lacks is skipped. The first path the CPU can run (its native one) takes every case; the
others take, as the sanitized build does, one image, one score and one method per layer: still the fp32 raw-map and
the fp16 map bars at every layer (the methods' formulas and the score's start run the same code on every path).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "cam"))
import effcam_testlib as t  # noqa: E402
from cam_reference import cam_maps  # noqa: E402

METHODS = ["gradcam", "gradcam++", "hirescam"]
FP32_RAW = 1e-3
FP16_PEARSON = 0.995
FP16_NORMALIZED = 0.03


def sensitivity(method, a, g, noise, draws=5):
    """How far the reference's own map moves when its gradient gets `noise` relative noise: (max change of the raw
    map over its max, max change of the normalized map). Grad-CAM++'s weights g^2 / (2 g^2 + sum(A) g^3) have a
    pole where sum(A) g = -2; near it no finite-precision computation can agree with float64."""
    rng = np.random.default_rng(0)
    base = cam_maps(a, g, [method])[method]
    raw = normalized_change = 0.0
    for _ in range(draws):
        moved = cam_maps(a, g * (1 + noise * rng.standard_normal(g.shape)), [method])[method]
        raw = max(raw, np.abs(moved - base).max() / np.abs(base).max())
        normalized_change = max(normalized_change, np.abs(normalized(moved) - normalized(base)).max())
    return raw, normalized_change


def normalized(raw):
    positive = np.maximum(raw, 0)
    peak = positive.max()
    return positive / peak if peak > 0 else positive


def generated(keras_name, size, layers, methods=METHODS, scores=("logit", "prob"), dtypes=("fp32", "fp16")):
    keras_path = t.keras_model(keras_name)
    cam_case(keras_path, os.path.splitext(keras_name)[0], t.test_images(size, size, 2), layers, methods, scores,
             dtypes)


def cam_case(keras_path, stem, images, layers, methods=METHODS, scores=("logit", "prob"), dtypes=("fp32", "fp16")):
    models = {dtype: t.convert(keras_path, f"cam_{stem}_{dtype}.effcam", dtype)[0] for dtype in dtypes}
    # Every gradient of the case from one reference run, the same request (so the same cached file) when sampled.
    requests = [(layer, score) for layer in layers for score in scores]
    refs = t.reference(keras_path, images, grads=requests)
    # A sampled run (sanitizers, kernel paths after the native one) walks every backward path once: one score, one
    # method (test_cam covers the formulas).
    scores, methods = (t.sample(scores), t.sample(methods))
    maps = {}  # (layer, score, method, dtype) -> effcam's result per image
    for layer in layers:
        for score in scores:
            at = requests.index((layer, score))
            for method in methods:
                for dtype, model in models.items():
                    results = t.predict(model, t.sample(images), extra=["--cam", method, "--cam-layer", layer,
                                                                        "--cam-score", score])
                    maps[layer, score, method, dtype] = results
                    for mine, theirs in zip(results, refs):
                        label = f"{stem} {dtype} {layer} {score} {method} {os.path.basename(mine['image'])}"
                        grad = theirs["grads"][at]
                        shape = grad["activation"]["shape"]
                        a = np.array(grad["activation"]["values"], dtype=np.float64).reshape(shape)
                        g = np.array(grad["gradient"]["values"], dtype=np.float64).reshape(shape)
                        want = cam_maps(a, g, [method])[method]
                        cam = mine["cam"]
                        got = np.array(cam["raw"], dtype=np.float64).reshape(cam["height"], cam["width"])
                        t.check(cam["class_index"] == grad["class"],
                                f"{label}: class {cam['class_index']} (reference {grad['class']})")
                        if got.shape != want.shape:
                            t.check(False, f"{label}: map shape {got.shape} vs {want.shape}")
                            continue
                        scale = np.abs(want).max()
                        if dtype == "fp32":
                            err = np.abs(got - want).max() / scale
                            # Only a miss is checked for ill-conditioning (fp32's own gradient precision: 1e-5).
                            moves = sensitivity(method, a, g, 1e-5)[0] if err > FP32_RAW else 0.0
                            if moves > FP32_RAW:
                                t.info(f"{label}: max |delta raw| {err:.2e} not held: the reference map itself "
                                       f"moves {moves:.2e} under 1e-5 gradient noise")
                                continue
                            t.check(err <= FP32_RAW, f"{label}: max |delta raw| {err:.2e} of max |ref| <= {FP32_RAW}")
                            t.measure(f"fp32 max |delta raw map| / max |ref| (<= {FP32_RAW})", err)
                        else:
                            pearson = np.corrcoef(got.ravel(), want.ravel())[0, 1]
                            delta = np.abs(np.array(cam["values"]).reshape(got.shape) - normalized(want)).max()
                            missed = pearson < FP16_PEARSON or delta > FP16_NORMALIZED
                            noise = sensitivity(method, a, g, 1e-3)[1] if missed else 0.0  # below fp16's effect
                            if noise > FP16_NORMALIZED:
                                t.info(f"{label}: Pearson {pearson:.5f}, max |delta normalized| {delta:.4f} not "
                                       f"held: the reference map itself moves {noise:.3f} under 0.1% gradient noise")
                                continue
                            t.check(pearson >= FP16_PEARSON, f"{label}: Pearson {pearson:.5f} >= {FP16_PEARSON}")
                            t.check(delta <= FP16_NORMALIZED,
                                    f"{label}: max |delta normalized| {delta:.4f} <= {FP16_NORMALIZED}")
                            t.measure(f"fp16 map Pearson (>= {FP16_PEARSON})", pearson, worst=min)
                            t.measure(f"fp16 max |delta normalized map| (<= {FP16_NORMALIZED})", delta)
    if set(dtypes) == {"fp32", "fp16"}:
        rounded = t.reference(keras_path, images, grads=requests, round_kernels="fp16")
        fp16_against_fp32(stem, maps, refs, rounded, requests)


def reference_map(grad, method):
    """The normalized map of `method` from one reference gradient record."""
    shape = grad["activation"]["shape"]
    a = np.array(grad["activation"]["values"], dtype=np.float64).reshape(shape)
    g = np.array(grad["gradient"]["values"], dtype=np.float64).reshape(shape)
    return normalized(cam_maps(a, g, [method])[method])


def fp16_against_fp32(stem, maps, refs, rounded, requests):
    """The fp16 file's map against the fp32 file's, held wherever the reference's map moves by at most the bar when
    the kernels are rounded to fp16 (what fp16 weights can at best give)."""
    for (layer, score, method, dtype), fp16_results in maps.items():
        if dtype != "fp16":
            continue
        at = requests.index((layer, score))
        fp32_results = maps[layer, score, method, "fp32"]
        for mine16, mine32, exact, fp16_weights in zip(fp16_results, fp32_results, refs, rounded):
            label = f"{stem} fp16 vs fp32 {layer} {score} {method} {os.path.basename(mine16['image'])}"
            want, moved = exact["grads"][at], fp16_weights["grads"][at]
            if moved["class"] != want["class"]:
                t.info(f"{label}: not held: fp16 kernels change the reference's class ({want['class']} -> "
                       f"{moved['class']})")
                continue
            conditioning = np.abs(reference_map(moved, method) - reference_map(want, method)).max()
            cam16, cam32 = mine16["cam"], mine32["cam"]
            delta = np.abs(np.array(cam16["values"]) - np.array(cam32["values"])).max()
            if conditioning > FP16_NORMALIZED:
                t.info(f"{label}: max |delta normalized| {delta:.4f} not held: fp16 kernels move the reference's "
                       f"map by {conditioning:.4f}")
                continue
            t.check(cam16["class_index"] == cam32["class_index"],
                    f"{label}: class {cam16['class_index']} (fp32 file {cam32['class_index']})")
            t.check(delta <= FP16_NORMALIZED, f"{label}: max |delta normalized| {delta:.4f} <= {FP16_NORMALIZED} "
                                              f"(fp16-rounded reference: {conditioning:.4f})")
            t.measure(f"fp16 vs fp32 file max |delta normalized map| (<= {FP16_NORMALIZED})", delta)


def food101():
    """Every kind of tap (BeforeAffine 1x1 and depthwise, BeforeActivation, Output, ScaledInput, BeforeResidual, and
    block5c_add deeper) on its two photos, then the default Grad-CAM of bibimbap.png: most of the map's mass is on
    the bowl (an ellipse around the dish, measured on the photo), little on the background around it."""
    folder = t.FOOD101
    keras_path = os.path.join(folder, "food101_effv2b0.keras")
    photos = [os.path.join(folder, "samples", name) for name in ("bibimbap.png", "coffee.png")]
    # The logit score only: this model gives bibimbap p = 1 - 2.3e-5, so d(prob)/d(logit) = p (1 - p) keeps two
    # digits in fp32 and the fp32 raw-map bar would measure the softmax's saturation, not the backward pass.
    cam_case(keras_path, "food101", photos, ["top_conv", "top_bn", "top_activation", "block6h_dwconv2",
                                             "block6h_se_excite", "block6h_project_bn", "block5c_add"],
             scores=("logit",))
    model, _ = t.convert(keras_path, "cam_food101_fp16.effcam", "fp16")
    result = t.predict(model, [os.path.join(folder, "samples", "bibimbap.png")], extra=["--cam", "gradcam"])[0]
    cam = result["cam"]
    t.check(cam["layer"] == "top_conv", f"default Grad-CAM layer {cam['layer']} (top_conv)")
    t.check(not cam["cam_empty"], "the bibimbap map is not empty")
    values = np.array(cam["values"]).reshape(cam["height"], cam["width"])
    # Upsample to the 224x224 photo by cell centres, then weigh inside / outside the bowl.
    ys = (np.arange(224) + 0.5) * cam["height"] / 224 - 0.5
    xs = (np.arange(224) + 0.5) * cam["width"] / 224 - 0.5
    grid = values[np.clip(np.round(ys).astype(int), 0, cam["height"] - 1)][:, np.clip(np.round(xs).astype(int), 0,
                                                                                      cam["width"] - 1)]
    yy, xx = np.mgrid[0:224, 0:224]
    bowl = ((yy - 93) / 91.0) ** 2 + ((xx - 112) / 114.0) ** 2 <= 1.0  # the dish's rim, measured on the photo
    inside = grid[bowl].sum() / grid.sum()
    ratio = grid[bowl].mean() / max(grid[~bowl].mean(), 1e-9)
    t.check(inside >= 0.75, f"bibimbap: {inside:.2f} of the map's mass lies on the bowl (>= 0.75)")
    t.check(ratio >= 2.0, f"bibimbap: mean on the bowl / mean on the background {ratio:.1f} (>= 2)")
    t.measure("bibimbap map mass on the bowl (>= 0.75)", inside, worst=min)
    t.measure("bibimbap bowl / background mean (>= 2)", ratio, worst=min)


def generated_s():
    generated("effv2s_functional.keras", 300, ["top_conv", "top_activation", "block6h_add"])
    # A target inside a Fused-MBConv stage: the backward crosses block3d's full 3x3 conv, then stages 4 to 6.
    generated("effv2s_functional.keras", 300, ["block3c_add"], methods=["gradcam", "hirescam"], scores=("logit",),
              dtypes=("fp32",))


def main():
    t.main({
        "generated-s": generated_s,
        "generated-b0": lambda: generated("effv2b0.keras", 224, ["top_conv", "top_bn", "top_activation",
                                                                 "block6h_dwconv2", "block6h_se_excite",
                                                                 "block6h_project_bn", "block5c_add"]),
        "food101": food101,
    }, __doc__)


if __name__ == "__main__":
    main()
