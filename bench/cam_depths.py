#!/usr/bin/python3
"""Grad-CAM at every depth: one layer in each stage of EfficientNetV2-S (300x300) and -B0 (224x224), fp16, 1 thread.

For each layer, effcam-predict --json is given the same image K times in one process, three times: with the
default plan (within twice the forward's arena; deep layers recompute), with a generous --memory-budget (everything
kept, nothing recomputed) and with the floor as the budget (the smallest arena). Printed per layer: the map size,
the arena of each plan and its ratio to the forward pass's, the default plan's recomputation (share of the
forward's multiply-adds, its milliseconds), the peak RSS of the default process, and the time of forward + CAM
(median over the images after the first) of the default and the floor plans against the default's at top_conv, the
issue's yardstick (<= 2x). Whether the three plans' maps are equal to the bit is checked on the way.

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
    print("| model | layer | map | arena (x forward) | all kept | floor | recomputed (MACs, ms) | peak RSS "
          "| forward + CAM (x top_conv) | at the floor | same map |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, (model, size) in models.items():
        image = os.path.join(work, f"noise_{size}.png")
        if not os.path.exists(image):
            b.run([b.PYTHON, "-c", f"import numpy as np; from PIL import Image; Image.fromarray(np.random.default_rng(1)"
                   f".integers(0, 256, ({size}, {size}, 3), dtype=np.uint8)).save('{image}')"])
        base_ms = None
        for layer in LAYERS[name]:
            chosen, ms, recompute_ms = runs(predict, model, image, layer, args.images, None)
            kept, _, _ = runs(predict, model, image, layer, 1, "1GiB")
            plan, forward = chosen["cam"]["plan"], chosen["forward_arena_bytes"]
            floor, floor_ms, _ = runs(predict, model, image, layer, args.images, str(plan["arena_floor_bytes"]))
            base_ms = base_ms or ms
            share = plan["recomputed_multiply_adds"] / plan["forward_multiply_adds"]
            same = chosen["cam"]["raw"] == kept["cam"]["raw"] == floor["cam"]["raw"]
            print(f"| {name.upper()} | {layer} | {chosen['cam']['height']}x{chosen['cam']['width']} "
                  f"| {chosen['arena_bytes'] / 1e6:.2f} MB ({chosen['arena_bytes'] / forward:.2f}x) "
                  f"| {kept['arena_bytes'] / 1e6:.2f} MB ({kept['arena_bytes'] / forward:.2f}x) "
                  f"| {floor['arena_bytes'] / 1e6:.2f} MB ({floor['arena_bytes'] / forward:.2f}x) "
                  f"| {100 * share:.0f}%, {recompute_ms:.0f} ms | {chosen['peak_rss_bytes'] / (1 << 20):.1f} MiB "
                  f"| {ms:.0f} ms ({ms / base_ms:.2f}) | {floor_ms:.0f} ms ({floor_ms / base_ms:.2f}) "
                  f"| {'yes' if same else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
