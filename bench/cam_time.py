#!/usr/bin/python3
"""The time bars of deep Grad-CAM, EfficientNetV2-S fp16 at 300x300, in alternating rounds of effcam-bench.

Each round runs effcam-bench (5 timed passes after 1 warm-up, its median) for: the forward pass alone, forward +
Grad-CAM at top_conv, at block3c_add (the default plan and the floor's: --memory-budget of the smallest arena) and
at block2d_add; the next round runs them in the reverse order, so all see the same machine. Printed: the medians
over the rounds, and the issue's ratios with each round's own:
  block3c_add / top_conv            (bar <= 2: deep Grad-CAM costs at most twice the default one)
  (block2d_add - forward) / forward (bar <= 1.5: the backward pass to block2d_add, in forward passes)

usage: /usr/bin/python3 bench/cam_time.py [--threads N] [--rounds R] [--build DIR]
"""
import argparse
import json
import os
import statistics

import benchlib as b


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--build", default=os.path.join(b.ROOT, "build"))
    args = parser.parse_args()
    bench = os.path.join(args.build, "bench", "effcam-bench")
    work = b.work_dir(args.build, ["bench/effcam-bench", "apps/effcam-predict", "apps/effcam-convert"])
    model = b.effcam_model(args.build, work, None)
    image = os.path.join(args.build, "testdata", "images", "rgb_300x300_1", "rgb_000.png")
    # The floor of the same thread count (the scratch of some kernels is per worker).
    floor = json.loads(b.run([os.path.join(args.build, "apps", "effcam-predict"), "--model", model, "--json",
                              "--threads", str(args.threads), "--cam-layer", "block3c_add",
                              image]))["cam"]["plan"]["arena_floor_bytes"]
    runs = {"forward": [], "top_conv": ["--cam-layer", "top_conv"], "block3c_add": ["--cam-layer", "block3c_add"],
            "block3c_add at the floor": ["--cam-layer", "block3c_add", "--memory-budget", str(floor)],
            "block2d_add": ["--cam-layer", "block2d_add"]}
    ms = {name: [] for name in runs}
    for r in range(args.rounds):
        for name in (list(runs) if r % 2 == 0 else list(reversed(runs))):
            record = b.run_json([bench, "--model", model, "--threads", str(args.threads), "--iters", "5", "--warmup",
                                 "1", "--json"] + runs[name])
            ms[name].append(record["latency_ms"]["median"])
    print(f"{args.threads} thread(s), {args.rounds} rounds; medians: " +
          ", ".join(f"{name} {statistics.median(v):.1f} ms" for name, v in ms.items()))
    deep = [d / t for d, t in zip(ms["block3c_add"], ms["top_conv"])]
    at_floor = [d / t for d, t in zip(ms["block3c_add at the floor"], ms["top_conv"])]
    backward = [(d - f) / f for d, f in zip(ms["block2d_add"], ms["forward"])]
    print(f"block3c_add / top_conv: median {statistics.median(deep):.2f} (rounds {[round(x, 2) for x in deep]}); "
          f"at the floor {statistics.median(at_floor):.2f}")
    print(f"block2d_add backward, in forward passes: median {statistics.median(backward):.2f} "
          f"(rounds {[round(x, 2) for x in backward]})")


if __name__ == "__main__":
    main()
