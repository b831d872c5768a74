#!/usr/bin/python3
"""Grad-CAM at every depth: one layer in each stage of EfficientNetV2-S (300x300) and -B0 (224x224), fp16, 1 thread.

For each layer, effcam-predict --json is given the same image K times in one process, twice: with the default plan
(the smallest arena; deep layers recompute) and with a generous --memory-budget (everything kept, nothing
recomputed). Printed per layer: the map size, the arena of each plan and its ratio to the forward pass's, the
default plan's floor and recomputation (share of the forward's multiply-adds, its milliseconds), the peak RSS of
the default process, and the time of forward + CAM (median over the images after the first) against the same at
top_conv, the issue's yardstick (<= 2x). Whether the two plans' maps are equal to the bit is checked on the way.

usage: /usr/bin/python3 bench/cam_depths.py [--images K] [--build DIR]
"""
import argparse
import json
import os
import statistics

import benchlib as b

LAYERS = {
    "s": ["top_conv", "block6h_add", "block5e_add", "block4f_add", "block3c_add", "block2d_add", "block1b_add"],
    "b0": ["top_conv", "block6h_add", "block5e_add", "block4c_add", "block3b_add", "block2b_add",
           "block1a_project_activation"],
}


def runs(predict, model, image, layer, count, budget):
    args = [predict, "--model", model, "--json", "--cam", "gradcam", "--cam-layer", layer] + [image] * count
    if budget:
        args += ["--memory-budget", budget]
    records = [json.loads(line) for line in b.run(args).splitlines()]
    later = records[1:] or records
    ms = statistics.median(r["timing_ms"]["forward"] + r["timing_ms"]["cam"] for r in later)
    recompute = statistics.median(r["timing_ms"]["recompute"] for r in later)
    return records[-1], ms, recompute


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--build", default=os.path.join(b.ROOT, "build"))
    args = parser.parse_args()
    predict = os.path.join(args.build, "apps", "effcam-predict")
    work = b.work_dir(args.build, ["apps/effcam-predict", "apps/effcam-convert"])
    models = {"s": (b.effcam_model(args.build, work, None), 300)}
    b0_keras = os.path.join(args.build, "testdata", "keras", "effv2b0.keras")
    if os.path.exists(b0_keras):
        b0 = os.path.join(work, "effv2b0_fp16.effcam")
        if b.stale(b0, b0_keras):
            b.run([os.path.join(args.build, "apps", "effcam-convert"), b0_keras, b0, "--dtype", "fp16"])
        models["b0"] = (b0, 224)
    print("| model | layer | map | arena (x forward) | kept: arena (x forward) | floor | recomputed (MACs, ms) "
          "| peak RSS | forward + CAM | x top_conv | same map |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, (model, size) in models.items():
        image = os.path.join(work, f"noise_{size}.png")
        if not os.path.exists(image):
            b.run([b.PYTHON, "-c", f"import numpy as np; from PIL import Image; Image.fromarray(np.random.default_rng(1)"
                   f".integers(0, 256, ({size}, {size}, 3), dtype=np.uint8)).save('{image}')"])
        base_ms = None
        for layer in LAYERS[name]:
            small, ms, recompute_ms = runs(predict, model, image, layer, args.images, None)
            kept, _, _ = runs(predict, model, image, layer, 1, "1GiB")
            base_ms = base_ms or ms
            plan, forward = small["cam"]["plan"], small["forward_arena_bytes"]
            share = plan["recomputed_multiply_adds"] / plan["forward_multiply_adds"]
            print(f"| {name.upper()} | {layer} | {small['cam']['height']}x{small['cam']['width']} "
                  f"| {small['arena_bytes'] / 1e6:.2f} MB ({small['arena_bytes'] / forward:.2f}x) "
                  f"| {kept['arena_bytes'] / 1e6:.2f} MB ({kept['arena_bytes'] / forward:.2f}x) "
                  f"| {plan['arena_floor_bytes'] / 1e6:.2f} MB | {100 * share:.0f}%, {recompute_ms:.0f} ms "
                  f"| {small['peak_rss_bytes'] / (1 << 20):.1f} MiB | {ms:.0f} ms | {ms / base_ms:.2f} "
                  f"| {'yes' if small['cam']['raw'] == kept['cam']['raw'] else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
